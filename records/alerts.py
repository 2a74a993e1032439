"""Alerts and their events in the store, announced on ``intel.alerts`` at least once.

DOMAIN.md "Early-warning levels"; ARCHITECTURE.md "Guarantees". Every change
of an alert — by the alert engine, the escalation tick or an analyst through
the API — goes through ``AlertBook.commit``:

1. read the alert (by key, real-time), apply a pure transition
   (core/alerts.py), stamp the new timeline entries with a stream sequence
   and event id;
2. note the resulting event documents in the outbox (records/outbox.py);
3. write the alert with the version read (records/rmw.py: conflicts re-read
   and re-apply);
4. write the event documents (``threatbay-alert-events``, ids that sort by
   stream sequence, usable as SSE ids) and publish them on ``intel.alerts``;
   re-publish the alert as STIX reports for TAXII; remove the note.

If step 4 fails (bus down, process killed) the note survives, and the alerts
stage's sweep announces it: a notification is never lost after its alert is
written. Event ids are deterministic per timeline entry, so a repeat is
recognised downstream (the notifier creates each delivery once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from core import names, policy
from core.alerts import (
    Alert,
    AlertError,
    AlertEvent,
    Event,
    Transition,
    alert_id_for,
    jurisdiction_reports,
    most_restrictive_tlp,
)
from core.clock import Clock, format_timestamp
from core.envelope import Accepted
from core.errors import BadCursor, BusUnavailable, StoreUnavailable
from core.markings import normalise_tlp
from core.ports import Bus, Outgoing, Put, Store, Stored, Version
from core.provenance import Provenance
from core.settings import WritesSettings
from records.objects import store_objects
from records.outbox import ALERT_EVENTS, Outbox
from records.rmw import read_modify_write

log = logging.getLogger("threatbay.alerts")

K = TypeVar("K", bound=Hashable)

PLATFORM_AGENCY = "threatbay-platform"
_ADDRESSED = frozenset({"notified", "renotified", "overdue"})
# Events that change what the alert's STIX report says (acks and comments do not).
_REPORTED = frozenset({"opened", "level_raised", "updated", "notified", "resolved", "expired"})
_GENERATION_PROBE = 8
#: Digits of a stream sequence (µs since 1970, zero-padded): longer is not an id we issued.
_SEQ_DIGITS = 17


class EventSequencer:
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


def event_id(stream_seq: int, alert_id: str, seq: int) -> str:
    """SSE-usable id: sorts by stream sequence; unique by alert and timeline position."""
    return f"{stream_seq:0{_SEQ_DIGITS}d}.{alert_id.removeprefix('alert--')[:8]}.{seq}"


def stream_seq_of(event_id_text: str) -> int:
    """The stream sequence an event id starts with (``Last-Event-ID``); ``BadCursor`` if none."""
    head = event_id_text.strip().split(".", 1)[0]
    if not head.isascii() or not head.isdigit() or len(head) > _SEQ_DIGITS + 2:
        raise BadCursor(f"{event_id_text[:40]!r} is not an event id this server issued")
    return int(head)


def event_doc(alert: Alert, entry: Event) -> AlertEvent:
    """The stored/published form of one timeline entry (derived from the alert alone)."""
    jurisdiction = entry.get("jurisdiction")
    return {
        "id": entry["event_id"],
        "stream_seq": entry["stream_seq"],
        "alert_id": alert["id"],
        "type": entry["type"],
        "at": entry["at"],
        "level": alert["level"],
        "status": alert["status"],
        "title": alert["title"],
        # Who the event is addressed to: one jurisdiction for its own notifications,
        # every concerned one for everything else (a resolution concerns all).
        "jurisdictions": [jurisdiction]
        if jurisdiction and entry["type"] in _ADDRESSED
        else list(alert["jurisdictions"]),
        "event": {k: v for k, v in entry.items() if k not in ("stream_seq", "event_id")},
    }


#: What a transition gives ``commit``: the new alert, its new events, the version it was read at.
Staged = tuple[Alert, list[Event], Version | None]


@dataclass
class AlertBook:
    """Reads and writes alerts and their events (the engine, the escalation tick and the API)."""

    store: Store
    bus: Bus
    clock: Clock
    sharing: policy.SharingPolicy | None = None
    writes: WritesSettings = field(default_factory=WritesSettings)
    outbox: Outbox | None = None
    sequencer: EventSequencer = field(init=False)

    def __post_init__(self) -> None:
        self.sequencer = EventSequencer(self.clock)
        if self.outbox is None:
            self.outbox = Outbox(self.store, self.clock)

    def get(self, alert_id: str) -> Stored | None:
        return self.store.get(names.INDEX_ALERTS, alert_id)

    def current(self, dedup_keys: Iterable[str]) -> dict[str, Stored | None]:
        """Latest generation of the alert for each dedup key (None when never opened).

        Generations are probed in windows of ``_GENERATION_PROBE`` ids, all keys
        in one ``get_many`` per window (almost always a single round trip).
        """
        out: dict[str, Stored | None] = {}
        todo = dict.fromkeys(dedup_keys, 0)
        while todo:
            ids = {
                d: [alert_id_for(d, g) for g in range(start, start + _GENERATION_PROBE)]
                for d, start in todo.items()
            }
            found = self.store.get_many(names.INDEX_ALERTS, [i for v in ids.values() for i in v])
            nxt: dict[str, int] = {}
            for dedup, window in ids.items():
                for alert_id in window:
                    if alert_id not in found:
                        break
                    out[dedup] = found[alert_id]
                else:
                    nxt[dedup] = todo[dedup] + _GENERATION_PROBE
                    continue
                out.setdefault(dedup, None)
            todo = nxt
        return out

    def stamp(self, alert: Alert, events: Sequence[Event]) -> None:
        """Give new timeline entries their stream sequence and event id (in place)."""
        for entry in events:
            if "stream_seq" not in entry:
                entry["stream_seq"] = self.sequencer.next()
                entry["event_id"] = event_id(entry["stream_seq"], alert["id"], entry["seq"])

    # ------------------------------------------------------------- writing

    def commit(
        self,
        keys: Iterable[K],
        change: Callable[[K, Stored | None], Staged | None],
        *,
        read: Callable[[list[K]], Mapping[K, Stored | None]] | None = None,
    ) -> list[tuple[Alert, list[Event]]]:
        """Write each changed alert and announce its new events (module docstring).

        ``change(key, stored)`` gives the new alert, its new events and the
        version it expects (None: create), or None for no change; it is called
        again for a key whose write conflicted. Returns the (alert, events)
        pairs written. Raises ``BusUnavailable`` when the
        announcement failed (the outbox keeps it for the sweep).
        """
        staged: dict[str, tuple[Alert, list[Event]]] = {}
        notes: list[str] = []

        def put_of(key: K, stored: Stored | None) -> Put | None:
            outcome = change(key, stored)
            if outcome is None:
                return None
            alert, events, expected = outcome
            self.stamp(alert, events)
            staged[alert["id"]] = (alert, events)
            return Put(key=alert["id"], doc=dict(alert), expected=expected)

        def note(puts: list[Put]) -> None:
            docs = [event_doc(staged[p.key][0], e) for p in puts for e in staged[p.key][1]]
            if docs and self.outbox is not None:
                notes.append(self.outbox.note(ALERT_EVENTS, docs))

        done = read_modify_write(
            self.store,
            names.INDEX_ALERTS,
            keys,
            put_of,
            read=read,
            before_write=note,
            writes=self.writes,
        )
        pairs = [staged[r.key] for r in done.values()]
        self.emit(pairs)
        if self.outbox is not None:
            self.outbox.done(notes)
        return pairs

    def transact(
        self, alert_id: str, change: Callable[[Alert], Transition | AlertError]
    ) -> Transition | AlertError | None:
        """One alert: get -> pure transition -> put with the version read (retried on conflict).

        None when the alert does not exist. The transition is durable when this
        returns; if its announcement failed, the outbox sweep announces it.
        """
        outcome: list[Transition | AlertError | None] = [None]

        def staged(_: str, stored: Stored | None) -> Staged | None:
            if stored is None:
                outcome[0] = None
                return None
            result = outcome[0] = change(stored.doc)
            if isinstance(result, AlertError):
                return None
            alert, events = result
            if not events and alert is stored.doc:
                return None
            return alert, events, stored.version

        try:
            self.commit([alert_id], staged)
        except BusUnavailable as exc:
            log.warning("alert %s written; its events wait in the outbox: %s", alert_id, exc)
        return outcome[0]

    def emit(self, pairs: Sequence[tuple[Alert, Sequence[Event]]]) -> int:
        """Write event documents and publish them; both idempotent by event id."""
        docs = [event_doc(alert, e) for alert, events in pairs for e in events]
        if not docs:
            return 0
        self._announce_docs(docs)
        self.publish_reports(
            [alert for alert, events in pairs if any(e["type"] in _REPORTED for e in events)]
        )
        return len(docs)

    def _announce_docs(self, docs: Sequence[AlertEvent]) -> None:
        results = self.store.put_many(
            names.INDEX_ALERT_EVENTS, [Put(key=d["id"], doc=dict(d), blind=True) for d in docs]
        )
        if not all(r.ok for r in results):
            raise StoreUnavailable("store refused alert event writes")
        self.bus.publish(
            names.TOPIC_ALERTS,
            [Outgoing(key=d["alert_id"], value=orjson.dumps(d)) for d in docs],
        )

    def announce_pending(self) -> int:
        """Announce alert events a failed write or publish left in the outbox (the sweep)."""
        if self.outbox is None:
            return 0
        return self.outbox.sweep(ALERT_EVENTS, self._announce_noted)

    def _announce_noted(self, entries: list[dict[str, Any]]) -> int:
        docs: list[AlertEvent] = entries  # type: ignore[assignment]
        self._announce_docs(docs)
        reported = sorted({d["alert_id"] for d in docs if d["type"] in _REPORTED})
        if reported:
            alerts = self.store.get_many(names.INDEX_ALERTS, reported)
            self.publish_reports([st.doc for st in alerts.values()])
        return len(docs)

    def publish_reports(self, alerts: Sequence[Alert]) -> int:
        """Alerts as STIX reports in each concerned jurisdiction's TAXII collection.

        ``shared-<jurisdiction>`` via ``records.objects.store_objects``; each
        report shows only what every agency of that jurisdiction may see.
        """
        sharing = self.sharing
        if sharing is None or not alerts:
            return 0

        def allow_for(j: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
            reader = policy.Reader(agency_id="", jurisdiction=j)

            def allow(indicator: dict[str, Any]) -> dict[str, Any] | None:
                decision = policy.decide_record(sharing, reader, policy.Purpose.READ, indicator)
                return decision.view if decision.shown else None

            return allow

        now = format_timestamp(self.clock.now())
        accepted = []
        for alert in {a["id"]: a for a in alerts}.values():
            for j, report in jurisdiction_reports(alert, allow_for):
                tlp = normalise_tlp(most_restrictive_tlp(i.get("tlp") for i in alert["indicators"]))
                accepted.append(
                    Accepted(
                        obj=report,
                        provenance=Provenance(
                            agency=PLATFORM_AGENCY,
                            jurisdiction=j,
                            received_at=now,
                            request_id=alert["id"],
                            tlp=tlp,
                        ),
                    )
                )
        if not accepted:
            return 0
        return store_objects(self.store, accepted, self.clock, sharing, self.writes)
