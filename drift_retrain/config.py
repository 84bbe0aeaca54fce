"""The one configuration file: which workspaces and monitors map to which retraining targets.

Which backend a target uses is configuration, not code: a target is a ``LocalTarget`` or an ``AzureTarget``,
told apart by its ``backend`` field, and each carries only its own backend's copy, training and registry
sections. A wrong or missing field fails at start with a message that names the file and the field.
"""

from __future__ import annotations

import os
import tomllib
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from drift_retrain.breaches import MAX_NAME
from drift_retrain.intake.filters import EventFilter
from drift_retrain.routing import NoRoute, Route, route
from drift_retrain.signals import EARLIEST, MAX_AHEAD, MAX_WINDOW, DriftSignal, SignalLimits, is_workspace_id
from drift_retrain.templating import Template, TemplateMap

CONFIG_ENV = "DRIFT_RETRAIN_CONFIG"
DEFAULT_CONFIG = "drift-retrain.toml"

Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
#: A v2 monitor signal's name as the breach tag spells it (bounded and printable like the names read from it).
SignalName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


def _workspace(value: str) -> str:
    if not is_workspace_id(value):
        raise ValueError(
            "must be an Azure ML workspace ARM id: /subscriptions/<id>/resourceGroups/<rg>/providers/"
            "Microsoft.MachineLearningServices/workspaces/<name>"
        )
    return value


WorkspaceId = Annotated[str, AfterValidator(_workspace)]

_FACTORY_ID = r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DataFactory/factories/[^/]+$"
FactoryId = Annotated[
    str,
    Field(
        pattern=_FACTORY_ID,
        description="ARM id: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.DataFactory/factories/<name>",
    ),
]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the field."""


class UnroutableSignal(ValueError):
    """No configured target takes this signal's workspace and monitor (or v2 signal)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


EVENT_GRID_APP_ID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"  # the "Azure Event Grid" first-party app


class EntraConfig(_Strict):
    """Microsoft Entra protected delivery: Event Grid sends a bearer JWT issued by this tenant."""

    tenant_id: str = Field(min_length=1, description="Directory (tenant) id of the webhook's app registration.")
    audiences: list[str] = Field(
        min_length=1, description="Accepted token audiences: the webhook app's client id and/or App ID URI."
    )
    jwks_url: str | None = Field(
        default=None, description="Where the token signing keys are read; unset: the tenant's v2.0 discovery keys."
    )
    issuers: list[str] | None = Field(
        default=None, description="Accepted token issuers; unset: the tenant's v1 and v2 issuers."
    )
    event_grid_app_id: str = Field(
        default=EVENT_GRID_APP_ID,
        description="The caller a token must name in appid (v1) / azp (v2): Azure Event Grid's app.",
    )
    jwks_cache_seconds: float = Field(
        default=3600, gt=0, description="How long fetched signing keys are reused before a refetch."
    )
    leeway_seconds: float = Field(default=60, ge=0, le=300, description="Clock skew allowed on a token's exp and nbf.")

    def keys_url(self) -> str:
        return self.jwks_url or f"https://login.microsoftonline.com/{self.tenant_id}/discovery/v2.0/keys"

    def accepted_issuers(self) -> list[str]:
        return self.issuers or [
            f"https://sts.windows.net/{self.tenant_id}/",
            f"https://login.microsoftonline.com/{self.tenant_id}/v2.0",
        ]


class HandoffConfig(_Strict):
    """How the receiver writes to Prefect: one ordered writer, batched, bounded, retried."""

    batch_size: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Most flow runs created per Prefect request (Prefect's bulk limit is 100; see benchmarks/).",
    )
    max_pending: int = Field(
        default=5000, ge=1, description="Signals that may wait for the writer; beyond that a delivery gets 503 at once."
    )
    deadline_seconds: float = Field(
        default=20,
        gt=0,
        le=28,
        description="How long a delivery waits for Prefect before a 503, within Event Grid's 30 s timeout.",
    )
    retry_after_seconds: int = Field(default=30, ge=1, description="The Retry-After header sent with a 503.")


MIB = 1024 * 1024


class ReceiverConfig(_Strict):
    """The Event Grid webhook receiver."""

    auth: Literal["secret", "entra", "none"] = Field(
        default="secret",
        description="How deliveries prove they come from Event Grid: secret (?code= or secret_header), entra (bearer JWT) "
        "or none (local use only).",
    )
    secret_env: str = Field(
        default="DRIFT_RETRAIN_WEBHOOK_SECRET",
        description="Environment variable holding the shared secret Event Grid sends as ?code=.",
    )
    secret_header: str | None = Field(
        default=None, description="A header that may carry the secret instead (an Event Grid delivery property)."
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description='Accept deliveries without a secret; needed by auth = "none" (local experiments only).',
    )
    entra: EntraConfig | None = Field(
        default=None, description='The tenant and audiences auth = "entra" checks tokens against.'
    )
    public_url: str | None = Field(
        default=None,
        description="The https URL Event Grid posts to (without the secret), used by `azure subscription`.",
    )
    allowed_origins: list[str] = Field(
        default=["eventgrid.azure.net"],
        description="WebHook-Request-Origin values accepted in a CloudEvents validation handshake.",
    )
    max_event_bytes: int = Field(
        default=MIB, ge=1024, description="Largest single event accepted (Event Grid's own limit is 1 MB)."
    )
    max_batch_bytes: int = Field(
        default=4 * MIB, ge=1024, description="Largest delivery accepted (Event Grid batches up to 1 MB; 4x headroom)."
    )
    max_batch_events: int = Field(
        default=5000, ge=1, description="Most events accepted in one delivery (Event Grid's limit is 5000)."
    )
    earliest_time: datetime = Field(
        default=EARLIEST.isoformat().replace("+00:00", "Z"),  # text: the generated reference shows it as written
        validate_default=True,
        description="Earliest event time or drift window accepted (UTC when no offset is given); older is a 400.",
    )
    max_future_hours: float = Field(
        default=MAX_AHEAD.total_seconds() / 3600,
        gt=0,
        le=7 * 24,
        description="How far past this machine's clock an event time or window end may lie (a manual window ends at "
        "the coming midnight UTC); later is a 400.",
    )
    max_window_days: int = Field(
        default=MAX_WINDOW.days,
        ge=1,
        le=366,
        description="Longest drift window accepted: one Azure ML v1 monitor run covers a day, a week or a month.",
    )
    header_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=60,
        description="Longest a client may take to send a request's line and headers (from connecting, or from the "
        "first byte of a next request on a kept-alive connection); then the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=28,
        description="Longest a delivery's body may take to arrive once its headers are in; then it is answered 408 "
        "and the connection closed (within Event Grid's 30 s response timeout).",
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, le=60, description="How long an idle kept-alive connection stays open (uvicorn's keep-alive)."
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=4096,
        le=MIB,
        description="Largest request line plus headers (h11's incomplete-event limit; an Entra token is ~2 KB); "
        "larger is answered 400 and closed.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections (or requests in progress) beyond which uvicorn answers 503 at once "
        "(its limit_concurrency), so Event Grid retries later.",
    )
    max_concurrent_parses: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Large deliveries parsed and routed at once, each in a worker thread off the event loop; "
        "others wait their turn (the event loop keeps answering meanwhile).",
    )
    handoff: HandoffConfig = Field(
        default=HandoffConfig(), description="How accepted signals are written to Prefect as flow runs."
    )
    event_feed: bool = Field(
        default=True,
        description="Post an azureml.drift.detected Prefect event per accepted signal (off spares Prefect "
        "their ingestion; the hand-off benchmark measures 1 concurrent delivery both ways).",
    )

    @model_validator(mode="after")
    def _auth_is_explicit(self) -> ReceiverConfig:
        if self.public_url is not None and not self.public_url.lower().startswith("https://"):
            raise ValueError("public_url must be an https:// URL (Event Grid only delivers to HTTPS)")
        if self.max_batch_bytes < self.max_event_bytes:
            raise ValueError("max_batch_bytes must be at least max_event_bytes")
        if self.auth == "none" and not self.allow_unauthenticated:
            raise ValueError('auth = "none" also needs allow_unauthenticated = true (local use only)')
        if self.auth == "entra" and self.entra is None:
            raise ValueError('auth = "entra" needs a [receiver.entra] section (tenant_id, audiences)')
        return self

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) or None

    @property
    def signal_limits(self) -> SignalLimits:
        """The bounds every signal's times are validated against, wherever it is made (receiver, sweep, manual)."""
        earliest = self.earliest_time if self.earliest_time.tzinfo else self.earliest_time.replace(tzinfo=UTC)
        return SignalLimits(
            earliest=earliest,
            ahead=timedelta(hours=self.max_future_hours),
            max_window=timedelta(days=self.max_window_days),
        )


class PolicyConfig(_Strict):
    """When a drift signal is worth a retrain."""

    drift_threshold: float = Field(
        default=0.3, ge=0, le=1, description="The v1 drift coefficient at or above which a model is retrained."
    )
    min_rows: int = Field(default=100, ge=0, description="Fewest new rows in the drift window worth training on.")
    cooldown_minutes: float = Field(
        default=60, ge=0, description="Quiet time after a model's last retrain during which drift is not acted on."
    )


