"""The respond stage: proposals from alerts, case notifications, and the respond tick.

- ``Proposer`` (the one consumer loop, core/consuming.py, on ``intel.alerts``,
  group ``threatbay-case-proposer``): an alert at ``cases.propose_min_level``
  (ORANGE) or above that concerns ``cases.propose_min_jurisdictions`` (2) or
  more jurisdictions gets one case proposal (its id derives from the alert's,
  so a replayed event proposes nothing new). The correlate room is untouched:
  the alert engine's events are the hook.
- ``CaseNotifier`` (on ``intel.cases``, group ``threatbay-case-notifier``):
  case events that ask an agency to act (a task assigned or overdue, a request
  received or answered, a clock coming due or breached, a proposal, a lead
  change) become webhook delivery jobs (records/deliveries.py), sent, signed and
  retried by the notify stage's deliverer. Each payload is the receiving
  agency's own view (``Purpose.NOTIFY``): an event about an item it may not
  see is never sent to it. Every release is audited.
- ``run_respond_tick``: every ``cases.tick_s``, announce case events a failed
  publish left in the outbox, then escalate overdue tasks and requests and
  run the statutory clocks (``Responder.tick``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from core import names
from core.alerts import Level
from core.clock import format_timestamp
from core.consuming import ConsumerStage, DeadLetter, Handled
from core.errors import Poison, Unavailable, UnknownAgency
from core.policy import Purpose, Reader, reader_for
from core.ports import Bus, Incoming
from records.audit import PLATFORM as AUDIT_PLATFORM
from records.audit import AuditEntry, Party, release_entry
from records.deliveries import PENDING, DeliveryJob
from respond import cases as model
from respond.service import Responder, summary
from respond.sharing import case_view, entry_view

log = logging.getLogger("threatbay.respond")

#: Case events that become webhook deliveries (the rest are timeline and stream only).
DELIVERED = frozenset(
    {
        "proposed",
        "opened",
        "participant_added",
        "lead_changed",
        "task_created",
        "task_declined",
        "task_done",
        "task_cancelled",
        "task_overdue",
        "task_renotified",
        "request_sent",
        "request_answered",
        "request_overdue",
        "request_renotified",
        "clock_due_soon",
        "clock_breached",
    }
)


def _decode(message: Incoming) -> dict[str, Any]:
    try:
        value = orjson.loads(message.value)
    except orjson.JSONDecodeError as exc:
        raise Poison(f"undecodable event: {exc}") from None
    if not isinstance(value, dict):
        raise Poison("an event must be a JSON object")
    return value


class Proposer(ConsumerStage):
    """Alert events -> case proposals (module docstring)."""

    name = "case-proposer"
    topic = names.TOPIC_ALERTS
    group = names.GROUP_CASE_PROPOSER

    def __init__(self, responder: Responder, bus: Bus, *, batch_size: int = 200) -> None:
        self.responder = responder
        self.bus = bus
        self.batch_size = batch_size
        self.min_rank = Level.parse(responder.settings.propose_min_level).rank
        self.min_jurisdictions = responder.settings.propose_min_jurisdictions

    def handle(self, messages: Sequence[Incoming]) -> Handled:
        dead: list[DeadLetter] = []
        alert_ids: set[str] = set()
        for message in messages:
            try:
                event = _decode(message)
            except Poison as poison:
                dead.append(DeadLetter.of(message, poison.reason))
                continue
            if not isinstance(event.get("alert_id"), str) or not isinstance(event.get("type"), str):
                dead.append(DeadLetter.of(message, "alert event has no alert_id or type"))
                continue
            if event["type"] in ("opened", "level_raised", "updated", "notified"):
                alert_ids.add(event["alert_id"])
        self.propose(sorted(alert_ids))
        return Handled(dead, len(messages))

    def propose(self, alert_ids: Sequence[str]) -> int:
        """Propose a case for each qualifying alert that has none yet; the proposals made."""
        if not alert_ids:
            return 0
        book = self.responder.books.cases
        found = book.store.get_many(names.INDEX_ALERTS, list(alert_ids))
        made = 0
        for alert_id, stored in sorted(found.items()):
            alert = stored.doc
            try:
                rank = Level.parse(str(alert.get("level"))).rank
            except ValueError:
                continue
            if (
                alert.get("status") != "open"
                or rank < self.min_rank
                or len(alert.get("jurisdictions") or []) < self.min_jurisdictions
            ):
                continue
            now = book.clock.now()

            def propose(case: Any, a: Any = alert, t: Any = now) -> Any:
                return model.propose_from_alert(a, t) if case is None else None

            outcome = book.transact(model.case_id_for_alert(alert_id), propose)
            made += isinstance(outcome, tuple)
        return made


class CaseNotifier(ConsumerStage):
    """Case events -> signed webhook delivery jobs, per agency view (module docstring)."""

    name = "case-notifier"
    topic = names.TOPIC_CASES
    group = names.GROUP_CASE_NOTIFIER

    def __init__(self, responder: Responder, bus: Bus, *, batch_size: int = 200) -> None:
        self.responder = responder
        self.bus = bus
        self.batch_size = batch_size

    def handle(self, messages: Sequence[Incoming]) -> Handled:
        dead: list[DeadLetter] = []
        events: list[dict[str, Any]] = []
        for message in messages:
            try:
                event = _decode(message)
            except Poison as poison:
                dead.append(DeadLetter.of(message, poison.reason))
                continue
            if not all(isinstance(event.get(k), str) for k in ("id", "case_id", "type")):
                dead.append(DeadLetter.of(message, "case event has no id, case_id or type"))
                continue
            events.append(event)
        self.notify(events)
        return Handled(dead, len(messages))

    def _reader(self, agency_id: str) -> Reader | None:
        try:
            return reader_for(self.responder.books.agencies.get(agency_id))
        except UnknownAgency:
            return None

    def notify(self, events: Sequence[dict[str, Any]]) -> int:
        """Create one delivery job per agency concerned by each notifying event."""
        events = [e for e in events if e["type"] in DELIVERED]
        if not events:
            return 0
        books = self.responder.books
        cases = books.cases.get_many(sorted({e["case_id"] for e in events}))
        lookups = self.responder.lookups([c.doc for c in cases.values()])
        now = format_timestamp(books.cases.clock.now())
        jobs: list[DeliveryJob] = []
        releases: list[AuditEntry] = []
        readers: dict[str, Reader | None] = {}
        for event in events:
            stored = cases.get(event["case_id"])
            if stored is None:
                continue
            case = stored.doc
            entry = next((e for e in case["timeline"] if e.get("id") == event["id"]), None)
            if entry is None:
                continue  # noted by a write that never happened: nothing to tell
            targets = set(entry.get("notify") or [])
            if entry["type"] == "proposed" and case.get("proposal"):
                for invited in books.webhooks.in_jurisdictions(case["proposal"]["jurisdictions"]):
                    targets.add(invited.agency_id)
            for agency_id in sorted(targets):
                endpoint = books.webhooks.get(agency_id)
                if endpoint is None or not endpoint.active:
                    continue
                if agency_id not in readers:
                    readers[agency_id] = self._reader(agency_id)
                reader = readers[agency_id]
                if reader is None:
                    continue
                seen = entry_view(case, entry, reader, Purpose.NOTIFY, lookups)
                view = case_view(case, reader, Purpose.NOTIFY, lookups)
                if seen is None or view is None:
                    continue  # never tell an agency about what it may not see
                job_id = f"{event['id']}|{agency_id}"
                jobs.append(
                    {
                        "id": job_id,
                        "state": PENDING,
                        "agency": agency_id,
                        "jurisdiction": endpoint.jurisdiction,
                        "url": endpoint.url,
                        "case_id": case["id"],
                        "event_id": event["id"],
                        "event_type": f"case.{entry['type']}",
                        "payload": {
                            "delivery_id": job_id,
                            "event": {**seen, "case_id": case["id"]},
                            "case": summary(view),
                        },
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created": now,
                        "updated": now,
                        "log": [],
                    }
                )
                releases.append(
                    release_entry(
                        action="incidents.notify",
                        purpose=Purpose.NOTIFY.value,
                        actor=AUDIT_PLATFORM,
                        to=Party(agency_id, endpoint.jurisdiction),
                        target=case["id"],
                        source_agency=entry.get("by"),
                        source_jurisdictions=[entry.get("jurisdiction")],
                        tlp=view.get("tlp"),
                        redacted=bool(seen.get("redactions")),
                        rule="respond:entry_view",
                        record_key=entry.get("item"),
                    )
                )
        created = books.deliveries.create(jobs)
        entries = [e for e, new in zip(releases, created, strict=True) if new]
        if entries:
            books.audit.append(entries)
            books.audit.flush()
        return len(entries)


def respond_tick(responder: Responder) -> int:
    """One tick: sweep the case outbox, then escalate and run the clocks; the events written."""
    announced = responder.books.cases.announce_pending()
    return announced + responder.tick()


def run_respond_tick(responder: Responder, stop: threading.Event, every_s: float = 15.0) -> None:
    """Loop ``respond_tick`` every ``every_s`` seconds until ``stop``; an outage skips a tick."""
    while not stop.is_set():
        try:
            respond_tick(responder)
        except Unavailable as exc:
            log.warning("respond tick skipped: %s", exc)
        stop.wait(every_s)
