"""Step 6: report in the Prefect UI: artifacts keyed per model (so they are found across runs) and
events other automations can trigger on."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit
from urllib.request import url2pathname
from uuid import UUID

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.events import emit_event

from drift_retrain import readable
from drift_retrain.breaches import ALERTS_BELOW, is_breach
from drift_retrain.config import TargetConfig
from drift_retrain.histogram_image import histogram_data_uri
from drift_retrain.markdown import code_name, escape_cells, escape_md, link_md
from drift_retrain.names import (
    CANCELLED,
    COPY,
    DECISION,
    DECISION_MADE,
    DRIFT,
    GATE_OFF,
    ID,
    MODEL,
    MODEL_REGISTERED,
    NAME,
    RETRAIN_FAILED,
    TRAINING,
    artifact_key,
    flow_run_related,
    flow_run_resource_id,
    flow_run_tags,
    model_resource,
    signal_related,
    started_by,
)
from drift_retrain.portal import Link
from drift_retrain.results import (
    OVERALL,
    Check,
    CopyResult,
    Decision,
    Distribution,
    DriftDetails,
    ModelVersion,
    TrainingResult,
)
from drift_retrain.signals import DriftSignal
from drift_retrain.text import one_line

TOP_FEATURES = 10  # rows of the drift table
MAX_BREACH_ROWS = 100  # rows of a v2 breach's drift table
MAX_TAG_VALUE = 200  # characters of a lineage tag's value shown in the model artifact
MAX_ERROR = 2000  # characters of a failure's message in the failed event


@task(name="label-run", cache_policy=NO_CACHE)
def label_run(flow_run_id: str, tags: list[str], target: TargetConfig, signal: DriftSignal) -> None:
    """A run started from the Run form carries only the deployment's tags: add the ones the receiver and
    the sweep set (``via:manual``), so every retrain is found by model, target, workspace and kind."""
    wanted = flow_run_tags(target, signal, started_by(tags))
    missing = [tag for tag in wanted if tag not in tags]
    if missing:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(flow_run_id), tags=[*tags, *missing])


@task(name="report-decision", cache_policy=NO_CACHE)
def report_decision(
    signal: DriftSignal,
    details: DriftDetails,
    decision: Decision,
    model_name: str,
    card: UUID | None = None,
    announce: bool = True,
) -> UUID:
    """The decision with every rule, pass or fail, on one card per run. The first call writes the card and the
    drift table behind it: preliminary while a retrain's copy and gate are still to come, final for a skip.
    Given that ``card``, a later call rewrites the same card as the final decision with the rules checked since
    (the slot, the copy, the gate), so a run never shows a stale decision beside the final one. ``announce=False``:
    the decision did not change, so automations do not hear it twice. Returns the card's id."""
    final = card is not None or not decision.retrain
    summary = one_line(decision.summary)
    get_run_logger().info("decision for %s on drift run %s: %s", model_name, one_line(signal.run_id), summary)
    markdown = decision_markdown(signal, details, decision, model_name, final=final)
    description = escape_md(f"{summary} ({FINAL if final else PRELIMINARY})")
    if card is None:
        created = create_markdown_artifact(markdown, key=artifact_key(DECISION, model_name), description=description)
        # async_dispatch answers the sync caller of a sync task directly, never a coroutine (prefect/artifacts.py)
        card = cast(UUID, created)
        if signal.breached:  # a v2 breach states its rows itself: shown whether or not details could be had
            _table(breach_rows(signal, details), artifact_key(DRIFT, model_name), breach_description(signal, details))
        elif details.features:
            create_markdown_artifact(
                drift_markdown(details, model_name),
                key=artifact_key(DRIFT, model_name),
                description=escape_md(drift_description(details)),
            )
    else:
        # PATCH /artifacts/{id} rewrites the artifact and its key's latest alike (prefect/server/models/artifacts.py
        # ``update_artifact``): the run keeps one decision card, and the key's page shows the final one
        with get_client(sync_client=True) as client:
            client.update_artifact(card, ArtifactUpdate(data=markdown, description=description))
    if announce:
        emit_event(
            DECISION_MADE,
            resource=model_resource(model_name),
            related=signal_related(signal),
            payload={"retrain": decision.retrain, "summary": summary, "signal": signal.identity},
        )
    return card


