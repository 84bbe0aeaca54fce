"""Learning a Data Factory pipeline's usual duration: which runs count, the robust band, the per-pipeline cache."""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from drift_retrain.backends.azure.pipeline_durations import RunHistory, durations, expectation
from drift_retrain.backends.azure.polling import ExpectedEnd, Poller
from drift_retrain.config import PollingConfig

POLICY = PollingConfig()
SPEC_EXAMPLE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "datafactory" / "spec-example_PipelineRuns_QueryByFactory.json"
)


def run(ms: Any, run_id: str = "r", pipeline: str = "Copy", status: str = "Succeeded") -> dict[str, Any]:
    return {"runId": run_id, "pipelineName": pipeline, "status": status, "durationInMs": ms}


def test_the_spec_example_answer_yields_the_succeeded_runs_duration_only() -> None:
    body = json.loads(SPEC_EXAMPLE.read_text(encoding="utf-8"))["responses"]["200"]["body"]
    assert durations(body["value"], "examplePipeline", longest=3600) == [28.105]  # the Cancelled run has none


@pytest.mark.parametrize(
    "hostile",
    [
        run(None),
        run("3600000"),
        run(True),
        run(-5),
        run(0),
        run(math.nan),
        run(math.inf),
        run(10 * 3600 * 1000),  # longer than the step's timeout: not a duration this wait could see
        run(60_000, pipeline="Other"),
        run(60_000, status="Failed"),
        run(60_000, run_id=None),  # type: ignore[arg-type]
        "not a run",
        None,
        ["list"],
    ],
)
def test_a_hostile_entry_is_skipped_not_raised_on(hostile: Any) -> None:
    assert durations([hostile, run(60_000, run_id="good")], "Copy", longest=6 * 3600) == [60.0]


def test_a_run_listed_twice_counts_once() -> None:
    assert durations([run(60_000, "a"), run(60_000, "a"), run(90_000, "b")], "Copy", longest=3600) == [60.0, 90.0]


def test_the_expectation_is_the_median_and_interquartile_band_so_one_odd_run_does_not_move_it() -> None:
    seconds = [3600.0] * 9 + [36_000.0]
    found = expectation(seconds, POLICY)
    assert found is not None
    assert found.median == 3600 and found.low == pytest.approx(3600 - 108) and found.high == pytest.approx(3600 + 108)
    assert sum(seconds) / len(seconds) > 6000  # the mean would have put the expected end an hour and a half late


def test_the_band_spans_all_the_runs_widened_by_a_quarter_of_their_range_each_side() -> None:
    found = expectation([3000.0, 3300.0, 3500.0, 3600.0, 3700.0, 3900.0, 4200.0], POLICY)
    assert found is not None and (found.low, found.median, found.high) == (2700.0, 3600.0, 4500.0)


@pytest.mark.parametrize(("median", "interval"), [(60.0, 5.0), (600.0, 5.0), (1800.0, 15.0), (3000.0, 25.0)])
def test_a_short_pipelines_band_is_polled_every_120th_of_its_median(median: float, interval: float) -> None:
    found = expectation([median * 0.95, median, median * 1.05], POLICY)
    assert found is not None and found.interval == pytest.approx(interval)


def test_an_hour_or_more_spends_its_call_budget_denser_than_max_interval_when_the_band_is_narrow() -> None:
    within_4_percent = (0.96, 0.98, 1.0, 1.02, 1.04)
    six_hours = expectation([21_600.0 * f for f in within_4_percent], POLICY)
    hour = expectation([3600.0 * f for f in within_4_percent], POLICY)
    assert six_hours is not None and hour is not None
    for found in (six_hours, hour):
        assert found.interval is not None and found.interval < POLICY.max_interval


class VirtualClock:
    """Seconds that pass only when the poller sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def waited(expected: ExpectedEnd | None, queued: float, ends_at: float, rng: random.Random, policy: PollingConfig) -> tuple[int, float]:
    """Status calls and detection delay of one wait on the real Poller, virtual clock."""
    clock = VirtualClock()
    poller: Poller[str] = Poller(policy, "copy", clock=clock, sleep=clock.sleep, rng=rng.random,
                                 on_change=lambda *_: None, expected=expected)

    def fetch() -> str:
        return "Queued" if clock.now < queued else "InProgress" if clock.now < ends_at else "Succeeded"

    poller.wait("r", fetch, str, {"Succeeded"})
    return poller.calls, clock.now - ends_at


FIXED_60S = PollingConfig(initial_interval=60, max_interval=60, backoff=1, jitter=0, patience=0,
                          max_patient_interval=60, timeout_minutes=24 * 60, history_runs=0)
LONG = PollingConfig(timeout_minutes=24 * 60)


def scenario(length: float, seed: int, waits: int = 11) -> tuple[list[int], list[int], list[float]]:
    """benchmarks/polling.py's scenario: ten earlier runs of 90-110 % of ``length`` (each queued 0-30 s), then
    runs within ±10 % of them waited on: calls (with the look-up), a fixed 60 s poll's calls, delays."""
    rng = random.Random(seed)
    calls, fixed, delays = [], [], []
    for _ in range(waits):
        history = [rng.uniform(0, 30) + length * rng.uniform(0.9, 1.1) for _ in range(10)]
        queued = rng.uniform(0, 30)
        ends_at = queued + length * rng.uniform(0.9, 1.1)
        ours, delay = waited(expectation(history, LONG), queued, ends_at, rng, LONG)
        calls.append(ours + 1)
        fixed.append(waited(None, queued, ends_at, rng, FIXED_60S)[0])
        delays.append(delay)
    return calls, fixed, delays


