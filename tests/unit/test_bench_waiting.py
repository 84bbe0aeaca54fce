"""The waiting benchmark (issue 16) runs and its rows say what they measured: the ML waits on the virtual
clock against the loopback Azure, the rows composed from them, the suite's registration, and (e2e) the
stack part against a real Prefect server and runner. Figures and targets are ``make bench``'s business."""

from __future__ import annotations

import statistics

import pytest

from benchmarks import __main__ as bench
from benchmarks import polling, waiting
from benchmarks.common import Figure, Row

LATENCY = 2.5  # seconds from the job event to the flow Running again, as if measured on the stack


@pytest.fixture(scope="module")
def ml() -> dict[str, dict[str, list[float]]]:
    # "20 s": queued for 0-30 s first, every such job ends within the 60 s hold
    return waiting.ml_waits({"20 s": 20, "1 min": 60, "1 h": 3600}, repeats=2, resume_s=[LATENCY])


def test_a_long_ml_job_is_seen_by_its_event_and_one_confirming_get(ml) -> None:
    hour = ml["1 h"]
    assert hour["push_delay"] == pytest.approx([LATENCY, LATENCY], abs=0.01)  # the event, not a poll, saw the end
    # the hold's one look, one per suspension, the stretched fallback's checks and the confirming GET: at most a
    # tenth of a 60 s poll (issue 16), and at least 1 + 1 + 1
    assert all(3 <= c <= statistics.median(hour["fixed_calls"]) / 10 for c in hour["push_calls"])


def test_a_lost_event_is_made_up_within_the_stretched_fallbacks_cap(ml) -> None:
    hour = ml["1 h"]
    assert all(LATENCY < d <= waiting.FALLBACK_MAX_SECONDS + 30 + LATENCY for d in hour["lost_delay"])
    assert all(lost >= push for lost, push in zip(hour["lost_calls"], hour["push_calls"], strict=True))


def test_a_job_ending_within_the_hold_is_seen_at_its_event_with_two_or_three_calls(ml) -> None:
    short, hour = ml["20 s"], ml["1 h"]
    assert short["push_suspended"] == [0, 0] and all(n >= 1 for n in hour["push_suspended"])
    # heard EVENT_DELIVERY_S after the end (the benchmark's assumption): one look (two when the job outlasts the
    # first hold's look at hold_look_seconds), one confirming call
    assert short["push_delay"] == pytest.approx([waiting.EVENT_DELIVERY_S] * 2, abs=0.01)
    assert all(calls in (2, 3) for calls in short["push_calls"]), short["push_calls"]


STACK = {
    "event_to_running_s": [2.0, 3.0, 4.0],
    "ack_s": [0.1, 0.1, 0.1],
    "overhead_s": [1.0, 1.0, 1.0],
    "resume_to_running_s": [3.0, 3.0, 3.0],
    "push_s": [LATENCY, LATENCY, LATENCY],
    "product": False,
    "resume_to_completed_s": [4.0, 4.0, 4.0],
    "duplicate": {
        "first": "ACCEPT",
        "again at once": "ABORT",
        "after the end": "ABORT",
        "runs": 2,
        "completions": 1,
        "final": "COMPLETED",
    },
    "concurrent": {
        "runs": 50,
        "create_s": 1.0,
        "all_suspended_s": 45.0,
        "processes_while_submitting": 5,
        "processes_exited_s": 1.0,
        "processes_while_waiting": 0,
        "processes_while_waiting_were": [],
        "processes_while_resuming": 5,
        "resume_calls_s": 0.5,
        "all_done_after_resume_s": 50.0,
        "accepted": 50,
        "rss_before_mb": 100.0,
        "rss_waiting_mb": 101.0,
        "rss_after_mb": 101.0,
        "process_limit": 5,
    },
}


