"""Date-partitioned folders (``date=YYYY-MM-DD/``), the layout Data Factory copies by window."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

PREFIX = "date="


def partitions(root: Path) -> list[tuple[date, Path]]:
    """Every ``date=YYYY-MM-DD`` folder under root, oldest first; other entries are ignored."""
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name.startswith(PREFIX):
                try:
                    found.append((date.fromisoformat(child.name[len(PREFIX):]), child))
                except ValueError:
                    continue
    return sorted(found)


def in_window(root: Path, start: datetime | None, end: datetime | None) -> list[tuple[date, Path]]:
    """Partitions whose day lies in [start, end); an open side is unbounded."""
    return [
        (day, path)
        for day, path in partitions(root)
        if (start is None or day >= start.date()) and (end is None or day < end.date())
    ]


def csv_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.csv"))