class GateConfig(_Strict):
    """Champion/challenger: register only a model at least as good as the current latest version."""

    metric: str = Field(min_length=1, description="The training metric compared with the champion's, e.g. 'roc_auc'.")
    higher_is_better: bool = Field(
        default=True, description="Whether a larger value of the metric is the better model."
    )
    min_improvement: float = Field(default=0.0, description="Margin by which the new model must beat the champion.")


class EventSubscriptionConfig(EventFilter):
    """One Event Grid subscription feeding a target: its filters (checked again on receipt) and delivery."""

    name: Name = Field(description="The Event Grid event subscription's name.")
    delivery_schema: Literal["EventGridSchema", "CloudEventSchemaV1_0"] = Field(
        default="EventGridSchema", description="The schema Event Grid delivers events in."
    )
    max_delivery_attempts: int = Field(
        default=30, ge=1, le=30, description="How often Event Grid retries a delivery before giving up."
    )
    event_ttl_minutes: int = Field(
        default=1440, ge=1, le=1440, description="How long Event Grid keeps retrying an event."
    )
    max_events_per_batch: int = Field(
        default=1, ge=1, le=5000, description="Most events Event Grid puts in one delivery."
    )
    preferred_batch_size_kb: int = Field(
        default=64, ge=1, le=1024, description="Size Event Grid aims for when batching events."
    )
    dead_letter_endpoint: str | None = Field(
        default=None, description="ARM id of a storage blob container that receives the events Event Grid gave up on."
    )


# ------------------------------------------------------------------------------------------------
# The local backend's sections
# ------------------------------------------------------------------------------------------------


class LocalCopyConfig(_Strict):
    """Local stand-in for the Data Factory copy: landing folder -> training store."""

    kind: Literal["local"] = Field(
        default="local", description="The only copy kind of the local backend; may be left out."
    )
    source: Path = Field(description="Landing folder with date=YYYY-MM-DD/ partitions the drift window is read from.")
    sink: Path = Field(description="Training store folder the window's data is copied into.")


class LocalTrainingConfig(_Strict):
    """Local stand-in for the published training pipeline: a scikit-learn run."""

    kind: Literal["local"] = Field(
        default="local", description="The only training kind of the local backend; may be left out."
    )
    reference: Path = Field(
        description="The reference (baseline) training data, a CSV file trained on with the new window."
    )
    label: str = Field(min_length=1, description="The label column the model predicts.")
    test_size: float = Field(
        default=0.25, gt=0, lt=1, description="Share of the rows held out to compute the model's metrics."
    )
    seed: int = Field(
        default=7, description="Random seed of the holdout split and the model, so a rerun trains the same model."
    )


class LocalRegistryConfig(_Strict):
    """Local stand-in for the Azure ML model registry: versioned folders."""

    kind: Literal["local"] = Field(
        default="local", description="The only registry kind of the local backend; may be left out."
    )
    path: Path = Field(default=Path("registry"), description="Folder holding one folder per model and version.")


class LocalMonitorConfig(_Strict):
    """A local drift monitor: compares a landing window with the reference, like Azure ML data drift."""

    name: Name = Field(description="The monitor's name, as its drift events carry it and targets' monitors list it.")
    workspace: WorkspaceId = Field(description="ARM id of the Azure ML workspace its drift events claim to come from.")
    reference: Path = Field(description="The reference (baseline) data, a CSV file.")
    landing: Path = Field(
        description="Landing folder with date=YYYY-MM-DD/ partitions the current window is read from."
    )
    label: str | None = Field(default=None, description="A column left out of the drift statistics (the label).")
    threshold: float = Field(
        default=0.3, ge=0, le=1, description="Drift coefficient at or above which a drift event is posted."
    )
    window_days: int = Field(default=7, ge=1, description="Days of landing data compared with the reference.")


# ------------------------------------------------------------------------------------------------
# The azure backend's sections
# ------------------------------------------------------------------------------------------------


class CredentialConfig(_Strict):
    """Which Microsoft Entra identity the azure backend acts as (azure-identity)."""

    kind: Literal["default", "managed_identity", "workload_identity", "client_secret"] = Field(
        default="default",
        description="The azure-identity credential used: DefaultAzureCredential unless a specific identity is configured.",
    )
    client_id: str | None = Field(
        default=None, description="Client id of a user-assigned managed identity or an app registration."
    )
    tenant_id: str | None = Field(default=None, description="Directory (tenant) id the identity signs in to.")
    client_secret_env: str | None = Field(
        default=None, description="Environment variable holding the client secret (kind = client_secret)."
    )
    token_file: Path | None = Field(default=None, description="Federated token file (kind = workload_identity).")

    @model_validator(mode="after")
    def _complete(self) -> CredentialConfig:
        if self.kind == "client_secret":
            missing = [n for n in ("tenant_id", "client_id", "client_secret_env") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"kind 'client_secret' needs {', '.join(missing)}")
        return self


