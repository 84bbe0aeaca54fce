"""A small seeded credit-default data set: a reference sample and a week of landing data in which some
features have shifted (younger applicants, lower incomes, higher utilisation). Nothing is downloaded."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from drift_retrain.backends.local.tabular import write_csv
from drift_retrain.config import ConfigError, LocalMonitorConfig, Settings

COLUMNS = ["age", "income", "debt_ratio", "credit_lines", "late_payments", "utilization", "defaulted"]


def _sample(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    age = rng.normal(38 if shifted else 45, 11, n).clip(18, 90)
    income = rng.lognormal(10.6 if shifted else 10.9, 0.45, n)
    debt_ratio = rng.beta(2, 5, n)
    credit_lines = rng.poisson(5, n).astype(float)
    late = rng.poisson(0.7 if shifted else 0.5, n).astype(float)
    utilization = rng.beta(4 if shifted else 2, 4, n)
    logit = -3.6 + 4.5 * utilization + 3.0 * debt_ratio + 0.9 * late - 0.04 * (age - 45) - 1.2 * np.log(income / 50_000)
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return np.column_stack([age, income, debt_ratio, credit_lines, late, utilization, defaulted])


def generate(
    reference: Path, landing: Path, *, seed: int = 42, days: int = 7, rows_per_day: int = 300, end: date | None = None
) -> bool:
    """Write the reference CSV and ``days`` daily landing partitions ending yesterday.

    Returns False (and writes nothing) when the data already exists, so reruns see the same drift run.
    """
    if reference.exists():
        return False
    rng = np.random.default_rng(seed)
    write_csv(reference, COLUMNS, _sample(rng, 5000, shifted=False))
    last = (end or datetime.now(UTC).date()) - timedelta(days=1)  # partitions are UTC days
    for offset in range(days):
        day = last - timedelta(days=days - 1 - offset)
        write_csv(
            landing / f"date={day.isoformat()}" / "part-0000.csv", COLUMNS, _sample(rng, rows_per_day, shifted=True)
        )
    return True


def prepare(settings: Settings, monitor: LocalMonitorConfig | None = None) -> tuple[Path, Path, bool]:
    """The demo's data set where ``monitor`` (default: the config's first local monitor) reads it, so a fleet
    trial (`drift-retrain demo-data`, then `drift-retrain monitor`) sees the demo's drift without the demo's
    stack. Returns the reference, the landing folder and whether anything was written (False: already there)."""
    if monitor is None:
        if not settings.local_monitors:
            raise ConfigError(f"{settings.source_file}: no [[local_monitors]] entry to prepare demo data for")
        monitor = settings.local_monitors[0]
    reference, landing = settings.resolve(monitor.reference), settings.resolve(monitor.landing)
    return reference, landing, generate(reference, landing)
