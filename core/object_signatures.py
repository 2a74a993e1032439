"""Signed STIX objects: what is signed, where signatures live, how a chain verifies.

DOMAIN.md "Trusted data". An object's signatures live in ThreatBay's
property extension (``TRUSTED_DATA_EXTENSION``, defined by the
``extension-definition`` in ``core/trusted_data_extension.json``)::

    "extensions": {"extension-definition--45144b5b-…": {
        "extension_type": "property-extension",
        "signatures": [
            {"role": "origin", "jws": "<detached JWS>"},
            {"role": "countersignature", "signer": "identity--…",
             "signed_at": "2026-12-01T08:00:00.000Z", "jws": "<detached JWS>"}],
        "marking_for": ["indicator--…"]}}          (only on a marking note)

- **origin**: a detached JWS (``typ`` ``threatbay-object+jcs``) over the RFC
  8785 bytes of the object *without* ``signatures`` (``unsigned_form``: the
  ``signatures`` member removed, then the extension if only its
  ``extension_type`` is left, then ``extensions`` if empty). Everything else,
  markings and ``marking_for`` included, is covered. The key must belong to
  the object's ``created_by_ref``.
- **countersignature** (a re-share): appended, never replacing; a JWS
  (``typ`` ``threatbay-countersignature+jcs``) over the canonical JSON of
  ``{object_digest, previous_digest, signer, signed_at}``: the digest of the
  signed content, the digest of every signature entry before it, the
  re-sharer's identity and its time. The object itself is never edited.
- A re-sharer that needs a stricter marking publishes a separate signed
  ``note`` (``marking_note``) whose ``marking_for`` names the object; the
  effective marking is the most restrictive of all (``effective_tlp``).

Every key is looked up in the trust lists and judged at the verifier's
receipt time (core/trust.py). Whether an *unsigned* object is acceptable is
local policy, never something the payload can say: ``verify`` reports
``unsigned`` and the caller decides.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Literal

from core.jcs import NotCanonical, canonical, digest, digest_of, duplicate_members
from core.markings import MARKING_ID_BY_TLP, most_restrictive, tlp_of
from core.provenance import Tlp
from core.signing import (
    TYP_COUNTERSIGNATURE,
    TYP_OBJECT,
    DetachedJws,
    SignatureInvalid,
    SigningKey,
    parse_detached,
    sign_detached,
    verify_with,
)
from core.trust import Custody, KeyEntry, TrustStore, format_time, parse_time

TRUSTED_DATA_EXTENSION = "extension-definition--45144b5b-8a7f-45d4-bbe4-8d8ff9bf8409"
SIGNATURES = "signatures"
MARKING_FOR = "marking_for"

Role = Literal["origin", "countersignature"]
Status = Literal["verified", "failed", "unsigned"]
_ORIGIN_MEMBERS = frozenset({"role", "jws", "custody"})
_COUNTER_MEMBERS = frozenset({"role", "jws", "custody", "signer", "signed_at"})


@cache
def extension_definition() -> dict[str, Any]:
    """The ``extension-definition`` object of TRUSTED_DATA_EXTENSION (package data)."""
    text = resources.files("core").joinpath("trusted_data_extension.json").read_text("utf-8")
    definition: dict[str, Any] = json.loads(text)
    return definition


def extension_schema() -> dict[str, Any]:
    """The JSON Schema of the extension's properties (the definition's ``schema``)."""
    schema: dict[str, Any] = json.loads(extension_definition()["schema"])
    return schema


class AlreadySigned(ValueError):
    """An origin signature exists: a re-share countersigns, it never re-signs."""


# ---------------------------------------------------------------- what is signed


def _extension(obj: Mapping[str, Any]) -> Any:
    extensions = obj.get("extensions")
    return extensions.get(TRUSTED_DATA_EXTENSION) if isinstance(extensions, dict) else None


def signature_entries(obj: Mapping[str, Any]) -> Any:
    """The ``signatures`` value as carried (None when the object carries none)."""
    ext = _extension(obj)
    return ext.get(SIGNATURES) if isinstance(ext, dict) else None


def unsigned_form(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without its signatures: exactly what an origin signature covers."""
    body = dict(obj)
    extensions = body.get("extensions")
    if not isinstance(extensions, dict):
        return body
    ext = extensions.get(TRUSTED_DATA_EXTENSION)
    if not isinstance(ext, dict):
        return body
    rest = {k: v for k, v in ext.items() if k != SIGNATURES}
    others = {k: v for k, v in extensions.items() if k != TRUSTED_DATA_EXTENSION}
    if set(rest) - {"extension_type"}:
        others[TRUSTED_DATA_EXTENSION] = rest
    if others:
        body["extensions"] = others
    else:
        del body["extensions"]
    return body


