"""Local stand-in for the Azure ML model registry: ``<root>/<model>/<version>/`` folders.

A version appears in one atomic rename, fully written or not at all, and numbering is serialised by a
file lock so concurrent registrations never share a version.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from drift_retrain.atomic import file_lock, read_json, staged_dir, write_json
from drift_retrain.names import signal_of
from drift_retrain.results import ModelVersion, TrainingResult
from drift_retrain.safepath import under

META_FILE = "model.json"


class FileModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self, name: str) -> list[ModelVersion]:
        folder = under(self.root, name)
        found = [
            ModelVersion.model_validate(read_json(meta))
            for meta in folder.glob(f"*/{META_FILE}")
            if meta.parent.name.isdigit()
        ]
        return sorted(found, key=lambda v: v.version)

    def register(self, name: str, training: TrainingResult, tags: dict[str, str]) -> ModelVersion:
        signal = signal_of(tags)
        with file_lock(under(self.root, name, ".lock")):
            existing = self.versions(name)
            for version in existing:
                if signal and signal_of(version.tags) == signal:
                    return version.model_copy(update={"already_registered": True})
            number = max((v.version for v in existing), default=0) + 1
            final = under(self.root, name, str(number))
            with staged_dir(final) as scratch:
                source = Path(training.model_uri)
                shutil.copyfile(source, scratch / source.name)
                version = ModelVersion(
                    name=name,
                    version=number,
                    uri=str(final / source.name),
                    created_at=datetime.now(UTC),
                    tags=tags,
                    metrics=training.metrics,
                )
                write_json(scratch / META_FILE, version.model_dump(mode="json"))
            return version
