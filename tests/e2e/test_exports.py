"""``GET /api/v1/exports/{format}`` through HTTP, on embedded and Kafka + Elasticsearch (#19).

Agencies push over TAXII, the correlator and the alert engine run, then each
format is fetched through the real app and read back by the real tools
(tests/exports/validators.py: named-checkzone, idstools, a Zeek Intel parser
from Zeek's docs, csv, stix2). The sharing cases: a TLP:RED record is never in
a non-recipient's export; AMBER does not cross a border without consent; a
type the cross-border whitelist does not list does not cross. Warning-list
values and private addresses are never exported; ETag / If-None-Match; the RPZ
serial increases when the content changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.access import Agency
from core.clock import FakeClock
from core.ports import Term
from core.record_indicators import indicator_id as record_indicator_id
from correlate.alerter import AlertEngine
from correlate.rules import load_ruleset
from records.books import records_of
from tests.e2e.conftest import TLP_AMBER, TLP_GREEN, Key, bundle, embedded_or_real, indicator
from tests.e2e.test_backends_agree import drain
from tests.e2e.test_status import keys_for
from tests.exports.validators import (
    check_zone,
    csv_rows,
    rpz_names,
    rules_of,
    stix_bundle,
    zeek_intel,
)
from threatbay.bootstrap import Services, correlator_for, notifier_for

TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5 = "5d41402abc4b2a76b9719d911017c592"
# (agency, pattern, tlp, extra)
PUSHES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("hk", "[domain-name:value = 'shared-c2.example.net']", TLP_GREEN, {}),
    ("gd", "[domain-name:value = 'shared-c2.example.net']", TLP_GREEN, {}),
    ("hk", "[domain-name:value = 'Bücher-evil.example.org']", TLP_GREEN, {}),
    ("hk", "[ipv4-addr:value = '5.188.206.14']", TLP_GREEN, {}),
    ("hk", "[ipv4-addr:value = '91.215.85.0/24']", TLP_GREEN, {}),
    ("hk", "[ipv6-addr:value = '2a03:2880:f10c::1']", TLP_GREEN, {}),
    ("hk", "[url:value = 'http://bad.example.net/gate.php?a=1;b=\\'x\\'&c=\"q\"']", TLP_GREEN, {}),
    ("hk", f"[file:hashes.'SHA-256' = '{SHA.upper()}']", TLP_GREEN, {}),
    ("hk", f"[file:hashes.MD5 = '{MD5}']", TLP_GREEN, {}),
    ("hk", "[email-addr:value = 'phisher@bad.example.net']", TLP_GREEN, {}),
    ("hk", "[ipv4-addr:value = '10.1.2.3']", TLP_GREEN, {}),  # private: never exported
    ("hk", "[ipv4-addr:value = '8.8.8.8']", TLP_GREEN, {}),  # on a warning list
    ("hk", "[domain-name:value = 'red-only.example.net']", TLP_RED,
     {"x_threatbay_recipients": ["ops"]}),
    ("gd", "[domain-name:value = 'amber-gd.example.net']", TLP_AMBER, {}),
    ("gd", "[mac-addr:value = 'aa:bb:cc:dd:ee:ff']", TLP_GREEN, {}),  # not on the whitelist
]  # fmt: skip


@dataclass
class World:
    services: Services
    client: TestClient
    keys: dict[str, Key]

    def export(self, who: str, fmt: str, **params: Any) -> Any:
        r = self.client.get(f"/api/v1/exports/{fmt}", params=params,
                            headers=self.keys[who].bearer)  # fmt: skip
        assert r.status_code == 200, r.text
        return r

    def push(self, who: str, pattern: str, tlp: str, **extra: Any) -> None:
        key = self.keys[who]
        obj = indicator(stix_id=f"indicator--{uuid.uuid4()}", pattern=pattern, tlp=tlp,
                        confidence=95, **extra)  # fmt: skip
        r = self.client.post(key.inbox + "objects/", content=orjson.dumps(bundle(obj)),
                             headers=key.post)  # fmt: skip
        assert r.status_code == 202 and r.json()["success_count"] == 1, r.text

    def settle(self) -> None:
        drain(self.services, correlator_for(self.services))
        books = records_of(self.services)
        # until the group has no lag: a first poll on Kafka may come back empty (group join)
        drain(self.services, AlertEngine(books.alerts, load_ruleset()))
        for index in (names.INDEX_INDICATORS, names.INDEX_ALERTS):
            self.services.store.refresh(index)


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def world(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    with embedded_or_real(request, tmp_path, clock, "exports") as svc:
        keys = keys_for(svc)
        registry = records_of(svc).agencies
        admin = Agency("hk-admin2", "HK second admin", "HK",
                       f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'hk-admin2')}", "B",
                       roles=("analyst", "admin"))  # fmt: skip
        registry.add_agency(admin)
        cred, secret = registry.add_credential(admin.id)
        keys["hk2"] = Key(admin, cred.key_id, secret)
        with TestClient(create_app(svc)) as client:
            w = World(svc, client, keys)
            for who, pattern, tlp, extra in PUSHES:
                w.push(who, pattern, tlp, **extra)
            w.settle()
            yield w


def values(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith(("#", ";"))}


def test_every_format_parses_and_carries_what_the_reader_may_block(
    world: World, tmp_path: Path
) -> None:
    plain = world.export("hk", "plain", type="domain-name")
    assert values(plain.text) == {
        "shared-c2.example.net",
        "xn--bcher-evil-9db.example.org",
        "red-only.example.net",
    }  # the source sees its RED report
    assert plain.headers["content-type"].startswith("text/plain")
    ips = world.export("hk", "plain", type="ipv4-addr")
    assert values(ips.text) == {"5.188.206.14", "91.215.85.0/24"}  # not 10.1.2.3 nor 8.8.8.8
    assert int(ips.headers["X-ThreatBay-Excluded"]) == 2
    assert values(world.export("hk", "plain", type="file:sha256").text) == {SHA}

    rows = csv_rows(world.export("hk", "csv").text)
    by_value = {r["value"]: r for r in rows}
    assert "phisher@bad.example.net" in by_value and "10.1.2.3" not in by_value
    shared = by_value["shared-c2.example.net"]
    assert shared["jurisdictions"] == "GD|HK" and shared["level"] in ("ORANGE", "RED")
    assert shared["key"] == "domain-name|value|shared-c2.example.net"
    assert float(shared["score_now"]) > 50

    rules = rules_of(world.export("hk", "suricata").text)
    msgs = " ".join(r["msg"] for r in rules)
    assert "domain-name|value|shared-c2.example.net" in msgs and "ORANGE" in msgs
    assert {r["sid"] for r in rules} >= {r["sid"] for r in rules if "dns" in r["raw"]}
    assert any("filesha256:threatbay-sha256.list" in r["raw"] for r in rules)
    assert any("filemd5:threatbay-md5.list" in r["raw"] for r in rules)
    assert any("[5.188.206.14]" in r["raw"] for r in rules)
    assert values(world.export("hk", "filesha256").text) == {SHA}
    assert values(world.export("hk", "filemd5").text) == {MD5}
    url_rule = next(
        r for r in rules if r["raw"].startswith("alert http") and "http.uri" in r["raw"]
    )
    assert "|3B|" in url_rule["raw"]  # the URL's ';' is written as a byte, not a separator
    snort = rules_of(world.export("hk", "snort").text)
    assert snort and all(r["action"] == "alert" for r in snort)

    intel = zeek_intel(world.export("hk", "zeek").text)
    kinds = {(r["indicator"], r["indicator_type"]) for r in intel}
    assert ("5.188.206.14", "Intel::ADDR") in kinds and ("91.215.85.0/24", "Intel::SUBNET") in kinds
    assert ("shared-c2.example.net", "Intel::DOMAIN") in kinds
    assert any(t == "Intel::URL" and v.startswith("bad.example.net/") for v, t in kinds)
    assert (SHA, "Intel::FILE_HASH") in kinds

    zone = world.export("hk", "rpz", wildcard="true").text
    check_zone(zone, tmp_path)
    owners = rpz_names(zone)
    assert {"shared-c2.example.net", "*.shared-c2.example.net", "32.14.206.188.5.rpz-ip",
            "24.0.85.215.91.rpz-ip"} <= owners  # fmt: skip
    assert not any("10.1.2.3" in o or "3.2.1.10" in o for o in owners)

    objects = stix_bundle(world.export("hk", "stix").text)
    patterns = {o["pattern"] for o in objects}
    assert "[domain-name:value = 'shared-c2.example.net']" in patterns
    assert len({o["id"] for o in objects}) == len(objects)
    # the records collection's id of the same record (core/record_indicators.py)
    shared = next(o for o in objects if "shared-c2.example.net" in o["pattern"])
    assert shared["id"] == record_indicator_id("domain-name|value|shared-c2.example.net")


def test_sharing_policy_decides_every_export(world: World) -> None:
    def domains(who: str) -> set[str]:
        return values(world.export(who, "plain", type="domain-name").text)

    # TLP:RED: a blocklist is a machine channel (forwarded to firewalls automatically), so
    # only the source's own export carries its RED report; the named recipient reads it on
    # /api/v1 but never gets it in a blocklist; never a non-recipient, never across a border.
    assert "red-only.example.net" in domains("hk")
    assert "red-only.example.net" not in domains("ops")
    lookup = world.client.get("/api/v1/lookup", params={"value": "red-only.example.net"},
                              headers=world.keys["ops"].bearer)  # fmt: skip
    assert lookup.json()["found"], lookup.text
    for who in ("gd", "gd2", "mo", "hk2"):
        assert "red-only.example.net" not in domains(who), who
    # AMBER: participants of its jurisdiction; no border crossing without consent.
    assert "amber-gd.example.net" in domains("gd2")
    for who in ("hk", "mo", "ops"):
        assert "amber-gd.example.net" not in domains(who), who
    # GREEN crosses for whitelisted observable types only (mac-addr is not listed).
    assert "aa:bb:cc:dd:ee:ff" in {r["value"] for r in csv_rows(world.export("gd2", "csv").text)}
    assert "aa:bb:cc:dd:ee:ff" not in world.export("hk", "csv").text
    assert "shared-c2.example.net" in domains("mo")
    for fmt in ("csv", "suricata", "zeek", "stix", "snort"):
        assert "red-only" not in world.export("mo", fmt).text, fmt
        assert "amber-gd" not in world.export("hk", fmt).text, fmt


def test_filters_apply_to_the_readers_view(world: World) -> None:
    def keys(who: str, **params: Any) -> set[str]:
        return {r["key"] for r in csv_rows(world.export(who, "csv", **params).text)}

    everything = keys("hk")
    assert keys("hk", min_agencies=2) == {"domain-name|value|shared-c2.example.net"}
    assert keys("hk", level="ORANGE") == {"domain-name|value|shared-c2.example.net"}
    assert keys("hk", jurisdiction="GD") == {"domain-name|value|shared-c2.example.net"}
    assert keys("hk", min_score=99.9) < everything
    assert len(keys("hk", limit=3)) == 3
    assert keys("hk", state="revoked") == set()
    assert keys("hk", since="2100-01-01T00:00:00Z") == set()
    # GD's AMBER record is GD's only: HK filtering on GD never selects a record it cannot see.
    assert not any("amber-gd" in k for k in keys("hk", jurisdiction="GD"))
    r = world.client.get("/api/v1/exports/plain", headers=world.keys["hk"].bearer)
    assert r.status_code == 400 and "type" in r.text
    r = world.client.get("/api/v1/exports/pdf", headers=world.keys["hk"].bearer)
    assert r.status_code == 404


def test_etag_answers_304_and_the_rpz_serial_grows_with_content(
    world: World, tmp_path: Path
) -> None:
    first = world.export("hk", "rpz")
    etag, serial = first.headers["ETag"], int(first.headers["X-ThreatBay-Serial"])
    again = world.client.get("/api/v1/exports/rpz",
                             headers=world.keys["hk"].bearer | {"If-None-Match": etag})  # fmt: skip
    assert again.status_code == 304 and again.content == b""
    world.services.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    for fmt in ("rpz", "suricata", "snort"):  # no content change: the same ETag
        assert world.export("hk", fmt).headers["ETag"] == world.export("hk", fmt).headers["ETag"]
    assert world.export("hk", "rpz").headers["ETag"] == etag
    assert world.export("hk", "rpz").headers["X-ThreatBay-Serial"] == str(serial)
    world.push("hk", "[domain-name:value = 'late-arrival.example.net']", TLP_GREEN)
    world.settle()
    later = world.export("hk", "rpz")
    assert later.headers["ETag"] != etag and int(later.headers["X-ThreatBay-Serial"]) > serial
    check_zone(later.text, tmp_path)
    assert "late-arrival.example.net" in rpz_names(later.text)
    # another agency's view of the same filters has its own ETag when its content differs
    assert world.export("gd2", "rpz").headers["ETag"] != later.headers["ETag"]


def test_allow_list_is_the_agencys_own_and_takes_effect(world: World) -> None:
    ops = world.keys["ops"].bearer
    r = world.client.post("/api/v1/allowlist", headers=ops, json={"entries": [
        {"kind": "suffix", "value": "example.net", "note": "our test range"},
        {"kind": "cidr", "value": "91.215.0.0/16"},
        {"kind": "value", "value": "5.188.206[.]14"},
    ]})  # fmt: skip
    assert r.status_code == 201, r.text
    ops_domains = values(world.export("ops", "plain", type="domain-name").text)
    assert not any(d.endswith("example.net") for d in ops_domains)
    assert values(world.export("ops", "plain", type="ipv4-addr").text) == set()
    zone = world.export("ops", "rpz").text
    assert "shared-c2" not in zone and "red-only" not in zone
    detail = world.client.get("/api/v1/indicators/domain-name|value|shared-c2.example.net",
                              headers=ops).json()  # fmt: skip
    assert detail["allowlist_hits"] == ["suffix:example.net"]
    assert "allow-list" in detail["components"]["explanation"][-1]
    # Never shared: another HK agency's views, exports and list are untouched.
    hk = world.keys["hk"].bearer
    assert "shared-c2.example.net" in world.export("hk", "plain", type="domain-name").text
    other = world.client.get("/api/v1/indicators/domain-name|value|shared-c2.example.net",
                             headers=hk).json()  # fmt: skip
    assert "allowlist_hits" not in other and "allow-list" not in str(other)
    hk2 = world.keys["hk2"].bearer
    assert world.client.get("/api/v1/allowlist", headers=hk2).json()["entries"] == []
    gone = world.client.delete("/api/v1/allowlist", headers=hk2,
                               params={"kind": "suffix", "value": "example.net"})  # fmt: skip
    assert gone.status_code == 404
    assert world.client.get("/api/v1/allowlist", headers=hk).status_code == 403  # not an admin
    listed = world.client.get("/api/v1/allowlist", headers=ops).json()["entries"]
    assert {(e["kind"], e["value"]) for e in listed} == {
        ("suffix", "example.net"),
        ("cidr", "91.215.0.0/16"),
        ("value", "5.188.206[.]14"),
    }
    bad = world.client.post(
        "/api/v1/allowlist",
        headers=ops,
        json={"entries": [{"kind": "cidr", "value": "300.1.2.3/8"}]},
    )
    assert bad.status_code == 422 and "entries[0]" in bad.text
    r = world.client.delete("/api/v1/allowlist", headers=ops,
                            params={"kind": "suffix", "value": "example.net"})  # fmt: skip
    assert r.status_code == 200
    assert "shared-c2.example.net" in world.export("ops", "plain", type="domain-name").text
    # Detail annotations may reuse a recent read of the list, never one older than a change.
    url = "/api/v1/indicators/domain-name|value|shared-c2.example.net"
    entry = {"kind": "suffix", "value": "example.net"}
    assert world.client.post("/api/v1/allowlist", headers=ops, json={"entries": [entry]}).is_success
    assert world.client.get(url, headers=ops).json()["allowlist_hits"] == ["suffix:example.net"]
    assert world.client.delete("/api/v1/allowlist", headers=ops, params=entry).is_success
    assert "allowlist_hits" not in world.client.get(url, headers=ops).json()


def test_an_alert_all_on_an_agencys_allow_list_is_not_sent_to_it(world: World) -> None:
    books = records_of(world.services)
    for name in ("hk", "ops", "gd"):
        books.webhooks.register(world.keys[name].agency, f"https://hooks.example.net/{name}")
    world.services.store.refresh(names.INDEX_WEBHOOKS)
    r = world.client.post(
        "/api/v1/allowlist",
        headers=world.keys["ops"].bearer,
        json={"entries": [{"kind": "value", "value": "shared-c2.example.net"}]},
    )
    assert r.status_code == 201, r.text
    drain(world.services, notifier_for(world.services))
    world.services.store.refresh(names.INDEX_DELIVERIES)

    def jobs(agency: str) -> int:
        return world.services.store.count(names.INDEX_DELIVERIES, [Term("agency", (agency,))])

    assert jobs("hk-govcert") >= 1 and jobs("gd-cac") >= 1  # the alert was notified
    assert jobs("ops") == 0  # ...but not to the agency whose allow-list covers it


def test_key_order_pages_through_every_visible_record_once(world: World) -> None:
    """``sort=key`` (what exports page by) walks the store's key order: every record the
    reader sees exactly once, across pages of two, whatever views a record has."""
    for who in ("gd", "hk"):
        everything = world.client.get("/api/v1/indicators", params={"limit": 500},
                                      headers=world.keys[who].bearer)  # fmt: skip
        want = sorted(r["key"] for r in everything.json()["items"])
        assert len(want) > 4, want
        got: list[str] = []
        cursor = None
        for _ in range(100):
            params: dict[str, Any] = {"sort": "key", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = world.client.get("/api/v1/indicators", params=params,
                                    headers=world.keys[who].bearer)  # fmt: skip
            assert page.status_code == 200, page.text
            got += [r["key"] for r in page.json()["items"]]
            cursor = page.json()["next"]
            if cursor is None:
                break
        assert got == want, who
