"""URL filtering and pagination (TAXII 2.1 sections 3.4 and 3.5).

``next`` is opaque to clients and self-contained: a token of the shared cursor
codec (``core/cursors.py``) holding the store cursor of the last hit and the
query it continues, ``{"c": cursor, "q": {"s": scope, "m": match, "a":
added_after}}``. So:

- ``next`` alone continues the original query (Elastic ti_custom <= 1.8.1 and
  OpenCTI's taxii2 connector send only ``next`` and ``limit`` after page 1);
- ``next`` with the same filters continues it too, whatever ``limit`` says
  (taxii2-client ``as_pages`` resends every filter and may lower ``limit``);
- ``next`` with other ``match[...]`` filters, or from another collection or
  endpoint, is a 400 that says to drop ``next``: TAXII 2.1 section 3.4 has the
  client page "using the next URL parameter along with the same original query
  options", and the server never guesses which of two queries was meant.

One refinement for ``added_after``, and why. OpenCTI's connector keeps one
filter dict for the life of its process: its next run sends the ``next`` of
the previous run *with* a new ``added_after`` (the previous run's start). A
token's cursor is a position ``(date_added, key)``. When the position's
``date_added`` is before the new ``added_after``, every object the new query
selects lies after the position, so continuing the token's query and starting
the new one select exactly the same objects: the request is answered (as the
new query). When it is not, the two readings differ (continuing would skip
objects the new ``added_after`` asks for, or add some it excludes): 400,
"drop next". A malformed or altered token is a 400 too.

A query too long to ride in a token (thousands of ``match[id]`` values) gets
a token holding only a hash of it; such a ``next`` must come with the original
filters, as before issue 18.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from api.taxii.errors import bad_request
from core.clock import format_timestamp, parse_timestamp
from core.cursors import MAX_TOKEN_CHARS, decode_token, encode_token
from core.errors import BadCursor
from core.stix import timestamp_error

MATCH_FIELDS = ("id", "type", "version", "spec_version")


@dataclass(frozen=True, slots=True)
class Filters:
    """The parsed URL parameters of one request (with ``next``: the query it continues)."""

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


def _query_doc(
    scope: str, match: Mapping[str, tuple[str, ...]], added_after: str | None
) -> dict[str, Any]:
    return {"s": scope, "m": {k: list(v) for k, v in sorted(match.items())}, "a": added_after}


def encode_next(
    cursor: tuple[Any, ...],
    scope: str,
    match: Mapping[str, tuple[str, ...]],
    added_after: str | None,
) -> str:
    """The ``next`` of a page whose last hit has ``cursor``, carrying the query it continues."""
    token = encode_token({"c": list(cursor), "q": _query_doc(scope, match, added_after)})
    if len(token) <= MAX_TOKEN_CHARS:
        return token
    return encode_token({"c": list(cursor), "h": filter_hash(scope, match, added_after)})


@dataclass(frozen=True, slots=True)
class _Token:
    cursor: tuple[str, str]
    match: dict[str, tuple[str, ...]] | None  # None: a hash-only token
    added_after: str | None
    scope: str | None
    fhash: str | None


_NOT_OURS = "next is not a value this server issued"


def _match_of(raw: Any, allowed: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise bad_request(_NOT_OURS)
    out: dict[str, tuple[str, ...]] = {}
    for field, values in raw.items():
        if field not in allowed or not isinstance(values, list) or not values:
            raise bad_request(_NOT_OURS)
        if not all(isinstance(v, str) and v for v in values):
            raise bad_request(_NOT_OURS)
        out[field] = _match_values(field, ",".join(values), f"match[{field}]")
    return out


def _decode(text: str, allowed: tuple[str, ...]) -> _Token:
    try:
        data = decode_token(text)
    except BadCursor as exc:
        raise bad_request(_NOT_OURS) from exc
    if not isinstance(data, dict):
        raise bad_request(_NOT_OURS)
    cursor = data.get("c")
    if not (
        isinstance(cursor, list) and len(cursor) == 2 and all(isinstance(c, str) for c in cursor)
    ):
        raise bad_request(_NOT_OURS)
    if timestamp_error(cursor[0]) is not None:
        raise bad_request(_NOT_OURS)
    position = (cursor[0], cursor[1])
    if isinstance(data.get("h"), str):
        return _Token(position, None, None, None, data["h"])
    query = data.get("q")
    if not isinstance(query, dict) or not isinstance(query.get("s"), str):
        raise bad_request(_NOT_OURS)
    added = query.get("a")
    if added is not None and (not isinstance(added, str) or timestamp_error(added) is not None):
        raise bad_request(_NOT_OURS)
    match = _match_of(query.get("m", {}), allowed)
    return _Token(position, match, added, query["s"], None)


def _match_values(field: str, value: str, name: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in value.split(",") if v.strip())
    if not values:
        raise bad_request(f"{name} is empty")
    if field == "version":
        values = tuple(
            v if v in ("first", "last", "all") else _timestamp(v, "match[version]") for v in values
        )
    return values


def _same_match(a: Mapping[str, tuple[str, ...]], b: Mapping[str, tuple[str, ...]]) -> bool:
    return {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}


def _continue(
    token: _Token,
    scope: str,
    match: dict[str, tuple[str, ...]],
    added_after: str | None,
) -> tuple[dict[str, tuple[str, ...]], str | None]:
    """The (match, added_after) a request with ``next`` is answered with (module docstring)."""
    if token.match is None:  # hash-only token: the request must resend the same filters
        if token.fhash != filter_hash(scope, match, added_after):
            raise bad_request(
                "next does not belong to these filters; resend the original filters, "
                "or drop next to start a new query"
            )
        return match, added_after
    if token.scope != scope:
        raise bad_request(
            "next belongs to another collection or endpoint; drop next to start a new query here"
        )
    if match and not _same_match(match, token.match):
        raise bad_request(
            "next continues a query with other match[...] filters; send next alone or with "
            "the original filters, or drop next to start a new query"
        )
    if added_after is None or added_after == token.added_after:
        return token.match, token.added_after
    if token.cursor[0] < added_after:
        # the position lies before everything the new added_after selects: same objects
        return token.match, added_after
    was = token.added_after or "none"
    raise bad_request(
        f"next continues a query with added_after={was} from a position after "
        f"added_after={added_after}: continuing would skip objects this added_after asks for; "
        "drop next to start the new query, or resend the original added_after"
    )


def parse_filters(
    params: Iterable[tuple[str, str]],
    allowed: tuple[str, ...],
    scope: str,
    default_limit: int,
    max_limit: int,
) -> Filters:
    """Parse ``match[...]``, ``added_after``, ``limit`` and ``next`` (TAXII 2.1 section 3.4).

    Each ``match[field]`` at most once; commas OR values; fields AND. Unknown
    ``match`` fields, repeated parameters and malformed values are 400. With
    ``next``, the query is the one it carries (module docstring).
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
        match[field] = _match_values(field, value, name)
    added_after = None
    if "added_after" in seen:
        added_after = _timestamp(seen["added_after"], "added_after")
    limit = default_limit
    if "limit" in seen:
        text = seen["limit"]
        if not text.isdigit() or int(text) < 1:
            raise bad_request("limit must be a positive integer")
        limit = min(int(text), max_limit)
    after: tuple[Any, ...] | None = None
    if "next" in seen:
        token = _decode(seen["next"], allowed)
        match, added_after = _continue(token, scope, match, added_after)
        after = token.cursor
    return Filters(match=match, added_after=added_after, limit=limit, after=after)
