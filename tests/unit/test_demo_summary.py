"""The demo's closing summary of a copy: a binary copy counts no rows, and the summary says so."""

from __future__ import annotations

from types import SimpleNamespace

from drift_retrain.devstack.demo import _summarise
from drift_retrain.results import Check, Decision, RetrainOutcome
from drift_retrain.testing import copy_result


def test_the_summary_of_a_binary_copy_says_rows_were_not_reported() -> None:
    decision = Decision(retrain=False, checks=[Check(rule="data_copied", passed=False, detail="binary copy: 0 files")])
    copy = copy_result(rows_read=None, rows_copied=None, data_read=4096, data_written=4096, files_read=2,
                       files_written=2, copy_duration=1.5, throughput=2.7)
    outcome = RetrainOutcome.of("signal-1", "credit-default", "credit-default", decision, copy_result=copy)
    flow_run = SimpleNamespace(name="credit-default-run", state=SimpleNamespace(name="Completed", message=""))
    printed: list[str] = []

    _summarise(flow_run, outcome, "http://127.0.0.1:4200", printed.append)  # type: ignore[arg-type]

    assert "copy      rows not reported, 2 files, 4.1 kB in 1.50 s" in printed
