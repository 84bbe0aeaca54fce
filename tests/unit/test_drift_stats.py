"""Drift statistics tell a shifted feature from a stable one."""

from __future__ import annotations

import numpy as np
import pytest

from drift_retrain.backends.local.drift_stats import drift_coefficient, feature_drift, psi


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 5000)
    assert psi(reference, rng.normal(0, 1, 5000)) < 0.02
    assert psi(reference, rng.normal(1, 1, 5000)) > 0.25


def test_psi_handles_a_constant_reference() -> None:
    assert psi(np.zeros(100), np.zeros(100)) == pytest.approx(0, abs=1e-9)
    assert psi(np.zeros(100), np.ones(100)) > 1


@pytest.mark.slow  # a real domain classifier and permutation importance: seconds
def test_coefficient_is_low_without_drift_and_high_with_it() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, (3000, 3))
    same, _ = drift_coefficient(reference, rng.normal(0, 1, (1500, 3)))
    shifted_data = rng.normal(0, 1, (1500, 3))
    shifted_data[:, 2] += 1.5
    shifted, shares = drift_coefficient(reference, shifted_data)
    assert 0 <= same < 0.15
    assert 0.5 < shifted <= 1
    assert shares.argmax() == 2
    assert shares.sum() == pytest.approx(1)


@pytest.mark.slow  # a real domain classifier and permutation importance: seconds
def test_feature_drift_ranks_the_shifted_feature_first() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(0, 1, (3000, 3))
    current = rng.normal(0, 1, (1500, 3))
    current[:, 1] = current[:, 1] * 2 + 1
    coefficient, features = feature_drift(["a", "b", "c"], reference, current)
    assert features[0].feature == "b"
    by_name = {f.feature: f for f in features}
    assert by_name["b"].ks_pvalue < 1e-6 < by_name["a"].ks_pvalue
    assert by_name["b"].wasserstein > 0.5 > by_name["c"].wasserstein