def decision_card(flow_run_id: UUID, model_name: str) -> UUID | None:
    """The decision card this run already wrote (a resumed retrain runs again from the top: it rewrites the
    card it has instead of writing, and announcing, a second one)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        cards = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key(DECISION, model_name)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            ),
            limit=1,
        )
    return cards[0].id if cards else None


#: How a decision card says whether it can still change.
FINAL = "final decision"
PRELIMINARY = "preliminary: the copy and the gate are still to come"


def _table(rows: list[dict[str, Any]], key: str, description: str) -> None:
    """Every table artifact: its text cells and its description (markdown in both UIs) escaped."""
    create_table_artifact(escape_cells(rows), key=key, description=escape_md(description))


def decision_markdown(
    signal: DriftSignal, details: DriftDetails, decision: Decision, model_name: str, final: bool = True
) -> str:
    """The decision artifact: the verdict (preliminary or final), the drift run it is about, one table row per
    rule, the details' source. Every value from the event, a backend or a check's detail (which quotes them) is
    escaped text, never a code span: one escaping is right in a paragraph and in a table cell alike
    (``drift_retrain.markdown``)."""
    verdict = "**Retrain**" if decision.retrain else "**Skip**"
    window = (
        f" over [{signal.window_start:%Y-%m-%d %H:%M}, {signal.window_end:%Y-%m-%d %H:%M}) UTC"
        if signal.window_start and signal.window_end
        else ""
    )
    lines = [
        f"# Decision for {code_name(model_name)}: {verdict} ({'final' if final else 'preliminary'})",
        "",
        (
            f"Drift run {escape_md(signal.run_id)} from monitor {escape_md(signal.monitor)}"
            f" in workspace {escape_md(signal.workspace_name)} ({signal.kind.value}){window}."
        ),
        "",
        "| rule | passed | detail |",
        "|---|---|---|",
        *[f"| {_rule(c)} | {'yes' if c.passed else 'no'} | {escape_md(c.detail)} |" for c in decision.checks],
        "",
        f"Drift details: {escape_md(details.source)}.",
        "",
        f"Signal: {escape_md(signal.identity)}",
    ]
    if not final:
        lines[1:1] = [
            "",
            "Preliminary: this card is rewritten with the final decision once the copy and the gate are checked.",
        ]
    return "\n".join(lines)


def _rule(check: Check) -> str:
    """A rule's name is the policy's own word (``already_handled``: ``_`` inside a word is no markup)."""
    return escape_md(check.rule)


def drift_description(details: DriftDetails) -> str:
    return (
        f"Top {min(len(details.features), TOP_FEATURES)} of {len(details.features)} features by drift; "
        f"dataset drift coefficient {_number(details.drift_coefficient)} vs threshold {_number(details.threshold)}"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


#: The per-feature statistics a source may report, in the order the drift table shows them.
STATISTICS = {
    "contribution": "contribution",
    "psi": "PSI",
    "ks_statistic": "KS statistic",
    "ks_pvalue": "KS p-value",
    "wasserstein": "Wasserstein",
}


def drift_markdown(details: DriftDetails, model_name: str) -> str:
    """The drift artifact: the dataset's coefficient against its threshold once (the threshold is the dataset's,
    not any feature's), then one row per top feature: what moved first (both histograms as an image drawn from
    numbers, ``histogram_image``, and the reference's and the window's summary), then how much: its share of the
    drift and every statistic the source reported. Names and metric names come from a backend: escaped text."""
    features = details.top_features(TOP_FEATURES)
    reported = [name for name in STATISTICS if any(getattr(f, name) is not None for f in features)]
    metrics = sorted({metric for f in features for metric in f.metrics})
    header = ["rank", "feature", "histogram", "reference", "current"]  # what moved first, then how much
    header += [*[STATISTICS[n] for n in reported], *map(escape_md, metrics)]
    lines = [
        f"# Drift of {code_name(model_name)}: top {len(features)} of {len(details.features)} features",
        "",
        (
            f"Dataset drift coefficient **{_number(details.drift_coefficient)}** vs threshold "
            f"**{_number(details.threshold)}** (the dataset's threshold, not a feature's). "
            "Reference and current: mean and p10 / p50 / p90 of a number, the most frequent values of a category "
            "with their share of the rows. Histogram: the reference in grey, the drift window in blue."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    missing = escape_md(details.distributions_missing or "not recorded")
    for rank, feature in enumerate(features, start=1):
        image = f"![histogram {rank}]({histogram_data_uri(feature.histogram)})" if feature.histogram else missing
        cells = [str(rank), escape_md(feature.feature), image]
        cells += [_summary(feature.reference) or missing, _summary(feature.current) or missing]
        cells += [readable.number(getattr(feature, name)) for name in reported]
        cells += [readable.number(feature.metrics.get(metric)) for metric in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Drift details: {escape_md(details.source)}."]
    return "\n".join(lines)


def _summary(distribution: Distribution | None) -> str | None:
    """``mean 45.1 · p10 31 · p50 45 · p90 59`` or ``0: 62% · 1: 30% · 2: 7%``; category values are escaped."""
    if distribution is None:
        return None
    if distribution.top:
        return " · ".join(f"{escape_md(value)}: {readable.share(s)}" for value, s in distribution.top.items())
    if distribution.mean is None:
        return "no rows"
    quantiles = [f"{escape_md(name)} {readable.number(q)}" for name, q in distribution.quantiles.items()]
    return " · ".join([f"mean {readable.number(distribution.mean)}", *quantiles])


def breach_rows(signal: DriftSignal, details: DriftDetails) -> list[dict[str, str]]:
    """One row per (feature or group, metric) of a v2 breach: first the breached rows as its tag states them
    (always there, even without workspace access), then every other metric and threshold the monitor's metric
    runs add when the details could be read. Every cell is event or workspace text: ``_table`` escapes them."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in signal.breached[:MAX_BREACH_ROWS]:
        rows[(row.group or "", row.metric)] = _breach_row(row.group or "", row.metric, row.value, row.threshold, True)
    for feature in details.features if details.available else []:
        group = "" if feature.feature == OVERALL else feature.feature
        for metric, value in sorted(feature.metrics.items()):
            if len(rows) >= MAX_BREACH_ROWS or (group, metric) in rows:
                continue
            threshold = feature.thresholds.get(metric)
            breached = None if threshold is None else is_breach(metric, value, threshold)
            rows[(group, metric)] = _breach_row(group, metric, value, threshold, breached)
    return list(rows.values())


