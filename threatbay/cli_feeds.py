"""``threatbay feeds ...``: pull external feeds into the same ingest path agencies push to.

This module is the wiring (only ``threatbay/`` joins stages and backends):
the feed runner gets the agency registry to register each feed as a source
agency, and ``ingest.push.push_objects`` as its ingest function.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from core.access import Agency, Principal
from core.settings import Settings
from feeds.config import FeedRegistry, load_registry
from feeds.runner import FeedRunner, FeedScheduler, IngestResultLike, PullReport
from records.books import records_of
from threatbay.bootstrap import Services, build

feeds_app = typer.Typer(help="Pull external intelligence feeds (TAXII 2.x, MISP, CSV, text).")

log = logging.getLogger("threatbay.feeds")

# push_objects answers a bus failure as a per-object failure with this prefix.
_BUS_FAILURE = "not accepted: the bus did not acknowledge"


def register_agency(services: Services) -> Callable[[Agency], None]:
    """Register a feed's source agency; a changed registry entry (e.g. reliability) updates it."""
    from core.names import INDEX_AGENCIES
    from core.ports import Put
    from records.agencies import AgencyExists

    registry = records_of(services).agencies

    def register(agency: Agency) -> None:
        try:
            registry.add_agency(agency)
        except AgencyExists:
            if registry.get(agency.id).to_doc() != agency.to_doc():
                # The registry file is the source of truth for a feed's agency record.
                doc = agency.to_doc()
                services.store.put_many(
                    INDEX_AGENCIES, [Put(f"agency:{agency.id}", doc, blind=True)]
                )
                services.store.refresh(INDEX_AGENCIES)

    return register


def push_ingest(services: Services) -> Callable[[Principal, list[Any]], IngestResultLike]:
    """``push_objects`` on this process's bus, as the feed's principal, provenance 'feed'."""
    from feeds.base import IngestUnavailable
    from ingest.push import admission_for, push_objects

    def ingest(principal: Principal, objects: list[Any]) -> IngestResultLike:
        result = push_objects(
            principal,
            objects,
            services.bus,
            services.clock,
            admission_for(services),
            source_kind="feed",
        )
        if not result.successes and any(
            (f.message or "").startswith(_BUS_FAILURE) for f in result.failures
        ):
            raise IngestUnavailable(result.failures[0].message or "bus unavailable")
        return result

    return ingest


def build_runner(services: Services) -> FeedRunner:
    """The feed runner wired to ``services`` (store for cursors, bus through ingest)."""
    from records.feed_cursors import FeedCursors

    return FeedRunner(
        FeedCursors(services.store, services.clock),
        push_ingest(services),
        services.clock,
        register=register_agency(services),
    )


def feed_loop(services: Services) -> Callable[[threading.Event], None] | None:
    """The scheduler loop for ``stages.Loops.start`` when a registry file exists, else None."""
    path = default_registry_path(services.settings)
    if not path.exists():
        return None
    scheduler = FeedScheduler(build_runner(services), load_registry(path), services.clock)
    return scheduler.run


def default_registry_path(settings: Settings) -> Path:
    """``$THREATBAY_FEEDS_FILE``, else ``<data_dir>/feeds.yaml``."""
    env = os.environ.get("THREATBAY_FEEDS_FILE")
    return Path(env) if env else settings.data_dir / "feeds.yaml"


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the embedded backends keep their files.")
]
RegistryFile = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        "-r",
        help="Feed registry YAML (default $THREATBAY_FEEDS_FILE or <data-dir>/feeds.yaml).",
    ),
]


def _load(data_dir: Path | None, registry_file: Path | None) -> tuple[Settings, FeedRegistry]:
    from core.errors import ConfigurationError

    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    path = registry_file or default_registry_path(settings)
    try:
        return settings, load_registry(path)
    except ConfigurationError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _print_report(report: PullReport) -> None:
    colour = typer.colors.GREEN if report.ok else typer.colors.RED
    typer.secho(report.summary(), fg=colour)
    for line in report.rejections[:10]:
        typer.echo(f"  rejected {line}")
    if report.rejected > 10:
        typer.echo(f"  ... {report.rejected - 10} more rejected (see the log)")


@feeds_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="The feed's name in the registry.")],
    data_dir: DataDir = None,
    registry_file: RegistryFile = None,
) -> None:
    """Pull one feed now, with a progress bar, and print a summary line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from core.errors import ConfigurationError

    settings, registry = _load(data_dir, registry_file)
    log.setLevel(logging.ERROR)  # the summary line below says it all
    try:
        feed = registry.get(name)
    except ConfigurationError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    services = build(settings)
    try:
        runner = build_runner(services)
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            TextColumn("fetched {task.fields[fetched]}"),
            TextColumn("accepted [green]{task.fields[accepted]}"),
            TextColumn("rejected [red]{task.fields[rejected]}"),
            TimeElapsedColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task(f"feed {name}", total=None, fetched=0, accepted=0, rejected=0)

            def show(report: PullReport) -> None:
                progress.update(
                    task,
                    fetched=report.fetched,
                    accepted=report.accepted,
                    rejected=report.rejected,
                )

            report = runner.pull(feed, progress=show)
            show(report)
    finally:
        services.close()
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@feeds_app.command("run")
def run(
    data_dir: DataDir = None,
    registry_file: RegistryFile = None,
    once: Annotated[bool, typer.Option(help="Pull every feed once, then exit.")] = False,
) -> None:
    """Run every enabled feed on its interval until interrupted (a failing feed backs off)."""
    settings, registry = _load(data_dir, registry_file)
    services = build(settings)
    runner = build_runner(services)
    scheduler = FeedScheduler(runner, registry, services.clock)
    try:
        if once:
            log.setLevel(logging.ERROR)  # each feed's summary line is printed instead
            reports: Sequence[PullReport] = scheduler.run_due(_print_report, force=True)
            if any(not r.ok for r in reports):
                raise typer.Exit(1)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        names = ", ".join(f.name for f in scheduler.feeds) or "none"
        typer.echo(f"running feeds: {names}  (Ctrl-C to stop)")
        scheduler.run(stop, _print_report)
    finally:
        services.close()
