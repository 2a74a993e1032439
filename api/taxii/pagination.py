"""URL filtering and pagination (TAXII 2.1 sections 3.4 and 3.5).

``next`` is opaque to clients: base64url of the store cursor of the last hit
plus a hash of the filters it belongs to, so it stays valid when the client
resends the same filters (taxii2-client does) and is refused (400) with
different ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from api.taxii.errors import bad_request
from core.clock import format_timestamp, parse_timestamp
from core.stix import timestamp_error

MATCH_FIELDS = ("id", "type", "version", "spec_version")


@dataclass(frozen=True, slots=True)
class Filters:
    """The parsed URL parameters of one request."""

    match: Mapping[str, tuple[str, ...]]
    added_after: str | None
    limit: int
    after: tuple[Any, ...] | None

    def values(self, name: str) -> tuple[str, ...] | None:
        return self.match.get(name)


def _timestamp(value: str, what: str) -> str:
    if timestamp_error(value) is not None:
        raise bad_request(f"{what} must be a UTC timestamp like 2026-01-01T00:00:00.000Z")
    text = value[:26] + "Z" if len(value) > 27 else value
    return format_timestamp(parse_timestamp(text))


def filter_hash(scope: str, match: Mapping[str, tuple[str, ...]], added_after: str | None) -> str:
    canon = orjson.dumps([scope, sorted((k, sorted(v)) for k, v in match.items()), added_after])
    return hashlib.sha256(canon).hexdigest()[:16]


def encode_next(cursor: tuple[Any, ...], fhash: str) -> str:
    raw = orjson.dumps({"c": list(cursor), "h": fhash})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_next(token: str, fhash: str) -> tuple[Any, ...]:
    """The cursor inside ``token``; 400 when it is garbage or belongs to other filters."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        cursor, token_hash = data["c"], data["h"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise bad_request("next is not a value this server issued") from exc
    well_formed = isinstance(cursor, list) and len(cursor) == 2
    if not well_formed or not all(isinstance(c, str) for c in cursor) or token_hash != fhash:
        raise bad_request("next does not belong to these filters; resend the original filters")
    return tuple(cursor)


def parse_filters(
    params: Iterable[tuple[str, str]],
    allowed: tuple[str, ...],
    scope: str,
    default_limit: int,
    max_limit: int,
) -> Filters:
    """Parse ``match[...]``, ``added_after``, ``limit`` and ``next`` (TAXII 2.1 section 3.4).

    Each ``match[field]`` at most once; commas OR values; fields AND. Unknown
    ``match`` fields, repeated parameters and malformed values are 400.
    """
    seen: dict[str, str] = {}
    for name, value in params:
        if name in seen:
            raise bad_request(f"parameter {name} given more than once")
        seen[name] = value
    match: dict[str, tuple[str, ...]] = {}
    for name, value in seen.items():
        if not name.startswith("match["):
            continue
        field = name[6:-1] if name.endswith("]") else ""
        if field not in allowed:
            raise bad_request(
                f"unsupported filter {name}; this endpoint supports "
                + ", ".join(f"match[{f}]" for f in allowed)
            )
        values = tuple(v.strip() for v in value.split(",") if v.strip())
        if not values:
            raise bad_request(f"{name} is empty")
        if field == "version":
            values = tuple(
                v if v in ("first", "last", "all") else _timestamp(v, "match[version]")
                for v in values
            )
        match[field] = values
    added_after = None
    if "added_after" in seen:
        added_after = _timestamp(seen["added_after"], "added_after")
    limit = default_limit
    if "limit" in seen:
        text = seen["limit"]
        if not text.isdigit() or int(text) < 1:
            raise bad_request("limit must be a positive integer")
        limit = min(int(text), max_limit)
    fhash = filter_hash(scope, match, added_after)
    after = decode_next(seen["next"], fhash) if "next" in seen else None
    return Filters(match=match, added_after=added_after, limit=limit, after=after)