def object_payload(obj: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of ``unsigned_form(obj)`` (``NotCanonical`` when it has none)."""
    return canonical(unsigned_form(obj))


def object_digest(obj: Mapping[str, Any]) -> str:
    """``sha-256:…`` of the signed content: the same before and after any signature."""
    return digest(object_payload(obj))


def countersignature_payload(
    content_digest: str, previous: list[Any], signer: str, signed_at: str
) -> bytes:
    """What a re-sharer signs: (object digest, previous signatures' digest, identity, time)."""
    return canonical(
        {
            "object_digest": content_digest,
            "previous_digest": digest_of(previous),
            "signer": signer,
            "signed_at": signed_at,
        }
    )


def _with_entries(obj: Mapping[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    signed = dict(obj)
    extensions = dict(signed.get("extensions") or {})
    ext = dict(extensions.get(TRUSTED_DATA_EXTENSION) or {})
    ext["extension_type"] = "property-extension"
    ext[SIGNATURES] = entries
    extensions[TRUSTED_DATA_EXTENSION] = ext
    signed["extensions"] = extensions
    return signed


def sign(obj: Mapping[str, Any], key: SigningKey, custody: Custody | None = None) -> dict[str, Any]:
    """A copy of ``obj`` carrying its origin signature by ``key`` (its creator's key)."""
    if signature_entries(obj):
        raise AlreadySigned(f"{obj.get('id')} is already signed; countersign to re-share")
    if not isinstance(obj.get("created_by_ref"), str):
        raise ValueError(f"{obj.get('id')} has no created_by_ref: a signature needs a signer")
    entry: dict[str, Any] = {"role": "origin"}
    entry["jws"] = sign_detached(object_payload(obj), key, TYP_OBJECT)
    if custody is not None:
        entry["custody"] = custody
    return _with_entries(obj, [entry])


def countersign(
    obj: Mapping[str, Any],
    key: SigningKey,
    signer: str,
    at: datetime,
    custody: Custody | None = None,
) -> dict[str, Any]:
    """A copy of ``obj`` with one more signature entry: ``signer`` re-shares it at ``at``."""
    entries = signature_entries(obj)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{obj.get('id')} carries no signature to countersign")
    signed_at = format_time(at)
    payload = countersignature_payload(object_digest(obj), entries, signer, signed_at)
    entry: dict[str, Any] = {"role": "countersignature", "signer": signer, "signed_at": signed_at}
    entry["jws"] = sign_detached(payload, key, TYP_COUNTERSIGNATURE)
    if custody is not None:
        entry["custody"] = custody
    return _with_entries(obj, [*entries, entry])


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """One link of a chain: who signed, with which key and algorithm, and whether it holds."""

    role: str
    ok: bool
    reason: str
    signer: str | None = None
    kid: str | None = None
    alg: str | None = None
    jurisdiction: str | None = None
    custody: str | None = None
    signed_at: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectVerdict:
    """The verdict on one object: ``verified``, ``failed`` or ``unsigned``, and the chain."""

    object_id: str | None
    modified: str | None
    status: Status
    reason: str
    chain: tuple[SignatureCheck, ...] = ()

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def origin(self) -> SignatureCheck | None:
        return self.chain[0] if self.chain and self.chain[0].role == "origin" else None


def verify(
    obj: Any,
    trust: TrustStore,
    received_at: datetime,
    allowed: Collection[str],
    skew: timedelta = timedelta(minutes=5),
) -> ObjectVerdict:
    """Verify ``obj``'s whole signature chain as received at ``received_at``."""
    if not isinstance(obj, dict):
        return ObjectVerdict(None, None, "failed", "not a JSON object")
    object_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    modified = obj.get("modified") if isinstance(obj.get("modified"), str) else None

    def failed(reason: str, chain: tuple[SignatureCheck, ...] = ()) -> ObjectVerdict:
        return ObjectVerdict(object_id, modified, "failed", reason, chain)

    duplicates = duplicate_members(obj)
    if duplicates:
        return failed(
            f"duplicate member name(s) {', '.join(duplicates)}: readers keeping the first and "
            "the last would see different objects"
        )
    entries = signature_entries(obj)
    if entries is None or entries == []:
        return ObjectVerdict(object_id, modified, "unsigned", "unsigned: no ThreatBay signature")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return failed("signatures are not a list of signature entries")
    creator = obj.get("created_by_ref")
    if not isinstance(creator, str):
        return failed("no created_by_ref: nobody the origin signature could belong to")
    try:
        payload = object_payload(obj)
    except NotCanonical as exc:
        return failed(str(exc))
    content_digest = digest(payload)
    chain: list[SignatureCheck] = []
    for index, entry in enumerate(entries):
        if index == 0:
            check = _check_origin(entry, payload, creator, trust, received_at, allowed)
        else:
            check = _check_countersignature(
                entry, content_digest, entries[:index], trust, received_at, allowed, skew
            )
        chain.append(check)
    first_bad = next((c for c in chain if not c.ok), None)
    if first_bad is not None:
        position = chain.index(first_bad)
        return failed(f"signature {position + 1} ({first_bad.role}): {first_bad.reason}", (*chain,))
    return ObjectVerdict(object_id, modified, "verified", "verified", tuple(chain))


def _check_origin(
    entry: Mapping[str, Any],
    payload: bytes,
    creator: str,
    trust: TrustStore,
    received_at: datetime,
    allowed: Collection[str],
) -> SignatureCheck:
    if entry.get("role") != "origin":
        return SignatureCheck("origin", False, "the first signature must be the origin signature")
    return _check(
        entry, _ORIGIN_MEMBERS, "origin", creator, TYP_OBJECT, payload, trust, received_at, allowed
    )


def _check_countersignature(
    entry: Mapping[str, Any],
    content_digest: str,
    previous: list[Any],
    trust: TrustStore,
    received_at: datetime,
    allowed: Collection[str],
    skew: timedelta,
) -> SignatureCheck:
    role = "countersignature"
    if entry.get("role") != role:
        return SignatureCheck(role, False, "only the first signature may be an origin signature")
    signer, signed_at = entry.get("signer"), entry.get("signed_at")
    if not isinstance(signer, str) or not isinstance(signed_at, str):
        return SignatureCheck(role, False, "a countersignature needs 'signer' and 'signed_at'")
    try:
        at = parse_time(signed_at, "signed_at")
        payload = countersignature_payload(content_digest, previous, signer, signed_at)
    except (ValueError, NotCanonical) as exc:
        return SignatureCheck(role, False, str(exc), signer=signer)
    if at > received_at + skew:
        return SignatureCheck(
            role, False, f"dated {signed_at}, after it was received", signer=signer
        )
    return _check(
        entry, _COUNTER_MEMBERS, role, signer, TYP_COUNTERSIGNATURE, payload, trust,
        received_at, allowed, signed_at=signed_at,
    )  # fmt: skip


def _check(
    entry: Mapping[str, Any],
    members: frozenset[str],
    role: str,
    signer: str,
    typ: str,
    payload: bytes,
    trust: TrustStore,
    received_at: datetime,
    allowed: Collection[str],
    signed_at: str | None = None,
) -> SignatureCheck:
    jws: DetachedJws | None = None
    key: KeyEntry | None = None
    try:
        unknown = sorted(set(entry) - members)
        if unknown:
            raise SignatureInvalid(f"unexpected member(s) {', '.join(unknown)} in the entry")
        jws = parse_detached(entry.get("jws"), typ, allowed)
        key = trust.signer(jws.kid, signer, received_at)
        verify_with(jws, payload, key.key)
        claimed = entry.get("custody")
        if claimed is not None and claimed != key.custody:
            raise SignatureInvalid(
                f"entry says custody {claimed!r}, the trust list says {key.custody!r}"
            )
    except SignatureInvalid as exc:
        return SignatureCheck(
            role, False, exc.reason, signer=signer,
            kid=jws.kid if jws else None, alg=jws.alg if jws else None,
            jurisdiction=key.jurisdiction if key else None, signed_at=signed_at,
        )  # fmt: skip
    return SignatureCheck(
        role, True, "verified", signer=signer, kid=jws.kid, alg=jws.alg,
        jurisdiction=key.jurisdiction, custody=key.custody, signed_at=signed_at,
    )  # fmt: skip


# ---------------------------------------------------------------- stricter markings


def marking_note(
    *,
    note_id: str,
    object_ids: Iterable[str],
    created_by_ref: str,
    created: datetime,
    tlp: Tlp,
    content: str,
) -> dict[str, Any]:
    """An unsigned ``note`` raising the marking of ``object_ids`` to ``tlp`` (sign it next)."""
    ids = list(object_ids)
    stamp = format_time(created)
    return {
        "type": "note",
        "spec_version": "2.1",
        "id": note_id,
        "created": stamp,
        "modified": stamp,
        "created_by_ref": created_by_ref,
        "content": content,
        "object_refs": ids,
        "object_marking_refs": [MARKING_ID_BY_TLP[tlp]],
        "extensions": {
            TRUSTED_DATA_EXTENSION: {"extension_type": "property-extension", MARKING_FOR: ids}
        },
    }


def marked_for(note: Mapping[str, Any]) -> tuple[str, ...]:
    """The object ids whose marking ``note`` raises (its ``marking_for``)."""
    ext = _extension(note)
    ids = ext.get(MARKING_FOR) if isinstance(ext, dict) else None
    return tuple(i.lower() for i in ids if isinstance(i, str)) if isinstance(ids, list) else ()


def effective_tlp(obj: Mapping[str, Any], notes: Iterable[Mapping[str, Any]]) -> Tlp:
    """The most restrictive of ``obj``'s own TLP and every explicit TLP of a note raising it.

    A note can only raise a marking: a lower TLP on a note changes nothing. The
    caller chooses which notes count (typically those that verified and come
    from the object's signature chain).
    """
    own, _ = tlp_of(obj)
    levels = [own]
    object_id = str(obj.get("id", "")).lower()
    for note in notes:
        if object_id in marked_for(note):
            tlp, defaulted = tlp_of(note)
            if not defaulted:
                levels.append(tlp)
    return most_restrictive(levels)
