"""Event text shown in Prefect's markdown: escaped, so a hostile name is shown as the text it is, never as
markup (a link, an image, HTML, emphasis, a table cell boundary or a new line)."""

from __future__ import annotations

import re

#: The inline markup characters (CommonMark lets any ASCII punctuation be backslash-escaped, spec §2.4
#: "Backslash escapes"), and ``|``, a cell boundary in a GFM table. Block markers (``-``, ``+``, ``.``) start
#: markup only at the start of a line, which an escaped value never is.
_INLINE = re.compile(r"([\\`*_{}\[\]()#!|~])")
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape_md(value: object) -> str:
    """``value`` as literal markdown text on one line: line breaks and control characters become a space,
    markup characters are backslash-escaped, and HTML's ``&``, ``<`` and ``>`` become entities (a backslash
    does not stop every renderer from reading a tag)."""
    text = _BREAKS.sub(" ", str(value))
    text = "".join(_HTML.get(c, c) for c in text)
    return _INLINE.sub(r"\\\1", text)
