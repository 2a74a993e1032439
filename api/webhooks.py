"""Joint notification by webhook: per-agency endpoints, signed, retried, logged.

Issue 5 "Delivery"; DOMAIN.md "Early-warning levels" (each concerned
jurisdiction is notified) and "Sharing" (every payload is the sharing
policy's view for the receiving agency, ``Purpose.NOTIFY``; cross-border
releases are audited).

Three parts, each runnable in its own loop so delivery never blocks the
alert engine:

- ``Notifier``: consumes ``intel.alerts`` (group ``threatbay-notifier``) and
  turns each notifying event into one delivery job per agency with a webhook
  in the event's jurisdictions. Job ids are ``<event id>|<agency>`` and are
  created with create-only writes, so a replayed event adds nothing.
- ``Deliverer.delivery_tick(now)``: sends due jobs with httpx (timeout),
  signs them (``core/webhook_signing.py``), logs every attempt on the job,
  retries with exponential backoff and marks a job ``dead`` after
  ``max_attempts``. Jobs live in ``threatbay-deliveries``, so pending ones
  survive a restart.
- ``webhooks_router``: register an agency's endpoint (the secret is shown
  once), list deliveries (dead ones included), retry a dead one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.alerts import alert_view, audit, decode_cursor, encode_cursor
from api.auth import CurrentPrincipal
from api.errors import ERROR_RESPONSES
from api.registry import AgencyRegistry
from api.taxii.errors import TaxiiError
from core import names, policy
from core.access import Agency
from core.clock import Clock, format_timestamp, parse_timestamp
from core.consuming import consume_until, drain_until_idle
from core.errors import StoreUnavailable, UnknownAgency
from core.ports import Bus, Consumer, Incoming, Put, Range, Sort, Store, Term
from core.ports import Query as StoreQuery
from core.webhook_signing import HEADER_EVENT, new_secret, sign

log = logging.getLogger("threatbay.webhooks")

# One delivery per jurisdiction notification; 'opened' and 'level_raised' always come
# with one 'notified' per jurisdiction, so they are not delivered separately.
DELIVERED_EVENTS = frozenset({"notified", "renotified", "resolved", "expired"})
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


# --------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    agency_id: str
    jurisdiction: str
    url: str
    secret: str
    active: bool = True


class WebhookDirectory:
    """Agencies' webhook endpoints and secrets (index ``threatbay-webhooks``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, agency: Agency, url: str) -> str:
        """Set ``agency``'s endpoint with a fresh secret; returns the secret (shown once)."""
        secret = new_secret()
        doc = {
            "agency_id": agency.id,
            "jurisdiction": agency.jurisdiction,
            "url": url,
            "secret": secret,
            "active": True,
        }
        [result] = self.store.put_many(
            names.INDEX_WEBHOOKS, [Put(key=agency.id, doc=doc, blind=True)]
        )
        if not result.ok:
            raise StoreUnavailable("store refused the webhook registration")
        return secret

    def get(self, agency_id: str) -> WebhookEndpoint | None:
        stored = self.store.get(names.INDEX_WEBHOOKS, agency_id)
        if stored is None:
            return None
        d = stored.doc
        return WebhookEndpoint(
            d["agency_id"], d["jurisdiction"], d["url"], d["secret"], bool(d.get("active", True))
        )

    def in_jurisdictions(self, jurisdictions: Sequence[str]) -> list[WebhookEndpoint]:
        page = self.store.search(
            names.INDEX_WEBHOOKS,
            StoreQuery(
                filters=(Term("jurisdiction", tuple(jurisdictions)), Term("active", (True,))),
                limit=1000,
            ),
        )
        return [
            WebhookEndpoint(
                h.doc["agency_id"], h.doc["jurisdiction"], h.doc["url"], h.doc["secret"]
            )
            for h in page.hits
        ]


# ---------------------------------------------------------------- notifier


