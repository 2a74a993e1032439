"""``threatbay agency add|list|rotate|revoke``: operators manage agencies and credentials.

The lead adds ``agency_app`` to the main CLI: ``app.add_typer(agency_app, name="agency")``.
A new secret is printed once and never again (only its salted hash is stored).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from core.access import AccessError, Agency, bearer_token
from core.errors import UnknownAgency
from core.settings import Settings
from records.agencies import AgencyExists, AgencyRegistry, UnknownCredential
from records.books import records_of

agency_app = typer.Typer(help="Manage agencies and their TAXII / API credentials.")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the embedded backends keep their files.")
]


@contextmanager
def _registry(data_dir: Path | None) -> Iterator[AgencyRegistry]:
    from threatbay.bootstrap import build

    services = build(Settings(data_dir=data_dir) if data_dir else Settings())
    try:
        yield records_of(services).agencies
    finally:
        services.close()


def _print_secret(key_id: str, secret: str) -> None:
    typer.echo(f"key id:   {key_id}")
    typer.echo(f"secret:   {secret}")
    typer.echo(f"bearer:   {bearer_token(key_id, secret)}")
    typer.echo("HTTP Basic: username = key id, password = secret. This is shown only once.")


@agency_app.command("add")
def add(
    agency_id: Annotated[str, typer.Argument(help="Short id, e.g. hk-govcert.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    jurisdiction: Annotated[str, typer.Option(help="GD, HK or MO.")],
    identity_id: Annotated[
        str | None, typer.Option(help="STIX identity id (default: derived from the agency id).")
    ] = None,
    reliability: Annotated[str, typer.Option(help="Admiralty reliability A-F.")] = "C",
    default_confidence: Annotated[int, typer.Option(help="Confidence when missing.")] = 50,
    roles: Annotated[str, typer.Option(help="Comma-separated roles.")] = "publisher,analyst",
    webhook_url: Annotated[str | None, typer.Option(help="Notification endpoint.")] = None,
    crossborder_consent: Annotated[
        str,
        typer.Option(help="Comma-separated source jurisdictions whose AMBER may reach us."),
    ] = "",
    expires_days: Annotated[int | None, typer.Option(help="Credential lifetime.")] = None,
    cert_name: Annotated[
        list[str] | None,
        typer.Option(help="Subject CN or SAN naming the agency's client certificate (repeat)."),
    ] = None,
    require_client_cert: Annotated[
        bool, typer.Option(help="Refuse its keys unless its client certificate comes with them.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Register an agency and print its first credential (once)."""
    identity = (
        identity_id or f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, 'threatbay:' + agency_id)}"
    )
    try:
        agency = Agency(
            id=agency_id,
            name=name,
            jurisdiction=jurisdiction.upper(),
            identity_id=identity,
            reliability=reliability.upper(),
            default_confidence=default_confidence,
            roles=tuple(r.strip() for r in roles.split(",") if r.strip()),
            webhook_url=webhook_url,
            crossborder_consent=tuple(
                j.strip().upper() for j in crossborder_consent.split(",") if j.strip()
            ),
            cert_names=tuple(cert_name or ()),
            require_client_cert=require_client_cert,
        )
    except AccessError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with _registry(data_dir) as registry:
        try:
            registry.add_agency(agency)
        except AgencyExists as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        expires = registry.clock.now() + timedelta(days=expires_days) if expires_days else None
        cred, secret = registry.add_credential(agency.id, expires_at=expires)
    typer.echo(f"agency {agency.id} ({agency.jurisdiction}) registered, identity {identity}")
    _print_secret(cred.key_id, secret)


@agency_app.command("certificate")
def certificate(
    agency_id: str,
    name: Annotated[
        list[str] | None,
        typer.Option(help="Subject CN or SAN naming the agency's client certificate (repeat)."),
    ] = None,
    require: Annotated[
        bool,
        typer.Option(
            "--require/--optional", help="Whether its keys are refused without the certificate."
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Set which client certificates name an agency (their CA decides the jurisdiction)."""
    with _registry(data_dir) as registry:
        try:
            agency = registry.set_client_certificates(agency_id, tuple(name or ()), require)
        except (UnknownAgency, AccessError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    names = ", ".join(agency.cert_names) or "none"
    typer.echo(
        f"agency {agency.id} ({agency.jurisdiction}): client certificates named {names}; "
        f"{'required' if agency.require_client_cert else 'optional'}"
    )


@agency_app.command("list")
def list_agencies(data_dir: DataDir = None) -> None:
    """List agencies and their credentials (never secrets)."""
    with _registry(data_dir) as registry:
        for agency in sorted(registry.list(), key=lambda a: a.id):
            typer.echo(
                f"{agency.id}\t{agency.jurisdiction}\t{agency.reliability}\t"
                f"{','.join(agency.roles)}\t{agency.name}"
            )
            for cred in registry.credentials(agency.id):
                state = "revoked" if cred.revoked else "active"
                expiry = f" expires {cred.expires_at}" if cred.expires_at else ""
                typer.echo(f"  key {cred.key_id} {state} roles={','.join(cred.roles)}{expiry}")


@agency_app.command("credential")
def add_credential(
    agency_id: str,
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Issue another credential for an existing agency (printed once)."""
    with _registry(data_dir) as registry:
        try:
            role_tuple = tuple(r.strip() for r in roles.split(",")) if roles else None
            cred, secret = registry.add_credential(agency_id, role_tuple)
        except (UnknownAgency, AccessError) as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    _print_secret(cred.key_id, secret)


@agency_app.command("rotate")
def rotate(key_id: str, data_dir: DataDir = None) -> None:
    """Give a credential a new secret; the old one stops working at once."""
    with _registry(data_dir) as registry:
        try:
            cred, secret = registry.rotate(key_id)
        except UnknownCredential as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    _print_secret(cred.key_id, secret)


@agency_app.command("revoke")
def revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a credential, effective for the next request."""
    with _registry(data_dir) as registry:
        try:
            registry.revoke(key_id)
        except UnknownCredential as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"credential {key_id} revoked")
