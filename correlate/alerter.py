"""The alert engine: record changes -> rules -> alerts, events and escalations.

DOMAIN.md "Early-warning levels"; ARCHITECTURE.md "Guarantees". The engine
consumes ``intel.records.changes`` (group ``threatbay-alerter``), evaluates
the rule file, and applies every trigger to the open alert of its dedup key
with optimistic concurrency (get -> pure transition -> put with the version
read; retry on conflict). Each timeline entry becomes an alert event: a
document in ``threatbay-alert-events`` (its id sorts by a monotonic stream
sequence, so it is usable as an SSE id) and a message on ``intel.alerts``.
Offsets are committed only after the store acknowledged all of this.

Idempotent under replay: a trigger's id is a hash of the change event, the
alert remembers the triggers it has applied, and re-applying one only
re-writes (same keys, same content) the events it produced the first time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from core import names, policy
from core.alerts import (
    Alert,
    AlertError,
    Event,
    Transition,
    Trigger,
    alert_id_for,
    escalate_overdue,
    expire_if_idle,
    indicator_summary,
    jurisdiction_reports,
    most_restrictive_tlp,
    open_or_update,
    remind_update_due,
)
from core.clock import Clock, format_timestamp, parse_timestamp
from core.consuming import consume_until, drain_until_idle
from core.envelope import Accepted
from core.errors import StoreUnavailable
from core.markings import normalise_tlp
from core.ports import (
    Bus,
    Consumer,
    Incoming,
    Outgoing,
    Put,
    Query,
    Range,
    Sort,
    Store,
    Stored,
    Term,
)
from core.provenance import Provenance
from correlate.objects import store_objects
from correlate.rules import RuleSet, SurgeQuery, evaluate

log = logging.getLogger("threatbay.alerter")

MAX_CONFLICT_RETRIES = 20
PLATFORM_AGENCY = "threatbay-platform"
_ADDRESSED = frozenset({"notified", "renotified", "overdue"})
# Events that change what the alert's STIX report says (acks and comments do not).
_REPORTED = frozenset({"opened", "level_raised", "updated", "notified", "resolved", "expired"})
_GENERATION_PROBE = 8


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
    return f"{stream_seq:017d}.{alert_id.removeprefix('alert--')[:8]}.{seq}"


def stream_seq_of(event_id_text: str) -> int | None:
    """The stream sequence an event id starts with (for ``Last-Event-ID``)."""
    head = event_id_text.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def event_doc(alert: Alert, entry: Event) -> dict[str, Any]:
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


@dataclass
class AlertBook:
    """Reads and writes alerts and their events (shared by engine, ticks and API)."""

    store: Store
    bus: Bus
    clock: Clock
    sharing: policy.SharingPolicy | None = None
    services: Any = None  # set by the API so routes reach the shared audit log
    sequencer: EventSequencer = field(init=False)

    def __post_init__(self) -> None:
        self.sequencer = EventSequencer(self.clock)

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

    def emit(self, pairs: Sequence[tuple[Alert, Sequence[Event]]]) -> int:
        """Write event documents and publish them; both idempotent by event id."""
        docs = [event_doc(alert, e) for alert, events in pairs for e in events]
        if not docs:
            return 0
        results = self.store.put_many(
            names.INDEX_ALERT_EVENTS, [Put(key=d["id"], doc=d, blind=True) for d in docs]
        )
        if not all(r.ok for r in results):
            raise StoreUnavailable("store refused alert event writes")
        self.bus.publish(
            names.TOPIC_ALERTS,
            [Outgoing(key=d["alert_id"], value=orjson.dumps(d)) for d in docs],
        )
        if self.sharing is not None:
            self.publish_reports(
                [alert for alert, events in pairs if any(e["type"] in _REPORTED for e in events)]
            )
        return len(docs)

    def publish_reports(self, alerts: Sequence[Alert]) -> int:
        """Alerts as STIX reports in each concerned jurisdiction's TAXII collection.

        Issue 5: ``shared-<jurisdiction>`` via ``correlate.objects.store_objects``;
        each report shows only what every agency of that jurisdiction may see.
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
        return store_objects(self.store, accepted, self.clock, sharing) if accepted else 0

    def transact(
        self, alert_id: str, change: Callable[[Alert], Transition | AlertError]
    ) -> Transition | AlertError | None:
        """get -> pure transition -> put with the version read; retry on conflict.

        None when the alert does not exist.
        """
        for _attempt in range(MAX_CONFLICT_RETRIES):
            stored = self.get(alert_id)
            if stored is None:
                return None
            outcome = change(stored.doc)
            if isinstance(outcome, AlertError):
                return outcome
            alert, events = outcome
            if not events and alert is stored.doc:
                return outcome
            self.stamp(alert, events)
            [result] = self.store.put_many(
                names.INDEX_ALERTS, [Put(key=alert_id, doc=alert, expected=stored.version)]
            )
            if result.conflict:
                time.sleep(0.002)
                continue
            if not result.ok:
                raise StoreUnavailable(f"store refused alert {alert_id}")
            self.emit([(alert, events)])
            return outcome
        raise StoreUnavailable(f"gave up on alert {alert_id} after repeated conflicts")