def _breach_row(
    group: str, metric: str, value: float, threshold: float | None, breached: bool | None
) -> dict[str, str]:
    return {
        "feature/group": group,
        "metric": metric,
        "value": f"{value:.4g}",
        "threshold": "n/a" if threshold is None else f"{threshold:.4g}",
        "breached": "n/a" if breached is None else ("yes" if breached else "no"),
        "direction": "alerts below the threshold" if metric in ALERTS_BELOW else "alerts above the threshold",
    }


def breach_description(signal: DriftSignal, details: DriftDetails) -> str:
    """Plain text (``_table`` escapes it): the signal, its monitor, how many rows, what could not be read."""
    shown = min(len(signal.breached), MAX_BREACH_ROWS)
    name = signal.signal_name or "(unreadable name)"
    rows = f"{len(signal.breached)} breached row(s)" + (
        f", the first {shown} shown" if shown < len(signal.breached) else ""
    )
    unread = f"; unreadable: {signal.breach_unparsed}" if signal.breach_unparsed else ""
    return f"Signal {name} of monitor {signal.monitor}: {rows}{unread}. Drift details: {details.source}"


@task(name="report-copy", cache_policy=NO_CACHE)
def report_copy(copy: CopyResult, model_name: str) -> None:
    _table([copy_row(copy)], artifact_key(COPY, model_name), copy_description(copy))


