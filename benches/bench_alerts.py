"""Alert engine, alert API and webhook delivery figures on the embedded backends.

Run: ``.venv/bin/python benches/bench_alerts.py [N]`` (N change events, default 2000);
``.venv/bin/python benches/bench_alerts.py latency [K]``: K pairs of real TAXII pushes over
HTTP (uvicorn) with the correlator and alert engine running as loops; time from the
corroborating push to the alert's ``opened`` event on the SSE stream.
Prints figures; asserts nothing about speed (PERFORMANCE.md: measure, then decide).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from api.alerts import alerts_router
from api.app import create_app
from core import names
from core.access import Agency, bearer_token
from core.clock import FakeClock, format_timestamp
from core.ports import Outgoing
from core.services import default_sharing
from core.settings import Settings
from correlate.alerter import AlertEngine
from correlate.rules import evaluate, load_ruleset
from notify.deliverer import Deliverer
from notify.notifier import Notifier
from records.agencies import AgencyRegistry
from records.alerts import AlertBook
from records.webhooks import WebhookDirectory
from threatbay.bootstrap import build


def record(i: int, at: str, score: float = 88.0) -> dict[str, Any]:
    return {
        "key": f"domain-name|value|host{i}.bench.example",
        "observable_type": "domain-name",
        "value": f"host{i}.bench.example",
        "sources": [
            {"agency": a, "jurisdiction": j, "tlp": "green", "stix_id": f"indicator--{i:08d}-{j}"}
            for a, j in (("hk-govcert", "HK"), ("gd-cac", "GD"))
        ],
        "sightings": [],
        "score": score,
        "state": "active",
        "agencies": ["gd-cac", "hk-govcert"],
        "jurisdictions": ["GD", "HK"],
        "agency_count": 2,
        "jurisdiction_count": 2,
        "tlp": "green",
        "sighted": False,
        "malware": [],
        "campaigns": [],
        "intrusion_sets": [],
        "first_seen": at,
        "last_seen": at,
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main(n: int) -> None:
    rules = load_ruleset()
    at = "2026-03-01T08:00:00.000000Z"
    recs = [record(i, at) for i in range(n)]
    t0 = time.perf_counter()
    for r in recs:
        evaluate(rules, r, ["new_jurisdiction"], {}, trigger_id="t", at=at)
    dt = time.perf_counter() - t0
    print(f"rules.evaluate: {dt / n * 1e6:.1f} µs/record ({n / dt:,.0f}/s)")

    clock = FakeClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp:
        services = build(Settings(data_dir=Path(tmp)), clock=clock)
        book = AlertBook(services.store, services.bus, clock, default_sharing())
        engine = AlertEngine(book, rules)
        changes = [
            Outgoing(
                key=r["key"],
                value=orjson.dumps(
                    {"key": r["key"], "kinds": ["new_jurisdiction"], "at": at, "record": r}
                ),
            )
            for r in recs
        ]
        services.bus.publish(names.TOPIC_CHANGES, changes)
        consumer = services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)
        t0 = time.perf_counter()
        engine.drain(consumer, idle_polls=1)
        dt = time.perf_counter() - t0
        print(
            f"engine, {n} change events opening {n} alerts (+ STIX reports): "
            f"{n / dt:,.0f} events/s ({dt:.2f} s)"
        )

        clock.advance(timedelta(minutes=1))
        updates = [
            Outgoing(
                key=r["key"],
                value=orjson.dumps(
                    {
                        "key": r["key"],
                        "kinds": ["updated"],
                        "at": format_timestamp(clock.now()),
                        "record": {**r, "score": 91.0},
                    }
                ),
            )
            for r in recs
        ]
        services.bus.publish(names.TOPIC_CHANGES, updates)
        t0 = time.perf_counter()
        engine.drain(consumer, idle_polls=1)
        dt = time.perf_counter() - t0
        print(f"engine, {n} re-triggers updating open alerts: {n / dt:,.0f} events/s")

        quiet = [
            {**record(n + i, at, score=30.0), "agency_count": 1, "jurisdiction_count": 1}
            for i in range(n)
        ]
        services.bus.publish(
            names.TOPIC_CHANGES,
            [
                Outgoing(
                    key=r["key"],
                    value=orjson.dumps(
                        {"key": r["key"], "kinds": ["updated"], "at": at, "record": r}
                    ),
                )
                for r in quiet
            ],
        )
        t0 = time.perf_counter()
        engine.drain(consumer, idle_polls=1)
        dt = time.perf_counter() - t0
        print(f"engine, {n} change events matching no rule: {n / dt:,.0f} events/s")

        registry = AgencyRegistry(services.store, clock)
        hk = Agency(
            "hk-govcert", "GovCERT.HK", "HK", "identity--6a1f2a4e-9a3b-4c1d-8e7f-0a1b2c3d4e50", "A"
        )
        gd = Agency(
            "gd-cac", "Guangdong CAC", "GD", "identity--6a1f2a4e-9a3b-4c1d-8e7f-0a1b2c3d4e51", "B"
        )
        for agency in (hk, gd):
            registry.add_agency(agency)
        cred, secret = registry.add_credential("hk-govcert")
        headers = {"Authorization": f"Bearer {bearer_token(cred.key_id, secret)}"}
        app = create_app(services)
        app.include_router(alerts_router())
        services.store.refresh(names.INDEX_ALERTS)
        with TestClient(app) as client:
            lat: list[float] = []
            cursor = None
            for _ in range(200):
                params: dict[str, Any] = {"limit": 50}
                if cursor:
                    params["cursor"] = cursor
                t0 = time.perf_counter()
                body = client.get("/api/v1/alerts", params=params, headers=headers).json()
                lat.append((time.perf_counter() - t0) * 1000)
                cursor = body["next_cursor"]
            print(
                f"GET /api/v1/alerts?limit=50 over {n} alerts (TestClient, 1 client): "
                f"p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 0.99):.1f} ms"
            )
            ids = [
                a["id"]
                for a in client.get(
                    "/api/v1/alerts", params={"limit": 100}, headers=headers
                ).json()["items"]
            ]
            lat = []
            for alert_id in ids:
                t0 = time.perf_counter()
                client.get(f"/api/v1/alerts/{alert_id}", headers=headers)
                lat.append((time.perf_counter() - t0) * 1000)
            print(
                f"GET /api/v1/alerts/<id>: p50 {statistics.median(lat):.1f} ms, "
                f"p99 {pct(lat, 0.99):.1f} ms"
            )

        received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(1)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        for agency in (hk, gd):
            WebhookDirectory(services.store).register(agency, url)
        services.store.refresh(names.INDEX_WEBHOOKS)
        notifier = Notifier(services.store, services.bus, clock, default_sharing())
        t0 = time.perf_counter()
        jobs = 0
        alerts_consumer = services.bus.consumer(names.TOPIC_ALERTS, names.GROUP_NOTIFIER)
        while True:
            batch = alerts_consumer.poll(max_records=500, timeout_s=0.1)
            if not batch:
                break
            jobs += notifier.process(batch)
            alerts_consumer.commit()
        dt = time.perf_counter() - t0
        print(f"notifier: {jobs} delivery jobs created in {dt:.2f} s ({jobs / dt:,.0f}/s)")
        services.store.refresh(names.INDEX_DELIVERIES)
        deliverer = Deliverer(services.store, clock)
        t0 = time.perf_counter()
        sent = 0
        while True:
            counts = deliverer.delivery_tick(clock.now(), limit=500)
            services.store.refresh(names.INDEX_DELIVERIES)
            if not sum(counts.values()):
                break
            sent += counts["delivered"]
        dt = time.perf_counter() - t0
        print(
            f"deliverer (one thread, signed POST to a local receiver): {sent} in {dt:.2f} s "
            f"({sent / dt:,.0f}/s)"
        )
        server.shutdown()
        services.close()


def latency(k: int) -> None:
    """Push -> correlate -> alert -> SSE, measured over real HTTP with running loops."""
    import base64
    import socket
    import uuid

    import httpx
    import uvicorn

    from api.stream import stream_router
    from threatbay.bootstrap import Loops, correlator_for

    with tempfile.TemporaryDirectory() as tmp:
        services = build(Settings(data_dir=Path(tmp)))
        registry = AgencyRegistry(services.store, services.clock)
        creds = {}
        for aid, j in (("hk-govcert", "HK"), ("gd-cac", "GD")):
            ident = f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, aid)}"
            registry.add_agency(Agency(aid, aid, j, ident, "A"))
            cred, secret = registry.add_credential(aid)
            creds[aid] = (cred.key_id, secret)
        app = create_app(services)
        app.include_router(alerts_router())
        app.include_router(stream_router())
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        loops = Loops()
        correlator = correlator_for(services)  # loads the warninglists (~10 s)
        loops.start("correlator", correlator.run)
        engine = AlertEngine(
            AlertBook(services.store, services.bus, services.clock, default_sharing()),
            load_ruleset(),
        )
        loops.start("alerter", engine.run)
        base = f"http://127.0.0.1:{port}"

        def basic(aid: str) -> dict[str, str]:
            key_id, secret = creds[aid]
            token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
            return {"Authorization": f"Basic {token}"}

        seen: dict[str, float] = {}

        def listen() -> None:
            with httpx.stream(
                "GET", f"{base}/api/v1/stream", headers=basic("gd-cac"), timeout=None
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        data = orjson.loads(line[6:])
                        if data["event"]["type"] == "opened":
                            for key in data["alert"]["indicator_keys"]:
                                seen.setdefault(key, time.perf_counter())

        threading.Thread(target=listen, daemon=True).start()
        time.sleep(1.0)
        taxii = {
            "Content-Type": "application/taxii+json;version=2.1",
            "Accept": "application/taxii+json;version=2.1",
        }
        sent: dict[str, float] = {}
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(k):
                domain = f"lat{i}.bench.example"
                for n, aid in enumerate(("hk-govcert", "gd-cac")):
                    obj = {
                        "type": "indicator", "spec_version": "2.1",
                        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, aid + domain)}",
                        "created": "2026-01-01T00:00:00.000Z",
                        "modified": "2026-01-01T00:00:00.000Z",
                        "pattern": f"[domain-name:value = '{domain}']", "pattern_type": "stix",
                        "valid_from": "2026-01-01T00:00:00Z", "confidence": 95,
                        "object_marking_refs": [
                            "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"],
                    }  # fmt: skip
                    if n == 1:
                        time.sleep(0.3)
                        sent[f"domain-name|value|{domain}"] = time.perf_counter()
                    r = client.post(
                        f"/taxii2/api/collections/inbox-{aid}/objects/",
                        headers=taxii | basic(aid),
                        content=orjson.dumps({"objects": [obj]}),
                    )
                    assert r.status_code == 202, r.text
                time.sleep(0.5)
        deadline = time.monotonic() + 10
        while len(seen) < k and time.monotonic() < deadline:
            time.sleep(0.1)
        lat = [(seen[key] - t0) * 1000 for key, t0 in sent.items() if key in seen]
        print(
            f"push -> SSE 'opened' over HTTP, {len(lat)}/{k} seen: "
            f"p50 {statistics.median(lat):.0f} ms, p95 {pct(lat, 0.95):.0f} ms, "
            f"max {max(lat):.0f} ms"
        )
        loops.shutdown()
        server.should_exit = True
        services.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "latency":
        latency(int(sys.argv[2]) if len(sys.argv) > 2 else 20)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
