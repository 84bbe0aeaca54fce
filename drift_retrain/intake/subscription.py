"""The Azure side of a target: the Event Grid subscription(s) that deliver its drift to the receiver, and the
statuses of its Azure ML training jobs (``job_subscription``).

Rendered from the same settings the receiver enforces (``[[targets.subscriptions]]``), as
``az eventgrid event-subscription create`` commands or as parameters for
``deployments/eventgrid-subscription.bicep``. The shared secret is never printed: the commands refer
to its environment variable, expanded by the shell that runs them.
"""

from __future__ import annotations

import json
import shlex
import string
from typing import Any

from drift_retrain.config import (
    AzureTarget,
    EventSubscriptionConfig,
    PublishedPipelineConfig,
    ReceiverConfig,
    TargetConfig,
)
from drift_retrain.intake.filters import MAX_FILTER_VALUES, NO_VALUE, SINGLE_VALUE, AdvancedFilter
from drift_retrain.intake.job_events import RUN_COMPLETED
from drift_retrain.names import (
    TRAINING_JOB_PREFIX,
    V1_DRIFT_SUBSCRIPTION,
    V2_MONITOR_SUBSCRIPTION,
    event_subscription_name,
)
from drift_retrain.signals import DATASET_DRIFT_DETECTED, MONITOR_BREACH_TAG, RUN_STATUS_CHANGED, workspace_name

ENDPOINT_PLACEHOLDER = "https://<your-host>/api/eventgrid"
DEAD_LETTER_PLACEHOLDER = (
    "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>"
    "/blobServices/default/containers/<container>"
)
#: The breach tag's fixed text and the filter key, as Microsoft's how-to enters them (the text is
#: evaluate_metrics_threshold.py ``_generate_error_message``'s, Azure/azureml-assets).
BREACH_TEXT = "has failed due to one or more features violating metric thresholds"
BREACH_FILTER_KEY = f"data.RunTags.{MONITOR_BREACH_TAG}"
_SCHEMAS = {"EventGridSchema": "eventgridschema", "CloudEventSchemaV1_0": "cloudeventschemav1_0"}


def default_subscriptions(target: TargetConfig) -> list[EventSubscriptionConfig]:
    """One subscription per signal kind (an advanced filter applies to every event of its subscription,
    so the v2 breach filter needs a subscription of its own). The v2 one filters as Microsoft's how-to does:
    "String contains" the breach text, and, to filter at the monitoring level, "String contains" the names of
    the target's monitors and configured signals (a filter's values OR together, filters AND: a breach of
    another monitor's signal is not delivered). Over Event Grid's 25 values a filter, the names are split
    over several v2 subscriptions."""
    v1 = EventSubscriptionConfig(
        name=event_subscription_name(target.name, V1_DRIFT_SUBSCRIPTION),
        included_event_types=[DATASET_DRIFT_DETECTED],
        advanced_filters=[AdvancedFilter(operator="StringIn", key="data.DataDriftName", values=list(target.monitors))],
    )
    names = breach_filter_values(target)
    chunks = [names[i : i + MAX_FILTER_VALUES] for i in range(0, len(names), MAX_FILTER_VALUES)]
    v2 = [
        EventSubscriptionConfig(
            name=event_subscription_name(target.name, V2_MONITOR_SUBSCRIPTION) + (f"-{n + 1}" if n else ""),
            included_event_types=[RUN_STATUS_CHANGED],
            advanced_filters=[
                # MicrosoftDocs/azure-ai-docs articles/machine-learning/how-to-monitor-model-performance.md
                # ("Create an event subscription"): the key, the operator and both values
                AdvancedFilter(operator="StringContains", key=BREACH_FILTER_KEY, values=[BREACH_TEXT]),
                AdvancedFilter(operator="StringContains", key=BREACH_FILTER_KEY, values=chunk),
            ],
        )
        for n, chunk in enumerate(chunks)
    ]
    return [v1, *v2]


