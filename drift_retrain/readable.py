"""Numbers as a person reads them in a report: a few significant digits, thousands separated, bytes with units.
Only ever given numbers (never event text), so what they return needs no escaping."""

from __future__ import annotations

import math

#: Decimal (SI) byte units, as Data Factory's monitoring shows data read and written.
_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def number(value: float | None) -> str:
    """``n/a`` for None or a non-finite value; else 3 significant digits, thousands separated from 1,000 on."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def count(value: int | None) -> str:
    """A row or file count with thousands separated; ``n/a`` when it was not reported."""
    return "n/a" if value is None else f"{value:,}"


def byte_size(value: int | float | None) -> str:
    """``12.3 MB``: decimal units, 3 significant digits; ``n/a`` when not reported."""
    if value is None or not math.isfinite(value):
        return "n/a"
    size, unit = float(value), 0
    while abs(size) >= 1000 and unit < len(_BYTE_UNITS) - 1:
        size, unit = size / 1000, unit + 1
    return f"{size:.0f} B" if unit == 0 else f"{size:.3g} {_BYTE_UNITS[unit]}"


def share(value: float) -> str:
    """A share of rows as a whole percentage (``<1%`` for a small one that is not 0)."""
    if not math.isfinite(value):
        return "n/a"
    return "<1%" if 0 < value < 0.005 else f"{value:.0%}"
