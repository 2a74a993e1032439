"""Round trips with the real taxii2-client 2.3.0 against uvicorn on 127.0.0.1.

Quirks it has and we rely on the server to handle: it re-requests page 1 forever
when ``more`` is true without ``next``; it checks status list lengths against
the counts; it needs the collection id in the collection URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from taxii2client.exceptions import AccessError
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

SHARED_ALL = "shared-all"


def _drain_in_background(drain: Callable[[], int]) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            drain()
            stop.wait(0.05)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return stop, t


def test_discovery_and_collections(live_server: str, keys: Any) -> None:
    gd = keys["gd"]
    server = Server(f"{live_server}/taxii2/", user=gd.key_id, password=gd.secret)
    assert server.title == "ThreatBay TAXII 2.1"
    (root,) = server.api_roots
    assert root.max_content_length == 10 * 1024 * 1024
    titles = {c.title for c in root.collections}
    assert "Inbox of gd-cac" in titles and "Shared with me" in titles


def _collection(live_server: str, key: Any, alias: str) -> Collection:
    root = ApiRoot(f"{live_server}/taxii2/api/", user=key.key_id, password=key.secret)
    by_alias = {c._raw["alias"]: c for c in root.collections}
    coll: Collection = by_alias[alias]
    return coll


def test_push_pull_page_version_delete_round_trip(
    live_server: str, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    gd, gd2 = keys["gd"], keys["gd2"]
    inbox = _collection(live_server, gd, "inbox-gd-cac")
    objects = [stix.indicator(i) for i in range(23)]
    objects.append(stix.indicator(99, pattern="[ipv4-addr:value = ]"))
    status = inbox.add_objects(stix.bundle(*objects), wait_for_completion=True, poll_interval=0.1)
    assert status.status == "complete"
    assert status.success_count == 23 and status.failure_count == 1
    assert len(status.successes) == 23 and status.failures[0]["id"] == objects[-1]["id"]
    drain()

    shared = _collection(live_server, gd2, SHARED_ALL)
    got: list[str] = []
    pages = 0
    for envelope in as_pages(shared.get_objects, per_request=10):
        pages += 1
        assert len(envelope.get("objects", [])) <= 10
        got += [o["id"] for o in envelope.get("objects", [])]
    assert pages == 3
    assert sorted(got) == sorted(o["id"] for o in objects[:23])

    manifest_ids: list[str] = []
    for page in as_pages(shared.get_manifest, per_request=7):
        manifest_ids += [m["id"] for m in page.get("objects", [])]
    assert manifest_ids == got

    sid = objects[0]["id"]
    newer = stix.indicator(0, modified="2026-02-15T00:00:00.000Z")
    inbox.add_objects(stix.bundle(newer), wait_for_completion=True, poll_interval=0.1)
    drain()
    versions = shared.object_versions(sid)["versions"]
    assert versions == ["2026-02-01T00:00:00.000000Z", "2026-02-15T00:00:00.000000Z"]
    assert shared.get_object(sid)["objects"][0]["modified"] == "2026-02-15T00:00:00.000Z"

    inbox.delete_object(sid, version="2026-02-15T00:00:00.000Z")
    assert shared.get_object(sid)["objects"][0]["modified"] == "2026-02-01T00:00:00.000Z"
    inbox.delete_object(sid)
    with pytest.raises(requests.HTTPError) as gone:
        shared.get_object(sid)
    assert gone.value.response is not None and gone.value.response.status_code == 404
    with pytest.raises(AccessError):  # shared collections are read-only for the client too
        shared.add_objects(stix.bundle(stix.indicator(5)))


def test_client_against_the_correlation_drain_running_concurrently(
    live_server: str, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    """Objects pushed while the drain runs all arrive exactly once, in date_added order."""
    stop, thread = _drain_in_background(drain)
    try:
        inbox = _collection(live_server, keys["hk"], "inbox-hk-govcert")
        for batch in range(5):
            objs = [stix.indicator(batch * 100 + i) for i in range(40)]
            inbox.add_objects(stix.bundle(*objs), wait_for_completion=True, poll_interval=0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    drain()
    shared = _collection(live_server, keys["mo"], "shared-hk")
    seen: list[str] = []
    for page in as_pages(shared.get_manifest, per_request=33):
        seen += [m["date_added"] for m in page.get("objects", [])]
    assert len(seen) == 200 and seen == sorted(seen) and len(set(seen)) == 200
