"""Signed manifests of a TAXII page or an export: so a consumer can tell an object was dropped.

A per-object signature proves an object is genuine but not that it is all
there is: a relay can drop the later ``revoked: true`` version, or serve an
older version in place of the newer. A manifest lists, for every object of
one page or export, its id, ``modified``, the digest of its signed content and
the digest of its signature entries, signed by the issuer (the platform or an
exporting agency)::

    {"type": "threatbay-manifest", "issuer": "identity--…",
     "issued": "2026-12-01T08:00:00.000Z", "scope": "collections/shared-hk/objects/ page 3",
     "objects": [{"id": "indicator--…", "modified": "…", "object_digest": "sha-256:…",
                  "signatures_digest": "sha-256:…" | null}],
     "signature": "<detached JWS, typ threatbay-manifest+jcs>"}

``verify_manifest`` checks the signature like any other (trust list, receipt
time, issuer's own key) and then that the objects are exactly the listed ones:
none missing, none added, none in another version or with other signatures.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.jcs import NotCanonical, canonical, digest_of
from core.object_signatures import object_digest, signature_entries
from core.signing import (
    TYP_MANIFEST,
    SignatureInvalid,
    SigningKey,
    parse_detached,
    sign_detached,
    verify_with,
)
from core.trust import TrustStore, format_time

MANIFEST_TYPE = "threatbay-manifest"


def manifest_entry(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest line of one object."""
    entries = signature_entries(obj)
    entry: dict[str, Any] = {"id": obj["id"]}
    if isinstance(obj.get("modified"), str):
        entry["modified"] = obj["modified"]
    entry["object_digest"] = object_digest(obj)
    entry["signatures_digest"] = digest_of(entries) if entries else None
    return entry


def build_manifest(
    objects: Iterable[Mapping[str, Any]],
    key: SigningKey,
    *,
    issuer: str,
    issued: datetime,
    scope: str,
) -> dict[str, Any]:
    """A manifest of ``objects`` signed by ``key`` on behalf of ``issuer``."""
    body: dict[str, Any] = {
        "type": MANIFEST_TYPE,
        "issuer": issuer,
        "issued": format_time(issued),
        "scope": scope,
        "objects": [manifest_entry(o) for o in objects],
    }
    body["signature"] = sign_detached(canonical(body), key, TYP_MANIFEST)
    return body


@dataclass(frozen=True, slots=True)
class ManifestVerdict:
    """Whether a manifest holds, who issued it, and which objects do not match it."""

    ok: bool
    reason: str
    issuer: str | None = None
    kid: str | None = None
    alg: str | None = None
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


def _key(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    return (str(entry.get("id", "")).lower(), entry.get("modified"))


def verify_manifest(
    manifest: Any,
    objects: Iterable[Mapping[str, Any]],
    trust: TrustStore,
    received_at: datetime,
    allowed: Collection[str],
) -> ManifestVerdict:
    """Check the manifest's signature, then that ``objects`` are exactly what it lists."""
    if not isinstance(manifest, dict) or manifest.get("type") != MANIFEST_TYPE:
        return ManifestVerdict(False, f"not a {MANIFEST_TYPE} document")
    issuer = manifest.get("issuer")
    listed = manifest.get("objects")
    if not isinstance(issuer, str) or not isinstance(listed, list):
        return ManifestVerdict(False, "a manifest needs 'issuer' and 'objects'")
    body = {k: v for k, v in manifest.items() if k != "signature"}
    kid = alg = None
    try:
        jws = parse_detached(manifest.get("signature"), TYP_MANIFEST, allowed)
        kid, alg = jws.kid, jws.alg
        entry = trust.signer(jws.kid, issuer, received_at)
        verify_with(jws, canonical(body), entry.key)
    except (SignatureInvalid, NotCanonical) as exc:
        return ManifestVerdict(False, f"manifest signature: {exc}", issuer, kid, alg)
    expected: dict[tuple[str, str | None], Mapping[str, Any]] = {}
    for line in listed:
        if not isinstance(line, dict):
            return ManifestVerdict(False, "a manifest line is not an object", issuer, kid, alg)
        if _key(line) in expected:
            return ManifestVerdict(
                False, f"the manifest lists {line.get('id')} twice", issuer, kid, alg
            )
        expected[_key(line)] = line
    seen: set[tuple[str, str | None]] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    problems: list[str] = []
    for obj in objects:
        try:
            actual = manifest_entry(obj)
        except (KeyError, NotCanonical) as exc:
            problems.append(f"{obj.get('id')}: {exc}")
            continue
        key = _key(actual)
        label = f"{actual['id']} ({actual.get('modified', 'no modified')})"
        if key in seen:
            unexpected.append(label + " twice")
            continue
        seen.add(key)
        line = expected.get(key)
        if line is None:
            unexpected.append(label)
        elif line != actual:
            mismatched.append(label)
    missing = [
        f"{line.get('id')} ({line.get('modified', 'no modified')})"
        for key, line in expected.items()
        if key not in seen
    ]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if unexpected:
        parts.append(f"not in the manifest {', '.join(unexpected)}")
    if mismatched:
        parts.append(f"other content or signatures than listed {', '.join(mismatched)}")
    parts.extend(problems)
    ok = not parts
    return ManifestVerdict(
        ok,
        "manifest matches" if ok else "; ".join(parts),
        issuer,
        kid,
        alg,
        tuple(missing),
        tuple(unexpected),
        tuple(mismatched),
        tuple(problems),
    )