def breach_filter_values(target: TargetConfig) -> list[str]:
    """What a v2 breach of this target contains in its tag text, the way routing matches it: a monitor name
    (in its signals' names, by Microsoft's naming convention) or a configured signal name."""
    names = list(target.monitors)
    for signals in target.signals.values():
        names += [s for s in signals if not any(n.casefold() in s.casefold() for n in names)]
    return names


#: The job-event subscription's kind: ``<target>-jobs``.
JOB_SUBSCRIPTION = "jobs"
#: Template fields an experiment name may use and still be the same for every signal of a target.
_TARGET_FIELDS = frozenset({"model_name", "target"})


def job_subscription(target: TargetConfig) -> EventSubscriptionConfig | None:
    """The subscription that delivers the statuses of the target's training jobs (``job_events``), so a retrain
    suspended on one is woken when it ends; None for a target that trains locally (no Azure ML job).

    Run events' subject is ``experiments/<experimentId>/runs/<runId>`` (MicrosoftDocs/azure-docs
    articles/event-grid/event-schema-machine-learning.md): the experiment's GUID comes first, so no subject
    filter can select our job names. An advanced filter on the data does: a v2 job's run id is its
    deterministic name, so ``data.runId`` StringBeginsWith ``train-``. A v1 pipeline run's id is a GUID the
    service picks; its experiment's name is filtered on instead when the target's template gives every signal
    the same one (else the subscription takes every run status of the workspace, and the receiver keeps ours)."""
    if not isinstance(target, AzureTarget):
        return None
    training = target.training
    if isinstance(training, PublishedPipelineConfig):
        experiment = _static_experiment(training.experiment_name, target)
        rules = (
            [AdvancedFilter(operator="StringIn", key="data.experimentName", values=[experiment])] if experiment else []
        )
    else:
        rules = [AdvancedFilter(operator="StringBeginsWith", key="data.runId", values=[TRAINING_JOB_PREFIX])]
    return EventSubscriptionConfig(
        name=event_subscription_name(target.name, JOB_SUBSCRIPTION),
        included_event_types=[RUN_STATUS_CHANGED, RUN_COMPLETED],
        advanced_filters=rules,
    )


