"""The whole flow on the embedded backends: TAXII push -> bus -> correlate -> store -> API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from core import names
from core.ports import Consumer
from correlate.worker import Correlator
from tests.e2e.conftest import TLP_AMBER, TLP_GREEN, Key, indicator
from threatbay.bootstrap import Services, correlator_for


@pytest.fixture
def correlate(services: Services) -> Callable[[], int]:
    worker: Correlator = correlator_for(services)
    consumer: Consumer = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)

    def run() -> int:
        n = worker.drain(consumer)
        services.store.refresh(names.INDEX_INDICATORS)
        services.store.refresh(names.INDEX_OBJECTS)
        return n

    return run


def push(client: TestClient, key: Key, objects: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
    )
    assert response.status_code == 202, response.text
    status: dict[str, Any] = response.json()
    return status


def api(key: Key) -> dict[str, str]:
    return {"Authorization": key.bearer["Authorization"]}


def test_same_domain_from_two_jurisdictions_is_one_record_with_explained_score(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> None:
    hk = indicator(
        1, pattern="[domain-name:value = 'Bad.Example.COM.']", tlp=TLP_GREEN, confidence=90
    )
    gd = indicator(
        2, pattern="[domain-name:value = 'bad.example.com']", tlp=TLP_GREEN, confidence=70
    )
    assert push(client, keys["hk"], [hk])["success_count"] == 1
    assert push(client, keys["gd"], [gd])["success_count"] == 1
    assert correlate() == 2

    answer = client.get(
        "/api/v1/lookup", params={"value": "bad[.]example[.]com"}, headers=api(keys["mo"])
    ).json()
    assert answer["keys"] == ["domain-name|value|bad.example.com"]
    (record,) = answer["records"]
    assert record["agencies"] == ["gd-cac", "hk-govcert"]
    assert record["jurisdictions"] == ["GD", "HK"]
    # HK: A (1.0) x 0.9 = 0.9; GD: B (0.9) x 0.7 = 0.63; 100 x (1 - 0.1 x 0.37) = 96.3
    assert record["components"]["per_agency"] == {"hk-govcert": 0.9, "gd-cac": 0.63}
    assert record["score"] == pytest.approx(96.3, abs=0.01)
    assert any("corroboration" in line for line in record["components"]["explanation"])


def test_a_repeat_from_the_same_agency_never_raises_corroboration(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> None:
    first = indicator(1, pattern="[ipv4-addr:value = '203.0.113.9']", confidence=60)
    again = indicator(2, pattern="[network-traffic:dst_ref.value = '203.0.113.9']", confidence=60)
    push(client, keys["hk"], [first, again])
    correlate()
    (record,) = client.get(
        "/api/v1/lookup", params={"value": "203.0.113.9"}, headers=api(keys["hk"])
    ).json()["records"]
    assert record["agency_count"] == 1
    assert len(record["sources"]) == 2
    assert record["score"] == pytest.approx(60.0, abs=0.01)


def test_amber_record_is_not_shown_across_the_border_without_whitelist(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> None:
    push(
        client,
        keys["hk"],
        [indicator(5, pattern="[url:value = 'http://c2.example.net/a']", tlp=TLP_AMBER)],
    )
    correlate()
    own = client.get(
        "/api/v1/lookup", params={"value": "hxxp://c2[.]example[.]net/a"}, headers=api(keys["hk"])
    ).json()
    assert own["found"] is True
    other = client.get(
        "/api/v1/lookup", params={"value": "hxxp://c2[.]example[.]net/a"}, headers=api(keys["mo"])
    ).json()
    assert other["found"] is False


def test_indicator_search_sorts_by_score_and_pages_with_a_cursor(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> None:
    objs = [
        indicator(n, pattern=f"[ipv4-addr:value = '198.51.100.{n}']", confidence=n)
        for n in range(1, 8)
    ]
    push(client, keys["hk"], objs)
    correlate()
    seen: list[float] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/indicators", params=params, headers=api(keys["hk"])).json()
        seen.extend(i["score"] for i in page["items"])
        cursor = page["next"]
        if not cursor:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 7


def test_poison_in_the_topic_goes_to_the_dead_letter_topic(
    services: Services, correlate: Callable[[], int]
) -> None:
    from core.ports import Outgoing

    services.bus.publish(names.TOPIC_RAW, [Outgoing(key="b00", value=b"{not json")])
    correlate()
    dlq = services.bus.consumer(names.TOPIC_DLQ, "test-dlq", from_beginning=True)
    (message,) = dlq.poll(timeout_s=1.0)
    assert "undecodable" in message.headers["reason"]


def test_trace_reconstructs_sources_and_cross_border_releases(
    client: TestClient, keys: dict[str, Key], correlate: Callable[[], int]
) -> None:
    push(
        client,
        keys["hk"],
        [indicator(9, pattern="[domain-name:value = 'trace.example.org']", tlp=TLP_GREEN)],
    )
    correlate()
    seen = client.get(
        "/api/v1/lookup", params={"value": "trace.example.org"}, headers=api(keys["gd"])
    ).json()
    assert seen["found"] is True
    key = seen["keys"][0]
    assert client.get(f"/api/v1/trace/{key}", headers=api(keys["gd"])).status_code == 403
    trace = client.get(f"/api/v1/trace/{key}", headers=api(keys["ops"])).json()
    assert [s["agency"] for s in trace["sources"]] == ["hk-govcert"]
    assert trace["versions"][0]["agency"] == "hk-govcert"
    crossing = [r for r in trace["releases"] if r.get("to_agency") == "gd-cac"]
    assert crossing and crossing[0]["cross_border"] is True
    assert crossing[0]["source_jurisdiction"] == "HK" and crossing[0]["to_jurisdiction"] == "GD"
    assert crossing[0]["rule"]
    exported = client.get("/api/v1/audit", headers=api(keys["ops"])).json()["entries"]
    assert any(e.get("record_key") == key for e in exported)
