"""The one configuration file: which workspaces and monitors map to which retraining targets.

Which backend a target uses is configuration, not code. A wrong or missing field fails at start with a
message that names the file and the field.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from drift_retrain.intake.filters import EventFilter
from drift_retrain.signals import DriftSignal, is_workspace_id
from drift_retrain.templating import Template, TemplateMap

CONFIG_ENV = "DRIFT_RETRAIN_CONFIG"
DEFAULT_CONFIG = "drift-retrain.toml"

Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


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
    """No configured target takes this signal's workspace and monitor."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


EVENT_GRID_APP_ID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"  # the "Azure Event Grid" first-party app


class EntraConfig(_Strict):
    """Microsoft Entra protected delivery: Event Grid sends a bearer JWT issued by this tenant."""

    tenant_id: str = Field(min_length=1, description="Directory (tenant) id of the webhook's app registration")
    audiences: list[str] = Field(min_length=1, description="The webhook app's client id and/or App ID URI")
    jwks_url: str | None = Field(default=None, description="Default: the tenant's v2.0 discovery keys")
    issuers: list[str] | None = Field(default=None, description="Default: the tenant's v1 and v2 issuers")
    event_grid_app_id: str = Field(default=EVENT_GRID_APP_ID, description="appid (v1) / azp (v2) of the caller")
    jwks_cache_seconds: float = Field(default=3600, gt=0)
    leeway_seconds: float = Field(default=60, ge=0, le=300, description="Clock skew allowed on exp/nbf")

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
        default=20, ge=1, le=100, description="Most runs per Prefect request (bulk limit 100; see benchmarks/)"
    )
    max_pending: int = Field(default=5000, ge=1, description="Signals waiting for the writer; beyond: 503 at once")
    deadline_seconds: float = Field(
        default=20, gt=0, le=28, description="Give up (503) before Event Grid's 30 s response timeout"
    )
    retry_after_seconds: int = Field(default=30, ge=1, description="Retry-After sent with a 503")


MIB = 1024 * 1024


class ReceiverConfig(_Strict):
    """The Event Grid webhook receiver."""

    auth: Literal["secret", "entra", "none"] = Field(
        default="secret", description="secret: ?code= or secret_header; entra: bearer JWT; none: local use only"
    )
    secret_env: str = Field(
        default="DRIFT_RETRAIN_WEBHOOK_SECRET",
        description="Environment variable holding the shared secret Event Grid sends as ?code=",
    )
    secret_header: str | None = Field(
        default=None, description="Also accept the secret in this header (an Event Grid delivery property)"
    )
    allow_unauthenticated: bool = Field(
        default=False, description="Accept deliveries without a secret (local experiments only)"
    )
    entra: EntraConfig | None = None
    public_url: str | None = Field(
        default=None, description="https URL Event Grid posts to (without the secret), for `azure subscription`"
    )
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["eventgrid.azure.net"], description="CloudEvents WebHook-Request-Origin we accept"
    )
    max_event_bytes: int = Field(default=MIB, ge=1024, description="Event Grid's own limit: 1 MB per event")
    max_batch_bytes: int = Field(
        default=4 * MIB, ge=1024, description="Event Grid batches up to 1 MB (one event may reach 1 MB); 4x headroom"
    )
    max_batch_events: int = Field(default=5000, ge=1, description="Event Grid's limit: 5000 events per batch")
    handoff: HandoffConfig = HandoffConfig()
    event_feed: bool = Field(
        default=True,
        description="Post an azureml.drift.detected Prefect event per accepted signal (off spares Prefect "
        "their ingestion; the hand-off benchmark measures 1 concurrent delivery both ways)",
    )

    @model_validator(mode="after")
    def _auth_is_explicit(self) -> "ReceiverConfig":
        if self.public_url is not None and not self.public_url.lower().startswith("https://"):
            raise ValueError("public_url must be an https:// URL (Event Grid only delivers to HTTPS)")
        if self.max_batch_bytes < self.max_event_bytes:
            raise ValueError("max_batch_bytes must be at least max_event_bytes")
        if self.auth == "none" and not self.allow_unauthenticated:
            raise ValueError("auth = \"none\" also needs allow_unauthenticated = true (local use only)")
        if self.auth == "entra" and self.entra is None:
            raise ValueError("auth = \"entra\" needs a [receiver.entra] section (tenant_id, audiences)")
        return self

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) or None


