"""Joint incident cases and their events in the store, announced on ``intel.cases`` at least once.

DOMAIN.md "Joint incident cases". A case is one document in ``threatbay-cases``
(header, participants, items, clocks and its own timeline); every change of it
— an analyst through the API, a proposal from an alert, the respond tick —
goes through ``CaseBook.commit``, exactly as alerts go through ``AlertBook``:

1. read the case by key (real-time), apply a pure transition (respond/),
   stamp the new timeline entries with a stream sequence and an event id;
2. note the resulting event documents in the outbox (kind ``case-events``);
3. write the case with the version read (records/rmw.py);
4. write the event documents (``threatbay-case-events``: what the live stream
   reads) and publish them on ``intel.cases`` (what the case notifier reads);
   remove the note.

A note left behind by a failed step 4 is announced by the respond tick's
sweep, so a case event is announced at least once. Event ids are fixed when
stamped, so a repeat is recognised downstream (a delivery job is created once).
Who may see an event is never decided here: the event names its case and item,
and readers decide on the case as stored (respond/sharing.py).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

from core import names
from core.clock import Clock
from core.errors import BadCursor, BusUnavailable, StoreUnavailable
from core.ports import Bus, Filter, Outgoing, Put, Query, Range, Sort, Store, Stored, Term, Version
from core.settings import WritesSettings
from records.outbox import CASE_EVENTS, Outbox
from records.rmw import read_modify_write

log = logging.getLogger("threatbay.cases")

Case = dict[str, Any]
Entry = dict[str, Any]
#: What a transition gives ``commit``: the new case, its new timeline entries, the version read.
Staged = tuple[Case, list[Entry], Version | None]

_SEQ_DIGITS = 17


class CaseEvent(TypedDict):
    """One timeline entry as stored in ``threatbay-case-events`` and sent on ``intel.cases``."""

    id: str
    stream_seq: int
    case_id: str
    type: str
    at: str
    item_id: str | None
    notify: list[str]
    event: dict[str, Any]


class CaseSequencer:
    """Monotonic stream sequence (µs of the injected clock, strictly increasing per process)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now_us = int(self._clock.now().timestamp() * 1_000_000)
            self._last = max(now_us, self._last + 1)
            return self._last


def case_event_id(stream_seq: int) -> str:
    """SSE-usable id that sorts by stream sequence; the tail is random (no count leaks)."""
    return f"{stream_seq:0{_SEQ_DIGITS}d}.c{uuid.uuid4().hex[:12]}"


def case_stream_seq_of(event_id_text: str) -> int:
    """The stream sequence an event id starts with (``Last-Event-ID``); ``BadCursor`` if none."""
    head = event_id_text.strip().split(".", 1)[0]
    if not head.isascii() or not head.isdigit() or len(head) > _SEQ_DIGITS + 2:
        raise BadCursor(f"{event_id_text[:40]!r} is not an event id this server issued")
    return int(head)


def event_doc(case: Case, entry: Entry) -> CaseEvent:
    """The stored/published form of one case timeline entry."""
    return {
        "id": entry["id"],
        "stream_seq": entry["stream_seq"],
        "case_id": case["id"],
        "type": entry["type"],
        "at": entry["at"],
        "item_id": entry.get("item"),
        "notify": list(entry.get("notify") or []),
        "event": {k: v for k, v in entry.items() if k not in ("stream_seq", "notify")},
    }