def copy_row(copy: CopyResult) -> dict[str, Any]:
    """Where the data landed first, then where it went, then what moved: bytes with units, seconds, KB/s (Data
    Factory's Copy activity reports throughput in KB/s)."""
    return {
        "landing": copy.source_uri or "not reported",
        "copied_to": copy.output_uri,
        "run_id": copy.run_id,
        "status": copy.status,
        "rows_read": copy.rows_read,
        "rows_copied": copy.rows_copied,
        "data_read": readable.byte_size(copy.data_read),
        "data_written": readable.byte_size(copy.data_written),
        "files_read": copy.files_read,
        "files_written": copy.files_written,
        "duration": f"{readable.number(copy.copy_duration)} s",
        "throughput": f"{readable.number(copy.throughput)} KB/s",
        "reattached": copy.reattached,
    }


def copy_description(copy: CopyResult) -> str:
    """Plain text (``_table`` escapes it)."""
    rows = "rows not reported" if copy.rows_copied is None else f"{readable.count(copy.rows_copied)} rows"
    landing = copy.source_uri or "(landing not reported)"
    return (
        f"Copy run {copy.run_id}: {rows}, {readable.byte_size(copy.data_written)} from {landing} to {copy.output_uri}"
    )


@task(name="report-training", cache_policy=NO_CACHE)
def report_training(training: TrainingResult, model_name: str, champion: ModelVersion | None) -> None:
    """The new model's metrics beside the current champion's, so the gate's comparison is visible; the
    description says what was trained on what."""
    _table(
        training_rows(training, champion), artifact_key(TRAINING, model_name), training_description(training, champion)
    )


def training_description(training: TrainingResult, champion: ModelVersion | None) -> str:
    """The algorithm, the rows (reference + window), the holdout the metrics are measured on, where the data lives
    and which champion the metrics are held against. Plain text (``_table`` escapes it)."""
    algorithm = training.algorithm or "algorithm not reported"
    total = training.rows_train + training.rows_test
    split = (
        f" ({readable.count(training.rows_reference)} reference + {readable.count(training.rows_window)} window)"
        if training.rows_reference is not None and training.rows_window is not None
        else ""
    )
    data = training.data_location or "not reported"
    versus = f"vs champion v{champion.version}" if champion else "(no champion yet)"
    return (
        f"{algorithm} on {readable.count(total)} rows{split}, {readable.count(training.rows_test)} held out for the "
        f"metrics; training data: {data}. Metrics of job {training.job_id} {versus}"
    )


def training_rows(training: TrainingResult, champion: ModelVersion | None) -> list[dict[str, Any]]:
    """One row per metric the job reported: the challenger's value and the champion's (None without one)."""
    return [
        {
            "metric": name,
            "challenger": value,
            "champion": champion.metrics.get(name) if champion else None,
            "champion_version": champion.version if champion else None,
        }
        for name, value in training.metrics.items()
    ]


@task(name="report-model", cache_policy=NO_CACHE)
def report_model(signal: DriftSignal, model: ModelVersion, links: list[Link], gate: str = GATE_OFF) -> None:
    """The registered version, where to find it (portal deep links or the registry folder), its lineage.
    ``gate`` (``Decision.gate``) labels the event's model resource: the promote trigger matches on it."""
    get_run_logger().info(
        "%s v%s %s from drift run %s", model.name, model.version, _registration(model), one_line(signal.run_id)
    )
    create_markdown_artifact(
        model_markdown(model, links),
        key=artifact_key(MODEL, model.name),
        description=escape_md(f"{model.name} v{model.version}"),
    )
    emit_event(
        MODEL_REGISTERED,
        resource=model_resource(model.name, gate),
        related=signal_related(signal),
        payload={
            "version": model.version,
            "uri": model.uri,
            "metrics": model.metrics,
            "signal": signal.identity,
            "gate": gate,
            "links": {link.label: link.url for link in links},
        },
    )