class PolicyConfig(_Strict):
    """When a drift signal is worth a retrain."""

    drift_threshold: float = Field(default=0.3, ge=0, le=1, description="v1 drift coefficient to retrain at")
    min_rows: int = Field(default=100, ge=0, description="Fewest new rows in the drift window worth training on")
    cooldown_minutes: float = Field(default=60, ge=0, description="Quiet time after a model's last retrain")


class LocalCopyConfig(_Strict):
    """Local stand-in for the Data Factory copy: landing folder -> training store."""

    kind: Literal["local"] = "local"
    source: Path = Field(description="Landing folder with date=YYYY-MM-DD/ partitions")
    sink: Path = Field(description="Training store folder the window's data is copied into")


class LocalTrainingConfig(_Strict):
    """Local stand-in for the published training pipeline: a scikit-learn run."""

    kind: Literal["local"] = "local"
    reference: Path = Field(description="The reference (baseline) training data, CSV")
    label: str = Field(min_length=1, description="Label column")
    test_size: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 7


class LocalRegistryConfig(_Strict):
    """Local stand-in for the Azure ML model registry: versioned folders."""

    kind: Literal["local"] = "local"
    path: Path = Field(default=Path("registry"))


# ------------------------------------------------------------------------------------------------
# The azure backend
# ------------------------------------------------------------------------------------------------


class CredentialConfig(_Strict):
    """Which Microsoft Entra identity the azure backend acts as (azure-identity)."""

    kind: Literal["default", "managed_identity", "workload_identity", "client_secret"] = Field(
        default="default", description="DefaultAzureCredential unless a specific identity is configured"
    )
    client_id: str | None = Field(default=None, description="User-assigned managed identity / app registration id")
    tenant_id: str | None = None
    client_secret_env: str | None = Field(
        default=None, description="Environment variable holding the client secret (kind = client_secret)"
    )
    token_file: Path | None = Field(default=None, description="Federated token file (kind = workload_identity)")

    @model_validator(mode="after")
    def _complete(self) -> "CredentialConfig":
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

    initial_interval: float = Field(default=5.0, gt=0, description="Seconds before the first status call")
    max_interval: float = Field(default=30.0, gt=0, description="Longest pause while the run is young")
    backoff: float = Field(default=2.0, ge=1, description="Each unchanged status stretches the pause by this")
    jitter: float = Field(default=0.1, ge=0, le=1, description="Random +/- share of each pause")
    timeout_minutes: float = Field(default=360, gt=0, description="Overall limit; the run is cancelled past it")
    patient_after_minutes: float = Field(
        default=10, ge=0, description="Age of the wait after which pauses may exceed max_interval"
    )
    patience: float = Field(
        default=2.0, ge=0, description="Past that age, a pause may be this many times the time past it"
    )
    max_patient_interval: float = Field(default=1200.0, gt=0, description="Longest pause of an old run")

    @model_validator(mode="after")
    def _ordered(self) -> "PollingConfig":
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must be >= initial_interval")
        if self.max_patient_interval < self.max_interval:
            raise ValueError("max_patient_interval must be >= max_interval")
        return self

    def ceiling(self, age: float) -> float:
        """The longest pause allowed ``age`` seconds into the wait."""
        past = age - self.patient_after_minutes * 60
        return max(self.max_interval, min(self.max_patient_interval, self.patience * past))


class AzureConfig(_Strict):
    """Shared by every azure target: identity, cloud endpoints, polling defaults."""

    credential: CredentialConfig = CredentialConfig()
    authority_host: str = Field(
        default="https://login.microsoftonline.com", description="Microsoft Entra authority (sovereign clouds differ)"
    )
    resource_manager: str = Field(
        default="https://management.azure.com", description="ARM endpoint; also the token audience"
    )
    ca_bundle: Path | None = Field(
        default=None, description="CA bundle to trust for Azure endpoints (a TLS-inspecting proxy, the loopback fake)"
    )
    polling: PollingConfig = PollingConfig()


class DataFactoryCopyConfig(_Strict):
    """The Data Factory pipeline that copies the drift window into the training store."""

    kind: Literal["data_factory"]
    factory: FactoryId
    pipeline: str = Field(min_length=1, description="Pipeline name in the factory")
    parameters: TemplateMap = Field(
        default_factory=dict, description="Pipeline parameters; values are templates over the signal"
    )
    output_uri: Template = Field(
        description="Where the copied data lands (a template), handed to the training step as {copy_output_uri}"
    )
    recover_from_failure: bool = Field(
        default=False, description="When the run fails, rerun it once from the failed activity"
    )
    polling: PollingConfig | None = Field(default=None, description="Overrides azure.polling for this copy")


