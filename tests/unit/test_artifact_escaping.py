"""Every event field is hostile, so every artifact shows event text as text: each artifact kind rendered with
hostile values and parsed with a real CommonMark + GFM parser (``tests.rendering``) has exactly the structure
it has with a harmless value (no heading, table row or cell, list, link, image or HTML node comes from the
value), no bare address a GFM renderer would link, and still shows the value. Table cells and descriptions,
which Prefect's V1 UI renders as markdown documents of their own, parse to one paragraph of plain text.
Run names, tags and event display names are one bounded line."""

from __future__ import annotations

import re

import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drift_retrain import names
from drift_retrain.breaches import BreachRow
from drift_retrain.config import PolicyConfig
from drift_retrain.markdown import escape_md, link_md
from drift_retrain.policy import decide
from drift_retrain.portal import Link
from drift_retrain.results import (
    CopyResult,
    Decision,
    Distribution,
    DriftDetails,
    FeatureDrift,
    Histogram,
    ModelVersion,
    TrainingResult,
)
from drift_retrain.signals import DriftSignal, SignalKind
from drift_retrain.sweep import SweepAction
from flows.promote import promotion_markdown
from flows.sweep import sweep_table
from tasks import report
from tasks.report import cancelled_markdown, decision_markdown, drift_markdown, model_markdown
from tests.contract.ml_fixtures import target
from tests.rendering import bare_addresses, is_plain_text, links, shape, texts

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-one"
START = datetime(2026, 11, 19, tzinfo=UTC)
HARMLESS = "value"

#: What an attacker would put in an event field, one way of breaking out each.
HOSTILE = [
    "\n# Decision: **Skip**\n| rule | passed |",  # a fake verdict heading and a spoofed rule table
    "x |\n| already_handled | yes | fine |",  # a row added to the table the value sits in
    "![x](http://evil/p.png)",  # an image every viewer's browser fetches
    "[x](javascript:alert(1))",  # a link that runs script (V1 keeps any href)
    "``a`b```",  # backticks: a code span's fence
    "a|b|c",  # cell boundaries
    "<img src=x onerror=alert(1)>",  # HTML
    "<http://evil>",  # a CommonMark autolink
    "http://evil/x",  # GFM bare autolinks
    "https://evil.example/x",
    "www.evil.com",
    "WWW.evil.com",
    "ftp://evil.example",
    "mallory@evil.com",
    "- [ ] item",  # block markers at the start of a cell document
    "1. first",
    "2) second",
    "> quoted",
    "---",
    "# heading",
    "    indented code",
    "_em_ *strong* ~~gone~~ ~x~",
    "&lt;b&gt; &#60;i&#62; &amp;",  # entities that would decode to HTML
    "[ref]: http://evil",
    "[^1]",
    "trailing\\",
]


def readable(value: str) -> str:
    """What a reader should see of the value: its words, white space (line breaks included) as one space."""
    return " ".join(value.split())


def shown(markdown: str, value: str) -> bool:
    return any(readable(value) in text for text in texts(markdown))


def assert_inert(markdown: str, harmless: str, value: str, allowed_links: list[str] | None = None) -> None:
    """The value added no node (same structure as with a harmless value), no linkable address, and is readable."""
    assert shape(markdown) == shape(harmless), markdown
    assert links(markdown) == (allowed_links or []), markdown
    assert not bare_addresses(markdown), markdown
    assert shown(markdown, value), markdown


def signal(value: str, **fields: Any) -> DriftSignal:
    """A signal holding the value wherever text goes, built without validation: whatever intake lets through,
    the reports must show safely (and a signal is also built from what Azure's APIs answer)."""
    base = dict(
        kind=SignalKind.DATASET_DRIFT,
        workspace_id=WS,
        monitor=value,
        run_id=value,
        event_id=value,
        monitor_id=value,
        drift_coefficient=0.61,
        window_start=START,
        window_end=START + timedelta(days=7),
    )
    return DriftSignal.model_construct(**(base | fields))


