"""CSV and plain-text IOC lists: one STIX indicator per value, with a generated pattern.

Values are refanged (DOMAIN.md "Sameness": ``hxxp``, ``[.]``, ``(.)``,
``[dot]``, ``[@]``, ``[:]``) and typed by the registry's column mapping (or
recognised by shape when the type is ``auto``). The indicator id is
``uuid5(feed | type | value)``, so pulling the same list again names the same
indicators: a re-listed value is a new version of the feed's own report
(it re-asserts the value now), never a new source.

Cursor ``<sha256 of the list>:<values done>`` or ``<sha256>:done``: an
unchanged list is not ingested again, and a pull stopped part-way through a
list resumes after the last accepted batch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core.canonical import refang
from core.clock import Clock, format_timestamp
from feeds.base import Batch
from feeds.config import FEED_NAMESPACE, FeedConfig
from feeds.http import MalformedFeed, get_bytes, session_for

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+"
    r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}

# STIX 2.1 patterning (section 9) object path per IOC type.
_PATHS = {
    "ipv4": "ipv4-addr:value",
    "ipv6": "ipv6-addr:value",
    "domain": "domain-name:value",
    "url": "url:value",
    "email": "email-addr:value",
    "md5": "file:hashes.MD5",
    "sha1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
}


@dataclass(frozen=True, slots=True)
class Ioc:
    """One typed, refanged value from a list, with where it came from."""

    ioc_type: str
    value: str
    where: str
    description: str | None = None


def _ip_type(value: str) -> str | None:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    return "ipv4" if net.version == 4 else "ipv6"


def classify(ioc_type: str, raw: str) -> tuple[str, str] | str:
    """(type, value) for a raw list value, or the reason it is not a valid ``ioc_type``."""
    value = refang(raw.strip()).strip()
    if not value:
        return "empty value"
    if ioc_type == "auto":
        ip = _ip_type(value)
        if ip:
            return ip, value
        if _URL.match(value):
            return "url", value
        if _EMAIL.match(value):
            return "email", value.lower()
        if _HEX.match(value) and len(value) in _HASH_LENGTHS:
            return _HASH_LENGTHS[len(value)], value.lower()
        if _DOMAIN.match(value.lower().rstrip(".")):
            return "domain", value.lower().rstrip(".")
        return f"not a recognisable IOC: {raw.strip()!r}"
    if ioc_type in ("ip", "ipv4", "ipv6"):
        ip = _ip_type(value)
        if ip is None or (ioc_type != "ip" and ip != ioc_type):
            return f"not a valid {ioc_type}: {raw.strip()!r}"
        return ip, value
    if ioc_type == "domain":
        domain = value.lower().rstrip(".")
        return ("domain", domain) if _DOMAIN.match(domain) else f"not a valid domain: {raw!r}"
    if ioc_type == "url":
        return ("url", value) if _URL.match(value) else f"not a valid url: {raw.strip()!r}"
    if ioc_type == "email":
        return ("email", value.lower()) if _EMAIL.match(value) else f"not a valid email: {raw!r}"
    expected = {"md5": 32, "sha1": 40, "sha256": 64}[ioc_type]
    if _HEX.match(value) and len(value) == expected:
        return ioc_type, value.lower()
    return f"not a valid {ioc_type}: {raw.strip()!r}"


def stix_pattern(ioc_type: str, value: str) -> str:
    """``[<path> = '<value>']`` with the literal escaped (STIX 2.1 section 9.2)."""
    literal = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[{_PATHS[ioc_type]} = '{literal}']"


def indicator_id(feed_name: str, ioc_type: str, value: str) -> str:
    """Deterministic id: the same feed, type and value always give the same indicator."""
    return f"indicator--{uuid.uuid5(FEED_NAMESPACE, f'{feed_name}|{ioc_type}|{value}')}"


def indicator_for(feed: FeedConfig, ioc: Ioc, now: str) -> dict[str, Any]:
    """A STIX 2.1 indicator for one list value (pattern generated from its type)."""
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": indicator_id(feed.name, ioc.ioc_type, ioc.value),
        "created": now,
        "modified": now,
        "name": f"{ioc.ioc_type} {ioc.value} (feed {feed.name})",
        "indicator_types": ["malicious-activity"],
        "pattern": stix_pattern(ioc.ioc_type, ioc.value),
        "pattern_type": "stix",
        "valid_from": now,
        "confidence": feed.confidence,
    }
    if ioc.description:
        obj["description"] = ioc.description
    if feed.labels:
        obj["labels"] = list(feed.labels)
    return obj


def _column_index(header: list[str] | None, column: str) -> int:
    if header is not None and column in header:
        return header.index(column)
    if column.isdigit():
        return int(column)
    raise MalformedFeed(f"column {column!r} is not in the header {header}")


def parse_list(feed: FeedConfig, text: str) -> tuple[list[Ioc], list[str]]:
    """Typed values of a CSV or text list, and one message per value that is not valid."""
    iocs: list[Ioc] = []
    invalid: list[str] = []

    def add(ioc_type: str, raw: str, where: str, description: str | None = None) -> None:
        result = classify(ioc_type, raw)
        if isinstance(result, str):
            invalid.append(f"{where}: {result}")
        else:
            iocs.append(Ioc(result[0], result[1], where, description))

    if feed.kind == "text":
        for number, line in enumerate(text.splitlines(), 1):
            body = line.split("#", 1)[0].strip()
            if body:
                add(feed.ioc_type, body.split()[0], f"line {number}")
        return iocs, invalid

    mapping = feed.csv
    assert mapping is not None  # FeedConfig guarantees it for csv feeds
    rows = [
        (n, row)
        for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=mapping.delimiter), 1)
        if row and not row[0].lstrip().startswith(mapping.comment)
    ]
    header = [c.strip() for c in rows.pop(0)[1]] if mapping.has_header and rows else None
    columns = {_column_index(header, col): kind for col, kind in mapping.columns.items()}
    desc_index = (
        _column_index(header, mapping.description_column) if mapping.description_column else None
    )
    for number, row in rows:
        description = None
        if desc_index is not None and desc_index < len(row):
            description = row[desc_index].strip() or None
        for index, ioc_type in columns.items():
            if index < len(row) and row[index].strip():
                add(ioc_type, row[index], f"line {number} column {index}", description)
    return iocs, invalid


def _dedupe(iocs: list[Ioc]) -> list[Ioc]:
    seen: set[tuple[str, str]] = set()
    unique: list[Ioc] = []
    for ioc in iocs:
        if (ioc.ioc_type, ioc.value) not in seen:
            seen.add((ioc.ioc_type, ioc.value))
            unique.append(ioc)
    return unique


class ListPuller:
    """A CSV or plain-text IOC list at one URL."""

    def __init__(self, feed: FeedConfig, clock: Clock) -> None:
        self.feed = feed
        self.clock = clock
        self.session = session_for(feed)

    def batches(self, cursor: str | None) -> Iterator[Batch]:
        """Indicators for the list's values, ``page_size`` per batch, resuming after ``cursor``."""
        body, _ = get_bytes(self.session, self.feed.url)
        digest = hashlib.sha256(body).hexdigest()
        done_hash, _, done = (cursor or "").partition(":")
        if done_hash == digest and done == "done":
            return
        start = int(done) if done_hash == digest and done.isdigit() else 0
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MalformedFeed(f"the list is not UTF-8 text: {exc}") from None
        iocs, invalid = parse_list(self.feed, text)
        iocs = _dedupe(iocs)
        now = format_timestamp(self.clock.now())
        size = self.feed.page_size
        if start >= len(iocs):
            yield Batch([], f"{digest}:done", "list", tuple(invalid))
            return
        for offset in range(start, len(iocs), size):
            chunk = iocs[offset : offset + size]
            end = offset + len(chunk)
            yield Batch(
                objects=[indicator_for(self.feed, ioc, now) for ioc in chunk],
                cursor=f"{digest}:done" if end >= len(iocs) else f"{digest}:{end}",
                label=f"values {offset + 1}-{end}",
                invalid=tuple(invalid) if offset == start else (),
            )

    def close(self) -> None:
        self.session.close()
