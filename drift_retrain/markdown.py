"""Event text shown in Prefect's markdown: escaped, so a hostile value is shown as the text it is, never as
markup (a heading, a list, a table row or cell boundary, emphasis, a link, an image, HTML or a new line).

Where Prefect renders markdown, and how (Prefect 3 serves two UIs; V2 is the default, V1 a user's choice):

- V2 renders markdown artifacts and artifact descriptions with react-markdown, remark-gfm, rehype-raw and
  rehype-sanitize: GFM, raw HTML kept (sanitized), images loaded (PrefectHQ/prefect
  ``ui-v2/src/components/ui/lazy-markdown.tsx``); table artifact cells are plain text
  (``ui-v2/src/components/artifacts/artifact/detail-table.tsx``).
- V1 renders them with marked 4.3.0, ``gfm: true`` (PrefectHQ/prefect-design
  ``src/components/MarkdownRenderer/worker.ts``), a link's href as is, ``javascript:`` included, and every
  image as an ``<img>`` (``parser.ts`` there); and it renders every string cell of a table artifact as a
  markdown document of its own (PrefectHQ/prefect-ui-library ``src/components/ArtifactDataTable.vue``).

So one escaping serves every place: inline in our reports, a description, and a whole table cell. Escaping
keeps the text (every renderer resolves a backslash escape or an entity to the character), except that a
bare web address or e-mail address gets an invisible U+2060 WORD JOINER: remark-gfm finds those in the text
*after* escapes are resolved (syntax-tree/mdast-util-gfm-autolink-literal ``lib/index.js``,
``transformGfmAutolinkLiterals``), so no backslash can stop it, but a character inside the address can.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from drift_retrain.text import one_line

#: Put inside bare web and e-mail addresses, so no GFM renderer makes them links (invisible when shown).
JOINER = "\u2060"

#: Where an address a GFM renderer links would start: ``scheme://`` (remark-gfm: http, https; marked: ftp
#: too), ``www.`` (also at the end of a value, before our own text) and ``@`` of an e-mail address.
_ADDRESS = re.compile(r"(?<=[A-Za-z])(?=://)|(?i:(?<=www)(?=\.|$))|(?<=@)")
#: ``&`` starting an entity (``&lt;``, ``&#60;``) and ``<`` starting HTML or an autolink (``<img``, ``</``,
#: ``<!--``, ``<?``, ``<http:``, ``<1@x.y>``): any ``<`` not followed by white space or ``=`` (``<= 0.3`` stays).
_HTML = re.compile(r"&(?=[#A-Za-z0-9])|&$|<(?![\s=])")
_ENTITY = {"&": "&amp;", "<": "&lt;"}
#: Always escaped: the backslash itself, code spans, emphasis and strikethrough, link and image brackets, and
#: the table cell boundary. ``_`` only where it could open or close emphasis: between two letters or digits
#: it cannot (CommonMark's flanking rules; marked checks the same), so ``age_group`` stays as it is.
_INLINE = re.compile(r"([\\`*~\[\]|])|(?<![^\W_])_|_(?![^\W_])")
#: A block marker, only meaningful at the start of a line (a value starts one in a V1 table cell and in a
#: description): a heading, a block quote, a bullet or thematic break; and an ordered list item's number.
_BLOCK = re.compile(r"^(?:#{1,6}(?=\s|$)|>|[-+](?=[\s-]|$))")
_ORDERED = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
#: A configured name (``config.Name``): safe in a code span as it is.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def escape_md(value: object, limit: int | None = None) -> str:
    """``value`` as literal markdown text on one line (``text.one_line``, cut to ``limit`` characters):
    markup characters backslash-escaped, HTML's ``&`` and ``<`` as entities where they could start markup,
    a bare address broken by ``JOINER``, and a block marker at its start escaped."""
    text = _ADDRESS.sub(JOINER, one_line(value, limit))
    text = _HTML.sub(lambda m: _ENTITY[m.group()], text)
    text = _INLINE.sub(lambda m: "\\" + m.group(), text)
    text = _BLOCK.sub(lambda m: "\\" + m.group(), text)
    return _ORDERED.sub(r"\1\\\2", text)


def escape_cells(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """A table artifact's rows with every text cell escaped: V1 renders a text cell as markdown, V2 as plain
    text; escaped, a cell is the same text under V1 and harmless under both (V2 shows the backslashes)."""
    return [{key: escape_md(cell) if isinstance(cell, str) else cell for key, cell in row.items()} for row in rows]


def code_name(name: str) -> str:
    """A configured name (a model, a target) in a code span; anything else as escaped text (a code span shows
    a backslash escape as it is, and a backtick in the value would end it)."""
    return f"`{name}`" if _NAME.fullmatch(name) else escape_md(name)


#: Our own links only: https (the Azure portals; the local registry's folder is shown as a path, since a
#: file:// link opens nothing from a web page), and only characters that can neither end a link destination
#: nor start an entity (no parentheses, spaces, ``<``, ``>``, ``;``).
_OWN_URL = re.compile(r"https://[A-Za-z0-9\-._~:/?#@=&%+,]*")


def link_md(label: str, url: str) -> str:
    """A markdown link to one of our own URLs (``drift_retrain.portal``), its label escaped. A URL that is not
    https, or that has a character which could end the link, is shown as escaped text, never linked."""
    if _OWN_URL.fullmatch(url):
        return f"[{escape_md(label)}]({url})"
    return f"{escape_md(label)}: {escape_md(url)}"