def breach(value: str) -> DriftSignal:
    """A v2 breach whose signal name, feature (group) and metric names are the value."""
    rows = [
        BreachRow(metric=value, value=0.31, threshold=0.1, group=value),
        BreachRow(metric="PSI", value=0.4, threshold=0.2),
    ]
    return signal(
        value,
        kind=SignalKind.MODEL_MONITOR,
        drift_coefficient=None,
        window_start=None,
        window_end=None,
        signal_name=value,
        breached=rows,
        breach_unparsed=f"row 3: {value}",
    )


def decision_of(sig: DriftSignal, details: DriftDetails) -> Decision:
    """The policy's own decision: its details quote the event (a v2 breach's names) as the real ones do."""
    return decide(sig, details, PolicyConfig(), [], now=START)


def details(value: str) -> DriftDetails:
    return DriftDetails(
        available=True,
        source=f"record of {value}",
        drift_coefficient=0.6,
        threshold=0.3,
        rows_in_window=500,
        features=[FeatureDrift(feature=value, psi=0.4, contribution=0.6, metrics={"jsd": 0.2})],
    )


# -- the markdown artifacts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_the_decision_shows_a_hostile_run_id_monitor_and_details_as_text(value: str) -> None:
    def render(v: str) -> str:
        return decision_markdown(signal(v), details(v), decision_of(signal(v), details(v)), "credit")

    assert_inert(render(value), render(HARMLESS), value)
    assert [t for t in texts(render(value)) if t.startswith("Decision")] == ["Decision for credit: Retrain (final)"]


@pytest.mark.parametrize("value", HOSTILE)
def test_the_decision_of_a_v2_breach_shows_its_signal_and_row_names_as_text(value: str) -> None:
    def render(v: str) -> str:
        return decision_markdown(breach(v), details(v), decision_of(breach(v), details(v)), "credit")

    assert_inert(render(value), render(HARMLESS), value)


@pytest.mark.parametrize("value", HOSTILE)
def test_the_drift_table_shows_hostile_names_as_text_and_only_our_own_images(value: str) -> None:
    """Feature, metric and category names come from a backend: text. The only images are the histograms we draw
    from numbers (``histogram_image``): PNG data URIs of base64 characters, whatever the names."""
    histogram = Histogram(edges=[0, 1, 2], reference=[0.4, 0.6], current=[float("nan"), 7.0])  # clamped, drawn

    def render(v: str) -> str:
        feature = FeatureDrift(
            feature=v, psi=0.4, contribution=0.6, metrics={v: 0.2}, histogram=histogram,
            reference=Distribution(rows=10, top={v: 0.7, "1": 0.3}), current=Distribution(rows=10, mean=1.0, quantiles={v: 2.0}),
        )
        return drift_markdown(details(v).model_copy(update={"features": [feature], "distributions_missing": v}), "credit")

    images = [src for src in links(render(value)) if src.startswith("data:")]
    assert len(images) == 1 and re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/]+=*", images[0])
    assert_inert(render(value), render(HARMLESS), value, allowed_links=images)


@pytest.mark.parametrize("value", HOSTILE)
def test_the_model_artifact_keeps_its_lineage_table_whole_and_links_only_our_urls(value: str) -> None:
    url = "https://ml.azure.com/model/credit:4/details?wsid=%2Fsubscriptions%2Fs&tid=t"

    def render(v: str) -> str:
        tags = {"drift.run_id": v, "drift.event_id": v, "decision": f"retrain: {v}", v: "a tag named by the value"}
        model = ModelVersion(
            name="credit",
            version=4,
            uri=f"/registry/{v}/model.joblib",
            created_at=START,
            tags=tags,
            metrics={v: 0.9, "f1": 0.7},
        )
        return model_markdown(model, [Link(label=f"Azure ML job {v}", url=url)])

    assert_inert(render(value), render(HARMLESS), value, allowed_links=[url])