class PollingConfig(_Strict):
    """How a wait on a Data Factory run or an ML job polls: adaptive, jittered, bounded.

    Young runs are watched closely (a run of up to ``patient_after_minutes`` is seen ending within about
    ``max_interval``); older runs are polled with patience, the pause growing with the time past that
    age up to ``max_patient_interval``, so hours-long runs cost a few dozen calls (see benchmarks/)."""

    initial_interval: float = Field(default=5.0, gt=0, description="Seconds before the first status call.")
    max_interval: float = Field(default=30.0, gt=0, description="Longest pause, in seconds, while the run is young.")
    backoff: float = Field(default=2.0, ge=1, description="Factor each unchanged status stretches the pause by.")
    jitter: float = Field(
        default=0.1, ge=0, le=1, description="Random +/- share of each pause, so waits do not poll in step."
    )
    timeout_minutes: float = Field(
        default=360, gt=0, description="Overall limit of a wait; the run is cancelled past it."
    )
    patient_after_minutes: float = Field(
        default=10, ge=0, description="Age of the wait after which pauses may exceed max_interval."
    )
    patience: float = Field(
        default=2.0, ge=0, description="Past that age, a pause may be this many times the time past it."
    )
    max_patient_interval: float = Field(default=1200.0, gt=0, description="Longest pause, in seconds, of an old run.")
    history_runs: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Data Factory only: how many recent succeeded runs of the pipeline set when its run is expected "
        "to end (polled sparsely before, densely around, backing off past it); 0 turns this off. One "
        "queryPipelineRuns call per pipeline and history_ttl_minutes.",
    )
    history_days: float = Field(
        default=30, gt=0, le=365, description="How far back, in days, those succeeded runs are looked for."
    )
    history_ttl_minutes: float = Field(
        default=60,
        ge=0,
        description="How long a pipeline's learned duration (or a failed look-up) is reused before asking again.",
    )
    hold_seconds: float = Field(
        default=60,
        ge=0,
        description="Inside a retrain: how long a wait polls in its own process before the retrain is suspended "
        "(its process released) while the run goes on; 0 never suspends. Data Factory stays in-process while its "
        "next check is due within this (the dense band around its expected end). See docs/waiting.md.",
    )
    hold_look_seconds: float = Field(
        default=30,
        ge=0,
        description="Azure ML: in a wait's first hold, besides waiting for the job's end event, the status is looked "
        "at every this many seconds, so a job whose event never reaches the receiver (no job subscription) is still "
        "seen ending within the hold; later holds look once. 0 waits on the event alone.",
    )
    fallback_minutes: float = Field(
        default=10,
        gt=0,
        description="A suspended retrain whose run can end with an event (Azure ML jobs) is checked at least this "
        "often by the waiter while the job is young. Data Factory's own schedule is used when sooner.",
    )
    fallback_share: float = Field(
        default=5.0,
        ge=0,
        description="Azure ML: a suspended job's next check is this many times the wait's age when that is longer "
        "than fallback_minutes (each resume asks for a longer one): a lost event costs at most about "
        "max(fallback_minutes, this x the age), never more than fallback_max_minutes. 0 keeps fallback_minutes.",
    )
    fallback_max_minutes: float = Field(
        default=60,
        gt=0,
        description="Azure ML: the longest a suspended job goes unchecked without its event (the cap of the "
        "stretched fallback): the worst cost of a lost event, past the first check.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PollingConfig:
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must be >= initial_interval")
        if self.max_patient_interval < self.max_interval:
            raise ValueError("max_patient_interval must be >= max_interval")
        if self.fallback_max_minutes < self.fallback_minutes:
            raise ValueError("fallback_max_minutes must be >= fallback_minutes")
        return self

    def fallback(self, age: float) -> float:
        """Seconds until a suspended Azure ML job is looked at again without its event, ``age`` seconds into the
        wait: ``fallback_minutes`` while young, then ``fallback_share`` x the age, capped at ``fallback_max_minutes``."""
        return min(self.fallback_max_minutes * 60, max(self.fallback_minutes * 60, self.fallback_share * age))

    def ceiling(self, age: float) -> float:
        """The longest pause allowed ``age`` seconds into the wait."""
        past = age - self.patient_after_minutes * 60
        return max(self.max_interval, min(self.max_patient_interval, self.patience * past))


class AzureConfig(_Strict):
    """Shared by every azure target: identity, cloud endpoints, polling defaults."""

    credential: CredentialConfig = Field(
        default=CredentialConfig(), description="The identity every azure target acts as."
    )
    authority_host: str = Field(
        default="https://login.microsoftonline.com",
        description="Microsoft Entra authority to sign in at (sovereign clouds differ).",
    )
    resource_manager: str = Field(
        default="https://management.azure.com", description="Azure Resource Manager endpoint, also the token audience."
    )
    ca_bundle: Path | None = Field(
        default=None, description="CA bundle to trust for Azure endpoints (a TLS-inspecting proxy, the loopback fake)."
    )
    polling: PollingConfig = Field(
        default=PollingConfig(),
        description="How waits on Data Factory runs and ML jobs poll, unless a step overrides it.",
    )


class DataFactoryCopyConfig(_Strict):
    """The Data Factory pipeline that copies the drift window into the training store."""

    kind: Literal["data_factory"] = Field(
        default="data_factory", description="The only copy kind of the azure backend; may be left out."
    )
    factory: FactoryId = Field(
        description="ARM id of the data factory that runs the copy pipeline: "
        "/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.DataFactory/factories/<name>.",
    )
    pipeline: str = Field(min_length=1, description="Name of the copy pipeline in the factory.")
    parameters: TemplateMap = Field(
        default={}, description="Pipeline parameters passed to each run; values are templates over the signal."
    )
    output_uri: Template = Field(
        description="Where the copied data lands (a template), handed to the training step as {copy_output_uri}."
    )
    recover_from_failure: bool = Field(
        default=False, description="When a run fails, rerun it once from the failed activity."
    )
    polling: PollingConfig | None = Field(default=None, description="Overrides azure.polling for this copy.")


class _AzureTraining(_Strict):
    """What the three Azure ML training kinds share."""

    experiment_name: Template = Field(
        default="drift-retrain-{model_name}", description="Experiment the job runs under (a template)."
    )
    inputs: TemplateMap = Field(
        default={}, description="Pipeline inputs/parameters; values are templates, e.g. '{copy_output_uri}'."
    )
    model_output: str = Field(default="model", min_length=1, description="The job output that holds the trained model.")
    polling: PollingConfig | None = Field(default=None, description="Overrides azure.polling for this job.")


class PublishedPipelineConfig(_AzureTraining):
    """A v1 published pipeline (or pipeline endpoint), submitted over REST."""

    kind: Literal["published_pipeline"] = Field(
        description="Training through a v1 published pipeline or pipeline endpoint."
    )
    pipeline_id: str | None = Field(
        default=None, description="Published pipeline id (Studio > Pipelines > Published pipelines)."
    )
    pipeline_endpoint_id: str | None = Field(default=None, description="Pipeline endpoint id, instead of pipeline_id.")
    regional_host: str | None = Field(
        default=None,
        description="The workspace's regional API host, e.g. https://westeurope.api.azureml.ms; read from the workspace "
        "when unset.",
    )

    @model_validator(mode="after")
    def _one_pipeline(self) -> PublishedPipelineConfig:
        if (self.pipeline_id is None) == (self.pipeline_endpoint_id is None):
            raise ValueError("set exactly one of pipeline_id and pipeline_endpoint_id")
        return self


class PipelineJobConfig(_AzureTraining):
    """A v2 pipeline job from a registered pipeline component or a YAML file (azure-ai-ml)."""

    kind: Literal["pipeline_job"] = Field(description="Training through a v2 pipeline job.")
    component: str | None = Field(default=None, description="Registered pipeline component, e.g. 'train_pipeline:3'.")
    yaml: Path | None = Field(default=None, description="Pipeline job YAML file, instead of component.")
    compute: str | None = Field(default=None, description="Default compute for the pipeline's steps.")

    @model_validator(mode="after")
    def _one_source(self) -> PipelineJobConfig:
        if (self.component is None) == (self.yaml is None):
            raise ValueError("set exactly one of component and yaml")
        return self


class BatchEndpointConfig(_AzureTraining):
    """A v2 batch endpoint whose deployment is a pipeline component (azure-ai-ml batch_endpoints.invoke)."""

    kind: Literal["batch_endpoint"] = Field(
        description="Training through a v2 batch endpoint with a pipeline deployment."
    )
    endpoint: str = Field(min_length=1, description="Name of the batch endpoint.")
    deployment: str | None = Field(
        default=None, description="Deployment name; the endpoint's default deployment when unset."
    )


#: Training on Azure ML, told apart by ``kind``.
AzureTrainingConfig = Annotated[
    PublishedPipelineConfig | PipelineJobConfig | BatchEndpointConfig, Field(discriminator="kind")
]


class AzureRegistryConfig(_Strict):
    """The Azure ML model registry of the target's workspace (azure-ai-ml)."""

    kind: Literal["azure_ml"] = Field(
        default="azure_ml", description="The only registry kind of the azure backend; may be left out."
    )
    model_type: Literal["mlflow_model", "custom_model"] = Field(
        default="mlflow_model", description="The Azure ML type the model is registered as."
    )
    path: str = Field(default="", description="Path of the model inside the job's model output, e.g. 'model/'.")


# ------------------------------------------------------------------------------------------------
# What a target is
# ------------------------------------------------------------------------------------------------


class _Target(_Strict):
    """What every target has, whichever backend runs its steps."""

    name: Name = Field(description="The target's name, by which runs, tags and --target options refer to it.")
    workspace: WorkspaceId = Field(description="ARM id of the Azure ML workspace whose drift events we accept.")
    monitors: list[Name] = Field(
        min_length=1,
        description="Monitor names whose drift retrains this model: v1 DataDriftName, or v2 monitor names (a v2 "
        "signal whose name contains one is this target's, e.g. credit_monitor_data_drift of credit_monitor).",
    )
    signals: dict[Name, list[SignalName]] = Field(
        default={},
        description="v2 signal names per monitor of this target, for signals whose name does not contain the "
        'monitor\'s name, e.g. { credit_monitor = ["age_drift", "prediction_drift"] }.',
    )
    model_name: Name = Field(description="Name the model is registered under.")
    policy: PolicyConfig = Field(
        default=PolicyConfig(), description="When a drift signal of this target is worth a retrain."
    )
    gate: GateConfig | None = Field(default=None, description="Optional champion/challenger gate before registering.")
    subscriptions: list[EventSubscriptionConfig] = Field(
        default=[],
        description="The Event Grid subscriptions feeding this target; unset: one per signal kind, not enforced on receipt.",
    )

    @model_validator(mode="after")
    def _signals_of_own_monitors(self) -> _Target:
        unknown = sorted(set(self.signals) - set(self.monitors))
        if unknown:
            raise ValueError(f"signals names monitor(s) {', '.join(unknown)} not in this target's monitors")
        return self


class LocalTarget(_Target):
    """A target whose steps run on this machine: folder copy, scikit-learn training, file registry."""

    backend: Literal["local"] = Field(
        description="Which implementation runs the steps: 'local' runs them on this machine."
    )
    copy_step: LocalCopyConfig = Field(
        alias="copy", description="The copy of the drift window into the training store."
    )
    training: LocalTrainingConfig = Field(description="The training run on the copied data.")
    registry: LocalRegistryConfig = Field(
        default=LocalRegistryConfig(), description="Where trained models are registered."
    )


class AzureTarget(_Target):
    """A target whose steps run in Azure: Data Factory copy, Azure ML training and model registry."""

    backend: Literal["azure"] = Field(
        description="Which implementation runs the steps: 'azure' runs them in Data Factory and Azure ML."
    )
    copy_step: DataFactoryCopyConfig = Field(
        alias="copy", description="The Data Factory pipeline that copies the drift window."
    )
    training: AzureTrainingConfig = Field(
        description="The Azure ML training run on the copied data, one of three kinds."
    )
    registry: AzureRegistryConfig = Field(
        default=AzureRegistryConfig(), description="How the model is registered in the workspace's model registry."
    )


#: A target, told apart by ``backend``; ``isinstance`` or ``target.backend == ...`` narrows it to one.
TargetConfig = Annotated[LocalTarget | AzureTarget, Field(discriminator="backend")]


class Settings(_Strict):
    """The whole file, with every relative path resolved against ``state_dir``."""

    state_dir: Path = Field(
        default=Path(".drift-retrain"),
        description="Folder all local state lives in; relative paths elsewhere resolve against it.",
    )
    receiver: ReceiverConfig = Field(
        default=ReceiverConfig(),
        description="How the webhook receiver authenticates, bounds and hands off Event Grid deliveries.",
    )
    azure: AzureConfig = Field(
        default=AzureConfig(), description="Identity, endpoints and polling shared by every azure target."
    )
    targets: list[TargetConfig] = Field(
        min_length=1, description="The models drift retrains, each with its workspace, monitors and steps."
    )
    local_monitors: list[LocalMonitorConfig] = Field(
        default=[], description="Drift monitors run on this machine, standing in for Azure ML's."
    )
    _source_file: Path | None = PrivateAttr(default=None)

    @property
    def source_file(self) -> Path | None:
        """The file these settings were loaded from (set by ``load_settings``, never read from the file)."""
        return self._source_file

    @model_validator(mode="after")
    def _unique_and_routable(self) -> Settings:
        seen: dict[tuple[str, str], str] = {}
        for target in self.targets:
            for monitor in target.monitors:
                key = (target.workspace.lower(), monitor)
                if key in seen:
                    raise ValueError(
                        f"monitor '{monitor}' of workspace {target.workspace} is routed to both "
                        f"'{seen[key]}' and '{target.name}'"
                    )
                seen[key] = target.name
        configured: dict[tuple[str, str], str] = {}  # a v2 signal name routes to one monitor of one workspace
        for target in self.targets:
            for monitor, signals in target.signals.items():
                for name in signals:
                    key = (target.workspace.lower(), name.casefold())
                    if key in configured:
                        raise ValueError(
                            f"signal '{name}' of workspace {target.workspace} is configured for both "
                            f"{configured[key]} and '{monitor}' of '{target.name}'"
                        )
                    configured[key] = f"'{monitor}' of '{target.name}'"
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique")
        for local in self.local_monitors:  # its drift events would be refused
            if local.window_days > self.receiver.max_window_days:
                raise ValueError(
                    f"local monitor '{local.name}': window_days {local.window_days} exceeds "
                    f"receiver.max_window_days {self.receiver.max_window_days}"
                )
        return self

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.state_dir / path)

    def routing(self, signal: DriftSignal) -> Route | NoRoute:
        """The target and monitor a signal belongs to, or why none (``drift_retrain.routing``): the receiver,
        the sweep and the flow all route through here."""
        return route(self.targets, signal)

    def target_for(self, signal: DriftSignal) -> TargetConfig | None:
        """The target a signal retrains, or None when no configured workspace/monitor/signal takes it."""
        found = self.routing(signal)
        return found.target if isinstance(found, Route) else None

    def routed(self, signal: DriftSignal) -> tuple[DriftSignal, TargetConfig]:
        """The signal (``monitor`` set to the configured monitor it matched) and its target, or an error
        naming the signal, workspace and config file."""
        found = self.routing(signal)
        if isinstance(found, NoRoute):
            raise UnroutableSignal(f"no target in {self.source_file} takes {found.subject}: {found.reason}")
        return found.signal, found.target

    def route(self, signal: DriftSignal) -> TargetConfig:
        """The signal's target, or an error naming the monitor, workspace and config file."""
        return self.routed(signal)[1]

    def targets_of(self, workspace_id: str) -> list[TargetConfig]:
        """The targets that take events of this workspace (ARM ids compared case-insensitively)."""
        return [t for t in self.targets if t.workspace.lower() == workspace_id.lower()]

    def knows_workspace(self, workspace_id: str) -> bool:
        return bool(self.targets_of(workspace_id))

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise ConfigError(f"{self.source_file}: no target named '{name}'")

    def monitor(self, name: str) -> LocalMonitorConfig:
        for monitor in self.local_monitors:
            if monitor.name == name:
                return monitor
        known = ", ".join(m.name for m in self.local_monitors) or "none"
        raise ConfigError(f"{self.source_file}: no local monitor named '{name}' (configured: {known})")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file in use: an explicit path, else $DRIFT_RETRAIN_CONFIG, else ./drift-retrain.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the config file; every failure names the file and the offending field."""
    file = config_path(path)
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found (set {CONFIG_ENV} or pass --config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_describe(file, exc)) from None
    state_dir = settings.state_dir if settings.state_dir.is_absolute() else file.parent / settings.state_dir
    settings = settings.model_copy(update={"state_dir": state_dir.resolve()})
    settings._source_file = file
    return settings


# ------------------------------------------------------------------------------------------------
# Error messages that name the field
# ------------------------------------------------------------------------------------------------


def _describe(file: Path, exc: ValidationError) -> str:
    lines = [f"{file}: invalid configuration"]
    for error in exc.errors():
        lines.append(f"  {_error_line(error)}")
    return "\n".join(lines)


def _error_line(error: ErrorDetails) -> str:
    """One error as ``dotted.field: message``, the field as written in the file."""
    where = _FieldPath.of(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    error_type = error["type"]
    if error_type in ("union_tag_invalid", "union_tag_not_found") and where.tags_expected:
        # the location is the section; the field at fault is its discriminator (``backend``, ``kind``)
        tags = _either(where.tags_expected)
        missing = error_type == "union_tag_not_found"
        message = f"required field is missing (should be {tags})" if missing else f"Input should be {tags}"
        where = where.child(str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    elif error_type == "missing":
        message = "required field is missing"
    elif error_type == "extra_forbidden":
        elsewhere = where.backends_with_field()
        message = "unknown field"
        if elsewhere:
            message += f" (it belongs to backend {_either(elsewhere)}; this target's backend is '{where.backend}')"
    if where.backend and where.parts[-1:] == ["kind"] and error_type in ("literal_error", "union_tag_invalid"):
        message += f" (this target's backend is '{where.backend}')"
    return f"{where}: {message}"


def _either(values: list[str]) -> str:
    """``['a', 'b', 'c']`` -> ``'a', 'b' or 'c'``, as pydantic words the choices of a Literal."""
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class _FieldPath:
    """A pydantic error location read against the models: pydantic puts the tag of a discriminated union into
    the location (``targets.0.azure.training.pipeline_job.compute``), but a tag is the value of a field, not a
    field. Walking the models drops the tags, remembers the target's backend, and knows what was expected."""

    def __init__(self, parts: list[str], backend: str | None, node: Any, route: list[tuple[int, str, Any]]) -> None:
        self.parts, self.backend, self.node, self._route = parts, backend, node, route

    @classmethod
    def of(cls, loc: tuple[int | str, ...], root: Any = Settings) -> _FieldPath:
        node = root
        parts: list[str] = []
        backend: str | None = None
        route: list[tuple[int, str, Any]] = []  # (index in parts, tag, the union) for each tag dropped
        for part in loc:
            node, discriminator = _unwrap(node)
            members = _union_members(node, discriminator)
            if isinstance(part, str) and part in members:
                route.append((len(parts), part, node))
                backend = part if discriminator == "backend" else backend
                node = members[part]
                continue
            parts.append(str(part))
            # a field inside a union, reached without its tag: the first member that has it
            found = [_step(member, part) for member in members.values()] or [_step(node, part)]
            node = next((n for n in found if n is not _UNKNOWN), _UNKNOWN)
        return cls(parts, backend, node, route)

    def __str__(self) -> str:
        return ".".join(self.parts) or "(top level)"

    def child(self, field: str) -> _FieldPath:
        return _FieldPath([*self.parts, field], self.backend, None, self._route) if field else self

    @property
    def tags_expected(self) -> list[str]:
        node, discriminator = _unwrap(self.node)
        return list(_union_members(node, discriminator))

    def backends_with_field(self) -> list[str]:
        """The other backends on which this unknown field exists (a section of the wrong backend)."""
        at_backend = [(index, union) for index, tag, union in self._route if tag == self.backend]
        if not at_backend:
            return []
        index, union = at_backend[0]
        inside = tuple(self.parts[index:])  # the location inside the target, e.g. copy.source
        return [
            tag
            for tag, member in _union_members(union, "backend").items()
            if tag != self.backend and _FieldPath.of(inside, member).node is not _UNKNOWN
        ]


