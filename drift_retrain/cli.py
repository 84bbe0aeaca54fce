"""The `drift-retrain` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from drift_retrain.config import ConfigError, Settings, TargetConfig, load_settings

app = typer.Typer(
    help="Turn Azure ML drift alerts into safe, observable retraining, orchestrated by Prefect.", no_args_is_help=True
)
DEBUG_ENV = "DRIFT_RETRAIN_DEBUG"


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="Show the traceback of a known failure too")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $DRIFT_RETRAIN_CONFIG or ./drift-retrain.toml)"),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    config: ConfigOption = None,
    keep: Annotated[bool, typer.Option(help="Leave the stack up to explore the UI")] = False,
    azure_fake: Annotated[
        bool, typer.Option("--azure-fake", help="Run the target on the azure backend against a loopback Azure")
    ] = False,
) -> None:
    """Run the main job end to end on the embedded default (seeded data, drift, retrain, register)."""
    from drift_retrain.devstack.demo import run_demo
    from drift_retrain.devstack.stack import Interrupted, stop_on_signals

    settings = _settings(config)
    try:
        with stop_on_signals():  # SIGTERM too stops the stack it started, at every stage
            if not azure_fake:
                code = run_demo(settings, keep=keep)
            else:
                from functools import partial

                from drift_retrain.fake_azure.demo import azure_fake_world, publish_drift_run

                with azure_fake_world(settings) as (azure_settings, fake):
                    typer.echo(
                        f"loopback Azure on {fake.url} (scripted statuses and metrics); "
                        f"config {azure_settings.source_file}"
                    )
                    code = run_demo(azure_settings, keep=keep, on_drift=partial(publish_drift_run, fake))
                    calls = [
                        f"{r.method} {r.path.split('?')[0].rsplit('/providers/', 1)[-1]}"
                        for r in fake.requests
                        if "/oauth2/" not in r.path
                    ]
                    typer.echo(f"Azure calls made by the SDKs: {len(calls)}")
    except Interrupted as exc:
        typer.secho(f"demo interrupted ({exc}); everything it started is stopped", fg="red", err=True)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


@app.command()
def up(
    config: ConfigOption = None,
    database: Annotated[
        str | None,
        typer.Option(
            envvar="DRIFT_RETRAIN_DATABASE_URL",
            show_envvar=True,
            help="Prefect's server on this PostgreSQL (postgresql[+asyncpg]://user:password@host:port/db) instead "
            "of SQLite; the variable keeps the password out of `ps`",
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            envvar="DRIFT_RETRAIN_REDIS_URL",
            show_envvar=True,
            help="With --database: Prefect's messaging, ordering, leases and docket on this Redis (redis:// or rediss://)",
        ),
    ] = None,
) -> None:
    """Start the stack (Prefect server + UI, runner, webhook receiver) and keep it up until Ctrl-C, SIGTERM
    or `drift-retrain down`. If this state dir's stack is already up, say so and leave it running."""
    from drift_retrain.devstack.services import checked_database_url, checked_redis_url, mask_url
    from drift_retrain.devstack.stack import STOP_SECONDS, Interrupted, Stack, stop_on_signals, wait_until_interrupted

    try:
        if redis and not database:
            raise ValueError("--redis needs --database: Prefect's Redis layout is for a server on PostgreSQL")
        database_url = checked_database_url(database) if database else None
        redis_url = checked_redis_url(redis) if redis else None
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    settings = _settings(config)
    try:
        with stop_on_signals(), Stack(settings, database_url=database_url, redis_url=redis_url) as stack:
            # where local_secret() found it: the environment variable wins over the state dir's file
            home = (
                f"${settings.receiver.secret_env}"
                if settings.receiver.secret()
                else settings.state_dir / "webhook-secret"
            )
            if stack.attached:
                typer.echo(stack.attach_note)
            typer.echo(f"Prefect UI  {stack.ui_url}\nwebhook     {stack.webhook_url}?code=<secret in {home}>")
            if stack.attached:
                return
            if database_url:  # the password never printed (mask_url)
                typer.echo(f"database    {mask_url(database_url)}")
            if redis_url:
                typer.echo(f"redis       {mask_url(redis_url)}")
            typer.echo(f"logs        {stack.logs}\nCtrl-C (or `drift-retrain down`) to stop.")
            wait_until_interrupted()
            typer.echo(f"stopping (at most {STOP_SECONDS:.0f} s; Ctrl-C again to stop at once) ...")
    except Interrupted as exc:  # before the stack was up
        typer.secho(f"interrupted ({exc}) while starting; everything started is stopped", fg="red", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo("stopped.")


@app.command()
def down(config: ConfigOption = None) -> None:
    """Stop the stack that `up` or `demo` runs on this config's state dir, from any terminal."""
    from drift_retrain.devstack.stack import stop_running_stack

    typer.echo(stop_running_stack(_settings(config)))


@app.command()
def webhook(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (put TLS in front for Event Grid)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DRIFT_RETRAIN_WEBHOOK_PORT")] = 8088,
) -> None:
    """Run only the Event Grid webhook receiver (talks to $PREFECT_API_URL)."""
    from drift_retrain.intake.app import serve

    serve(_settings(config), host=host, port=port)


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the config and, for every azure target, that its identity can read the workspace, the
    Data Factory and the pipeline. One line per check; exit 1 on any failure, 2 on a bad config."""
    from drift_retrain.check import exit_code, run_checks

    results = run_checks(config)
    for result in results:
        typer.secho(result.line(), fg=None if result.ok else "red")
    raise typer.Exit(exit_code(results))


@app.command()
def runner(prefect_yaml: Annotated[Path, typer.Argument()] = Path("prefect.yaml")) -> None:
    """Serve prefect.yaml's deployments from this process (the one-machine runner)."""
    from drift_retrain.devstack.runner import run

    run(prefect_yaml)


@app.command()
def limits(
    config: ConfigOption = None,
    heartbeat_window: Annotated[
        float | None,
        typer.Option(
            min=10,
            help="Seconds without a heartbeat after which a running flow run is marked Crashed. Default: 3x "
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY as set here (set it as on the workers)",
        ),
    ] = None,
) -> None:
    """Create each model's retrain concurrency limit and the zombie-run automation on $PREFECT_API_URL (for
    `prefect deploy` + workers: a run whose worker died is Crashed, then rerun by the sweep)."""
    from drift_retrain.concurrency import ensure_limits
    from drift_retrain.zombies import ZOMBIE_AUTOMATION, default_window_seconds, ensure_zombie_automation

    for name in ensure_limits(_settings(config)):
        typer.echo(f"ok    global concurrency limit {name} = 1")
    window = heartbeat_window or default_window_seconds()
    done = ensure_zombie_automation(window)
    typer.echo(f"ok    automation {ZOMBIE_AUTOMATION!r} {done} ({window:g} s without a heartbeat)")


@app.command()
def monitor(
    config: ConfigOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Local monitor (default: the first)")] = None,
    url: Annotated[str | None, typer.Option(help="Webhook URL to post the drift event to")] = None,
    send: Annotated[bool, typer.Option(help="Post the event when drift is detected")] = True,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print one JSON document {"run": ..., "delivery": null | {"status", "answer"}}'),
    ] = False,
) -> None:
    """Run a local drift monitor over its latest window; on drift, post DatasetDriftDetected. Prints the demo's
    line for the run and what the receiver did with the event (exit 2 when it ignored or refused it)."""
    from drift_retrain.backends.local.monitor import drift_event, run_monitor
    from drift_retrain.devstack.demo import DemoFailed, answer_of, handoff_line, monitor_line, receipt
    from drift_retrain.devstack.sender import post_events
    from drift_retrain.devstack.stack import local_secret

    settings = _settings(config)
    if not settings.local_monitors:
        typer.secho(f"{settings.source_file}: no [[local_monitors]] configured", fg="red", err=True)
        raise typer.Exit(2)
    chosen = settings.monitor(name) if name else settings.local_monitors[0]
    run = run_monitor(chosen, settings)
    response = None
    if run.has_drift and send:
        response = post_events(_webhook_url(url), [drift_event(run)], local_secret(settings))
    if as_json:
        delivery = None if response is None else {"status": response.status_code, "answer": answer_of(response)}
        document = {"run": run.model_dump(mode="json", exclude={"features"}), "delivery": delivery}
        typer.echo(json.dumps(document, indent=2))
        raise typer.Exit(0 if response is None or response.status_code < 300 else 1)
    typer.echo(monitor_line(run))
    if response is None:
        typer.echo("no drift detected: no event sent" if not run.has_drift else "drift detected: not sent (--no-send)")
        return
    try:
        accepted = receipt(response.status_code, answer_of(response))
    except DemoFailed as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    if isinstance(accepted, str):
        typer.secho(accepted, fg="red")
        raise typer.Exit(2)
    typer.echo(handoff_line(run.run_id, accepted))


