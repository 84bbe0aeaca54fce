"""What each step of a retrain produces: typed records shared by backends, tasks and reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from drift_retrain.names import GATE_FAILED, GATE_OFF, GATE_PASSED, GATED, RETRAIN, SKIP
from drift_retrain.text import one_line

#: Most characters of a run's final state message (one line: the run list shows it beside the state).
MAX_STATE_MESSAGE = 200


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


#: The feature name of a metric computed over the whole dataset (no feature or group).
OVERALL = "(overall)"


class Distribution(_Record):
    """One feature's values in one sample, summarised for a person reading the drift table: a number's mean and
    a few quantiles, or a category's most frequent values with their share of the rows. Bounded by whoever
    builds it (``drift_stats.QUANTILES``, ``drift_stats.TOP_CATEGORIES``)."""

    rows: int
    mean: float | None = None
    quantiles: dict[str, float] = Field(default_factory=dict, description="e.g. p10, p50, p90")
    top: dict[str, float] = Field(
        default_factory=dict, description="A categorical feature's most frequent values -> share of the rows"
    )


class Histogram(_Record):
    """The reference's and the current window's share of rows in the same bins, for the drift table's image."""

    edges: list[float] = Field(description="Bin edges, one more than the shares")
    reference: list[float]
    current: list[float]


class FeatureDrift(_Record):
    """One feature's drift between the reference and the drift window.

    The local monitor computes every statistic; Azure reports only some (v1: contribution and
    Wasserstein distance; v2: the signal's configured metrics), so a statistic the source does not
    report is None rather than a made-up 0.
    """

    feature: str
    psi: float | None = Field(default=None, description="Population stability index (quantile bins of the reference)")
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    wasserstein: float | None = Field(
        default=None, description="Wasserstein distance (local: in units of the reference's std)"
    )
    contribution: float | None = Field(
        default=None, description="Share of the dataset-level drift, like Azure's datadrift_contribution"
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Other per-feature metrics, by the source's names"
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Each metric's threshold, by the source's names, where the source has one"
    )
    reference: Distribution | None = Field(default=None, description="The feature in the reference data")
    current: Distribution | None = Field(default=None, description="The feature in the drift window")
    histogram: Histogram | None = None


class DriftDetails(_Record):
    """The drift run's details, as far as they can be had."""

    available: bool
    source: str = Field(description="Where the details came from, or why they could not be had")
    drift_coefficient: float | None = None
    threshold: float | None = None
    rows_in_window: int | None = None
    features: list[FeatureDrift] = Field(default_factory=list)
    distributions_missing: str | None = Field(
        default=None, description="Why the features carry no reference/current summaries, said in their cells"
    )

    def top_features(self, n: int = 5) -> list[FeatureDrift]:
        return sorted(self.features, key=lambda f: -1.0 if f.contribution is None else f.contribution, reverse=True)[:n]


class Check(_Record):
    """One rule of the policy and how the signal fared against it."""

    rule: str
    passed: bool
    detail: str


class Decision(_Record):
    """Retrain or skip, with every check that led there."""

    retrain: bool
    checks: list[Check]
    forced: bool = False

    @property
    def gate(self) -> str:
        """``passed``/``failed`` as the champion/challenger gate's check says, ``off`` when none ran."""
        checks = [c for c in self.checks if c.rule == "gate"]
        if not checks:
            return GATE_OFF
        return GATE_PASSED if checks[-1].passed else GATE_FAILED

    @property
    def summary(self) -> str:
        verdict = "retrain" if self.retrain else "skip"
        failed = [c.detail for c in self.checks if not c.passed]
        why = failed if not self.retrain else [c.detail for c in self.checks if c.passed]
        return f"{verdict}: " + "; ".join(why)


