"""``threatbay export FORMAT`` and ``threatbay allowlist add|remove|list|import`` (issue #19).

Both act for one agency (``--agency``) on the store the settings reach, through
the same code as the API: ``api.exports.render`` over ``api.exports.reader_records``
(the reader's view, exactly as ``GET /api/v1/exports/{format}``), and the
agency's allow-list book. The export shows a progress bar (rich, already a
dependency for ``threatbay status``) on the terminal; the file is written whole.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from core.allowlist import KINDS, AllowEntry, AllowListError, allow_entry
from core.errors import UnknownAgency
from core.policy import reader_for
from core.settings import Settings
from records.books import Records, records_of

allowlist_app = typer.Typer(help="Manage an agency's allow-list (its own infrastructure).")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the embedded backends keep their files.")
]
AgencyOpt = Annotated[str, typer.Option("--agency", help="The agency acting (its id).")]


@contextmanager
def _services(data_dir: Path | None) -> Iterator[Any]:
    from threatbay.bootstrap import build

    services = build(Settings(data_dir=data_dir) if data_dir else Settings())
    try:
        yield services
    finally:
        services.close()


def _agency(books: Records, agency_id: str) -> Any:
    try:
        return books.agencies.get(agency_id)
    except UnknownAgency:
        typer.echo(f"threatbay: no agency {agency_id!r}", err=True)
        raise typer.Exit(2) from None


def export_command(
    format: Annotated[
        str,
        typer.Argument(
            help="plain, csv, suricata, snort, zeek, rpz, stix, filemd5, filesha1, filesha256"
        ),
    ],  # fmt: skip
    agency: AgencyOpt,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default: stdout).")
    ] = None,
    type: Annotated[list[str] | None, typer.Option("--type", help="Observable type.")] = None,
    min_score: Annotated[float | None, typer.Option(help="Score now at least.")] = None,
    state: Annotated[str, typer.Option(help="Record state.")] = "active",
    jurisdiction: Annotated[list[str] | None, typer.Option(help="Reported from.")] = None,
    min_agencies: Annotated[int | None, typer.Option(help="Reported by at least.")] = None,
    since: Annotated[str | None, typer.Option(help="Last seen at or after.")] = None,
    level: Annotated[str | None, typer.Option(help="In an open alert this high.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many records.")] = None,
    wildcard: Annotated[bool, typer.Option(help="RPZ: also block every subdomain.")] = False,
    zone: Annotated[str | None, typer.Option(help="RPZ zone name.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    data_dir: DataDir = None,
) -> None:
    """Export the records AGENCY may see as a blocklist (same code as the API route)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from api.exports import export_request, render

    with _services(data_dir) as services:
        try:
            req = export_request(
                format, types=tuple(type or ()), min_score=min_score, state=(state,),
                jurisdiction=tuple(jurisdiction or ()), min_agencies=min_agencies, since=since,
                level=level, limit=limit, wildcard=wildcard,
                zone=zone or services.settings.exports.rpz_zone,
            )  # fmt: skip
        except ValueError as exc:
            typer.echo(f"threatbay export: {exc}", err=True)
            raise typer.Exit(2) from None
        books = records_of(services)
        reader = reader_for(_agency(books, agency))
        now = services.clock.now()
        allow = books.allowlists.allow_list(reader.agency_id)
        bar = Progress(
            TextColumn("export {task.description}"), BarColumn(),
            TextColumn("{task.completed} rows"),
            TimeElapsedColumn(), disable=not progress, transient=True,
        )  # fmt: skip
        out = output.open("wb") if output else sys.stdout.buffer
        try:
            with bar:
                task = bar.add_task(format, total=None)
                fmt, result = render(
                    services.store, services.sharing, reader, allow, req, now,
                    lambda digest: books.allowlists.serial(
                        reader.agency_id, req.describe(), digest, int(now.timestamp())
                    ),
                    out, progress=lambda n: bar.advance(task, n),
                    page=services.settings.exports.page_size,
                )  # fmt: skip
        finally:
            if output:
                out.close()
            else:
                out.flush()
        books.audit.flush()
    typer.echo(
        f"{result.count} records, {result.omitted} omitted (unsafe in {fmt.name}), "
        f"{result.excluded} excluded (warning list, reserved, allow-list); ETag {result.etag}",
        err=True,
    )


def _entries_or_exit(items: list[tuple[str, str, str]]) -> list[AllowEntry]:
    out = []
    for kind, value, note in items:
        try:
            out.append(allow_entry(kind, value, note))
        except AllowListError as exc:
            typer.echo(f"threatbay allowlist: {exc}", err=True)
            raise typer.Exit(2) from None
    return out


@allowlist_app.command("add")
def allowlist_add(
    kind: Annotated[str, typer.Argument(help="value, cidr or suffix")],
    value: Annotated[str, typer.Argument()],
    agency: AgencyOpt,
    note: Annotated[str, typer.Option(help="Why it is allowed.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Add one entry to AGENCY's allow-list."""
    [entry] = _entries_or_exit([(kind, value, note)])
    with _services(data_dir) as services:
        books = records_of(services)
        _agency(books, agency)
        books.allowlists.add(agency, [entry], by="cli")
    typer.echo(f"added {entry.label}")


@allowlist_app.command("remove")
def allowlist_remove(
    kind: Annotated[str, typer.Argument(help="value, cidr or suffix")],
    value: Annotated[str, typer.Argument()],
    agency: AgencyOpt,
    data_dir: DataDir = None,
) -> None:
    """Remove one entry from AGENCY's allow-list."""
    [entry] = _entries_or_exit([(kind, value, "")])
    with _services(data_dir) as services:
        if not records_of(services).allowlists.remove(agency, entry):
            typer.echo(f"threatbay allowlist: no {entry.label} on {agency}'s list", err=True)
            raise typer.Exit(1)
    typer.echo(f"removed {entry.label}")


@allowlist_app.command("list")
def allowlist_list(agency: AgencyOpt, data_dir: DataDir = None) -> None:
    """Print AGENCY's allow-list (kind, value, note)."""
    with _services(data_dir) as services:
        for doc in records_of(services).allowlists.entries(agency):
            typer.echo(f"{doc['entry_kind']}\t{doc['value']}\t{doc.get('note') or ''}")


@allowlist_app.command("import")
def allowlist_import(
    file: Annotated[Path, typer.Argument(help="YAML: {value: [...], cidr: [...], suffix: [...]}")],
    agency: AgencyOpt,
    data_dir: DataDir = None,
) -> None:
    """Add every entry of a YAML file (``kind: [values]``, or ``{value:, note:}`` items)."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"threatbay allowlist: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(data, dict) or set(data) - set(KINDS):
        typer.echo(f"threatbay allowlist: {file} must map {list(KINDS)} to lists", err=True)
        raise typer.Exit(2)
    items: list[tuple[str, str, str]] = []
    for kind, values in data.items():
        for item in values or []:
            if isinstance(item, dict):
                items.append((kind, str(item.get("value", "")), str(item.get("note") or "")))
            else:
                items.append((kind, str(item), ""))
    entries = _entries_or_exit(items)
    with _services(data_dir) as services:
        books = records_of(services)
        _agency(books, agency)
        books.allowlists.add(agency, entries, by="cli")
    typer.echo(f"imported {len(entries)} entries for {agency}")