def _webhook_url(url: str | None) -> str:
    """The receiver's URL: ``url``, else the local stack's (its port from the environment, as `up` starts it)."""
    from drift_retrain.devstack.stack import HOST, WEBHOOK_PORT_ENV

    return url or f"http://{HOST}:{os.environ.get(WEBHOOK_PORT_ENV, '8088')}/api/eventgrid"


@app.command("sample-event")
def sample_event(
    config: ConfigOption = None,
    schema: Annotated[
        str, typer.Option(help="v2: a model-monitor breach (RunStatusChanged); v1: DatasetDriftDetected")
    ] = "v2",
    monitor_name: Annotated[
        str | None, typer.Option("--monitor", help="A monitor of a target's monitors (default: the first)")
    ] = None,
) -> None:
    """Print a ready Event Grid delivery (a JSON array of one drift event) for a configured monitor, in its target's
    workspace, checked to route to that monitor as the receiver would: save it and pass it to `send-event`."""
    from drift_retrain.sample_event import NoSuchMonitor, monitor_target, reaches, receive, sample_events

    settings = _settings(config)
    if schema not in ("v2", "v1"):
        typer.secho(f"--schema must be v2 or v1, not {schema!r}", fg="red", err=True)
        raise typer.Exit(2)
    try:
        name, target = monitor_target(settings, monitor_name)
    except NoSuchMonitor as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    events = sample_events(settings, name, "v2" if schema == "v2" else "v1")
    why = reaches(receive(settings, events[0]), target, name)
    if why is not None:
        typer.secho(
            f"a {schema} event of monitor '{name}' would not reach target '{target.name}': {why}", fg="red", err=True
        )
        raise typer.Exit(1)
    typer.echo(json.dumps(events, indent=2))


