"""The consumer collection ``records`` (issue 18): ThreatBay's deduplicated, scored, expiring
view as STIX 2.1 indicators, read by real client code (taxii2-client 2.3.0 over uvicorn) on
the embedded backends and on Kafka + Elasticsearch.

What a SIEM pointed at ``records`` must get: one indicator per record the reader may see
(three agencies reporting one value: one indicator, three external references), nothing
of reports hidden from it (a TLP:RED report changes no byte of another reader's page), and
an ``added_after`` poll that brings exactly the new version after a new source, a
revocation or decay. Every object parses with the stix2 library.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stix2
import uvicorn
from taxii2client.common import TokenAuth
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from api.app import create_app
from api.taxii.records import RECORDS_NAMESPACE
from core import names
from core.access import bearer_token
from core.alerts import PLATFORM_IDENTITY
from core.clock import FakeClock, format_timestamp, parse_timestamp
from tests.e2e.conftest import Key, embedded_or_real, free_port, indicator
from tests.e2e.test_backends_agree import drain
from tests.e2e.test_status import keys_for
from threatbay.bootstrap import Services, correlator_for, rescorer_for

TAXII = "application/taxii+json;version=2.1"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
TLP2_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
IP = "203.0.113.9"
KEY = f"ipv4-addr|value|{IP}"


@dataclass
class Site:
    services: Services
    url: str
    keys: dict[str, Key]
    clock: FakeClock

    @property
    def root(self) -> str:
        return f"{self.url}/taxii2/api/"

    def push(self, who: str, *objects: dict[str, Any]) -> None:
        key = self.keys[who]
        r = httpx.post(f"{self.url}{key.inbox}objects/", headers=key.post,
                       content=orjson.dumps({"objects": list(objects)}))  # fmt: skip
        assert r.status_code == 202 and r.json()["success_count"] == len(objects), r.text

    def correlate(self) -> None:
        drain(self.services, correlator_for(self.services))
        self.services.store.refresh(names.INDEX_INDICATORS)

    def rescore(self) -> None:
        rescorer_for(self.services).run_pass()
        self.services.store.refresh(names.INDEX_INDICATORS)

    def records(self, who: str) -> Collection:
        key = self.keys[who]
        root = ApiRoot(self.root, user=key.key_id, password=key.secret)
        [coll] = [c for c in root.collections if c.alias == "records"]  # type: ignore[attr-defined]
        return coll

    def page(self, who: str, **params: Any) -> httpx.Response:
        key = self.keys[who]
        r = httpx.get(f"{self.root}collections/records/objects/", params=params,
                      headers=key.basic)  # fmt: skip
        assert r.status_code == 200, r.text
        return r


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def site(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Site]:
    with embedded_or_real(request, tmp_path, clock, "records") as services:
        keys = keys_for(services)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield Site(services, f"http://127.0.0.1:{port}", keys, clock)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def report(pattern: str = f"[ipv4-addr:value = '{IP}']", **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"labels": ["c2"], "confidence": 80} | extra
    return indicator(stix_id=f"indicator--{uuid.uuid4()}", pattern=pattern, **fields)


def objects_of(coll: Collection, per_request: int = 1) -> list[dict[str, Any]]:
    return [o for page in as_pages(coll.get_objects, per_request=per_request)
            for o in page.get("objects", [])]  # fmt: skip


def test_records_is_listed_to_every_reader_with_a_uuid4_id(site: Site) -> None:
    for name, key in site.keys.items():
        listed = httpx.get(f"{site.root}collections/", headers=key.basic).json()["collections"]
        [coll] = [c for c in listed if c["alias"] == "records"]
        assert UUID4.match(coll["id"]), coll
        assert coll["can_read"] is True and coll["can_write"] is False, (name, coll)


def test_three_agencies_one_value_one_indicator_with_three_references(site: Site) -> None:
    pushed = {who: report() for who in ("gd", "hk", "mo")}
    for who, obj in pushed.items():
        site.push(who, obj)
    site.push(
        "gd",
        report(
            pattern="[domain-name:value = 'c2.example'] AND [url:value = 'http://c2.example/a']"
        ),
    )
    site.correlate()

    found = objects_of(site.records("gd2"))  # taxii2-client, Basic, as_pages one by one
    by_pattern = {o["pattern"]: o for o in found}
    assert len(found) == 2, found
    one = by_pattern[f"[ipv4-addr:value = '{IP}']"]
    assert one["id"] == f"indicator--{uuid.uuid5(RECORDS_NAMESPACE, KEY)}"
    assert sorted(r["external_id"] for r in one["external_references"]) == sorted(
        o["id"] for o in pushed.values()
    )
    assert 0 <= one["confidence"] <= 100 and one["confidence"] > 80  # corroborated by three
    assert one["created_by_ref"] == PLATFORM_IDENTITY
    assert one["valid_from"] <= one["modified"] and "revoked" not in one or not one["revoked"]
    assert one["labels"] == ["c2"] and one["indicator_types"]
    compound = [o for o in found if o is not one]
    assert " AND " in compound[0]["pattern"]  # kept whole
    for obj in found:
        stix2.parse(obj, allow_custom=False)  # every object is valid STIX 2.1

    # TokenAuth, discovery -> API root -> collection by alias (taxii2-client's own path)
    mo = site.keys["mo"]
    server = Server(f"{site.url}/taxii2/", auth=TokenAuth(bearer_token(mo.key_id, mo.secret)))
    [root] = server.api_roots
    [coll] = [c for c in root.collections if c.alias == "records"]  # type: ignore[attr-defined]
    assert sorted(o["id"] for o in objects_of(coll, 5)) == sorted(o["id"] for o in found)
    manifest = [m for p in as_pages(coll.get_manifest, per_request=1) for m in p["objects"]]
    assert sorted(m["version"] for m in manifest) == sorted(o["modified"] for o in found)
    versions = coll.object_versions(one["id"])  # type: ignore[no-untyped-call]
    assert versions["versions"] == [one["modified"]]
    assert coll.get_object(one["id"])["objects"] == [one]  # type: ignore[no-untyped-call]


def test_a_hidden_red_report_changes_nothing_on_another_readers_page(site: Site) -> None:
    site.push("hk", report())
    site.push("mo", report())
    site.correlate()
    before = site.page("hk", limit=10)
    hk_id = before.json()["objects"][0]["id"]
    # GD's RED report on the same value, for one GD agency only: hk must learn nothing of it
    site.clock.advance(timedelta(minutes=5))
    site.push("gd", report(object_marking_refs=[TLP_RED], confidence=100, labels=["apt"],
                           x_threatbay_recipients=[site.keys["gd2"].agency.id]))  # fmt: skip
    site.correlate()
    after = site.page("hk", limit=10)
    assert after.content == before.content  # confidence, refs, modified, count: every byte
    for name in ("X-TAXII-Date-Added-First", "X-TAXII-Date-Added-Last"):
        assert after.headers.get(name) == before.headers.get(name)
    again = site.page("hk", added_after=before.headers["X-TAXII-Date-Added-Last"])
    assert again.json()["objects"] == []
    # the RED report's own agency does see it, with the RED marking (the test can fail)
    [gd_view] = site.page("gd").json()["objects"]
    assert gd_view["id"] == hk_id and len(gd_view["external_references"]) == 3
    assert gd_view["object_marking_refs"] == [
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
    ]


def test_added_after_brings_exactly_the_new_version(site: Site) -> None:
    hk_report = report()
    site.push("hk", hk_report)
    site.correlate()
    first = site.page("gd2")
    [v1] = first.json()["objects"]
    mark = first.headers["X-TAXII-Date-Added-Last"]

    def poll() -> list[dict[str, Any]]:
        nonlocal mark
        r = site.page("gd2", added_after=mark)
        mark = r.headers.get("X-TAXII-Date-Added-Last", mark)
        found: list[dict[str, Any]] = r.json()["objects"]
        for obj in found:
            stix2.parse(obj, allow_custom=False)
        return found

    assert poll() == []
    # a new source
    site.clock.advance(timedelta(minutes=1))
    mo_report = report()
    site.push("mo", mo_report)
    site.correlate()
    [v2] = poll()
    assert v2["id"] == v1["id"] and v2["modified"] > v1["modified"]
    assert len(v2["external_references"]) == 2 and v2["confidence"] > v1["confidence"]
    assert poll() == []
    # one source revokes: still live; both revoke: revoked
    site.clock.advance(timedelta(minutes=1))
    site.push("mo", mo_report | {"modified": "2026-02-02T00:00:00.000Z", "revoked": True})
    site.correlate()
    [v3] = poll()
    assert v3["modified"] > v2["modified"] and not v3.get("revoked")
    site.clock.advance(timedelta(minutes=1))
    site.push("hk", hk_report | {"modified": "2026-02-02T00:00:00.000Z", "revoked": True})
    site.correlate()
    [v4] = poll()
    assert v4["modified"] > v3["modified"] and v4["revoked"] is True
    assert poll() == []


def test_decay_below_the_threshold_is_a_new_version_that_has_expired(site: Site) -> None:
    site.push("hk", report())
    site.correlate()
    first = site.page("gd2")
    [v1] = first.json()["objects"]
    threshold = site.services.settings.taxii.records_expire_below
    assert v1["confidence"] > threshold
    assert parse_timestamp(v1["valid_until"]) > site.clock.now()
    # IP: tau 47 days; long enough after, the decayed score is below the threshold
    site.clock.advance(timedelta(days=40))
    site.rescore()
    r = site.page("gd2", added_after=first.headers["X-TAXII-Date-Added-Last"])
    [v2] = r.json()["objects"]
    stix2.parse(v2, allow_custom=False)
    assert v2["id"] == v1["id"] and v2["modified"] > v1["modified"]
    assert v2["confidence"] < threshold
    assert v2["valid_until"] <= format_timestamp(site.clock.now())


def test_a_client_resuming_only_from_date_added_last_gets_a_whole_batch(site: Site) -> None:
    """One batch writes 60 records; a poller that ignores ``next`` and resumes from
    X-TAXII-Date-Added-Last with limit 10 (as the multi-correlator poller does) gets all."""
    site.push("gd", *[report(pattern=f"[ipv4-addr:value = '192.0.2.{n}']") for n in range(60)])
    site.correlate()
    seen: set[str] = set()
    mark: str | None = None
    for _ in range(40):
        r = site.page("hk", limit=10, **({"added_after": mark} if mark else {}))
        seen |= {o["id"] for o in r.json()["objects"]}
        mark = r.headers.get("X-TAXII-Date-Added-Last", mark)
        if not r.json()["more"]:
            break
    assert len(seen) == 60
