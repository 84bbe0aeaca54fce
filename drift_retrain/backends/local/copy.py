"""Local stand-in for the Data Factory copy pipeline: the drift window's landing partitions are copied
into the training store, and the run reports what Data Factory's Copy activity output would."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from drift_retrain.atomic import read_json, staged_dir, write_json
from drift_retrain.backends.base import StepFailed, log_state_change
from drift_retrain.backends.local.partitions import csv_files, in_window
from drift_retrain.backends.local.tabular import count_rows
from drift_retrain.names import COPY_STEP, copy_run_key
from drift_retrain.results import CopyResult
from drift_retrain.safepath import under
from drift_retrain.signals import DriftSignal


class LocalCopy:
    def __init__(self, source: Path, sink: Path, runs: Path) -> None:
        self.source, self.sink, self.runs = source, sink, runs
        self._started_here: set[str] = set()

    def _record(self, run_id: str) -> Path:
        return under(self.runs, f"{run_id}.json")

    def start(self, signal: DriftSignal) -> str:
        run_id = copy_run_key(signal)
        if self._record(run_id).exists():
            return run_id  # this signal's copy already ran: reattach
        log_state_change(COPY_STEP, run_id, None, "InProgress")
        began = time.perf_counter()
        selected = in_window(self.source, signal.window_start, signal.window_end)
        files = [(day, f) for day, folder in selected for f in csv_files(folder)]
        output = under(self.sink, "increments", run_id)
        try:
            with staged_dir(output) as scratch:
                for day, file in files:
                    target = scratch / f"date={day.isoformat()}" / file.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, target)
        except FileExistsError:
            pass  # an interrupted earlier attempt finished the copy; its files are complete
        rows = sum(count_rows(f) for _, f in files)
        size = sum(f.stat().st_size for _, f in files)
        duration = max(time.perf_counter() - began, 1e-6)
        result = CopyResult(
            run_id=run_id,
            status="Succeeded",
            rows_read=rows,
            rows_copied=rows,
            data_read=size,
            data_written=size,
            files_read=len(files),
            files_written=len(files),
            copy_duration=round(duration, 3),
            throughput=round(size / 1024 / duration, 1),
            output_uri=str(output),
            source_uri=str(self.source),
        )
        write_json(self._record(run_id), result.model_dump(mode="json"))
        log_state_change(COPY_STEP, run_id, "InProgress", result.status)
        self._started_here.add(run_id)
        return run_id

    def wait(self, run_id: str) -> CopyResult:
        record = self._record(run_id)
        if not record.exists():
            raise StepFailed(COPY_STEP, run_id, "NotFound", f"no local copy run {run_id}")
        result = CopyResult.model_validate(read_json(record))
        return result.model_copy(update={"reattached": run_id not in self._started_here})

    def cancel(self, run_id: str) -> None:
        """A local copy finishes inside ``start``; there is nothing left running to cancel."""
