"""Record changes for the alert engine, announced at least once.

A correlator (or the re-score) writes records, then publishes what changed on
``intel.records.changes``. Were the bus to fail, or the process to die, between
the two, the retried batch would find its reports already merged and announce
nothing: the alert engine would never hear of those records. So the changes of
every records write are first *noted* in ``threatbay-change-outbox`` (one small
document per write: keys and kinds, not the records), and the note is removed
once they are published. ``announce_pending`` — run by every correlator at
start and then every ``SWEEP_INTERVAL_S`` — publishes the notes older than a
grace period (a live worker publishes its own within a second) with the records
as they are now, then removes them. A change may thus be announced twice, never
not at all; the alert engine recognises an identical repeat as a replay, and
one with a newer record updates the open alert of its dedup key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from core import envelope, names
from core.clock import format_timestamp
from core.errors import StoreUnavailable
from core.ports import Bus, Outgoing, Put, Query, Range, Sort, Store

log = logging.getLogger("threatbay.correlate")

#: Seconds between sweeps of a correlator for notes left by a failed write/publish.
SWEEP_INTERVAL_S = 30.0
#: A note younger than this belongs to a write whose publish may still be under way.
GRACE_S = 60.0
#: What a note keeps of each change (the record itself is re-read when announcing).
_NOTED = ("key", "kinds", "at", "cause")


def change_messages(changes: list[dict[str, Any]], per_message: int = 200) -> list[Outgoing]:
    """Record changes for the alert engine, several per message, per-record order kept.

    Grouped by the bucket of the record key (as ``core.envelope`` does for
    objects), so every change of one record lands in the same partition.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        groups.setdefault(envelope.bucket_of(change["key"]), []).append(change)
    return [
        Outgoing(key=bucket, value=orjson.dumps({"changes": items[i : i + per_message]}))
        for bucket, items in groups.items()
        for i in range(0, len(items), per_message)
    ]


def note(store: Store, changes: Sequence[dict[str, Any]], now: datetime) -> str:
    """Note ``changes`` before their records are written; returns the note's key."""
    key = f"changes-{uuid.uuid4().hex}"
    doc = {
        "at": format_timestamp(now),
        "changes": [{f: c[f] for f in _NOTED if f in c} for c in changes],
    }
    [result] = store.put_many(names.INDEX_CHANGE_OUTBOX, [Put(key=key, doc=doc)])
    if not result.ok:
        raise StoreUnavailable(f"change outbox refused note {key}")
    return key


def published(store: Store, keys: Sequence[str]) -> None:
    """Remove the notes ``keys``: their changes are on the bus."""
    for key in keys:
        store.delete(names.INDEX_CHANGE_OUTBOX, key)


def announce_pending(
    store: Store, bus: Bus, now: datetime, grace_s: float = GRACE_S, limit: int = 100
) -> int:
    """Publish the changes of notes older than ``grace_s``, then remove them; returns changes.

    A noted record that is not in the store (the process died before writing it)
    is skipped: its batch was not committed and will be processed again.
    """
    cutoff = format_timestamp(now - timedelta(seconds=grace_s))
    announced = 0
    after: tuple[Any, ...] | None = None
    while True:
        # Paged by cursor: a removed note may still show in search until a refresh.
        page = store.search(
            names.INDEX_CHANGE_OUTBOX,
            Query(filters=(Range("at", lt=cutoff),), sort=(Sort("at"),), limit=limit, after=after),
        )
        for hit in page.hits:
            entries: list[dict[str, Any]] = hit.doc.get("changes") or []
            records = store.get_many(names.INDEX_INDICATORS, [e["key"] for e in entries])
            changes = [
                e | {"record": records[e["key"]].doc} for e in entries if e["key"] in records
            ]
            if changes:
                bus.publish(names.TOPIC_CHANGES, change_messages(changes))
                announced += len(changes)
            store.delete(names.INDEX_CHANGE_OUTBOX, hit.key)
        if not page.more or not page.hits:
            break
        after = page.hits[-1].cursor
    if announced:
        log.warning("announced %d record change(s) left unpublished by a failed write", announced)
    return announced
