"""`drift-retrain check`: is this deployment able to run? Validates the config, then, for every azure target,
signs in and reads the workspace, the factory and the pipeline as the configured identity, and asks ARM which
actions it has on the workspace and the factory.

A failure names what to fix: the config field, the role to grant and on which resource, the resource that
does not exist, or the endpoint that cannot be reached. Nothing is started or changed.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from drift_retrain.backends.azure.workspace_rest import WORKSPACE_API_VERSION
from drift_retrain.config import (
    AzureTarget,
    ConfigError,
    DataFactoryCopyConfig,
    LocalMonitorConfig,
    Settings,
    TargetConfig,
    load_settings,
)
from drift_retrain.sample_event import reaches, receive, signal_name, v1_event, v2_event

WORKSPACE_ROLE = "AzureML Data Scientist"
FACTORY_ROLE = "Data Factory Contributor"
PERMISSIONS_API_VERSION = "2022-04-01"
#: What the copy step does to a factory; a Reader can GET the factory and pipeline but not run them.
#: Names: MicrosoftDocs/azure-docs articles/role-based-access-control/permissions/analytics.md, Microsoft.DataFactory.
FACTORY_ACTIONS = (
    "Microsoft.DataFactory/factories/pipelines/createrun/action",
    "Microsoft.DataFactory/factories/pipelineruns/read",
    "Microsoft.DataFactory/factories/pipelineruns/cancel/action",
    "Microsoft.DataFactory/factories/pipelineruns/queryactivityruns/action",
    # POST .../queryPipelineRuns (pipeline_runs.query_by_factory): finding a run whose createRun answer was lost
    "Microsoft.DataFactory/factories/querypipelineruns/action",
)
#: What the training and register steps do in a workspace; a Reader can GET the workspace but do neither.
WORKSPACE_ACTIONS = (
    "Microsoft.MachineLearningServices/workspaces/jobs/write",
    "Microsoft.MachineLearningServices/workspaces/models/versions/write",
)
TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def run_checks(config: str | os.PathLike[str] | None = None) -> list[CheckResult]:
    """Every check, in order; stops early only when there is nothing left to check with."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        return [CheckResult("config", False, str(exc))]
    azure = [t for t in settings.targets if isinstance(t, AzureTarget)]
    results = [
        CheckResult("config", True, f"{settings.source_file}: {len(settings.targets)} target(s), {len(azure)} on azure")
    ]
    results += [
        CheckResult(f"target {t.name}", True, "local backend, nothing to reach")
        for t in settings.targets
        if t.backend == "local"
    ]
    results += routing_checks(settings)
    if not azure:
        return results
    return results + AzureChecks(settings).run(azure)


def routing_checks(settings: Settings) -> list[CheckResult]:
    """Every routing dead end, one failing line each naming the config field: a local monitor whose events no
    target takes, a target monitor no event reaches (no local monitor feeds a local target's, or its configured
    subscriptions filter all of it out), a configured v2 signal that does not reach its monitor. Each is found
    by passing the event the monitor would send through the receiver's own reading (``read_delivery``: workspace,
    filters, routing); one ok line when there is none."""
    failures: list[CheckResult] = []
    for index, local in enumerate(settings.local_monitors):
        failures += _local_monitor_dead_end(settings, index, local)
    for index, target in enumerate(settings.targets):
        failures += _target_dead_ends(settings, index, target)
    if failures:
        return failures
    monitors = sum(len(t.monitors) for t in settings.targets)
    return [
        CheckResult(
            "routing",
            True,
            f"{len(settings.local_monitors)} local monitor(s) and {monitors} target monitor(s): every one reaches its target",
        )
    ]


def _local_monitor_dead_end(settings: Settings, index: int, local: LocalMonitorConfig) -> list[CheckResult]:
    where = f"local_monitors.{index}"
    if not settings.knows_workspace(local.workspace):
        fields = ", ".join(f"targets.{i}.workspace" for i in range(len(settings.targets)))
        return [
            CheckResult(
                f"routing {where}",
                False,
                f"local monitor '{local.name}' feeds no target: {where}.workspace {local.workspace} is none of "
                f"{fields} in {settings.source_file}",
            )
        ]
    found = receive(settings, v1_event(local.workspace, local.name))
    if not isinstance(found, str):
        return []
    same = [(i, t) for i, t in enumerate(settings.targets) if t.workspace.lower() == local.workspace.lower()]
    names = [m for _, t in same for m in t.monitors]
    close = difflib.get_close_matches(local.name, names, n=1)
    hint = f"; a near name there is '{close[0]}' (a typo on one side?)" if close else ""
    fields = ", ".join(f"targets.{i}.monitors" for i, _ in same)
    return [
        CheckResult(
            f"routing {where}",
            False,
            f"local monitor '{local.name}' ({where}.name) feeds no target: it is in none of {fields} in "
            f"{settings.source_file}{hint} ({found})",
        )
    ]


def _target_dead_ends(settings: Settings, index: int, target: TargetConfig) -> list[CheckResult]:
    failures = []
    where = f"targets.{index}"
    name = f"routing {where}"
    for monitor in target.monitors:
        if target.backend == "local" and not any(
            m.name == monitor and m.workspace.lower() == target.workspace.lower() for m in settings.local_monitors
        ):
            failures.append(
                CheckResult(
                    name,
                    False,
                    f"monitor '{monitor}' of target '{target.name}' ({where}.monitors) is no [[local_monitors]] "
                    f"name of workspace {target.workspace} in {settings.source_file}: nothing on this machine "
                    "sends its drift, and a local target reads a drift run's details from its local monitor",
                )
            )
            continue
        v1 = reaches(receive(settings, v1_event(target.workspace, monitor)), target, monitor)
        v2 = reaches(
            receive(settings, v2_event(target.workspace, monitor, signal_name(target, monitor))), target, monitor
        )
        if v1 is not None and v2 is not None:
            failures.append(
                CheckResult(
                    name,
                    False,
                    f"no drift of monitor '{monitor}' ({where}.monitors) reaches target '{target.name}' "
                    f"({settings.source_file}): a v1 event: {v1}; a v2 breach: {v2}",
                )
            )
    for monitor, signals in target.signals.items():
        for signal in signals:
            why = reaches(receive(settings, v2_event(target.workspace, monitor, signal)), target, monitor)
            if why is not None:
                failures.append(
                    CheckResult(
                        name,
                        False,
                        f"a breach of signal '{signal}' ({where}.signals.{monitor}) does not reach monitor "
                        f"'{monitor}' of target '{target.name}' ({settings.source_file}): {why}",
                    )
                )
    return failures


def exit_code(results: list[CheckResult]) -> int:
    """0 when everything passed, 2 when the config itself is unusable, 1 for any other failure."""
    if results and results[0].name == "config" and not results[0].ok:
        return 2
    return 0 if all(r.ok for r in results) else 1


