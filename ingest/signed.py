"""Signed objects at the inbox: find each one's bytes in the request body and verify it.

DOMAIN.md "Trusted data"; issue #24 "Push". The TAXII inbox parses its body
with orjson, which keeps the last of two duplicate member names without a word
and turns integers beyond 2^64 into floats. A signature checked over that view
would vouch for bytes that a first-wins reader sees differently, so when the
body carries ThreatBay's signature extension the envelope is walked once more
with the standard library (``json.JSONDecoder.raw_decode``): each object's exact
text is located, and parsed with the duplicate-aware parser of core/jcs.py.
Verification runs on that parse; the text is what is stored and served
unchanged (records/objects.py, api/taxii/service.py ``envelope``).

Bodies without the extension skip the second parse: unsigned pushes pay
nothing. The second parse is triggered by the extension's id in the raw bytes
or in any parsed object (the id may be ``\\u``-escaped in the bytes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core import object_signatures as sigs
from core.jcs import NotCanonical, loads_marking_duplicates
from core.trust import TrustStore

_MARKER = sigs.TRUSTED_DATA_EXTENSION.encode()
_WHITESPACE = " \t\n\r"


@dataclass(frozen=True, slots=True)
class Received:
    """One object of the body: its text as received and its duplicate-aware parse."""

    text: str
    parsed: Any


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _object_spans(text: str) -> list[tuple[int, int]] | None:
    """(start, end) of each element of the envelope's ``objects`` (the last one, as orjson)."""
    decoder = json.JSONDecoder()
    at = _skip(text, 0)
    if not text.startswith("{", at):
        return None
    at = _skip(text, at + 1)
    spans: list[tuple[int, int]] | None = None
    if text.startswith("}", at):
        return None
    while True:
        name, at = decoder.raw_decode(text, at)
        at = _skip(text, at)
        if not isinstance(name, str) or not text.startswith(":", at):
            return None
        at = _skip(text, at + 1)
        if name == "objects" and text.startswith("[", at):
            spans = []
            at = _skip(text, at + 1)
            if text.startswith("]", at):
                at += 1
            else:
                while True:
                    _, end = decoder.raw_decode(text, at)
                    spans.append((at, end))
                    at = _skip(text, end)
                    if text.startswith(",", at):
                        at = _skip(text, at + 1)
                        continue
                    if not text.startswith("]", at):
                        return None
                    at += 1
                    break
        else:
            _, at = decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text.startswith(",", at):
            at = _skip(text, at + 1)
            continue
        return spans if text.startswith("}", at) else None


def _carries_extension(obj: Any) -> bool:
    extensions = obj.get("extensions") if isinstance(obj, dict) else None
    return isinstance(extensions, dict) and sigs.TRUSTED_DATA_EXTENSION in extensions


def received_objects(raw: bytes, objects: Sequence[Any]) -> list[Received | None] | None:
    """Each object's text and duplicate-aware parse, or None when the body carries no signature.

    Positions match ``objects`` (the orjson parse of the same body).
    """
    if _MARKER not in raw and not any(_carries_extension(o) for o in objects):
        return None
    try:
        text = raw.decode("utf-8")
        spans = _object_spans(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        spans = None
    if spans is None or len(spans) != len(objects):
        # cannot happen for a body orjson accepted; verify on the orjson parse then
        return [None] * len(objects)
    out: list[Received | None] = []
    for start, end in spans:
        piece = text[start:end]
        try:
            out.append(Received(piece, loads_marking_duplicates(piece)))
        except (NotCanonical, RecursionError):
            out.append(None)
    return out


@dataclass(frozen=True, slots=True)
class SignedCheck:
    """What the inbox needs to know of one object's signatures."""

    verdict: sigs.ObjectVerdict | None
    """None when the object carries no signature and none was looked for."""
    error: str | None = None

    @property
    def resharer(self) -> str | None:
        """The identity of the last countersigner, when the chain verified."""
        if self.verdict is None or not self.verdict.verified:
            return None
        last = self.verdict.chain[-1]
        return last.signer if last.role == "countersignature" else None


def summary(verdict: sigs.ObjectVerdict) -> dict[str, Any]:
    """What is stored with a verified object: who signed, with what, and the chain."""
    origin = verdict.chain[0]
    return {
        "status": verdict.status,
        "signed_by": origin.signer,
        "kid": origin.kid,
        "alg": origin.alg,
        "jurisdiction": origin.jurisdiction,
        "custody": origin.custody,
        "chain": [
            {
                "role": c.role,
                "signer": c.signer,
                "kid": c.kid,
                "alg": c.alg,
                "jurisdiction": c.jurisdiction,
                "custody": c.custody,
                "signed_at": c.signed_at,
            }
            for c in verdict.chain
        ],
    }


def check_signatures(
    obj: Any,
    received: Received | None,
    trust: TrustStore | None,
    received_at: datetime,
    allowed: Sequence[str],
    skew: timedelta,
    required: bool,
    agency: str,
) -> SignedCheck:
    """The verdict on one pushed object's signatures, and why it may not be accepted (if so)."""
    subject = received.parsed if received is not None else obj
    if not _carries_extension(subject) and not required and received is None:
        return SignedCheck(None)
    if trust is None:
        if sigs.signature_entries(subject) or required:
            return SignedCheck(
                None,
                "signature: this deployment holds no trust lists (THREATBAY_SIGNING__ROOTS_FILE "
                "and __TRUST_LISTS), so no signature can be verified",
            )
        return SignedCheck(None)
    verdict = sigs.verify(subject, trust, received_at, allowed, skew)
    if verdict.status == "failed":
        return SignedCheck(verdict, f"signature: {verdict.reason}")
    if verdict.status == "unsigned" and required:
        return SignedCheck(
            verdict,
            f"unsigned: {agency} requires signed objects (THREATBAY_SIGNING__REQUIRE_SIGNED); "
            "a payload cannot waive it",
        )
    return SignedCheck(verdict)
