"""A pipeline run's Copy activity outputs read into typed, bounded copy statistics.

An activity run's output is free JSON (azure-mgmt-datafactory types ``ActivityRun.output`` as ``object``),
so every field is checked: a value that is not a non-negative, finite number within its documented width
is taken as not reported, and the reason is kept for the run's log. Field names and widths: the
"Monitor programmatically" table of MicrosoftDocs/azure-docs articles/data-factory/copy-activity-monitoring.md
(https://learn.microsoft.com/azure/data-factory/copy-activity-monitoring#monitor-programmatically).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# copy-activity-monitoring.md: counts and bytes are "Int64 value", copyDuration "Int32 value, in seconds"
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
#: How much of a rejected value a reason quotes (a hostile value may be a megabyte of text).
SHOWN_CHARS = 40


@dataclass(frozen=True)
class CopyStats:
    """The Copy activities' totals. Rows are None when no activity counted them: copy-activity-monitoring.md
    says rowsRead/rowsCopied do "not apply when copying files as-is without parsing them" (binary copy)."""

    rows_read: int | None
    rows_copied: int | None
    data_read: int
    data_written: int
    files_read: int
    files_written: int
    copy_duration: float
    throughput: float
    problems: tuple[str, ...] = ()


def copy_stats(outputs: Sequence[tuple[str, Mapping[str, Any]]]) -> CopyStats:
    """Sum ``(activity name, output)`` pairs: rows over the activities that report them, bytes and files
    over all (not reported: 0); KB/s as reported by a single activity, else recomputed from bytes and seconds."""
    problems: list[str] = []

    def values(field: str, integral: bool, limit: int) -> list[float]:
        found = []
        for activity, output in outputs:
            value, why = _number(output.get(field), integral=integral, limit=limit)
            if why is not None:
                problems.append(f"{activity}: {field} {why}; taken as not reported")
            elif value is not None:
                found.append(value)
        return found

    def count(field: str) -> int:
        return int(sum(values(field, integral=True, limit=INT64_MAX)))

    def rows(field: str) -> int | None:
        reported = values(field, integral=True, limit=INT64_MAX)
        return int(sum(reported)) if reported else None

    duration = float(sum(values("copyDuration", integral=False, limit=INT32_MAX)))
    data_read = count("dataRead")
    reported_rate = values("throughput", integral=False, limit=INT64_MAX)  # "Floating point number, in KBps"
    if len(outputs) == 1 and reported_rate:
        throughput = float(reported_rate[0])
    else:
        throughput = round(data_read / 1024 / duration, 3) if duration else 0.0
    return CopyStats(
        rows_read=rows("rowsRead"),
        rows_copied=rows("rowsCopied"),
        data_read=data_read,
        data_written=count("dataWritten"),
        files_read=count("filesRead"),
        files_written=count("filesWritten"),
        copy_duration=duration,
        throughput=throughput,
        problems=tuple(problems),
    )


def _number(value: object, *, integral: bool, limit: int) -> tuple[float | None, str | None]:
    """``(value, None)`` for a usable number, ``(None, None)`` when absent, ``(None, reason)`` when unusable."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{_shown(value)} is not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"{value} is not a finite number"
    if value < 0:
        return None, f"{_shown(value)} is negative"
    if value > limit:
        return None, f"{_shown(value)} is larger than {limit}"
    if integral and isinstance(value, float):
        if not value.is_integer():
            return None, f"{value} is not a whole number"
        return int(value), None
    return value, None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