class _AzureTraining(_Strict):
    experiment_name: Template = Field(default="drift-retrain-{model_name}")
    inputs: TemplateMap = Field(
        default_factory=dict, description="Pipeline inputs/parameters; templates, e.g. '{copy_output_uri}'"
    )
    model_output: str = Field(default="model", min_length=1, description="The job output holding the model")
    polling: PollingConfig | None = Field(default=None, description="Overrides azure.polling for this job")


class PublishedPipelineConfig(_AzureTraining):
    """A v1 published pipeline (or pipeline endpoint), submitted over REST."""

    kind: Literal["published_pipeline"]
    pipeline_id: str | None = Field(default=None, description="Published pipeline id (Studio > Pipelines > Published)")
    pipeline_endpoint_id: str | None = Field(default=None, description="Pipeline endpoint id (instead of pipeline_id)")
    regional_host: str | None = Field(
        default=None, description="e.g. https://westeurope.api.azureml.ms; read from the workspace when unset"
    )

    @model_validator(mode="after")
    def _one_pipeline(self) -> "PublishedPipelineConfig":
        if (self.pipeline_id is None) == (self.pipeline_endpoint_id is None):
            raise ValueError("set exactly one of pipeline_id and pipeline_endpoint_id")
        return self


class PipelineJobConfig(_AzureTraining):
    """A v2 pipeline job from a registered pipeline component or a YAML file (azure-ai-ml)."""

    kind: Literal["pipeline_job"]
    component: str | None = Field(default=None, description="Registered pipeline component, e.g. 'train_pipeline:3'")
    yaml: Path | None = Field(default=None, description="Pipeline job YAML (instead of component)")
    compute: str | None = Field(default=None, description="Default compute for the pipeline's steps")

    @model_validator(mode="after")
    def _one_source(self) -> "PipelineJobConfig":
        if (self.component is None) == (self.yaml is None):
            raise ValueError("set exactly one of component and yaml")
        return self


class BatchEndpointConfig(_AzureTraining):
    """A v2 batch endpoint whose deployment is a pipeline component (azure-ai-ml batch_endpoints.invoke)."""

    kind: Literal["batch_endpoint"]
    endpoint: str = Field(min_length=1)
    deployment: str | None = Field(default=None, description="Deployment name; the endpoint's default when unset")


class AzureRegistryConfig(_Strict):
    """The Azure ML model registry of the target's workspace (azure-ai-ml)."""

    kind: Literal["azure_ml"]
    model_type: Literal["mlflow_model", "custom_model"] = "mlflow_model"
    path: str = Field(default="", description="Path inside the job's model output, e.g. 'model/'")


class GateConfig(_Strict):
    """Champion/challenger: register only a model at least as good as the current latest version."""

    metric: str = Field(min_length=1, description="Training metric compared, e.g. 'roc_auc'")
    higher_is_better: bool = True
    min_improvement: float = Field(default=0.0, description="Required margin over the champion")


# ------------------------------------------------------------------------------------------------
# The local backend (and what a target is)
# ------------------------------------------------------------------------------------------------


def _kind(default: str) -> Any:
    """Discriminate a section by its ``kind`` field; sections without one are the local kind."""

    def pick(value: Any) -> str:
        if isinstance(value, dict):
            return value.get("kind", default)
        return getattr(value, "kind", default)

    return Discriminator(pick)


class LocalMonitorConfig(_Strict):
    """A local drift monitor: compares a landing window with the reference, like Azure ML data drift."""

    name: Name
    workspace: WorkspaceId
    reference: Path
    landing: Path
    label: str | None = Field(default=None, description="Column excluded from drift (the label)")
    threshold: float = Field(default=0.3, ge=0, le=1)
    window_days: int = Field(default=7, ge=1)


class EventSubscriptionConfig(EventFilter):
    """One Event Grid subscription feeding a target: its filters (checked again on receipt) and delivery."""

    name: Name
    delivery_schema: Literal["EventGridSchema", "CloudEventSchemaV1_0"] = "EventGridSchema"
    max_delivery_attempts: int = Field(default=30, ge=1, le=30)
    event_ttl_minutes: int = Field(default=1440, ge=1, le=1440)
    max_events_per_batch: int = Field(default=1, ge=1, le=5000)
    preferred_batch_size_kb: int = Field(default=64, ge=1, le=1024)
    dead_letter_endpoint: str | None = Field(default=None, description="ARM id of a storage blob container")


