"""Replaying the whole raw topic from offset 0 leaves the store identical (issue 4).

Runs on the embedded pair and on real Kafka + Elasticsearch: push a mix of
indicators (three agencies, a newer version, a revocation, an older version
arriving late), a sighting and an ``indicates`` relationship through TAXII,
correlate, take a canonical dump of the indicator and object indices, replay
the topic from the beginning, and compare.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.clock import FakeClock
from core.ports import Query
from records.agencies import AgencyRegistry
from tests.e2e.conftest import AGENCIES, TLP_GREEN, Key, embedded_or_real, indicator
from threatbay.bootstrap import Services, correlator_for


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "replay", refresh_interval="30s") as svc:
        yield svc


def dump(services: Services, index: str) -> list[tuple[str, bytes]]:
    """Every document of ``index`` in key order, canonically serialised."""
    services.store.refresh(index)
    out: list[tuple[str, bytes]] = []
    after = None
    while True:
        page = services.store.search(index, Query(limit=500, after=after))
        out.extend((h.key, orjson.dumps(h.doc, option=orjson.OPT_SORT_KEYS)) for h in page.hits)
        if not page.more or not page.hits:
            return out
        after = page.hits[-1].cursor


def drain(services: Services, *, from_beginning: bool) -> int:
    worker = correlator_for(services)
    consumer = services.bus.consumer(
        names.TOPIC_RAW, names.GROUP_CORRELATOR, from_beginning=from_beginning
    )
    try:
        total = worker.drain(consumer, idle_polls=8)
    finally:
        consumer.close()
    return total


def test_replaying_the_raw_topic_from_offset_zero_changes_nothing(backends: Services) -> None:
    registry = AgencyRegistry(backends.store, backends.clock)
    keys: dict[str, Key] = {}
    for name in ("gd", "hk", "mo"):
        registry.add_agency(AGENCIES[name])
        cred, secret = registry.add_credential(AGENCIES[name].id)
        keys[name] = Key(AGENCIES[name], cred.key_id, secret)

    c2 = "[domain-name:value = 'replay-c2.example.net']"
    first = indicator(1, pattern=c2, tlp=TLP_GREEN, confidence=70)
    newer = dict(first, modified="2026-02-03T00:00:00.000Z", confidence=90)
    late_older = dict(first, modified="2026-01-15T00:00:00.000Z", confidence=10)
    revoked = indicator(2, pattern="[ipv4-addr:value = '198.51.100.77']", tlp=TLP_GREEN)
    revocation = dict(revoked, modified="2026-02-05T00:00:00.000Z", revoked=True)
    malware_id = f"malware--{uuid.uuid5(uuid.NAMESPACE_URL, 'replay-loader')}"
    pushes: list[tuple[str, list[dict[str, Any]]]] = [
        ("hk", [first, revoked]),
        (
            "gd",
            [indicator(3, pattern="[domain-name:value = 'REPLAY-C2.example.net.']", tlp=TLP_GREEN)],
        ),  # fmt: skip
        (
            "mo",
            [
                indicator(
                    4, pattern="[network-traffic:dst_ref.value = '198.51.100.77']", tlp=TLP_GREEN
                )
            ],
        ),  # fmt: skip
        ("hk", [newer, revocation]),
        ("hk", [late_older]),
        (
            "gd",
            [
                {
                    "type": "malware",
                    "spec_version": "2.1",
                    "id": malware_id,
                    "name": "ReplayLoader",
                    "is_family": True,
                    "created": "2026-01-01T00:00:00.000Z",
                    "modified": "2026-01-01T00:00:00.000Z",
                    "object_marking_refs": [TLP_GREEN],
                },
                {
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": f"relationship--{uuid.uuid5(uuid.NAMESPACE_URL, 'replay-rel')}",
                    "relationship_type": "indicates",
                    "source_ref": first["id"],
                    "target_ref": malware_id,
                    "created": "2026-01-01T00:00:00.000Z",
                    "modified": "2026-01-01T00:00:00.000Z",
                    "object_marking_refs": [TLP_GREEN],
                },
                {
                    "type": "sighting",
                    "spec_version": "2.1",
                    "id": f"sighting--{uuid.uuid5(uuid.NAMESPACE_URL, 'replay-sight')}",
                    "sighting_of_ref": first["id"],
                    "count": 3,
                    "created": "2026-02-01T00:00:00.000Z",
                    "modified": "2026-02-01T00:00:00.000Z",
                    "object_marking_refs": [TLP_GREEN],
                },
            ],
        ),  # fmt: skip
    ]
    with TestClient(create_app(backends)) as client:
        for who, objects in pushes:
            response = client.post(
                keys[who].inbox + "objects/",
                headers=keys[who].post,
                content=orjson.dumps({"objects": objects}),
            )
            assert response.status_code == 202, response.text
            assert response.json()["success_count"] == len(objects)

    assert drain(backends, from_beginning=False) == 10
    records = dump(backends, names.INDEX_INDICATORS)
    stored_objects = dump(backends, names.INDEX_OBJECTS)
    by_key = {k: orjson.loads(v) for k, v in records}
    c2_record = by_key["domain-name|value|replay-c2.example.net"]
    assert c2_record["agencies"] == ["gd-cac", "hk-govcert"]
    hk_report = next(s for s in c2_record["sources"] if s["agency"] == "hk-govcert")
    assert hk_report["confidence"] == 90  # the newer version won; the late older one did not
    assert c2_record["malware"] == [malware_id] and c2_record["sighted"] is True
    ip_record = by_key["ipv4-addr|value|198.51.100.77"]
    assert [s["revoked"] for s in ip_record["sources"] if s["agency"] == "hk-govcert"] == [True]

    assert drain(backends, from_beginning=True) == 10  # every object read again
    assert dump(backends, names.INDEX_INDICATORS) == records
    assert dump(backends, names.INDEX_OBJECTS) == stored_objects


def push_each_and_correlate(backends: Services, *pushes: list[dict[str, Any]]) -> list[int]:
    """HK pushes each list through TAXII and it is correlated on its own, with no index
    refresh in between; returns the objects correlated per push."""
    registry = AgencyRegistry(backends.store, backends.clock)
    registry.add_agency(AGENCIES["hk"])
    cred, secret = registry.add_credential(AGENCIES["hk"].id)
    hk = Key(AGENCIES["hk"], cred.key_id, secret)
    counts: list[int] = []
    with TestClient(create_app(backends)) as client:
        for objects in pushes:
            response = client.post(
                hk.inbox + "objects/", headers=hk.post, content=orjson.dumps({"objects": objects})
            )
            assert response.status_code == 202, response.text
            counts.append(drain(backends, from_beginning=False))
    return counts


def test_a_sighting_right_after_its_indicator_attaches_without_waiting_for_a_refresh(
    backends: Services,
) -> None:
    first = indicator(7, pattern="[url:value = 'http://fresh.example.org/x']", tlp=TLP_GREEN)
    sighting = {
        "type": "sighting", "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid5(uuid.NAMESPACE_URL, 'fresh-sight')}",
        "sighting_of_ref": first["id"], "count": 1, "created": "2026-02-01T00:00:00.000Z",
        "modified": "2026-02-01T00:00:00.000Z", "object_marking_refs": [TLP_GREEN],
    }  # fmt: skip
    assert push_each_and_correlate(backends, [first], [sighting]) == [1, 1]
    stored = backends.store.get(names.INDEX_INDICATORS, "url|value|http://fresh.example.org/x")
    assert stored is not None
    assert stored.doc["sighted"] is True
    assert [s["stix_id"] for s in stored.doc["sightings"]] == [sighting["id"]]


def test_an_indicator_right_after_its_sighting_and_relationship_picks_them_up(
    backends: Services,
) -> None:
    late = indicator(8, pattern="[domain-name:value = 'late.example.org']", tlp=TLP_GREEN)
    sighting = {
        "type": "sighting", "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid5(uuid.NAMESPACE_URL, 'early-sight')}",
        "sighting_of_ref": late["id"], "count": 2, "created": "2026-02-01T00:00:00.000Z",
        "modified": "2026-02-01T00:00:00.000Z", "object_marking_refs": [TLP_GREEN],
    }  # fmt: skip
    malware = f"malware--{uuid.uuid5(uuid.NAMESPACE_URL, 'early-malware')}"
    relationship = {
        "type": "relationship", "spec_version": "2.1",
        "id": f"relationship--{uuid.uuid5(uuid.NAMESPACE_URL, 'early-rel')}",
        "relationship_type": "indicates", "source_ref": late["id"], "target_ref": malware,
        "created": "2026-02-01T00:00:00.000Z", "modified": "2026-02-01T00:00:00.000Z",
        "object_marking_refs": [TLP_GREEN],
    }  # fmt: skip
    assert push_each_and_correlate(backends, [sighting, relationship], [late]) == [2, 1]
    stored = backends.store.get(names.INDEX_INDICATORS, "domain-name|value|late.example.org")
    assert stored is not None
    assert stored.doc["sighted"] is True
    assert [s["stix_id"] for s in stored.doc["sightings"]] == [sighting["id"]]
    assert stored.doc["malware"] == [malware]
