"""The wire form of accepted objects on ``intel.stix.raw``.

PERFORMANCE.md: kafka-python sends ~5k messages/s per process, so one message
carries several objects. Per-id order is kept by grouping objects into a
fixed number of buckets by a stable hash of their STIX id and using the
bucket as the message key: every version of one id lands in the same
partition, in publish order.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from core.ports import Outgoing
from core.provenance import Provenance

BUCKETS = 64
WIRE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Accepted:
    """One STIX object accepted at ingest, with its provenance."""

    obj: dict[str, Any]
    provenance: Provenance
    #: the object's JSON text exactly as received, when it arrived signed (served unchanged)
    signed: str | None = None
    #: the verdict on its signatures at receipt (ingest/signed.py ``summary``)
    signature: dict[str, Any] | None = None


def bucket_of(stix_id: str) -> str:
    """Message key for ``stix_id``: stable across processes and restarts."""
    return f"b{zlib.crc32(stix_id.encode()) % BUCKETS:02d}"


def encode(accepted: Sequence[Accepted], max_objects: int = 500) -> list[Outgoing]:
    """Group accepted objects into bus messages keyed by id bucket, keeping order."""
    groups: dict[str, list[Accepted]] = {}
    for item in accepted:
        groups.setdefault(bucket_of(item.obj["id"]), []).append(item)
    messages: list[Outgoing] = []
    for key, items in groups.items():
        for start in range(0, len(items), max_objects):
            chunk = items[start : start + max_objects]
            value = orjson.dumps(
                {
                    "v": WIRE_VERSION,
                    "items": [_item(it) for it in chunk],
                }
            )
            first = chunk[0].provenance
            messages.append(
                Outgoing(
                    key=key,
                    value=value,
                    headers={"agency": first.agency, "request-id": first.request_id},
                )
            )
    return messages


def _item(it: Accepted) -> dict[str, Any]:
    item: dict[str, Any] = {"object": it.obj, "provenance": it.provenance.to_dict()}
    if it.signed is not None:
        item["signed"] = it.signed
        item["signature"] = it.signature
    return item


def decode(value: bytes) -> list[Accepted]:
    """Inverse of ``encode`` for one message value; raises ValueError on poison."""
    try:
        data = orjson.loads(value)
        items: Iterable[dict[str, Any]] = data["items"]
        return [
            Accepted(
                obj=item["object"],
                provenance=Provenance.from_dict(item["provenance"]),
                signed=item.get("signed"),
                signature=item.get("signature"),
            )
            for item in items
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"undecodable intel.stix.raw message: {exc}") from exc
