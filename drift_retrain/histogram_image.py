"""A feature's reference and current histograms as a small PNG image, for the drift artifact.

No image library (matplotlib is no dependency): a few bars are drawn into an RGBA pixel buffer and written as a
PNG with zlib and struct (https://www.w3.org/TR/png-3/: signature, IHDR, one IDAT, IEND, each chunk with its
CRC-32), embedded in the artifact's markdown as a ``data:image/png;base64,`` URI. Prefect's V2 UI shows such an
image: its markdown renderer keeps a ``data:image/`` src on an ``<img>`` and adds ``data`` to rehype-sanitize's src
protocols (prefect 3.9.1 ``prefect/server/ui_v2_build/assets/lazy-markdown-*.js``, built from PrefectHQ/prefect
``ui-v2/src/components/ui/lazy-markdown.tsx``; ``tests/e2e/test_browser.py`` sees it drawn); V1 renders every
markdown image as an ``<img>`` (``drift_retrain.markdown``). PNG rather than SVG: CommonMark parsers that vet
``data:`` URIs let ``data:image/png`` through and refuse ``data:image/svg+xml`` (markdown-it ``validateLink``).

Safe by construction: the image is drawn from numbers only (the shares of ``results.Histogram``, each clamped to
[0, 1]), never from a name or any other text of an event or a backend, and base64 leaves nothing in the URI that
could end a markdown link destination.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib

from drift_retrain.results import Histogram

WIDTH, HEIGHT = 120, 32
#: Grey: the reference; blue, narrower and in front: the current window (the legend is the artifact's text).
REFERENCE_RGBA, CURRENT_RGBA = (156, 163, 175, 255), (37, 99, 235, 255)
#: Bins drawn at most (ours have ``drift_stats.BINS`` or at most ``drift_stats.MAX_CATEGORIES``).
MAX_BINS = 40
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _share(value: float) -> float:
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


def histogram_pixels(histogram: Histogram) -> list[bytearray]:
    """Rows of RGBA pixels, top first, transparent where no bar is: each bin a grey reference bar with the
    window's narrower blue bar in front, both scaled to the tallest bar."""
    reference = [_share(v) for v in histogram.reference[:MAX_BINS]]
    current = [_share(v) for v in histogram.current[:MAX_BINS]]
    bins = max(len(reference), len(current), 1)
    tallest = max([*reference, *current, 1e-9])
    rows = [bytearray(WIDTH * 4) for _ in range(HEIGHT)]
    step = WIDTH / bins
    for i in range(bins):
        for shares, rgba, inset in ((reference, REFERENCE_RGBA, 0.05), (current, CURRENT_RGBA, 0.3)):
            share = shares[i] if i < len(shares) else 0.0
            height = round(HEIGHT * share / tallest)
            left, right = round(i * step + step * inset), round((i + 1) * step - step * inset)
            for y in range(HEIGHT - height, HEIGHT):
                rows[y][left * 4 : right * 4] = bytes(rgba) * (right - left)
    return rows


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def histogram_png(histogram: Histogram) -> bytes:
    """The image as PNG bytes: 8-bit RGBA (colour type 6), every scanline unfiltered (filter byte 0)."""
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 6, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(row) for row in histogram_pixels(histogram))
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def histogram_data_uri(histogram: Histogram) -> str:
    """The image as a ``data:`` URI: only base64 characters after the fixed prefix."""
    return "data:image/png;base64," + base64.b64encode(histogram_png(histogram)).decode("ascii")