class Notifier:
    """Alert events -> one delivery job per agency endpoint (module docstring)."""

    def __init__(self, store: Store, bus: Bus, clock: Clock, sharing: policy.SharingPolicy) -> None:
        self.store, self.bus, self.clock, self.sharing = store, bus, clock, sharing
        self.directory = WebhookDirectory(store)
        self.registry = AgencyRegistry(store, clock)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; transient store failures back off and retry."""
        consumer = self.bus.consumer(names.TOPIC_ALERTS, names.GROUP_NOTIFIER)
        consume_until(stop, consumer, self.step, log)

    def step(self, consumer: Consumer, timeout_s: float = 0.25) -> int:
        messages = consumer.poll(max_records=200, timeout_s=timeout_s)
        if not messages:
            return 0
        self.process(messages)
        consumer.commit()
        return len(messages)

    def drain(self, consumer: Consumer, idle_polls: int = 2) -> int:
        """Process until the topic has been empty for ``idle_polls`` polls (tests, replay)."""
        return drain_until_idle(lambda: self.step(consumer, timeout_s=0.1), idle_polls)

    def _reader(self, endpoint: WebhookEndpoint) -> policy.Reader:
        try:
            agency = self.registry.get(endpoint.agency_id)
            roles = frozenset(agency.roles)
            consent = frozenset(agency.crossborder_consent)
        except UnknownAgency:
            roles, consent = frozenset(), frozenset()
        return policy.Reader(endpoint.agency_id, endpoint.jurisdiction, roles, consent)

    def process(self, messages: Sequence[Incoming]) -> int:
        """Create delivery jobs for the notifying events among ``messages``."""
        now = self.clock.now()
        puts: list[Put] = []
        audits: list[tuple[WebhookEndpoint, dict[str, Any], dict[str, Any]]] = []
        alerts: dict[str, dict[str, Any] | None] = {}
        endpoints: dict[tuple[str, ...], list[WebhookEndpoint]] = {}
        readers: dict[str, policy.Reader] = {}
        events: list[dict[str, Any]] = []
        for message in messages:
            try:
                event = orjson.loads(message.value)
                if event["type"] in DELIVERED_EVENTS and isinstance(event["alert_id"], str):
                    events.append(event)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.error("undecodable alert event at offset %s", message.offset)
        found = self.store.get_many(names.INDEX_ALERTS, sorted({e["alert_id"] for e in events}))
        alerts.update({k: v.doc for k, v in found.items()})
        for event in events:
            event_type, alert_id = event["type"], event["alert_id"]
            alert = alerts.get(alert_id)
            if alert is None:
                continue
            scope = tuple(sorted(event["jurisdictions"]))
            if scope not in endpoints:
                endpoints[scope] = self.directory.in_jurisdictions(scope)
            for endpoint in endpoints[scope]:
                if endpoint.agency_id not in readers:
                    readers[endpoint.agency_id] = self._reader(endpoint)
                view = alert_view(
                    self.sharing, readers[endpoint.agency_id], policy.Purpose.NOTIFY, alert
                )
                if view is None:
                    continue  # nothing in this alert may be shown to that agency
                view.pop("timeline", None)
                job_id = f"{event['id']}|{endpoint.agency_id}"
                payload = {"delivery_id": job_id, "event": event, "alert": view}
                puts.append(
                    Put(
                        key=job_id,
                        expected=None,
                        doc={
                            "id": job_id,
                            "state": PENDING,
                            "agency": endpoint.agency_id,
                            "jurisdiction": endpoint.jurisdiction,
                            "url": endpoint.url,
                            "alert_id": alert_id,
                            "event_id": event["id"],
                            "event_type": event_type,
                            "payload": payload,
                            "attempts": 0,
                            "next_attempt_at": format_timestamp(now),
                            "created": format_timestamp(now),
                            "updated": format_timestamp(now),
                            "log": [],
                        },
                    )
                )
                audits.append((endpoint, event, view))
        if not puts:
            return 0
        results = self.store.put_many(names.INDEX_DELIVERIES, puts)
        if any(not r.ok and not r.conflict for r in results):
            raise StoreUnavailable("store refused delivery jobs")
        created = 0
        entries: list[Put] = []
        for result, (endpoint, event, view) in zip(results, audits, strict=True):
            if result.conflict:
                continue  # already created by an earlier pass (replay)
            created += 1
            source_js = sorted({j for i in view["indicators"] for j in i.get("jurisdictions", [])})
            entries.append(
                Put(
                    key=f"audit--{uuid.uuid4()}",
                    blind=True,
                    doc={
                        "at": format_timestamp(now),
                        "action": "alerts.notify",
                        "actor_agency": "threatbay",
                        "actor_jurisdiction": None,
                        "target": event["alert_id"],
                        "to_agency": endpoint.agency_id,
                        "to_jurisdiction": endpoint.jurisdiction,
                        "cross_border": any(j != endpoint.jurisdiction for j in source_js),
                        "source_jurisdiction": source_js,
                        "purpose": "notify",
                        "record_key": view["indicator_keys"][:100],
                        "rule": "policy:decide_record",
                    },
                )
            )
        if entries:
            self.store.put_many(names.INDEX_AUDIT, entries)
        return created


# --------------------------------------------------------------- deliverer


Sender = Callable[[str, bytes, dict[str, str], float], int]


class HttpxSender:
    """POSTs with one shared httpx client (building a client costs ~150 ms: TLS context)."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(follow_redirects=False)
            client = self._client
        return client.post(url, content=body, headers=headers, timeout=timeout_s).status_code

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class Deliverer:
    """Sends due delivery jobs with retries and backoff (module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(seconds=10),
        max_delay: timedelta = timedelta(hours=1),
        timeout_s: float = 5.0,
        workers: int = 8,
        sender: Sender | None = None,
    ) -> None:
        self.store, self.clock = store, clock
        self.directory = WebhookDirectory(store)
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self.timeout_s, self.sender = timeout_s, sender or HttpxSender()
        self.workers = workers
        self.lease = max(timedelta(seconds=60), timedelta(seconds=4 * timeout_s))

    def backoff(self, attempts: int) -> timedelta:
        """Delay before attempt ``attempts + 1``: base × 2^(attempts − 1), capped."""
        return min(self.base_delay * (1 << max(attempts - 1, 0)), self.max_delay)

    def delivery_tick(self, now: datetime, limit: int = 200) -> dict[str, int]:
        """Send every pending job due at ``now``; returns counts by outcome."""
        counts = {DELIVERED: 0, "retry": 0, DEAD: 0}
        stamp = format_timestamp(now)
        page = self.store.search(
            names.INDEX_DELIVERIES,
            StoreQuery(
                filters=(
                    Term("state", (PENDING,)),
                    Range("next_attempt_at", lte=stamp),
                ),
                sort=(Sort("next_attempt_at"),),
                limit=limit,
            ),
        )
        current = self.store.get_many(names.INDEX_DELIVERIES, [h.key for h in page.hits])
        due = [
            st
            for st in current.values()
            if st.doc["state"] == PENDING and st.doc["next_attempt_at"] <= stamp
        ]
        # Claim before sending: the job's next attempt moves ``lease`` ahead under
        # optimistic concurrency, so another deliverer (a second alerts process) neither
        # sees it due nor can claim it; a deliverer killed mid-send leaves it due again
        # once the lease runs out (at-least-once; receivers dedupe on the delivery id).
        lease_until = format_timestamp(now + self.lease)
        claims = self.store.put_many(
            names.INDEX_DELIVERIES,
            [Put(st.key, {**st.doc, "next_attempt_at": lease_until}, st.version) for st in due],
        )
        claimed = [
            (st.key, dict(st.doc), claim.version)
            for st, claim in zip(due, claims, strict=True)
            if claim.ok and claim.version is not None
        ]
        jobs = [job for _, job, _ in claimed]
        # Endpoints are independent: one slow agency must not hold up the others.
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            outcomes = list(pool.map(lambda job: self._attempt(job, now), jobs))
        results = self.store.put_many(
            names.INDEX_DELIVERIES,
            [Put(key=key, doc=job, expected=version) for key, job, version in claimed],
        )
        for outcome, result in zip(outcomes, results, strict=True):
            if result.ok:
                counts[outcome] += 1
        return counts

    def _attempt(self, job: dict[str, Any], now: datetime) -> str:
        endpoint = self.directory.get(job["agency"])
        body = orjson.dumps(job["payload"])
        status: int | None = None
        error: str | None = None
        if endpoint is None or not endpoint.active:
            error = "no active webhook endpoint for the agency"
        else:
            headers = sign(endpoint.secret, body, now, job["id"])
            headers[HEADER_EVENT] = job["event_type"]
            try:
                status = self.sender(endpoint.url, body, headers, self.timeout_s)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        job["attempts"] = int(job["attempts"]) + 1
        job["log"] = [
            *job["log"],
            {
                "at": format_timestamp(now),
                "attempt": job["attempts"],
                "status": status,
                "error": error,
                "url": endpoint.url if endpoint else None,
            },
        ][-20:]
        job["updated"] = format_timestamp(now)
        if status is not None and 200 <= status < 300:
            job["state"] = DELIVERED
            job["delivered_at"] = format_timestamp(now)
            return DELIVERED
        if job["attempts"] >= self.max_attempts:
            job["state"] = DEAD
            return DEAD
        job["next_attempt_at"] = format_timestamp(now + self.backoff(job["attempts"]))
        return "retry"

    def run(self, stop: threading.Event, every_s: float = 1.0) -> None:
        """Loop: ``delivery_tick`` every ``every_s`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                self.delivery_tick(self.clock.now())
            except StoreUnavailable as exc:
                log.warning("delivery tick skipped: %s", exc)
            stop.wait(every_s)


# ------------------------------------------------------------------ router


class WebhookIn(BaseModel):
    url: str = Field(..., min_length=8, max_length=2000, pattern=r"^https?://")


def _services(request: Request) -> Any:
    return request.app.state.services


Services = Annotated[Any, Depends(_services)]


def webhooks_router() -> APIRouter:
    """``/api/v1/webhooks`` and ``/api/v1/deliveries``."""
    router = APIRouter(prefix="/api/v1", tags=["notifications"], responses=ERROR_RESPONSES)

    @router.put("/webhooks/{agency_id}")
    def register_webhook(
        agency_id: str, body: WebhookIn, principal: CurrentPrincipal, svc: Services
    ) -> JSONResponse:
        """Set an agency's webhook URL; answers the new signing secret once."""
        if not principal.has("admin"):
            raise TaxiiError(403, "Forbidden", "registering a webhook needs the admin role")
        if principal.agency.id != agency_id and "admin" not in principal.agency.roles:
            raise TaxiiError(403, "Forbidden", "you may only register your own agency's webhook")
        try:
            agency = AgencyRegistry(svc.store, svc.clock).get(agency_id)
        except UnknownAgency as exc:
            raise TaxiiError(404, "Not Found", str(exc)) from exc
        secret = WebhookDirectory(svc.store).register(agency, body.url)
        audit(svc, "webhooks.register", principal, agency_id)
        return JSONResponse({"agency_id": agency_id, "url": body.url, "secret": secret})

    @router.get("/deliveries")
    def list_deliveries(
        principal: CurrentPrincipal,
        svc: Services,
        state: Literal["pending", "delivered", "dead"] | None = None,
        agency: str | None = None,
        alert_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: str | None = None,
    ) -> JSONResponse:
        """Delivery jobs with their attempt logs (admins: all; others: their own)."""
        if not principal.has("admin", "analyst"):
            raise TaxiiError(403, "Forbidden", "this needs the analyst or admin role")
        filters: list[Any] = []
        if not principal.has("admin"):
            agency = principal.agency.id
        if agency:
            filters.append(Term("agency", (agency,)))
        if state:
            filters.append(Term("state", (state,)))
        if alert_id:
            filters.append(Term("alert_id", (alert_id,)))
        page = svc.store.search(
            names.INDEX_DELIVERIES,
            StoreQuery(
                filters=tuple(filters),
                sort=(Sort("created", "desc"),),
                limit=limit,
                after=decode_cursor(cursor) if cursor else None,
            ),
        )
        items = [{k: v for k, v in h.doc.items() if k != "payload"} for h in page.hits]
        nxt = encode_cursor(page.hits[-1].cursor) if page.more and page.hits else None
        return JSONResponse({"items": items, "next_cursor": nxt})

    @router.post("/deliveries/{job_id}/retry")
    def retry_delivery(job_id: str, principal: CurrentPrincipal, svc: Services) -> JSONResponse:
        """Put a dead job back in the queue (admin)."""
        if not principal.has("admin"):
            raise TaxiiError(403, "Forbidden", "this needs the admin role")
        stored = svc.store.get(names.INDEX_DELIVERIES, job_id)
        if stored is None:
            raise TaxiiError(404, "Not Found", f"no delivery {job_id}")
        if stored.doc["state"] != DEAD:
            return JSONResponse({"detail": f"delivery is {stored.doc['state']}"}, 409)
        now = format_timestamp(svc.clock.now())
        doc = {
            **stored.doc,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "updated": now,
        }
        [res] = svc.store.put_many(
            names.INDEX_DELIVERIES, [Put(key=job_id, doc=doc, expected=stored.version)]
        )
        if res.conflict:
            return JSONResponse({"detail": "delivery changed meanwhile; retry"}, 409)
        audit(svc, "deliveries.retry", principal, job_id)
        return JSONResponse({k: v for k, v in doc.items() if k != "payload"})

    return router


def due_in(job: dict[str, Any], now: datetime) -> float:
    """Seconds until a job's next attempt (negative when overdue)."""
    return (parse_timestamp(job["next_attempt_at"]) - now).total_seconds()