class TargetConfig(_Strict):
    """A model that drift on some monitors of a workspace retrains."""

    name: Name
    backend: Literal["local", "azure"] = Field(description="Which implementation runs the steps")
    workspace: WorkspaceId = Field(description="ARM id of the Azure ML workspace whose drift events we accept")
    monitors: list[Name] = Field(min_length=1, description="Monitor names whose drift retrains this model")
    model_name: Name
    policy: PolicyConfig = PolicyConfig()
    copy_step: Annotated[
        Union[Annotated[LocalCopyConfig, Tag("local")], Annotated[DataFactoryCopyConfig, Tag("data_factory")]],
        _kind("local"),
    ] = Field(alias="copy")
    training: Annotated[
        Union[
            Annotated[LocalTrainingConfig, Tag("local")],
            Annotated[PublishedPipelineConfig, Tag("published_pipeline")],
            Annotated[PipelineJobConfig, Tag("pipeline_job")],
            Annotated[BatchEndpointConfig, Tag("batch_endpoint")],
        ],
        _kind("local"),
    ]
    registry: Annotated[
        Union[Annotated[LocalRegistryConfig, Tag("local")], Annotated[AzureRegistryConfig, Tag("azure_ml")]],
        _kind("local"),
    ] = LocalRegistryConfig()
    gate: GateConfig | None = Field(default=None, description="Optional champion/challenger gate before registering")
    subscriptions: list[EventSubscriptionConfig] = Field(default_factory=list, description="Event Grid filters")

    @model_validator(mode="before")
    @classmethod
    def _azure_registry_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("backend") == "azure" and "registry" not in data:
            return {**data, "registry": {"kind": "azure_ml"}}
        return data

    @model_validator(mode="after")
    def _sections_match_backend(self) -> "TargetConfig":
        local = {"copy": self.copy_step.kind, "training": self.training.kind, "registry": self.registry.kind}
        wrong = [
            f"{section} is kind '{kind}'"
            for section, kind in local.items()
            if (kind == "local") != (self.backend == "local")
        ]
        if wrong:
            expected = "local sections" if self.backend == "local" else "azure sections (copy.kind = 'data_factory', ...)"
            raise ValueError(f"backend '{self.backend}' needs {expected}, but {'; '.join(wrong)}")
        return self


class Settings(_Strict):
    """The whole file, with every relative path resolved against ``state_dir``."""

    state_dir: Path = Field(default=Path(".drift-retrain"), description="All local state lives here")
    receiver: ReceiverConfig = ReceiverConfig()
    azure: AzureConfig = AzureConfig()
    targets: list[TargetConfig] = Field(min_length=1)
    local_monitors: list[LocalMonitorConfig] = Field(default_factory=list)
    source_file: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_and_routable(self) -> "Settings":
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
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique")
        return self

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.state_dir / path)

    def target_for(self, signal: DriftSignal) -> TargetConfig | None:
        """The target a signal retrains, or None when its workspace/monitor is not configured."""
        for target in self.targets:
            if target.workspace.lower() == signal.workspace_id.lower() and signal.monitor in target.monitors:
                return target
        return None

    def route(self, signal: DriftSignal) -> TargetConfig:
        """The signal's target, or an error naming the monitor, workspace and config file."""
        target = self.target_for(signal)
        if target is None:
            raise UnroutableSignal(
                f"no target in {self.source_file} takes monitor '{signal.monitor}' of workspace {signal.workspace_id}"
            )
        return target

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
    return settings.model_copy(update={"state_dir": state_dir.resolve(), "source_file": file})


_SECTIONS_BY_KIND = {"copy", "training", "registry"}
_KINDS = {"local", "data_factory", "published_pipeline", "pipeline_job", "batch_endpoint", "azure_ml"}


def _without_union_tags(loc: tuple[int | str, ...]) -> list[str]:
    """``targets.0.training.local.label`` -> ``targets.0.training.label``: the kind is not a field."""
    parts = [str(part) for part in loc]
    return [p for i, p in enumerate(parts) if not (i and parts[i - 1] in _SECTIONS_BY_KIND and p in _KINDS)]


def _describe(file: Path, exc: ValidationError) -> str:
    lines = [f"{file}: invalid configuration"]
    for error in exc.errors():
        where = ".".join(_without_union_tags(error["loc"])) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
