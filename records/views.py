"""Per-audience view documents of records in the indicators index (core/views.py).

The record document (key = canonical key) is the source of truth: its own
view's content, ``readers``, and ``views``, the content and readers of every
other view. Those other views are also *materialised* as their own documents
(``<key>#<hash>``, with ``view_of``) so that a reader's search, sort, filter
and count run on exactly one document per record. Materialising happens after
the record write, guarded by the record's revision ``rev``:

- a view document is written only over an older revision (or none), so a
  slower writer of an older revision never overwrites a newer one;
- a view that no longer exists becomes a *tombstone* (no readers, the
  revision kept) rather than being deleted, so a late writer of an older
  revision cannot bring it back.

A process that dies between the record write and materialising leaves a note
in the change outbox (kind ``record-views``, written before the record) that
the correlator's sweep materialises from the record as stored. Until then a
reader may see the record's previous partial view too (never a view it may
not see: every view lists only its own readers).

``AudienceSource`` gives the current ``AudienceSet`` (the registered agencies
as readers under the sharing policy), re-read every ``ttl_s``; ``review``
re-plans every record's views when that set changed (an agency added, its
jurisdiction or consent changed), without re-scoring any view whose parts are
unchanged for its readers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core import names
from core.clock import Clock
from core.policy import SharingPolicy, reader_for
from core.ports import Missing, Put, Query, Store, Stored
from core.settings import WritesSettings
from core.views import AudienceSet, audiences_of
from records.agencies import AgencyRegistry, generation
from records.outbox import Outbox
from records.rmw import read_modify_write

log = logging.getLogger("threatbay.views")

RECORD_VIEWS = "record-views"
VIEW_STATE_KEY = "view-state"


@dataclass(frozen=True, slots=True)
class Materialise:
    """The partial views of one record revision to write, and the ones to retire."""

    record_key: str
    rev: int
    views: tuple[Mapping[str, Any], ...]
    removed: tuple[str, ...] = ()

    def needed(self) -> bool:
        return bool(self.views or self.removed)

    def to_note(self) -> dict[str, Any]:
        return {"key": self.record_key, "rev": self.rev, "removed": list(self.removed)}


def view_document(record_key: str, rev: int, view: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of one partial view: its content, readers and bookkeeping."""
    doc = dict(view["view"])
    doc["readers"] = list(view["readers"])
    doc["view_of"] = record_key
    doc["rev"] = rev
    return doc


def tombstone(record_key: str, rev: int) -> dict[str, Any]:
    return {"view_of": record_key, "rev": rev, "readers": []}


def materialise(
    store: Store, items: Sequence[Materialise], writes: WritesSettings | None = None
) -> int:
    """Write the partial views of ``items`` under the revision guard (module docstring)."""
    wanted: dict[str, dict[str, Any]] = {}
    for item in items:
        for view in item.views:
            wanted[view["key"]] = view_document(item.record_key, item.rev, view)
        for key in item.removed:
            wanted.setdefault(key, tombstone(item.record_key, item.rev))
    if not wanted:
        return 0

    def change(key: str, stored: Stored | None) -> Put | None:
        doc = wanted[key]
        if stored is None:
            return Put(key, doc)
        if int(stored.doc.get("rev", -1)) >= doc["rev"]:
            return None  # a newer (or the same) revision is there already
        return Put(key, doc, expected=stored.version)

    return len(read_modify_write(store, names.INDEX_INDICATORS, list(wanted), change,
                                 writes=writes))  # fmt: skip


class ViewWriter:
    """Notes, materialises and (in the sweep) re-materialises partial views."""

    def __init__(self, store: Store, outbox: Outbox, writes: WritesSettings | None = None):
        self.store = store
        self.outbox = outbox
        self.writes = writes

    def note(self, items: Sequence[Materialise]) -> str | None:
        """Note ``items`` before their records are written (None when there is nothing to do)."""
        wanted = [i.to_note() for i in items if i.needed()]
        return self.outbox.note(RECORD_VIEWS, wanted) if wanted else None

    def write(self, items: Sequence[Materialise], notes: Sequence[str]) -> int:
        n = materialise(self.store, [i for i in items if i.needed()], self.writes)
        self.outbox.done(list(notes))
        return n

    def sweep(self) -> int:
        """Materialise what a failed write left noted, from the records as stored now."""
        return self.outbox.sweep(RECORD_VIEWS, self._again)

    def _again(self, entries: list[dict[str, Any]]) -> int:
        found = self.store.get_many(names.INDEX_INDICATORS, [e["key"] for e in entries])
        items = []
        for entry in entries:
            stored = found.get(entry["key"])
            if stored is None:
                continue  # never written: its batch is retried and notes again
            doc = stored.doc
            items.append(
                Materialise(
                    entry["key"],
                    int(doc.get("rev", 0)),
                    tuple(doc.get("views") or ()),
                    tuple(
                        k
                        for k in entry.get("removed") or ()
                        if k not in {v["key"] for v in doc.get("views") or ()}
                    ),
                )  # fmt: skip
            )
        materialise(self.store, items, self.writes)
        return len(items)


def policy_digest(policy: SharingPolicy) -> str:
    """Names the sharing policy's configuration (a changed whitelist needs a re-view)."""
    raw = repr((policy.whitelist, sorted(policy.participating_agencies or ())))
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


class AudienceSource:
    """The current ``AudienceSet`` of the agency registry (re-read at most every ``ttl_s``)."""

    def __init__(
        self, store: Store, clock: Clock, policy: SharingPolicy, ttl_s: float = 30.0
    ) -> None:
        self.registry = AgencyRegistry(store, clock)
        self.policy = policy
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, int, AudienceSet] | None = None

    def current(self) -> AudienceSet:
        now = time.monotonic()
        with self._lock:
            hit = self._cached
        if hit is not None and now - hit[0] < self.ttl_s and hit[1] == generation():
            return hit[2]
        readers = [reader_for(a) for a in self.registry.list()]
        fresh = audiences_of(self.policy, readers)
        fresh.fingerprint = f"{fresh.fingerprint}-{policy_digest(self.policy)}"
        with self._lock:
            if self._cached is not None and self._cached[2].fingerprint == fresh.fingerprint:
                fresh = self._cached[2]  # keep the memo of the set already in use
            self._cached = (now, generation(), fresh)
        return fresh


def reviewed_fingerprint(store: Store) -> str | None:
    """The audience set the last complete re-view planned for (None: never)."""
    stored = store.get(names.INDEX_AGENCIES, VIEW_STATE_KEY)
    return str(stored.doc.get("fingerprint")) if stored else None


def mark_reviewed(store: Store, fingerprint: str) -> None:
    store.put_many(
        names.INDEX_AGENCIES,
        [Put(VIEW_STATE_KEY, {"kind": "view-state", "fingerprint": fingerprint}, blind=True)],
    )


def record_pages(store: Store, page_size: int = 500) -> Iterable[list[Stored]]:
    """Every record document (not its partial views), page by page, with versions."""
    after: tuple[Any, ...] | None = None
    while True:
        page = store.search(
            names.INDEX_INDICATORS,
            Query(filters=(Missing("view_of"),), limit=page_size, after=after, versions=True),
        )
        hits = [Stored(h.key, h.doc, h.version) for h in page.hits if h.version is not None]
        if hits:
            yield hits
        if not page.more or not page.hits:
            return
        after = page.hits[-1].cursor


__all__ = [
    "AudienceSet",
    "AudienceSource",
    "Materialise",
    "RECORD_VIEWS",
    "ViewWriter",
    "materialise",
    "mark_reviewed",
    "record_pages",
    "reviewed_fingerprint",
]