def _static_experiment(template: str, target: TargetConfig) -> str | None:
    """The experiment name every signal of the target gets, or None when the template uses a signal's fields."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if not fields <= _TARGET_FIELDS:
        return None
    return template.format(model_name=target.model_name, target=target.name)


def subscriptions_of(target: TargetConfig) -> tuple[list[EventSubscriptionConfig], bool]:
    """The configured subscriptions, or the defaults (False: not configured, so not enforced on receipt)."""
    return (list(target.subscriptions), True) if target.subscriptions else (default_subscriptions(target), False)


def _endpoint(receiver: ReceiverConfig, endpoint: str | None) -> str:
    url = (endpoint or receiver.public_url or ENDPOINT_PLACEHOLDER).split("?", 1)[0]
    if any(c in url for c in '"$`\\ '):
        raise ValueError(f"endpoint URL {url!r} contains characters that cannot go into a shell command")
    return url


def _filter_args(rule: AdvancedFilter) -> list[str]:
    if rule.operator in NO_VALUE:
        values: list[str] = []
    elif rule.operator in SINGLE_VALUE:
        values = [json.dumps(rule.value)]
    elif rule.operator.endswith("InRange"):
        values = [f"{low},{high}" for low, high in rule.ranges()]
    else:
        values = [str(v) for v in rule.values or []]
    return [rule.key, rule.operator, *values]


def az_command(
    target: TargetConfig, subscription: EventSubscriptionConfig, receiver: ReceiverConfig, endpoint: str | None = None
) -> str:
    """``az eventgrid event-subscription create`` for one subscription, one option per line."""
    url = _endpoint(receiver, endpoint)
    lines: list[list[str]] = [
        ["az", "eventgrid", "event-subscription", "create"],
        ["--name", subscription.name],
        ["--source-resource-id", target.workspace],
        ["--endpoint-type", "webhook"],
    ]
    if receiver.auth == "secret":
        lines.append(["--endpoint", f'"{url}?code=${{{receiver.secret_env}}}"'])
        if receiver.secret_header:
            lines.append(
                [
                    "--delivery-attribute-mapping",
                    receiver.secret_header,
                    "static",
                    f'"${{{receiver.secret_env}}}"',
                    "true",
                ]
            )
    else:
        lines.append(["--endpoint", url])
    if receiver.auth == "entra" and receiver.entra is not None:
        lines.append(["--azure-active-directory-tenant-id", receiver.entra.tenant_id])
        lines.append(["--azure-active-directory-application-id-or-uri", receiver.entra.audiences[0]])
    lines.append(["--event-delivery-schema", _SCHEMAS[subscription.delivery_schema]])
    if subscription.included_event_types:
        lines.append(["--included-event-types", *subscription.included_event_types])
    if subscription.subject_begins_with:
        lines.append(["--subject-begins-with", subscription.subject_begins_with])
    if subscription.subject_ends_with:
        lines.append(["--subject-ends-with", subscription.subject_ends_with])
    if subscription.subject_case_sensitive:
        lines.append(["--subject-case-sensitive", "true"])
    for rule in subscription.advanced_filters:
        lines.append(["--advanced-filter", *_filter_args(rule)])
    if subscription.advanced_filtering_on_arrays:
        lines.append(["--enable-advanced-filtering-on-arrays", "true"])
    lines.append(["--max-delivery-attempts", str(subscription.max_delivery_attempts)])
    lines.append(["--event-ttl", str(subscription.event_ttl_minutes)])
    lines.append(["--max-events-per-batch", str(subscription.max_events_per_batch)])
    lines.append(["--preferred-batch-size-in-kilobytes", str(subscription.preferred_batch_size_kb)])
    lines.append(["--deadletter-endpoint", subscription.dead_letter_endpoint or DEAD_LETTER_PLACEHOLDER])
    rendered = []
    for line in lines:
        first, *rest = line
        quoted = [first] + [a if a.startswith('"') else shlex.quote(a) for a in rest]
        rendered.append(" ".join(quoted))
    return " \\\n  ".join(rendered)


def bicep_parameters(
    target: TargetConfig, subscription: EventSubscriptionConfig, receiver: ReceiverConfig, endpoint: str | None = None
) -> dict[str, Any]:
    """An ARM parameters file for deployments/eventgrid-subscription.bicep (the secret is passed at deploy time)."""
    filters = []
    for rule in subscription.advanced_filters:
        entry: dict[str, Any] = {"operatorType": rule.operator, "key": rule.key}
        if rule.operator in SINGLE_VALUE:
            entry["value"] = rule.value
        elif rule.operator not in NO_VALUE:
            entry["values"] = rule.values
        filters.append(entry)
    values = {
        "workspaceName": workspace_name(target.workspace),
        "subscriptionName": subscription.name,
        "endpointUrl": _endpoint(receiver, endpoint),
        "authMode": receiver.auth,
        "secretHeader": receiver.secret_header or "",
        "entraTenantId": receiver.entra.tenant_id if receiver.entra else "",
        "entraAudience": receiver.entra.audiences[0] if receiver.entra else "",
        "deliverySchema": subscription.delivery_schema,
        "includedEventTypes": subscription.included_event_types,
        "subjectBeginsWith": subscription.subject_begins_with,
        "subjectEndsWith": subscription.subject_ends_with,
        "subjectCaseSensitive": subscription.subject_case_sensitive,
        "advancedFilters": filters,
        "advancedFilteringOnArrays": subscription.advanced_filtering_on_arrays,
        "maxDeliveryAttempts": subscription.max_delivery_attempts,
        "eventTtlMinutes": subscription.event_ttl_minutes,
        "maxEventsPerBatch": subscription.max_events_per_batch,
        "preferredBatchSizeKb": subscription.preferred_batch_size_kb,
        "deadLetterContainerId": subscription.dead_letter_endpoint or "",
    }
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {name: {"value": value} for name, value in values.items()},
    }
