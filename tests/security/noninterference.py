"""A platform driven step by step, and everything one reader can observe of it.

Used by the noninterference tests (DOMAIN.md "Noninterference"): the same
scenario is run twice, once with extra reports hidden from a reader, and that
reader's every answer is compared byte for byte.

``World`` is the whole app over real backends (embedded, or Kafka +
Elasticsearch): pushes go through the TAXII inboxes, the real correlator,
alert engine and notifier run over the real bus, the escalation tick and the
re-score over the store. ``observe`` asks every read route a reader has
(records, lookup, stats, alerts, the SSE stream, its webhook deliveries, every
TAXII collection, object and version list) and keeps status, the headers that
carry content and the body bytes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import difflib
import functools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import FastAPI

import api.health as health_module
import records.objects as objects_module
from api.alerts import AlertPages
from api.app import create_app
from api.auth import FailureLimiter, PrincipalCache
from core import names
from core.access import Agency, bearer_token
from core.clock import FakeClock, format_timestamp
from core.consuming import ConsumerStage
from core.crossborder import whitelist_from_yaml_text
from core.policy import SharingPolicy
from core.ports import Consumer, Query, Store, Term
from core.record_indicators import indicator_id
from core.settings import ApiSettings, Settings
from correlate.alerter import AlertEngine, escalation_tick
from correlate.rules import RuleSet, load_ruleset
from records.agencies import AgencyRegistry
from records.books import records_of
from records.webhooks import WebhookDirectory
from threatbay.bootstrap import (
    Services,
    build,
    correlator_for,
    notifier_for,
    rescorer_for,
)

TAXII = "application/taxii+json;version=2.1"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'ni-' + name)}"


#: Five agencies: two in Guangdong, two in Hong Kong, one in Macao; consent varies.
AGENCIES: tuple[Agency, ...] = (
    Agency("gd-a", "GD agency A", "GD", identity("gd-a"), "B"),
    Agency("gd-b", "GD agency B", "GD", identity("gd-b"), "C", crossborder_consent=("HK",)),
    Agency("hk-a", "HK agency A", "HK", identity("hk-a"), "A", crossborder_consent=("GD",)),
    Agency("hk-b", "HK agency B", "HK", identity("hk-b"), "B", crossborder_consent=("MO",)),
    Agency("mo-a", "MO agency A", "MO", identity("mo-a"), "B", crossborder_consent=("GD", "HK")),
)
AGENCY_IDS = tuple(a.id for a in AGENCIES)
JURISDICTION_OF = {a.id: a.jurisdiction for a in AGENCIES}

#: A deliberately asymmetric whitelist: each flow lets different observable types cross,
#: and AMBER reaches one named counterpart, with or without consent.
WHITELIST_YAML = """
version: 1
rules:
  - name: gd-to-hk
    from: GD
    to: HK
    object_types: [indicator, sighting, relationship, malware]
    observable_types: [ipv4-addr, domain-name]
    amber_requires_consent: true
    amber_counterparts: [hk-a, hk-b]
  - name: hk-to-gd
    from: HK
    to: GD
    object_types: [indicator, sighting, relationship, malware]
    observable_types: [domain-name, url]
    amber_requires_consent: false
    amber_counterparts: [gd-b]
  - name: hk-to-mo
    from: HK
    to: MO
    object_types: [indicator, sighting, relationship, malware]
    observable_types: [ipv4-addr, domain-name, url]
    amber_counterparts: []
  - name: mo-to-hk
    from: MO
    to: HK
    object_types: [indicator, sighting, relationship, malware]
    observable_types: [ipv4-addr, domain-name, url]
    amber_requires_consent: true
    amber_counterparts: [hk-b]
  - name: mo-to-gd
    from: MO
    to: GD
    object_types: [indicator, sighting]
    observable_types: [ipv4-addr]
    amber_counterparts: []