class CopyResult(_Record):
    """What the copy moved, in the vocabulary of Data Factory's Copy activity output.

    Data Factory counts no rows when it copies files as-is without parsing them (binary copy), so the row
    counts may be unknown; bytes and files are always counted (0 when nothing was reported).
    """

    run_id: str
    status: str
    rows_read: int | None = Field(description="None: the copy reported no rows (a binary, as-is file copy)")
    rows_copied: int | None = Field(description="None: the copy reported no rows (a binary, as-is file copy)")
    data_read: int = Field(description="bytes")
    data_written: int = Field(description="bytes")
    files_read: int
    files_written: int
    copy_duration: float = Field(description="seconds")
    throughput: float = Field(description="KB/s")
    output_uri: str = Field(description="Where the copied data lives, the training step's input")
    source_uri: str | None = Field(default=None, description="Where the copied data landed (None: not reported)")
    reattached: bool = Field(default=False, description="True when an earlier copy of this signal was reused")


class TrainingResult(_Record):
    """A finished training run and its holdout metrics."""

    job_id: str
    status: str
    metrics: dict[str, float]
    rows_train: int
    rows_test: int = Field(description="The holdout the metrics were measured on")
    model_uri: str
    algorithm: str | None = Field(default=None, description="e.g. the scikit-learn estimator's class name")
    rows_reference: int | None = Field(default=None, description="Rows of the reference data trained and tested on")
    rows_window: int | None = Field(default=None, description="Rows of the drift window trained and tested on")
    data_location: str | None = Field(default=None, description="Where the training data lives, as text")
    duration: float = Field(description="seconds")
    reattached: bool = False


class ModelVersion(_Record):
    """A registered model version and the lineage it carries."""

    name: str
    version: int
    uri: str
    created_at: datetime
    tags: dict[str, str]
    metrics: dict[str, float] = Field(default_factory=dict)
    already_registered: bool = Field(default=False, description="True when this signal had registered it before")


class Outcome(StrEnum):
    RETRAINED = "retrained"
    SKIPPED = "skipped"


class RetrainOutcome(_Record):
    """Everything one drift-to-retrain run did, returned by the flow and persisted as its result."""

    outcome: Outcome
    reason: str
    signal_identity: str
    target: str
    model_name: str
    decision: Decision
    details: DriftDetails | None = None
    copy_result: CopyResult | None = None
    training: TrainingResult | None = None
    model: ModelVersion | None = None

    @property
    def verdict(self) -> str:
        """``retrain`` (a version is registered), ``gated`` (trained, but the gate refused it) or ``skip``."""
        if self.model is not None:
            return RETRAIN
        return GATED if self.decision.gate == GATE_FAILED else SKIP

    @property
    def message(self) -> str:
        """The run's final state message, the outcome at a glance: ``retrained → credit-default v2``,
        ``skipped: cooldown: v1 was registered 20 min ago, …``, ``gated: challenger roc_auc = 0.7860 does not
        beat champion v1 = 0.8040 …``. One bounded line: a rule's detail may quote event text."""
        if self.model is not None:
            reused = " (registered before, reused)" if self.model.already_registered else ""
            return one_line(f"retrained → {self.model.name} v{self.model.version}{reused}", MAX_STATE_MESSAGE)
        failed = [c for c in self.decision.checks if not c.passed]
        if self.verdict == GATED:
            failed = [c for c in failed if c.rule == "gate"]
        why = "; ".join(c.detail for c in failed) or self.reason
        return one_line(f"{'gated' if self.verdict == GATED else 'skipped'}: {why}", MAX_STATE_MESSAGE)

    @classmethod
    def of(
        cls,
        signal_identity: str,
        target: str,
        model_name: str,
        decision: Decision,
        *,
        details: DriftDetails | None = None,
        copy_result: CopyResult | None = None,
        training: TrainingResult | None = None,
        model: ModelVersion | None = None,
    ) -> RetrainOutcome:
        """Retrained when a model was registered, else skipped; the decision's summary says why."""
        outcome = Outcome.RETRAINED if model is not None else Outcome.SKIPPED
        return cls(
            outcome=outcome,
            reason=decision.summary,
            signal_identity=signal_identity,
            target=target,
            model_name=model_name,
            decision=decision,
            details=details,
            copy_result=copy_result,
            training=training,
            model=model,
        )
