"""How long a Data Factory pipeline's runs take, learned from its recent succeeded runs, so the wait on a new
run can poll sparsely until near its expected end (Data Factory pushes nothing; every status is a call).

One ``queryPipelineRuns`` call per pipeline and ``history_ttl_minutes`` (cached per factory and pipeline,
failures too). Every field of the answer is hostile: a duration is used only when it is a finite, positive
number of milliseconds no longer than the step's timeout, of a succeeded run of this very pipeline. Whatever
goes wrong (an error, a garbled body, too few usable runs) leaves the wait on today's schedule, is logged
once per look-up and never fails the copy.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drift_retrain.backends.azure.polling import ExpectedEnd
from drift_retrain.backends.base import RunLog
from drift_retrain.config import PollingConfig

if TYPE_CHECKING:
    from azure.mgmt.datafactory import DataFactoryManagementClient
    from azure.mgmt.datafactory.models import RunFilterParameters

log = RunLog("drift_retrain.azure")

#: Fewer usable runs than this say too little about the next one: the wait keeps today's schedule.
MIN_RUNS = 3
#: Pages of the answer read at most (each up to the service's page size), so a hostile token cannot loop us.
MAX_PAGES = 5
#: azure-core attempts for the look-up beyond the first: one blip is ridden out, a dead service is not waited on.
RETRIES = 1
#: Seconds the look-up may wait for an answer (azure-core's per-call read_timeout; its default is 300 s).
READ_TIMEOUT = 30

#: The band is at least this share of the median wide each side: runs vary a little even when history does not.
MARGIN = 0.03
#: Runs further than this many interquartile ranges past the quartiles are left out of the band (Tukey's fences),
#: so one odd run in the history does not stretch it.
FENCE = 1.5
#: The band is the runs' range widened by this share of it each side: ten runs' range covers about 9/11 of where
#: the next one ends (the next of n exchangeable runs falls outside their range with probability 2/(n+1)).
WIDEN = 0.25
#: Below ``BUDGET_FROM``, the band's pause is this share of the median (floored at ``initial_interval``, capped at
#: ``max_interval``): five seconds for a ten-minute copy, so a short copy is seen ending within seconds.
DENSITY = 1 / 120
#: Runs of at least this long have a call budget (issue 16: at most half a fixed one-minute poll's calls) ...
BUDGET_FROM = 3600.0
#: ... spent across the band: a run ending ``POSITION`` of the way through it costs this share of a one-minute
#: poll's calls. Below the half with room for where in the band a run ends (the median of 11 waits stays <= 0.45
#: on every seed of benchmarks/polling.py's scenario; a run ending at the band's end costs about 0.55).
CALL_BUDGET = 0.42
POSITION = 0.7
#: Calls the budget allows for the run's first status change (Queued -> InProgress restarts the pauses at
#: ``initial_interval``) and for jitter landing the last pause before the band just short of it.
RESTART = 3

Key = tuple[str, str, str, str]


def history_query(pipeline: str, now: datetime, days: float, token: str | None = None) -> RunFilterParameters:
    """This pipeline's succeeded runs of the last ``days``, latest end first."""
    from azure.mgmt.datafactory.models import RunFilterParameters, RunQueryFilter, RunQueryOrderBy

    # RunFilterParameters: lastUpdatedAfter/lastUpdatedBefore required, filters, orderBy, continuationToken:
    # Azure/azure-rest-api-specs specification/datafactory/resource-manager/Microsoft.DataFactory/stable/2018-06-01/datafactory.json
    return RunFilterParameters(
        last_updated_after=now - timedelta(days=days),
        last_updated_before=now,
        continuation_token=token,
        # RunQueryFilter operands PipelineName and Status, operator Equals (same datafactory.json, RunQueryFilter)
        filters=[
            RunQueryFilter(operand="PipelineName", operator="Equals", values_property=[pipeline]),
            RunQueryFilter(operand="Status", operator="Equals", values_property=["Succeeded"]),
        ],
        # RunQueryOrderBy: orderBy RunEnd, order DESC (same datafactory.json, RunQueryOrderBy)
        order_by=[RunQueryOrderBy(order_by="RunEnd", order="DESC")],
    )


def durations(runs: Iterable[Any], pipeline: str, longest: float) -> list[float]:
    """Seconds each usable run took. ``runs`` are PipelineRun bodies (the SDK's models are mappings over the
    raw JSON; read raw so a garbled field is skipped, not raised on); ``longest`` bounds a believable one."""
    seen: set[str] = set()
    out: list[float] = []
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        # PipelineRun: runId, pipelineName, status strings, durationInMs integer (same datafactory.json, PipelineRun)
        run_id, name, status, ms = (run.get(k) for k in ("runId", "pipelineName", "status", "durationInMs"))
        if not isinstance(run_id, str) or run_id in seen or name != pipeline or status != "Succeeded":
            continue  # a filter the service did not apply, or a run listed twice across pages
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
            continue
        seconds = ms / 1000
        if 0 < seconds <= longest:
            seen.add(run_id)
            out.append(float(seconds))
    return out