"""


@functools.cache
def ni_policy() -> SharingPolicy:
    """The sharing policy of every noninterference world (``WHITELIST_YAML``; pure, shared)."""
    return SharingPolicy(whitelist_from_yaml_text(WHITELIST_YAML))


@functools.cache
def ni_rules() -> RuleSet:
    """The shipped alert rules, parsed once."""
    return load_ruleset()


@dataclass
class Key:
    agency: Agency
    key_id: str
    secret: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {bearer_token(self.key_id, self.secret)}"}

    @property
    def basic(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.key_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}", "Accept": TAXII}


@dataclass(frozen=True)
class Response:
    """What ``Asgi`` answers (the little of httpx's Response the tests use)."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class Asgi:
    """Calls the ASGI app directly on one event loop: no client, no thread per request.

    Thousands of scenarios each ask a few hundred questions; going through
    ``TestClient`` (a thread hop for every ASGI message) cost ~10 ms a request.
    The app is the real one (``create_app``): routing, middleware, dependencies,
    error handlers and streaming responses all run as they do under uvicorn.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        ready = threading.Event()

        async def root() -> None:
            # A long-lived root task: anyio keeps its worker threads (and the embedded
            # store's connection in each) for as long as it runs.
            self._stop = asyncio.Event()
            ready.set()
            await self._stop.wait()

        self._thread = threading.Thread(
            target=lambda: self.loop.run_until_complete(root()), name="asgi", daemon=True
        )
        self._thread.start()
        ready.wait()

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes = b"",
        json: Any = None,
    ) -> Response:
        if json is not None:
            content = orjson.dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        call = self._call(method, path, params, headers, content)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.request("POST", path, **kw)

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        content: bytes,
    ) -> Response:
        query = urlencode([(k, str(v)) for k, v in (params or {}).items()]).encode()
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        raw.append((b"content-length", str(len(content)).encode()))
        raw.append((b"host", b"testserver"))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": quote(path).encode(),
            "query_string": query,
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        sent_body = False
        status = 500
        head: dict[str, str] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": content, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects on its own
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                head.update((k.decode().lower(), v.decode()) for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, send)
        return Response(status, head, b"".join(chunks))


_APP: FastAPI | None = None


def bound_app(services: Services) -> FastAPI:
    """One app for every world of the process, bound to ``services`` as ``create_app`` binds.

    Building the app costs ~0.5 s (FastAPI analyses every route); a world lives
    a fraction of that. ``app.state`` is all a request reaches (api/deps.py).
    """
    global _APP
    if _APP is None:
        _APP = create_app(services)
        # /metrics re-reads the store at every scrape: a snapshot cached by one world would
        # answer the other's (the worlds share this app).
        health_module.SCRAPE_CACHE_S = 0.0
    api = services.settings.api
    _APP.state.services = services
    _APP.state.sharing_policy = services.sharing
    _APP.state.loops = None
    _APP.state.auth_limiter = FailureLimiter(api.auth_failure_burst, api.auth_failure_per_s)
    _APP.state.auth_cache = PrincipalCache(ttl_s=api.auth_cache_ttl_s)
    _APP.state.alert_pages = AlertPages(api.alert_page_ttl_s or 0.0)
    return _APP


@dataclass(frozen=True)
class Answer:
    """One response as the reader got it: status, content headers, body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def show(self) -> str:
        try:
            body = orjson.dumps(orjson.loads(self.body), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            body = self.body.decode(errors="replace")
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"HTTP {self.status}\n{head}\n{body}"


#: Response headers that carry content (TAXII 2.1 section 3.3.1); the rest is transport.
CONTENT_HEADERS = ("content-type", "x-taxii-date-added-first", "x-taxii-date-added-last")


@dataclass(frozen=True)
class Probes:
    """Everything worth asking about: keys, values, alert and object ids of both runs."""

    values: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    alert_ids: tuple[str, ...] = ()
    object_ids: tuple[str, ...] = ()
    agencies: tuple[str, ...] = AGENCY_IDS
    malware: tuple[str, ...] = ()

    def __or__(self, other: Probes) -> Probes:
        def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(sorted(set(a) | set(b)))

        return Probes(
            union(self.values, other.values),
            union(self.keys, other.keys),
            union(self.alert_ids, other.alert_ids),
            union(self.object_ids, other.object_ids),
            union(self.agencies, other.agencies),
            union(self.malware, other.malware),
        )


@dataclass
class World:
    """One platform under test, driven step by step on a fake clock."""

    services: Services
    clock: FakeClock
    client: Asgi
    keys: dict[str, Key]
    stages: dict[str, tuple[ConsumerStage, Consumer]]
    idle_polls: int = 1
    poll_timeout_s: float = 0.0
    pushed: list[dict[str, Any]] = field(default_factory=list)
    #: An admin credential of each agency (``/metrics`` counts what its agency may see).
    admin_keys: dict[str, Key] = field(default_factory=dict)
    #: This world's last ``date_added`` (records/objects.py keeps it per process: two worlds
    #: in one test process must not share it, as two deployments would not).
    last_added: datetime | None = None

    # ----------------------------------------------------------------- driving

    def at(self, when: datetime) -> None:
        """Move the clock to ``when``; make this world's app and ``date_added`` sequence current."""
        self.clock.set(when)
        objects_module._last_added = self.last_added
        self._bind()

    def _bind(self) -> None:
        """Make the shared app answer for this world (every operation starts here)."""
        bound_app(self.services)

    def _leave(self) -> None:
        self.last_added = objects_module._last_added

    def push(self, agency_id: str, objects: Sequence[dict[str, Any]]) -> None:
        """POST ``objects`` to the agency's TAXII inbox; every one must be accepted."""
        self._bind()
        key = self.keys[agency_id]
        r = self.client.post(
            f"/taxii2/api/collections/inbox-{agency_id}/objects/",
            headers=key.basic | {"Content-Type": TAXII},
            content=orjson.dumps({"objects": list(objects)}),
        )
        assert r.status_code == 202, r.text
        status = r.json()
        assert status["success_count"] == len(objects), status
        self.pushed.extend(objects)

    def _drain(self, name: str) -> int:
        stage, consumer = self.stages[name]
        total, idle = 0, 0
        while idle < self.idle_polls:
            n = stage.step(consumer, timeout_s=self.poll_timeout_s)
            total += n
            idle = idle + 1 if n == 0 else 0
        return total

    def settle(self) -> None:
        """Correlate, raise alerts, create webhook deliveries (nothing is sent)."""
        store = self.services.store
        self._drain("correlator")
        for index in (names.INDEX_INDICATORS, names.INDEX_OBJECTS):
            store.refresh(index)
        self._drain("alerter")
        for index in (names.INDEX_ALERTS, names.INDEX_ALERT_EVENTS, names.INDEX_OBJECTS):
            store.refresh(index)
        self._drain("notifier")
        store.refresh(names.INDEX_DELIVERIES)
        self._leave()

    def tick(self) -> None:
        """The periodic work: re-score pass, escalation (overdue, update due, idle expiry)."""
        store = self.services.store
        rescorer_for(self.services).run_pass()
        store.refresh(names.INDEX_INDICATORS)
        self.settle()
        escalation_tick(records_of(self.services).alerts, self.clock.now())
        for index in (names.INDEX_ALERTS, names.INDEX_ALERT_EVENTS, names.INDEX_OBJECTS):
            store.refresh(index)
        self._drain("notifier")
        store.refresh(names.INDEX_DELIVERIES)
        self._leave()

    def act(self, reader: str, action: str) -> None:
        """The reader acts on the first alert of its own list (its own request)."""
        self._bind()
        key = self.keys[reader]
        items = self.client.get("/api/v1/alerts", headers=key.bearer).json()["items"]
        if not items:
            return
        alert_id = items[0]["id"]
        body: dict[str, Any] = {
            "acknowledge": {"note": "seen"},
            "comments": {"text": f"{reader} looked at it"},
            "resolve": {"reason": "handled"},
        }[action]
        self.client.post(f"/api/v1/alerts/{alert_id}/{action}", headers=key.bearer, json=body)
        for index in (names.INDEX_ALERTS, names.INDEX_ALERT_EVENTS, names.INDEX_OBJECTS):
            self.services.store.refresh(index)
        self._drain("notifier")
        self.services.store.refresh(names.INDEX_DELIVERIES)
        self._leave()

    # --------------------------------------------------------------- observing

    def probes(self) -> Probes:
        """Keys, alert ids and object ids present in this world's store (for ``observe``)."""
        store = self.services.store
        records = _all(store, names.INDEX_INDICATORS)
        # Document keys too: a view's own key must not answer as a record key.
        keys = {d["key"] for _, d in records if "key" in d} | {k for k, _ in records}
        values = {d["value"] for _, d in records if "value" in d}
        versions = _all(store, names.INDEX_ALERTS)
        alerts = {d["id"] for _, d in versions if "id" in d} | {k for k, _ in versions}
        objects = {d["id"] for _, d in _all(store, names.INDEX_OBJECTS) if "id" in d}
        malware = {
            o["target_ref"]
            for o in self.pushed
            if o.get("type") == "relationship" and isinstance(o.get("target_ref"), str)
        }
        return Probes(
            values=tuple(sorted(values)),
            keys=tuple(sorted(keys)),
            alert_ids=tuple(sorted(alerts)),
            object_ids=tuple(sorted(objects)),
            malware=tuple(sorted(malware)),
        )

    def one_view_each(self) -> None:
        """Every reader's filter matches at most one document of each record (core/views.py)."""
        store = self.services.store
        for agency in AGENCIES:
            for own in (f"r:{agency.id}", f"m:{agency.id}"):
                tags = (own, f"jur:{agency.jurisdiction}")
                seen = [
                    d["key"]
                    for _, d in _all(store, names.INDEX_INDICATORS, (Term("readers", tags),))
                ]
                assert len(seen) == len(set(seen)), (own, sorted(seen))

    def observe(self, reader: str, probes: Probes) -> dict[str, Answer]:
        """Every answer ``reader`` gets from every read route, keyed by request."""
        self._bind()
        key = self.keys[reader]
        out: dict[str, Answer] = {}

        def ask(path: str, params: dict[str, Any] | None = None, *, taxii: bool = False,
                extra: dict[str, str] | None = None,
                as_key: Key | None = None) -> Answer:  # fmt: skip
            headers = (key.basic if taxii else (as_key or key).bearer) | (extra or {})
            r = self.client.get(path, params=params, headers=headers)
            kept = tuple((h, r.headers[h]) for h in CONTENT_HEADERS if h in r.headers)
            answer = Answer(r.status_code, kept, r.content)
            label = path + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
            if extra:
                label += " " + " ".join(f"[{k}: {v}]" for k, v in extra.items())
            out[label] = answer
            return answer

        def pages(path: str, params: dict[str, Any], cursor_field: str) -> None:
            """Follow a cursor-paged listing one item at a time (cursors are observable)."""
            cursor: str | None = None
            for _ in range(50):
                answer = ask(path, params | ({"cursor": cursor} if cursor else {}))
                if answer.status != 200:
                    return
                cursor = orjson.loads(answer.body).get(cursor_field)
                if not cursor:
                    return

        # --- indicator records
        for sort in ("score", "last_seen", "first_seen", "corroboration"):
            ask("/api/v1/indicators", {"limit": 500, "sort": sort})
        pages("/api/v1/indicators", {"limit": 1, "sort": "corroboration"}, "next")
        filters: list[dict[str, Any]] = [{"agency": a} for a in probes.agencies]
        filters += [{"jurisdiction": j} for j in ("GD", "HK", "MO")]
        filters += [{"malware": m} for m in probes.malware]
        filters += [{"state": s} for s in ("active", "expired", "revoked")]
        filters += [{"min_score": 50}, {"max_score": 30}, {"type": "domain-name"}]
        for f in filters:
            ask("/api/v1/indicators", {"limit": 500, **f})
        for k in probes.keys:
            ask(f"/api/v1/indicators/{k}")
        for v in probes.values:
            ask("/api/v1/lookup", {"value": v})
        ask("/api/v1/stats/indicators")

        # --- health: readiness, and the metrics the reader's admin scrapes
        ask("/readyz")
        metrics = ask("/metrics", as_key=self.admin_keys[reader])
        del out["/metrics"]
        out["/metrics [admin]"] = Answer(metrics.status, (), _content_metrics(metrics.body))

        # --- alerts
        ask("/api/v1/alerts", {"limit": 500})
        pages("/api/v1/alerts", {"limit": 1}, "next_cursor")
        for f in (
            [{"jurisdiction": j} for j in ("GD", "HK", "MO")]
            + [{"agency": a} for a in probes.agencies]
            + [{"level": lv} for lv in ("RED", "ORANGE", "YELLOW", "BLUE")]
        ):
            ask("/api/v1/alerts", {"limit": 500, **f})
        for alert_id in probes.alert_ids:
            ask(f"/api/v1/alerts/{alert_id}")
            ask(f"/api/v1/alerts/{alert_id}", {"format": "stix"})

        # --- the live stream from the start, and resumed after its first event
        stream = ask("/api/v1/stream", {"max_seconds": 0.001}, extra={"Last-Event-ID": "0"})
        first = _first_sse_id(stream.body)
        if first is not None:
            ask("/api/v1/stream", {"max_seconds": 0.001}, extra={"Last-Event-ID": first})

        # --- webhook deliveries queued for the reader's agency (payloads as they would be sent)
        ask("/api/v1/deliveries", {"limit": 500})
        for _, job in _all(self.services.store, names.INDEX_DELIVERIES):
            if job.get("agency") == reader:
                out[f"webhook {job['id']}"] = Answer(200, (), orjson.dumps(job["payload"]))

        # --- TAXII 2.1 (every collection the reader can name)
        collections = ("shared-all", "shared-gd", "shared-hk", "shared-mo", f"inbox-{reader}")
        for coll in collections:
            base = f"/taxii2/api/collections/{coll}/"
            for params in ({}, {"match[version]": "all"}) if coll == "shared-all" else ({},):
                ask(base + "objects/", params, taxii=True)
                ask(base + "manifest/", params, taxii=True)
        base = "/taxii2/api/collections/shared-all/"
        for obj_id in probes.object_ids:  # every object of either run, hidden ones too
            ask(f"{base}objects/{obj_id}/", {"match[version]": "all"}, taxii=True)
            ask(f"{base}objects/{obj_id}/versions/", taxii=True)

        # --- the consumer collection ``records`` (issue 18): one indicator per record view
        base = "/taxii2/api/collections/records/"
        for params in ({}, {"match[version]": "all"}, {"added_after": format_timestamp(T0)}):
            ask(base + "objects/", params, taxii=True)
            ask(base + "manifest/", params, taxii=True)
        token: str | None = None
        for _ in range(50):  # one by one: every ``next`` token and header is observable
            page = ask(base + "objects/", {"limit": 1} | ({"next": token} if token else {}),
                       taxii=True)  # fmt: skip
            token = orjson.loads(page.body).get("next") if page.status == 200 else None
            if not token:
                break
        for k in probes.keys:  # every record key of either run (and view document keys)
            ask(f"{base}objects/{indicator_id(k)}/", taxii=True)
            ask(f"{base}objects/{indicator_id(k)}/versions/", taxii=True)
        return out


#: /metrics series counted from stored content (api/health.py): compared byte for byte.
#: The stage series (lag, batches, crashes, dead letters) describe the platform's stages
#: and the ingest counter lives in the app process, which this harness shares between
#: worlds (tests/e2e/test_status.py checks that an admin counts its own pushes only).
CONTENT_METRICS = (
    "threatbay_records",
    "threatbay_alerts",
    "threatbay_open_alerts",
    "threatbay_deliveries",
    "threatbay_delivery_failures",
)


def _content_metrics(text: bytes) -> bytes:
    kept = [
        line
        for line in text.decode().splitlines()
        if not line.startswith("#") and line.split("{")[0].split(" ")[0] in CONTENT_METRICS
    ]
    return "\n".join(kept).encode()


def _first_sse_id(body: bytes) -> str | None:
    for line in body.decode().splitlines():
        if line.startswith("id: "):
            return line[4:]
    return None


def _all(
    store: Store, index: str, filters: tuple[Any, ...] = ()
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    after: tuple[Any, ...] | None = None
    while True:
        page = store.search(index, Query(filters=filters, limit=1000, after=after))
        out.extend((h.key, h.doc) for h in page.hits)
        if not page.more or not page.hits:
            return out
        after = page.hits[-1].cursor


@contextmanager
def world(services: Services, clock: FakeClock, *, real: bool = False) -> Iterator[World]:
    """A ``World`` over ``services``: agencies registered, webhooks set, stages joined."""
    registry = AgencyRegistry(services.store, clock)
    keys: dict[str, Key] = {}
    admin_keys: dict[str, Key] = {}
    directory = WebhookDirectory(services.store)
    for agency in AGENCIES:
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[agency.id] = Key(agency, cred.key_id, secret)
        cred, secret = registry.add_credential(agency.id, roles=("admin",))
        admin_keys[agency.id] = Key(agency, cred.key_id, secret)
        # Never listened on: the notifier's jobs (their payloads) are what is compared.
        directory.register(agency, f"http://127.0.0.1:9/hook/{agency.id}")
    services.store.refresh(names.INDEX_WEBHOOKS)
    services.store.refresh(names.INDEX_AGENCIES)
    correlator = correlator_for(services)
    engine = AlertEngine(records_of(services).alerts, ni_rules())
    notifier = notifier_for(services)
    stages: dict[str, tuple[ConsumerStage, Consumer]] = {
        "correlator": (correlator, services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)),
        "alerter": (engine, services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)),
        "notifier": (notifier, services.bus.consumer(names.TOPIC_ALERTS, names.GROUP_NOTIFIER)),
    }
    if real:  # join the consumer groups while the topics are still empty
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for _, consumer in stages.values():
                consumer.poll(timeout_s=0.5)
            members = [getattr(c, "_consumer", None) for _, c in stages.values()]
            if all(m is None or m.assignment() for m in members):
                break
    client = Asgi(bound_app(services))
    try:
        yield World(
            services,
            clock,
            client,
            keys,
            stages,
            idle_polls=3 if real else 1,
            poll_timeout_s=0.25 if real else 0.0,
            admin_keys=admin_keys,
        )
    finally:
        client.close()
        for _, consumer in stages.values():
            consumer.close()
        records_of(services).close()


def differences(a: dict[str, Answer], b: dict[str, Answer], limit: int = 3) -> str:
    """A readable account of the first answers that differ ('' when none do)."""
    out: list[str] = []
    for label in sorted(set(a) | set(b)):
        x, y = a.get(label), b.get(label)
        if x == y:
            continue
        left = x.show() if x else "(not asked)"
        right = y.show() if y else "(not asked)"
        diff = "\n".join(
            difflib.unified_diff(
                left.splitlines(), right.splitlines(), "without hidden", "with hidden", lineterm=""
            )
        )
        out.append(f"--- {label}\n{diff}")
        if len(out) >= limit:
            break
    return "\n".join(out)


def ni_settings(data_dir: Path) -> Settings:
    """Settings of a noninterference world: a quick stream poll, nothing else changed."""
    return Settings(data_dir=data_dir, api=ApiSettings(stream_poll_s=0.005))


@contextmanager
def embedded(data_dir: Path, clock: FakeClock) -> Iterator[Services]:
    """Embedded backends in ``data_dir`` with the noninterference sharing policy."""
    built = build(ni_settings(data_dir), clock=clock)
    services = dataclasses.replace(built, sharing=ni_policy())
    try:
        yield services
    finally:
        services.close()


def fresh_clock() -> FakeClock:
    return FakeClock(T0)


def later(step: int, seconds: int = 60) -> datetime:
    """The moment of visible step ``step`` (hidden steps go between two of these)."""
    return T0 + timedelta(seconds=seconds * step)


def between(step: int, seconds: int = 60) -> datetime:
    """A moment strictly between visible steps ``step`` and ``step + 1`` (for hidden pushes)."""
    return later(step, seconds) + timedelta(seconds=seconds / 2)


__all__ = [
    "between",
    "AGENCIES",
    "Answer",
    "Probes",
    "World",
    "differences",
    "embedded",
    "later",
    "ni_policy",
    "world",
]
