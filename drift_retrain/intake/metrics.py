"""The receiver's counters in the Prometheus text format (served at ``GET /metrics``).

One registry per app, so several receivers (or tests) in one process never share counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Event outcomes: handed off as a new run, found an existing run, acknowledged without a run, refused
#: with the whole delivery (400/413), or not recorded by Prefect (503, Event Grid retries).
OUTCOMES = ("accepted", "duplicate", "ignored", "rejected", "failed_handoff")
#: Job events of our training jobs (``job_events``/``job_wake``): acknowledged, posted to Prefect as an event,
#: suspended runs resumed, v1 runs the ledger did not confirm, not handled (Prefect failed) or dropped (queue full).
JOB_OUTCOMES = ("received", "emitted", "resumed", "unconfirmed", "failed", "dropped")


class ReceiverMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "drift_retrain_events", "Events received, by outcome", ["outcome"], registry=self.registry
        )
        self.requests = Counter(
            "drift_retrain_requests",
            "HTTP requests to the Event Grid endpoint, by status",
            ["status"],
            registry=self.registry,
        )
        self.timeouts = Counter(
            "drift_retrain_client_timeouts",
            "Connections closed because the client was too slow: its request headers (header), or a body "
            "(body: answered 408, or the unread rest of a refused one)",
            ["phase"],
            registry=self.registry,
        )
        self.handoff_seconds = Histogram(
            "drift_retrain_handoff_seconds",
            "Time from receipt until Prefect recorded every run of a delivery",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
            registry=self.registry,
        )
        self.jobs = Counter(
            "drift_retrain_job_events",
            "Azure ML job events of our training jobs, by outcome (resumed counts flow runs)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # present from the start, so rate() works before the first event
            self.events.labels(outcome)
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome)
        for phase in ("header", "body"):
            self.timeouts.labels(phase)

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.events.labels(outcome).inc(n)

    def count_jobs(self, outcome: str, n: int = 1) -> None:
        if n:
            self.jobs.labels(outcome).inc(n)

    def timed_out(self, phase: str) -> None:
        self.timeouts.labels(phase).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
