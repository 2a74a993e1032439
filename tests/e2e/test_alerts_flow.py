"""Early warning end to end on the embedded backends (issue 5 "Done means").

TAXII push by two agencies in different jurisdictions -> correlator -> alert
engine -> alert API, webhooks to a real local HTTP receiver that verifies
signatures, SSE with resume, acknowledgement, escalation on a fake clock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.alerts import alerts_router
from api.app import create_app
from api.stream import stream_router
from api.webhooks import webhooks_router
from core import names
from core.access import Agency
from core.clock import FakeClock, format_timestamp
from core.errors import BusUnavailable
from core.ports import Consumer, Outgoing, Put, Query, Term
from core.services import default_sharing
from core.settings import OutboxSettings, Settings
from core.webhook_signing import (
    HEADER_DELIVERY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ReplayGuard,
    verify,
)
from correlate.alerter import AlertEngine, alerts_tick, escalation_tick
from correlate.rules import load_ruleset
from correlate.worker import Correlator
from notify.deliverer import Deliverer
from notify.notifier import Notifier
from records.agencies import AgencyRegistry
from records.alerts import AlertBook, event_doc, event_id
from records.books import records_of
from records.webhooks import WebhookDirectory
from tests.e2e.conftest import TLP_AMBER, Key, indicator
from threatbay.bootstrap import Services, build, correlator_for

# ------------------------------------------------------------------ receiver


@dataclass
class Receiver:
    """A real webhook receiver on 127.0.0.1 that verifies every request like an agency would."""

    clock: FakeClock
    secrets: dict[str, str] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    raw: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    url: str = ""

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        agency = path.rstrip("/").rsplit("/", 1)[-1]
        self.raw.append((path, headers, body))
        verdict = verify(
            self.secrets.get(agency, ""),
            headers.get(HEADER_TIMESTAMP.lower()),
            body,
            headers.get(HEADER_SIGNATURE.lower()),
            self.clock.now(),
            delivery_id=headers.get(HEADER_DELIVERY.lower()),
            guard=self.guard,
        )
        if not verdict.ok:
            self.rejected.append(verdict.reason)
            return 409 if "replayed" in verdict.reason else 401
        self.accepted.append({"agency": agency, **orjson.loads(body)})
        return 204

    def for_agency(self, agency: str) -> list[dict[str, Any]]:
        return [d for d in self.accepted if d["agency"] == agency]


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[Receiver]:
    rec = Receiver(clock)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.send_response(rec.handle(self.path, headers, body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------ harness


@dataclass
class Platform:
    services: Services
    client: TestClient
    book: AlertBook
    engine: AlertEngine
    notifier: Notifier
    deliverer: Deliverer
    correlator: Correlator
    consumers: dict[str, Consumer]
    patience: int = 2  # empty polls before a drain stops (real Kafka needs more)

    def _drain(self, worker: Any, consumer: str) -> int:
        """Drain until idle; on real Kafka first wait (bounded) for the first message.

        A kafka-python poll can come back empty while a fetch or a group join is
        still under way, so "idle" alone is not "done" there.
        """
        total: int = worker.drain(self.consumers[consumer], self.patience)
        deadline = time.monotonic() + (15 if self.patience > 2 else 0)
        while total == 0 and time.monotonic() < deadline:
            total = worker.drain(self.consumers[consumer], self.patience)
        return total

    def correlate(self) -> None:
        self._drain(self.correlator, "raw")
        self.services.store.refresh(names.INDEX_INDICATORS)

    def alert(self) -> None:
        self._drain(self.engine, "changes")
        self.services.store.refresh(names.INDEX_ALERTS)
        self.services.store.refresh(names.INDEX_ALERT_EVENTS)

    def notify(self) -> dict[str, int]:
        self._drain(self.notifier, "alerts")
        self.services.store.refresh(names.INDEX_DELIVERIES)
        counts = self.deliverer.delivery_tick(self.services.clock.now())
        self.services.store.refresh(names.INDEX_DELIVERIES)
        return counts


def app_with_alerts(services: Services) -> FastAPI:
    app = create_app(services)
    app.include_router(alerts_router())
    app.include_router(stream_router())
    app.include_router(webhooks_router())
    return app


@pytest.fixture
def patience() -> int:
    """Empty polls before a drain stops; the real-backend module raises it."""
    return 2


@pytest.fixture
def platform(services: Services, keys: dict[str, Key], patience: int) -> Iterator[Platform]:
    book = AlertBook(services.store, services.bus, services.clock, default_sharing())
    consumers = {
        "raw": services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR),
        "changes": services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER),
        "alerts": services.bus.consumer(names.TOPIC_ALERTS, names.GROUP_NOTIFIER),
    }
    if patience > 2:  # real Kafka: join the groups now, while the topics are still empty
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for consumer in consumers.values():
                assert consumer.poll(timeout_s=0.5) == []
            # kafka-python's assignment() is the only sign that a join has completed.
            members = [getattr(c, "_consumer", None) for c in consumers.values()]
            if all(m is None or m.assignment() for m in members):
                break
    services.settings.webhooks.allowed_targets = ["127.0.0.1"]  # the tests' local receivers
    with TestClient(app_with_alerts(services)) as client:
        yield Platform(
            services=services,
            client=client,
            book=book,
            engine=AlertEngine(book, load_ruleset()),
            notifier=Notifier(services.store, services.bus, services.clock, default_sharing()),
            deliverer=Deliverer(services.store, services.clock, timeout_s=5.0),
            correlator=correlator_for(services),
            consumers=consumers,
            patience=patience,
        )


def auth(key: Key) -> dict[str, str]:
    return {"Authorization": key.bearer["Authorization"]}


def push(client: TestClient, key: Key, objects: list[dict[str, Any]]) -> None:
    response = client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
    )
    assert response.status_code == 202, response.text
    assert response.json()["success_count"] == len(objects)


def register_webhooks(p: Platform, keys: dict[str, Key], receiver: Receiver, *names_: str) -> None:
    """Endpoints on the local receiver, set on the host (an admin sets only its own
    jurisdiction's, and loopback only when allow-listed: tests/security/test_scoped_admin.py)."""
    directory = records_of(p.services).webhooks
    for name in names_:
        agency = keys[name].agency
        receiver.secrets[agency.id] = directory.register(agency, f"{receiver.url}/hook/{agency.id}")
    p.services.store.refresh(names.INDEX_WEBHOOKS)


def sse_frames(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "id" in fields:
            frames.append(
                {"id": fields["id"], "event": fields["event"], "data": orjson.loads(fields["data"])}
            )
    return frames


# ---------------------------------------------------------------------- tests


def test_two_jurisdictions_one_alert_notified_acknowledged_and_escalated(
    platform: Platform, keys: dict[str, Key], receiver: Receiver, clock: FakeClock
) -> None:
    p = platform
    register_webhooks(p, keys, receiver, "hk", "gd", "mo")
    hk = indicator(1, pattern="[domain-name:value = 'Bad.Example.COM.']", confidence=90)
    gd = indicator(2, pattern="[domain-name:value = 'bad.example.com']", confidence=80)
    push(p.client, keys["hk"], [hk])
    p.correlate()
    p.alert()
    push(p.client, keys["gd"], [gd])
    p.correlate()
    p.alert()

    # One alert, at the level the default rules give two jurisdictions with a high score.
    listing = p.client.get("/api/v1/alerts", headers=auth(keys["hk"])).json()
    assert len(listing["items"]) == 1, listing
    alert = listing["items"][0]
    assert alert["level"] == "ORANGE"
    assert alert["rule"] == "orange-cross-border"
    assert alert["jurisdictions"] == ["GD", "HK"]
    assert alert["indicator_keys"] == ["domain-name|value|bad.example.com"]
    assert alert["pending_jurisdictions"] == ["GD", "HK"]
    assert alert["measures"] and alert["issuing_authority"]

    # Webhooks: both concerned jurisdictions, signed; Macao is not concerned.
    counts = p.notify()
    assert counts["delivered"] == 2
    assert {d["agency"] for d in receiver.accepted} == {"hk-govcert", "gd-cac"}
    assert receiver.for_agency("mo-caric") == []
    assert all(d["alert"]["id"] == alert["id"] for d in receiver.accepted)
    assert all(d["alert"]["level"] == "ORANGE" for d in receiver.accepted)
    # A captured delivery sent again is refused by the receiver as a replay.
    path, headers, body = receiver.raw[0]
    import httpx

    replay = httpx.post(
        receiver.url + path,
        content=body,
        headers={
            HEADER_TIMESTAMP: headers[HEADER_TIMESTAMP.lower()],
            HEADER_SIGNATURE: headers[HEADER_SIGNATURE.lower()],
            HEADER_DELIVERY: headers[HEADER_DELIVERY.lower()],
        },
    )
    assert replay.status_code == 409
    # A delivery with a tampered body is refused as a bad signature.
    forged = httpx.post(
        receiver.url + path,
        content=body.replace(b"ORANGE", b"BLUE"),
        headers={
            HEADER_TIMESTAMP: headers[HEADER_TIMESTAMP.lower()],
            HEADER_SIGNATURE: headers[HEADER_SIGNATURE.lower()],
            HEADER_DELIVERY: "another-id",
        },
    )
    assert forged.status_code == 401

    # SSE: the events so far, then a resume after the first one gives the rest.
    r = p.client.get(
        "/api/v1/stream",
        params={"max_events": 3},
        headers=auth(keys["gd"]) | {"Last-Event-ID": "0"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(r.text)
    assert [f["event"] for f in frames] == ["opened", "notified", "notified"]
    assert frames[0]["data"]["alert"]["level"] == "ORANGE"
    resumed = sse_frames(
        p.client.get(
            "/api/v1/stream",
            params={"max_events": 2},
            headers=auth(keys["gd"]) | {"Last-Event-ID": frames[0]["id"]},
        ).text
    )
    assert [f["id"] for f in resumed] == [f["id"] for f in frames[1:3]]

    # The alert as a STIX report in each concerned jurisdiction's TAXII collection.
    taxii = p.client.get(
        "/taxii2/api/collections/shared-gd/objects/",
        params={"match[type]": "report"},
        headers=keys["gd"].basic,
    )
    assert taxii.status_code == 200, taxii.text
    [report] = taxii.json()["objects"]
    assert report["x_threatbay_alert"]["level"] == "ORANGE"
    assert report["x_threatbay_alert"]["alert_id"] == alert["id"]
    assert set(report["object_refs"]) == {hk["id"], gd["id"]}

    # Hong Kong acknowledges; Macao may not (not concerned).
    ack = p.client.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge",
        headers=auth(keys["hk"]),
        json={"note": "blocked at the perimeter"},
    )
    assert ack.status_code == 200, ack.text
    state = ack.json()["jurisdiction_state"]
    assert state["HK"]["acknowledged_by"] == "hk-govcert"
    assert state["GD"]["status"] == "notified"
    assert p.client.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge", headers=auth(keys["mo"])
    ).status_code in (403, 404)

    # Past the ORANGE deadline (1 h): Guangdong is flagged overdue and re-notified.
    clock.advance(timedelta(minutes=61))
    p.services.store.refresh(names.INDEX_ALERTS)
    assert escalation_tick(p.book, clock.now()) == 2  # overdue + renotified
    detail = p.client.get(f"/api/v1/alerts/{alert['id']}", headers=auth(keys["hk"])).json()
    assert [x["jurisdiction"] for x in detail["late"]] == ["GD"]
    assert detail["overdue_jurisdictions"] == ["GD"]
    assert [e["type"] for e in detail["timeline"]][-2:] == ["overdue", "renotified"]
    before = len(receiver.accepted)
    p.alert()
    p.notify()
    later = receiver.accepted[before:]
    assert [(d["agency"], d["event"]["type"]) for d in later] == [("gd-cac", "renotified")]
    # A second tick before the new deadline re-notifies nobody.
    p.services.store.refresh(names.INDEX_ALERTS)
    assert escalation_tick(p.book, clock.now()) == 0

    # ORANGE asks for an update every 6 h: past it, the issuing side is reminded (timeline
    # and stream), once; the agencies' webhooks only hear about GD's renewed lateness.
    clock.advance(timedelta(hours=6))
    p.services.store.refresh(names.INDEX_ALERTS)
    assert escalation_tick(p.book, clock.now()) == 2  # renotified (GD) + update_due
    detail = p.client.get(f"/api/v1/alerts/{alert['id']}", headers=auth(keys["hk"])).json()
    assert sorted(e["type"] for e in detail["timeline"][-2:]) == ["renotified", "update_due"]
    before = len(receiver.accepted)
    p.alert()
    p.notify()
    assert [(d["agency"], d["event"]["type"]) for d in receiver.accepted[before:]] == [
        ("gd-cac", "renotified")
    ]
    p.services.store.refresh(names.INDEX_ALERTS)
    assert escalation_tick(p.book, clock.now()) == 0

    # Audit trail of what the analysts did.
    records_of(p.services).audit.flush()
    audit = p.services.store.search(
        names.INDEX_AUDIT, Query(filters=(Term("action", ("alerts.acknowledge",)),), limit=10)
    )
    assert [h.doc["actor_agency"] for h in audit.hits] == ["hk-govcert"]

    # Filters, comments and resolution.
    def count(**params: Any) -> int:
        r = p.client.get("/api/v1/alerts", params=params, headers=auth(keys["gd"]))
        assert r.status_code == 200, r.text
        return len(r.json()["items"])

    assert count(level="ORANGE", status="open", jurisdiction="GD") == 1
    assert count(level="RED") == 0
    assert count(q="bad.example") == 1 and count(q="nothing-like-it") == 0
    assert count(rule="orange-cross-border", agency="hk-govcert") == 1
    note = p.client.post(
        f"/api/v1/alerts/{alert['id']}/comments",
        headers=auth(keys["gd"]),
        json={"text": "GD is on it"},
    )
    assert note.status_code == 201
    done = p.client.post(
        f"/api/v1/alerts/{alert['id']}/resolve",
        headers=auth(keys["gd"]),
        json={"reason": "domain sinkholed"},
    )
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert (
        p.client.post(
            f"/api/v1/alerts/{alert['id']}/acknowledge", headers=auth(keys["gd"])
        ).status_code
        == 409
    )
    before = len(receiver.accepted)
    p.notify()
    assert sorted((d["agency"], d["event"]["type"]) for d in receiver.accepted[before:]) == [
        ("gd-cac", "resolved"),
        ("hk-govcert", "resolved"),
    ]
    assert count(status="open") == 0 and count(status="resolved") == 1


def test_replaying_the_change_log_changes_no_alert(
    platform: Platform, keys: dict[str, Key]
) -> None:
    p = platform
    push(
        p.client,
        keys["hk"],
        [indicator(3, pattern="[domain-name:value = 'c2.example.net']", confidence=95)],
    )
    push(
        p.client,
        keys["gd"],
        [indicator(4, pattern="[domain-name:value = 'c2.example.net']", confidence=85)],
    )
    p.correlate()
    p.alert()
    page = p.services.store.search(names.INDEX_ALERTS, Query(limit=10))
    assert len(page.hits) == 1
    before = page.hits[0].doc
    replay = p.services.bus.consumer(names.TOPIC_CHANGES, "replay-check", from_beginning=True)
    p.engine.drain(replay, p.patience)
    p.services.store.refresh(names.INDEX_ALERTS)
    after = p.services.store.search(names.INDEX_ALERTS, Query(limit=10)).hits
    assert len(after) == 1
    assert after[0].doc["timeline"] == before["timeline"]
    assert after[0].doc["level"] == before["level"]


def test_surge_of_200_indicators_of_one_malware_family_gives_one_alert(
    platform: Platform, clock: FakeClock
) -> None:
    p = platform
    store = p.services.store
    for chunk in range(10):
        records, changes = [], []
        for i in range(chunk * 20, chunk * 20 + 20):
            clock.advance(timedelta(seconds=5))
            at = format_timestamp(clock.now())
            record: dict[str, Any] = {
                "key": f"ipv4-addr|value|203.0.113.{i % 250}-{i}",
                "observable_type": "ipv4-addr",
                "value": f"203.0.113.{i % 250}",
                "sources": [
                    {
                        "agency": "hk-govcert",
                        "jurisdiction": "HK",
                        "stix_id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, str(i))}",
                        "tlp": "green",
                        "confidence": 40,
                        "recipients": [],
                    }
                ],
                "sightings": [],
                "score": 35.0,
                "state": "active",
                "agencies": ["hk-govcert"],
                "jurisdictions": ["HK"],
                "agency_count": 1,
                "jurisdiction_count": 1,
                "tlp": "green",
                "sighted": False,
                "malware": ["malware--emotet"],
                "campaigns": [],
                "intrusion_sets": [],
                "first_seen": at,
                "last_seen": at,
            }
            records.append(Put(key=record["key"], doc=record, blind=True))
            changes.append(
                Outgoing(
                    key=record["key"],
                    value=orjson.dumps(
                        {"key": record["key"], "kinds": ["new_record"], "at": at, "record": record}
                    ),
                )
            )
        store.put_many(names.INDEX_INDICATORS, records)
        store.refresh(names.INDEX_INDICATORS)
        p.services.bus.publish(names.TOPIC_CHANGES, changes)
        p.alert()
    hits = store.search(names.INDEX_ALERTS, Query(limit=50)).hits
    assert len(hits) == 1
    alert = hits[0].doc
    assert alert["family"] == "surge"
    assert alert["cluster"]["value"] == "malware--emotet"
    assert alert["indicator_total"] == 200
    # Coalesced: a handful of timeline events, not one per indicator.
    assert len(alert["timeline"]) < 10, [e["type"] for e in alert["timeline"]]


def test_dead_delivery_is_visible_in_the_api(
    platform: Platform, keys: dict[str, Key], clock: FakeClock
) -> None:
    p = platform
    # An endpoint nobody listens on.
    r = p.client.put(
        "/api/v1/webhooks/hk-govcert",
        headers=auth(keys["ops"]),
        json={"url": "http://127.0.0.1:9/hook"},
    )
    assert r.status_code == 200
    p.services.store.refresh(names.INDEX_WEBHOOKS)
    p.deliverer.max_attempts = 3
    push(
        p.client,
        keys["hk"],
        [indicator(5, pattern="[domain-name:value = 'x.example.org']", confidence=95)],
    )
    push(
        p.client,
        keys["gd"],
        [indicator(6, pattern="[domain-name:value = 'x.example.org']", confidence=85)],
    )
    p.correlate()
    p.alert()
    assert p.notify() == {"delivered": 0, "retry": 1, "dead": 0}
    assert p.deliverer.delivery_tick(clock.now()) == {"delivered": 0, "retry": 0, "dead": 0}
    for _ in range(2):
        clock.advance(timedelta(minutes=5))
        p.services.store.refresh(names.INDEX_DELIVERIES)
        p.deliverer.delivery_tick(clock.now())
    p.services.store.refresh(names.INDEX_DELIVERIES)
    dead = p.client.get(
        "/api/v1/deliveries", params={"state": "dead"}, headers=auth(keys["ops"])
    ).json()["items"]
    assert len(dead) == 1
    assert dead[0]["agency"] == "hk-govcert" and dead[0]["attempts"] == 3
    assert all(entry["error"] for entry in dead[0]["log"])


TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"


def test_tlp_red_alert_reaches_only_named_recipients(
    platform: Platform, keys: dict[str, Key], receiver: Receiver
) -> None:
    # Issue 15 (noninterference): this test used to have HK name a GD agency and GD name
    # an HK agency as RED recipients of reports on one domain. RED never crosses a border,
    # so each could see only its own report, yet both were shown an ORANGE "reported in 2
    # jurisdictions" alert computed from the other's RED report: it asserted that leak.
    # Now the recipients are agencies of the source's own jurisdiction (where RED reaches
    # them), and the cross-border pair is checked to raise nothing for anyone.
    p = platform
    register_webhooks(p, keys, receiver, "hk", "gd", "gd2", "mo")
    domain = "[domain-name:value = 'red.example.com']"
    push(
        p.client,
        keys["gd"],
        [
            indicator(
                7, pattern=domain, confidence=95, tlp=TLP_RED, x_threatbay_recipients=["gd-cncert"]
            )
        ],
    )
    push(
        p.client,
        keys["gd2"],
        [
            indicator(
                8, pattern=domain, confidence=90, tlp=TLP_RED, x_threatbay_recipients=["gd-cac"]
            )
        ],
    )
    across = "[domain-name:value = 'red-across.example.com']"
    push(p.client, keys["hk"], [indicator(9, pattern=across, confidence=95, tlp=TLP_RED,
                                          x_threatbay_recipients=["gd-cac"])])  # fmt: skip
    push(p.client, keys["gd"], [indicator(10, pattern=across, confidence=90, tlp=TLP_RED,
                                          x_threatbay_recipients=["hk-govcert"])])  # fmt: skip
    p.correlate()
    p.alert()
    assert len(p.services.store.search(names.INDEX_ALERTS, Query(limit=5)).hits) == 1

    def listed(key: Key) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = p.client.get("/api/v1/alerts", headers=auth(key)).json()[
            "items"
        ]
        return items

    assert [a["level"] for a in listed(keys["gd"])] == ["YELLOW"]
    assert [a["level"] for a in listed(keys["gd2"])] == ["YELLOW"]
    assert listed(keys["mo"]) == []
    assert listed(keys["hk"]) == []  # not a recipient (and its own RED report raises nothing)
    alert_id = listed(keys["gd"])[0]["id"]
    assert p.client.get(f"/api/v1/alerts/{alert_id}", headers=auth(keys["mo"])).status_code == 404
    stream = p.client.get(
        "/api/v1/stream",
        params={"max_seconds": 1},
        headers=auth(keys["mo"]) | {"Last-Event-ID": "0"},
    )
    assert stream.status_code == 200 and sse_frames(stream.text) == []
    # RED is never put on a machine channel (core/policy.py): on its stream gd-cac sees
    # only its own report, which alone raises nothing; the alert reaches it by the API
    # (above) and by its webhook (below), where RED reaches named recipients.
    seen_by_gd = p.client.get(
        "/api/v1/stream",
        params={"max_seconds": 1},
        headers=auth(keys["gd"]) | {"Last-Event-ID": "0"},
    )
    assert sse_frames(seen_by_gd.text) == []
    p.notify()
    assert {d["agency"] for d in receiver.accepted} == {"gd-cac", "gd-cncert"}
    assert not any(
        "red.example.com" in str(d)
        for d in receiver.accepted
        if d["agency"] not in ("gd-cac", "gd-cncert")
    )
    # No jurisdiction's TAXII collection carries a report of it (RED never goes to a collection).
    reports = p.services.store.search(
        names.INDEX_OBJECTS, Query(filters=(Term("type", ("report",)),), limit=10)
    ).hits
    assert reports == []


def one_pending_delivery(services: Services, clock: FakeClock, receiver: Receiver) -> None:
    """An ORANGE alert notified to HK whose webhook job is written but not yet sent."""
    hk = Agency("hk-govcert", "GovCERT.HK", "HK", "identity--6a1f2a4e-9a3b-4c1d-8e7f-0a1b2c3d4e50")
    AgencyRegistry(services.store, clock).add_agency(hk)
    receiver.secrets["hk-govcert"] = WebhookDirectory(services.store).register(
        hk, f"{receiver.url}/hook/hk-govcert"
    )
    services.store.refresh(names.INDEX_WEBHOOKS)
    at = format_timestamp(clock.now())
    rec: dict[str, Any] = {
        "key": "url|value|http://evil.example/x", "observable_type": "url",
        "value": "http://evil.example/x", "score": 92.0, "state": "active", "tlp": "green",
        "sources": [{"agency": a, "jurisdiction": j, "tlp": "green", "stix_id": f"indicator--{j}"}
                    for a, j in (("hk-govcert", "HK"), ("gd-cac", "GD"))],
        "sightings": [], "agencies": ["gd-cac", "hk-govcert"], "jurisdictions": ["GD", "HK"],
        "agency_count": 2, "jurisdiction_count": 2, "sighted": False, "first_seen": at,
    }  # fmt: skip
    services.bus.publish(names.TOPIC_CHANGES, [Outgoing(key=rec["key"], value=orjson.dumps(
        {"key": rec["key"], "kinds": ["new_jurisdiction"], "at": at, "record": rec}))])  # fmt: skip
    book = AlertBook(services.store, services.bus, clock)
    AlertEngine(book, load_ruleset()).drain(
        services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)
    )
    Notifier(services.store, services.bus, clock, default_sharing()).drain(
        services.bus.consumer(names.TOPIC_ALERTS, names.GROUP_NOTIFIER)
    )
    services.store.refresh(names.INDEX_DELIVERIES)


def test_pending_deliveries_survive_a_restart(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    settings = Settings(data_dir=tmp_path / "restart")
    first = build(settings, clock=clock)
    one_pending_delivery(first, clock, receiver)
    first.close()  # the process stops before anything was sent

    second = build(settings, clock=clock)
    try:
        counts = Deliverer(second.store, clock).delivery_tick(clock.now())
        assert counts["delivered"] == 1
        [delivery] = receiver.for_agency("hk-govcert")
        assert delivery["event"]["type"] == "notified"
        assert delivery["alert"]["level"] == "ORANGE"  # score 92, two jurisdictions, no sighting
    finally:
        second.close()


def test_two_deliverers_at_once_send_each_job_once(
    services: Services, clock: FakeClock, receiver: Receiver
) -> None:
    one_pending_delivery(services, clock, receiver)
    both_read = threading.Barrier(2)
    waited: set[str] = set()
    deliverers = [Deliverer(services.store, clock) for _ in range(2)]
    original = services.store.put_many

    def put_many_after_both_read(index: str, puts: Any) -> Any:
        name = threading.current_thread().name
        if index == names.INDEX_DELIVERIES and name.startswith("tick") and name not in waited:
            waited.add(name)
            both_read.wait(timeout=10)  # both found the job due before either claims it
        return original(index, puts)

    counts: list[dict[str, int]] = []
    services.store.put_many = put_many_after_both_read  # type: ignore[method-assign]
    try:
        ticks = [
            threading.Thread(
                target=lambda d=d: counts.append(d.delivery_tick(clock.now())), name=f"tick{i}"
            )
            for i, d in enumerate(deliverers)
        ]
        for t in ticks:
            t.start()
        for t in ticks:
            t.join(30)
    finally:
        services.store.put_many = original  # type: ignore[method-assign]
    assert len(receiver.raw) == 1, "the job was sent by both deliverers"
    assert sorted(c["delivered"] for c in counts) == [0, 1]
    [delivery] = receiver.for_agency("hk-govcert")
    assert delivery["event"]["type"] == "notified"


def test_the_agency_filter_never_matches_an_agency_hidden_from_the_reader(
    platform: Platform, keys: dict[str, Key]
) -> None:
    p = platform
    # HK's report is GREEN (crosses to Macao); GD's is AMBER (stays in Guangdong).
    # Issue 15: Macao used to be shown an alert that only GD's AMBER report (hidden from
    # it) made, which this test asserted; Macao now reports the domain too, so it has an
    # alert of its own to filter.
    hk = indicator(11, pattern="[domain-name:value = 'hidden-partner.example']", confidence=90)
    gd = indicator(
        12,
        pattern="[domain-name:value = 'hidden-partner.example']",
        confidence=90,
        object_marking_refs=[TLP_AMBER],
    )
    mo = indicator(13, pattern="[domain-name:value = 'hidden-partner.example']", confidence=90)
    push(p.client, keys["hk"], [hk])
    push(p.client, keys["gd"], [gd])
    push(p.client, keys["mo"], [mo])
    p.correlate()
    p.alert()

    def listed(key: Key, agency: str) -> list[dict[str, Any]]:
        r = p.client.get("/api/v1/alerts", params={"agency": agency}, headers=auth(key))
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    assert len(listed(keys["gd"], "gd-cac")) == 1  # GD sees its own agency in the alert
    [seen] = listed(keys["mo"], "hk-govcert")  # Macao sees the alert through HK's report
    assert "gd-cac" not in seen["agencies"]
    # Filtering on the agency it cannot see must not reveal that agency is in the alert.
    assert listed(keys["mo"], "gd-cac") == []


def test_a_burst_of_events_larger_than_a_page_reaches_the_stream_whole(
    platform: Platform, keys: dict[str, Key]
) -> None:
    """More events within the stream's re-read window than one store page holds.

    A re-score pass or a campaign can open and notify hundreds of alerts in a
    second; the stream must page past what it already sent instead of
    re-reading the same first page.
    """
    p = platform
    push(p.client, keys["hk"], [indicator(21, pattern="[ipv4-addr:value = '203.0.113.77']")])
    push(p.client, keys["gd"], [indicator(22, pattern="[ipv4-addr:value = '203.0.113.77']")])
    p.correlate()
    p.alert()
    [hit] = p.services.store.search(names.INDEX_ALERTS, Query(limit=5)).hits
    alert = hit.doc
    before = p.services.store.search(names.INDEX_ALERT_EVENTS, Query(limit=100)).hits
    start = max(h.doc["stream_seq"] for h in before) + 1
    burst = 1200  # within 1.2 ms of stream sequence, 2.4 store pages
    entries = [
        {
            "event_id": event_id(start + i, alert["id"], 1000 + i),
            "stream_seq": start + i,
            "type": "updated",
            "at": alert["updated"],
            "note": f"burst {i}",
        }
        for i in range(burst)
    ]
    puts = [Put(e["event_id"], event_doc(alert, e)) for e in entries]
    assert all(r.ok for r in p.services.store.put_many(names.INDEX_ALERT_EVENTS, puts))
    p.services.store.refresh(names.INDEX_ALERT_EVENTS)

    total = len(before) + burst
    r = p.client.get(
        "/api/v1/stream",
        params={"max_events": total, "max_seconds": 30},
        headers=auth(keys["hk"]) | {"Last-Event-ID": "0"},
    )
    ids = [f["id"] for f in sse_frames(r.text)]
    assert len(ids) == total
    assert ids == sorted(set(ids))
    assert ids[-burst:] == [e["event_id"] for e in entries]


class AlertsRefused:
    """The real bus, refusing every publish on ``intel.alerts`` (a broker outage then)."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.refused = 0

    def publish(self, topic: str, messages: Any) -> None:
        if topic.endswith(names.TOPIC_ALERTS):
            self.refused += 1
            raise BusUnavailable("broker unreachable (test)")
        self.bus.publish(topic, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


def test_a_resolve_whose_notification_fails_to_publish_is_still_notified(
    platform: Platform, keys: dict[str, Key], receiver: Receiver, clock: FakeClock
) -> None:
    """The alert write and its announcement are two steps: the outbox joins them."""
    p = platform
    register_webhooks(p, keys, receiver, "hk", "gd")
    push(p.client, keys["hk"], [indicator(1, pattern="[domain-name:value = 'ob.example']",
                                          confidence=90)])  # fmt: skip
    push(p.client, keys["gd"], [indicator(2, pattern="[domain-name:value = 'ob.example']",
                                          confidence=80)])  # fmt: skip
    p.correlate()
    p.alert()
    p.notify()
    [alert] = p.client.get("/api/v1/alerts", headers=auth(keys["hk"])).json()["items"]

    # The analyst resolves while the broker is unreachable: the resolution is stored.
    down = AlertsRefused(p.services.bus)
    with TestClient(app_with_alerts(dataclasses.replace(p.services, bus=down))) as client:
        r = client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=auth(keys["hk"]),
                        json={"reason": "contained"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "resolved"
        again = client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=auth(keys["hk"]))
        assert again.status_code == 409  # not open any more: a retry cannot send it
    assert down.refused >= 1
    p.notify()
    resolved = [d for d in receiver.accepted if d["event"]["type"] == "resolved"]
    assert resolved == []

    # The alerts stage comes round: its periodic work announces what the failed publish left.
    clock.advance(timedelta(seconds=OutboxSettings().grace_s + 1))
    p.services.store.refresh(names.INDEX_CHANGE_OUTBOX)
    alerts_tick(p.book, clock.now(), timedelta(days=7))
    p.services.store.refresh(names.INDEX_ALERT_EVENTS)
    p.notify()
    resolved = [d for d in receiver.accepted if d["event"]["type"] == "resolved"]
    assert sorted(d["agency"] for d in resolved) == ["gd-cac", "hk-govcert"]
    assert {d["alert"]["status"] for d in resolved} == {"resolved"}
