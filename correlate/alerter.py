"""The alert engine: record changes -> rules -> alerts, events and escalations.

DOMAIN.md "Early-warning levels"; ARCHITECTURE.md "Guarantees". The engine is a
stage of the one consumer loop (core/consuming.py) on ``intel.records.changes``
(group ``threatbay-alerter``): it evaluates the rule file on each change and
applies every trigger to the open alert of its dedup key through
``AlertBook.commit`` (records/alerts.py: optimistic concurrency, outbox,
events on ``intel.alerts``). A change event that is not one (undecodable, no
record) goes to ``intel.dlq`` with its reason.

Idempotent under replay: a trigger's id is a hash of the change event, the
alert remembers the triggers it has applied, and re-applying one only
re-announces (same ids, same content) the events it produced the first time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from core import names
from core.alerts import (
    Alert,
    AlertError,
    Event,
    Trigger,
    escalate_overdue,
    expire_if_idle,
    indicator_summary,
    open_or_update,
    remind_update_due,
)
from core.clock import format_timestamp, parse_timestamp
from core.consuming import ConsumerStage, DeadLetter, Handled
from core.errors import Unavailable
from core.ports import Incoming, Query, Range, Sort, Stored, Term
from correlate.rules import RuleSet, SurgeQuery, evaluate
from records.alerts import AlertBook, Staged

log = logging.getLogger("threatbay.alerter")


def change_problem(change: Any) -> str | None:
    """Why one entry of ``intel.records.changes`` is not a record change; None when it is."""
    if not isinstance(change, dict):
        return "a record change must be a JSON object"
    record = change.get("record")
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return "record change has no record with a string key"
    kinds = change.get("kinds", [])
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        return "record change kinds must be a list of strings"
    if "at" in change and not isinstance(change["at"], str):
        return "record change 'at' must be a timestamp string"
    return None


def trigger_id_of(value: bytes) -> str:
    """A change event's identity: the same event (replayed) gives the same id."""
    return hashlib.sha256(value).hexdigest()[:24]


@dataclass
class EngineResult:
    dead: list[DeadLetter] = dataclasses.field(default_factory=list)
    changes: int = 0
    triggers: int = 0
    alerts_written: int = 0
    events: int = 0
    replayed: int = 0
    poison: int = 0


class AlertEngine(ConsumerStage):
    """Consumes record changes and maintains alerts (module docstring)."""

    name = "alerter"
    topic = names.TOPIC_CHANGES
    group = names.GROUP_ALERTER

    def __init__(self, book: AlertBook, ruleset: RuleSet, *, batch_size: int = 500) -> None:
        self.book = book
        self.store = book.store
        self.bus = book.bus
        self.clock = book.clock
        self.ruleset = ruleset
        self.batch_size = batch_size
        self.poll_timeout_s = 0.25

    # --------------------------------------------------------------- batch

    def handle(self, messages: Sequence[Incoming]) -> Handled:
        result = self.process(messages)
        return Handled(result.dead, len(messages))

    def units(self, message: Incoming) -> Sequence[Incoming]:
        """Each record change of ``message`` as a message of its own (poison narrowing)."""
        try:
            decoded = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            return [message]
        if not isinstance(decoded, dict) or not isinstance(decoded.get("changes"), list):
            return [message]
        return [
            dataclasses.replace(message, value=orjson.dumps({"changes": [c]}))
            for c in decoded["changes"]
        ]

    def triggers_for(self, message: Incoming, dead: list[DeadLetter]) -> list[Trigger]:
        """Decode one message of change events and evaluate the rules on each.

        A message carries ``{"changes": [...]}`` (the correlator batches them,
        keeping per-record order). An undecodable message, or one change in it
        that is not a record change, is added to ``dead`` with the reason.
        """
        try:
            decoded = orjson.loads(message.value)
        except orjson.JSONDecodeError as exc:
            dead.append(DeadLetter.of(message, f"undecodable record changes: {exc}"))
            return []
        if isinstance(decoded, dict) and isinstance(decoded.get("changes"), list):
            changes: list[Any] = decoded["changes"]
        else:
            changes = [decoded]
        triggers: list[Trigger] = []
        for change in changes:
            problem = change_problem(change)
            if problem is not None:
                dead.append(DeadLetter(message.key, orjson.dumps(change), problem, message))
                continue
            triggers.extend(self._triggers_for_change(change))
        return triggers

    def _triggers_for_change(self, change: dict[str, Any]) -> list[Trigger]:
        record = change["record"]
        kinds = list(change.get("kinds") or [])
        at = str(change.get("at") or format_timestamp(self.clock.now()))
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
            for trigger in self.triggers_for(message, result.dead):
                by_dedup.setdefault(trigger.dedup_key, []).append(trigger)
                result.triggers += 1
        result.poison = len(result.dead)
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
        """Apply triggers per dedup key through ``AlertBook.commit`` (retried on conflict)."""
        now = self.clock.now()
        replays: dict[str, list[tuple[Alert, list[Event]]]] = {}

        def change(dedup: str, stored: Stored | None) -> Staged | None:
            alert = stored.doc if stored else None
            expected = stored.version if stored else None
            events: list[Event] = []
            replays[dedup] = []
            for trigger in by_dedup[dedup]:
                if alert is not None and trigger.trigger_id in alert.get("seen_triggers", []):
                    earlier = [
                        e
                        for e in alert["timeline"]
                        if e.get("trigger") == trigger.trigger_id and "event_id" in e
                    ]
                    replays[dedup].append((alert, earlier))
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
                return None
            return alert, events, expected

        pairs = self.book.commit(by_dedup, change, read=self.book.current)
        # A replayed trigger's events were written before: announce them again (idempotent).
        self.book.emit([pair for pairs_ in replays.values() for pair in pairs_])
        result.replayed += sum(len(r) for r in replays.values())
        result.alerts_written += len(pairs)
        result.events += sum(len(e) for _, e in pairs) + sum(
            len(e) for r in replays.values() for _, e in r
        )


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


def alerts_tick(book: AlertBook, now: datetime, idle_expiry: timedelta) -> int:
    """The alerts stage's periodic work: announce alert events a failed publish left in the
    outbox, then escalate (``escalation_tick``). Returns the events announced and written."""
    return book.announce_pending() + escalation_tick(book, now, idle_expiry)


def run_escalation(
    book: AlertBook,
    stop: threading.Event,
    every_s: float = 15.0,
    idle_expiry: timedelta = timedelta(days=7),
) -> None:
    """Loop until ``stop``: announce alert events a failed publish left in the outbox, then
    ``escalation_tick``, every ``every_s`` seconds; an outage skips a tick."""
    while not stop.is_set():
        try:
            alerts_tick(book, book.clock.now(), idle_expiry)
        except Unavailable as exc:
            log.warning("escalation tick skipped: %s", exc)
        stop.wait(every_s)
