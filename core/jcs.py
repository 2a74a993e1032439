"""Strict JSON in, RFC 8785 (JCS) canonical bytes out: what every ThreatBay signature covers.

Why a parser of our own on the signature path (DOMAIN.md "Trusted data"):

- orjson (the hot-path parser) keeps the *last* of two duplicate member names
  without a word, while other consumers keep the first: a signature verified
  over one value would vouch for a document another reader sees differently.
  Signed input is therefore parsed (again) with the standard library and a
  pairs hook that sees every member. ``loads_marking_duplicates`` keeps going
  and records duplicates on the object they occur in, so one bad object in a
  bundle fails alone; ``strict_loads`` raises at the first one.
- ``NaN``/``Infinity`` literals, non-finite numbers (``1e400``) and integers
  outside ±(2^53 − 1) have no canonical form (RFC 8785 §3.2.2.3, I-JSON
  RFC 7493 §2.2); ``canonical`` refuses them with a precise reason.
- JCS does not normalise Unicode: NFC vs NFD, or Traditional vs Simplified
  characters, are different bytes and so a different signed content.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

import orjson
import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1
DIGEST_PREFIX = "sha-256:"


class NotCanonical(ValueError):
    """A JSON value has no RFC 8785 canonical form, or the text breaks I-JSON; says why."""


class _Members(dict[str, Any]):
    """A parsed JSON object that remembers member names it saw twice, here or anywhere below."""

    __slots__ = ("duplicates", "tainted")

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.duplicates: list[str] = []
        tainted = False
        for key, value in pairs:
            if key in self:
                self.duplicates.append(key)
            self[key] = value
            tainted = tainted or _tainted(value)
        # Objects are built inside out, so a parent knows at once whether a duplicate lies below.
        self.tainted = tainted or bool(self.duplicates)


def _tainted(value: Any) -> bool:
    if isinstance(value, _Members):
        return value.tainted
    if isinstance(value, list):
        return any(_tainted(item) for item in value)
    return False


def _reject_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise NotCanonical(f"duplicate member name {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise NotCanonical(f"{name} is not a JSON number")


def _nan_constant(name: str) -> float:
    # Kept as a float so the object carrying it fails canonicalisation on its own.
    return math.nan


def _text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotCanonical(f"not UTF-8: {exc}") from exc
    return data


def strict_loads(data: str | bytes) -> Any:
    """Parse JSON, refusing duplicate member names and NaN/Infinity anywhere."""
    try:
        return json.loads(
            _text(data), object_pairs_hook=_reject_pairs, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise NotCanonical(f"not JSON: {exc}") from exc


def loads_marking_duplicates(data: str | bytes) -> Any:
    """Parse JSON; duplicate member names are recorded on their object (``duplicate_members``)."""
    try:
        return json.loads(_text(data), object_pairs_hook=_Members, parse_constant=_nan_constant)
    except json.JSONDecodeError as exc:
        raise NotCanonical(f"not JSON: {exc}") from exc


def duplicate_members(value: Any, path: str = "") -> list[str]:
    """Paths (``/a/b``) of member names that occurred twice anywhere inside ``value``."""
    if not _tainted(value):
        return []
    found: list[str] = []
    if isinstance(value, _Members):
        found.extend(f"{path}/{name}" for name in value.duplicates)
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(duplicate_members(item, f"{path}/{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(duplicate_members(item, f"{path}/{index}"))
    return found


_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _orjson_agrees(value: Any) -> bool:
    """True when orjson's sorted output is RFC 8785 for ``value``: no floats, ASCII keys only.

    For such values the two agree byte for byte: string escaping was compared
    over every Unicode scalar value, ASCII keys sort the same by UTF-16 code
    unit and by byte, and OPT_STRICT_INTEGER refuses integers outside ±(2^53 − 1)
    (tests/unit/test_signing.py checks both against rfc8785). Floats (ES6
    number formatting) and non-ASCII keys (UTF-16 order) go to rfc8785.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if isinstance(value, dict):
        return all(type(k) is str and k.isascii() and _orjson_agrees(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_orjson_agrees(v) for v in value)
    return False


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of ``value``, or ``NotCanonical`` with the reason."""
    if _orjson_agrees(value):
        try:
            return orjson.dumps(value, option=_FAST)
        except orjson.JSONEncodeError as exc:
            if "53-bit" in str(exc):
                raise NotCanonical(
                    f"integer beyond ±(2^53 − 1) has no canonical form (RFC 8785 §3.2.2.3): {exc}"
                ) from exc
            raise NotCanonical(f"no canonical form: {exc}") from exc
    return rfc8785_canonical(value)


def rfc8785_canonical(value: Any) -> bytes:
    """``canonical`` by the rfc8785 library alone (the reference; floats and non-ASCII keys)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError as exc:
        raise NotCanonical(
            f"integer beyond ±(2^53 − 1) has no canonical form (RFC 8785 §3.2.2.3): {exc}"
        ) from exc
    except rfc8785.FloatDomainError as exc:
        raise NotCanonical(f"non-finite number has no canonical form: {exc}") from exc
    except rfc8785.CanonicalizationError as exc:
        raise NotCanonical(f"no canonical form: {exc}") from exc


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_decode(text: str) -> bytes:
    """Inverse of ``b64url``; refuses padding, other alphabets and non-canonical trailing bits."""
    if not isinstance(text, str) or not _B64URL_ALPHABET.issuperset(text) or len(text) % 4 == 1:
        raise NotCanonical("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise NotCanonical("base64url with non-zero trailing bits")
    return raw


def digest(data: bytes) -> str:
    """``sha-256:<base64url>`` of ``data``: how manifests and countersignatures name content."""
    return DIGEST_PREFIX + b64url(hashlib.sha256(data).digest())


def digest_of(value: Any) -> str:
    """``digest`` of the canonical bytes of ``value``."""
    return digest(canonical(value))
