"""The local drift monitor: the embedded default's stand-in for an Azure ML data drift monitor.

It computes real drift statistics between the reference data and a landing window, keeps a record of
each run (the "monitor record" the drift-details step and the sweep read), and builds the exact
``DatasetDriftDetected`` Event Grid event Azure ML would publish.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from drift_retrain.atomic import read_json, write_json
from drift_retrain.backends.local import tabular
from drift_retrain.backends.local.drift_stats import feature_drift
from drift_retrain.backends.local.partitions import csv_files, in_window, partitions
from drift_retrain.config import LocalMonitorConfig, Settings
from drift_retrain.results import FeatureDrift
from drift_retrain.safepath import under
from drift_retrain.signals import DATASET_DRIFT_DETECTED


class MonitorRun(BaseModel):
    """One monitor run over one window: what Azure's DataDriftDetector.get_output() would give."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    monitor: str
    monitor_id: str
    workspace: str
    window_start: datetime
    window_end: datetime
    drift_coefficient: float
    threshold: float
    has_drift: bool
    rows_reference: int
    rows_in_window: int
    base_dataset_id: str
    target_dataset_id: str
    features: list[FeatureDrift]
    computed_at: datetime


class MonitorStore:
    """Monitor runs as JSON files: ``<state>/monitor/<monitor>/runs/<run id>.json``. The monitor and run id come
    from a signal, so every path is made by ``safepath.under``: a crafted one is refused, never read or written."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, monitor: str, run_id: str) -> Path:
        return under(self.root, monitor, "runs", f"{run_id}.json")

    def save(self, run: MonitorRun) -> None:
        write_json(self._path(run.monitor, run.run_id), run.model_dump(mode="json"))

    def load(self, monitor: str, run_id: str) -> MonitorRun | None:
        path = self._path(monitor, run_id)
        return MonitorRun.model_validate(read_json(path)) if path.exists() else None

    def runs(self, monitor: str) -> list[MonitorRun]:
        folder = under(self.root, monitor, "runs")
        return sorted(
            (MonitorRun.model_validate(read_json(p)) for p in folder.glob("*.json")),
            key=lambda r: r.window_end,
        )


def monitor_store(settings: Settings) -> MonitorStore:
    return MonitorStore(settings.state_dir / "monitor")


def monitor_id(config: LocalMonitorConfig) -> str:
    """Stable DataDriftId for a monitor (a uuid, as Azure's are)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{config.workspace.lower()}/datadrifts/{config.name}"))


def latest_window(config: LocalMonitorConfig, settings: Settings) -> tuple[datetime, datetime]:
    """The last ``window_days`` days of landing data, as [start, end) at midnight UTC."""
    found = partitions(settings.resolve(config.landing))
    if not found:
        raise FileNotFoundError(
            f"monitor '{config.name}': no date=YYYY-MM-DD partitions in {settings.resolve(config.landing)}"
        )
    last_day = found[-1][0]
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=config.window_days), end


def run_monitor(
    config: LocalMonitorConfig,
    settings: Settings,
    window: tuple[datetime, datetime] | None = None,
) -> MonitorRun:
    """Compute drift for one window and record it. The run id is deterministic per window, so running
    the monitor again over the same window is the same drift run (as Event Grid redelivery would be)."""
    start, end = window or latest_window(config, settings)
    reference_path = settings.resolve(config.reference)
    landing = settings.resolve(config.landing)
    header, reference = tabular.read_csv(reference_path)
    files = [f for _, folder in in_window(landing, start, end) for f in csv_files(folder)]
    if not files:
        raise FileNotFoundError(f"monitor '{config.name}': no landing data in [{start:%Y-%m-%d}, {end:%Y-%m-%d})")
    current_header, current = tabular.read_many(files)
    if current_header != header:
        raise ValueError(f"monitor '{config.name}': landing columns {current_header} differ from reference {header}")
    columns = [i for i, name in enumerate(header) if name != config.label]
    coefficient, features = feature_drift([header[i] for i in columns], reference[:, columns], current[:, columns])
    drift_id = monitor_id(config)
    run = MonitorRun(
        run_id=f"{drift_id}_{int(end.timestamp() * 1000)}",
        monitor=config.name,
        monitor_id=drift_id,
        workspace=config.workspace,
        window_start=start,
        window_end=end,
        drift_coefficient=round(coefficient, 6),
        threshold=config.threshold,
        has_drift=coefficient >= config.threshold,
        rows_reference=len(reference),
        rows_in_window=len(current),
        base_dataset_id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(reference_path))),
        target_dataset_id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(landing))),
        features=features,
        computed_at=datetime.now(UTC),
    )
    monitor_store(settings).save(run)
    return run


def drift_event(run: MonitorRun, event_id: str | None = None) -> dict:
    """The Event Grid-schema DatasetDriftDetected event for a run, in Azure's documented shape."""
    return {
        "topic": run.workspace,
        "subject": f"datadrifts/{run.monitor_id}/runs/{run.run_id}",
        "eventType": DATASET_DRIFT_DETECTED,
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "id": event_id or str(uuid.uuid4()),
        "data": {
            "DataDriftId": run.monitor_id,
            "DataDriftName": run.monitor,
            "RunId": run.run_id,
            "BaseDatasetId": run.base_dataset_id,
            "TargetDatasetId": run.target_dataset_id,
            "DriftCoefficient": run.drift_coefficient,
            "StartTime": run.window_start.isoformat(),
            "EndTime": run.window_end.isoformat(),
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }
