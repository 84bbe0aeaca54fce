"""Issue 17: the files that ship drift-retrain to a fleet (Dockerfile, deploy/compose.yaml, deploy/helm/, deploy/k8s/,
deploy/kubernetes/prefect.yaml, prefect.yaml) cannot run on the machine they were written on (no Docker, no
Kubernetes), so they are parsed here and cross-checked with the code: commands and options, env var names, ports,
the work pools, entrypoints, worker limits and health checks, the compose start order."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import AliasChoices, BaseModel

from drift_retrain.cli import app
from drift_retrain.config import CONFIG_ENV, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RECEIVER_PORT, SERVER_PORT, WORKER_HEALTH_PORT = 8088, 4200, 8080
IMAGE_DIR = "/opt/drift-retrain"
CONFIG_PATH = "/etc/drift-retrain/drift-retrain.toml"

# Keys of Prefect's charts, read from PrefectHQ/prefect-helm at commit 75b0c2776ec08bb00e3cf29b8bf1a8a8c5daa3e1:
# charts/prefect-server/values.yaml (the sections deploy/helm/prefect-server.values.yaml touches) ...
SERVER_CHART_KEYS = {
    "global", "global.prefect", "global.prefect.image", "global.prefect.image.repository",
    "global.prefect.image.prefectTag", "global.prefect.image.pullPolicy", "global.prefect.image.pullSecrets",
    "global.prefect.env",
    "server", "server.basicAuth", "server.terminationGracePeriodSeconds", "server.env", "server.args",
    "server.command", "server.replicaCount", "server.resources", "server.extraEnvVarsSecret", "server.extraArgs",
    "backgroundServices", "backgroundServices.runAsSeparateDeployment", "backgroundServices.replicaCount",
    "backgroundServices.terminationGracePeriodSeconds", "backgroundServices.env", "backgroundServices.resources",
    "backgroundServices.messaging", "backgroundServices.messaging.broker", "backgroundServices.messaging.cache",
    "backgroundServices.messaging.redis", "backgroundServices.messaging.redis.host",
    "backgroundServices.messaging.redis.port", "backgroundServices.messaging.redis.db",
    "backgroundServices.messaging.redis.existingSecret", "backgroundServices.messaging.docket",
    "backgroundServices.messaging.docket.url", "backgroundServices.messaging.docket.existingSecret",
    "service", "service.port", "service.targetPort", "service.type",
    "postgresql", "postgresql.enabled", "redis", "redis.enabled", "externalDatabase",
}  # fmt: skip
# ... and charts/prefect-worker/values.yaml (the worker.image/config/api/replica/liveness sections, every key).
WORKER_CHART_KEYS = {
    "worker", "worker.image", "worker.image.repository", "worker.image.prefectTag", "worker.image.pullPolicy",
    "worker.image.pullSecrets", "worker.image.debug", "worker.config", "worker.config.workPool",
    "worker.config.workQueues", "worker.config.queryInterval", "worker.config.prefetchSeconds", "worker.config.http2",
    "worker.config.type", "worker.config.installPolicy", "worker.config.name", "worker.config.limit",
    "worker.config.jobNamespace", "worker.config.observerClusterWide", "worker.config.baseJobTemplate",
    "worker.config.baseJobTemplate.existingConfigMapName", "worker.config.baseJobTemplate.configuration",
    "worker.apiConfig", "worker.selfHostedServerApiConfig", "worker.selfHostedServerApiConfig.apiUrl",
    "worker.selfHostedServerApiConfig.basicAuth", "worker.selfHostedServerApiConfig.basicAuth.enabled",
    "worker.selfHostedServerApiConfig.basicAuth.authString", "worker.selfHostedServerApiConfig.basicAuth.existingSecret",
    "worker.replicaCount", "worker.livenessProbe", "worker.livenessProbe.enabled", "worker.livenessProbe.config",
    "worker.livenessProbe.config.initialDelaySeconds", "worker.livenessProbe.config.periodSeconds",
    "worker.livenessProbe.config.timeoutSeconds", "worker.livenessProbe.config.failureThreshold",
    "worker.livenessProbe.config.successThreshold",
}  # fmt: skip
# prefect-redis's settings (src/integrations/prefect-redis/prefect_redis/client.py, RedisMessagingSettings): the
# package is not installed here, so its names are listed, as the self-hosted docs' "Redis setup" gives them.
PREFECT_REDIS_ENV = {"PREFECT_REDIS_MESSAGING_HOST", "PREFECT_REDIS_MESSAGING_PORT", "PREFECT_REDIS_MESSAGING_DB"}


# ------------------------------------------------------------------------------------------------
# Reading the files
# ------------------------------------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _instructions(name: str) -> list[str]:
    return [args for instruction, args in _dockerfile() if instruction == name]


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _instructions("ENV"):
        env.update(dict(token.split("=", 1) for token in shlex.split(args)))
    return env


def _compose() -> dict[str, Any]:
    return _yaml(DEPLOY / "compose.yaml")


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _command_lines(command: list[str] | str) -> Iterator[list[str]]:
    """Each program a compose/k8s command runs: a list as is; `sh -c` scripts split on && and ||."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:2] != ["sh", "-c"]:
        yield words
        return
    for part in re.split(r"&&|\|\||;", words[2]):
        part = re.sub(r"[()]|[0-9]?>\S*|>&\d", " ", part)
        if part.strip():
            yield shlex.split(part)


def _k8s_documents() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "k8s" / "receiver.yaml").read_text(encoding="utf-8")))


def _receiver_container() -> dict[str, Any]:
    (deployment,) = [d for d in _k8s_documents() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _all_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every program the shipped files start."""
    found = [("Dockerfile CMD", json_list(_instructions("CMD")[-1]))]
    for name, service in _services().items():
        if "command" in service:
            found += [(f"compose {name}", argv) for argv in _command_lines(service["command"])]
    found.append(("k8s receiver", _receiver_container()["command"]))
    return found


def json_list(args: str) -> list[str]:
    """An exec-form instruction's argument list."""
    return list(yaml.safe_load(args))


def _dotted(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")


# ------------------------------------------------------------------------------------------------
# What the code knows
# ------------------------------------------------------------------------------------------------


@cache
def _drift_retrain_commands() -> dict[str, set[str]]:
    """Every `drift-retrain` command and its option spellings, from the typer app itself."""
    group: Any = typer.main.get_command(app)  # a TyperGroup: click's Group API (typer vendors its own click)
    return {
        name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")}
        for name, command in group.commands.items()
    }


@cache
def _prefect_help(*path: str) -> str:
    """`prefect <path> --help`, as the installed Prefect prints it (its CLI is the reference for options)."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *path, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"prefect {' '.join(path)} --help: {done.stderr[-500:]}"
    return done.stdout


@cache
def _prefect_env_names() -> frozenset[str]:
    """Every PREFECT_ environment variable Prefect's settings model reads, aliases included."""
    from prefect.settings import Settings

    def walk(model: type[BaseModel], prefix: str) -> set[str]:
        names: set[str] = set()
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                names |= walk(field.annotation, f"{prefix}{name.upper()}_")
                continue
            names.add(f"{prefix}{name.upper()}")
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names |= {c.upper() for c in alias.choices if isinstance(c, str)}
            elif isinstance(alias, str):
                names.add(alias.upper())
        return names

    return frozenset(walk(Settings, "PREFECT_"))


def _source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "drift_retrain").rglob("*.py"))


# ------------------------------------------------------------------------------------------------
# The image
# ------------------------------------------------------------------------------------------------


def test_the_image_is_python_311_slim_with_the_project_at_the_fixed_path_the_pull_step_uses() -> None:
    (base,) = _instructions("FROM")
    assert base == "python:3.11-slim"
    assert _instructions("WORKDIR") == [IMAGE_DIR]
    copied = {src for args in _instructions("COPY") for src in shlex.split(args)[:-1]}
    for needed in ("flows/", "tasks/", "deployments/", "drift_retrain/", "prefect.yaml", "pyproject.toml"):
        assert needed in copied, f"the Dockerfile does not COPY {needed}"
        assert (ROOT / needed).exists()
    for prefect_file in (ROOT / "prefect.yaml", DEPLOY / "kubernetes" / "prefect.yaml"):
        (pull,) = _yaml(prefect_file)["pull"]
        assert pull == {"prefect.deployments.steps.set_working_directory": {"directory": IMAGE_DIR}}, prefect_file


def test_the_image_runs_as_a_non_root_user_with_config_mounted_and_state_on_a_volume() -> None:
    (user,) = _instructions("USER")
    assert user not in {"root", "0"}
    env = _docker_env()
    assert env[CONFIG_ENV] == CONFIG_PATH  # the variable drift_retrain/config.py reads
    fleet = load_settings(DEPLOY / "drift-retrain.toml")
    volumes = {v for args in _instructions("VOLUME") for v in json_list(args)}
    assert str(fleet.state_dir) in volumes, "the fleet config's state_dir is not the image's volume"
    assert env["PREFECT_HOME"].startswith(str(fleet.state_dir)), "persisted results would stay on one container"


def test_no_secret_is_baked_into_the_image_and_the_context_leaves_local_state_out() -> None:
    for args in _instructions("ENV") + _instructions("ARG"):
        assert not re.search(r"SECRET|PASSWORD|TOKEN|API_KEY", args, re.IGNORECASE), args
    copied = " ".join(_instructions("COPY"))
    assert "drift-retrain.toml" not in copied and ".drift-retrain" not in copied
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".git", ".venv", ".drift-retrain"} <= ignored
    assert not ignored & {"flows", "tasks", "deployments", "drift_retrain", "prefect.yaml", "pyproject.toml"}


def test_the_image_installs_only_extras_pyproject_declares() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = [args for args in _instructions("RUN") if "pip install" in args]
    assert installs
    for args in installs:
        for wanted in re.findall(r"\.\[([\w,-]+)\]", args):
            assert set(wanted.split(",")) <= set(extras), f"{args}: extras not in pyproject.toml"


def test_the_image_exposes_the_receiver_and_server_ports() -> None:
    exposed = {int(p) for args in _instructions("EXPOSE") for p in args.split()}
    assert {RECEIVER_PORT, SERVER_PORT} <= exposed


# ------------------------------------------------------------------------------------------------
# Commands, options, env vars and ports agree with the code
# ------------------------------------------------------------------------------------------------


def test_every_drift_retrain_command_the_files_run_is_a_real_command_with_real_options() -> None:
    commands = _drift_retrain_commands()
    seen = 0
    for where, argv in _all_commands():
        if argv[0] != "drift-retrain":
            continue
        seen += 1
        assert argv[1] in commands, f"{where}: no `drift-retrain {argv[1]}` command"
        for word in argv[2:]:
            if word.startswith("-"):
                assert word.split("=")[0] in commands[argv[1]], f"{where}: `drift-retrain {argv[1]}` has no {word}"
    assert seen >= 4  # the CMD, two compose receivers and the k8s receiver at least


def test_every_prefect_command_the_files_run_exists_with_those_options() -> None:
    for where, argv in _all_commands():
        if argv[0] != "prefect":
            continue
        words = [w for w in argv[1:] if w != "--no-prompt"]
        path = [w for w in words[: words.index(next((w for w in words if w.startswith("-")), words[-1]))]]
        path = [w for w in path if re.fullmatch(r"[a-z-]+", w)][:3]
        while len(path) > 1 and path[-1] not in _prefect_help(*path[:-1]).split():  # a positional (a pool name)
            path = path[:-1]
        text = _prefect_help(*path)
        for word in words:
            if word.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), (
                    f"{where}: prefect {path} has no {word}"
                )


def test_env_var_names_exist_in_the_code_or_in_prefects_settings() -> None:
    source = _source_text()
    settings = _prefect_env_names()
    environments: list[tuple[str, set[str]]] = [("Dockerfile", set(_docker_env()))]
    for name, service in _services().items():
        environments.append((f"compose {name}", set(service.get("environment") or {})))
    environments.append(("k8s receiver", {e["name"] for e in _receiver_container()["env"]}))
    for prefect_file in (DEPLOY / "kubernetes" / "prefect.yaml",):
        pool = _yaml(prefect_file)["definitions"]["work_pools"]["kubernetes"]
        environments.append((str(prefect_file), set(pool["job_variables"]["env"])))
    for where, names in environments:
        for name in names:
            if name.startswith("DRIFT_RETRAIN_"):
                assert f'"{name}"' in source, f"{where}: {name} is not a name drift_retrain reads"
            elif name.startswith("PREFECT_"):
                assert name in settings or name in PREFECT_REDIS_ENV, f"{where}: {name} is no Prefect setting"
    secret_env = load_settings(DEPLOY / "drift-retrain.toml").receiver.secret_env
    assert secret_env in {e["name"] for e in _receiver_container()["env"]}
    assert secret_env in _services()["receiver-1"]["environment"]


def test_the_webhook_secret_comes_from_outside_never_from_the_files() -> None:
    secret_env = load_settings(DEPLOY / "drift-retrain.toml").receiver.secret_env
    (entry,) = [e for e in _receiver_container()["env"] if e["name"] == secret_env]
    assert "value" not in entry and entry["valueFrom"]["secretKeyRef"]["name"]
    for name in ("receiver-1", "receiver-2"):
        assert re.fullmatch(r"\$\{" + secret_env + r"(:\?[^}]*)?\}", _services()[name]["environment"][secret_env])


def test_ports_agree_receiver_8088_and_server_4200() -> None:
    webhook = typer.main.get_command(app).commands["webhook"]  # type: ignore[attr-defined]
    (port_option,) = [p for p in webhook.params if p.name == "port"]
    assert port_option.default == RECEIVER_PORT
    services = _services()
    for name in ("receiver-1", "receiver-2"):
        argv = services[name]["command"]
        assert argv[argv.index("--port") + 1] == str(RECEIVER_PORT)
        assert services[name]["ports"][0].endswith(f":{RECEIVER_PORT}")
        assert f":{RECEIVER_PORT}/healthz" in " ".join(services[name]["healthcheck"]["test"])
    server = services["prefect-server"]
    assert server["command"][server["command"].index("--port") + 1] == str(SERVER_PORT)
    api_urls = [
        s["environment"]["PREFECT_API_URL"] for s in services.values() if "PREFECT_API_URL" in s.get("environment", {})
    ]
    api_urls.append(next(e["value"] for e in _receiver_container()["env"] if e["name"] == "PREFECT_API_URL"))
    api_urls.append(
        _yaml(DEPLOY / "helm" / "prefect-worker.values.yaml")["worker"]["selfHostedServerApiConfig"]["apiUrl"]
    )
    assert len(api_urls) >= 5
    for url in api_urls:
        assert url.endswith(f":{SERVER_PORT}/api"), url
    container = _receiver_container()
    assert container["ports"][0]["containerPort"] == RECEIVER_PORT
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": RECEIVER_PORT}
    (service,) = [d for d in _k8s_documents() if d["kind"] == "Service"]
    assert service["spec"]["ports"][0]["targetPort"] == RECEIVER_PORT
    assert _yaml(DEPLOY / "helm" / "prefect-server.values.yaml")["service"]["port"] == SERVER_PORT


def test_the_receiver_health_path_is_the_one_the_app_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", "s" * 32)
    from drift_retrain.intake.app import create_app
    from drift_retrain.testing import write_config

    paths = {route.path for route in create_app(load_settings(write_config(tmp_path))).routes}  # type: ignore[attr-defined]
    assert "/healthz" in paths
    assert _receiver_container()["readinessProbe"]["httpGet"]["path"] == "/healthz"


# ------------------------------------------------------------------------------------------------
# Deployments, work pools, workers
# ------------------------------------------------------------------------------------------------


def _deployments(path: Path) -> list[dict[str, Any]]:
    return _yaml(path)["deployments"]


def test_every_deployment_entrypoint_exists() -> None:
    for prefect_file in (ROOT / "prefect.yaml", DEPLOY / "kubernetes" / "prefect.yaml"):
        for deployment in _deployments(prefect_file):
            file, function = deployment["entrypoint"].split(":")
            assert re.search(rf"(?m)^(async )?def {function}\(", (ROOT / file).read_text()), deployment["entrypoint"]


def test_the_kubernetes_variant_is_the_same_deployments_on_another_pool() -> None:
    process = {d["name"]: {k: v for k, v in d.items() if k != "work_pool"} for d in _deployments(ROOT / "prefect.yaml")}
    k8s = _deployments(DEPLOY / "kubernetes" / "prefect.yaml")
    assert {d["name"]: {k: v for k, v in d.items() if k != "work_pool"} for d in k8s} == process
    pools = {d["work_pool"]["name"] for d in k8s}
    assert pools == {_yaml(DEPLOY / "helm" / "prefect-worker.values.yaml")["worker"]["config"]["workPool"]}
    assert pools.isdisjoint({d["work_pool"]["name"] for d in _deployments(ROOT / "prefect.yaml")})
    (pool,) = {d["work_pool"]["name"]: d["work_pool"] for d in k8s}.values()
    assert pool["job_variables"]["image"] and pool["job_variables"]["env"][CONFIG_ENV] == CONFIG_PATH


def test_the_compose_workers_poll_prefect_yamls_pool_with_a_limit_and_a_health_check() -> None:
    (pool,) = {d["work_pool"]["name"] for d in _deployments(ROOT / "prefect.yaml")}
    workers = {n: s for n, s in _services().items() if s.get("command", [])[:3] == ["prefect", "worker", "start"]}
    assert len(workers) >= 2
    for name, service in workers.items():
        argv = service["command"]
        assert argv[argv.index("--pool") + 1] == pool, name
        assert int(argv[argv.index("--limit") + 1]) > 0, name
        assert "--with-healthcheck" in argv, name
        assert f":{WORKER_HEALTH_PORT}/health" in " ".join(service["healthcheck"]["test"]), name
        assert float(service["environment"]["PREFECT_WORKER_QUERY_SECONDS"]) < 10  # Prefect's default is 10 s
        assert service["stop_grace_period"], name
    deploy = " ".join(" ".join(a) for a in _command_lines(_services()["deploy"]["command"]))
    assert f"work-pool create {pool} --type process" in deploy and "drift-retrain limits" in deploy


def test_the_helm_worker_has_a_limit_and_a_liveness_probe() -> None:
    config = _yaml(DEPLOY / "helm" / "prefect-worker.values.yaml")["worker"]
    assert int(config["config"]["limit"]) > 0
    assert config["livenessProbe"]["enabled"] is True  # the chart adds --with-healthcheck then
    assert config["apiConfig"] == "selfHostedServer"


@pytest.mark.parametrize(
    ("values", "chart_keys"),
    [("prefect-server.values.yaml", SERVER_CHART_KEYS), ("prefect-worker.values.yaml", WORKER_CHART_KEYS)],
)
def test_helm_values_use_only_keys_prefects_charts_declare(values: str, chart_keys: set[str]) -> None:
    ours = set(_dotted(_yaml(DEPLOY / "helm" / values)))
    assert ours, values
    assert not ours - chart_keys, f"{values}: keys not in the chart: {sorted(ours - chart_keys)}"


# ------------------------------------------------------------------------------------------------
# Compose: start order, Redis settings
# ------------------------------------------------------------------------------------------------


def _depends(service: dict[str, Any]) -> dict[str, dict[str, str]]:
    depends = service.get("depends_on") or {}
    return {name: {} for name in depends} if isinstance(depends, list) else depends


def test_compose_depends_on_is_a_dag_with_migrations_before_every_server() -> None:
    services = _services()
    graph = {name: set(_depends(s)) for name, s in services.items()}
    for name, needs in graph.items():
        assert needs <= set(services), f"{name} depends on an unknown service: {needs - set(services)}"
    order: list[str] = []
    pending = dict(graph)
    while pending:
        ready = [n for n, needs in pending.items() if needs <= set(order)]
        assert ready, f"depends_on has a cycle among {sorted(pending)}"
        order += sorted(ready)
        for n in ready:
            del pending[n]
    (migrate,) = [
        n for n, s in services.items() if s.get("command") == ["prefect", "server", "database", "upgrade", "-y"]
    ]
    servers = [n for n, s in services.items() if s.get("command", [])[:2] == ["prefect", "server"] and n != migrate]
    assert len(servers) >= 2  # the API and the background services
    for name in servers:
        assert _depends(services[name])[migrate] == {"condition": "service_completed_successfully"}, name
        assert services[name]["environment"]["PREFECT_API_DATABASE_MIGRATE_ON_START"] == "false"

    # every client of the API waits for it (transitively)
    def needs(name: str) -> set[str]:
        return set().union(*({d} | needs(d) for d in graph[name])) if graph[name] else set()

    for name, service in services.items():
        if "PREFECT_API_URL" in service.get("environment", {}):
            assert "prefect-server" in needs(name), name


def test_compose_servers_use_redis_as_prefects_self_hosted_docs_say() -> None:
    expected = {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": "redis",
    }
    services = _services()
    for name, service in services.items():
        if service.get("command", [])[:3] in (["prefect", "server", "start"], ["prefect", "server", "services"]):
            assert expected.items() <= service["environment"].items(), name
            assert service["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]


def test_compose_workers_and_receivers_share_the_config_and_the_state_volume() -> None:
    fleet = load_settings(DEPLOY / "drift-retrain.toml")
    for name, service in _services().items():
        if "PREFECT_API_URL" not in service.get("environment", {}):
            continue
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        assert mounts[CONFIG_PATH] == "./drift-retrain.toml", name
        assert mounts[str(fleet.state_dir)] == "state", name  # one named volume: the local backend's data
        assert service["environment"][CONFIG_ENV] == CONFIG_PATH


# ------------------------------------------------------------------------------------------------
# The docs say what was and was not run
# ------------------------------------------------------------------------------------------------


def test_the_scale_out_page_names_the_files_and_says_they_were_not_run_here() -> None:
    page = (ROOT / "docs" / "scale-out.md").read_text(encoding="utf-8")
    assert "tests/unit/test_deploy_files.py" in page
    assert '!!! warning "Not run on this machine"' in page
    assert re.search(r"have\s+not\s+been\s+run\s+on\s+the\s+machine\s+they\s+were\s+written\s+on", page)
    assert re.search(r"no\s+Docker\s+and\s+no\s+Kubernetes", page)
    for path in ("Dockerfile", "deploy/compose.yaml", "deploy/helm/prefect-server.values.yaml",
                 "deploy/helm/prefect-worker.values.yaml", "deploy/k8s/receiver.yaml", "deploy/kubernetes/prefect.yaml"):  # fmt: skip
        assert path in page, path
        assert (ROOT / path).is_file(), path
    for command in re.findall(r"(?m)(?:^|`)\s*(?:docker compose [^`\n]*?)?drift-retrain ([a-z][a-z-]+)", page):
        assert command in _drift_retrain_commands(), f"docs/scale-out.md runs `drift-retrain {command}`"


def test_the_workers_runs_heartbeat_at_the_frequency_limits_sizes_the_zombie_window_from() -> None:
    """`drift-retrain limits` (the deploy service) sizes the zombie-run automation's window from its own
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY: a worker whose runs beat more slowly would see healthy runs crashed."""
    services = _services()
    workers = [s for s in services.values() if s.get("command", [])[:3] == ["prefect", "worker", "start"]]
    beats = {s["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] for s in [*workers, services["deploy"]]}
    assert len(beats) == 1 and int(beats.pop()) >= 30  # Prefect's floor (prefect/settings/models/flows.py: ge=30)
    k8s = _yaml(DEPLOY / "kubernetes" / "prefect.yaml")["definitions"]["work_pools"]["kubernetes"]
    assert int(k8s["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) >= 30
