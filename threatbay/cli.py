"""The ``threatbay`` command line: run the platform, one stage, or manage it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from core.errors import ConfigurationError
from core.settings import Settings
from threatbay.cli_agency import agency_app
from threatbay.cli_exports import allowlist_app, export_command
from threatbay.cli_feeds import feeds_app
from threatbay.cli_incident import incident_app
from threatbay.cli_trust import trust_app
from threatbay.cli_verify import verify_command

# No locals in tracebacks: a frame may hold a secret read from a credential file.
app = typer.Typer(
    help="ThreatBay: joint threat-intelligence exchange and early warning.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(feeds_app, name="feeds")
app.add_typer(agency_app, name="agency")
app.add_typer(trust_app, name="trust")
app.command("verify")(verify_command)
app.add_typer(incident_app, name="incident")
app.command("export")(export_command)
app.add_typer(allowlist_app, name="allowlist")


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir else Settings()


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the embedded backends keep their files.")
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run every stage in one process (API, correlator, re-score, alert engine, notifier)."""
    from threatbay import bootstrap

    settings = _settings(data_dir)
    bootstrap.serve_all(settings, host or settings.host, port or settings.port)


@app.command()
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    data_dir: DataDir = None,
) -> None:
    """Run only the API (TAXII push/pull, analyst API, stream)."""
    from threatbay import bootstrap

    settings = _settings(data_dir)
    bootstrap.serve_api(settings, host or settings.host, port or settings.port)


@app.command()
def correlate(
    data_dir: DataDir = None,
    from_beginning: Annotated[bool, typer.Option(help="Replay the topic from offset 0.")] = False,
) -> None:
    """Run only the correlation worker."""
    from threatbay import bootstrap

    bootstrap.run_correlator(_settings(data_dir), from_beginning=from_beginning)


@app.command()
def rescore(
    data_dir: DataDir = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between passes (default: settings).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Run one pass, print what it did, exit.")] = False,
) -> None:
    """Run only the periodic re-score that keeps decayed indicator scores current."""
    from threatbay import bootstrap

    settings = _settings(data_dir)
    if interval is not None:
        settings.rescore_interval_s = interval
    if once:
        typer.echo(bootstrap.rescore_once(settings))
        return
    bootstrap.run_rescorer(settings)


@app.command()
def alerts(data_dir: DataDir = None) -> None:
    """Run only the alert engine and notifier."""
    from threatbay import bootstrap

    bootstrap.run_alerter(_settings(data_dir))


@app.command()
def status(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Where work stands: per stage lag, dead letters, crashes and last error; counts.

    Reads the bus (consumer-group lag, intel.dlq) and the store (heartbeats of
    every running process, records, alerts): run it anywhere the settings reach
    them. Exits 1 when the deployment is not ready (a backend down, a stage
    crash-looping).
    """
    import dataclasses

    import orjson
    from rich.console import Console

    from threatbay import bootstrap
    from threatbay.status import current, render

    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    services = bootstrap.build(_settings(data_dir))
    try:
        st = current(services)
    finally:
        services.close()
    if as_json:
        typer.echo(orjson.dumps(dataclasses.asdict(st) | {"problems": st.problems}).decode())
    else:
        render(st, Console(width=160))
    if st.problems:
        raise typer.Exit(1)


@app.command()
def demo(
    scenario: Annotated[
        str | None,
        typer.Argument(help="'incident' also walks a joint incident case on the RED alert."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port for the API, TAXII and the page.")] = 8400,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep the embedded data here (default: a fresh temp dir)."),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running/--exit-after",
            help="Stay up after the scenario until Ctrl-C (default), or exit when it is done.",
        ),
    ] = True,
) -> None:
    """Start the platform, play three agencies' pushes, and show merge, alert, ack, overdue."""
    from threatbay.demo import DemoError, demo_settings, run_demo, run_incident_demo

    if scenario not in (None, "incident"):
        typer.echo(f"threatbay demo: unknown scenario {scenario!r} (use: incident)", err=True)
        raise typer.Exit(2)

    # The report is the output; keep the loops' INFO chatter out of it.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        runner = run_incident_demo if scenario == "incident" else run_demo
        runner(demo_settings(data_dir), host=host, port=port, keep_running=keep_running)
    except DemoError as exc:
        typer.echo(f"threatbay demo: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app()
    except ConfigurationError as exc:  # settings the operator must fix: the message, no trace
        print(f"threatbay: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