_UNKNOWN = object()  # where a location leaves the models (an unknown field)


def _unwrap(node: Any) -> tuple[Any, str | None]:
    """Strip ``Annotated`` and ``| None``, keeping a union's discriminator."""
    discriminator = None
    while True:
        if isinstance(node, FieldInfo):
            discriminator = node.discriminator if isinstance(node.discriminator, str) else discriminator
            node = node.annotation
        elif get_origin(node) is Annotated:
            base, *metadata = get_args(node)
            for item in metadata:
                if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
                    discriminator = item.discriminator
            node = base
        elif _is_union(node) and type(None) in get_args(node):
            rest = [a for a in get_args(node) if a is not type(None)]
            node = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007  (built at run time from a list: no `|` spelling)
        else:
            return node, discriminator


def _is_union(node: Any) -> bool:
    return get_origin(node) in (Union, types.UnionType)


def _union_members(node: Any, discriminator: str | None) -> dict[str, type[BaseModel]]:
    """A discriminated union's models by tag; empty for anything else."""
    if discriminator is None or not _is_union(node):
        return {}
    members: dict[str, type[BaseModel]] = {}
    for member in get_args(node):
        model = _unwrap(member)[0]
        if isinstance(model, type) and issubclass(model, BaseModel) and discriminator in model.model_fields:
            for tag in get_args(model.model_fields[discriminator].annotation):
                members[str(tag)] = model
    return members


def _step(node: Any, part: int | str) -> Any:
    """What a location part leads to inside ``node``: a model's field (by its name in the file), a list's
    or a table's item; ``_UNKNOWN`` when the part is not there."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        for name, field in node.model_fields.items():
            if (field.alias or name) == part:
                return field
        return _UNKNOWN
    origin = get_origin(node)
    if origin is list and isinstance(part, int):
        return get_args(node)[0]
    if origin is dict and isinstance(part, str):
        return get_args(node)[1]
    return _UNKNOWN