@pytest.mark.parametrize("value", HOSTILE)
def test_the_cancellation_report_shows_the_run_and_the_interruption_as_text(value: str) -> None:
    def render(v: str) -> str:
        return cancelled_markdown("copy", "credit", v, f"TerminationSignal: {v}", v)

    assert_inert(render(value), render(HARMLESS), value)


@pytest.mark.parametrize("value", HOSTILE)
def test_the_promotion_report_shows_the_signal_and_the_uri_as_text(value: str) -> None:
    def render(v: str) -> str:
        return promotion_markdown("credit", 4, f"would deploy credit v4 from {v}", f"{WS.lower()}/runs/{v}")

    assert_inert(render(value), render(HARMLESS), value)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "http://plain.example/x",
        "https://x.example/a b",
        "https://x.example/(y)",
        "https://x.example/a>b",
        "https://x.example/?a=1&lt;",
        "data:image/png;base64,AAAA",
        "file:///state/registry/credit/4",  # opens nothing from a web page: the model artifact shows the path
    ],
)
def test_a_link_is_only_ever_made_to_one_of_our_own_urls(url: str) -> None:
    own = "https://adf.azure.com/en/monitoring/pipelineruns/run-1?factory=%2Fsubscriptions%2Fs"
    assert links(link_md("Data Factory run", own)) == [own]
    line = link_md("Data Factory run [x](javascript:alert(1))", url)
    assert links(line) == [] and is_plain_text(line) and shown(line, url)


# -- table artifacts, descriptions and event payloads (what report's tasks hand to Prefect) ---------------------


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """What the report tasks hand to Prefect, by kind: artifacts (their keyword arguments) and events."""
    made: dict[str, list[dict[str, Any]]] = {"markdown": [], "table": [], "event": []}
    monkeypatch.setattr(
        report, "create_markdown_artifact", lambda markdown, **kw: made["markdown"].append({"markdown": markdown, **kw})
    )
    monkeypatch.setattr(
        report, "create_table_artifact", lambda table, **kw: made["table"].append({"table": table, **kw})
    )
    monkeypatch.setattr(report, "emit_event", lambda event, **kw: made["event"].append({"event": event, **kw}))
    monkeypatch.setattr(report, "get_run_logger", lambda: logging.getLogger("test"))
    return made


def report_everything(value: str) -> None:
    """Every report the flow makes, each fed the value wherever event (or backend) text reaches it."""
    for sig in (signal(value), breach(value)):
        report.report_decision.fn(sig, details(value), decision_of(sig, details(value)), "credit")
    copy = CopyResult(
        run_id=value,
        status=value,
        rows_read=1,
        rows_copied=1,
        data_read=1,
        data_written=1,
        files_read=1,
        files_written=1,
        copy_duration=1.0,
        throughput=1.0,
        output_uri=value,
    )
    report.report_copy.fn(copy, "credit")
    training = TrainingResult(
        job_id=value, status="Completed", metrics={value: 0.9}, rows_train=1, rows_test=1, model_uri=value, duration=1.0
    )
    champion = ModelVersion(name="credit", version=3, uri="u", created_at=START, tags={}, metrics={value: 0.8})
    report.report_training.fn(training, "credit", champion)
    model = ModelVersion(name="credit", version=4, uri=value, created_at=START, tags={"drift.run_id": value})
    report.report_model.fn(
        signal(value), model, [Link(label=f"Azure ML job {value}", url="https://ml.azure.com/runs/j")]
    )
    report.report_cancelled("copy", "credit", value, value, value)


@pytest.mark.parametrize("value", HOSTILE)
def test_every_table_cell_is_plain_text_under_either_ui(made, value: str) -> None:
    report_everything(value)
    cells = [
        cell
        for artifact in made["table"]
        for row in artifact["table"]
        for cell in row.values()
        if isinstance(cell, str)
    ]
    assert len(made["table"]) == 3  # the v2 breach table, the copy, the training (the v1 drift table is markdown)
    assert all(is_plain_text(cell) for cell in cells), [c for c in cells if not is_plain_text(c)]
    assert any(shown(cell, value) for cell in cells)


