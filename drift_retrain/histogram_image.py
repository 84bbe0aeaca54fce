"""A feature's reference and current histograms as a small SVG image, for the drift artifact.

No image library (matplotlib is no dependency): an SVG of a few bars is a few hundred bytes of text, embedded in
the artifact's markdown as a ``data:image/svg+xml;base64,`` URI. Prefect's V2 UI shows such an image: its markdown
renderer keeps a ``data:image/`` src on an ``<img>`` and adds ``data`` to rehype-sanitize's src protocols (prefect
3.9.1 ``prefect/server/ui_v2_build/assets/lazy-markdown-*.js``, built from PrefectHQ/prefect
``ui-v2/src/components/ui/lazy-markdown.tsx``; ``tests/e2e/test_browser.py`` sees it drawn); V1 renders every
markdown image as an ``<img>`` (``drift_retrain.markdown``). An SVG shown as an image runs no script and loads
nothing (https://developer.mozilla.org/en-US/docs/Web/SVG/Guides/SVG_as_an_image).

Safe by construction: the image is drawn from numbers only (the shares of ``results.Histogram``, each clamped to
[0, 1]), never from a name or any other text of an event or a backend, and base64 leaves nothing in the URI that
could end a markdown link destination.
"""

from __future__ import annotations

import base64
import math

from drift_retrain.results import Histogram

WIDTH, HEIGHT = 120, 32
#: Grey: the reference; blue, over it: the current window (the legend is the artifact's text).
REFERENCE_FILL, CURRENT_FILL = "#9ca3af", "#2563eb"
#: Bins drawn at most (a longer histogram is cut: ours have ``drift_stats.BINS`` or ``MAX_CATEGORIES``).
MAX_BINS = 40


def _share(value: float) -> float:
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


def histogram_svg(histogram: Histogram) -> str:
    """Reference bars in grey, the current window's as narrower blue bars in front, scaled to the tallest bar."""
    reference = [_share(v) for v in histogram.reference[:MAX_BINS]]
    current = [_share(v) for v in histogram.current[:MAX_BINS]]
    bins = max(len(reference), len(current), 1)
    tallest = max([*reference, *current, 1e-9])
    step = WIDTH / bins
    bars = []
    for i in range(bins):
        for shares, fill, inset in ((reference, REFERENCE_FILL, 0.05), (current, CURRENT_FILL, 0.3)):
            share = shares[i] if i < len(shares) else 0.0
            height = (HEIGHT - 1) * share / tallest
            bars.append(
                f'<rect x="{i * step + step * inset:.2f}" y="{HEIGHT - height:.2f}" '
                f'width="{step * (1 - 2 * inset):.2f}" height="{height:.2f}" fill="{fill}"/>'
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">{"".join(bars)}</svg>'
    )


def histogram_data_uri(histogram: Histogram) -> str:
    """The image as a ``data:`` URI: only base64 characters after the fixed prefix."""
    return "data:image/svg+xml;base64," + base64.b64encode(histogram_svg(histogram).encode()).decode("ascii")
