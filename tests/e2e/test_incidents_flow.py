"""Joint incident response end to end (issue 23 "Done means"), embedded and Kafka + Elasticsearch.

TAXII pushes by HK and GD and an HK sighting -> correlator -> RED alert -> the
respond stage proposes a case -> GD accepts and leads, HK joins, MO is added ->
tasks to HK and MO: HK accepts and completes, MO's goes overdue and is
escalated and notified by signed webhook -> a GD takedown request answered by
MO -> a GD critical-infrastructure entity with awareness at T shows its 1 h
clock and breaches at T + 1 h, the HK 12 h clock beside it -> the lead moves
to HK -> an HK note marked TLP:RED for HK only reaches neither GD nor MO by any
path -> the STIX form parses with stix2, is read back through taxii2-client,
and a task outcome pushed by MO through TAXII lands in the case.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.clock import FakeClock, format_timestamp
from core.ports import Consumer
from correlate.alerter import AlertEngine
from correlate.rules import load_ruleset
from correlate.worker import Correlator
from notify.deliverer import Deliverer
from records.agencies import AgencyRegistry
from records.books import records_of
from respond import stix as case_stix
from respond.service import Responder
from respond.stages import CaseNotifier, Proposer, respond_tick
from tests.e2e.conftest import AGENCIES, Key, embedded_or_real, free_port, indicator
from tests.e2e.test_alerts_flow import Receiver
from tests.e2e.test_alerts_flow import receiver as receiver  # noqa: F401 - fixture
from threatbay.bootstrap import Services, correlator_for

BACKENDS = [
    "embedded",
    pytest.param("real", marks=[pytest.mark.kafka, pytest.mark.elasticsearch]),
]
SECRET_NOTE = "HK-ONLY: the utility's SCADA vendor contact is under NDA"


def auth(key: Key) -> dict[str, str]:
    return {"Authorization": key.bearer["Authorization"]}


@dataclass
class Platform:
    services: Services
    client: TestClient
    keys: dict[str, Key]
    responder: Responder
    correlator: Correlator
    engine: AlertEngine
    proposer: Proposer
    case_notifier: CaseNotifier
    deliverer: Deliverer
    consumers: dict[str, Consumer]
    patience: int

    def _drain(self, worker: Any, consumer: str) -> int:
        total: int = worker.drain(self.consumers[consumer], self.patience)
        deadline = time.monotonic() + (15 if self.patience > 2 else 0)
        while total == 0 and time.monotonic() < deadline:
            total = worker.drain(self.consumers[consumer], self.patience)
        return total

    def refresh(self) -> None:
        for index in (
            names.INDEX_INDICATORS, names.INDEX_ALERTS, names.INDEX_ALERT_EVENTS,
            names.INDEX_CASES, names.INDEX_CASE_EVENTS, names.INDEX_DELIVERIES,
            names.INDEX_WEBHOOKS, names.INDEX_OBJECTS,
        ):  # fmt: skip
            self.services.store.refresh(index)

    def correlate_and_alert(self) -> None:
        self._drain(self.correlator, "raw")
        self.refresh()
        self._drain(self.engine, "changes")
        self.refresh()

    def propose(self) -> int:
        made = self._drain(self.proposer, "alerts")
        self.refresh()
        return made

    def notify(self) -> dict[str, int]:
        self._drain(self.case_notifier, "cases")
        self.refresh()
        counts = self.deliverer.delivery_tick(self.services.clock.now())
        self.refresh()
        return counts

    def tick(self) -> int:
        self.refresh()
        written = respond_tick(self.responder)
        self.refresh()
        return written

    # ------------------------------------------------------------- HTTP

    def get(self, who: str, path: str, **params: Any) -> Any:
        r = self.client.get(path, headers=auth(self.keys[who]), params=params)
        assert r.status_code == 200, (who, path, r.status_code, r.text)
        return r.json()

    def post(self, who: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.client.post(path, headers=auth(self.keys[who]), json=body)
        assert r.status_code == status, (who, path, r.status_code, r.text)
        self.refresh()
        return r.json()


@pytest.fixture(params=BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Platform]:
    with embedded_or_real(request, tmp_path, clock, "cases") as services:
        registry = AgencyRegistry(services.store, services.clock)
        keys: dict[str, Key] = {}
        for name, agency in AGENCIES.items():
            registry.add_agency(agency)
            cred, secret = registry.add_credential(agency.id)
            keys[name] = Key(agency, cred.key_id, secret)
        books = records_of(services)
        responder = Responder(books, services.sharing, services.settings.cases)
        patience = 2 if request.param == "embedded" else 10
        consumers = {
            "raw": services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR),
            "changes": services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER),
            "alerts": services.bus.consumer(names.TOPIC_ALERTS, names.GROUP_CASE_PROPOSER),
            "cases": services.bus.consumer(names.TOPIC_CASES, names.GROUP_CASE_NOTIFIER),
        }
        if patience > 2:  # real Kafka: join the groups while the topics are empty
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for consumer in consumers.values():
                    assert consumer.poll(timeout_s=0.5) == []
                members = [getattr(c, "_consumer", None) for c in consumers.values()]
                if all(m is None or m.assignment() for m in members):
                    break
        with TestClient(create_app(services)) as client:
            yield Platform(
                services=services,
                client=client,
                keys=keys,
                responder=responder,
                correlator=correlator_for(services),
                engine=AlertEngine(books.alerts, load_ruleset()),
                proposer=Proposer(responder, services.bus),
                case_notifier=CaseNotifier(responder, services.bus),
                deliverer=Deliverer(services.store, services.clock, timeout_s=5.0),
                consumers=consumers,
                patience=patience,
            )
        books.close()


def push(p: Platform, who: str, objects: list[dict[str, Any]]) -> None:
    key = p.keys[who]
    r = p.client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
    )
    assert r.status_code == 202 and r.json()["success_count"] == len(objects), r.text


def register_webhooks(p: Platform, receiver: Receiver, *who: str) -> None:
    """Endpoints on the local receiver, set on the host (an admin sets only its own
    jurisdiction's, and loopback only when allow-listed: tests/security/test_scoped_admin.py)."""
    directory = records_of(p.services).webhooks
    for name in who:
        agency = p.keys[name].agency
        receiver.secrets[agency.id] = directory.register(agency, f"{receiver.url}/hook/{agency.id}")
    p.refresh()


def red_alert(p: Platform) -> dict[str, Any]:
    """A RED alert concerning GD and HK: both report the C2 domain, HK sights it."""
    domain = "[domain-name:value = 'c2.grid-ransom.example']"
    push(p, "hk", [indicator(301, pattern=domain, confidence=95)])
    push(p, "gd", [indicator(302, pattern=domain, confidence=95)])
    p.correlate_and_alert()
    key = "domain-name|value|c2.grid-ransom.example"
    r = p.client.post(
        f"/api/v1/indicators/{key}/sightings", headers=auth(p.keys["hk"]), json={"count": 3}
    )
    assert r.status_code == 202, r.text
    p.correlate_and_alert()
    [alert] = p.get("hk", "/api/v1/alerts")["items"]
    assert alert["level"] == "RED" and alert["jurisdictions"] == ["GD", "HK"], alert
    return dict(alert)


def sse(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "id" in fields:
            frames.append({"id": fields["id"], "event": fields["event"],
                           "data": orjson.loads(fields["data"])})  # fmt: skip
    return frames


class LiveServer:
    """The same app under uvicorn on 127.0.0.1 (for taxii2-client)."""

    def __init__(self, services: Services) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(services), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# ---------------------------------------------------------------------- the story


def test_joint_case_from_red_alert_to_stix_over_taxii(
    platform: Platform, receiver: Receiver, clock: FakeClock
) -> None:
    p = platform
    register_webhooks(p, receiver, "gd", "hk", "mo")
    alert = red_alert(p)

    # The respond stage proposes one case to the alert's jurisdictions (a replay adds none).
    assert p.propose() >= 1
    assert p.proposer.propose([alert["id"]]) == 0  # a replayed alert event proposes nothing new
    p.notify()  # each proposed jurisdiction is told, Macao is not
    told = sorted(d["agency"] for d in receiver.accepted if d["event"]["type"] == "proposed")
    assert told == ["gd-cac", "hk-govcert"]
    [proposal] = p.get("gd", "/api/v1/incidents")["items"]
    assert proposal["status"] == "proposed" and proposal["role"] == "invited"
    assert proposal["proposal"]["jurisdictions"] == ["GD", "HK"]
    assert p.get("mo", "/api/v1/incidents")["items"] == []
    case_id = proposal["id"]
    base = f"/api/v1/incidents/{case_id}"
    assert p.client.get(base, headers=auth(p.keys["mo"])).status_code == 404
    assert p.client.post(base + "/accept", headers=auth(p.keys["mo"])).status_code in (403, 404)

    # GD accepts first: the case opens and GD leads; HK accepts and joins; GD adds MO.
    opened = p.post("gd", base + "/accept")
    assert opened["status"] == "open" and opened["lead"]["agency"] == "gd-cac"
    joined = p.post("hk", base + "/accept")
    assert {x["agency"] for x in joined["participants"]} == {"gd-cac", "hk-govcert"}
    p.post("gd", base + "/participants", {"agency": "mo-caric"}, 201)
    # The linked alert shows the case on its detail.
    detail = p.get("gd", f"/api/v1/alerts/{alert['id']}")
    assert [c["id"] for c in detail["incidents"]] == [case_id]
    # MO takes part; it sees the linked alert because its indicators are GREEN and whitelisted.
    assert [a["alert_id"] for a in p.get("mo", base)["alerts"]] == [alert["id"]]

    # Tasks to HK and MO.
    now = clock.now()
    task = {"marking": {"tlp": "amber"}}
    hk_task = p.post("gd", base + "/tasks", {**task, "title": "Hunt for the C2 in HK operators",
                     "assignee": "hk-govcert", "due": format_timestamp(now + timedelta(hours=2))},
                     201)["tasks"][-1]  # fmt: skip
    mo_task = p.post("gd", base + "/tasks", {**task, "title": "Check CARIC notifications",
                     "assignee": "mo-caric", "analyst": "duty officer",
                     "due": format_timestamp(now + timedelta(hours=1))},
                     201)["tasks"][-1]  # fmt: skip
    assert p.notify()["delivered"] >= 2  # each assignee is told of its task
    assert {d["agency"] for d in receiver.accepted if d["event"]["type"] == "task_created"} == {
        "hk-govcert", "mo-caric"}  # fmt: skip

    # HK accepts and completes; a decline needs a reason; MO may not act on HK's task.
    assert p.client.post(f"{base}/tasks/{hk_task['id']}/done", headers=auth(p.keys["mo"])
                         ).status_code == 403  # fmt: skip
    p.post("hk", f"{base}/tasks/{hk_task['id']}/accept")
    done = p.post("hk", f"{base}/tasks/{hk_task['id']}/done", {"outcome": "successful"})
    hk_view = next(t for t in done["tasks"] if t["id"] == hk_task["id"])
    assert hk_view["status"] == "done" and hk_view["outcome"] == "successful"
    before = len(receiver.accepted)
    p.notify()
    assert [(d["agency"], d["event"]["type"]) for d in receiver.accepted[before:]] == [
        ("gd-cac", "task_done")]  # fmt: skip

    # MO lets its task go overdue: escalated to the lead and notified by signed webhook.
    clock.advance(timedelta(minutes=61))
    assert p.tick() >= 1
    late = next(t for t in p.get("gd", base)["tasks"] if t["id"] == mo_task["id"])
    assert late["overdue"] and late["status"] == "pending"
    before = len(receiver.accepted)
    p.notify()
    overdue = [(d["agency"], d["event"]["type"]) for d in receiver.accepted[before:]]
    assert sorted(overdue) == [("gd-cac", "task_overdue"), ("mo-caric", "task_overdue")]
    assert receiver.rejected == []
    assert p.tick() == 0  # not re-notified before the re-notification period

    # GD asks MO to take down the C2 domain (record attached); MO answers; both notified.
    record_key = "domain-name|value|c2.grid-ransom.example"
    linked = p.post("gd", base + "/links", {"record_key": record_key}, 201)
    assert [r["record"]["key"] for r in linked["records"]] == [record_key]
    req = p.post("gd", base + "/requests", {
        "request_type": "takedown", "addressee": "mo-caric", "text": "Sinkhole the C2 domain",
        "deadline": format_timestamp(clock.now() + timedelta(hours=4)),
        "record_keys": [record_key], "marking": {"tlp": "green"}}, 201)["requests"][-1]  # fmt: skip
    answered = p.post("mo", f"{base}/requests/{req['id']}/answer",
                      {"text": "Registrar suspended the domain", "done": True})  # fmt: skip
    assert next(r for r in answered["requests"] if r["id"] == req["id"])["status"] == "answered"
    before = len(receiver.accepted)
    p.notify()
    got = sorted((d["agency"], d["event"]["type"]) for d in receiver.accepted[before:])
    assert got == [("gd-cac", "request_answered"), ("mo-caric", "request_sent")]
    blocklist = p.get("mo", f"{base}/requests/{req['id']}/blocklist")
    assert blocklist["values"] == {"domain-name": ["c2.grid-ransom.example"]}

    # A GD critical-infrastructure operator, aware at T: its 1 h clock; HK's 12 h beside it.
    t = clock.now() - timedelta(minutes=5)
    p.post("gd", base + "/entities", {"aware_at": format_timestamp(t), "operator_type": "cii",
           "critical_infrastructure": True, "sector": "energy", "marking": {"tlp": "green"}},
           201)  # fmt: skip
    p.post("hk", base + "/entities", {"aware_at": format_timestamp(t),
           "operator_type": "ci-operator",
           "serious": True, "marking": {"tlp": "green"}}, 201)  # fmt: skip
    clocks = {c["jurisdiction"]: c for c in p.get("gd", base)["clocks"]}
    assert clocks["GD"]["due"] == format_timestamp(t + timedelta(hours=1))
    assert clocks["HK"]["due"] == format_timestamp(t + timedelta(hours=12))
    assert clocks["GD"]["status"] == clocks["HK"]["status"] == "running"
    clock.set(t + timedelta(minutes=50))
    p.tick()  # coming due (15 min before): reminded
    clock.set(t + timedelta(hours=1))
    p.tick()
    clocks = {c["jurisdiction"]: c for c in p.get("hk", base)["clocks"]}
    assert clocks["GD"]["status"] == "breached" and clocks["GD"]["breached_at"]
    assert clocks["HK"]["status"] == "running"
    before = len(receiver.accepted)
    p.notify()
    told = {(d["agency"], d["event"]["type"]) for d in receiver.accepted[before:]}
    assert ("gd-cac", "clock_breached") in told and ("gd-cac", "clock_due_soon") in told
    assert ("hk-govcert", "clock_breached") not in told

    # The lead moves to HK (recorded); GD no longer leads.
    moved = p.post("gd", base + "/lead", {"agency": "hk-govcert"})
    assert moved["lead"]["agency"] == "hk-govcert"
    assert p.client.patch(base, headers=auth(p.keys["gd"]), json={"severity": "ORANGE"}
                          ).status_code == 403  # fmt: skip
    changes = [e for e in p.get("gd", base + "/timeline", limit=500)["items"]
               if e["type"] == "lead_changed"]  # fmt: skip
    assert changes[0]["previous"] == "gd-cac" and changes[0]["lead"] == "hk-govcert"

    # Snapshot of everything GD and MO observe, then an HK note marked TLP:RED for HK only.
    def observed(who: str) -> dict[str, Any]:
        listing = p.get(who, "/api/v1/incidents")["items"]
        return {
            "case": p.get(who, base),
            "list": listing,
            "timeline": p.get(who, base + "/timeline", limit=500),
            "audit": p.get(who, base + "/audit"),
            "report": p.get(who, base + "/report"),
            "stix": [o for o in p.get(who, base + "/stix")["objects"] if o["type"] != "bundle"],
        }

    seen_before = {who: observed(who) for who in ("gd", "mo")}
    stream_start = {"Last-Event-ID": "0"}
    note = p.post("hk", base + "/notes", {"text": SECRET_NOTE,
                  "marking": {"tlp": "red", "recipients": ["hk-govcert"]}}, 201)  # fmt: skip
    assert [n["text"] for n in note["notes"]] == [SECRET_NOTE]
    p.notify()
    for who in ("gd", "mo"):
        after = observed(who)
        for what in ("case", "list", "timeline", "audit", "report"):
            assert after[what] == seen_before[who][what], (who, what)
        ids = lambda objs: sorted(o["id"] for o in objs)  # noqa: E731
        assert ids(after["stix"]) == ids(seen_before[who]["stix"]), who
        html = p.client.get(base + "/report", params={"format": "html"},
                            headers=auth(p.keys[who])).text  # fmt: skip
        assert SECRET_NOTE not in html and "HK-ONLY" not in html
        frames = sse(p.client.get(base + "/stream", params={"max_seconds": 1},
                                  headers=auth(p.keys[who]) | stream_start).text)  # fmt: skip
        assert frames and "note_added" not in [f["event"] for f in frames], who
        everything = p.client.get("/api/v1/incidents/stream", params={"max_seconds": 1},
                                  headers=auth(p.keys[who]) | stream_start).text  # fmt: skip
        assert "HK-ONLY" not in everything and "note_added" not in everything
    assert not any("HK-ONLY" in orjson.dumps(d).decode() for d in receiver.accepted)
    gd_frames = sse(p.client.get(base + "/stream", params={"max_seconds": 1},
                                 headers=auth(p.keys["gd"]) | stream_start).text)  # fmt: skip
    assert "lead_changed" in [f["event"] for f in gd_frames]

    # The STIX form: parses with stix2, matches ThreatBay's schemas of the OASIS objects.
    import stix2

    bundle = p.get("gd", base + "/stix")
    parsed = stix2.parse(bundle, allow_custom=True)
    assert len(parsed.objects) == len(bundle["objects"])
    assert case_stix.validate(bundle["objects"]) == {}
    types = sorted({o["type"] for o in bundle["objects"]})
    assert {"incident", "task", "event", "relationship", "identity", "indicator"} <= set(types)
    incident = next(o for o in bundle["objects"] if o["type"] == "incident")
    ext = incident["extensions"][case_stix.INCIDENT_EXT]
    assert ext["investigation_status"] == "open" and len(ext["tasks"]) == 2
    assigned = [o for o in bundle["objects"] if o.get("relationship_type") == "assigned"]
    assert len(assigned) == 2
    assert "HK-ONLY" not in orjson.dumps(bundle).decode()

    # Read back over TAXII with taxii2-client; MO pushes its task outcome into the case.
    from taxii2client.v21 import Collection

    mo = p.keys["mo"]
    cid = case_id.removeprefix("incident--")
    with LiveServer(p.services) as url:
        coll = Collection(f"{url}/taxii2/cases/collections/{cid}/", user=mo.key_id,
                          password=mo.secret)  # fmt: skip
        envelope = coll.get_objects()
        read_ids = {o["id"] for o in envelope["objects"]}
        assert case_id in read_ids and f"task--{mo_task['id']}" in read_ids
        assert "HK-ONLY" not in orjson.dumps(envelope).decode()
        pushed = {
            "type": "task", "spec_version": "2.1", "id": f"task--{mo_task['id']}",
            "created": mo_task["at"], "modified": format_timestamp(clock.now()),
            "created_by_ref": mo.agency.identity_id, "outcome": "successful",
            "description": "All CARIC notifications checked",
            "extensions": {case_stix.TASK_EXT: {"extension_type": "new-sdo"}},
        }  # fmt: skip
        status = coll.add_objects({"objects": [pushed]}, wait_for_completion=True)
        assert status.success_count == 1, status._raw
        forged = {**pushed, "created_by_ref": p.keys["gd"].agency.identity_id}
        refused = coll.add_objects({"objects": [forged]}, wait_for_completion=True)
        assert refused.failure_count == 1
    p.refresh()
    landed = next(t for t in p.get("gd", base)["tasks"] if t["id"] == mo_task["id"])
    assert landed["status"] == "done" and landed["outcome"] == "successful"


def test_a_clock_marked_reported_in_time_never_breaches(
    platform: Platform, clock: FakeClock
) -> None:
    p = platform
    opened = p.post("gd", "/api/v1/incidents", {"title": "Ransomware at a grid operator",
                    "template": "ransomware-critical-infrastructure",
                    "participants": ["hk-govcert", "mo-caric"]}, 201)  # fmt: skip
    base = f"/api/v1/incidents/{opened['id']}"
    assert opened["severity"] == "RED" and len(opened["tasks"]) == 4  # the template's tasks
    t = clock.now()
    case = p.post("gd", base + "/entities", {"aware_at": format_timestamp(t),
                  "operator_type": "cii"}, 201)  # fmt: skip
    [gd_clock] = case["clocks"]
    assert gd_clock["due"] == format_timestamp(t + timedelta(hours=1))
    assert p.client.post(f"{base}/clocks/{gd_clock['id']}/reported", headers=auth(p.keys["hk"]),
                         json={"reference": "x"}).status_code == 403  # fmt: skip
    clock.advance(timedelta(minutes=40))
    met = p.post("gd", f"{base}/clocks/{gd_clock['id']}/reported",
                 {"reference": "GD-CAC-2026-0042"})["clocks"][0]  # fmt: skip
    assert met["status"] == "met" and met["met"]["by"] == "gd-cac"
    assert met["met"]["reference"] == "GD-CAC-2026-0042" and met["met"]["late"] is False
    clock.advance(timedelta(hours=1))
    p.tick()
    assert p.get("gd", base)["clocks"][0]["status"] == "met"
    # The awareness time is the reporter's to correct, and every change is on the timeline.
    entity = p.get("gd", base)["entities"][0]
    assert p.client.put(f"{base}/entities/{entity['id']}/awareness", headers=auth(p.keys["hk"]),
                        json={"aware_at": format_timestamp(t)}).status_code == 403  # fmt: skip
    assert p.get("mo", base)["counts"]["clocks"] == 1
    pdf = p.client.get(base + "/report", params={"format": "pdf"}, headers=auth(p.keys["mo"]))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"


def test_bad_input_gets_a_precise_answer(platform: Platform) -> None:
    p = platform
    base = "/api/v1/incidents"
    r = p.client.post(base, headers=auth(p.keys["gd"]), json={"title": "x", "template": "nope"})
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    case = p.post("gd", base, {"title": "Phishing wave", "participants": ["hk-govcert"]}, 201)
    url = f"{base}/{case['id']}"
    r = p.client.post(url + "/notes", headers=auth(p.keys["gd"]),
                      json={"text": "x", "marking": {"tlp": "purple"}})  # fmt: skip
    assert r.status_code == 422 and "TLP" in r.json()["detail"]
    r = p.client.post(url + "/impacts", headers=auth(p.keys["gd"]),
                      json={"category": "availability", "details": {}})  # fmt: skip
    assert r.status_code == 422 and "availability_impact" in r.json()["detail"]
    r = p.client.post(url + "/tasks/" + str(uuid.uuid4()) + "/accept", headers=auth(p.keys["gd"]))
    assert r.status_code == 404
    r = p.client.post(url + "/tasks", headers=auth(p.keys["gd"]),
                      json={"title": "t", "assignee": "mo-caric"})  # fmt: skip
    assert r.status_code == 422 and "does not take part" in r.json()["detail"]