@pytest.mark.parametrize("length", [3600.0, 6 * 3600.0])
def test_an_hours_run_costs_under_045_of_a_fixed_one_minute_poll_on_every_seed(length: float) -> None:
    for seed in range(12):
        calls, fixed, _ = scenario(length, seed)
        assert statistics.median(calls) / statistics.median(fixed) <= 0.45, seed


@pytest.mark.parametrize("length", [60.0, 600.0])
def test_a_short_copy_is_seen_ending_within_seconds(length: float) -> None:
    delays = [d for seed in range(6) for d in scenario(length, seed)[2]]
    assert statistics.quantiles(delays, n=20, method="inclusive")[-1] <= 10.0  # p95, over 66 waits


def test_a_six_hour_copy_is_seen_within_about_the_band_interval_not_a_quarter_of_its_overrun() -> None:
    delays = [d for seed in range(6) for d in scenario(6 * 3600.0, seed)[2]]
    assert statistics.quantiles(delays, n=20, method="inclusive")[-1] <= 45.0  # p95, over 66 waits


def test_fewer_than_three_runs_say_nothing() -> None:
    assert expectation([60.0, 61.0], POLICY) is None


class Runs:
    """A stand-in for ``client.pipeline_runs``: answers each query with the next item (a page or an error)."""

    def __init__(self, *answers: Any) -> None:
        self.answers, self.queries = list(answers), []

    def query_by_factory(self, resource_group: str, factory: str, query: Any, **kwargs: Any) -> Any:
        self.queries.append((resource_group, factory, query, kwargs))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Client:
    def __init__(self, runs: Runs) -> None:
        self.pipeline_runs = runs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def page(*seconds: float, token: str | None = None) -> dict[str, Any]:
    return {"value": [run(int(s * 1000), f"r{i}-{s}") for i, s in enumerate(seconds)], "continuationToken": token}


KEY = ("sub", "RG", "Factory", "Copy")


def test_one_look_up_per_pipeline_and_ttl() -> None:
    clock, runs = Clock(), Runs(page(600, 610, 620))
    history = RunHistory(clock)

    first = history.expected(Client(runs), KEY, POLICY)  # type: ignore[arg-type]
    clock.now = 59 * 60
    again = history.expected(Client(runs), ("SUB", "rg", "factory", "Copy"), POLICY)  # type: ignore[arg-type]
    assert first is not None and again == first and len(runs.queries) == 1  # ARM names are case-insensitive
    history.expected(Client(runs), ("sub", "rg", "factory", "OtherCopy"), POLICY)  # type: ignore[arg-type]
    assert len(runs.queries) == 2  # another pipeline: its own look-up
    clock.now = 61 * 60
    history.expected(Client(runs), KEY, POLICY)  # type: ignore[arg-type]
    assert len(runs.queries) == 3  # past the TTL: asked again


def test_pages_are_read_until_enough_runs_and_at_most_five() -> None:
    runs = Runs(page(600, token="t1"), page(610, token="t2"), page(620, token="t3"), page(630, token="loop"))
    found = RunHistory(Clock()).expected(Client(runs), KEY, PollingConfig(history_runs=3))  # type: ignore[arg-type]
    assert found is not None and found.median == 610 and len(runs.queries) == 3
    assert [q[2].continuation_token for q in runs.queries] == [None, "t1", "t2"]

    endless = Runs(page(token="again"))
    assert RunHistory(Clock()).expected(Client(endless), KEY, POLICY) is None  # type: ignore[arg-type]
    assert len(endless.queries) == 5


def test_a_failed_look_up_falls_back_is_logged_once_and_not_repeated_within_the_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = Runs(ConnectionError("reset by peer"))
    history = RunHistory(Clock())
    with caplog.at_level(logging.WARNING, logger="drift_retrain.azure"):
        assert history.expected(Client(runs), KEY, POLICY) is None  # type: ignore[arg-type]
        assert history.expected(Client(runs), KEY, POLICY) is None  # type: ignore[arg-type]
    assert len(runs.queries) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "copy: could not read the recent runs of Data Factory pipeline Copy (ConnectionError: reset by peer); "
        "polling on the default schedule for 60 min"
    ]


@pytest.mark.parametrize("garbled", [{"value": "runs"}, {"value": None}, {}, {"value": [1, 2, 3]}])
def test_a_garbled_answer_falls_back(garbled: dict[str, Any]) -> None:
    assert RunHistory(Clock()).expected(Client(Runs(garbled)), KEY, POLICY) is None  # type: ignore[arg-type]


def test_history_runs_zero_asks_nothing() -> None:
    runs = Runs(page(600, 610, 620))
    assert RunHistory(Clock()).expected(Client(runs), KEY, PollingConfig(history_runs=0)) is None  # type: ignore[arg-type]
    assert runs.queries == []