def expectation(seconds: list[float], policy: PollingConfig) -> ExpectedEnd | None:
    """The median and the band the runs ended in, and the pause across it; None with fewer than ``MIN_RUNS``.

    The band is the runs' whole range (runs beyond Tukey's fences left out, so one odd run moves nothing), widened
    by ``WIDEN`` of it each side and to at least ``max_interval`` or 3 % of the median each side of the median.
    Its pause spends the call budget on runs of ``BUDGET_FROM`` or longer (denser than ``max_interval`` when the
    band is narrow for the run's length); shorter runs have none and are polled every ``DENSITY`` of the median,
    only stretched by a budget that loosens with the square of the shortfall (so nothing jumps at the hour).
    """
    if len(seconds) < MIN_RUNS:
        return None
    median = statistics.median(seconds)
    q1, _, q3 = statistics.quantiles(seconds, n=4, method="inclusive")
    fence = FENCE * (q3 - q1)
    kept = [s for s in seconds if q1 - fence <= s <= q3 + fence]
    spread = WIDEN * (max(kept) - min(kept))
    low = max(0.0, min(min(kept) - spread, median - max(policy.max_interval, MARGIN * median)))
    high = max(max(kept) + spread, median + max(policy.max_interval, MARGIN * median))
    interval = min(policy.max_interval, max(policy.initial_interval, DENSITY * median))
    share = CALL_BUDGET * max(1.0, BUDGET_FROM / median) ** 2
    before = _calls_before(ExpectedEnd(median, low, high, interval), policy) + RESTART
    calls = share * (median / 60 + 1) - 1 - before  # a one-minute poll's calls, less the look-up and the approach
    if calls > 0:
        spent = max(policy.initial_interval, POSITION * (high - low) / calls)
        interval = spent if median >= BUDGET_FROM else max(interval, spent)
    return ExpectedEnd(median=median, low=low, high=high, interval=interval)


def _calls_before(expected: ExpectedEnd, policy: PollingConfig) -> int:
    """Status calls the schedule makes before the band (no jitter, no status change on the way)."""
    age, calls = 0.0, 0
    while age < expected.low and calls < 1000:
        grown = policy.initial_interval * policy.backoff ** min(calls, 64)
        age += min(expected.ceiling(age, policy), grown)
        calls += 1
    return calls


class RunHistory:
    """Expected ends per (subscription, resource group, factory, pipeline), kept ``history_ttl_minutes``.
    One per process (``HISTORY``): every flow run in a worker shares what one look-up learned."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lookups = 0
        self._cache: dict[Key, tuple[float, ExpectedEnd | None]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def expected(
        self,
        client: DataFactoryManagementClient,
        key: Key,
        policy: PollingConfig,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> ExpectedEnd | None:
        """The pipeline's expected end, from the cache or one look-up; None (today's schedule) when history is
        off, unusable or unavailable."""
        if policy.history_runs <= 0:
            return None
        key = (key[0].lower(), key[1].lower(), key[2].lower(), key[3])
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self.clock() - cached[0] < policy.history_ttl_minutes * 60:
                return cached[1]
        found = self._look_up(client, key, policy, now())
        with self._lock:
            self._cache[key] = (self.clock(), found)
        return found

    def _look_up(
        self, client: DataFactoryManagementClient, key: Key, policy: PollingConfig, now: datetime
    ) -> ExpectedEnd | None:
        _, resource_group, factory, pipeline = key
        self.lookups += 1
        seconds: list[float] = []
        try:
            token: str | None = None
            for _ in range(MAX_PAGES):
                page = client.pipeline_runs.query_by_factory(
                    resource_group,
                    factory,
                    history_query(pipeline, now, policy.history_days, token),
                    retry_total=RETRIES,
                    read_timeout=READ_TIMEOUT,
                )
                # PipelineRunsQueryResponse: value[] of PipelineRun, continuationToken (same datafactory.json)
                value = page.get("value")
                seconds += durations(value if isinstance(value, list) else [], pipeline, policy.timeout_minutes * 60)
                next_token = page.get("continuationToken")
                if len(seconds) >= policy.history_runs or not isinstance(next_token, str) or not next_token:
                    break
                token = next_token
        except Exception as exc:  # any failure of an optional look-up: the wait goes on as before
            log.warning(
                "copy: could not read the recent runs of Data Factory pipeline %s (%s: %s); polling on the default "
                "schedule for %g min",
                pipeline,
                type(exc).__name__,
                str(exc)[:200],
                policy.history_ttl_minutes,
            )
            return None
        found = expectation(seconds[: policy.history_runs], policy)
        if found is None:
            log.info(
                "copy: Data Factory pipeline %s has %d usable succeeded runs in %g days (%d needed); polling on the "
                "default schedule",
                pipeline,
                len(seconds),
                policy.history_days,
                MIN_RUNS,
            )
        else:
            log.info(
                "copy: Data Factory pipeline %s usually takes %.4g s (%.4g-%.4g s over %d runs); polling densely "
                "around that",
                pipeline,
                found.median,
                found.low,
                found.high,
                min(len(seconds), policy.history_runs),
            )
        return found


#: The process's history: flow runs in one worker share it.
HISTORY = RunHistory()
