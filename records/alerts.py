"""Alerts, their versions and events in the store, announced on ``intel.alerts`` at least once.

DOMAIN.md "Early-warning levels", "Noninterference"; ARCHITECTURE.md
"Guarantees". An alert (one dedup key, one generation) is seen by each reader
as *its version* (core/alerts.py ``route``): the versions of a dedup key live
in one head document (``threatbay-alert-heads``, key = dedup key: every
version's alert and exact readers), the source of truth; each version is also
materialised in ``threatbay-alerts`` (``readers`` compressed for searching,
``reader_tokens`` exact for checking) so lists, filters and counts run per
reader. Every change — by the alert engine, the escalation tick or an analyst
through the API — goes through ``AlertBook.commit``:

1. read the heads (by key, real-time), apply pure transitions to their
   versions, stamp the new timeline entries (stream sequence = the clock's
   µs; the event id adds the alert and timeline position, so it depends on
   nothing but that version's own history);
2. note the resulting event documents in the outbox (records/outbox.py);
3. write the heads with the versions read (records/rmw.py: conflicts re-read
   and re-apply);
4. materialise the versions (guarded by the head's revision, as
   records/views.py does for record views), write the event documents
   (``threatbay-alert-events``, one per version's entry, carrying that
   version's readers) and publish them on ``intel.alerts``; re-publish the
   alert as STIX reports for TAXII; remove the note.

If step 4 fails (bus down, process killed) the note survives, and the alerts
stage's sweep announces it (and materialises the versions of its heads again):
a notification is never lost after its alert is written. Event ids are
deterministic per timeline entry, so a repeat is recognised downstream (the
notifier creates each delivery once).

Alert documents written before versions existed have no readers: nobody sees
them any more (fail closed); a new trigger opens a new version beside them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from core import names, policy
from core.alerts import (
    ALERT_REPORT_NS,
    Alert,
    AlertError,
    AlertEvent,
    Emission,
    Event,
    Transition,
    Version,
    alert_id_for,
    alert_to_stix,
    most_restrictive_tlp,
    reader_view,
)
from core.clock import Clock, format_timestamp
from core.crossborder import CrossBorderWhitelist
from core.envelope import Accepted
from core.errors import BadCursor, BusUnavailable, Refused, StoreUnavailable
from core.markings import normalise_tlp
from core.ports import Bus, Outgoing, Put, Store, Stored
from core.provenance import Provenance
from core.settings import WritesSettings
from core.views import AudienceSet
from records.objects import default_sharing, store_objects
from records.outbox import ALERT_EVENTS, Outbox
from records.rmw import read_modify_write
from records.views import AudienceSource

log = logging.getLogger("threatbay.alerts")

K = TypeVar("K", bound=Hashable)

PLATFORM_AGENCY = "threatbay-platform"
_ADDRESSED = frozenset({"notified", "renotified", "overdue"})
# Events that change what the alert's STIX report says (acks and comments do not).
_REPORTED = frozenset({"opened", "level_raised", "updated", "notified", "resolved", "expired"})
_GENERATION_PROBE = 8
#: Digits of a stream sequence (µs since 1970, zero-padded): longer is not an id we issued.
_SEQ_DIGITS = 17
#: Bookkeeping of a stored alert version (never shown to a reader).
VERSION_FIELDS = ("readers", "reader_tokens", "rev")
#: Bookkeeping of a stored alert event (never shown to a reader).
EVENT_FIELDS = ("readers", "version", "dedup_key")


class EventSequencer:
    """Stream sequence of the events stamped at one moment: the injected clock's µs.

    Not a counter: two events stamped at the same µs share it and are ordered
    by their ids (the stream pages on (sequence, id)), so no reader's event id
    depends on how many events *other* readers' alerts produced meanwhile.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def next(self) -> int:
        return int(self._clock.now().timestamp() * 1_000_000)


def event_id(stream_seq: int, alert_id: str, seq: int) -> str:
    """SSE-usable id: sorts by stream sequence; unique by alert and timeline position."""
    return f"{stream_seq:0{_SEQ_DIGITS}d}.{alert_id.removeprefix('alert--')[:8]}.{seq}"


