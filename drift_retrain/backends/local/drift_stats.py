"""Drift statistics between a reference sample and a current window.

Per feature: PSI, two-sample Kolmogorov-Smirnov and a scaled Wasserstein distance. Dataset level: the
drift coefficient Azure ML v1 data drift reports, computed the same way it is defined there: how well a
classifier tells reference rows from current rows (here ``2 * AUC - 1`` on a holdout, clipped to [0, 1]),
with each feature's share of that classifier's permutation importance as its contribution.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from drift_retrain.results import FeatureDrift

_EPS = 1e-6


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins (0.1 = moderate, 0.25 = major)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:  # (nearly) constant reference: one bin holds everything
        edges = np.array([reference.min() - 0.5, reference.min() + 0.5, reference.max() + 1.0])
    edges[0], edges[-1] = -np.inf, np.inf
    ref_share = np.histogram(reference, edges)[0] / len(reference)
    cur_share = np.histogram(current, edges)[0] / len(current)
    ref_share = np.clip(ref_share, _EPS, None)
    cur_share = np.clip(cur_share, _EPS, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def drift_coefficient(reference: np.ndarray, current: np.ndarray, seed: int = 0) -> tuple[float, np.ndarray]:
    """Domain-classifier drift in [0, 1] and each column's share of it (sums to 1 when there is drift)."""
    x = np.vstack([reference, current])
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(current))])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    coefficient = float(np.clip(2 * auc - 1, 0.0, 1.0))
    importance = permutation_importance(
        model, x_test, y_test, scoring="roc_auc", n_repeats=3, random_state=seed
    ).importances_mean
    importance = np.clip(importance, 0, None)
    total = importance.sum()
    shares = importance / total if total > 0 else np.zeros_like(importance)
    return coefficient, shares


def feature_drift(
    names: list[str], reference: np.ndarray, current: np.ndarray, seed: int = 0
) -> tuple[float, list[FeatureDrift]]:
    """The dataset-level coefficient and per-feature statistics, largest contribution first."""
    coefficient, shares = drift_coefficient(reference, current, seed=seed)
    features = []
    for i, name in enumerate(names):
        ref, cur = reference[:, i], current[:, i]
        ks = stats.ks_2samp(ref, cur)
        scale = float(np.std(ref)) or 1.0
        features.append(
            FeatureDrift(
                feature=name,
                psi=psi(ref, cur),
                ks_statistic=float(ks.statistic),
                ks_pvalue=float(ks.pvalue),
                wasserstein=float(stats.wasserstein_distance(ref, cur) / scale),
                contribution=float(shares[i]),
            )
        )
    features.sort(key=lambda f: f.contribution or 0.0, reverse=True)  # all set above; None only types the field
    return coefficient, features
