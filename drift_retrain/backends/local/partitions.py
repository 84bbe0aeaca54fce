"""Date-partitioned folders (``date=YYYY-MM-DD/``), the layout Data Factory copies by window."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

PREFIX = "date="


def partitions(root: Path) -> list[tuple[date, Path]]:
    """Every ``date=YYYY-MM-DD`` folder under root, oldest first; other entries are ignored."""
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name.startswith(PREFIX):
                try:
                    found.append((date.fromisoformat(child.name[len(PREFIX) :]), child))
                except ValueError:
                    continue
    return sorted(found)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of a moment (partitions are UTC days; naive times are taken as UTC)."""
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


def in_window(root: Path, start: datetime | None, end: datetime | None) -> list[tuple[date, Path]]:
    """Partitions whose UTC day lies in [start, end); an open side is unbounded."""
    return [
        (day, path)
        for day, path in partitions(root)
        if (start is None or day >= utc_day(start)) and (end is None or day < utc_day(end))
    ]


def csv_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.csv"))
