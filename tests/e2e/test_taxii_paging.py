"""Self-contained ``next``, empty pages and their date headers, through HTTP (issue 18).

``next`` carries its query (scope, ``match[...]``, ``added_after``): a request
with ``next`` alone continues it (Elastic ti_custom <= 1.8.1 and OpenCTI's
connector page that way); one that resends the same filters, with any
``limit``, continues it too (taxii2-client ``as_pages``); one with other
filters is a 400 that says to drop ``next``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from core.cursors import encode_token

ROOT = "/taxii2/api/"
SHARED = ROOT + "collections/shared-all/"
TAXII = "application/taxii+json;version=2.1"
FUTURE = "2999-01-01T00:00:00.000Z"


def push(client: TestClient, key: Any, objects: list[dict[str, Any]]) -> None:
    resp = client.post(key.inbox + "objects/", headers=key.post, json={"objects": objects})
    assert resp.status_code == 202, resp.text
    assert resp.json()["success_count"] == len(objects)


def ids(body: dict[str, Any]) -> list[str]:
    return [o["id"] for o in body["objects"]]


def taxii_400(resp: Any) -> str:
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == TAXII
    body = resp.json()
    assert body["http_status"] == "400" and body["title"]
    description: str = body["description"]
    return description


@pytest.fixture
def pushed(client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]) -> list[str]:
    """25 indicators from GD; their ids in date_added order."""
    objs = [stix.indicator(i) for i in range(25)]
    for start in range(0, 25, 5):
        push(client, keys["gd"], objs[start : start + 5])
        drain()
    manifest = client.get(SHARED + "manifest/", headers=keys["gd2"].basic).json()["objects"]
    assert sorted(m["id"] for m in manifest) == sorted(o["id"] for o in objs)
    return [m["id"] for m in manifest]


def walk(
    client: TestClient, h: dict[str, str], first: str, then: Callable[[str], str]
) -> list[str]:
    """Every id reached from ``first``, each following page asked as ``then(next)``."""
    body = client.get(first, headers=h).json()
    seen = ids(body)
    while body["more"]:
        resp = client.get(then(quote(body["next"])), headers=h)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += ids(body)
    return seen


# ------------------------------------------------------------------ next


def test_next_alone_continues_the_original_query(
    client: TestClient, keys: Any, pushed: list[str]
) -> None:
    """Elastic ti_custom <= 1.8.1 / OpenCTI connector: page 2+ is ``limit`` and ``next`` only."""
    h = keys["gd2"].basic
    start = client.get(SHARED + "manifest/?limit=10", headers=h)
    after = start.json()["objects"][2]["date_added"]  # the query starts after the 3rd object
    first = SHARED + f"objects/?added_after={after}&match[type]=indicator&limit=4"
    seen = walk(client, h, first, lambda n: SHARED + f"objects/?limit=4&next={n}")
    assert seen == pushed[3:]  # added_after and match[type] still apply on every page


def test_next_with_the_same_filters_and_another_limit_continues(
    client: TestClient, keys: Any, pushed: list[str]
) -> None:
    """taxii2-client ``as_pages`` resends every filter and may lower ``limit`` between pages."""
    h = keys["gd2"].basic
    q = "added_after=2000-01-01T00:00:00Z&match[type]=indicator&match[spec_version]=2.1"
    seen = walk(
        client,
        h,
        SHARED + f"objects/?limit=7&{q}",
        lambda n: SHARED + f"objects/?limit=3&next={n}&{q}",
    )
    assert seen == pushed


def test_next_with_other_match_filters_is_400_saying_drop_next(
    client: TestClient, keys: Any, pushed: list[str]
) -> None:
    h = keys["gd2"].basic
    body = client.get(SHARED + "objects/?limit=5&match[type]=indicator", headers=h).json()
    n = quote(body["next"])
    for other in ("match[type]=malware", "match[type]=indicator,malware", "match[id]=" + pushed[0]):
        message = taxii_400(client.get(SHARED + f"objects/?next={n}&{other}", headers=h))
        assert "drop next" in message, message


def test_next_of_another_collection_or_endpoint_is_400(
    client: TestClient, keys: Any, pushed: list[str]
) -> None:
    h = keys["gd2"].basic
    n = quote(client.get(SHARED + "objects/?limit=5", headers=h).json()["next"])
    taxii_400(client.get(ROOT + f"collections/shared-gd/objects/?next={n}", headers=h))
    taxii_400(client.get(SHARED + f"manifest/?next={n}", headers=h))


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        encode_token({"c": ["x"], "q": {}}),
        encode_token({"c": ["a", "b"], "q": {"s": "objects|shared-all", "m": {"colour": ["red"]}}}),
        encode_token({"c": ["a", "b"], "q": {"s": "objects|shared-all", "a": "yesterday"}}),
        encode_token({"c": [1, {}], "q": {"s": "objects|shared-all"}}),
        "A" * 5000,
    ],
)
def test_tokens_this_server_did_not_issue_are_taxii_400(
    client: TestClient, keys: Any, token: str
) -> None:
    taxii_400(client.get(SHARED + f"objects/?next={quote(token)}", headers=keys["gd2"].basic))


def test_opencti_connector_run_two_stale_next_with_a_later_added_after_is_the_new_query(
    client: TestClient, keys: Any, stix: Any, pushed: list[str], drain: Callable[[], int]
) -> None:
    """A stale ``next`` whose position lies before the new ``added_after`` constrains
    nothing: the continuation and the new query select the same objects, so it is answered."""
    h = keys["gd2"].basic
    run1 = client.get(
        SHARED + "objects/?limit=10&added_after=2000-01-01T00:00:00.000000Z", headers=h
    )
    stale = quote(run1.json()["next"])
    run1_end = client.get(SHARED + "manifest/?limit=100", headers=h).json()["objects"][-1]
    push(client, keys["gd"], [stix.indicator(100 + i) for i in range(3)])
    drain()
    later = run1_end["date_added"]
    run2 = client.get(SHARED + f"objects/?limit=10&next={stale}&added_after={later}", headers=h)
    assert run2.status_code == 200, run2.text
    plain = client.get(SHARED + f"objects/?limit=10&added_after={later}", headers=h)
    assert ids(run2.json()) == ids(plain.json()) and len(ids(plain.json())) == 3


def test_stale_next_with_an_earlier_added_after_is_400_saying_drop_next(
    client: TestClient, keys: Any, pushed: list[str]
) -> None:
    """Continuing from ``next`` would skip objects the new ``added_after`` asks for: refused."""
    h = keys["gd2"].basic
    body = client.get(SHARED + "objects/?limit=10&added_after=2000-01-01T00:00:00Z", headers=h)
    n = quote(body.json()["next"])
    message = taxii_400(
        client.get(SHARED + f"objects/?next={n}&added_after=2001-01-01T00:00:00Z", headers=h)
    )
    assert "drop next" in message and "added_after" in message


# ------------------------------------------------------------------ empty pages


def test_empty_pages_carry_empty_lists(client: TestClient, keys: Any, pushed: list[str]) -> None:
    h = keys["gd2"].basic
    objects = client.get(SHARED + f"objects/?added_after={FUTURE}", headers=h)
    assert objects.status_code == 200 and objects.json() == {"more": False, "objects": []}
    manifest = client.get(SHARED + f"manifest/?added_after={FUTURE}", headers=h)
    assert manifest.json() == {"more": False, "objects": []}
    typed = client.get(SHARED + "objects/?match[type]=malware", headers=h)
    assert typed.json() == {"more": False, "objects": []}


def test_empty_versions_and_object_pages_carry_empty_lists(
    client: TestClient, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd, h = keys["gd"], keys["gd2"].basic
    sid = "indicator--6f6f7c52-0e0b-4a0e-9f39-9bb0f7f58f1e"
    months = ["2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", "2026-04-01T00:00:00.000Z"]
    for m in months:
        push(client, gd, [stix.indicator(1, stix_id=sid, modified=m)])
        drain()
    versions = client.get(SHARED + f"objects/{sid}/versions/?limit=2", headers=h).json()
    every = client.get(SHARED + f"objects/{sid}/?match[version]=all&limit=2", headers=h).json()
    assert versions["more"] and every["more"]
    gone = client.delete(gd.inbox + f"objects/{sid}/?match[version]={months[2]}", headers=gd.basic)
    assert gone.status_code == 200
    rest = client.get(SHARED + f"objects/{sid}/versions/?next={quote(versions['next'])}", headers=h)
    assert rest.status_code == 200 and rest.json() == {"more": False, "versions": []}
    nxt = quote(every["next"])
    rest = client.get(SHARED + f"objects/{sid}/?match[version]=all&next={nxt}", headers=h)
    assert rest.status_code == 200 and rest.json() == {"more": False, "objects": []}


def test_an_empty_page_echoes_added_after_as_both_date_headers(
    client: TestClient, keys: Any, pushed: list[str]
) -> None:
    """Elastic 0.10.x keeps ``X-TAXII-Date-Added-Last`` as its cursor and loses it on a 200
    without it; echoing the request's ``added_after`` keeps its cursor where it was."""
    h = keys["gd2"].basic
    last = client.get(SHARED + "manifest/?limit=100", headers=h).json()["objects"][-1]["date_added"]
    for path in ("objects/", "manifest/"):
        resp = client.get(SHARED + f"{path}?added_after={last}", headers=h)
        assert resp.status_code == 200
        assert resp.headers["x-taxii-date-added-first"] == last
        assert resp.headers["x-taxii-date-added-last"] == last
    # the echo is the request's own value, normalised to the server's timestamp form
    resp = client.get(SHARED + "objects/?added_after=2999-01-01T00:00:00Z", headers=h)
    assert resp.headers["x-taxii-date-added-last"] == "2999-01-01T00:00:00.000000Z"
    # no added_after, nothing to echo: no date headers on an empty page
    none = client.get(SHARED + "objects/?match[type]=malware", headers=h)
    assert "x-taxii-date-added-last" not in none.headers


def test_empty_inbox_page_of_a_new_agency(client: TestClient, keys: Any) -> None:
    mo = keys["mo"]
    resp = client.get(mo.inbox + "objects/", headers=mo.basic)
    assert resp.status_code == 200 and resp.json() == {"more": False, "objects": []}
    assert orjson.loads(resp.content)["objects"] == []
