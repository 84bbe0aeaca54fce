"""mkdocs hook: the pages that are generated, never retyped.

- ``configuration.md``: the marker ``<!-- generated: config-reference -->`` becomes a reference of every
  section and field of the config file, walked generically from the pydantic models in
  ``drift_retrain/config.py`` (field, type, default, constraints, description; a union of sections
  becomes one table per variant), so a model change shows up here without editing this page.
- ``configuration.md``: ``<!-- generated: template-placeholders -->`` becomes the table of template
  placeholders, from ``drift_retrain.templating.FIELDS`` (what the config loader accepts).
- ``getting-started.md``: ``<!-- generated: make-targets -->`` becomes the Makefile's documented targets
  (``target: ...  ## what it does``).
- ``benchmarks.md``: the marker ``<!-- generated: benchmark-results -->`` becomes the machine and every row
  of ``benchmarks/results.json`` (what, value, reference, target, met).

Used by ``mkdocs.yml`` (``hooks:``); the functions are plain and importable for tests.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_MARKER = "<!-- generated: config-reference -->"
BENCH_MARKER = "<!-- generated: benchmark-results -->"
PLACEHOLDERS_MARKER = "<!-- generated: template-placeholders -->"
MAKE_MARKER = "<!-- generated: make-targets -->"


def on_config(config: Any) -> Any:
    # The checkout's own package wins over whatever is installed (worktrees, a stale editable install).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CONFIG_MARKER in markdown:
        from drift_retrain.config import Settings

        markdown = markdown.replace(CONFIG_MARKER, config_reference(Settings))
    if PLACEHOLDERS_MARKER in markdown:
        from drift_retrain.templating import FIELDS

        markdown = markdown.replace(PLACEHOLDERS_MARKER, template_placeholders(FIELDS))
    if MAKE_MARKER in markdown:
        markdown = markdown.replace(MAKE_MARKER, make_targets(ROOT / "Makefile"))
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, benchmark_results(ROOT / "benchmarks" / "results.json"))
    return markdown


# ------------------------------------------------------------------------------------------------
# The configuration reference
# ------------------------------------------------------------------------------------------------


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X, m...]`` -> (X, [m...]), recursively."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, metadata = args[0], metadata + list(args[1:])
    return annotation, metadata


def _is_model(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_args(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return None


def _tag(annotation: Any) -> str | None:
    from pydantic import Tag

    _, metadata = _strip(annotation)
    return next((m.tag for m in metadata if isinstance(m, Tag)), None)


def _type_name(annotation: Any) -> str:
    annotation, _ = _strip(annotation)
    if annotation is type(None):
        return "none"
    union = _union_args(annotation)
    if union is not None:
        return " \\| ".join(dict.fromkeys(_type_name(a) for a in union))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(
            f"`{json.dumps(v.value if isinstance(v, Enum) else v)}`" for v in typing.get_args(annotation)
        )
    if origin in (list, tuple, set, frozenset):
        (item, *_) = typing.get_args(annotation) or (Any,)
        return f"list of {_type_name(item)}"
    if origin is dict:
        return f"table of {_type_name(typing.get_args(annotation)[1])}"
    if _is_model(annotation):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{json.dumps(m.value)}`" for m in annotation)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _toml(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if _is_model(type(value)):
        return "(its defaults)"
    if value is None:
        return "unset"
    if value == [] or value == {}:
        return "empty"
    return f"`{_toml(value)}`"


_BOUNDS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "length ≥", "max_length": "length ≤"}


def _constraints(field: Any) -> str:
    found: list[str] = []
    _, nested = _strip(field.annotation)
    for item in [*field.metadata, *nested]:
        for attr, word in _BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append("non-empty" if (attr, value) == ("min_length", 1) else f"{word} {value}")
        pattern = getattr(item, "pattern", None)
        if pattern:
            found.append(f"matches `{pattern}`")
    return "; ".join(dict.fromkeys(found))


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, angle brackets shown rather than taken for HTML."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _models_in(annotation: Any) -> list[tuple[Any, str | None, bool]]:
    """The sections a field's type holds: (model, variant tag, is a list of them)."""
    annotation, _ = _strip(annotation)
    if typing.get_origin(annotation) in (list, tuple):
        return [(m, tag, True) for m, tag, _ in _models_in(typing.get_args(annotation)[0])]
    union = _union_args(annotation)
    if union is not None:
        found = []
        for member in union:
            tag = _tag(member)
            found += [(m, tag or inner_tag, many) for m, inner_tag, many in _models_in(member)]
        return found
    return [(annotation, None, False)] if _is_model(annotation) else []


def _variant_label(model: Any, tag: str | None) -> str:
    """What tells a union's variants apart: its single-valued Literal fields (``kind = "local"``)."""
    fixed = []
    for name, field in model.model_fields.items():
        inner, _ = _strip(field.annotation)
        if typing.get_origin(inner) is typing.Literal and len(typing.get_args(inner)) == 1:
            fixed.append(f"{field.alias or name} = {_toml(typing.get_args(inner)[0])}")
    if fixed:
        return ", ".join(fixed)
    return f"variant {tag or model.__name__}"


def _unique(anchor: str, used: set[str]) -> str:
    candidate, n = anchor, 1
    while candidate in used:
        n += 1
        candidate = f"{anchor}-{n}"
    used.add(candidate)
    return candidate


