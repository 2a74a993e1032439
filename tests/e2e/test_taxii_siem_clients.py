"""Real TAXII client code against the app under uvicorn (issue 18): taxii2-client 2.3.0 and
the consumers built on it, each driven the way its published code drives it.

Where the sequences come from (read in each client's source; see the README section
"Connecting your SIEM"):

- taxii2-client 2.3.0 (oasis-open/cti-taxii-client v2.3.0): ``Server``/``ApiRoot``/
  ``Collection``, HTTP Basic or ``TokenAuth`` (``Authorization: Token <key>``), ``as_pages``
  (resends every filter with ``next`` and may lower ``limit`` after page 1).
- OpenCTI's taxii2 connector (OpenCTI-Platform/connectors ``external-import/taxii2``):
  ``Server(discovery)`` -> API root by path -> collection by *title* -> ``get_objects(**filters)``
  with one ``filters`` dict kept for the life of the process: page 2+ pops ``added_after`` and
  sets ``next``, and the next run adds a fresh ``added_after`` to the stale ``next``.
- MISP ``taxii_push.py`` (MISP/MISP ``app/files/scripts/taxii``): ``ApiRoot.max_content_length``,
  ``Collection(url)``, POST of hand-built envelopes of at most ``max_content_length`` bytes,
  ``wait_for_completion=False``, failures read from the status.
- misp-modules ``taxii21`` import: ``Collection(url, user, password)`` and
  ``as_pages(get_objects, per_request=..., spec_version="2.1")``: ``match[spec_version]=2.1``
  on every page.
- Splunk ``ctis-taxii-splunk-app``: ``ApiRoot(api_root_url, user, password)``, the collection
  found by id in ``collections``, ``add_objects(<STIX bundle>)``, the status kept.

The server's clock is the system clock here: OpenCTI and Elastic compute ``added_after``
from wall time.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import requests
from taxii2client.common import TokenAuth
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from core.access import bearer_token
from core.clock import SystemClock
from threatbay.bootstrap import Services


@pytest.fixture
def clock() -> SystemClock:  # type: ignore[override]
    return SystemClock()


def root_url(base: str) -> str:
    return f"{base}/taxii2/api/"


def by_alias(root: ApiRoot, alias: str) -> Collection:
    found: Collection = {c._raw["alias"]: c for c in root.collections}[alias]
    return found


def once_each(got: list[str], want: list[str]) -> bool:
    """Every wanted id exactly once (the order within one push follows the bus partitions)."""
    return Counter(got) == Counter(want)


def push(base: str, key: Any, objects: list[dict[str, Any]]) -> None:
    root = ApiRoot(root_url(base), user=key.key_id, password=key.secret)
    inbox = by_alias(root, f"inbox-{key.agency.id}")
    status = inbox.add_objects({"objects": objects}, wait_for_completion=False)
    assert status.success_count == len(objects), status._raw


@pytest.fixture
def seeded(
    live_server: str, keys: Any, stix: Any, drain: Callable[[], int]
) -> Callable[[int, int], list[str]]:
    """Push indicators ``start..start+n`` as GD (stored in that order); returns their ids."""
    gd = keys["gd"]

    def seed(start: int, n: int) -> list[str]:
        objs = [stix.indicator(start + i) for i in range(n)]
        for i in range(0, n, 7):
            push(live_server, gd, objs[i : i + 7])
            drain()
        return [o["id"] for o in objs]

    return seed


# ------------------------------------------------------------------ taxii2-client


def test_taxii2_client_basic_discovery_to_objects(
    live_server: str, keys: Any, seeded: Callable[[int, int], list[str]]
) -> None:
    """``Server(url, user, password)``: discovery, collections, objects (the client's order)."""
    want = seeded(0, 12)
    hk = keys["hk"]
    server = Server(f"{live_server}/taxii2/", user=hk.key_id, password=hk.secret)
    (root,) = server.api_roots
    shared = {c.title: c for c in root.collections}["Shared with me"]
    got = [o["id"] for o in shared.get_objects()["objects"]]
    assert once_each(got, want)


def test_taxii2_client_token_auth(
    live_server: str, keys: Any, seeded: Callable[[int, int], list[str]]
) -> None:
    """``TokenAuth(key)`` sends ``Authorization: Token <key>``; ThreatBay keys work there."""
    want = seeded(0, 5)
    mo = keys["mo"]
    auth = TokenAuth(bearer_token(mo.key_id, mo.secret))
    server = Server(f"{live_server}/taxii2/", auth=auth)
    (root,) = server.api_roots
    shared = by_alias(root, "shared-all")
    assert once_each([o["id"] for o in shared.get_objects()["objects"]], want)
    inbox = by_alias(root, "inbox-mo-caric")
    assert inbox.can_write


def test_taxii2_client_as_pages_resends_filters_and_lowers_limit(
    live_server: str, services: Services, keys: Any, seeded: Callable[[int, int], list[str]]
) -> None:
    """Page 1 asks 50, the server caps at 20, page 2+ ask 20 with ``next`` and every filter."""
    services.settings.taxii.max_page_size = 20
    want = seeded(0, 45)
    hk = keys["hk"]
    shared = by_alias(
        ApiRoot(root_url(live_server), user=hk.key_id, password=hk.secret), "shared-all"
    )
    pages = list(
        as_pages(
            shared.get_objects, per_request=50, added_after="2000-01-01T00:00:00Z", type="indicator"
        )
    )
    assert [len(p.get("objects", [])) for p in pages] == [20, 20, 5]
    assert once_each([o["id"] for p in pages for o in p["objects"]], want)
    manifest = [m["id"] for p in as_pages(shared.get_manifest, per_request=9) for m in p["objects"]]
    assert once_each(manifest, want)


def test_taxii2_client_as_pages_on_an_empty_collection_ends(live_server: str, keys: Any) -> None:
    hk = keys["hk"]
    shared = by_alias(
        ApiRoot(root_url(live_server), user=hk.key_id, password=hk.secret), "shared-mo"
    )
    pages = list(as_pages(shared.get_objects, per_request=10))
    assert pages == [{"more": False, "objects": []}]


# ------------------------------------------------------------------ OpenCTI connector


class OpenCtiConnector:
    """The OpenCTI taxii2 connector's polling loop (client_taxii.py ``poll``, connector.py
    ``process_message``), over the real taxii2-client; one instance = one connector process."""

    def __init__(self, discovery: str, auth: Any, title: str, limit: int | None) -> None:
        self.server = Server(discovery, auth=auth)
        self.title = title
        self.filters: dict[str, Any] = {}
        if limit:
            self.filters["limit"] = limit
        self.last_run: int | None = None
        self.errors: list[str] = []

    def run(self, now: datetime, initial_history_h: int = 24) -> list[dict[str, Any]]:
        if self.last_run is None:
            self.filters["added_after"] = now.replace(tzinfo=None) - timedelta(
                hours=initial_history_h
            )
        else:
            then = datetime.fromtimestamp(self.last_run, tz=UTC)
            self.filters["added_after"] = then.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        objects: list[dict[str, Any]] = []
        try:
            root = next(r for r in self.server.api_roots if r.url.split("/")[-2] == "api")
            coll = next(c for c in root.collections if c.title == self.title)
            response = coll.get_objects(**self.filters)
            if response.get("objects"):
                while True:
                    objects.extend(response.get("objects", []))
                    if response.get("more") is not True:
                        break
                    if "next" in response:
                        self.filters.pop("added_after", None)
                        self.filters["next"] = response["next"]
                        response = coll.get_objects(**self.filters)
        except requests.HTTPError as exc:  # caught and logged; the run still "succeeds"
            assert exc.response is not None
            self.errors.append(f"{exc.response.status_code} {exc.response.json()['description']}")
        self.last_run = int(now.timestamp())
        return objects


def test_opencti_connector_token_auth_pages_with_next_alone_and_runs_again(
    live_server: str, keys: Any, seeded: Callable[[int, int], list[str]]
) -> None:
    """Run 1 pages with ``limit`` + ``next`` only; run 2 sends the stale ``next`` with a new
    ``added_after`` (the previous run's start): answered, because that ``next`` points before
    it (the continuation and the new query are the same objects)."""
    first = seeded(0, 23)
    time.sleep(1.1)  # run 1 starts in a later second than these were added (last_run is whole s)
    hk = keys["hk"]
    connector = OpenCtiConnector(
        f"{live_server}/taxii2/",
        TokenAuth(bearer_token(hk.key_id, hk.secret)),
        "Shared with me",
        10,
    )
    run1 = connector.run(datetime.now(UTC))
    assert once_each([o["id"] for o in run1], first) and not connector.errors
    assert "next" in connector.filters  # kept for the next run, as the connector does
    second = seeded(100, 4)
    run2 = connector.run(datetime.now(UTC) + timedelta(hours=1))
    assert not connector.errors, connector.errors
    assert once_each([o["id"] for o in run2], second)


def test_opencti_connector_api_key_header(
    live_server: str, keys: Any, seeded: Callable[[int, int], list[str]]
) -> None:
    """``TAXII2_USE_APIKEY`` with ``TAXII2_APIKEY_KEY=X-API-Key``: a custom header, no scheme."""
    want = seeded(0, 3)
    mo = keys["mo"]

    class ApiKeyAuth(requests.auth.AuthBase):
        def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
            r.headers["X-API-Key"] = bearer_token(mo.key_id, mo.secret)
            return r

    connector = OpenCtiConnector(f"{live_server}/taxii2/", ApiKeyAuth(), "Shared with me", None)
    assert once_each([o["id"] for o in connector.run(datetime.now(UTC))], want)


# ------------------------------------------------------------------ MISP


def test_misp_taxii_push_chunks_by_max_content_length_and_reads_failures(
    live_server: str, services: Services, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    """taxii_push.py: API root info, ``Collection(url)``, POST chunks <= max_content_length."""
    services.settings.taxii.max_content_length = 4_000
    gd = keys["gd"]
    root = ApiRoot(root_url(live_server), user=gd.key_id, password=gd.secret)
    limit = root.max_content_length
    coll_id = by_alias(root, "inbox-gd-cac").id
    coll = Collection(
        f"{root_url(live_server)}collections/{coll_id}/", user=gd.key_id, password=gd.secret
    )
    objects = [stix.indicator(i) for i in range(30)]
    objects[17]["pattern"] = "[ipv4-addr:value = ]"
    chunks: list[list[bytes]] = [[]]
    prefix, suffix = b'{"objects":[', b"]}"
    for obj in objects:
        raw = orjson.dumps(obj)
        size = len(prefix) + sum(len(r) + 1 for r in chunks[-1]) + len(raw) + len(suffix)
        if chunks[-1] and size > limit:
            chunks.append([])
        chunks[-1].append(raw)
    failures: list[dict[str, Any]] = []
    for chunk in chunks:
        body = prefix + b",".join(chunk) + suffix
        assert len(body) <= limit
        status = coll.add_objects(body, wait_for_completion=False)
        if status.failure_count:
            failures += status.failures
    assert len(chunks) >= 3
    assert [f["id"] for f in failures] == [objects[17]["id"]] and "pattern" in failures[0][
        "message"
    ]
    assert drain() == 29


def test_misp_modules_taxii21_import_sends_spec_version_on_every_page(
    live_server: str, keys: Any, seeded: Callable[[int, int], list[str]]
) -> None:
    want = seeded(0, 25)
    hk = keys["hk"]
    root = ApiRoot(root_url(live_server), user=hk.key_id, password=hk.secret)
    url = f"{root_url(live_server)}collections/{by_alias(root, 'shared-gd').id}/"
    coll = Collection(url, user=hk.key_id, password=hk.secret)
    got = [
        o["id"]
        for page in as_pages(coll.get_objects, per_request=min(100, 10), spec_version="2.1")
        for o in page.get("objects", [])
    ]
    assert once_each(got, want)


# ------------------------------------------------------------------ Splunk CTIS


def test_splunk_ctis_posts_a_bundle_by_collection_id_and_keeps_the_status(
    live_server: str, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    hk = keys["hk"]
    root = ApiRoot(root_url(live_server), user=hk.key_id, password=hk.secret)
    wanted_id = by_alias(root, "inbox-hk-govcert").id
    coll = {c.id: c for c in root.collections}[wanted_id]
    bundle = {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [stix.indicator(i) for i in range(3)],
    }
    status = coll.add_objects(orjson.dumps(bundle).decode())
    raw = status._raw
    assert raw["status"] == "complete" and raw["success_count"] == 3
    assert orjson.loads(orjson.dumps(raw)) == raw  # stored as JSON in the submission record
    assert drain() == 3
    assert Counter(o["id"] for o in bundle["objects"]) == Counter(s["id"] for s in raw["successes"])
