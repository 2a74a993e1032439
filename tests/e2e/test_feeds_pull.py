"""Feeds pulled from real servers on 127.0.0.1 into the real ingest path and bus.

- TAXII 2.1: medallion 3.0.0 (the OASIS TAXII 2.1 server) as a subprocess,
  memory backend, basic auth, a collection paged 3 objects at a time.
- TAXII 2.0, MISP, CSV/text: a static HTTP server in a thread (``FeedServer``)
  that also logs every request, so "fetched twice" is checked on the wire.

What a user would notice: objects reach ``intel.stix.raw`` as the feed's
source agency; a restart resumes without re-fetching or skipping; a broken
feed is named with its reason and never stops the others.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from core import envelope
from core.access import Principal
from core.clock import FakeClock
from core.envelope import Accepted
from core.names import INDEX_AGENCIES, TOPIC_RAW
from feeds.base import IngestUnavailable
from feeds.config import FeedConfig, load_registry
from feeds.runner import FeedRunner, FeedScheduler, IngestResultLike
from records.feed_cursors import FeedCursors
from threatbay.bootstrap import Services
from threatbay.cli_feeds import (
    build_runner,
    feed_loop,
    feeds_app,
    push_ingest,
    register_agency,
)

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "feeds"
TLP2_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP1_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
COLLECTION = "7b0a3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
TIED_COLLECTION = "9c8b7a6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
TAXII_OBJECTS = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the bus


def raw_items(services: Services) -> list[Accepted]:
    """Everything published on intel.stix.raw so far, decoded (a fresh consumer group)."""
    consumer = services.bus.consumer(TOPIC_RAW, f"feeds-test-{uuid.uuid4()}", from_beginning=True)
    items: list[Accepted] = []
    try:
        while batch := consumer.poll(max_records=500, timeout_s=0.2):
            for message in batch:
                items.extend(envelope.decode(message.value))
    finally:
        consumer.close()
    return items


def ids_on_bus(services: Services) -> list[str]:
    return [a.obj["id"] for a in raw_items(services)]


# ---------------------------------------------------------------- medallion


def _medallion_binary() -> str | None:
    for candidate in (
        os.environ.get("THREATBAY_MEDALLION"),
        shutil.which("medallion"),
        str(Path(sys.executable).parent / "medallion"),
        "/tmp/medallion-venv/bin/medallion",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def taxii21_objects(
    tied: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seven STIX 2.1 indicators (three marked TLP:AMBER) added a minute apart.

    ``tied``: objects 2-6 share one ``date_added``, as when a server stores one
    pushed bundle, so the run of equal timestamps spans the page boundaries.
    """
    objects, manifest = [], []
    start = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    for n in range(TAXII_OBJECTS):
        added = start + timedelta(minutes=min(n, 2) if tied else n)
        stamp = (start + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        obj: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'taxii21-{tied}-{n}')}",
            "created": stamp,
            "modified": stamp,
            "pattern": f"[ipv4-addr:value = '198.51.100.{n + 1}']",
            "pattern_type": "stix",
            "valid_from": stamp,
        }
        if n % 2:
            obj["object_marking_refs"] = [TLP1_AMBER]
        objects.append(obj)
        manifest.append(
            {
                "id": obj["id"],
                "date_added": added.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "version": stamp,
                "media_type": "application/stix+json;version=2.1",
            }
        )
    return objects, manifest


