"""The outbox: what a write must announce on the bus is noted before the write.

A stage writes documents, then publishes what changed. Were the bus to fail,
or the process to die, between the two, a retry would find the write already
done and announce nothing. So every such write first *notes* what it will
announce in ``threatbay-change-outbox`` (one small document per write), and
the note is removed once the announcement is on the bus. A sweep — run by the
stage that owns the kind of note, at start and then every
``outbox.sweep_interval_s`` — hands notes older than ``outbox.grace_s`` (a live
writer removes its own within a second) back to that kind's announcer, then
removes them. An announcement may thus happen twice, never not at all; every
consumer treats an identical repeat as a replay.

Three kinds today:
- ``record-changes`` (correlator, re-score): keys and kinds of changed
  records; the announcer re-reads the records as they are now and publishes
  on ``intel.records.changes`` (records/changes.py);
- ``alert-events`` (alert engine, escalation, the API's acknowledge / resolve /
  comment): the event documents themselves; the announcer writes and
  publishes them on ``intel.alerts`` (records/alerts.py);
- ``case-events`` (joint incident cases: the API, the proposer, the respond
  tick): the case event documents; the announcer writes and publishes them on
  ``intel.cases`` (records/cases.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from core import names
from core.clock import Clock, format_timestamp
from core.errors import StoreUnavailable
from core.ports import Filter, Missing, Put, Query, Range, Sort, Store, Term
from core.settings import OutboxSettings

log = logging.getLogger("threatbay.outbox")

RECORD_CHANGES = "record-changes"
ALERT_EVENTS = "alert-events"
CASE_EVENTS = "case-events"

#: Announces the entries of one note; returns how many it announced.
Announcer = Callable[[list[dict[str, Any]]], int]


class Outbox:
    """Notes in ``threatbay-change-outbox`` over the Store port (module docstring)."""

    def __init__(self, store: Store, clock: Clock, settings: OutboxSettings | None = None):
        self.store = store
        self.clock = clock
        self.settings = settings or OutboxSettings()

    def note(self, kind: str, entries: Sequence[Mapping[str, Any]]) -> str:
        """Note ``entries`` of ``kind`` before the write that makes them true; the note's key."""
        key = f"{kind}-{uuid.uuid4().hex}"
        doc = {
            "at": format_timestamp(self.clock.now()),
            "kind": kind,
            "changes": [dict(e) for e in entries],
        }
        [result] = self.store.put_many(names.INDEX_CHANGE_OUTBOX, [Put(key=key, doc=doc)])
        if not result.ok:
            raise StoreUnavailable(f"change outbox refused note {key}")
        return key

    def done(self, keys: Sequence[str]) -> None:
        """Remove the notes ``keys``: what they noted is on the bus."""
        for key in keys:
            self.store.delete(names.INDEX_CHANGE_OUTBOX, key)

    def sweep(self, kind: str, announce: Announcer, *, now: datetime | None = None) -> int:
        """Announce the notes of ``kind`` older than the grace period, then remove them.

        Returns the entries announced. Paged by cursor: a removed note may still
        show in search until a refresh.
        """
        now = now or self.clock.now()
        cutoff = format_timestamp(now - timedelta(seconds=self.settings.grace_s))
        kinds: list[Filter] = [Term("kind", (kind,))]
        if kind == RECORD_CHANGES:
            kinds.append(Missing("kind"))  # notes written before notes had a kind
        announced = 0
        for of_kind in kinds:
            after: tuple[Any, ...] | None = None
            while True:
                page = self.store.search(
                    names.INDEX_CHANGE_OUTBOX,
                    Query(
                        filters=(of_kind, Range("at", lt=cutoff)),
                        sort=(Sort("at"),),
                        limit=100,
                        after=after,
                    ),
                )
                for hit in page.hits:
                    announced += announce(list(hit.doc.get("changes") or []))
                    self.store.delete(names.INDEX_CHANGE_OUTBOX, hit.key)
                if not page.more or not page.hits:
                    break
                after = page.hits[-1].cursor
        if announced:
            log.warning("announced %d %s left unpublished by a failed write", announced, kind)
        return announced