def trigger_id_of(value: bytes) -> str:
    """A change event's identity: the same event (replayed) gives the same id."""
    return hashlib.sha256(value).hexdigest()[:24]


@dataclass
class EngineResult:
    changes: int = 0
    triggers: int = 0
    alerts_written: int = 0
    events: int = 0
    replayed: int = 0
    poison: int = 0


class AlertEngine:
    """Consumes record changes and maintains alerts (module docstring)."""

    def __init__(self, book: AlertBook, ruleset: RuleSet) -> None:
        self.book = book
        self.store = book.store
        self.bus = book.bus
        self.clock = book.clock
        self.ruleset = ruleset

    # ---------------------------------------------------------------- loop

    def run(self, stop: threading.Event, *, from_beginning: bool = False) -> None:
        """Consume until ``stop`` is set; transient store failures back off and retry."""
        consumer = self.bus.consumer(
            names.TOPIC_CHANGES, names.GROUP_ALERTER, from_beginning=from_beginning
        )
        consume_until(stop, consumer, self.step, log)

    def step(self, consumer: Consumer, max_records: int = 500, timeout_s: float = 0.25) -> int:
        """Process one polled batch; commit only after the store acknowledged it."""
        messages = consumer.poll(max_records=max_records, timeout_s=timeout_s)
        if not messages:
            return 0
        self.process(messages)
        consumer.commit()
        return len(messages)

    def drain(self, consumer: Consumer, idle_polls: int = 2) -> int:
        """Process until the topic has been empty for ``idle_polls`` polls (tests, replay)."""
        return drain_until_idle(lambda: self.step(consumer, timeout_s=0.1), idle_polls)

    # --------------------------------------------------------------- batch

    def triggers_for(self, message: Incoming) -> list[Trigger]:
        """Decode one message of change events and evaluate the rules on each.

        A message carries ``{"changes": [...]}`` (the correlator batches them,
        keeping per-record order); poison gives [] with a log line.
        """
        try:
            decoded = orjson.loads(message.value)
            changes = decoded["changes"] if "changes" in decoded else [decoded]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("undecodable change event at offset %s: %s", message.offset, exc)
            return []
        triggers: list[Trigger] = []
        for change in changes:
            triggers.extend(self._triggers_for_change(change, message.offset))
        return triggers

    def _triggers_for_change(self, change: Any, offset: int) -> list[Trigger]:
        try:
            record = change["record"]
            kinds = list(change.get("kinds") or [])
            at = str(change.get("at") or format_timestamp(self.clock.now()))
            if not isinstance(record.get("key"), str):
                raise KeyError("record has no key")
        except (KeyError, TypeError, AttributeError) as exc:
            log.error("undecodable change event at offset %s: %s", offset, exc)
            return []
        neighbourhood = self.neighbourhood(self.ruleset.surge_queries(record, kinds), at)
        triggers = evaluate(
            self.ruleset,
            record,
            kinds,
            neighbourhood,
            trigger_id=trigger_id_of(orjson.dumps(change)),
            at=at,
        )
        if change.get("cause") == "decay":  # correlate/rescore.py: no new intelligence
            triggers = [dataclasses.replace(t, decay_only=True) for t in triggers]
        return triggers

    def neighbourhood(self, queries: Sequence[SurgeQuery], at: str) -> dict[tuple[str, str], int]:
        """New records sharing a malware / campaign / intrusion set within each window."""
        out: dict[tuple[str, str], int] = {}
        when = parse_timestamp(at)
        for q in queries:
            since = format_timestamp(when - q.window)
            out[(q.field, q.value)] = self.store.count(
                names.INDEX_INDICATORS,
                [Term(q.field, (q.value,)), Range(q.since_field, gte=since)],
            )
        return out

    def process(self, messages: Sequence[Incoming]) -> EngineResult:
        """Evaluate a batch of change events and apply every trigger."""
        result = EngineResult(changes=len(messages))
        by_dedup: dict[str, list[Trigger]] = {}
        for message in messages:
            for trigger in self.triggers_for(message):
                by_dedup.setdefault(trigger.dedup_key, []).append(trigger)
                result.triggers += 1
        if by_dedup:
            self.apply(by_dedup, result)
        return result

    def _cluster_members(self, trigger: Trigger) -> Trigger:
        """A surge alert being opened lists the cluster's members found in the window."""
        cluster = trigger.cluster or {}
        since = format_timestamp(
            parse_timestamp(trigger.at) - timedelta(seconds=float(cluster.get("window_s", 3600)))
        )
        page = self.store.search(
            names.INDEX_INDICATORS,
            Query(
                filters=(
                    Term(cluster["field"], (cluster["value"],)),
                    Range(cluster.get("since_field", "first_seen"), gte=since),
                    Term("state", ("active",)),
                ),
                sort=(Sort("score", "desc"),),
                limit=500,
            ),
        )
        members = [indicator_summary(h.doc) for h in page.hits]
        seen = {m["key"] for m in members}
        extra = [i for i in trigger.indicators if i["key"] not in seen]
        js = {j for h in page.hits for j in h.doc.get("jurisdictions") or []}
        ags = {a for h in page.hits for a in h.doc.get("agencies") or []}
        return dataclasses.replace(
            trigger,
            indicators=tuple(members + extra),
            jurisdictions=tuple(sorted(js | set(trigger.jurisdictions))),
            agencies=tuple(sorted(ags | set(trigger.agencies))),
        )

    def apply(self, by_dedup: dict[str, list[Trigger]], result: EngineResult) -> None:
        """Apply triggers per dedup key under optimistic concurrency (retry on conflict)."""
        pending = dict(by_dedup)
        now = self.clock.now()
        for _attempt in range(MAX_CONFLICT_RETRIES):
            if not pending:
                return
            current = self.book.current(pending)
            puts: list[Put] = []
            written: dict[str, tuple[Alert, list[Event]]] = {}
            replays: list[tuple[Alert, list[Event]]] = []
            for dedup, triggers in pending.items():
                stored = current[dedup]
                alert = stored.doc if stored else None
                expected = stored.version if stored else None
                events: list[Event] = []
                for trigger in triggers:
                    if alert is not None and trigger.trigger_id in alert.get("seen_triggers", []):
                        replays.append(
                            (
                                alert,
                                [
                                    e
                                    for e in alert["timeline"]
                                    if e.get("trigger") == trigger.trigger_id and "event_id" in e
                                ],
                            )
                        )
                        result.replayed += 1
                        continue
                    reopening = alert is None or alert["status"] != "open"
                    if trigger.decay_only and reopening:
                        continue  # a decaying score alone never opens or re-opens an alert
                    if trigger.cluster is not None and reopening:
                        trigger = self._cluster_members(trigger)
                    before_id = alert["id"] if alert else None
                    alert, new_events = open_or_update(
                        alert, trigger, now, coalesce=self.ruleset.coalesce
                    )
                    if alert["id"] != before_id:
                        expected = None  # a new generation is a create
                        events = []
                    events.extend(new_events)
                if alert is None or (stored is not None and alert is stored.doc):
                    continue
                self.book.stamp(alert, events)
                written[dedup] = (alert, events)
                puts.append(Put(key=alert["id"], doc=alert, expected=expected))
            outcome = self.store.put_many(names.INDEX_ALERTS, puts) if puts else []
            failed = [r.key for r in outcome if not r.ok and not r.conflict]
            if failed:
                raise StoreUnavailable(f"store refused alert writes for {failed[:5]}")
            conflicted = {r.key for r in outcome if r.conflict}
            done = [(a, e) for d, (a, e) in written.items() if a["id"] not in conflicted]
            result.alerts_written += len(done)
            result.events += self.book.emit(done + replays)
            pending = {
                d: t
                for d, t in pending.items()
                if d in written and written[d][0]["id"] in conflicted
            }
            if pending:
                time.sleep(0.002)
        raise StoreUnavailable("gave up applying alert triggers after repeated conflicts")