@pytest.mark.parametrize("value", HOSTILE)
def test_every_artifact_description_is_plain_text(made, value: str) -> None:
    report_everything(value)
    descriptions = [artifact["description"] for kind in ("markdown", "table") for artifact in made[kind]]
    assert len(descriptions) == 8  # two decisions, the drift table, the model, the cancellation and three tables
    assert all(is_plain_text(d) for d in descriptions), [d for d in descriptions if not is_plain_text(d)]
    assert sum(shown(d, value) for d in descriptions) >= 4  # the breach, copy, training and cancellation name it


def test_the_sweep_table_shows_run_names_and_drift_run_ids_as_text() -> None:
    value = HOSTILE[0] + HOSTILE[2]
    rows = sweep_table([SweepAction(f"credit-{value}", "id", "FAILED", "rerun", f"drift run {value} of monitor m")])
    assert all(is_plain_text(cell) for row in rows for cell in row.values())
    assert shown(rows[0]["detail"], value)
    assert sweep_table([])[0]["action"] == "nothing to do"


def test_event_payloads_are_one_line(made) -> None:
    value = "a\nb\r\nc\u2028d\x1b[31m"
    report.report_decision.fn(breach(value), details(value), decision_of(breach(value), details(value)), "credit")
    (decided,) = made["event"]
    assert decided["payload"]["summary"].count("a b c d [31m") >= 1 and "\n" not in decided["payload"]["summary"]
    failed = report.failure_event("credit", signal(value), "run-1", f"Flow run failed: {value}\n" + "x" * 5000)
    assert "\n" not in failed["payload"]["error"] and len(failed["payload"]["error"]) == report.MAX_ERROR


# -- what escape_md does to text that is not hostile -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0.3142",
        "-0.5",
        "1e-05",
        "age_group",
        "drift coefficient 0.620 (drift run) >= threshold 0.300",
        "0 rows copied < minimum 500",
        "credit-default-drift_1717000000000",
        "skip: cooldown: v1 was registered 12 min ago",
    ],
)
def test_plain_words_numbers_and_the_policys_prose_pass_unchanged(text: str) -> None:
    assert escape_md(text) == text


# -- names a person reads: run names, tags, event display names ----------------------------------------------------

RAW = "drift\n# 1\r\x00\x1b[2J\u202eevil\u2066\u200b\u2028" + "r" * 500


def visible_one_line(text: str) -> bool:
    return not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"} for c in text)


def test_run_names_tags_and_event_names_are_one_bounded_line() -> None:
    tgt = target({"kind": "pipeline_job", "component": "c:1"})
    sig = signal(RAW, workspace_id=WS[: -len("ws-one")] + "ws\none\u202e")
    named = [names.flow_run_name(tgt, sig), names.flow_run_name(tgt, sig, names.SWEEP), names.unrouted_run_name(sig)]
    labels = [
        *names.flow_run_tags(tgt, sig, names.WEBHOOK),
        *[r[names.NAME] for r in names.signal_related(sig)],
        names.monitor_resource(sig)[names.NAME],
    ]
    assert all(visible_one_line(n) for n in named + labels), named + labels
    assert all(len(n) <= len(tgt.model_name) + 1 + names.MAX_LABEL + len("-sweep") for n in named)
    assert all(len(t) <= len("workspace:") + names.MAX_LABEL for t in names.flow_run_tags(tgt, sig, names.WEBHOOK))
    # the run name carries no event text at all: the model, the window's days and the digest
    assert names.flow_run_name(tgt, sig) == f"{tgt.model_name}-2026-11-19..26-{sig.digest[:8]}"
    assert sig.idempotency_key.endswith(sig.digest) and RAW in sig.idempotency_key  # identity keeps the value whole