@app.command("send-event")
def send_event(
    file: Annotated[Path, typer.Argument(help="JSON file: one event or an array of events")],
    config: ConfigOption = None,
    url: Annotated[str | None, typer.Option(help="Webhook URL")] = None,
) -> None:
    """POST an event file to the webhook as Event Grid would."""
    settings = _settings(config)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        typer.secho(f"{file}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    _post(settings, document if isinstance(document, list) else [document], url)


def _post(settings: Settings, events: list[dict], url: str | None) -> None:
    from drift_retrain.devstack.sender import post_events
    from drift_retrain.devstack.stack import local_secret

    response = post_events(_webhook_url(url), events, local_secret(settings))
    typer.echo(f"{response.status_code} {response.text}")
    if response.status_code >= 300:
        raise typer.Exit(1)


azure_app = typer.Typer(
    help="The Azure side: what to create so Event Grid delivers to the receiver.", no_args_is_help=True
)
app.add_typer(azure_app, name="azure")


@azure_app.command("subscription")
def azure_subscription(
    config: ConfigOption = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="Target name (default: every target)")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="https URL of the receiver (default: receiver.public_url)")
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--format",
            help="az: the commands; bicep-params: one JSON document, an object keyed by subscription name whose "
            "values are deployments/eventgrid-subscription.bicep parameters files",
        ),
    ] = "az",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="With bicep-params: write one parameters file per subscription, DIR/<subscription>.parameters.json",
        ),
    ] = None,
) -> None:
    """Print the `az eventgrid event-subscription create` command(s) (or Bicep parameters) for a target."""
    from drift_retrain.intake.subscription import az_command, job_subscription, subscriptions_of

    settings = _settings(config)
    if output not in ("az", "bicep-params"):
        typer.secho(f"--format must be az or bicep-params, not {output!r}", fg="red", err=True)
        raise typer.Exit(2)
    if out is not None and output != "bicep-params":
        typer.secho("--out writes parameters files: use it with --format bicep-params", fg="red", err=True)
        raise typer.Exit(2)
    targets = [settings.target(target)] if target else settings.targets
    if output == "bicep-params":
        _bicep_params(settings, targets, endpoint, out)
        return
    for chosen in targets:
        subscriptions, configured = subscriptions_of(chosen)
        for subscription in subscriptions:
            typer.echo(
                f"# target {chosen.name}: subscription {subscription.name}"
                + (
                    ""
                    if configured
                    else " (a suggested default: add [[targets.subscriptions]] to have the receiver enforce it)"
                )
            )
            typer.echo(az_command(chosen, subscription, settings.receiver, endpoint) + "\n")
        jobs = job_subscription(chosen)
        if jobs is not None:
            typer.echo(
                f"# target {chosen.name}: subscription {jobs.name} (its training jobs' statuses: they wake the retrain"
                " waiting on a job)"
            )
            typer.echo(az_command(chosen, jobs, settings.receiver, endpoint) + "\n")


