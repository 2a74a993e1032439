"""``threatbay trust keygen|issue|sign``: keys, a jurisdiction's trust list, signed objects.

For operators (a jurisdiction's root, ThreatBay's platform key) and for
agencies that bring their own key. Private keys are written as JWK files
readable by their owner only; nothing here talks to a running ThreatBay.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from core import object_signatures as sigs
from core.jcs import NotCanonical, strict_loads
from core.signing import ALGORITHMS, KeyInvalid, SigningKey, generate, signing_key
from core.trust import CUSTODIES, issue, key_entry, parse_time

trust_app = typer.Typer(help="Signing keys, trust lists and signed objects (Trusted data).")


def _load_key(path: Path) -> SigningKey:
    try:
        return signing_key(strict_loads(path.read_bytes()))
    except (OSError, NotCanonical, KeyInvalid, AttributeError) as exc:
        typer.echo(f"threatbay trust: {path}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _write_private(path: Path, document: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
        out.write("\n")


@trust_app.command()
def keygen(
    alg: Annotated[str, typer.Option(help=f"One of {', '.join(ALGORITHMS)}.")],
    kid: Annotated[str, typer.Option(help="The key id trust lists and signatures name.")],
    out: Annotated[Path, typer.Option(help="Where to write the private JWK (mode 0600).")],
    agency: Annotated[
        str | None, typer.Option(help="STIX identity: also print the trust-list entry.")
    ] = None,
    valid_days: Annotated[int, typer.Option(help="Validity of the printed entry.")] = 365,
    custody: Annotated[str, typer.Option(help="agency (own key) or custodial.")] = "agency",
) -> None:
    """Generate a key pair; print its public JWK (or, with --agency, its trust-list entry)."""
    if alg not in ALGORITHMS or custody not in CUSTODIES:
        typer.echo(f"threatbay trust: --alg one of {ALGORITHMS}, --custody one of {CUSTODIES}")
        raise typer.Exit(2)
    key = generate(alg, kid)
    try:
        _write_private(out, key.private_jwk())
    except FileExistsError as exc:
        typer.echo(f"threatbay trust: {out} exists; not overwriting a key", err=True)
        raise typer.Exit(2) from exc
    if agency is None:
        typer.echo(json.dumps(dict(key.public.jwk), indent=2))
        return
    now = datetime.now(UTC).replace(microsecond=0)
    entry = key_entry(
        key.public,
        agency=agency,
        not_before=now,
        not_after=now + timedelta(days=valid_days),
        custody=custody,
    )
    typer.echo(json.dumps(entry, indent=2))


@trust_app.command("issue")
def issue_list(
    jurisdiction: Annotated[str, typer.Option(help="GD, HK or MO.")],
    root: Annotated[Path, typer.Option(help="The jurisdiction's private root JWK.")],
    keys: Annotated[Path, typer.Option(help="JSON array of trust-list key entries.")],
    sequence: Annotated[int, typer.Option(help="Higher than the list it replaces.")],
    out: Annotated[Path, typer.Option(help="Where to write the signed trust list.")],
    valid_days: Annotated[int, typer.Option(help="Days until the list expires.")] = 90,
) -> None:
    """Sign a jurisdiction's trust list with its root key."""
    try:
        entries = strict_loads(keys.read_bytes())
    except (OSError, NotCanonical) as exc:
        typer.echo(f"threatbay trust: {keys}: {exc}", err=True)
        raise typer.Exit(2) from exc
    now = datetime.now(UTC).replace(microsecond=0)
    document = issue(
        jurisdiction, entries, _load_key(root), sequence=sequence, issued=now,
        expires=now + timedelta(days=valid_days),
    )  # fmt: skip
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"{out}: {jurisdiction} trust list #{sequence}, {len(entries)} keys")


@trust_app.command("sign")
def sign_objects(
    source: Annotated[Path, typer.Argument(help="A bundle or one STIX object (JSON).")],
    key: Annotated[Path, typer.Option(help="Private JWK of the signer.")],
    out: Annotated[Path, typer.Option(help="Where to write the signed JSON.")],
    countersign_as: Annotated[
        str | None,
        typer.Option(help="Re-share: countersign as this STIX identity instead of signing."),
    ] = None,
    at: Annotated[str | None, typer.Option(help="Countersignature time (default now).")] = None,
) -> None:
    """Sign each object as its creator, or countersign each as a re-sharer."""
    signer = _load_key(key)
    try:
        document = strict_loads(source.read_bytes())
        when = parse_time(at, "--at") if at else datetime.now(UTC)
    except (OSError, NotCanonical, ValueError) as exc:
        typer.echo(f"threatbay trust: {exc}", err=True)
        raise typer.Exit(2) from exc
    objects = document["objects"] if isinstance(document, dict) and "objects" in document else None
    targets = objects if objects is not None else [document]
    try:
        done = [
            sigs.countersign(o, signer, countersign_as, when)
            if countersign_as
            else sigs.sign(o, signer)
            for o in targets
        ]
    except ValueError as exc:
        typer.echo(f"threatbay trust: {exc}", err=True)
        raise typer.Exit(1) from exc
    result = dict(document, objects=done) if objects is not None else done[0]
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"{out}: {len(done)} object(s) {'countersigned' if countersign_as else 'signed'}")
