"""Event text as one line of visible characters: what a run name, a tag, an event's display name or a log
line may carry of a hostile value (the markdown reports escape it further: ``drift_retrain.markdown``).

Pure and import-free, so the vocabulary (``drift_retrain.names``) can use it too.
"""

from __future__ import annotations

import unicodedata

#: Marks where a value was cut to its limit.
CUT = "…"

_SPACE = frozenset({"Cc", "Zl", "Zp"})  # control characters, line and paragraph separators


def one_line(value: object, limit: int | None = None) -> str:
    """``value`` as one line of what it shows: control characters and line or paragraph separators become a
    space (no new line, no terminal escape), format characters go (bidi overrides and isolates, zero-width and
    tag characters: they reorder or hide what a reader sees), a lone surrogate becomes U+FFFD (it cannot be
    encoded); runs of white space become one space, none leads or trails. Longer than ``limit`` characters,
    it is cut and ends in ``…``."""
    kept = []
    for char in str(value):
        category = unicodedata.category(char)
        if category in _SPACE:
            kept.append(" ")
        elif category == "Cs":
            kept.append("\ufffd")
        elif category != "Cf":
            kept.append(char)
    text = " ".join("".join(kept).split())
    if limit is not None and len(text) > limit:
        text = text[: max(limit - len(CUT), 0)].rstrip() + CUT
    return text
