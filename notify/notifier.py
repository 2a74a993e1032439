"""Alert events -> one webhook delivery job per agency endpoint concerned.

DOMAIN.md "Early-warning levels" (each concerned jurisdiction is notified) and
"Sharing" (every payload is the sharing policy's view for the receiving
agency, ``Purpose.NOTIFY``; every release is audited), "Noninterference" (an
event reaches an agency only if it belongs to that agency's own version of the
alert, records/alerts.py, and the payload is that version). A stage of the one
consumer loop (core/consuming.py) on ``intel.alerts``, group
``threatbay-notifier``. Job ids are ``<event id>|<agency>`` and are created
with create-only writes, so a replayed event adds nothing (records/deliveries.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from core import names, policy
from core.alert_views import alert_view
from core.alerts import Alert
from core.allowlist import AllowList
from core.clock import Clock, format_timestamp
from core.consuming import ConsumerStage, DeadLetter, Handled
from core.errors import UnknownAgency
from core.ports import Bus, Incoming, Store
from core.redaction import event_for
from records.agencies import AgencyRegistry
from records.alerts import AlertBook, shown_event
from records.allowlists import AllowListBook
from records.audit import PLATFORM, AuditEntry, AuditLog, Party, release_entry
from records.deliveries import PENDING, Deliveries, DeliveryJob
from records.webhooks import WebhookDirectory, WebhookEndpoint

log = logging.getLogger("threatbay.notify")

# One delivery per jurisdiction notification; 'opened' and 'level_raised' always come
# with one 'notified' per jurisdiction, so they are not delivered separately.
DELIVERED_EVENTS = frozenset({"notified", "renotified", "resolved", "expired"})


def event_problem(event: Any) -> str | None:
    """Why a decoded ``intel.alerts`` message is not an alert event; None when it is one."""
    if not isinstance(event, dict):
        return "an alert event must be a JSON object"
    for name in ("id", "type", "alert_id"):
        if not isinstance(event.get(name), str):
            return f"alert event has no string {name!r}"
    jurisdictions = event.get("jurisdictions")
    if not isinstance(jurisdictions, list) or not all(isinstance(j, str) for j in jurisdictions):
        return "alert event has no list of jurisdictions"
    return None


class Notifier(ConsumerStage):
    """Creates delivery jobs for the notifying events of each batch (module docstring)."""

    name = "notifier"
    topic = names.TOPIC_ALERTS
    group = names.GROUP_NOTIFIER

    def __init__(
        self,
        store: Store,
        bus: Bus,
        clock: Clock,
        sharing: policy.SharingPolicy,
        *,
        registry: AgencyRegistry | None = None,
        audit: AuditLog | None = None,
        batch_size: int = 200,
        book: AlertBook | None = None,
    ) -> None:
        self.store, self.bus, self.clock, self.sharing = store, bus, clock, sharing
        self.book = book or AlertBook(store, bus, clock, sharing)
        self.directory = WebhookDirectory(store)
        self.deliveries = Deliveries(store, clock)
        self.registry = registry or AgencyRegistry(store, clock)
        self.allowlists = AllowListBook(store, clock)
        self.audit = audit or AuditLog(store, clock)
        self.batch_size = batch_size

    def _reader(self, endpoint: WebhookEndpoint) -> policy.Reader:
        try:
            return policy.reader_for(self.registry.get(endpoint.agency_id))
        except UnknownAgency:
            return policy.Reader(endpoint.agency_id, endpoint.jurisdiction)

    def handle(self, messages: Sequence[Incoming]) -> Handled:
        """Create delivery jobs for the notifying events among ``messages``."""
        dead: list[DeadLetter] = []
        events: list[dict[str, Any]] = []
        for message in messages:
            try:
                event = orjson.loads(message.value)
            except orjson.JSONDecodeError as exc:
                dead.append(DeadLetter.of(message, f"undecodable alert event: {exc}"))
                continue
            problem = event_problem(event)
            if problem is not None:
                dead.append(DeadLetter.of(message, problem))
            else:
                events.append(event)
        self.notify(events)
        return Handled(dead, len(messages))

    def process(self, messages: Sequence[Incoming]) -> int:
        """Create the delivery jobs of ``messages`` (benches); the jobs created."""
        return self.notify(
            [e for m in messages if event_problem(e := orjson.loads(m.value)) is None]
        )

    def notify(self, events: Sequence[dict[str, Any]]) -> int:
        """Create a job per endpoint concerned by each notifying event; returns the jobs created."""
        events = [e for e in events if e["type"] in DELIVERED_EVENTS]
        if not events:
            return 0
        now = format_timestamp(self.clock.now())
        versions = sorted({str(e.get("version") or e["alert_id"]) for e in events})
        found = self.store.get_many(names.INDEX_ALERTS, versions)
        endpoints: dict[tuple[str, ...], list[WebhookEndpoint]] = {}
        readers: dict[str, policy.Reader] = {}
        allowed: dict[str, AllowList] = {}
        jobs: list[DeliveryJob] = []
        releases: list[AuditEntry] = []
        for event in events:
            scope = tuple(sorted(event["jurisdictions"]))
            if scope not in endpoints:
                endpoints[scope] = self.directory.in_jurisdictions(scope)
            for endpoint in endpoints[scope]:
                if endpoint.agency_id not in readers:
                    readers[endpoint.agency_id] = self._reader(endpoint)
                reader = readers[endpoint.agency_id]
                tags = policy.reader_tags(reader, policy.Purpose.NOTIFY)
                if "readers" in event and not set(tags) & set(event["readers"]):
                    continue  # an event of another agency's version of the alert
                stored = found.get(str(event.get("version") or event["alert_id"]))
                alert: Alert | None = stored.doc if stored is not None else None
                if alert is None or tags[0] not in (alert.get("reader_tokens") or ()):
                    alert = self.book.version_for(event["alert_id"], tags)
                if alert is None:
                    continue
                view = alert_view(self.sharing, reader, policy.Purpose.NOTIFY, alert)
                if view is None:
                    continue  # nothing in this alert may be shown to that agency
                if endpoint.agency_id not in allowed:
                    allowed[endpoint.agency_id] = self.allowlists.allow_list(endpoint.agency_id)
                if all(allowed[endpoint.agency_id].hits(i) for i in view["indicators"]):
                    continue  # every indicator is on that agency's allow-list (issue #19)
                view.pop("timeline", None)
                job_id = f"{event['id']}|{endpoint.agency_id}"
                jobs.append(
                    {
                        "id": job_id,
                        "state": PENDING,
                        "agency": endpoint.agency_id,
                        "jurisdiction": endpoint.jurisdiction,
                        "url": endpoint.url,
                        "alert_id": event["alert_id"],
                        "event_id": event["id"],
                        "event_type": event["type"],
                        "payload": {
                            "delivery_id": job_id,
                            "event": {
                                **shown_event(event),
                                "event": event_for(reader.jurisdiction, event["event"]),
                            },
                            "alert": view,
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
                        action="alerts.notify",
                        purpose=policy.Purpose.NOTIFY.value,
                        actor=PLATFORM,
                        to=Party(endpoint.agency_id, endpoint.jurisdiction),
                        target=event["alert_id"],
                        source_agency=None,
                        source_jurisdictions=[
                            j for i in view["indicators"] for j in i.get("jurisdictions", [])
                        ],
                        tlp=view.get("tlp"),
                        redacted=False,
                        rule="policy:decide_record",
                        record_key=view["indicator_keys"][:100],
                    )
                )
        created = self.deliveries.create(jobs)
        entries = [entry for entry, new in zip(releases, created, strict=True) if new]
        if entries:
            # Durable before the batch is committed: a release is never unaudited.
            self.audit.append(entries)
            self.audit.flush()
        return len(entries)