class AzureChecks:
    """Reads, as the configured identity, what each azure target will use at retrain time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.arm = settings.azure.resource_manager.rstrip("/")
        self.identity = describe_identity(settings)

    def run(self, targets: list[AzureTarget]) -> list[CheckResult]:
        from drift_retrain.backends.azure.session import AzureSession

        try:
            session = AzureSession.from_config(self.settings.azure)
        except ConfigError as exc:
            return [CheckResult("azure sign-in", False, str(exc))]
        try:
            token = session.bearer()
        except Exception as exc:  # azure-identity raises ClientAuthenticationError, CredentialUnavailableError, ...
            return [
                CheckResult(
                    "azure sign-in",
                    False,
                    f"no token for {session.arm_scope} as {self.identity} from {self.settings.azure.authority_host}: "
                    f"{_first_line(exc)}",
                )
            ]
        self.identity = describe_identity(self.settings, token)
        results = [CheckResult("azure sign-in", True, f"token for {session.arm_scope} as {self.identity}")]
        with httpx.Client(
            verify=session.verify(), timeout=TIMEOUT_SECONDS, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            get = lambda path, version: http.get(f"{self.arm}{path}", params={"api-version": version})  # noqa: E731
            for index, target in enumerate(self.settings.targets):
                if target.backend == "azure":
                    results += self._target(index, target, get)
        close = getattr(session.credential, "close", None)
        if close is not None:
            close()
        return results

    def _target(self, index: int, target: AzureTarget, get: Callable[[str, str], httpx.Response]) -> list[CheckResult]:
        workspace_ok = self._read(
            f"{target.name}: workspace",
            target.workspace,
            lambda: get(target.workspace, WORKSPACE_API_VERSION),
            role=WORKSPACE_ROLE,
            field=f"targets.{index}.workspace",
        )
        results = [workspace_ok]
        if workspace_ok.ok:
            results.append(
                self._may(
                    f"{target.name}: workspace permission",
                    target.workspace,
                    WORKSPACE_ACTIONS,
                    WORKSPACE_ROLE,
                    "may submit jobs and register models",
                    get,
                )
            )
        copy = target.copy_step
        factory_ok = self._read(
            f"{target.name}: data factory",
            copy.factory,
            lambda: get(copy.factory, "2018-06-01"),
            role=FACTORY_ROLE,
            field=f"targets.{index}.copy.factory",
        )
        results.append(factory_ok)
        if factory_ok.ok:
            pipeline_id = f"{copy.factory}/pipelines/{copy.pipeline}"
            results.append(
                self._read(
                    f"{target.name}: pipeline {copy.pipeline}",
                    pipeline_id,
                    lambda: get(pipeline_id, "2018-06-01"),
                    role=FACTORY_ROLE,
                    field=f"targets.{index}.copy.pipeline",
                    grant_on=copy.factory,
                    describe=lambda response: self._parameters(target.name, index, copy, pipeline_id, response),
                )
            )
            results.append(
                self._may(
                    f"{target.name}: run permission",
                    copy.factory,
                    FACTORY_ACTIONS,
                    FACTORY_ROLE,
                    "may start, watch and cancel pipeline runs",
                    get,
                )
            )
        return results

    def _parameters(
        self, target: str, index: int, copy: DataFactoryCopyConfig, pipeline_id: str, response: httpx.Response
    ) -> CheckResult:
        """A pipeline parameter without a default that the config does not set fails every createRun."""
        name = f"{target}: pipeline {copy.pipeline}"
        declared = ((response.json().get("properties") or {}).get("parameters")) or {}
        required = sorted(
            p for p, spec in declared.items() if "defaultValue" not in (spec or {}) and p not in copy.parameters
        )
        if required:
            return CheckResult(
                name,
                False,
                f"parameter(s) {', '.join(required)} have no default; set them in targets.{index}.copy.parameters",
            )
        return CheckResult(name, True, f"{pipeline_id} readable")

    def _may(
        self,
        name: str,
        resource: str,
        actions: tuple[str, ...],
        role: str,
        ok: str,
        get: Callable[[str, str], httpx.Response],
    ) -> CheckResult:
        """Reading is not running: ask ARM which actions the identity has on the resource."""
        try:
            response = get(f"{resource}/providers/Microsoft.Authorization/permissions", PERMISSIONS_API_VERSION)
        except httpx.HTTPError as exc:
            return CheckResult(name, False, f"{self.arm} unreachable: {type(exc).__name__}: {_first_line(exc)}")
        if response.status_code != 200:
            code, message = _arm_error(response)
            return CheckResult(
                name,
                True,
                f"not verified: permissions API answered {response.status_code} {code or ''} {message}".rstrip(),
            )
        missing = [action for action in actions if not allowed(action, response.json().get("value") or [])]
        if missing:
            return CheckResult(
                name, False, f"may read but not {', '.join(missing)}: grant '{role}' on {resource} to {self.identity}"
            )
        return CheckResult(name, True, ok)

    def _read(
        self,
        name: str,
        resource: str,
        request: Callable[[], httpx.Response],
        role: str,
        field: str,
        grant_on: str | None = None,
        describe: Callable[[httpx.Response], CheckResult] | None = None,
    ) -> CheckResult:
        try:
            response = request()
        except httpx.HTTPError as exc:
            return CheckResult(
                name, False, f"{self.arm} unreachable: {type(exc).__name__}: {_first_line(exc) or 'no answer'}"
            )
        code, message = _arm_error(response)
        if response.status_code == 200:
            return CheckResult(name, True, f"{resource} readable") if describe is None else describe(response)
        if response.status_code == 403:
            return CheckResult(
                name,
                False,
                f"{code or 'Forbidden'}: grant '{role}' on {grant_on or resource} to {self.identity}",
            )
        if response.status_code == 404:
            return CheckResult(
                name,
                False,
                f"{resource} not found ({code or 'NotFound'}); check {field} in {self.settings.source_file}",
            )
        if response.status_code == 401:
            return CheckResult(
                name,
                False,
                f"the token was refused ({code or 'Unauthorized'}: {message}); check azure.credential and azure.resource_manager",
            )
        return CheckResult(name, False, f"HTTP {response.status_code} {code or ''}: {message}".strip())


def allowed(action: str, permissions: list[dict[str, Any]]) -> bool:
    """Whether ARM's effective permissions grant ``action``: some entry's actions match it (``*`` wildcards,
    case-insensitive) and none of that entry's notActions do."""

    def matches(pattern: str) -> bool:
        return (
            re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), action, re.IGNORECASE) is not None
        )

    return any(
        any(matches(p) for p in entry.get("actions") or [])
        and not any(matches(p) for p in entry.get("notActions") or [])
        for entry in permissions
    )


def describe_identity(settings: Settings, token: str | None = None) -> str:
    """Who the checks run as: from the token's claims when it is a JWT, else from the config."""
    claims = _jwt_claims(token) if token else {}
    oid = claims.get("oid")
    name = claims.get("upn") or claims.get("unique_name") or claims.get("appid") or claims.get("azp")
    if oid:
        return f"{name or 'principal'} (object id {oid})"
    cred = settings.azure.credential
    if cred.kind == "client_secret":
        return f"app {cred.client_id}"
    if cred.kind == "managed_identity":
        return f"managed identity {cred.client_id}" if cred.client_id else "the system-assigned managed identity"
    if cred.kind == "workload_identity":
        return f"workload identity {cred.client_id or '$AZURE_CLIENT_ID'}"
    return "the DefaultAzureCredential identity" + (f" (client id {cred.client_id})" if cred.client_id else "")


def _jwt_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def _arm_error(response: httpx.Response) -> tuple[str | None, str]:
    """ARM's error body: {"error": {"code", "message"}}."""
    try:
        error = response.json().get("error") or {}
        return error.get("code"), error.get("message") or response.reason_phrase
    except (ValueError, AttributeError):
        return None, response.reason_phrase


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
