"""The false-positive loop through HTTP, on embedded and Kafka + Elasticsearch (issue #19).

``POST /api/v1/indicators/{key}/false-positive`` stores a STIX sighting with
``x_threatbay_sighting_type: "false-positive"`` (MISP sighting type 1) through
the API sightings' ingest path; every view that sees it caps the score and names
the reason; open alerts whose trigger no longer holds for that view are resolved
as ``false_positive`` and notified; exports leave it out; the ``records``
collection publishes a version whose ``valid_until`` has come. ``DELETE``
withdraws it (a revocation of that sighting) and everything comes back. A reader
who may not see the sighting sees nothing change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.clock import FakeClock, parse_timestamp
from core.ports import Query, Term
from correlate.alerter import AlertEngine
from correlate.rules import load_ruleset
from records.books import records_of
from tests.e2e.conftest import ROOT, TAXII, TLP_AMBER, TLP_GREEN, Key, bundle, embedded_or_real
from tests.e2e.conftest import indicator as stix_indicator
from tests.e2e.test_backends_agree import drain
from tests.e2e.test_status import keys_for
from threatbay.bootstrap import Services, correlator_for, notifier_for

SHARED = "domain-name|value|shared-c2.example.net"
HK_ONLY = "domain-name|value|hk-amber.example.net"


@dataclass
class World:
    services: Services
    client: TestClient
    keys: dict[str, Key]

    def push(self, who: str, pattern: str, tlp: str) -> None:
        key = self.keys[who]
        obj = stix_indicator(stix_id=f"indicator--{uuid.uuid4()}", pattern=pattern, tlp=tlp,
                             confidence=95)  # fmt: skip
        r = self.client.post(key.inbox + "objects/", content=orjson.dumps(bundle(obj)),
                             headers=key.post)  # fmt: skip
        assert r.status_code == 202 and r.json()["success_count"] == 1, r.text

    def settle(self) -> None:
        drain(self.services, correlator_for(self.services))
        books = records_of(self.services)
        drain(self.services, AlertEngine(books.alerts, load_ruleset()))
        drain(self.services, notifier_for(self.services))
        for index in (names.INDEX_INDICATORS, names.INDEX_ALERTS, names.INDEX_DELIVERIES):
            self.services.store.refresh(index)

    def get(self, who: str, path: str, **params: Any) -> Any:
        r = self.client.get(path, params=params, headers=self.keys[who].bearer)
        assert r.status_code == 200, r.text
        return r

    def detail(self, who: str, key: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(who, f"/api/v1/indicators/{quote(key, safe='')}").json()
        return out

    def mark(self, who: str, key: str, reason: str) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/indicators/{quote(key, safe='')}/false-positive",
                             json={"reason": reason}, headers=self.keys[who].bearer)  # fmt: skip
        assert r.status_code == 202, r.text
        out: dict[str, Any] = r.json()
        return out

    def withdraw(self, who: str, key: str) -> Any:
        return self.client.delete(f"/api/v1/indicators/{quote(key, safe='')}/false-positive",
                                  headers=self.keys[who].bearer)  # fmt: skip

    def exported(self, who: str) -> set[str]:
        text = self.get(who, "/api/v1/exports/csv").text
        return {line.split(",")[6] for line in text.splitlines()[1:] if line}

    def alerts_of(self, who: str, key: str) -> list[dict[str, Any]]:
        items = self.get(who, "/api/v1/alerts", status=["open", "resolved"]).json()["items"]
        return [a for a in items if key in {i["key"] for i in a.get("indicators") or []}]

    def records(self, who: str) -> dict[str, dict[str, Any]]:
        r = self.client.get(f"{ROOT}collections/records/objects/",
                            headers=self.keys[who].basic | {"Accept": TAXII})  # fmt: skip
        assert r.status_code == 200, r.text
        objs = r.json().get("objects") or []
        return {o["name"]: o for o in objs}

    def deliveries(self, agency: str) -> list[dict[str, Any]]:
        page = self.services.store.search(
            names.INDEX_DELIVERIES, Query(filters=(Term("agency", (agency,)),), limit=500)
        )
        return [h.doc for h in page.hits]


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def world(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    with embedded_or_real(request, tmp_path, clock, "fp") as svc:
        svc.settings.webhooks.allowed_targets = ["127.0.0.1"]
        keys = keys_for(svc)
        directory = records_of(svc).webhooks
        for name in ("hk", "gd"):
            directory.register(keys[name].agency, f"http://127.0.0.1:9/hook/{name}")
        svc.store.refresh(names.INDEX_WEBHOOKS)
        with TestClient(create_app(svc)) as client:
            w = World(svc, client, keys)
            # two jurisdictions at confidence 95: ORANGE (score >= 80 and >= 2 jurisdictions)
            w.push("hk", "[domain-name:value = 'shared-c2.example.net']", TLP_GREEN)
            w.push("gd", "[domain-name:value = 'shared-c2.example.net']", TLP_GREEN)
            w.push("hk", "[domain-name:value = 'hk-amber.example.net']", TLP_AMBER)
            w.settle()
            yield w


def test_mark_resolves_alert_drops_export_expires_record_and_withdraw_restores(
    world: World, clock: FakeClock
) -> None:
    w = world
    before = w.detail("hk", SHARED)
    assert before["score"] >= 80
    [alert] = w.alerts_of("hk", SHARED)
    assert alert["status"] == "open"
    assert SHARED in w.exported("hk")
    first = w.records("hk")["shared-c2.example.net"]
    assert parse_timestamp(first["valid_until"]) > clock.now() + timedelta(days=1)
    queued = len(w.deliveries("hk-govcert"))

    clock.advance(timedelta(minutes=1))
    marked = w.mark("hk", SHARED, "our own sinkhole, not C2")
    sighting = marked["sighting"]
    assert sighting["type"] == "sighting"
    assert sighting["x_threatbay_sighting_type"] == "false-positive"
    assert sighting["description"] == "our own sinkhole, not C2"
    w.settle()

    cap = w.services.settings.scoring.false_positive_cap
    for who in ("hk", "gd"):  # GREEN: GD sees the counter-evidence, under the usual rules
        view = w.detail(who, SHARED)
        assert view["score"] <= cap
        assert view["false_positives"][0]["reason"] == "our own sinkhole, not C2"
        assert any("our own sinkhole, not C2" in line
                   for line in view["components"]["explanation"])  # fmt: skip
        assert SHARED not in w.exported(who)
    [resolved] = w.alerts_of("hk", SHARED)
    assert resolved["status"] == "resolved"
    assert resolved["resolution"] == "false_positive"
    detail = w.get("hk", f"/api/v1/alerts/{resolved['id']}").json()
    last = detail["timeline"][-1]
    assert last["type"] == "resolved" and "our own sinkhole, not C2" in last["text"]
    assert w.alerts_of("gd", SHARED)[0]["resolution"] == "false_positive"
    assert len(w.deliveries("hk-govcert")) > queued  # the resolution is notified
    record = w.records("hk")["shared-c2.example.net"]
    assert parse_timestamp(record["valid_until"]) <= clock.now()

    clock.advance(timedelta(minutes=1))
    assert w.withdraw("hk", SHARED).status_code == 202
    w.settle()
    after = w.detail("hk", SHARED)
    assert after["score"] >= 80 and not after.get("false_positives")
    assert SHARED in w.exported("hk")
    again = w.records("hk")["shared-c2.example.net"]
    assert again["modified"] > record["modified"]
    assert parse_timestamp(again["valid_until"]) > clock.now() + timedelta(days=1)
    assert [a["status"] for a in w.alerts_of("hk", SHARED)].count("open") == 1  # reopened
    # withdrawing twice: nothing left to withdraw
    assert w.withdraw("hk", SHARED).status_code == 404


def test_a_reader_who_may_not_see_the_sighting_sees_nothing_change(
    world: World, clock: FakeClock
) -> None:
    """HK's AMBER record does not cross to GD; GD's answers are byte for byte the same."""
    w = world

    def gd_answers() -> list[bytes]:
        return [
            w.get("gd", "/api/v1/indicators").content,
            w.get("gd", "/api/v1/exports/csv").content,
            w.get("gd", "/api/v1/alerts", status=["open", "resolved"]).content,
            w.client.get(
                f"{ROOT}collections/records/objects/",
                headers=w.keys["gd"].basic | {"Accept": TAXII},
            ).content,  # fmt: skip
        ]

    seen = gd_answers()  # the clock stands still: decay alone moves nothing
    w.mark("hk", HK_ONLY, "internal scanner")
    w.settle()
    assert w.detail("hk", HK_ONLY)["false_positives"]
    assert gd_answers() == seen


def test_only_analysts_mark_and_only_the_marking_agency_withdraws(world: World) -> None:
    w = world
    r = w.client.post(f"/api/v1/indicators/{quote(SHARED, safe='')}/false-positive",
                      json={"reason": ""}, headers=w.keys["hk"].bearer)  # fmt: skip
    assert r.status_code == 422
    w.mark("hk", SHARED, "sinkhole")
    w.settle()
    assert w.withdraw("gd", SHARED).status_code == 404  # GD never marked it
    missing = quote("domain-name|value|nowhere.example", safe="")
    r = w.client.post(f"/api/v1/indicators/{missing}/false-positive",
                      json={"reason": "x"}, headers=w.keys["hk"].bearer)  # fmt: skip
    assert r.status_code == 404


def test_expired_ends_the_callers_own_report_early(world: World, clock: FakeClock) -> None:
    """MISP sighting type 2: HK ends its own report now; GD's report still stands."""
    w = world
    assert set(w.detail("hk", SHARED)["components"]["per_agency"]) == {"gd-cac", "hk-govcert"}
    clock.advance(timedelta(minutes=1))
    r = w.client.post(
        f"/api/v1/indicators/{quote(SHARED, safe='')}/expired",
        json={"reason": "took the server down"},
        headers=w.keys["hk"].bearer,
    )
    assert r.status_code == 202, r.text
    [ended] = r.json()["ended"]
    assert parse_timestamp(ended["valid_until"]) <= clock.now()
    clock.advance(timedelta(seconds=1))
    w.settle()
    view = w.detail("hk", SHARED)
    assert set(view["components"]["per_agency"]) == {"gd-cac"}
    assert view["state"] == "active"
    r = w.client.post(f"/api/v1/indicators/{quote(SHARED, safe='')}/expired",
                      json={}, headers=w.keys["mo"].bearer)  # fmt: skip
    assert r.status_code == 404  # MO has no report of its own on the record


def test_the_reason_is_screened_before_it_crosses_a_border(world: World) -> None:
    """DOMAIN.md: every human-written note that crosses is screened for victim data."""
    w = world
    reason = "victim mailbox alice.chan@example.com.hk reported it; our sinkhole"
    w.mark("hk", SHARED, reason)
    w.settle()
    own = w.detail("hk", SHARED)  # the author's jurisdiction reads it as written
    assert own["false_positives"][0]["reason"] == reason
    crossed = w.detail("gd", SHARED)
    text = orjson.dumps(crossed).decode()
    assert "alice.chan@example.com.hk" not in text
    assert crossed["false_positives"][0]["reason"] != reason
    assert any("false positive, hk-govcert:" in line
               for line in crossed["components"]["explanation"])  # fmt: skip