def _sections(
    model: Any,
    path: str,
    many: bool,
    anchor: str,
    seen: dict[Any, tuple[str, str]],
    used: set[str],
    variant: str | None = None,
    within: str | None = None,
) -> Iterator[str]:
    """One heading and table per section, then its subsections; a model met again links to its table."""
    header = f"[[{path}]]" if many else f"[{path}]" if path else "top level"
    title = f"`{header}`" + (f" ({variant})" if variant else "") + (f" (in {within})" if within else "")
    if model in seen:
        first_anchor, first_title = seen[model]
        yield f"### {title} {{#{anchor}}}\n\nThe same fields as {first_title} ([above](#{first_anchor})).\n"
        return
    seen[model] = (anchor, title)
    yield f"### {title} {{#{anchor}}}\n"
    doc = " ".join((model.__doc__ or "").split("\n\n")[0].split())
    if doc:
        yield f"{_cell(doc)}\n"
    rows = ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    children: list[tuple[Any, str, bool, str, str | None]] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = field.alias or name
        kind = _type_name(field.annotation)
        nested = _models_in(field.annotation)
        if nested:
            child_path = f"{path}.{key}" if path else key
            several = len(nested) > 1
            links = []
            for child, tag, child_many in nested:
                label = _variant_label(child, tag) if several else None
                suffix = f"-{(tag or child.__name__).lower()}" if several else ""
                child_anchor = _unique("cfg-" + child_path.replace(".", "-").replace("_", "-") + suffix, used)
                children.append((child, child_path, child_many, child_anchor, label))
                links.append(f"[{label or 'section'}](#{child_anchor})")
            kind = ("one of: " if several else "") + ", ".join(links) + (" (a list)" if nested[0][2] else "")
            if "none" in _type_name(field.annotation).split(" \\| "):
                kind += " or none"
        rows.append(
            f"| `{key}` | {kind} | {_default(field)} | {_cell(_constraints(field))} | {_cell(field.description or '')} |"
        )
    yield "\n".join(rows) + "\n"
    for child, child_path, child_many, child_anchor, label in children:
        inherited = ", ".join(part for part in (variant, within) if part) or None
        yield from _sections(child, child_path, child_many, child_anchor, seen, used, label, inherited)


def config_reference(settings_model: Any) -> str:
    """Every section of the config file as Markdown tables, from the models themselves."""
    intro = (
        "Generated from the pydantic models in `drift_retrain/config.py` when the site is built: field, type, "
        "default, constraints and the field's own description. A section that may take several forms "
        "(a union) has one table per form, named by the fields that tell them apart.\n"
    )
    body = list(_sections(settings_model, "", False, "cfg-top", {}, {"cfg-top"}))
    return intro + "\n" + "\n".join(body)


def template_placeholders(fields: dict[str, str]) -> str:
    """Every placeholder a template may use, with its meaning, as the config loader knows them."""
    rows = ["| placeholder | value |", "|---|---|"]
    rows += [f"| `{{{name}}}` | {_cell(meaning)} |" for name, meaning in fields.items()]
    return "\n".join(rows) + "\n"


def make_targets(makefile: Path) -> str:
    """The Makefile's targets that say what they do (``name: prerequisites  ## description``)."""
    rows = ["| command | what it does |", "|---|---|"]
    for line in makefile.read_text(encoding="utf-8").splitlines():
        target, colon, rest = line.partition(":")
        if colon and "##" in rest and target.strip() and not target.startswith(("\t", " ", "#", "$")):
            rows.append(f"| `make {target.strip()}` | {_cell(rest.split('##', 1)[1].strip())} |")
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------------------
# The benchmark figures
# ------------------------------------------------------------------------------------------------


def benchmark_results(path: Path) -> str:
    """The machine and every row of ``benchmarks/results.json``, as `make bench` wrote them."""
    results = json.loads(path.read_text(encoding="utf-8"))
    machine = results.get("machine", {})
    out = [
        f"Measured {results.get('when', '?')}"
        + (" (a `--quick` smoke run, not a measurement)" if results.get("quick") else "")
        + ", read from `benchmarks/results.json` when the site was built.\n",
        "| machine | |",
        "|---|---|",
        *(f"| {_cell(str(k))} | {_cell(str(v))} |" for k, v in machine.items()),
        "",
        "| benchmark | measured | reference (same run) | target | holds |",
        "|---|---|---|---|---|",
    ]
    for row in results.get("rows", []):
        met = row.get("met")
        holds = "yes" if met is True else "**no**" if met is False else "-"
        out.append(
            f"| {_cell(row.get('what', row.get('benchmark', '')))} | {_cell(str(row.get('value', '')))} | "
            f"{_cell(str(row.get('reference', '')))} | {_cell(str(row.get('target', '')))} | {holds} |"
        )
    missed = [row.get("what", "") for row in results.get("rows", []) if row.get("met") is False]
    out.append("")
    out.append(
        f"Targets missed in this run: {len(missed)} of {len(results.get('rows', []))} rows"
        + (":\n\n" + "\n".join(f"- {_cell(m)}" for m in missed) if missed else ".")
        + "\n"
    )
    return "\n".join(out)
