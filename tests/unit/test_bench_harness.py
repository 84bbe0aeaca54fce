"""The benchmark harness runs (one quick polling round against the loopback Azure) and prints its table.
Figures and targets are the benchmarks' business (``make bench``), never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import __main__ as bench
from benchmarks import polling
from benchmarks.common import Figure


def test_figures_are_median_with_range() -> None:
    figure = Figure.of([3, 1, 2, 10])
    assert (figure.median, figure.low, figure.high, figure.samples) == (2.5, 1, 10, 4)
    assert figure.show(1) == "2.5 (1.0-10.0)"


def test_one_quick_polling_round_fills_a_row_per_service(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(bench, "_suites", lambda quick: {"polling": lambda: polling.measure(repeats=1, durations={"1 min": 60})})
    out = tmp_path / "results.json"
    assert bench.main(["--only", "polling", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"].split(":")[0] for r in rows] == [
        "Data Factory run of 1 min",
        "Azure ML run of 1 min",
        "Data Factory run of 1 min, history-aware, run within ±10 % of its history",
        "Data Factory run of 1 min, history-aware, run 3x its history",
        "Data Factory run of 1 min, history-aware, run 1/3 of its history",
    ]
    assert all(r["data"]["calls"]["samples"] == 1 and r["data"]["fixed_calls"]["median"] >= 2 for r in rows)
    assert "| Data Factory run of 1 min" in capsys.readouterr().out
