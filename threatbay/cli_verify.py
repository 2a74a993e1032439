"""``threatbay verify FILE|URL``: check every object's signature chain against the trust lists.

The input is a STIX bundle, a TAXII 2.1 envelope, a JSON array of objects or
one object, read from a file or fetched over HTTP(S). It is parsed with the
duplicate-aware parser (core/jcs.py), so an object carrying a duplicate member
fails alone. Trust lists are verified against the roots pinned in
configuration (``THREATBAY_SIGNING__ROOTS_FILE``) or given with ``--roots``.
Keys are judged at ``--received-at`` (default: now), the time the input was
received, never at a time the objects state. A manifest (``--manifest``, or a
``x_threatbay_manifest`` member of the bundle or envelope) is checked against
the objects. Exit code 0 when every object verified (and the manifest holds),
1 otherwise, 2 when the trust lists or the input cannot be used at all.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from core import object_signatures as sigs
from core.jcs import NotCanonical, loads_marking_duplicates, strict_loads
from core.manifests import ManifestVerdict, verify_manifest
from core.markings import tlp_of
from core.settings import Settings
from core.trust import (
    TrustListInvalid,
    TrustStore,
    format_time,
    parse_time,
    pinned_roots,
    verify_trust_list,
)

EMBEDDED_MANIFEST = "x_threatbay_manifest"


class InputUnusable(Exception):
    """The input, a trust list or the roots cannot be read; exit code 2."""


def read_source(source: str, auth: str | None = None) -> bytes:
    """The bytes of a file or an http(s) URL (HTTP Basic ``KEYID:SECRET`` when given)."""
    if source.startswith(("http://", "https://")):
        import httpx

        credentials = tuple(auth.split(":", 1)) if auth and ":" in auth else None
        try:
            response = httpx.get(
                source,
                auth=credentials,  # type: ignore[arg-type]
                headers={"Accept": "application/taxii+json;version=2.1, application/json"},
                timeout=30.0,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise InputUnusable(f"{source}: {exc}") from exc
        if response.status_code != 200:
            raise InputUnusable(f"{source}: HTTP {response.status_code}")
        return response.content
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InputUnusable(f"{source}: {exc.strerror or exc}") from exc


def objects_of(document: Any) -> tuple[list[Any], Any, list[str]]:
    """(objects, embedded manifest or None, problems of the container itself)."""
    problems = [
        f"duplicate member {name!r} in the container"
        for name in getattr(document, "duplicates", [])
    ]
    if isinstance(document, list):
        return list(document), None, problems
    if not isinstance(document, dict):
        raise InputUnusable("input is neither a JSON object nor an array")
    if document.get("type") == "bundle" or ("objects" in document and "type" not in document):
        objects = document.get("objects", [])
        if not isinstance(objects, list):
            raise InputUnusable("'objects' is not a list")
        return objects, document.get(EMBEDDED_MANIFEST), problems
    return [document], None, problems


def load_trust(
    settings: Settings,
    roots_file: Path | None,
    trust_lists: list[str],
    auth: str | None,
    now: datetime,
    agencies_file: Path | None = None,
) -> TrustStore:
    """Pinned roots and verified trust lists (``InputUnusable`` when any cannot be used)."""
    roots_path = roots_file or settings.signing.roots_file
    if roots_path is None:
        raise InputUnusable("no pinned roots: give --roots or set THREATBAY_SIGNING__ROOTS_FILE")
    sources = trust_lists or list(settings.signing.trust_lists.values())
    if not sources:
        raise InputUnusable(
            "no trust lists: give --trust-list or set THREATBAY_SIGNING__TRUST_LISTS"
        )
    try:
        roots = pinned_roots(strict_loads(read_source(str(roots_path))))
        lists = [
            verify_trust_list(
                strict_loads(read_source(src, auth)),
                roots,
                settings.signing.algorithms,
                now,
                timedelta(seconds=settings.signing.clock_skew_s),
            )
            for src in sources
        ]
        agencies_path = agencies_file or settings.signing.agencies_file
        agencies = strict_loads(read_source(str(agencies_path))) if agencies_path else {}
    except (TrustListInvalid, NotCanonical) as exc:
        raise InputUnusable(str(exc)) from exc
    if not isinstance(agencies, dict) or not all(isinstance(v, str) for v in agencies.values()):
        raise InputUnusable('agencies must be {"identity--…": "GD", …}')
    return TrustStore(lists, agencies)


def _link(check: sigs.SignatureCheck) -> str:
    who = f"{check.jurisdiction or '?'} {check.signer or '?'}"
    key = f"key {check.kid or '?'} {check.alg or '?'}"
    custody = {"agency": "agency-held", "custodial": "custodial (held by ThreatBay)"}.get(
        check.custody or "", ""
    )
    when = f" at {check.signed_at}" if check.signed_at else ""
    state = "ok" if check.ok else f"FAILED: {check.reason}"
    return f"    {check.role:<17} {who}  {key}{(' ' + custody) if custody else ''}{when}: {state}"


def verify_command(
    source: Annotated[
        str, typer.Argument(help="A bundle, a TAXII envelope or one object: file or URL.")
    ],
    trust_list: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-list", help="A jurisdiction's signed trust list (file or URL); repeat."
        ),
    ] = None,
    roots: Annotated[
        Path | None, typer.Option("--roots", help='Pinned roots JSON {"GD": [JWK], ...}.')
    ] = None,
    received_at: Annotated[
        str | None,
        typer.Option(
            help="When this input was received (RFC 3339); keys are judged then. Default: now."
        ),
    ] = None,
    agencies: Annotated[
        Path | None,
        typer.Option(help="JSON {identity: jurisdiction} pinning which list speaks for an agency."),
    ] = None,
    manifest: Annotated[
        str | None, typer.Option(help="A signed manifest of the page or export (file or URL).")
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(envvar="THREATBAY_VERIFY_AUTH", help="HTTP Basic KEYID:SECRET for URLs."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:
    """Verify every object's signatures and chain; exit 1 if any object fails."""
    settings = Settings()
    now = datetime.now(UTC)
    try:
        at = parse_time(received_at, "--received-at") if received_at else now
        store = load_trust(settings, roots, trust_list or [], auth, now, agencies)
        objects, embedded, problems = objects_of(
            loads_marking_duplicates(read_source(source, auth))
        )
        manifest_doc = strict_loads(read_source(manifest, auth)) if manifest else embedded
    except (InputUnusable, NotCanonical, ValueError) as exc:
        typer.echo(f"threatbay verify: {exc}", err=True)
        raise typer.Exit(2) from exc
    allowed = settings.signing.algorithms
    skew = timedelta(seconds=settings.signing.clock_skew_s)
    verdicts = [sigs.verify(obj, store, at, allowed, skew) for obj in objects]
    verified_notes = [
        obj for obj, v in zip(objects, verdicts, strict=True) if v.verified and sigs.marked_for(obj)
    ]
    manifest_verdict: ManifestVerdict | None = None
    if manifest_doc is not None:
        dict_objects = [o for o in objects if isinstance(o, dict)]
        manifest_verdict = verify_manifest(manifest_doc, dict_objects, store, at, allowed)
    counts = {s: sum(v.status == s for v in verdicts) for s in ("verified", "failed", "unsigned")}
    ok = not problems and counts["failed"] == counts["unsigned"] == 0
    ok = ok and (manifest_verdict is None or manifest_verdict.ok)

    if as_json:
        report = {
            "received_at": format_time(at),
            "ok": ok,
            "problems": problems,
            "objects": [
                {
                    "id": v.object_id,
                    "modified": v.modified,
                    "status": v.status,
                    "reason": v.reason,
                    "chain": [asdict(c) for c in v.chain],
                }
                for v in verdicts
            ],
            "manifest": asdict(manifest_verdict) if manifest_verdict else None,
        }
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        held = ", ".join(f"{j} #{t.sequence}" for j, t in sorted(store.lists.items()))
        typer.echo(f"received at {format_time(at)}; {len(store.lists)} trust list(s): {held}")
        for problem in problems:
            typer.echo(f"FAILED    {problem}")
        for obj, verdict in zip(objects, verdicts, strict=True):
            label = f"{verdict.object_id or '<no id>'} ({verdict.modified or 'no modified'})"
            typer.echo(f"{verdict.status.upper():<9} {label}"
                       + ("" if verdict.verified else f": {verdict.reason}"))  # fmt: skip
            if isinstance(obj, dict) and verdict.verified:
                effective = sigs.effective_tlp(obj, verified_notes)
                if effective != tlp_of(obj)[0]:
                    typer.echo(f"    effective TLP {effective} (raised by a signed marking note)")
            for check in verdict.chain:
                typer.echo(_link(check))
        if manifest_verdict is not None:
            state = "ok" if manifest_verdict.ok else "FAILED"
            typer.echo(f"manifest by {manifest_verdict.issuer} key {manifest_verdict.kid} "
                       f"{manifest_verdict.alg}: {state}: {manifest_verdict.reason}")  # fmt: skip
        typer.echo(
            f"{len(verdicts)} objects: {counts['verified']} verified, "
            f"{counts['failed']} failed, {counts['unsigned']} unsigned"
        )
    if not ok:
        raise typer.Exit(1)
