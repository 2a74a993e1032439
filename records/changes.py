"""Record changes for the alert engine, announced at least once (records/outbox.py).

The correlator and the re-score note the changes of every records write
(keys, kinds, when, why — not the records) before the write, publish them on
``intel.records.changes`` after it, and remove the note. A note left behind is
announced by the sweep with the records as they are then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from core import envelope, names
from core.indicators import RecordChange
from core.ports import Bus, Outgoing, Store
from core.views import content_of
from records.outbox import RECORD_CHANGES, Outbox

#: What a note keeps of each change (the record itself is re-read when announcing); a
#: change of one view (core/views.py) also keeps whose view it is and which document.
_NOTED = ("key", "kinds", "at", "cause", "readers", "view")


def change_messages(changes: Sequence[RecordChange], per_message: int = 200) -> list[Outgoing]:
    """Record changes for the alert engine, several per message, per-record order kept.

    Grouped by the bucket of the record key (as ``core.envelope`` does for
    objects), so every change of one record lands in the same partition.
    """
    groups: dict[str, list[RecordChange]] = {}
    for change in changes:
        groups.setdefault(envelope.bucket_of(change["key"]), []).append(change)
    return [
        Outgoing(key=bucket, value=orjson.dumps({"changes": items[i : i + per_message]}))
        for bucket, items in groups.items()
        for i in range(0, len(items), per_message)
    ]


def view_content(doc: dict[str, Any], view: str | None) -> dict[str, Any] | None:
    """The content of view ``view`` of a stored record (the record itself when None)."""
    if view is None:
        return doc
    if view == doc.get("key"):
        return content_of(doc)
    for entry in doc.get("views") or []:
        if entry.get("key") == view:
            found: dict[str, Any] = entry["view"]
            return found
    return None  # the view is gone since: a later change announced its readers' new view


class ChangeAnnouncer:
    """Notes, publishes and re-announces record changes (module docstring)."""

    def __init__(self, store: Store, bus: Bus, outbox: Outbox) -> None:
        self.store = store
        self.bus = bus
        self.outbox = outbox

    def note(self, changes: Sequence[RecordChange]) -> str:
        """Note ``changes`` before their records are written; returns the note's key."""
        return self.outbox.note(
            RECORD_CHANGES,
            [{f: c[f] for f in _NOTED if f in c} for c in changes],  # type: ignore[literal-required]
        )

    def publish(self, changes: Sequence[RecordChange], notes: Sequence[str]) -> None:
        """Publish ``changes`` (records as written), then remove their ``notes``."""
        if changes:
            self.bus.publish(names.TOPIC_CHANGES, change_messages(changes))
        self.outbox.done(notes)

    def announce_pending(self) -> int:
        """Publish the changes of notes left behind by a failed write (with records as now)."""
        return self.outbox.sweep(RECORD_CHANGES, self._announce)

    def _announce(self, entries: list[dict[str, Any]]) -> int:
        # A noted record that is not in the store (the process died before writing it)
        # is skipped: its batch was not committed and will be processed again.
        records = self.store.get_many(names.INDEX_INDICATORS, [e["key"] for e in entries])
        changes: list[RecordChange] = []
        for e in entries:
            stored = records.get(e["key"])
            if stored is None:
                continue
            record = view_content(stored.doc, e.get("view"))
            if record is not None:
                changes.append({**e, "record": record})  # type: ignore[typeddict-item]
        if changes:
            self.bus.publish(names.TOPIC_CHANGES, change_messages(changes))
        return len(changes)
