"""Our markdown read as Prefect's UIs read it: a real CommonMark parser (markdown-it-py) with GFM's tables and
strikethrough, and GFM's bare-address autolinks checked on the parsed text.

Prefect's V2 UI parses with remark-gfm, its V1 UI with marked (``gfm: true``); see ``drift_retrain.markdown``.
markdown-it-py's GFM autolinks need linkify-it-py, which is not installed, so ``bare_addresses`` stands in:
remark-gfm links the addresses its regexes find in a text node's *decoded* value
(syntax-tree/mdast-util-gfm-autolink-literal ``lib/index.js``, ``transformGfmAutolinkLiterals``), and marked
(PrefectHQ/prefect-design pins 4.3.0) links ``ftp://`` too; these patterns are looser than both (no check of
the character before), so text they pass neither renderer links.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from drift_retrain.markdown import JOINER

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])

#: Nodes that are markup a value must never become (any node of these kinds in a value's place is an injection).
MARKUP = {
    "heading_open",
    "table_open",
    "tr_open",
    "td_open",
    "th_open",
    "bullet_list_open",
    "ordered_list_open",
    "blockquote_open",
    "hr",
    "fence",
    "code_block",
    "html_block",
    "html_inline",
    "link_open",
    "image",
    "code_inline",
    "em_open",
    "strong_open",
    "s_open",
    "softbreak",
    "hardbreak",
}
_BARE = re.compile(r"(?i)(?:https?|ftp)://|www\.|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def tokens(markdown: str) -> Iterator[Token]:
    """Every node of the parsed document, inline children in place, in document order."""
    for token in PARSER.parse(markdown):
        yield token
        yield from token.children or []


def shape(markdown: str) -> list[tuple[str, str, int]]:
    """The document's structure without its text: (node type, tag, nesting) of every node but text."""
    return [(t.type, t.tag, t.nesting) for t in tokens(markdown) if t.type != "text"]


def texts(markdown: str) -> list[str]:
    """The text of each inline (a paragraph, a heading, a table cell), as shown: escapes and entities resolved."""
    return [
        "".join(c.content for c in t.children or [] if c.type in {"text", "code_inline"}).replace(JOINER, "")
        for t in PARSER.parse(markdown)
        if t.type == "inline"
    ]


def bare_addresses(markdown: str) -> list[str]:
    """Text a GFM renderer would link though it is no link in the markdown (a bare URL, ``www.``, an e-mail)."""
    found = []
    for token in tokens(markdown):
        if token.type == "text":
            found += _BARE.findall(token.content)
    return found


def links(markdown: str) -> list[str]:
    """The href of every link and the src of every image."""
    return [str(t.attrGet("href") or t.attrGet("src")) for t in tokens(markdown) if t.type in {"link_open", "image"}]


def is_plain_text(document: str) -> bool:
    """A whole document (a V1 table cell, an artifact description) is at most one paragraph of text: no
    markup node of any kind and no address a renderer would link."""
    kinds = [t.type for t in tokens(document)]
    return kinds in ([], ["paragraph_open", "inline", "text", "paragraph_close"]) and not bare_addresses(document)