def stream_seq_of(event_id_text: str) -> int:
    """The stream sequence an event id starts with (``Last-Event-ID``); ``BadCursor`` if none."""
    head = event_id_text.strip().split(".", 1)[0]
    if not head.isascii() or not head.isdigit() or len(head) > _SEQ_DIGITS + 2:
        raise BadCursor(f"{event_id_text[:40]!r} is not an event id this server issued")
    return int(head)


def event_doc(
    alert: Alert, entry: Event, readers: Sequence[str] | None = None, version: str | None = None
) -> AlertEvent:
    """The stored/published form of one timeline entry (derived from its alert version alone)."""
    jurisdiction = entry.get("jurisdiction")
    doc: AlertEvent = {
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
    if readers is None and isinstance(alert.get("readers"), list):
        readers = alert["readers"]  # a stored version: its readers
    if readers is not None:
        doc["readers"] = list(readers)  # type: ignore[typeddict-unknown-key]
        doc["version"] = version or alert["id"]  # type: ignore[typeddict-unknown-key]
        doc["dedup_key"] = alert.get("dedup_key")  # type: ignore[typeddict-unknown-key]
    return doc


def event_key(doc: Mapping[str, Any]) -> str:
    """Store key of an event document: its id, plus its version's suffix for a forked version."""
    version = str(doc.get("version") or "")
    return f"{doc['id']}#{version.split('#', 1)[1]}" if "#" in version else str(doc["id"])


def shown_event(doc: Mapping[str, Any]) -> dict[str, Any]:
    """An event document as a reader may see it (its bookkeeping removed)."""
    return {k: v for k, v in doc.items() if k not in EVENT_FIELDS}


def shown_alert(doc: Mapping[str, Any]) -> Alert:
    """An alert version document without its bookkeeping."""
    return {k: v for k, v in doc.items() if k not in VERSION_FIELDS}


def own_token(tags: Sequence[str]) -> str:
    """The reader's own token among its view tags (core/policy.py ``reader_tags``)."""
    return tags[0]


#: What a transition gives ``commit`` per dedup key: the versions written, their readers
#: when their events were made, the events.
Staged = list[Emission]


def _no_crossing(sharing: policy.SharingPolicy) -> policy.SharingPolicy:
    """``sharing`` without cross-border flows: a jurisdiction's alert report stays in it."""
    return policy.SharingPolicy(
        CrossBorderWhitelist(()), participating_agencies=sharing.participating_agencies
    )


@dataclass
class AlertBook:
    """Reads and writes alerts and their events (the engine, the escalation tick and the API)."""

    store: Store
    bus: Bus
    clock: Clock
    sharing: policy.SharingPolicy | None = None
    writes: WritesSettings = field(default_factory=WritesSettings)
    outbox: Outbox | None = None
    audiences: AudienceSource | None = None
    sequencer: EventSequencer = field(init=False)

    def __post_init__(self) -> None:
        self.sequencer = EventSequencer(self.clock)
        if self.outbox is None:
            self.outbox = Outbox(self.store, self.clock)
        if self.audiences is None:
            self.audiences = AudienceSource(
                self.store, self.clock, self.sharing or default_sharing()
            )

    def audience_set(self) -> AudienceSet:
        assert self.audiences is not None
        return self.audiences.current()

    # ------------------------------------------------------------- reading

    def get(self, alert_id: str) -> Stored | None:
        """The first version of ``alert_id`` as materialised (its document key is the id)."""
        return self.store.get(names.INDEX_ALERTS, alert_id)

    def heads(self, dedup_keys: Sequence[str]) -> dict[str, Stored]:
        return self.store.get_many(names.INDEX_ALERT_HEADS, list(dedup_keys))

    def versions(self, dedup_key: str) -> list[Version]:
        """Every version of ``dedup_key`` as the head holds them (real time)."""
        head = self.store.get(names.INDEX_ALERT_HEADS, dedup_key)
        return _versions(head.doc) if head is not None else []

    def version_for(self, alert_id: str, tags: Sequence[str]) -> Alert | None:
        """The version of ``alert_id`` whose exact readers include the reader's own token."""
        token = own_token(tags)
        first = self.get(alert_id)
        if first is None or first.doc.get("id") != alert_id:
            return None  # (a forked version's document key is not an alert id)
        if token in (first.doc.get("reader_tokens") or ()):
            return first.doc
        dedup = first.doc.get("dedup_key")
        if not isinstance(dedup, str):
            return None
        for version in self.versions(dedup):
            if version.alert.get("id") == alert_id and token in version.readers:
                return self.version_document(version, self.audience_set(), 0)
        return None

    def current(self, dedup_keys: Iterable[str]) -> dict[str, Stored | None]:
        """The main version of the latest generation for each dedup key (None if none).

        Main: most readers, then the one keyed by the alert id. Tests and tools
        use this; readers get their own version (``version_for``).
        """
        keys = list(dict.fromkeys(dedup_keys))
        heads = self.heads(keys)
        out: dict[str, Stored | None] = {}
        for dedup in keys:
            head = heads.get(dedup)
            live = [v for v in _versions(head.doc) if v.readers] if head else []
            if head is None or not live:
                out[dedup] = self._legacy(dedup)
                continue
            best = max(
                live,
                key=lambda v: (int(v.alert.get("generation", 0)), len(v.readers),
                               v.key == v.alert["id"]),
            )  # fmt: skip
            doc = self.version_document(best, self.audience_set(), int(head.doc.get("rev", 0)))
            out[dedup] = Stored(best.key, doc, head.version)
        return out

    def _legacy(self, dedup: str) -> Stored | None:
        """The latest generation stored before versions existed (probed by id)."""
        latest: Stored | None = None
        start = 0
        while True:
            ids = [alert_id_for(dedup, g) for g in range(start, start + _GENERATION_PROBE)]
            found = self.store.get_many(names.INDEX_ALERTS, ids)
            for alert_id in ids:
                if alert_id not in found:
                    return latest
                latest = found[alert_id]
            start += _GENERATION_PROBE

    @staticmethod
    def version_document(version: Version, audiences: AudienceSet, rev: int) -> Alert:
        """The stored form of one version: the alert, then who reads it and the revision."""
        doc = dict(version.alert)
        doc["readers"] = audiences.compress(version.readers)
        doc["reader_tokens"] = sorted(version.readers)
        doc["rev"] = rev
        return doc

    def stamp(self, alert: Alert, events: Sequence[Event]) -> None:
        """Give new timeline entries their stream sequence and event id (in place)."""
        for entry in events:
            if "stream_seq" not in entry:
                entry["stream_seq"] = self.sequencer.next()
                entry["event_id"] = event_id(entry["stream_seq"], alert["id"], entry["seq"])

    # ------------------------------------------------------------- writing

    def commit(
        self,
        keys: Iterable[str],
        change: Callable[[str, list[Version]], Staged | None],
    ) -> list[Emission]:
        """Change the versions of each dedup key and announce their new events (module docstring).

        ``change(dedup, versions)`` edits ``versions`` in place (core/alerts.py
        ``route``) and returns the versions it changed with their new events,
        or None; it is called again for a key whose head write conflicted.
        Returns the (version, events) pairs written. Raises ``BusUnavailable``
        when the announcement failed (the outbox keeps it for the sweep).
        """
        audiences = self.audience_set()
        staged: dict[str, tuple[Staged, list[Version], int]] = {}
        notes: list[str] = []

        previous: dict[str, Stored | None] = {}

        def put_of(dedup: str, stored: Stored | None) -> Put | None:
            previous[dedup] = stored
            versions = _versions(stored.doc) if stored is not None else self._legacy_versions(dedup)
            outcome = change(dedup, versions)
            if not outcome:
                return None
            rev = int(stored.doc.get("rev", 0)) + 1 if stored is not None else 1
            for version, _, events in outcome:
                self.stamp(version.alert, events)
            staged[dedup] = (outcome, versions, rev)
            head = {
                "dedup_key": dedup,
                "rev": rev,
                "versions": [
                    {"key": v.key, "readers": sorted(v.readers), "alert": v.alert} for v in versions
                ],
            }
            return Put(key=dedup, doc=head, expected=stored.version if stored else None)

        def note(puts: list[Put]) -> None:
            docs = [
                event_doc(v.alert, e, audiences.compress(readers), v.key)
                for p in puts
                for v, readers, events in staged[p.key][0]
                for e in events
            ]
            if docs and self.outbox is not None:
                notes.append(self.outbox.note(ALERT_EVENTS, docs))

        done = read_modify_write(
            self.store,
            names.INDEX_ALERT_HEADS,
            list(dict.fromkeys(keys)),
            put_of,
            before_write=note,
            writes=self.writes,
        )
        try:
            self._materialise([(staged[d][1], staged[d][2]) for d in done], audiences)
        except Refused as refused:
            # The store will never take these versions (core/errors.py): their heads go back
            # to what they were, so the input that made them is poison when retried alone
            # (core/consuming.py narrows it down and dead-letters it); the others stand.
            bad = {d for d in done if any(v.key in refused.reasons for v in staged[d][1])}
            self._revert({d: (previous.get(d), done[d].version, staged[d][2]) for d in bad})
            self.emit([pair for d in done if d not in bad for pair in staged[d][0]])
            if self.outbox is not None:
                self.outbox.done(notes)
            raise
        pairs = [pair for d in done for pair in staged[d][0]]
        self.emit(pairs)
        if self.outbox is not None:
            self.outbox.done(notes)
        return pairs

    def _revert(self, heads: Mapping[str, tuple[Stored | None, Any, int]]) -> None:
        """Put heads back as they were before a write whose versions the store refused."""
        puts: list[Put] = []
        for dedup, (before, written, rev) in heads.items():
            if before is None:
                self.store.delete(names.INDEX_ALERT_HEADS, dedup)
            else:
                puts.append(Put(dedup, before.doc | {"rev": rev + 1}, expected=written))
        for result in self.store.put_many(names.INDEX_ALERT_HEADS, puts) if puts else []:
            if not result.ok:
                log.warning("alert head %s not put back after a refusal: %s", result.key,
                            result.refused or "changed since")  # fmt: skip

    def _legacy_versions(self, dedup: str) -> list[Version]:
        """A dedup key with no head: alerts stored before versions become reader-less versions."""
        legacy = self._legacy(dedup)
        if legacy is None:
            return []
        return [Version(legacy.key, frozenset(), legacy.doc)]

    def _materialise(
        self, heads: Sequence[tuple[list[Version], int]], audiences: AudienceSet
    ) -> None:
        wanted = {
            version.key: self.version_document(version, audiences, rev)
            for versions, rev in heads
            for version in versions
        }
        if not wanted:
            return

        def change(key: str, stored: Stored | None) -> Put | None:
            doc = wanted[key]
            if stored is None:
                return Put(key, doc)
            if int(stored.doc.get("rev", -1)) >= doc["rev"]:
                return None
            return Put(key, doc, expected=stored.version)

        read_modify_write(self.store, names.INDEX_ALERTS, list(wanted), change,
                          writes=self.writes)  # fmt: skip

    def transact(
        self,
        alert_id: str,
        change: Callable[[Alert], Transition | AlertError],
        tags: Sequence[str] | None = None,
    ) -> Transition | AlertError | None:
        """An action on ``alert_id``: applied to every version of it, answered for the reader's.

        ``tags`` (the reader's view tags) pick whose version's outcome is
        returned; without them, the version keyed by the alert id. None when the
        alert does not exist. The transition is durable when this returns; if its
        announcement failed, the outbox sweep announces it.
        """
        first = self.get(alert_id)
        if first is None or first.doc.get("id") != alert_id:
            return None
        if not isinstance(first.doc.get("dedup_key"), str):
            return None
        token = own_token(tags) if tags else None
        outcome: list[Transition | AlertError | None] = [None]

        def apply(_: str, versions: list[Version]) -> Staged | None:
            outcome[0] = None
            touched: Staged = []
            for version in versions:
                if version.alert.get("id") != alert_id:
                    continue
                result = change(version.alert)
                mine = token in version.readers if token else version.key == alert_id
                if mine:
                    outcome[0] = result
                if isinstance(result, AlertError):
                    continue
                alert, events = result
                if not events and alert is version.alert:
                    continue
                self.stamp(alert, events)
                version.alert = alert
                touched.append((version, version.readers, events))
            return touched or None

        try:
            self.commit([first.doc["dedup_key"]], apply)
        except BusUnavailable as exc:
            log.warning("alert %s written; its events wait in the outbox: %s", alert_id, exc)
        return outcome[0]

    def transact_version(
        self, dedup: str, key: str, change: Callable[[Alert], Transition | AlertError]
    ) -> Transition | AlertError | None:
        """A transition of one version (the escalation tick: each version's own deadlines)."""
        outcome: list[Transition | AlertError | None] = [None]

        def apply(_: str, versions: list[Version]) -> Staged | None:
            outcome[0] = None
            for version in versions:
                if version.key != key:
                    continue
                result = outcome[0] = change(version.alert)
                if isinstance(result, AlertError):
                    return None
                alert, events = result
                if not events and alert is version.alert:
                    return None
                self.stamp(alert, events)
                version.alert = alert
                return [(version, version.readers, events)]
            return None

        try:
            self.commit([dedup], apply)
        except BusUnavailable as exc:
            log.warning("alert %s written; its events wait in the outbox: %s", key, exc)
        return outcome[0]

    def emit(self, pairs: Sequence[Emission]) -> int:
        """Write event documents and publish them; both idempotent by event id."""
        audiences = self.audience_set()
        docs = [
            event_doc(v.alert, e, audiences.compress(readers), v.key)
            for v, readers, events in pairs
            for e in events
        ]
        if not docs:
            return 0
        self._announce_docs(docs)
        self.publish_reports(
            [v for v, _, events in pairs if any(e["type"] in _REPORTED for e in events)]
        )
        return len(docs)

    def _announce_docs(self, docs: Sequence[AlertEvent]) -> None:
        results = self.store.put_many(
            names.INDEX_ALERT_EVENTS,
            [Put(key=event_key(d), doc=dict(d), blind=True) for d in docs],
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
        # The heads were written (or the note would have been retried with its batch):
        # materialise their versions again, then announce.
        dedups = {str(d.get("dedup_key")) for d in entries if d.get("dedup_key")}
        heads = self.heads(sorted(dedups))
        self._materialise(
            [(_versions(h.doc), int(h.doc.get("rev", 0))) for h in heads.values()],
            self.audience_set(),
        )
        self._announce_docs(docs)
        reported = {d["alert_id"] for d in docs if d["type"] in _REPORTED}
        self.publish_reports(
            [v for h in heads.values() for v in _versions(h.doc) if v.alert["id"] in reported]
        )
        return len(docs)

    def publish_reports(self, versions: Sequence[Version]) -> int:
        """Alerts as STIX reports in each jurisdiction's TAXII collection ``shared-<j>``.

        The report of jurisdiction J is the version read by J's jurisdiction
        reader (token ``j:J``: what every agency of J may see, core/views.py),
        and only agencies of J may read it (it never crosses a border).
        """
        sharing = self.sharing
        if sharing is None or not versions:
            return 0
        home = _no_crossing(sharing)

        def allow_for(j: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
            reader = policy.Reader(agency_id="", jurisdiction=j)

            def allow(indicator: dict[str, Any]) -> dict[str, Any] | None:
                decision = policy.decide_record(
                    sharing, reader, policy.Purpose.TAXII_EXPORT, indicator, exact=True
                )
                return decision.view if decision.shown else None

            return allow

        now = format_timestamp(self.clock.now())
        accepted = []
        for version in {v.key: v for v in versions}.values():
            alert = version.alert
            for token in sorted(version.readers):
                if not token.startswith("j:"):
                    continue
                j = token[2:]
                view = reader_view(alert, allow_for(j))
                if view is None:
                    continue
                report_id = f"report--{uuid.uuid5(ALERT_REPORT_NS, alert['id'] + '|' + j)}"
                tlp = normalise_tlp(most_restrictive_tlp(i.get("tlp") for i in view["indicators"]))
                accepted.append(
                    Accepted(
                        obj=alert_to_stix(view, report_id),
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
        return store_objects(self.store, accepted, self.clock, home, self.writes)


def _versions(head: Mapping[str, Any]) -> list[Version]:
    return [
        Version(v["key"], frozenset(v.get("readers") or ()), v["alert"])
        for v in head.get("versions") or []
    ]


__all__ = [
    "AlertBook",
    "EventSequencer",
    "PLATFORM_AGENCY",
    "event_doc",
    "event_id",
    "event_key",
    "shown_alert",
    "shown_event",
    "stream_seq_of",
]
