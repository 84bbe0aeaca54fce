"""Drift statistics between a reference sample and a current window.

Per feature: PSI, two-sample Kolmogorov-Smirnov and a scaled Wasserstein distance. Dataset level: the
drift coefficient Azure ML v1 data drift reports, computed the same way it is defined there: how well a
classifier tells reference rows from current rows (here ``2 * AUC - 1`` on a holdout, clipped to [0, 1]),
with each feature's share of that classifier's permutation importance as its contribution.

For the person reading the drift table, each feature also gets what moved: the reference's and the window's
summary (mean and quantiles of a number, the most frequent values of a category) and their histograms over
the same bins.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from drift_retrain.results import Distribution, FeatureDrift, Histogram

_EPS = 1e-6
#: The quantiles a number's summary shows.
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
#: A feature of whole numbers with at most this many distinct values is read as a category.
MAX_CATEGORIES = 8
#: The categories a summary shows.
TOP_CATEGORIES = 3
#: Bins of a number's histogram (between the 1st and 99th percentile of both samples; the rest in the end bins).
BINS = 12


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
        categorical = is_categorical(ref, cur)
        features.append(
            FeatureDrift(
                feature=name,
                psi=psi(ref, cur),
                ks_statistic=float(ks.statistic),
                ks_pvalue=float(ks.pvalue),
                wasserstein=float(stats.wasserstein_distance(ref, cur) / scale),
                contribution=float(shares[i]),
                reference=distribution(ref, categorical),
                current=distribution(cur, categorical),
                histogram=histogram(ref, cur, categorical),
            )
        )
    features.sort(key=lambda f: f.contribution or 0.0, reverse=True)  # all set above; None only types the field
    return coefficient, features


def is_categorical(reference: np.ndarray, current: np.ndarray) -> bool:
    """Whole numbers with few distinct values (a count, a code, a flag): summarised by value, not quantiles."""
    both = np.concatenate([reference, current])
    return bool(np.all(both == np.round(both))) and len(np.unique(both)) <= MAX_CATEGORIES


def distribution(values: np.ndarray, categorical: bool) -> Distribution:
    """A sample's summary: the TOP_CATEGORIES most frequent values of a category, else mean and QUANTILES."""
    if not len(values):
        return Distribution(rows=0)
    if categorical:
        found, counts = np.unique(values, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:TOP_CATEGORIES]
        return Distribution(rows=len(values), top={f"{found[i]:g}": float(counts[i] / len(values)) for i in order})
    quantiles = np.quantile(values, list(QUANTILES.values()))
    return Distribution(
        rows=len(values),
        mean=float(np.mean(values)),
        quantiles={name: float(q) for name, q in zip(QUANTILES, quantiles, strict=True)},
    )


def histogram(reference: np.ndarray, current: np.ndarray, categorical: bool) -> Histogram:
    """Both samples' shares of rows in the same bins: one bin per value of a category, else BINS equal bins
    between the 1st and 99th percentile of both samples (the tails counted in the end bins)."""
    both = np.concatenate([reference, current])
    if categorical:
        values = np.unique(both)
        edges = np.append(values - 0.5, values[-1] + 0.5)
    else:
        low, high = np.quantile(both, [0.01, 0.99])
        edges = np.linspace(low, high if high > low else low + 1.0, BINS + 1)

    def shares(sample: np.ndarray) -> list[float]:
        counts = np.histogram(np.clip(sample, edges[0], edges[-1]), edges)[0]
        return [float(c / max(len(sample), 1)) for c in counts]

    return Histogram(edges=[float(e) for e in edges], reference=shares(reference), current=shares(current))
