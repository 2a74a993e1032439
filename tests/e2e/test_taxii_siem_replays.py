"""Exact request sequences of SIEM TAXII consumers, replayed over HTTP against uvicorn (issue 18).

Each replay reproduces what the client's published code sends (headers, parameter
order and encoding, what it keeps between requests) and what it does with the
answer; nothing of the clients' code is copied. Labels: [code] read in the
client's source, [PR] taken from a maintainer's PR text, [guess] inferred, to be
confirmed by a capture. Sources and commits are listed in the README section
"Connecting your SIEM".
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from core.access import bearer_token
from core.clock import SystemClock, format_timestamp, parse_timestamp

TAXII = "application/taxii+json;version=2.1"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)


@pytest.fixture
def clock() -> SystemClock:  # type: ignore[override]
    return SystemClock()


def basic(key: Any, scheme: str = "Basic") -> dict[str, str]:
    token = base64.b64encode(f"{key.key_id}:{key.secret}".encode()).decode()
    return {"Authorization": f"{scheme} {token}"}


def collection_id(base: str, key: Any, alias: str) -> str:
    resp = httpx.get(f"{base}/taxii2/api/collections/", headers=basic(key) | {"Accept": TAXII})
    found: str = {c["alias"]: c["id"] for c in resp.json()["collections"]}[alias]
    return found


@pytest.fixture
def seed(
    live_server: str, keys: Any, stix: Any, drain: Callable[[], int]
) -> Callable[[int, int], list[str]]:
    """Push indicators ``start..start+n`` as GD, five per request, each request stored before
    the next; returns their ids."""
    gd = keys["gd"]

    def run(start: int, n: int) -> list[str]:
        objs = [stix.indicator(start + i) for i in range(n)]
        for i in range(0, n, 5):
            resp = httpx.post(
                f"{live_server}{gd.inbox}objects/",
                headers=gd.post,
                json={"objects": objs[i : i + 5]},
            )
            assert resp.status_code == 202 and resp.json()["success_count"] == len(objs[i : i + 5])
            drain()
        return [o["id"] for o in objs]

    return run


# ------------------------------------------------------------------ Elastic ti_custom


class ElasticCel:
    """Elastic ``ti_custom`` CEL program (data_stream/indicator/agent/stream/cel.yml.hbs):
    one ``interval()`` is one scheduled run, looping while ``want_more``.

    [code, package 0.10.x] page 2+ is ``url/?limit=L&next=N`` (no ``added_after``);
    ``cursor.last_timestamp`` = ``X-TAXII-Date-Added-Last`` of every 200/206, lost ({}) when a
    200 lacks it; ``events`` = ``body.objects.map(...)``, an evaluation error when
    ``objects`` is missing. [PR #20184, 1.8.2] ``added_after`` is kept and resent with ``next``.
    [guess] ``accept_header`` defaults to the TAXII 2.1 type.
    """

    def __init__(
        self, objects_url: str, auth: dict[str, str], interval: timedelta, limit: int, v182: bool
    ) -> None:
        self.url = objects_url.rstrip("/")
        self.headers = {"Accept": TAXII} | auth
        self.initial_interval, self.limit, self.v182 = interval, limit, v182
        self.cursor: dict[str, str] = {}
        self.events: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []

    def interval(self, client: httpx.Client) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        since = self.cursor.get("last_timestamp") or (now - self.initial_interval).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        query = {"added_after": since, "limit": str(self.limit)}
        url = self.url + "/?" + urlencode(sorted(query.items()))  # Go url.Values.Encode
        while True:
            self.requests.append(url)
            resp = client.get(url, headers=self.headers)
            if resp.status_code not in (200, 206):
                self.errors.append(f"HTTP {resp.status_code}: {resp.text}")
                return
            body = resp.json()
            if "objects" not in body:
                self.errors.append("no such key: objects")
                return
            self.events += [o["id"] for o in body["objects"]]
            last = resp.headers.get("x-taxii-date-added-last")
            self.cursor = {"last_timestamp": last} if last else {}
            nxt = body.get("next", "")
            if not nxt:
                return
            page = {"limit": str(self.limit), "next": nxt}
            if self.v182:
                page["added_after"] = since
            url = self.url + "/?" + urlencode(sorted(page.items()))


@pytest.mark.parametrize("v182", [False, True], ids=["ti_custom<=1.8.1", "ti_custom>=1.8.2"])
def test_elastic_ti_custom_intervals_page_idle_and_resume_from_the_cursor(
    live_server: str, keys: Any, seed: Callable[[int, int], list[str]], v182: bool
) -> None:
    first = seed(0, 23)
    hk = keys["hk"]
    cid = collection_id(live_server, hk, "shared-all")
    url = f"{live_server}/taxii2/api/collections/{cid}/objects/"
    token = {"Authorization": f"Token {bearer_token(hk.key_id, hk.secret)}"}  # key_type: Token
    elastic = ElasticCel(url, token, timedelta(hours=24), 10, v182)
    with httpx.Client() as client:
        elastic.interval(client)
        assert len(elastic.requests) == 3 and ("added_after" in elastic.requests[1]) == v182
        cursor = elastic.cursor["last_timestamp"]
        elastic.interval(client)  # idle: an empty page keeps the cursor where it was
        assert elastic.cursor == {"last_timestamp": cursor}
        later = seed(100, 6)
        elastic.interval(client)
    assert elastic.errors == []
    assert Counter(elastic.events) == Counter(first + later)


# ------------------------------------------------------------------ OpenCTI platform


def test_opencti_platform_ingester_ticks_page_idle_and_move_its_start(
    live_server: str, keys: Any, seed: Callable[[int, int], list[str]]
) -> None:
    """[code] ingestionTaxii.ts: one GET per tick with ``next`` (state), ``added_after`` (kept
    while paging), ``limit``; after the last page ``added_after_start`` = the Last header as a
    JS ``toISOString()`` (millisecond precision); an empty page changes nothing; Bearer auth."""
    first = seed(0, 12)
    mo = keys["mo"]
    cid = collection_id(live_server, mo, "shared-all")
    url = f"{live_server}/taxii2/api/collections/{cid}/objects/"
    headers = {"Accept": TAXII, "Authorization": f"Bearer {bearer_token(mo.key_id, mo.secret)}"}
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds")
    state: dict[str, Any] = {"added_after_start": start.replace("+00:00", "Z"), "cursor": None}
    got: list[str] = []
    cursor_ms: set[str] = set()

    def tick(client: httpx.Client) -> None:
        params = {"added_after": state["added_after_start"], "limit": "5"}
        if state["cursor"]:
            params["next"] = state["cursor"]
        resp = client.get(url, params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        if not data.get("objects"):
            return
        got.extend(o["id"] for o in data["objects"])
        if data.get("more") and data.get("next"):
            state["cursor"] = data["next"]
            return
        last = resp.headers.get("x-taxii-date-added-last")
        when = parse_timestamp(last) if last else datetime.now(UTC)
        ms = when.replace(microsecond=when.microsecond // 1000 * 1000)
        state.update(cursor=None, added_after_start=format_timestamp(ms)[:23] + "Z")
        cursor_ms.add(state["added_after_start"][:23])

    with httpx.Client() as client:
        for _ in range(5):
            tick(client)
        later = seed(200, 4)
        for _ in range(2):
            tick(client)
    assert set(got) == set(first + later)  # nothing lost
    # Re-delivered: only objects added in the millisecond the ingester truncated its cursor to
    # (it keeps Last as a JS Date); OpenCTI upserts them by id.
    added = {
        m["id"]: m["date_added"]
        for m in httpx.get(
            f"{live_server}/taxii2/api/collections/{cid}/manifest/", headers=headers
        ).json()["objects"]
    }
    again = [sid for sid, n in Counter(got).items() if n > 1]
    assert all(added[sid][:23] in cursor_ms for sid in again), (again, cursor_ms)


# ------------------------------------------------------------------ OpenCTI connector, 2.0 mode


def test_opencti_connector_in_taxii20_mode_ends_on_an_empty_objects_list(
    live_server: str, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    """[code] client_taxii.py ``poll``: a first object without ``spec_version`` (an SCO) switches
    to 2.0 paging: ``manifest/?match[id]=<last id>``, then ``objects/?added_after=<its date_added>``
    until ``len(response["objects"]) == 0``, a KeyError when ``objects`` is missing."""
    gd, hk = keys["gd"], keys["hk"]
    sco = {
        "type": "domain-name",
        "id": f"domain-name--{uuid.uuid4()}",
        "value": "c2.example.net",
        "object_marking_refs": [stix.green],
    }
    objs = [sco] + [stix.indicator(i) for i in range(4)]
    for obj in objs:
        resp = httpx.post(
            f"{live_server}{gd.inbox}objects/", headers=gd.post, json={"objects": [obj]}
        )
        assert resp.json()["success_count"] == 1, resp.text
        drain()
    base = f"{live_server}/taxii2/api/collections/{collection_id(live_server, hk, 'shared-all')}/"
    h = basic(hk) | {"Accept": TAXII}
    filters: dict[str, str] = {"added_after": "2000-01-01T00:00:00.000000Z"}
    got: list[str] = []
    with httpx.Client() as client:
        response = client.get(base + "objects/", params=filters, headers=h).json()
        assert "spec_version" not in response["objects"][0]
        for _ in range(10):
            got += [o["id"] for o in response["objects"]]
            last = response["objects"][-1]
            # taxii2-client's get_manifest(id=...) sends match[id]
            manifest = client.get(base + "manifest/", params={"match[id]": last["id"]}, headers=h)
            filters["added_after"] = manifest.json()["objects"][0]["date_added"]
            response = client.get(base + "objects/", params=filters, headers=h).json()
            if len(response["objects"]) == 0:  # KeyError before issue 18
                break
    assert got == [o["id"] for o in objs]


def test_opencti_connector_stale_next_pointing_after_the_new_added_after_is_400_drop_next(
    live_server: str, keys: Any, seed: Callable[[int, int], list[str]]
) -> None:
    """Run 2 sends ``next`` kept from run 1 with ``added_after`` = run 1's start. When run 1's
    pages went past that start (objects added while it paged), continuing from ``next`` would
    skip objects the new ``added_after`` asks for, and restarting would ignore ``next``: the
    server does not guess; 400, saying to drop ``next``. The connector logs it and its next
    run (a later ``added_after``) is answered."""
    hk = keys["hk"]
    cid = collection_id(live_server, hk, "shared-all")
    url = f"{live_server}/taxii2/api/collections/{cid}/objects/"
    h = basic(hk) | {"Accept": TAXII}
    run1_start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    seed(0, 25)  # added while run 1 pages
    page1 = httpx.get(
        url, params={"limit": 10, "added_after": "2000-01-01T00:00:00.000000Z"}, headers=h
    )
    stale = page1.json()["next"]
    page2 = httpx.get(url, params={"limit": 10, "next": stale}, headers=h).json()
    stale = page2["next"]  # kept in filters until the next run
    after = run1_start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    run2 = httpx.get(url, params={"limit": 10, "next": stale, "added_after": after}, headers=h)
    assert run2.status_code == 400
    assert "drop next" in run2.json()["description"]
    time.sleep(1.1)
    run3_after = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    run3 = httpx.get(url, params={"limit": 10, "next": stale, "added_after": run3_after}, headers=h)
    assert run3.status_code == 200 and run3.json() == {"more": False, "objects": []}


# ------------------------------------------------------------------ MISP UI browse


def test_misp_ui_browse_with_lowercase_basic_and_a_content_type_on_get(
    live_server: str, keys: Any, seed: Callable[[int, int], list[str]]
) -> None:
    """[code] TaxiiServer::queryInstance: ``Authorization: basic <api_key>`` (lowercase),
    ``Content-type`` on a GET, ``?limit=50[&next=]``; a null next is left out [guess]."""
    want = seed(0, 55)
    mo = keys["mo"]
    api_key = base64.b64encode(f"{mo.key_id}:{mo.secret}".encode()).decode()
    h = {"Accept": TAXII, "Content-type": TAXII, "Authorization": f"basic {api_key}"}
    root = f"{live_server}/taxii2/api/"
    collections = httpx.get(root + "collections/", headers=h).json()["collections"]
    cid = {c["alias"]: c["id"] for c in collections}["shared-gd"]
    got: list[str] = []
    query: dict[str, Any] = {"limit": 50}
    while True:
        body = httpx.get(f"{root}collections/{cid}/objects/", params=query, headers=h).json()
        got += [o["id"] for o in body["objects"]]
        if not body.get("next"):
            break
        query = {"limit": 50, "next": body["next"]}
    assert Counter(got) == Counter(want)


# ------------------------------------------------------------------ Microsoft Sentinel


def test_every_collection_id_is_uuidv4_shaped_for_sentinel(live_server: str, keys: Any) -> None:
    """Sentinel's "Add" checks "Taxii collectionId (uuidv4)" (Azure-Sentinel issue 11202); its
    exact check is not published. ThreatBay's ids are version-4 shaped (deterministic)."""
    gd = keys["gd"]
    resp = httpx.get(
        f"{live_server}/taxii2/api/collections/", headers=basic(gd) | {"Accept": TAXII}
    )
    ids = [c["id"] for c in resp.json()["collections"]]
    assert len(ids) == 6 and all(UUID4.match(i) for i in ids), ids  # records too
    assert all(uuid.UUID(i).version == 4 for i in ids)
    again = httpx.get(
        f"{live_server}/taxii2/api/collections/", headers=basic(gd) | {"Accept": TAXII}
    )
    assert [c["id"] for c in again.json()["collections"]] == ids  # stable


def test_the_former_uuid5_collection_ids_still_work(
    live_server: str, keys: Any, seed: Callable[[int, int], list[str]]
) -> None:
    """Configurations made before issue 18 keep working; taxii2-client's ``Collection(url)``
    needs the id it is told to be in the URL, so the old id is echoed when asked by it."""
    want = seed(0, 3)
    hk = keys["hk"]
    old = str(uuid.uuid5(uuid.UUID("6f0c1f3e-8a51-4f4e-9a63-5c1b9b0e7d21"), "shared-all"))
    h = basic(hk) | {"Accept": TAXII}
    info = httpx.get(f"{live_server}/taxii2/api/collections/{old}/", headers=h)
    assert info.status_code == 200 and info.json()["id"] == old
    objs = httpx.get(f"{live_server}/taxii2/api/collections/{old}/objects/", headers=h).json()
    assert Counter(o["id"] for o in objs["objects"]) == Counter(want)


@pytest.mark.parametrize("resends", [False, True], ids=["next-alone", "next-with-filters"])
def test_sentinel_api_root_url_collection_id_basic_auth(
    live_server: str, keys: Any, seed: Callable[[int, int], list[str]], resends: bool
) -> None:
    """[code: ARM schema] ``taxiiServer`` = API root URL, ``collectionId``, ``userName`` /
    ``password`` (Basic), ``taxiiLookbackPeriod``. [guess] the poll: ``objects/`` with
    ``added_after`` = the lookback, pages through ``next`` (whether it resends ``added_after``
    is unknown: both work), resumes from X-TAXII-Date-Added-Last."""
    first = seed(0, 14)
    gd2 = keys["gd2"]
    api_root = f"{live_server}/taxii2/api/"
    cid = collection_id(live_server, gd2, "shared-all")
    assert UUID4.match(cid)
    h = basic(gd2) | {"Accept": TAXII}
    lookback = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def poll(client: httpx.Client, since: str) -> tuple[list[str], str]:
        got: list[str] = []
        params: dict[str, Any] = {"added_after": since, "limit": 5}
        last = since
        while True:
            resp = client.get(f"{api_root}collections/{cid}/objects/", params=params, headers=h)
            assert resp.status_code == 200, resp.text
            got += [o["id"] for o in resp.json()["objects"]]
            last = resp.headers.get("x-taxii-date-added-last", last)
            if not resp.json()["more"]:
                return got, last
            params = {"next": resp.json()["next"]} | ({"added_after": since} if resends else {})
            params["limit"] = 5

    with httpx.Client() as client:
        assert client.get(api_root, headers=h).status_code == 200
        assert client.get(f"{api_root}collections/{cid}/", headers=h).json()["id"] == cid
        got1, since = poll(client, lookback)
        later = seed(300, 3)
        got2, _ = poll(client, since)
    assert Counter(got1) == Counter(first) and Counter(got2) == Counter(later)
