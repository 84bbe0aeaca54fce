"""Event text as one line of visible characters: what a run name, a tag, an event's display name or a log
line may carry of a hostile value (the markdown reports escape it further: ``drift_retrain.markdown``).

Pure and import-free, so the vocabulary (``drift_retrain.names``) can use it too.
"""

from __future__ import annotations

import math
import re
import unicodedata

#: Marks where a value was cut to its limit.
CUT = "…"

_SPACE = frozenset({"Cc", "Zl", "Zp"})  # control characters, line and paragraph separators
#: What a name read from an event or an Azure answer may not hold: control characters, line separators and
#: lone surrogates (no valid text).
_NOT_IN_A_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def one_line(value: object, limit: int | None = None) -> str:
    """``value`` as one line of what it shows: control characters and line or paragraph separators become a
    space (no new line, no terminal escape), format characters go (bidi overrides and isolates, zero-width and
    tag characters: they reorder or hide what a reader sees), a lone surrogate becomes U+FFFD (it cannot be
    encoded); runs of white space become one space, none leads or trails. Longer than ``limit`` characters,
    it is cut and ends in ``…``."""
    kept = []
    for char in str(value):
        category = unicodedata.category(char)
        if category in _SPACE:
            kept.append(" ")
        elif category == "Cs":
            kept.append("\ufffd")
        elif category != "Cf":
            kept.append(char)
    text = " ".join("".join(kept).split())
    if limit is not None and len(text) > limit:
        text = text[: max(limit - len(CUT), 0)].rstrip() + CUT
    return text


def plain_name(value: object, limit: int = 256) -> str | None:
    """``value`` stripped when it is text of 1 to ``limit`` characters with nothing ``_NOT_IN_A_NAME``; None
    otherwise: a hostile name read from an event or an Azure answer is dropped, never shown or used."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > limit or _NOT_IN_A_NAME.search(value):
        return None
    return value


def finite_number(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else (bool, text, NaN, infinities, an int too large)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None
