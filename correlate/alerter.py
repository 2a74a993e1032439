"""The alert engine: record changes -> rules -> alerts, events and escalations.

DOMAIN.md "Early-warning levels"; ARCHITECTURE.md "Guarantees". The engine is a
stage of the one consumer loop (core/consuming.py) on ``intel.records.changes``
(group ``threatbay-alerter``): it evaluates the rule file on each change and
applies every trigger to the open alert of its dedup key through
``AlertBook.commit`` (records/alerts.py: optimistic concurrency, outbox,
events on ``intel.alerts``). A change event that is not one (undecodable, no
record) goes to ``intel.dlq`` with its reason.

Per reader (DOMAIN.md "Noninterference"): a change is one *view* of a record
changing for a group of readers (core/views.py); the rules are evaluated on
that view, surge counts are the records those readers see, and the trigger is
routed to those readers' versions of the alert (core/alerts.py ``route``), so
no reader's alert moves because of a report it may not see. A change announced
before views existed reaches the readers who see all of its record.

Idempotent under replay: a trigger's id is a hash of the change event (without
whose view it is), the alert remembers the triggers it has applied, and
re-applying one only re-announces (same ids, same content) the events it
produced the first time.
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
    Emission,
    Transition,
    Trigger,
    Version,
    current_versions,
    escalate_overdue,
    expire_if_idle,
    indicator_summary,
    open_or_update,
    remind_update_due,
    resolve_false_positive,
    route,
)
from core.clock import format_timestamp, parse_timestamp
from core.consuming import ConsumerStage, DeadLetter, Handled
from core.errors import Unavailable
from core.ports import Incoming, Missing, Query, Range, Sort, Term
from core.views import all_of, content_of, parts_of
from correlate.rules import RuleSet, SurgeQuery, evaluate
from records.alerts import AlertBook

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


@dataclass(frozen=True)
class Routed:
    """A trigger, the exact view tokens it is for, and its form when it opens a surge alert."""

    trigger: Trigger
    tokens: frozenset[str]
    opening: Trigger | None = None


@dataclass(frozen=True)
class Dismissal:
    """An alert to resolve as a false positive for the readers ``tokens`` (issue #19)."""

    dedup_key: str
    tokens: frozenset[str]
    reason: str
    trigger_id: str


def _trigger_key(routed: Routed) -> bytes:
    """What makes two routed triggers the same apart from their tokens."""
    return orjson.dumps(
        [dataclasses.asdict(routed.trigger),
         dataclasses.asdict(routed.opening) if routed.opening else None],
        default=str,
        option=orjson.OPT_SORT_KEYS,
    )  # fmt: skip


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

    def triggers_for(
        self,
        message: Incoming,
        dead: list[DeadLetter],
        dismissals: list[Dismissal] | None = None,
    ) -> list[Routed]:
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
        routed: list[Routed] = []
        for change in changes:
            problem = change_problem(change)
            if problem is not None:
                dead.append(DeadLetter(message.key, orjson.dumps(change), problem, message))
                continue
            routed.extend(self._triggers_for_change(change, dismissals))
        return routed

    def _tokens(self, change: dict[str, Any]) -> frozenset[str]:
        """Whose view of the record the change is (core/views.py).

        A change announced before views existed names nobody: it reaches only the
        readers who see every part of the record (their view is the record).
        """
        readers = change.get("readers")
        if isinstance(readers, list):
            return frozenset(str(r) for r in readers)
        audiences = self.book.audience_set()
        parts = parts_of(change["record"], audiences)
        whole = audiences.tokens
        for who in (*parts.sources, *parts.sightings, *parts.links):
            whole = whole & who
        for cuts in parts.cuts:
            for _, hidden in cuts:
                whole = whole - hidden
        return whole if parts.sources else frozenset()

    def _triggers_for_change(
        self, change: dict[str, Any], dismissals: list[Dismissal] | None = None
    ) -> list[Routed]:
        record = change["record"]
        kinds = list(change.get("kinds") or [])
        at = str(change.get("at") or format_timestamp(self.clock.now()))
        tokens = self._tokens(change)
        if not tokens:
            return []
        # The change's identity leaves out who it is for: a reader's triggers (and their
        # ids, which its alert's timeline shows) depend only on its own view.
        identity = {k: v for k, v in change.items() if k not in ("readers", "view")}
        trigger_id = trigger_id_of(orjson.dumps(identity))
        out: list[Routed] = []
        queries = self.ruleset.surge_queries(record, kinds)
        legacy = not isinstance(change.get("readers"), list)
        groups = (
            [(tokens, self.neighbourhood(queries, at))]
            if legacy  # a change from before views: counted as it was then, over records
            else self.neighbourhoods(queries, at, tokens)
        )
        for group, neighbourhood in groups:
            triggers = evaluate(
                self.ruleset, record, kinds, neighbourhood, trigger_id=trigger_id, at=at
            )
            if change.get("cause") == "decay":  # correlate/rescore.py: no new intelligence
                triggers = [dataclasses.replace(t, decay_only=True) for t in triggers]
            if dismissals is not None and "false_positive" in kinds:
                dismissals.extend(self._dismissals(record, group, triggers, trigger_id))
            for trigger in triggers:
                if trigger.cluster is None:
                    out.append(Routed(trigger, group))
                else:
                    out.extend(
                        Routed(trigger, members_of, opening)
                        for members_of, opening in self._cluster_members(trigger, group, legacy)
                    )
        return out

    def _dismissals(
        self,
        record: dict[str, Any],
        tokens: frozenset[str],
        triggers: Sequence[Trigger],
        trigger_id: str,
    ) -> list[Dismissal]:
        """The indicator alerts of ``record`` whose rules no longer fire on its capped view.

        Only for readers who see a false-positive sighting (the change is theirs);
        surge alerts stand: their other members still hold them.
        """
        marks = [f for f in record.get("false_positives") or [] if isinstance(f, dict)]
        if not marks:
            return []
        reason = "; ".join(f"{m.get('agency')}: {m.get('reason') or ''}" for m in marks)
        fired = {t.family for t in triggers if t.cluster is None}
        families = {r.family for r in self.ruleset.rules if r.kind == "indicator"} - fired
        return [
            Dismissal(f"{family}|{record['key']}", tokens, reason, trigger_id)
            for family in sorted(families)
        ]

    def neighbourhood(self, queries: Sequence[SurgeQuery], at: str) -> dict[tuple[str, str], int]:
        """New records sharing a malware / campaign / intrusion set within each window
        (every record, whoever may see it: tools and benches; readers get ``neighbourhoods``)."""
        out: dict[tuple[str, str], int] = {}
        when = parse_timestamp(at)
        for q in queries:
            since = format_timestamp(when - q.window)
            out[(q.field, q.value)] = self.store.count(
                names.INDEX_INDICATORS,
                [Term(q.field, (q.value,)), Range(q.since_field, gte=since), Missing("view_of")],
            )
        return out

    def neighbourhoods(
        self, queries: Sequence[SurgeQuery], at: str, tokens: frozenset[str]
    ) -> list[tuple[frozenset[str], dict[tuple[str, str], int]]]:
        """Per group of tokens: the new records *they* see sharing each surge value.

        One count per query, by reader (each reader has exactly one view
        document per record, core/views.py); tokens with equal counts form a group.
        """
        if not queries:
            return [(tokens, {})]
        audiences = self.book.audience_set()
        when = parse_timestamp(at)
        per_token: dict[str, dict[tuple[str, str], int]] = {t: {} for t in tokens}
        for q in queries:
            since = format_timestamp(when - q.window)
            counts = self.store.count_by(
                names.INDEX_INDICATORS,
                "readers",
                [Term(q.field, (q.value,)), Range(q.since_field, gte=since)],
            )
            for token in tokens:
                j = audiences.jurisdiction_of.get(token)
                extra = counts.get(all_of(j), 0) if j else 0
                per_token[token][(q.field, q.value)] = counts.get(token, 0) + extra
        groups: dict[tuple[Any, ...], set[str]] = {}
        for token, hood in per_token.items():
            groups.setdefault(tuple(sorted(hood.items())), set()).add(token)
        return [(frozenset(g), dict(k)) for k, g in sorted(groups.items())]

    def process(self, messages: Sequence[Incoming]) -> EngineResult:
        """Evaluate a batch of change events and apply every trigger."""
        result = EngineResult(changes=len(messages))
        by_dedup: dict[str, list[Routed]] = {}
        dismissals: list[Dismissal] = []
        for message in messages:
            for routed in self.triggers_for(message, result.dead, dismissals):
                by_dedup.setdefault(routed.trigger.dedup_key, []).append(routed)
                result.triggers += 1
        result.poison = len(result.dead)
        if by_dedup:
            self.apply({d: _merged(r) for d, r in by_dedup.items()}, result)
        if dismissals:
            self.dismiss(dismissals, result)
        return result

    def dismiss(self, dismissals: Sequence[Dismissal], result: EngineResult) -> None:
        """Resolve as ``false_positive`` the open versions the dismissals reach (forking)."""
        now = self.clock.now()
        by_dedup: dict[str, list[Dismissal]] = {}
        for d in dismissals:
            by_dedup.setdefault(d.dedup_key, []).append(d)
        heads = self.book.heads(list(by_dedup))
        wanted = [d for d in by_dedup if heads.get(d) is not None]
        if not wanted:
            return

        def change(dedup: str, versions: list[Version]) -> list[Emission] | None:
            emitted: list[Emission] = []
            for d in by_dedup[dedup]:

                def step(
                    alert: Alert | None, tokens: frozenset[str], d: Dismissal = d
                ) -> Transition | None:
                    if alert is None:
                        return None
                    outcome = resolve_false_positive(alert, now, d.reason, d.trigger_id)
                    if outcome is not None:
                        self.book.stamp(*outcome)
                    return outcome

                emitted.extend(route(versions, d.tokens, step))
            return emitted or None

        pairs = self.book.commit(wanted, change)
        result.alerts_written += len({v.key for v, _, _ in pairs})
        result.events += sum(len(e) for _, _, e in pairs)

    def _cluster_members(
        self, trigger: Trigger, tokens: frozenset[str], legacy: bool = False
    ) -> list[tuple[frozenset[str], Trigger]]:
        """A surge alert being opened lists the cluster's members each reader sees in the window.

        Readers who see the same members share the opening form.
        """
        cluster = trigger.cluster or {}
        since = format_timestamp(
            parse_timestamp(trigger.at) - timedelta(seconds=float(cluster.get("window_s", 3600)))
        )
        audiences = self.book.audience_set()
        forms: dict[bytes, tuple[set[str], Trigger]] = {}
        for token in sorted(tokens) if not legacy else [""]:
            j = audiences.jurisdiction_of.get(token, "")
            whose = Term("readers", (token, all_of(j))) if not legacy else Missing("view_of")
            page = self.store.search(
                names.INDEX_INDICATORS,
                Query(
                    filters=(
                        Term(cluster["field"], (cluster["value"],)),
                        Range(cluster.get("since_field", "first_seen"), gte=since),
                        Term("state", ("active",)),
                        whose,
                    ),
                    sort=(Sort("score", "desc"), Sort("key")),
                    limit=500,
                ),
            )
            docs = [content_of(h.doc) for h in page.hits]
            members = [indicator_summary(d) for d in docs]
            seen = {m["key"] for m in members}
            extra = [i for i in trigger.indicators if i["key"] not in seen]
            js = {x for d in docs for x in d.get("jurisdictions") or []}
            ags = {a for d in docs for a in d.get("agencies") or []}
            opening = dataclasses.replace(
                trigger,
                indicators=tuple(members + extra),
                jurisdictions=tuple(sorted(js | set(trigger.jurisdictions))),
                agencies=tuple(sorted(ags | set(trigger.agencies))),
            )
            key = orjson.dumps(dataclasses.asdict(opening), default=str)
            forms.setdefault(key, (set(), opening))[0].update([token] if not legacy else tokens)
        return [(frozenset(t), opening) for t, opening in forms.values()]

    def apply(self, by_dedup: dict[str, list[Routed]], result: EngineResult) -> None:
        """Apply triggers to the versions of each dedup key (``AlertBook.commit``, retried)."""
        now = self.clock.now()
        replays: dict[str, list[Emission]] = {}

        def change(dedup: str, versions: list[Version]) -> list[Emission] | None:
            replays[dedup] = []
            emitted: list[Emission] = []
            for routed in by_dedup[dedup]:
                trigger = routed.trigger
                for version in {
                    v.key: v for v in current_versions(versions, routed.tokens).values()
                }.values():
                    if trigger.trigger_id in version.alert.get("seen_triggers", []):
                        earlier = [
                            e for e in version.alert["timeline"]
                            if e.get("trigger") == trigger.trigger_id and "event_id" in e
                        ]  # fmt: skip
                        replays[dedup].append((version, version.readers, earlier))

                def step(
                    alert: Alert | None, tokens: frozenset[str], routed: Routed = routed
                ) -> Transition | None:
                    trigger = routed.trigger
                    if alert is not None and trigger.trigger_id in alert.get("seen_triggers", []):
                        return None  # a replay: its events are announced again below
                    reopening = alert is None or alert["status"] != "open"
                    if trigger.decay_only and reopening:
                        return None  # a decaying score alone never opens or re-opens an alert
                    if routed.opening is not None and reopening:
                        trigger = routed.opening
                    new, events = open_or_update(alert, trigger, now,
                                                 coalesce=self.ruleset.coalesce)  # fmt: skip
                    self.book.stamp(new, events)
                    return new, events

                emitted.extend(route(versions, routed.tokens, step))
            return emitted or None

        pairs = self.book.commit(by_dedup, change)
        # A replayed trigger's events were written before: announce them again (idempotent).
        again = [pair for pairs_ in replays.values() for pair in pairs_]
        self.book.emit(again)
        result.replayed += len(again)
        result.alerts_written += len({v.key for v, _, _ in pairs})
        result.events += sum(len(e) for _, _, e in pairs) + sum(len(e) for _, _, e in again)


def _merged(routed: list[Routed]) -> list[Routed]:
    """Routed triggers that differ only in their tokens, as one (fewer forks, same outcome)."""
    out: dict[bytes, Routed] = {}
    for r in routed:
        key = _trigger_key(r)
        held = out.get(key)
        out[key] = r if held is None else dataclasses.replace(held, tokens=held.tokens | r.tokens)
    return list(out.values())


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
                dedup = hit.doc.get("dedup_key")
                if not isinstance(dedup, str) or "reader_tokens" not in hit.doc:
                    continue  # stored before versions: nobody reads it
                outcome = book.transact_version(dedup, hit.key, change)
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