def _registration(model: ModelVersion) -> str:
    return "already registered (reused)" if model.already_registered else "registered"


def _link(link: Link) -> str:
    """A portal link stays a link; a ``file://`` one is shown as the path it names, as text: browsers do not open
    a file:// link from a web page, so in the Prefect UI it was a link that did nothing."""
    if link.url.startswith("file://"):
        return f"{escape_md(link.label)}: {escape_md(url2pathname(urlsplit(link.url).path))}"
    return link_md(link.label, link.url)


def model_markdown(model: ModelVersion, links: list[Link]) -> str:
    """The model artifact: the version, its links, location, metrics and lineage tags (the decision's
    checks are left out: the decision artifact shows them as a table). The lineage tags carry the event's
    values, so every cell is escaped; links are only ever our own portal links (``link_md``), a local folder is
    shown as its path."""
    metrics = ", ".join(f"{k} = {v}" for k, v in model.metrics.items())
    lines = [
        f"# {code_name(model.name)} v{model.version} {_registration(model)}",
        "",
        *[f"- {_link(link)}" for link in links],
        f"- location: {escape_md(model.uri)}",
        f"- metrics: {escape_md(metrics)}",
        "",
        "| lineage tag | value |",
        "|---|---|",
        *[
            f"| {escape_md(k)} | {escape_md(v, MAX_TAG_VALUE)} |"
            for k, v in sorted(model.tags.items())
            if k != "decision.checks"
        ],
    ]
    return "\n".join(lines)


def report_failure(model_name: str | None, signal: DriftSignal | None, flow_run_id: str, error: str) -> None:
    """``drift-retrain.retrain.failed``: the flow failed or crashed; ``error`` is its state's message.
    Called from the flow's failure hook, so a signal that could not even be read is reported too."""
    emit_event(RETRAIN_FAILED, **failure_event(model_name, signal, flow_run_id, error))


def failure_event(model_name: str | None, signal: DriftSignal | None, flow_run_id: str, error: str) -> dict[str, Any]:
    """The failed event's resource (the model, or the flow run when not even the model is known), related
    resources (the signal's, the flow run) and payload."""
    resource = (
        model_resource(model_name) if model_name else {ID: flow_run_resource_id(flow_run_id), NAME: "unknown model"}
    )
    related = signal_related(signal) if signal else []
    if model_name:
        related.append(flow_run_related(flow_run_id))
    payload = {
        "error": one_line(error, MAX_ERROR),
        "signal": signal.identity if signal else None,
        "flow_run_id": flow_run_id,
    }
    return {"resource": resource, "related": related, "payload": payload}


def report_cancelled(step: str, model_name: str, run_id: str, why: str, outcome: str) -> None:
    """Called (not a task: the flow is being torn down) when an interrupted wait cancelled its external run."""
    get_run_logger().warning("%s run %s of %s: %s (%s)", step, one_line(run_id), model_name, outcome, one_line(why))
    markdown = cancelled_markdown(step, model_name, run_id, why, outcome)
    create_markdown_artifact(
        markdown, key=artifact_key(CANCELLED, model_name), description=escape_md(f"{step} run {run_id}: {outcome}")
    )


def cancelled_markdown(step: str, model_name: str, run_id: str, why: str, outcome: str) -> str:
    """The external run's id and what interrupted the wait (an exception's text) are escaped text."""
    lines = [
        f"# {code_name(model_name)}: {escape_md(step)} run cancelled",
        "",
        "| step | run | interrupted by | cancellation |",
        "|---|---|---|---|",
        f"| {escape_md(step)} | {escape_md(run_id)} | {escape_md(why or 'interruption')} | {escape_md(outcome)} |",
    ]
    return "\n".join(lines)
