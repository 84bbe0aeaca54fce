"""Windows select UTC-day partitions, whatever offset the event's times carry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from drift_retrain.backends.local.partitions import in_window, partitions


def _days(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)


def test_window_is_start_inclusive_end_exclusive_in_utc(tmp_path: Path) -> None:
    _days(tmp_path, "date=2019-07-03", "date=2019-07-04", "date=2019-07-05", "not-a-partition", "date=garbage")
    # The REST spec sample's window: 2019-07-03T17:00-07:00 .. 2019-07-04T17:00-07:00 = 07-04T00Z .. 07-05T00Z
    pacific = timezone(timedelta(hours=-7))
    selected = in_window(tmp_path, datetime(2019, 7, 3, 17, tzinfo=pacific), datetime(2019, 7, 4, 17, tzinfo=pacific))
    assert [p.name for _, p in selected] == ["date=2019-07-04"]
    assert [p.name for _, p in partitions(tmp_path)] == ["date=2019-07-03", "date=2019-07-04", "date=2019-07-05"]


def test_open_window_takes_everything(tmp_path: Path) -> None:
    _days(tmp_path, "date=2019-07-03", "date=2019-07-04")
    assert len(in_window(tmp_path, None, None)) == 2
    assert in_window(tmp_path / "missing", None, None) == []