@dataclass
class CaseBook:
    """Reads and writes cases and their events (the API, the proposer, the respond tick)."""

    store: Store
    bus: Bus
    clock: Clock
    writes: WritesSettings = field(default_factory=WritesSettings)
    outbox: Outbox | None = None
    sequencer: CaseSequencer = field(init=False)

    def __post_init__(self) -> None:
        self.sequencer = CaseSequencer(self.clock)
        if self.outbox is None:
            self.outbox = Outbox(self.store, self.clock)

    # -------------------------------------------------------------- reading

    def get(self, case_id: str) -> Stored | None:
        return self.store.get(names.INDEX_CASES, case_id)

    def get_many(self, case_ids: Sequence[str]) -> dict[str, Stored]:
        return self.store.get_many(names.INDEX_CASES, list(case_ids))

    def search(
        self, filters: Sequence[Filter], *, limit: int = 100, after: tuple[Any, ...] | None = None
    ) -> tuple[list[Case], tuple[Any, ...] | None, bool]:
        """Cases matching ``filters``, newest created first; (docs, cursor of the last, more)."""
        page = self.store.search(
            names.INDEX_CASES,
            Query(
                filters=tuple(filters), sort=(Sort("created", "desc"),), limit=limit, after=after
            ),
        )
        last = page.hits[-1].cursor if page.hits else None
        return [h.doc for h in page.hits], last, page.more

    def ids_linking(self, field_name: str, value: str, limit: int = 50) -> list[str]:
        """Ids of cases whose ``field_name`` (``alert_ids``, ``record_keys``) holds ``value``."""
        page = self.store.search(
            names.INDEX_CASES, Query(filters=(Term(field_name, (value,)),), limit=limit)
        )
        return [h.key for h in page.hits]

    def due(self, stamp: str, limit: int = 500) -> list[str]:
        """Ids of open cases whose next deadline is at or before ``stamp`` (the respond tick)."""
        page = self.store.search(
            names.INDEX_CASES,
            Query(
                filters=(Term("status", ("open",)), Range("next_deadline", lte=stamp)),
                sort=(Sort("next_deadline"),),
                limit=limit,
            ),
        )
        return [h.key for h in page.hits]

    def events_after(
        self, after_seq: int, case_ids: Sequence[str] | None = None, *, page_size: int = 500
    ) -> list[tuple[CaseEvent, tuple[Any, ...]]]:
        """One page of case events above ``after_seq`` in stream order (the live stream)."""
        filters: list[Filter] = [Range("stream_seq", gt=after_seq)]
        if case_ids is not None:
            filters.append(Term("case_id", tuple(case_ids)))
        page = self.store.search(
            names.INDEX_CASE_EVENTS,
            Query(filters=tuple(filters), sort=(Sort("stream_seq"), Sort("id")), limit=page_size),
        )
        return [(h.doc, h.cursor) for h in page.hits]  # type: ignore[misc]

    def latest_seq(self) -> int:
        page = self.store.search(
            names.INDEX_CASE_EVENTS, Query(sort=(Sort("stream_seq", "desc"),), limit=1)
        )
        return int(page.hits[0].doc["stream_seq"]) if page.hits else 0

    # -------------------------------------------------------------- writing

    def stamp(self, entries: Sequence[Entry]) -> None:
        """Give new timeline entries their stream sequence and event id (in place)."""
        for entry in entries:
            if "stream_seq" not in entry:
                entry["stream_seq"] = self.sequencer.next()
                entry["id"] = case_event_id(entry["stream_seq"])

    def commit(
        self, case_ids: Sequence[str], change: Callable[[str, Stored | None], Staged | None]
    ) -> list[tuple[Case, list[Entry]]]:
        """Write each changed case and announce its new events (module docstring).

        ``change(case_id, stored)`` gives the new case, its new entries and the
        version expected (None: create), or None for no change; it is called
        again for a case whose write conflicted. Raises ``BusUnavailable`` when
        the announcement failed (the outbox keeps it for the sweep).
        """
        staged: dict[str, tuple[Case, list[Entry]]] = {}
        notes: list[str] = []

        def put_of(key: str, stored: Stored | None) -> Put | None:
            outcome = change(key, stored)
            if outcome is None:
                return None
            case, entries, expected = outcome
            self.stamp(entries)
            staged[case["id"]] = (case, entries)
            return Put(key=case["id"], doc=case, expected=expected)

        def note(puts: list[Put]) -> None:
            docs = [event_doc(staged[p.key][0], e) for p in puts for e in staged[p.key][1]]
            if docs and self.outbox is not None:
                notes.append(self.outbox.note(CASE_EVENTS, docs))

        done = read_modify_write(
            self.store, names.INDEX_CASES, case_ids, put_of, before_write=note, writes=self.writes
        )
        pairs = [staged[r.key] for r in done.values()]
        self._announce([event_doc(case, e) for case, entries in pairs for e in entries])
        if self.outbox is not None:
            self.outbox.done(notes)
        return pairs

    def transact(self, case_id: str, change: Callable[[Case | None], Any]) -> Any:
        """One case: get -> pure transition -> put with the version read (retried on conflict).

        ``change`` gets the stored case (None when there is none) and returns
        ``(case, entries)``, or anything else (an error value, None) to write
        nothing; that value is returned. The write is durable when this
        returns; if its announcement failed, the outbox sweep announces it.
        """
        outcome: list[Any] = [None]

        def staged(_: str, stored: Stored | None) -> Staged | None:
            result = outcome[0] = change(stored.doc if stored else None)
            if not isinstance(result, tuple):
                return None
            case, entries = result
            if not entries and stored is not None and case is stored.doc:
                return None
            return case, entries, stored.version if stored else None

        try:
            self.commit([case_id], staged)
        except BusUnavailable as exc:
            log.warning("case %s written; its events wait in the outbox: %s", case_id, exc)
        return outcome[0]

    def _announce(self, docs: Sequence[CaseEvent]) -> None:
        if not docs:
            return
        results = self.store.put_many(
            names.INDEX_CASE_EVENTS, [Put(key=d["id"], doc=dict(d), blind=True) for d in docs]
        )
        if not all(r.ok for r in results):
            raise StoreUnavailable("store refused case event writes")
        self.bus.publish(
            names.TOPIC_CASES,
            [Outgoing(key=d["case_id"], value=orjson.dumps(d)) for d in docs],
        )

    def announce_pending(self) -> int:
        """Announce case events a failed write or publish left in the outbox (the sweep)."""
        if self.outbox is None:
            return 0
        return self.outbox.sweep(CASE_EVENTS, self._announce_noted)

    def _announce_noted(self, entries: list[dict[str, Any]]) -> int:
        docs: list[CaseEvent] = entries  # type: ignore[assignment]
        self._announce(docs)
        return len(docs)
