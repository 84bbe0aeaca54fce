"""Local stand-in for the published training pipeline: a real scikit-learn run on the reference data
plus the copied drift window, with holdout metrics overall and on the new window alone."""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

from drift_retrain.atomic import read_json, staged_dir, write_json
from drift_retrain.backends.base import StepFailed, log_state_change
from drift_retrain.backends.local import tabular
from drift_retrain.config import LocalTrainingConfig
from drift_retrain.names import TRAINING_STEP, training_run_key
from drift_retrain.results import CopyResult, TrainingResult
from drift_retrain.safepath import under
from drift_retrain.signals import DriftSignal

MODEL_FILE = "model.joblib"
RESULT_FILE = "result.json"


class LocalTraining:
    def __init__(self, config: LocalTrainingConfig, reference: Path, jobs: Path) -> None:
        self.config, self.reference, self.jobs = config, reference, jobs
        self._submitted_here: set[str] = set()

    def submit(self, signal: DriftSignal, data: CopyResult) -> str:
        job_id = training_run_key(signal)
        if under(self.jobs, job_id, RESULT_FILE).exists():
            return job_id  # already trained for this signal: reattach
        log_state_change(TRAINING_STEP, job_id, None, "Running")
        try:
            with staged_dir(under(self.jobs, job_id)) as scratch:
                result = self._train(job_id, Path(data.output_uri), scratch)
                write_json(scratch / RESULT_FILE, result.model_dump(mode="json"))
        except FileExistsError:
            pass  # a concurrent attempt finished the same job first
        except StepFailed as failure:
            log_state_change(TRAINING_STEP, job_id, "Running", failure.status)
            raise
        log_state_change(TRAINING_STEP, job_id, "Running", "Completed")
        self._submitted_here.add(job_id)
        return job_id

    def wait(self, job_id: str) -> TrainingResult:
        path = under(self.jobs, job_id, RESULT_FILE)
        if not path.exists():
            raise StepFailed(TRAINING_STEP, job_id, "NotFound", f"no local training job {job_id}")
        result = TrainingResult.model_validate(read_json(path))
        return result.model_copy(update={"reattached": job_id not in self._submitted_here})

    def cancel(self, job_id: str) -> None:
        """A local job finishes inside ``submit``; there is nothing left running to cancel."""

    def _train(self, job_id: str, window_dir: Path, out: Path) -> TrainingResult:
        began = time.perf_counter()
        header, reference = tabular.read_csv(self.reference)
        window_files = sorted(window_dir.rglob("*.csv"))
        if not window_files:
            raise StepFailed(TRAINING_STEP, job_id, "Failed", f"no copied data in {window_dir}")
        window_header, window = tabular.read_many(window_files)
        if window_header != header:
            raise StepFailed(
                TRAINING_STEP, job_id, "Failed", f"window columns {window_header} differ from reference {header}"
            )
        if self.config.label not in header:
            raise StepFailed(TRAINING_STEP, job_id, "Failed", f"label column '{self.config.label}' not in {header}")
        label = header.index(self.config.label)
        features = [i for i in range(len(header)) if i != label]
        data = np.vstack([reference, window])
        is_window = np.concatenate([np.zeros(len(reference), bool), np.ones(len(window), bool)])
        x, y = data[:, features], data[:, label].astype(int)
        x_train, x_test, y_train, y_test, _, window_test = train_test_split(
            x, y, is_window, test_size=self.config.test_size, random_state=self.config.seed, stratify=y
        )
        model = HistGradientBoostingClassifier(max_iter=200, random_state=self.config.seed)
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
        predicted = (scores >= 0.5).astype(int)
        metrics = {
            "accuracy": accuracy_score(y_test, predicted),
            "roc_auc": roc_auc_score(y_test, scores),
            "f1": f1_score(y_test, predicted),
        }
        if len(set(y_test[window_test])) == 2:
            metrics["window_roc_auc"] = roc_auc_score(y_test[window_test], scores[window_test])
        joblib.dump({"model": model, "features": [header[i] for i in features]}, out / MODEL_FILE)
        return TrainingResult(
            job_id=job_id,
            status="Completed",
            metrics={k: round(float(v), 4) for k, v in metrics.items()},
            rows_train=len(y_train),
            rows_test=len(y_test),
            model_uri=str(under(self.jobs, job_id, MODEL_FILE)),
            duration=round(time.perf_counter() - began, 3),
            algorithm=type(model).__name__,
            rows_reference=len(reference),
            rows_window=len(window),
            data_location=f"{self.reference} + {window_dir}",
        )
