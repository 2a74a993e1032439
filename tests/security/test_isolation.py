"""Agencies are isolated from each other (issue 8, DOMAIN.md "Sharing").

An agency never writes to another agency's inbox, never acknowledges an alert
for another jurisdiction, and never reads beyond a report's markings: a TLP:RED
report (no named recipients) or a TLP:AMBER+STRICT report of Hong Kong is
invisible to every other agency through indicator search, detail, lookup and
every TAXII read (objects in every collection, one object, manifest, versions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.taxii.collections import inbox
from core import names
from core.markings import TLP1_RED, TLP2_AMBER_STRICT, TLP2_RED
from core.ports import Query, Term
from tests.e2e.conftest import TLP_GREEN, Key, indicator
from threatbay.bootstrap import Services

ROOT = "/taxii2/api/collections"
SHARED = ("shared-all", "shared-gd", "shared-hk", "shared-mo")

SECRETS = {
    "red1": ("red-one.example.org", TLP1_RED),
    "red2": ("red-two.example.org", TLP2_RED),
    "strict": ("strict.example.org", TLP2_AMBER_STRICT),
}
CONTROL = "green-control.example.org"


def api(key: Key) -> dict[str, str]:
    return {"Authorization": key.bearer["Authorization"]}


def taxii(key: Key) -> dict[str, str]:
    return key.basic


def push(client: TestClient, key: Key, url: str, objects: list[dict[str, Any]]) -> Any:
    return client.post(url, headers=key.post, content=orjson.dumps({"objects": objects}))


def domain_key(domain: str) -> str:
    return f"domain-name|value|{domain}"


@pytest.fixture
def marked(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> dict[str, dict[str, Any]]:
    """Hong Kong pushes two RED reports, one AMBER+STRICT and one GREEN control."""
    objects = {
        name: indicator(100 + i, pattern=f"[domain-name:value = '{d}']", tlp=tlp, confidence=80)
        for i, (name, (d, tlp)) in enumerate(SECRETS.items())
    }
    objects["control"] = indicator(
        200, pattern=f"[domain-name:value = '{CONTROL}']", tlp=TLP_GREEN, confidence=80
    )
    r = push(client, keys["hk"], keys["hk"].inbox + "objects/", list(objects.values()))
    assert r.status_code == 202 and r.json()["success_count"] == 4, r.text
    assert correlate() == 4
    return objects


OTHERS = ("gd", "gd2", "mo", "ops")  # other jurisdictions, and an HK operator agency (admin)


def test_the_source_sees_its_own_marked_reports(
    client: TestClient, keys: dict[str, Key], marked: dict[str, dict[str, Any]]
) -> None:
    # Without this the invisibility checks below could pass on an empty store.
    for domain, _ in SECRETS.values():
        r = client.get("/api/v1/lookup", params={"value": domain}, headers=api(keys["hk"]))
        assert r.json()["found"] is True, (domain, r.json())
    own = client.get(keys["hk"].inbox + "objects/", headers=taxii(keys["hk"])).json()
    assert {o["id"] for o in own["objects"]} == {o["id"] for o in marked.values()}


@pytest.mark.parametrize("reader", OTHERS)
def test_marked_reports_are_invisible_through_the_analyst_api(
    client: TestClient, keys: dict[str, Key], marked: dict[str, dict[str, Any]], reader: str
) -> None:
    key = keys[reader]
    listing = client.get("/api/v1/indicators", params={"limit": 500}, headers=api(key))
    assert listing.status_code == 200, listing.text
    seen = orjson.dumps(listing.json()).decode()
    assert domain_key(CONTROL) in seen  # the reader does see what it may
    for domain, _ in SECRETS.values():
        assert domain not in seen, (reader, domain)
        detail = client.get(f"/api/v1/indicators/{domain_key(domain)}", headers=api(key))
        assert detail.status_code == 404, (reader, domain, detail.text)
        look = client.get("/api/v1/lookup", params={"value": domain}, headers=api(key)).json()
        assert look["records"] == [] and look["found"] is False, (reader, look)
        by_text = client.get(
            "/api/v1/indicators", params={"type": "domain-name", "limit": 500}, headers=api(key)
        )
        assert domain not in by_text.text
    for name in SECRETS:
        assert marked[name]["id"] not in seen


@pytest.mark.parametrize("reader", OTHERS)
def test_marked_reports_are_invisible_through_every_taxii_read(
    client: TestClient, keys: dict[str, Key], marked: dict[str, dict[str, Any]], reader: str
) -> None:
    key = keys[reader]
    secret_ids = {marked[n]["id"] for n in SECRETS}
    control_seen = False
    for coll in (*SHARED, inbox(key.agency.id).name, inbox(key.agency.id).id):
        base = f"{ROOT}/{coll}/"
        for params in ({}, {"match[version]": "all"}, {"match[type]": "indicator"}):
            objs = client.get(base + "objects/", params=params, headers=taxii(key))
            assert objs.status_code == 200, (coll, objs.text)
            ids = {o["id"] for o in objs.json().get("objects", [])}
            assert not ids & secret_ids, (reader, coll, params)
            control_seen |= marked["control"]["id"] in ids
            man = client.get(base + "manifest/", params=params, headers=taxii(key))
            assert man.status_code == 200, (coll, man.text)
            assert not {o["id"] for o in man.json().get("objects", [])} & secret_ids
        for sid in secret_ids:
            by_match = client.get(base + "objects/", params={"match[id]": sid}, headers=taxii(key))
            assert by_match.status_code == 200
            assert by_match.json().get("objects", []) == [], (reader, coll)
            one = client.get(f"{base}objects/{sid}/", headers=taxii(key))
            assert one.status_code == 404, (reader, coll, one.status_code)
            versions = client.get(f"{base}objects/{sid}/versions/", headers=taxii(key))
            assert versions.status_code == 404, (reader, coll, versions.status_code)
    assert control_seen, "the GREEN control report should be visible in some collection"
    # The source's inbox itself is closed to everyone else.
    hk_inbox = keys["hk"].inbox
    for suffix in ("", "objects/", "manifest/", f"objects/{marked['red1']['id']}/"):
        r = client.get(hk_inbox + suffix, headers=taxii(key))
        assert r.status_code == 403, (reader, suffix, r.status_code)


def test_an_agency_cannot_write_to_another_agencys_inbox(
    client: TestClient, keys: dict[str, Key], services: Services
) -> None:
    gd, hk = keys["gd"], keys["hk"]
    obj = indicator(300, pattern="[ipv4-addr:value = '203.0.113.77']")
    for target in (hk.inbox, f"{ROOT}/{inbox(hk.agency.id).id}/", f"{ROOT}/shared-all/"):
        r = push(client, gd, target + "objects/", [obj])
        assert r.status_code == 403, (target, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/taxii+json")
        assert r.json()["http_status"] == "403"
    # Nothing of it reached the bus.
    consumer = services.bus.consumer(names.TOPIC_RAW, "test-isolation", from_beginning=True)
    assert consumer.poll(max_records=10, timeout_s=0.1) == []
    # A payload naming another agency as its creator is refused even in the own inbox.
    forged = indicator(301, created_by_ref=hk.agency.identity_id)
    status = push(client, gd, gd.inbox + "objects/", [forged]).json()
    assert status["success_count"] == 0 and status["failure_count"] == 1, status


def test_an_agency_cannot_delete_another_agencys_object(
    client: TestClient, keys: dict[str, Key], marked: dict[str, dict[str, Any]], services: Services
) -> None:
    gd, hk = keys["gd"], keys["hk"]
    victim = marked["control"]["id"]
    assert client.delete(f"{hk.inbox}objects/{victim}/", headers=taxii(gd)).status_code == 403
    assert client.delete(f"{gd.inbox}objects/{victim}/", headers=taxii(gd)).status_code == 404
    for shared in SHARED:
        r = client.delete(f"{ROOT}/{shared}/objects/{victim}/", headers=taxii(gd))
        assert r.status_code == 403, (shared, r.status_code)
    still = services.store.search(
        names.INDEX_OBJECTS,
        Query(filters=(Term("id", (victim,)), Term("deleted", (False,))), limit=5),
    )
    assert still.hits, "the HK object must survive GD's delete attempts"


@pytest.fixture
def cross_border_alert(
    client: TestClient,
    keys: dict[str, Key],
    correlate: Callable[[], int],
    raise_alerts: Callable[[], None],
) -> dict[str, Any]:
    """An alert concerning HK and GD (same domain reported by both), GREEN so all see it."""
    pattern = "[domain-name:value = 'joint.example.net']"
    for n, name, conf in ((400, "hk", 90), (401, "gd", 85)):
        r = push(
            client,
            keys[name],
            keys[name].inbox + "objects/",
            [indicator(n, pattern=pattern, confidence=conf)],
        )
        assert r.status_code == 202
        correlate()
        raise_alerts()
    items = client.get("/api/v1/alerts", headers=api(keys["hk"])).json()["items"]
    assert len(items) == 1, items
    alert: dict[str, Any] = items[0]
    assert alert["jurisdictions"] == ["GD", "HK"]
    return alert


def test_no_acknowledgement_for_another_jurisdiction(
    client: TestClient, keys: dict[str, Key], cross_border_alert: dict[str, Any]
) -> None:
    url = f"/api/v1/alerts/{cross_border_alert['id']}"
    # Macao is not concerned: it may not acknowledge or resolve.
    for action in ("acknowledge", "resolve"):
        r = client.post(f"{url}/{action}", headers=api(keys["mo"]), json={})
        assert r.status_code in (403, 404), (action, r.status_code, r.text)
    # A second GD agency acknowledges: only GD's state changes, whatever the body claims.
    r = client.post(
        f"{url}/acknowledge",
        headers=api(keys["gd2"]),
        json={"note": "for HK too", "jurisdiction": "HK"},
    )
    assert r.status_code == 200, r.text
    state = client.get(url, headers=api(keys["hk"])).json()["jurisdiction_state"]
    assert state["GD"]["acknowledged_by"] == "gd-cncert"
    assert state["HK"]["status"] == "notified" and not state["HK"]["acknowledged_by"]
    assert "MO" not in state


def test_red_reaches_only_named_recipients_and_never_crosses_a_border(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> None:
    # HK names an HK agency (ops) and a GD agency (gd-cac). core/policy.py: RED never
    # crosses a border and is never put on a machine channel (TAXII export), so only
    # ops may read it, and only through the analyst API.
    domain = "named-red.example.org"
    obj = indicator(
        500,
        pattern=f"[domain-name:value = '{domain}']",
        tlp=TLP1_RED,
        x_threatbay_recipients=["ops", "gd-cac"],
    )
    assert push(client, keys["hk"], keys["hk"].inbox + "objects/", [obj]).status_code == 202
    correlate()

    def sees(name: str) -> tuple[bool, bool]:
        """(through lookup, through any TAXII collection) for agency ``name``."""
        look = client.get("/api/v1/lookup", params={"value": domain}, headers=api(keys[name]))
        in_taxii = False
        for coll in SHARED:
            page = client.get(f"{ROOT}/{coll}/objects/", headers=taxii(keys[name])).json()
            in_taxii |= obj["id"] in {o["id"] for o in page.get("objects", [])}
        return bool(look.json()["found"]), in_taxii

    assert sees("ops") == (True, False), "a named recipient in HK reads it, never via TAXII"
    assert sees("gd") == (False, False), "named, but across the border: RED never crosses"
    assert sees("gd2") == (False, False) and sees("mo") == (False, False)