@pytest.fixture(scope="module")
def medallion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """medallion 3.0.0 on a free port; yields the API root URL (user feeduser/feedpass)."""
    binary = _medallion_binary()
    if binary is None:
        pytest.skip("medallion not installed (pip install medallion==3.0.0 or THREATBAY_MEDALLION)")
    work = tmp_path_factory.mktemp("medallion")
    port = free_port()
    objects, manifest = taxii21_objects()
    data = {
        "/discovery": {
            "title": "ThreatBay feed test server",
            "default": f"http://127.0.0.1:{port}/feeds/",
            "api_roots": [f"http://127.0.0.1:{port}/feeds/"],
        },
        "feeds": {
            "information": {
                "title": "Partner feed",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 9765625,
            },
            "status": [],
            "collections": [
                {
                    "id": COLLECTION,
                    "title": "Partner indicators",
                    "can_read": True,
                    "can_write": False,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": objects,
                    "manifest": manifest,
                },
                {
                    "id": TIED_COLLECTION,
                    "title": "One bundle, one date_added",
                    "can_read": True,
                    "can_write": False,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": taxii21_objects(tied=True)[0],
                    "manifest": taxii21_objects(tied=True)[1],
                },
            ],
        },
    }
    (work / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(work / "data.json"),
        },
        "users": {"feeduser": "feedpass"},
        "taxii": {"max_page_size": 100},
    }
    (work / "config.json").write_text(json.dumps(config))
    log = (work / "medallion.log").open("w")
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), str(work / "config.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((work / "medallion.log").read_text()) from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/feeds/"
    proc.terminate()
    proc.wait(10)
    log.close()


def taxii21_feed(url: str, **extra: Any) -> FeedConfig:
    entry = {
        "name": "partner",
        "kind": "taxii21",
        "url": url,
        "collection": COLLECTION,
        "jurisdiction": "HK",
        "reliability": "B",
        "tlp": "green",
        "page_size": 3,
        "retries": 1,
        "retry_backoff_s": 0,
        "timeout_s": 5,
        "auth": {"type": "basic", "username": "feeduser", "password": "feedpass"},
    }
    return FeedConfig.model_validate(entry | extra)


# ---------------------------------------------------------------- static server


Route = Callable[[str, dict[str, list[str]], dict[str, str]], tuple[int, dict[str, str], bytes]]


class FeedServer:
    """A threaded HTTP server: static routes, dynamic routes, auth, and a request log."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[str] = []
        self.basic: dict[str, tuple[str, str]] = {}
        self.bearer: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                outer.log.append(parts.path)
                status, headers, body = outer.answer(parts.path, parse_qs(parts.query), self)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(
        self, path: str, query: dict[str, list[str]], handler: BaseHTTPRequestHandler
    ) -> tuple[int, dict[str, str], bytes]:
        auth = handler.headers.get("Authorization", "")
        for prefix, (user, password) in self.basic.items():
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            if path.startswith(prefix) and auth != f"Basic {token}":
                return 401, {"WWW-Authenticate": "Basic"}, b"unauthorised"
        for prefix, token in self.bearer.items():
            if path.startswith(prefix) and auth != f"Bearer {token}":
                return 401, {}, b"unauthorised"
        route = self.routes.get(path)
        if route is None:
            return 404, {}, b"not found"
        return route(path, query, dict(handler.headers))

    def static(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        self.routes[path] = lambda *_: (200, {"Content-Type": content_type}, body)

    def fetched(self, path: str) -> int:
        return self.log.count(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


# ---------------------------------------------------------------- TAXII 2.1 (medallion)


def test_taxii21_pull_reaches_the_bus_as_the_feed_agency_and_a_repull_fetches_nothing(
    services: Services, medallion: str
) -> None:
    runner = build_runner(services)
    feed = taxii21_feed(medallion)
    progress: list[tuple[int, int, int]] = []

    report = runner.pull(
        feed, progress=lambda r: progress.append((r.fetched, r.accepted, r.rejected))
    )

    assert report.ok, report.summary()
    assert (report.fetched, report.accepted, report.rejected) == (TAXII_OBJECTS, TAXII_OBJECTS, 0)
    assert report.batches == 3 and progress[0] == (3, 3, 0) and progress[-1] == (7, 7, 0)
    items = raw_items(services)
    assert sorted(a.obj["id"] for a in items) == sorted(o["id"] for o in taxii21_objects()[0])
    assert {a.provenance.agency for a in items} == {"feed-partner"}
    assert {a.provenance.jurisdiction for a in items} == {"HK"}
    # unmarked objects took the feed's TLP (green); marked ones kept theirs (amber)
    by_id = {a.obj["id"]: a for a in items}
    for n, obj in enumerate(taxii21_objects()[0]):
        accepted = by_id[obj["id"]]
        assert accepted.provenance.tlp == ("amber" if n % 2 else "green")
        assert accepted.provenance.tlp_defaulted is False
        if not n % 2:
            assert accepted.obj["object_marking_refs"] == [TLP2_GREEN]
    agency = services.store.get(INDEX_AGENCIES, "agency:feed-partner")
    assert agency is not None and agency.doc["reliability"] == "B"

    again = runner.pull(feed)
    assert again.ok and again.fetched == 0
    assert len(ids_on_bus(services)) == TAXII_OBJECTS
    # the registry file stays the source of truth for the feed's agency record
    build_runner(services).pull(taxii21_feed(medallion, reliability="A"))
    agency = services.store.get(INDEX_AGENCIES, "agency:feed-partner")
    assert agency is not None and agency.doc["reliability"] == "A"
    # scoring and provenance treat the feed as a source of kind 'feed' (issue 7)
    assert {a.provenance.source_kind for a in items} == {"feed"}


def test_taxii21_resumes_after_a_failure_between_pages_without_refetch_or_gap(
    services: Services, medallion: str
) -> None:
    feed = taxii21_feed(medallion)
    real = push_ingest(services)
    calls = 0

    def crashing(principal: Principal, objects: list[Any]) -> IngestResultLike:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise IngestUnavailable("bus down (injected between page 1 and page 2)")
        return real(principal, objects)

    first = FeedRunner(
        FeedCursors(services.store, services.clock), crashing, services.clock,
        register=register_agency(services),
    )  # fmt: skip
    report = first.pull(feed)
    assert not report.ok and report.failure is not None
    assert report.failure.kind == "ingest" and "injected" in report.failure.message
    assert report.accepted == 3
    assert len(ids_on_bus(services)) == 3

    resumed = build_runner(services).pull(feed)
    assert resumed.ok, resumed.summary()
    assert resumed.fetched == TAXII_OBJECTS - 3
    ids = ids_on_bus(services)
    assert len(ids) == len(set(ids)) == TAXII_OBJECTS


def test_taxii21_resume_inside_a_run_of_equal_date_added_skips_nothing(
    services: Services, medallion: str
) -> None:
    """Pages [0 1 2] [3 4 5] [6], objects 2-6 added at the same instant; stop after page 2."""
    feed = taxii21_feed(medallion, collection=TIED_COLLECTION)
    real = push_ingest(services)
    calls = 0

    def crashing(principal: Principal, objects: list[Any]) -> IngestResultLike:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise IngestUnavailable("stopped after page 2")
        return real(principal, objects)

    cursors = FeedCursors(services.store, services.clock)
    first = FeedRunner(cursors, crashing, services.clock).pull(feed)
    assert not first.ok and first.accepted == 6

    resumed = build_runner(services).pull(feed)
    assert resumed.ok, resumed.summary()
    assert (resumed.fetched, resumed.accepted) == (1, 1)  # object 6: neither skipped nor repeated
    ids = ids_on_bus(services)
    assert len(ids) == len(set(ids)) == TAXII_OBJECTS
    assert set(ids) == {o["id"] for o in taxii21_objects(tied=True)[0]}
    assert build_runner(services).pull(feed).fetched == 0


def test_taxii21_resumes_after_the_puller_process_is_killed(
    services: Services, medallion: str, tmp_path: Path
) -> None:
    """A real ``SIGKILL`` right after page 1 was accepted: the rerun takes exactly the rest."""
    registry = tmp_path / "feeds.yaml"
    entry = taxii21_feed(medallion).model_dump(mode="json", exclude_none=True)
    registry.write_text(json.dumps({"feeds": [entry]}))
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from core.settings import Settings
        from feeds.config import load_registry
        from threatbay.bootstrap import build
        from threatbay.cli_feeds import build_runner
        services = build(Settings(data_dir={str(tmp_path)!r}))
        feed = load_registry(__import__("pathlib").Path({str(registry)!r})).feeds[0]
        def die(report):
            print("accepted", report.accepted, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        build_runner(services).pull(feed, progress=die)
        print("not killed", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "accepted 3" in proc.stdout and "not killed" not in proc.stdout
    assert len(ids_on_bus(services)) == 3

    resumed = build_runner(services).pull(load_registry(registry).feeds[0])
    assert resumed.ok and resumed.fetched == TAXII_OBJECTS - 3
    ids = ids_on_bus(services)
    assert len(ids) == len(set(ids)) == TAXII_OBJECTS


def test_taxii21_wrong_credentials_are_reported_and_nothing_moves(
    services: Services, medallion: str
) -> None:
    feed = taxii21_feed(
        medallion, auth={"type": "basic", "username": "feeduser", "password": "wrong"}
    )
    report = build_runner(services).pull(feed)
    assert report.failure is not None and report.failure.kind == "credentials"
    assert "401" in report.failure.message
    assert ids_on_bus(services) == []
    state = FeedCursors(services.store, services.clock).load("partner", "taxii21")
    assert state.cursor is None and state.failures == 1
    assert state.last_error is not None and "credentials rejected" in state.last_error


def test_unreachable_server_is_reported(services: Services) -> None:
    feed = taxii21_feed(f"http://127.0.0.1:{free_port()}/feeds/")
    report = build_runner(services).pull(feed)
    assert report.failure is not None and report.failure.kind == "unreachable"
    assert "cannot reach" in report.failure.message


def test_http_500s_are_retried_then_reported(services: Services, web: FeedServer) -> None:
    web.routes["/list.txt"] = lambda *_: (500, {}, b"boom")
    feed = FeedConfig.model_validate(
        {"name": "flaky", "kind": "text", "url": f"{web.url}/list.txt", "jurisdiction": "GD",
         "retries": 2, "retry_backoff_s": 0}
    )  # fmt: skip
    report = build_runner(services).pull(feed)
    assert report.failure is not None and report.failure.kind == "http"
    assert "500" in report.failure.message
    assert web.fetched("/list.txt") == 3  # one try and two retries


def test_malformed_taxii_answers_are_reported(services: Services, web: FeedServer) -> None:
    base = f"/api/collections/{COLLECTION}/"
    taxii = "application/taxii+json;version=2.1"
    web.static(base, json.dumps({"id": COLLECTION, "title": "x", "can_read": True,
                                 "can_write": False}).encode(), taxii)  # fmt: skip
    web.static(base + "objects/", b"{this is not json", taxii)
    report = build_runner(services).pull(taxii21_feed(f"{web.url}/api/", auth=None))
    assert report.failure is not None and report.failure.kind == "malformed"

    web.static(base + "objects/", json.dumps({"objects": "nope"}).encode(), taxii)
    report = build_runner(services).pull(taxii21_feed(f"{web.url}/api/", auth=None))
    assert report.failure is not None and report.failure.kind == "malformed"
    assert "'objects' is not a list" in report.failure.message


# ---------------------------------------------------------------- TAXII 2.0 (static server)


STIX20 = "application/vnd.oasis.stix+json; version=2.0"
TAXII20 = "application/vnd.oasis.taxii+json; version=2.0"


def stix20_objects(count: int) -> list[tuple[str, dict[str, Any]]]:
    """(date_added, STIX 2.0 object): indicators with labels, no spec_version, upper-case ids."""
    out = []
    for n in range(count):
        stamp = f"2026-02-0{1 + n // 10}T00:00:{n % 60:02d}.000Z"
        obj = {
            "type": "indicator",
            "id": f"indicator--{str(uuid.uuid5(uuid.NAMESPACE_URL, f'v20-{n}')).upper()}",
            "created": stamp,
            "modified": stamp,
            "labels": ["malicious-activity"],
            "pattern": f"[domain-name:value = 'c2-{n}.example.net']",
            "valid_from": stamp,
        }
        out.append((f"2026-03-01T00:{n:02d}:00.000000Z", obj))
    return out


def taxii20_route(store: list[tuple[str, dict[str, Any]]]) -> Route:
    """TAXII 2.0 Get Objects (section 5.3) with ``added_after`` and ``Range`` paging."""

    def route(
        _: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        after = query.get("added_after", [""])[0]
        rows = sorted((r for r in store if r[0] > after), key=lambda r: r[0])
        first, last = 0, len(rows) - 1
        if "Range" in headers:
            lo, hi = headers["Range"].removeprefix("items=").split("-")
            first, last = int(lo), min(int(hi), len(rows) - 1)
        page = rows[first : last + 1]
        out = {"Content-Type": STIX20, "Content-Range": f"items {first}-{last}/{len(rows)}"}
        if page:
            out["X-TAXII-Date-Added-Last"] = page[-1][0]
        body = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "spec_version": "2.0",
                "objects": [r[1] for r in page]}  # fmt: skip
        return 206 if "Range" in headers else 200, out, json.dumps(body).encode()

    return route


def test_taxii20_objects_are_upgraded_to_21_and_pulled_incrementally(
    services: Services, web: FeedServer
) -> None:
    rows = stix20_objects(5)
    base = f"/taxii20/api/collections/{COLLECTION}/"
    web.static(base, json.dumps({"id": COLLECTION, "title": "legacy", "can_read": True,
                                 "can_write": False}).encode(), TAXII20)  # fmt: skip
    web.routes[base + "objects/"] = taxii20_route(rows)
    web.bearer["/taxii20/"] = "legacy-token"
    feed = FeedConfig.model_validate(
        {"name": "legacy", "kind": "taxii20", "url": f"{web.url}/taxii20/api/",
         "collection": COLLECTION, "jurisdiction": "MO", "tlp": "amber", "page_size": 2,
         "auth": {"type": "bearer", "token": "legacy-token"}}
    )  # fmt: skip
    runner = build_runner(services)

    report = runner.pull(feed)
    assert report.ok, report.summary()
    assert (report.fetched, report.accepted, report.batches) == (5, 5, 3)
    items = raw_items(services)
    assert len(items) == 5
    for item in items:
        assert item.obj["spec_version"] == "2.1"
        assert item.obj["pattern_type"] == "stix"
        assert item.obj["indicator_types"] == ["malicious-activity"]
        assert item.obj["id"] == item.obj["id"].lower()
        assert item.provenance.tlp == "amber" and item.provenance.agency == "feed-legacy"

    assert runner.pull(feed).fetched == 0
    rows.append(("2026-03-02T00:00:00.000000Z", stix20_objects(6)[5][1]))
    newer = runner.pull(feed)
    assert newer.ok and newer.fetched == 1
    assert len(ids_on_bus(services)) == 6


# ---------------------------------------------------------------- MISP (static server)


def serve_misp(web: FeedServer, manifest: dict[str, Any] | None = None) -> None:
    for path in (DATA / "misp").glob("*.json"):
        web.static(f"/misp/{path.name}", path.read_bytes())
    if manifest is not None:
        web.static("/misp/manifest.json", json.dumps(manifest).encode())


def test_misp_feed_is_converted_pulled_once_and_updated_events_come_again(
    services: Services, web: FeedServer
) -> None:
    serve_misp(web)
    feed = FeedConfig.model_validate(
        {"name": "circl", "kind": "misp", "url": f"{web.url}/misp/", "jurisdiction": "GD",
         "tlp": "clear", "reliability": "B"}
    )  # fmt: skip
    runner = build_runner(services)

    report = runner.pull(feed)
    assert report.ok, report.summary()
    assert report.batches == 3 and report.accepted > 0
    items = raw_items(services)
    patterns = {a.obj.get("pattern") for a in items if a.obj["type"] == "indicator"}
    assert "[domain-name:value = 'login-bank.example.com']" in patterns
    assert "[domain-name:value = 'cdn-update.example.net']" in patterns
    tlp_by_pattern = {a.obj.get("pattern"): a.provenance.tlp for a in items}
    assert tlp_by_pattern["[domain-name:value = 'login-bank.example.com']"] == "green"  # event tag
    assert tlp_by_pattern["[domain-name:value = 'cdn-update.example.net']"] == "amber"  # event tag
    loader = [a for a in items if a.obj.get("pattern", "").startswith("[file:hashes")]
    assert loader and loader[0].provenance.tlp == "clear"  # untagged event: the feed's TLP
    assert {a.provenance.agency for a in items} == {"feed-circl"}

    count = len(items)
    assert runner.pull(feed).fetched == 0
    for path in (DATA / "misp").glob("*-*.json"):
        assert web.fetched(f"/misp/{path.name}") == 1, path.name

    manifest = json.loads((DATA / "misp" / "manifest.json").read_text())
    manifest["5f0b3a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"]["timestamp"] = 1767500000
    serve_misp(web, manifest)
    updated = runner.pull(feed)
    assert updated.ok and updated.batches == 1
    assert web.fetched("/misp/5f0b3a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b.json") == 2
    assert web.fetched("/misp/7a1c2d3e-4f50-4a6b-9c8d-1e2f3a4b5c6d.json") == 1
    assert len(raw_items(services)) == count + updated.accepted


def test_an_unconvertible_misp_event_is_rejected_and_a_broken_file_stops_the_pull(
    services: Services, web: FeedServer
) -> None:
    serve_misp(web)
    loader = "7a1c2d3e-4f50-4a6b-9c8d-1e2f3a4b5c6d"
    web.static(f"/misp/{loader}.json", json.dumps({"Event": {"uuid": loader}}).encode())
    web.static("/misp/8b2d3e4f-5061-4b7c-8d9e-2f3a4b5c6d7e.json", b'{"Event": {"trunc')
    feed = FeedConfig.model_validate(
        {"name": "circl", "kind": "misp", "url": f"{web.url}/misp/", "jurisdiction": "GD"}
    )
    runner = build_runner(services)
    report = runner.pull(feed)
    # event 1 accepted; event 2 (valid JSON misp-stix cannot load) rejected with the reason;
    # event 3 (a truncated file) fails the pull, so the cursor stops before it
    assert report.failure is not None and report.failure.kind == "malformed"
    assert report.accepted > 0 and report.rejected == 1
    assert any(loader in r and "info field" in r for r in report.rejections)
    state = FeedCursors(services.store, services.clock).load("circl", "misp")
    assert state.cursor == f"1767398400:{loader}"

    serve_misp(web)  # the server is fixed; the loader event stays passed over
    fixed = runner.pull(feed)
    assert fixed.ok and fixed.batches == 1
    assert web.fetched(f"/misp/{loader}.json") == 1


def test_a_malformed_misp_manifest_is_reported(services: Services, web: FeedServer) -> None:
    web.static("/misp/manifest.json", b"<html>maintenance</html>", "text/html")
    feed = FeedConfig.model_validate(
        {"name": "broken-misp", "kind": "misp", "url": f"{web.url}/misp", "jurisdiction": "GD"}
    )
    report = build_runner(services).pull(feed)
    assert report.failure is not None and report.failure.kind == "malformed"
    assert "manifest.json is not JSON" in report.failure.message


# ---------------------------------------------------------------- CSV / text (static server)


def csv_feed(web: FeedServer, **extra: Any) -> FeedConfig:
    entry = {
        "name": "blocklist",
        "kind": "csv",
        "url": f"{web.url}/lists/blocklist.csv",
        "jurisdiction": "GD",
        "tlp": "green",
        "reliability": "D",
        "retries": 0,
        "csv": {"columns": {"ip": "ipv4", "host": "domain", "link": "url"},
                "description_column": "reason"},
    }  # fmt: skip
    return FeedConfig.model_validate(entry | extra)


def test_csv_values_are_refanged_into_indicators_and_an_unchanged_list_is_not_resent(
    services: Services, web: FeedServer, clock: FakeClock
) -> None:
    web.static("/lists/blocklist.csv", (DATA / "blocklist.csv").read_bytes(), "text/csv")
    runner = build_runner(services)
    feed = csv_feed(web)

    report = runner.pull(feed)
    assert report.ok, report.summary()
    assert (report.accepted, report.rejected) == (6, 3)
    assert any("not a valid ipv4: 'not-an-ip'" in r for r in report.rejections)
    items = raw_items(services)
    patterns = {a.obj["pattern"] for a in items}
    assert patterns == {
        "[ipv4-addr:value = '198.51.100.23']",
        "[domain-name:value = 'evil-cdn.example.com']",
        "[url:value = 'http://evil-cdn.example.com/payload.bin']",
        "[ipv4-addr:value = '203.0.113.9']",
        "[domain-name:value = 'phish.example.org']",
        "[url:value = 'https://phish.example.org/login']",
    }
    assert all(a.provenance.tlp == "green" and a.provenance.agency == "feed-blocklist"
               for a in items)  # fmt: skip
    first_ids = sorted(a.obj["id"] for a in items)

    clock.advance(timedelta(hours=1))
    assert runner.pull(feed).fetched == 0  # same content: nothing re-sent

    body = (DATA / "blocklist.csv").read_bytes() + b"192.0.2.200,,,new scanner\n"
    web.static("/lists/blocklist.csv", body, "text/csv")
    changed = runner.pull(feed)
    assert changed.ok and changed.accepted == 7
    later = raw_items(services)[len(items) :]
    assert set(first_ids) < {a.obj["id"] for a in later}  # same values keep their ids


def test_text_list_behind_basic_auth(services: Services, web: FeedServer) -> None:
    web.static("/private/iocs.txt", (DATA / "iocs.txt").read_bytes(), "text/plain")
    web.basic["/private/"] = ("reader", "pw")
    entry = {"name": "private", "kind": "text", "url": f"{web.url}/private/iocs.txt",
             "jurisdiction": "MO", "retries": 0}  # fmt: skip
    good = FeedConfig.model_validate(entry | {"auth": {"type": "basic", "username": "reader",
                                                       "password": "pw"}})  # fmt: skip
    bad = FeedConfig.model_validate(entry | {"auth": {"type": "basic", "username": "reader",
                                                      "password": "nope"}})  # fmt: skip
    denied = build_runner(services).pull(bad)
    assert denied.failure is not None and denied.failure.kind == "credentials"
    report = build_runner(services).pull(good)
    assert report.ok and (report.accepted, report.rejected) == (4, 1)
    assert "[url:value = 'http://drop.example.net/a.exe']" in {
        a.obj["pattern"] for a in raw_items(services)
    }


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", "san.cnf"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra, cwd=d)  # fmt: skip
    return d


def test_client_certificate_auth_over_tls(services: Services, pki: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = FeedServer(context)
    try:
        server.static("/iocs.txt", (DATA / "iocs.txt").read_bytes(), "text/plain")
        entry = {"name": "mtls", "kind": "text", "url": f"{server.url}/iocs.txt",
                 "jurisdiction": "HK", "retries": 0, "ca_bundle": str(pki / "ca.pem")}  # fmt: skip
        no_cert = build_runner(services).pull(FeedConfig.model_validate(entry))
        assert no_cert.failure is not None and no_cert.failure.kind == "unreachable"
        assert "may require a client certificate" in no_cert.failure.message
        cert = {"type": "cert", "cert": str(pki / "client.pem"), "key": str(pki / "client.key")}
        report = build_runner(services).pull(FeedConfig.model_validate(entry | {"auth": cert}))
        assert report.ok, report.summary()
        assert report.accepted == 4
    finally:
        server.close()


# ---------------------------------------------------------------- scheduling and isolation


def test_broken_feeds_back_off_and_never_stop_the_others(
    services: Services, web: FeedServer, medallion: str, clock: FakeClock, tmp_path: Path
) -> None:
    web.static("/lists/blocklist.csv", (DATA / "blocklist.csv").read_bytes(), "text/csv")
    web.routes["/down.txt"] = lambda *_: (503, {}, b"down")
    entries = [
        {"name": "down", "kind": "text", "url": f"{web.url}/down.txt"},
        {"name": "gone", "kind": "text", "url": f"http://127.0.0.1:{free_port()}/x.txt"},
        taxii21_feed(medallion, name="badcreds", auth={"type": "basic", "username": "feeduser",
                                                       "password": "no"}).model_dump(mode="json"),
        csv_feed(web).model_dump(mode="json"),
    ]  # fmt: skip
    registry_path = tmp_path / "feeds.yaml"
    registry_path.write_text(
        json.dumps(
            {
                "defaults": {"jurisdiction": "HK", "interval": "1h", "retries": 0,
                             "retry_backoff_s": 0, "backoff_base_s": 30, "backoff_max_s": 100},
                "feeds": [{k: v for k, v in e.items() if v is not None} for e in entries],
            }
        )
    )  # fmt: skip
    registry = load_registry(registry_path)
    scheduler = FeedScheduler(build_runner(services), registry, clock)

    reports = {r.feed: r for r in scheduler.run_due()}
    assert set(reports) == {"down", "gone", "badcreds", "blocklist"}
    assert reports["blocklist"].ok and reports["blocklist"].accepted == 6
    kinds = {name: r.failure.kind for name, r in reports.items() if r.failure is not None}
    assert kinds == {"down": "http", "gone": "unreachable", "badcreds": "credentials"}
    now = clock.now()
    assert scheduler.due["down"] == now + timedelta(seconds=30)
    assert scheduler.due["blocklist"] == now + timedelta(hours=1)

    clock.advance(timedelta(seconds=30))
    assert {r.feed for r in scheduler.run_due()} == {"down", "gone", "badcreds"}
    assert scheduler.due["down"] == clock.now() + timedelta(seconds=60)
    for _ in range(3):
        clock.advance(timedelta(seconds=100))
        scheduler.run_due()
    assert scheduler.due["down"] == clock.now() + timedelta(seconds=100)  # capped
    state = FeedCursors(services.store, services.clock).load("down", "text")
    assert state.failures == 5 and state.last_error is not None and "503" in state.last_error


# ---------------------------------------------------------------- the command line


def test_cli_pull_shows_a_summary_and_run_once_reports_every_feed(
    web: FeedServer, tmp_path: Path
) -> None:
    web.static("/lists/blocklist.csv", (DATA / "blocklist.csv").read_bytes(), "text/csv")
    registry = tmp_path / "feeds.yaml"
    good = csv_feed(web).model_dump(mode="json", exclude_none=True)
    broken = {"name": "down", "kind": "text", "url": f"http://127.0.0.1:{free_port()}/x.txt",
              "jurisdiction": "GD", "retries": 0}  # fmt: skip
    registry.write_text(json.dumps({"feeds": [good, broken]}))
    data_dir = tmp_path / "data"
    cli = CliRunner()

    pulled = cli.invoke(
        feeds_app, ["pull", "blocklist", "--data-dir", str(data_dir), "-r", str(registry)]
    )
    assert pulled.exit_code == 0, pulled.output
    assert "feed blocklist: ok, fetched 6, accepted 6, rejected 3" in pulled.output

    unknown = cli.invoke(
        feeds_app, ["pull", "nope", "--data-dir", str(data_dir), "-r", str(registry)]
    )
    assert unknown.exit_code == 2 and "no feed named 'nope'" in unknown.output

    once = cli.invoke(
        feeds_app, ["run", "--once", "--data-dir", str(data_dir), "-r", str(registry)]
    )
    assert once.exit_code == 1
    assert "feed down: FAILED (unreachable)" in once.output
    assert "feed blocklist: ok, fetched 0" in once.output


def test_the_feed_loop_runs_feeds_from_the_data_dir_registry_until_stopped(
    services: Services, web: FeedServer
) -> None:
    assert feed_loop(services) is None  # no registry file: no loop
    web.static("/lists/blocklist.csv", (DATA / "blocklist.csv").read_bytes(), "text/csv")
    entry = csv_feed(web).model_dump(mode="json", exclude_none=True)
    (services.settings.data_dir / "feeds.yaml").write_text(json.dumps({"feeds": [entry]}))
    loop = feed_loop(services)
    assert loop is not None
    stop = threading.Event()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(ids_on_bus(services)) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert len(ids_on_bus(services)) == 6
