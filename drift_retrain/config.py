"""The one configuration file: which workspaces and monitors map to which retraining targets.

Which backend a target uses is configuration, not code. A wrong or missing field fails at start with a
message that names the file and the field.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from drift_retrain.signals import DriftSignal, is_workspace_id

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


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the field."""


class UnroutableSignal(ValueError):
    """No configured target takes this signal's workspace and monitor."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiverConfig(_Strict):
    """The Event Grid webhook receiver."""

    secret_env: str = Field(
        default="DRIFT_RETRAIN_WEBHOOK_SECRET",
        description="Environment variable holding the shared secret Event Grid sends as ?code=",
    )
    allow_unauthenticated: bool = Field(
        default=False, description="Accept deliveries without a secret (local experiments only)"
    )

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) or None


class PolicyConfig(_Strict):
    """When a drift signal is worth a retrain."""

    drift_threshold: float = Field(default=0.3, ge=0, le=1, description="v1 drift coefficient to retrain at")
    min_rows: int = Field(default=100, ge=0, description="Fewest new rows in the drift window worth training on")
    cooldown_minutes: float = Field(default=60, ge=0, description="Quiet time after a model's last retrain")


class LocalCopyConfig(_Strict):
    """Local stand-in for the Data Factory copy: landing folder -> training store."""

    source: Path = Field(description="Landing folder with date=YYYY-MM-DD/ partitions")
    sink: Path = Field(description="Training store folder the window's data is copied into")


class LocalTrainingConfig(_Strict):
    """Local stand-in for the published training pipeline: a scikit-learn run."""

    reference: Path = Field(description="The reference (baseline) training data, CSV")
    label: str = Field(min_length=1, description="Label column")
    test_size: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 7


class LocalRegistryConfig(_Strict):
    """Local stand-in for the Azure ML model registry: versioned folders."""

    path: Path = Field(default=Path("registry"))


class LocalMonitorConfig(_Strict):
    """A local drift monitor: compares a landing window with the reference, like Azure ML data drift."""

    name: Name
    workspace: WorkspaceId
    reference: Path
    landing: Path
    label: str | None = Field(default=None, description="Column excluded from drift (the label)")
    threshold: float = Field(default=0.3, ge=0, le=1)
    window_days: int = Field(default=7, ge=1)


class TargetConfig(_Strict):
    """A model that drift on some monitors of a workspace retrains."""

    name: Name
    backend: Literal["local"] = Field(description="Which implementation runs the steps")
    workspace: WorkspaceId = Field(description="ARM id of the Azure ML workspace whose drift events we accept")
    monitors: list[Name] = Field(min_length=1, description="Monitor names whose drift retrains this model")
    model_name: Name
    policy: PolicyConfig = PolicyConfig()
    copy_step: LocalCopyConfig = Field(alias="copy")
    training: LocalTrainingConfig
    registry: LocalRegistryConfig = LocalRegistryConfig()


class Settings(_Strict):
    """The whole file, with every relative path resolved against ``state_dir``."""

    state_dir: Path = Field(default=Path(".drift-retrain"), description="All local state lives here")
    receiver: ReceiverConfig = ReceiverConfig()
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

    def knows_workspace(self, workspace_id: str) -> bool:
        return any(t.workspace.lower() == workspace_id.lower() for t in self.targets)

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


def _describe(file: Path, exc: ValidationError) -> str:
    lines = [f"{file}: invalid configuration"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
