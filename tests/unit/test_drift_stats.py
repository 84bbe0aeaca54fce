"""Drift statistics tell a shifted feature from a stable one."""

from __future__ import annotations

import numpy as np
import pytest

from drift_retrain.backends.local.drift_stats import (
    BINS,
    QUANTILES,
    TOP_CATEGORIES,
    distribution,
    drift_coefficient,
    feature_drift,
    histogram,
    is_categorical,
    psi,
)
from drift_retrain.results import Distribution


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


def test_a_numbers_summary_shows_where_it_moved_and_both_histograms_share_the_bins() -> None:
    """Issue 15 item 8: the direction of change: reference vs current mean and quantiles, histograms on one scale."""
    rng = np.random.default_rng(3)
    reference, current = rng.normal(45, 11, 3000), rng.normal(38, 11, 3000)
    assert not is_categorical(reference, current)
    before, after = distribution(reference, False), distribution(current, False)
    assert before.rows == 3000 and set(before.quantiles) == set(QUANTILES) and not before.top
    assert after.mean < before.mean - 5 and after.quantiles["p50"] < before.quantiles["p50"] - 5  # younger
    shown = histogram(reference, current, False)
    assert len(shown.edges) == BINS + 1 and len(shown.reference) == len(shown.current) == BINS
    assert sum(shown.reference) == pytest.approx(1) and sum(shown.current) == pytest.approx(1)  # tails in end bins
    middle = BINS // 2
    assert sum(shown.current[:middle]) > sum(shown.reference[:middle])  # the window's mass moved to lower values


def test_a_count_with_few_values_is_summarised_by_its_top_categories() -> None:
    reference = np.array([0.0] * 60 + [1.0] * 30 + [2.0] * 8 + [3.0] * 2)
    current = np.array([0.0] * 50 + [1.0] * 35 + [2.0] * 15)
    assert is_categorical(reference, current)
    summary = distribution(reference, True)
    assert summary.top == {"0": 0.6, "1": 0.3, "2": 0.08} and summary.mean is None  # TOP_CATEGORIES, most first
    assert len(summary.top) == TOP_CATEGORIES
    shown = histogram(reference, current, True)
    assert shown.reference == [0.6, 0.3, 0.08, 0.02] and shown.current == [0.5, 0.35, 0.15, 0.0]


def test_an_empty_window_has_an_empty_summary() -> None:
    assert distribution(np.array([]), False) == Distribution(rows=0)


@pytest.mark.slow  # a real domain classifier and permutation importance: seconds
def test_feature_drift_records_each_features_summaries_and_histogram() -> None:
    rng = np.random.default_rng(4)
    reference = np.column_stack([rng.normal(0, 1, 2000), rng.poisson(0.5, 2000).clip(0, 4)])
    current = np.column_stack([rng.normal(1, 1, 1000), rng.poisson(0.7, 1000).clip(0, 4)])
    _, features = feature_drift(["x", "late"], reference, current)
    by_name = {f.feature: f for f in features}
    assert by_name["x"].current.mean > by_name["x"].reference.mean + 0.5
    assert by_name["late"].reference.top and by_name["late"].histogram is not None


def test_the_histogram_image_is_a_png_drawn_from_numbers_only() -> None:
    """The drift table's image: a valid PNG (signature, chunk CRCs, the pixels it says), whatever the shares."""
    import base64
    import struct
    import zlib

    from drift_retrain.histogram_image import HEIGHT, WIDTH, histogram_data_uri
    from drift_retrain.results import Histogram

    shown = Histogram(edges=[0, 1, 2], reference=[1.0, 0.0], current=[float("inf"), 0.5])  # clamped, never raised
    uri = histogram_data_uri(shown)
    png = base64.b64decode(uri.removeprefix("data:image/png;base64,"), validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + data)
        chunks[kind], offset = data, offset + 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">II", chunks[b"IHDR"][:8]) == (WIDTH, HEIGHT)
    pixels = zlib.decompress(chunks[b"IDAT"])
    assert len(pixels) == HEIGHT * (1 + WIDTH * 4)
    bottom = pixels[-WIDTH * 4 :]
    pixel = lambda row, x: tuple(row[x * 4 : x * 4 + 4])
    assert pixel(bottom, WIDTH // 4) == (156, 163, 175, 255)  # the first bin: only the reference (inf: no bar)
    assert pixel(bottom, WIDTH * 3 // 4) == (37, 99, 235, 255)  # the second bin: the window's 0.5 bar
    top = pixels[1 : 1 + WIDTH * 4]
    assert pixel(top, WIDTH * 3 // 4)[3] == 0  # half as tall: nothing at the top of the second bin