def _bicep_params(settings: Settings, targets: list[TargetConfig], endpoint: str | None, out: Path | None) -> None:
    """Every subscription's parameters file, as one JSON document keyed by subscription name (stdout), or one file
    each under ``out``. Two subscriptions of one name (in different workspaces) would overwrite each other: refused."""
    from drift_retrain.intake.subscription import bicep_parameters, job_subscription, subscriptions_of
    from drift_retrain.safepath import under

    documents: dict[str, dict] = {}
    for chosen in targets:
        jobs = job_subscription(chosen)
        for subscription in [*subscriptions_of(chosen)[0], *([jobs] if jobs else [])]:
            if subscription.name in documents:
                typer.secho(
                    f"two subscriptions are named '{subscription.name}': pick one target with --target",
                    fg="red",
                    err=True,
                )
                raise typer.Exit(2)
            documents[subscription.name] = bicep_parameters(chosen, subscription, settings.receiver, endpoint)
    if out is None:
        typer.echo(json.dumps(documents, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        path = under(out, f"{name}.parameters.json")  # a config name, still never a way out of the folder
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        typer.echo(str(path))


@app.command("demo-data")
def demo_data_command(
    config: ConfigOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Local monitor (default: the first)")] = None,
) -> None:
    """Write the demo's seeded data set (a reference and a drifted week) under the config's state dir, for a
    scale-out trial: then `drift-retrain monitor --url <receiver>/api/eventgrid` finds drift and posts the event."""
    from drift_retrain.devstack.demo_data import prepare

    settings = _settings(config)
    try:
        reference, landing, written = prepare(settings, settings.monitor(name) if name else None)  # a bad --name too
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{'wrote' if written else 'kept (already there)'} {reference}")
    typer.echo(f"{'wrote' if written else 'kept (already there)'} {landing}")
    typer.echo("next: drift-retrain monitor --url http://<receiver>:8088/api/eventgrid")


def main() -> None:
    """Run the command; a known failure is one or two red lines and exit 1 (it failed) or 2 (usage,
    config), its traceback only with --debug or DRIFT_RETRAIN_DEBUG=1. Anything else is a bug: traceback."""
    try:
        app()
    except Exception as exc:
        if not _known(exc) or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        typer.secho(_sentence(exc), fg="red", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


def _known(exc: Exception) -> bool:
    """A failure with a sentence of its own: a config or usage error, a stack that cannot start, a demo
    that failed, a server that cannot be reached."""
    import httpx

    from drift_retrain.devstack.stack import StackError

    demo = sys.modules.get("drift_retrain.devstack.demo")  # imported only by the demo (it pulls in Prefect)
    return isinstance(exc, ConfigError | StackError | httpx.TransportError) or (
        demo is not None and isinstance(exc, demo.DemoFailed)
    )


def _sentence(exc: Exception) -> str:
    """At most two lines: what failed and what to do (a part's log tail is for --debug or its log file)."""
    import httpx

    if isinstance(exc, httpx.TransportError):
        try:
            url = str(exc.request.url.copy_with(query=None))  # the ?code= secret stays out of the message
        except RuntimeError:
            url = "the server"
        return (
            f"cannot reach {url} ({type(exc).__name__}: {str(exc) or 'no answer'}); is it running? "
            "`drift-retrain up` starts the local stack, --url names another receiver"
        )
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return "\n".join([*lines[:1], f"  last log line: {lines[-1]}"] if len(lines) > 1 else lines)


if __name__ == "__main__":
    main()