# ------------------------------------------------------------- escalation


def escalation_tick(
    book: AlertBook, now: datetime, idle_expiry: timedelta = timedelta(days=7)
) -> int:
    """Escalate open alerts with a jurisdiction past its deadline; expire idle ones; remind
    the issuing side of alerts due an update.

    Returns the number of events written (overdue, renotified, expired, update_due).
    """
    total = 0
    stamp = format_timestamp(now)
    for filters, change in (
        (
            (Term("status", ("open",)), Range("next_deadline", lte=stamp)),
            lambda a: escalate_overdue(a, now),
        ),
        (
            (Term("status", ("open",)), Range("updated", lte=format_timestamp(now - idle_expiry))),
            lambda a: expire_if_idle(a, now, idle_expiry),
        ),
        (
            (Term("status", ("open",)), Range("next_update_due", lte=stamp)),
            lambda a: remind_update_due(a, now),
        ),
    ):
        after: tuple[Any, ...] | None = None
        while True:
            page = book.store.search(
                names.INDEX_ALERTS, Query(filters=filters, limit=200, after=after)
            )
            for hit in page.hits:
                outcome = book.transact(hit.key, change)
                if outcome is not None and not isinstance(outcome, AlertError):
                    total += len(outcome[1])
            if not page.more or not page.hits:
                break
            after = page.hits[-1].cursor
    return total


def run_escalation(
    book: AlertBook,
    stop: threading.Event,
    every_s: float = 15.0,
    idle_expiry: timedelta = timedelta(days=7),
) -> None:
    """Loop: ``escalation_tick`` every ``every_s`` seconds until ``stop``."""
    while not stop.is_set():
        try:
            escalation_tick(book, book.clock.now(), idle_expiry)
        except StoreUnavailable as exc:
            log.warning("escalation tick skipped: %s", exc)
        stop.wait(every_s)