def test_the_time_added_is_the_sum_of_the_parts_p95s(ml) -> None:
    adf = {
        "1 h": {
            "delay_p95_s": 20.0,
            "fixed_delay_p95_s": 55.0,
            "adaptive_delay_p95_s": 900.0,
            "calls": Figure.of([30]),
            "fixed_calls": Figure.of([62]),
            "calls_ratio": 0.48,
        }
    }
    [row] = waiting.time_added(STACK, ml, adf, {"1 h": 3600})
    # event -> running p95 3.9 + overhead 1 + copy 20 (+ its resume 3) + training (the push latency) 2.5
    assert row.data["ours_s"] == pytest.approx(3.9 + 1 + 23 + LATENCY, abs=0.01)
    assert row.met is False and "measured" in row.data["parts"] and "composed" in row.data["parts"]
    assert row.data["fixed_s"] > 55 and row.data["today_s"] > 900
    calls = waiting.status_calls(ml, adf, {"1 h": 3600}, repeats=2)
    assert [r.met for r in calls] == [calls[0].data["calls_ratio"] <= 0.1, True]


def test_lost_duplicated_and_concurrent_rows_hold_only_on_their_evidence(ml) -> None:
    assert waiting.lost_and_duplicated(STACK, ml, {"1 min": 60, "1 h": 3600}).met is True
    twice = dict(STACK, duplicate=dict(STACK["duplicate"], completions=2))
    assert waiting.lost_and_duplicated(twice, ml, {"1 h": 3600}).met is False
    assert waiting.concurrent_row(STACK["concurrent"], hold=20).met is True
    assert waiting.concurrent_row(dict(STACK["concurrent"], processes_while_waiting=3), hold=20).met is False


def test_on_the_retrain_itself_duplicates_and_concurrent_runs_count_registrations(ml) -> None:
    duplicate = {"runs": 2, "completions": 1, "final": "COMPLETED", "versions": 1, "jobs_created": 1}
    product = dict(STACK, product=True, duplicate=duplicate)
    assert waiting.lost_and_duplicated(product, ml, {"1 h": 3600}).met is True
    again = dict(product, duplicate=dict(duplicate, versions=2))
    assert waiting.lost_and_duplicated(again, ml, {"1 h": 3600}).met is False
    found = dict(STACK["concurrent"], registered=50, push_to_running_s=Figure.of([4.0, 5.0]), hold_s=2.0)
    row = waiting.concurrent_row(found, hold=20)
    assert row.met is True and "all 50 registered" in row.value and "job event" in row.what
    assert waiting.concurrent_row(dict(found, registered=49), hold=20).met is False


def test_waiting_is_a_suite_that_shares_pollings_run(monkeypatch) -> None:
    measured: list[int] = []
    monkeypatch.setattr(polling, "measure", lambda repeats: measured.append(repeats) or [Row("polling", "p", "1")])
    got: list[object] = []
    monkeypatch.setattr(waiting, "measure", lambda rows, **kw: got.append(rows) or [Row("waiting", "w", "2")])
    suites = bench._suites(quick=True)
    assert suites["polling"]() == [Row("polling", "p", "1")]
    assert suites["waiting"]() == [Row("waiting", "w", "2")]
    assert measured == [3] and got == [[Row("polling", "p", "1")]]  # polling measured once, its rows reused


@pytest.mark.e2e
def test_suspended_runs_hold_no_process_on_a_real_stack() -> None:
    found = waiting.on_stack(repeats=1, concurrent=3, hold=2)
    assert found["resume_to_running_s"] and all(0 < s < 300 for s in found["resume_to_running_s"])
    assert found["duplicate"]["completions"] == 1 and found["duplicate"]["again at once"] != "ACCEPT"
    concurrent = found["concurrent"]
    assert concurrent["processes_while_waiting"] == 0, concurrent["processes_while_waiting_were"]
    assert concurrent["accepted"] == 3 and concurrent["all_done_after_resume_s"] < float("inf")


@pytest.mark.e2e
def test_retrains_suspended_on_their_ml_jobs_hold_no_process_and_register_after_their_events() -> None:
    found = waiting.on_product_stack(repeats=1, concurrent=3, hold=2)
    assert found["push_to_running_s"] and all(0 < s < 300 for s in found["push_to_running_s"])
    duplicate = found["duplicate"]  # the Completed event twice and a late Running one
    assert (duplicate["completions"], duplicate["versions"], duplicate["jobs_created"]) == (1, 1, 1), duplicate
    concurrent = found["concurrent"]
    assert concurrent["processes_while_waiting"] == 0, concurrent["processes_while_waiting_were"]
    assert concurrent["registered"] == 3
