"""Push, pull, paginate, filter, version and delete through HTTP (issue 3 items 3-5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.envelope import decode
from core.errors import BusUnavailable
from core.names import INDEX_AUDIT, INDEX_OBJECTS, TOPIC_RAW
from core.ports import Consumer, Outgoing, Query, Term
from records.books import records_of
from records.objects import store_objects
from threatbay.bootstrap import Services

ROOT = "/taxii2/api/"
SHARED = ROOT + "collections/shared-all/"
TAXII = "application/taxii+json;version=2.1"


def push(client: TestClient, key: Any, objects: list[dict[str, Any]]) -> dict[str, Any]:
    resp = client.post(key.inbox + "objects/", headers=key.post, json={"objects": objects})
    assert resp.status_code == 202, resp.text
    assert resp.headers["content-type"] == TAXII
    status: dict[str, Any] = resp.json()
    return status


def ids(resp: Any) -> list[str]:
    return [o["id"] for o in resp.json().get("objects", [])]


# ------------------------------------------------------------ push / status


def test_status_resource_counts_and_lists_agree(client: TestClient, keys: Any, stix: Any) -> None:
    good = [stix.indicator(i) for i in range(3)]
    bad = [
        stix.indicator(10, pattern="[ipv4-addr:value = '1.2.3.4'"),
        {"type": "indicator", "id": "not-an-id"},
        "not an object",
        stix.indicator(11, modified="2025-01-01T00:00:00Z"),  # modified before created
    ]
    status = push(client, keys["gd"], [*good, *bad])
    assert status["status"] == "complete"
    assert status["total_count"] == 7
    assert status["success_count"] == len(status["successes"]) == 3
    assert status["failure_count"] == len(status["failures"]) == 4
    assert status["pending_count"] == 0 and "pendings" not in status
    assert {s["id"] for s in status["successes"]} == {o["id"] for o in good}
    messages = [f["message"] for f in status["failures"]]
    assert "pattern" in messages[0]
    assert "modified" in messages[3]
    assert status["request_timestamp"].endswith("Z") and len(status["request_timestamp"]) == 27


def test_empty_envelope_is_a_complete_status_without_lists(client: TestClient, keys: Any) -> None:
    status = push(client, keys["gd"], [])
    assert status["total_count"] == status["success_count"] == status["failure_count"] == 0
    assert "successes" not in status and "failures" not in status


def test_created_by_ref_of_another_agency_is_a_per_object_failure(
    client: TestClient, keys: Any, stix: Any
) -> None:
    gd, hk = keys["gd"], keys["hk"]
    mine = stix.indicator(1, created_by_ref=gd.agency.identity_id)
    theirs = stix.indicator(2, created_by_ref=hk.agency.identity_id)
    status = push(client, gd, [mine, theirs])
    assert [s["id"] for s in status["successes"]] == [mine["id"]]
    assert status["failures"][0]["id"] == theirs["id"]
    assert "hk-govcert" in status["failures"][0]["message"]


def test_ten_thousand_objects_with_one_bad_pattern(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    objects = [stix.indicator(i) for i in range(10_000)]
    objects[4321]["pattern"] = "[ipv4-addr:value = '10.0.0.1' AND ]"
    status = push(client, keys["gd"], objects)
    assert status["success_count"] == 9_999
    assert [f["id"] for f in status["failures"]] == [objects[4321]["id"]]
    assert drain() == 9_999


class DownBus:
    """A bus whose broker never acknowledges (a fake, as a broker outage looks to ingest)."""

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        raise BusUnavailable("no in-sync replica acknowledged")

    def consumer(self, topic: str, group: str, *, from_beginning: bool = False) -> Consumer:
        raise BusUnavailable("down")

    def close(self) -> None:
        pass


def test_unacknowledged_publish_fails_every_object_never_a_silent_success(
    client: TestClient, services: Services, keys: Any, stix: Any
) -> None:
    real = services.bus
    services.bus = DownBus()
    try:
        status = push(client, keys["gd"], [stix.indicator(1), stix.indicator(2, pattern="[")])
    finally:
        services.bus = real
    assert status["success_count"] == 0
    assert status["failure_count"] == 2
    assert "acknowledge" in status["failures"][1]["message"]


# ------------------------------------------------------------ pages


@pytest.fixture
def pushed25(client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]) -> list[str]:
    objs = [stix.indicator(i) for i in range(25)]
    push(client, keys["gd"], objs[:10])
    push(client, keys["gd"], objs[10:])
    assert drain() == 25
    return [o["id"] for o in objs]


def test_pages_never_exceed_limit_and_next_walks_everything(
    client: TestClient, keys: Any, pushed25: list[str]
) -> None:
    h = keys["gd2"].basic
    url = SHARED + "objects/?limit=10&match[type]=indicator"
    seen: list[str] = []
    added: list[str] = []
    pages = 0
    while True:
        resp = client.get(url, headers=h)
        body = resp.json()
        pages += 1
        assert len(body.get("objects", [])) <= 10
        seen += ids(resp)
        added += [resp.headers["x-taxii-date-added-first"], resp.headers["x-taxii-date-added-last"]]
        assert body["more"] == ("next" in body)
        if not body["more"]:
            break
        # the client resends its filters with next, as taxii2-client does
        url = SHARED + f"objects/?limit=10&match[type]=indicator&next={body['next']}"
    assert pages == 3
    # every object exactly once; date_added ascends across pages; requests keep their order
    assert len(seen) == 25 and set(seen) == set(pushed25)
    assert set(seen[:10]) == set(pushed25[:10])
    assert added == sorted(added)


def test_next_with_other_filters_is_400(client: TestClient, keys: Any, pushed25: Any) -> None:
    h = keys["gd2"].basic
    body = client.get(SHARED + "objects/?limit=5", headers=h).json()
    resp = client.get(
        SHARED + f"objects/?limit=5&match[type]=malware&next={body['next']}", headers=h
    )
    assert resp.status_code == 400


def test_added_after_is_strictly_after(client: TestClient, keys: Any, pushed25: list[str]) -> None:
    h = keys["gd2"].basic
    first = client.get(SHARED + "objects/?limit=10", headers=h)
    last = first.headers["x-taxii-date-added-last"]
    rest = client.get(SHARED + f"objects/?added_after={last}", headers=h)
    assert set(ids(rest)) == set(pushed25[10:]) and len(ids(rest)) == 15
    empty = client.get(SHARED + "objects/?added_after=2999-01-01T00:00:00Z", headers=h)
    assert empty.json() == {"more": False, "objects": []}  # issue 18: objects always present
    assert empty.headers["x-taxii-date-added-last"] == "2999-01-01T00:00:00.000000Z"


def test_manifest_pages_like_objects(client: TestClient, keys: Any, pushed25: list[str]) -> None:
    h = keys["gd2"].basic
    body = client.get(SHARED + "manifest/?limit=20", headers=h).json()
    assert body["more"] is True and body["next"]
    first = [m["id"] for m in body["objects"]]
    assert len(first) == 20 and set(first[:10]) == set(pushed25[:10])
    dates = [m["date_added"] for m in body["objects"]]
    assert dates == sorted(dates) and len(set(dates)) == 20
    entry = body["objects"][0]
    assert entry["media_type"] == "application/stix+json;version=2.1"
    assert entry["version"] == "2026-02-01T00:00:00.000000Z"
    rest = client.get(SHARED + f"manifest/?limit=20&next={body['next']}", headers=h).json()
    rest_ids = [m["id"] for m in rest["objects"]]
    assert set(first + rest_ids) == set(pushed25) and rest["more"] is False


def test_match_fields_and_values(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd = keys["gd"]
    ind = [stix.indicator(i) for i in range(3)]
    mal = {
        "type": "malware", "spec_version": "2.1",
        "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b58abc",
        "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z",
        "name": "ShadowPad", "is_family": True, "object_marking_refs": [stix.green],
    }  # fmt: skip
    push(client, gd, [*ind, mal])
    drain()
    h = keys["gd2"].basic
    assert ids(client.get(SHARED + "objects/?match[type]=malware", headers=h)) == [mal["id"]]
    both = client.get(SHARED + "objects/?match[type]=malware,indicator", headers=h)
    assert len(ids(both)) == 4
    two = client.get(SHARED + f"objects/?match[id]={ind[0]['id']},{mal['id']}", headers=h)
    assert sorted(ids(two)) == sorted([ind[0]["id"], mal["id"]])
    none = client.get(SHARED + f"objects/?match[id]={ind[0]['id']}&match[type]=malware", headers=h)
    assert ids(none) == []
    assert len(ids(client.get(SHARED + "objects/?match[spec_version]=2.1", headers=h))) == 4
    assert ids(client.get(SHARED + "objects/?match[spec_version]=2.0", headers=h)) == []


def test_versions_first_last_all_and_timestamps(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd, h = keys["gd"], keys["gd2"].basic
    sid = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    months = ["2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", "2026-04-01T00:00:00.000Z"]
    push(client, gd, [stix.indicator(1, stix_id=sid, modified=months[1])])
    push(client, gd, [stix.indicator(1, stix_id=sid, modified=months[2])])
    push(client, gd, [stix.indicator(1, stix_id=sid, modified=months[0])])  # late, older version
    drain()

    def mods(query: str) -> list[str]:
        resp = client.get(SHARED + f"objects/{sid}/?{query}", headers=h)
        return [o["modified"] for o in resp.json().get("objects", [])]

    assert mods("") == [months[2]]
    assert mods("match[version]=last") == [months[2]]
    assert mods("match[version]=first") == [months[0]]
    assert sorted(mods("match[version]=all")) == months
    assert mods("match[version]=2026-03-01T00:00:00Z") == [months[1]]
    assert sorted(mods("match[version]=first,last")) == [months[0], months[2]]
    assert len(ids(client.get(SHARED + "objects/?match[version]=all", headers=h))) == 3
    assert len(ids(client.get(SHARED + "objects/", headers=h))) == 1

    vers = client.get(SHARED + f"objects/{sid}/versions/", headers=h)
    assert vers.status_code == 200 and vers.headers["x-taxii-date-added-first"]
    assert sorted(vers.json()["versions"]) == [m.replace(".000Z", ".000000Z") for m in months]
    page = client.get(SHARED + f"objects/{sid}/versions/?limit=2", headers=h).json()
    assert len(page["versions"]) == 2 and page["more"] is True and page["next"]

    # re-pushing a stored version changes nothing (idempotent by id and version)
    before = client.get(SHARED + "manifest/?match[version]=all", headers=h).json()
    push(client, gd, [stix.indicator(1, stix_id=sid, modified=months[1])])
    drain()
    assert client.get(SHARED + "manifest/?match[version]=all", headers=h).json() == before


def test_unknown_object_is_404(client: TestClient, keys: Any) -> None:
    h = keys["gd"].basic
    resp = client.get(
        SHARED + "objects/indicator--00000000-0000-4000-8000-000000000000/", headers=h
    )
    assert resp.status_code == 404 and resp.headers["content-type"] == TAXII
    vers = SHARED + "objects/indicator--00000000-0000-4000-8000-000000000000/versions/"
    assert client.get(vers, headers=h).status_code == 404


# ------------------------------------------------------------ delete


def test_owner_deletes_one_version_then_all(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd = keys["gd"]
    sid = "indicator--1d6d3c59-fd0e-4cb8-9a70-6e8a9d7a1c11"
    push(client, gd, [stix.indicator(1, stix_id=sid, modified="2026-02-01T00:00:00Z")])
    push(client, gd, [stix.indicator(1, stix_id=sid, modified="2026-02-02T00:00:00Z")])
    drain()
    url = gd.inbox + f"objects/{sid}/"
    resp = client.delete(url + "?match[version]=2026-02-02T00:00:00Z", headers=gd.basic)
    assert resp.status_code == 200 and resp.headers["content-type"] == TAXII
    latest = client.get(SHARED + f"objects/{sid}/", headers=keys["gd2"].basic).json()
    assert [o["modified"] for o in latest["objects"]] == ["2026-02-01T00:00:00Z"]
    assert client.delete(url, headers=gd.basic).status_code == 200
    assert client.get(SHARED + f"objects/{sid}/", headers=keys["gd2"].basic).status_code == 404
    assert client.delete(url, headers=gd.basic).status_code == 404


def test_only_the_pushing_agency_may_delete(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd, gd2 = keys["gd"], keys["gd2"]
    obj = stix.indicator(7)
    push(client, gd, [obj])
    drain()
    assert client.delete(SHARED + f"objects/{obj['id']}/", headers=gd2.basic).status_code == 403
    assert client.delete(gd.inbox + f"objects/{obj['id']}/", headers=gd2.basic).status_code == 403
    assert client.delete(gd2.inbox + f"objects/{obj['id']}/", headers=gd2.basic).status_code == 404
    assert ids(client.get(SHARED + "objects/", headers=gd2.basic)) == [obj["id"]]


# ------------------------------------------------------------ sharing


def test_read_collections_show_what_sharing_rules_allow(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd, hk = keys["gd"], keys["hk"]
    green = stix.indicator(1)
    amber = stix.indicator(2, tlp=stix.amber)
    unmarked = stix.indicator(3, tlp=None)
    push(client, gd, [green, amber, unmarked])
    hk_green = stix.indicator(4)
    push(client, hk, [hk_green])
    drain()

    def visible(key: Any, coll: str) -> set[str]:
        return set(ids(client.get(ROOT + f"collections/{coll}/objects/", headers=key.basic)))

    # same jurisdiction: GREEN and AMBER (unmarked = AMBER) reach a participating agency;
    # GREEN attacker infrastructure crosses under the default whitelist
    everything = {green["id"], amber["id"], unmarked["id"], hk_green["id"]}
    assert visible(keys["gd2"], "shared-all") == everything
    assert visible(keys["gd2"], "shared-gd") == {green["id"], amber["id"], unmarked["id"]}
    assert visible(keys["gd2"], "shared-hk") == {hk_green["id"]}
    # across the border: AMBER without a counterpart rule never crosses
    assert visible(hk, "shared-gd") == {green["id"]}
    assert visible(keys["mo"], "shared-all") == {green["id"], hk_green["id"]}
    # the owner reads its inbox back whole
    assert visible(gd, "inbox-gd-cac") == {green["id"], amber["id"], unmarked["id"]}


def test_cross_border_releases_are_audited(
    client: TestClient, services: Services, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    green = stix.indicator(1)
    push(client, keys["gd"], [green])
    drain()
    assert ids(client.get(SHARED + "objects/", headers=keys["hk"].basic)) == [green["id"]]
    assert ids(client.get(SHARED + "objects/", headers=keys["gd2"].basic)) == [green["id"]]
    records_of(services).audit.flush()
    services.store.refresh(INDEX_AUDIT)
    hits = services.store.search(INDEX_AUDIT, Query(filters=(Term("target", (green["id"],)),)))
    entries = [h.doc for h in hits.hits]
    assert len(entries) == 1  # the HK read crossed a border; the GD read did not
    assert entries[0]["to_agency"] == "hk-govcert" and entries[0]["source_agency"] == "gd-cac"
    assert entries[0]["cross_border"] is True and entries[0]["rule"]


def test_replaying_the_bus_changes_nothing(
    client: TestClient, services: Services, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    sid = "indicator--5b1f0a57-7f7e-4c7a-9a43-0d8f8c6e2b10"
    push(client, keys["gd"], [stix.indicator(i) for i in range(5)])
    push(client, keys["gd"], [stix.indicator(1, stix_id=sid, modified="2026-02-03T00:00:00Z")])
    push(client, keys["gd"], [stix.indicator(1, stix_id=sid, modified="2026-02-04T00:00:00Z")])
    drain()
    h = keys["gd2"].basic
    before = client.get(SHARED + "manifest/?match[version]=all", headers=h).json()
    replay = services.bus.consumer(TOPIC_RAW, "replay", from_beginning=True)
    accepted = [a for m in replay.poll(max_records=1000, timeout_s=0.5) for a in decode(m.value)]
    assert len(accepted) == 7
    assert store_objects(services.store, accepted, services.clock) == 0
    services.store.refresh(INDEX_OBJECTS)
    assert client.get(SHARED + "manifest/?match[version]=all", headers=h).json() == before
