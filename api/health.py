"""Health routes: ``/healthz`` (process up), ``/readyz`` (ready to work), ``/metrics`` (Prometheus).

What they read is ``records.health.status``: the lag of every consumer group
(from the bus), the stage heartbeats of every process, dead letters, records,
alerts and deliveries (issue #17, ARCHITECTURE.md "Guarantees").

- ``/healthz``: 200 while the process serves HTTP (liveness).
- ``/readyz``: 200 when the bus and the store answer and no stage is
  crash-looping, else 503 with the problems (stage names and crash counts
  only: error texts can quote intelligence, and this route is unauthenticated).
- ``/metrics``: the Prometheus text format (prometheus-client), for an
  ``admin`` credential: consumer lag, batch latency, dead letters, store and
  bus errors, crashes (the stages, platform-wide); and, counted only from what
  the admin's agency may see (DOMAIN.md "Noninterference"; an agency's admin is
  a reader like any other, there is no platform operator over HTTP), records,
  alerts by level, its agency's deliveries by state and delivery failures, and
  its agency's ingest objects by outcome (another agency's pushes, even of the
  same jurisdiction, may be TLP:AMBER+STRICT). The host's ``threatbay status``
  gives the platform-wide counts. The store is read at most once per
  ``SCRAPE_CACHE_S`` per admin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Admin
from core import policy
from core.consuming import BATCH_BUCKETS
from core.services import Services
from records.health import CountScope, Status, status

SCRAPE_CACHE_S = 2.0
INBOX_PREFIX = "/taxii2/api/collections/inbox-"


def current_status(app: Any, *, counts: bool = True, scope: CountScope | None = None) -> Status:
    """The status as this process sees it (its own loops, ``create_app(loops=)``, first-hand)."""
    services: Services = app.state.services
    loops = app.state.loops
    process, local = (None, None) if loops is None else (loops.process, loops.snapshot())
    return status(
        services.bus,
        services.store,
        services.clock,
        local,
        process=process,
        counts=counts,
        scope=scope,
    )


class StatusCollector(Collector):
    """Metrics computed from the status at scrape time (cached for ``SCRAPE_CACHE_S``)."""

    def __init__(self, read: Any) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._cached: tuple[float, Status] | None = None

    def snapshot(self) -> Status:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > SCRAPE_CACHE_S:
                self._cached = (time.monotonic(), self._read())
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        st = self.snapshot()
        up = GaugeMetricFamily("threatbay_backend_up", "Bus / store answering", labels=["backend"])
        up.add_metric(["bus"], 0.0 if st.bus_error else 1.0)
        up.add_metric(["store"], 0.0 if st.store_error else 1.0)
        yield up
        lag = GaugeMetricFamily(
            "threatbay_consumer_lag",
            "Messages not yet processed by a consumer group",
            labels=["stage", "topic", "group"],
        )
        for s in st.stages:
            if s.group is not None and s.lag is not None:
                lag.add_metric([s.stage, s.topic or "", s.group], float(s.lag))
        yield lag
        yield from _per_stage(st)
        latency = HistogramMetricFamily(
            "threatbay_batch_seconds", "Time to process one consumer batch", labels=["stage"]
        )
        for s in st.stages:
            if s.batch_buckets:
                cumulative, buckets = 0, []
                for bound, n in zip((*BATCH_BUCKETS, float("inf")), s.batch_buckets, strict=True):
                    cumulative += n
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
                latency.add_metric([s.stage], buckets, s.batch_seconds_sum)
        yield latency
        if st.dlq_total is not None:
            yield GaugeMetricFamily(
                "threatbay_dlq_messages", "Messages kept on intel.dlq", value=st.dlq_total
            )
        if st.records is not None:
            yield GaugeMetricFamily("threatbay_records", "Indicator records", value=st.records)
        yield _by("threatbay_alerts", "Alerts by level", "level", st.alerts_by_level)
        yield _by("threatbay_open_alerts", "Open alerts by level", "level",
                  st.open_alerts_by_level)  # fmt: skip
        yield _by("threatbay_deliveries", "Webhook deliveries by state", "state",
                  st.deliveries_by_state)  # fmt: skip
        yield GaugeMetricFamily(
            "threatbay_delivery_failures",
            "Webhook deliveries given up (dead) after every retry",
            value=st.deliveries_by_state.get("dead", 0),
        )


def _by(name: str, doc: str, label: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([value], float(n))
    return family


def _per_stage(st: Status) -> Iterator[Metric]:
    counters = {
        "dead_letters": "Inputs a stage sent to intel.dlq",
        "store_errors": "Store outages a stage met (rewound and retried)",
        "bus_errors": "Bus outages a stage met (rewound and retried)",
        "crashes": "Times a stage crashed on a bug and was restarted",
        "messages": "Messages a stage processed",
    }
    for field_name, doc in counters.items():
        family = CounterMetricFamily(f"threatbay_stage_{field_name}", doc, labels=["stage"])
        for s in st.stages:
            family.add_metric([s.stage], float(getattr(s, field_name)))
        yield family
    running = GaugeMetricFamily(
        "threatbay_stage_running", "Live loops of a stage", labels=["stage"]
    )
    looping = GaugeMetricFamily(
        "threatbay_stage_crash_looping", "1 when a stage is crash-looping", labels=["stage"]
    )
    for s in st.stages:
        running.add_metric([s.stage], float(s.running))
        looping.add_metric([s.stage], 1.0 if s.crash_looping else 0.0)
    yield running
    yield looping


class IngestCounter:
    """Pure ASGI middleware: counts objects pushed to TAXII inboxes by agency and outcome.

    Reads the TAXII status resource the push answers with (TAXII 2.1 section
    4.3: ``success_count`` / ``failure_count``); the agency is the inbox's.
    """

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not path.startswith(INBOX_PREFIX):
            await self.app(scope, receive, send)
            return
        agency = path[len(INBOX_PREFIX) :].split("/", 1)[0]
        state: dict[str, Any] = {"status": 0, "body": []}

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body" and state["status"] == 202:
                state["body"].append(message.get("body", b""))
                if not message.get("more_body"):
                    self._count(agency, b"".join(state["body"]))
            await send(message)

        await self.app(scope, receive, counting)

    def _count(self, agency: str, body: bytes) -> None:
        try:
            resource = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        for outcome, field_name in (("accepted", "success_count"), ("rejected", "failure_count")):
            n = resource.get(field_name) if isinstance(resource, dict) else None
            if isinstance(n, int) and n > 0:
                self.counter.labels(agency=agency, outcome=outcome).inc(n)


class IngestOf(Collector):
    """The ingest counter's samples of some agencies only (an admin's own)."""

    def __init__(self, counter: Counter, agencies: frozenset[str]) -> None:
        self.counter = counter
        self.agencies = agencies

    def collect(self) -> Iterator[Metric]:
        for family in self.counter.collect():
            kept = CounterMetricFamily(
                family.name, family.documentation, labels=["agency", "outcome"]
            )
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("agency") in self.agencies:
                    kept.add_metric(
                        [sample.labels["agency"], sample.labels["outcome"]], sample.value
                    )
            yield kept


def install(app: Any) -> None:
    """Add the health routes, the ingest counter and its middleware to ``app``."""
    registry = CollectorRegistry()
    counter = Counter(
        "threatbay_ingest_objects",
        "Objects pushed to TAXII inboxes, by agency and outcome",
        ["agency", "outcome"],
        registry=registry,
    )
    app.state.metrics_registry = registry
    app.add_middleware(IngestCounter, counter=counter)
    app.include_router(_router(counter))


def _router(counter: Counter) -> APIRouter:
    router = APIRouter(tags=["health"])
    collectors: dict[tuple[str, ...], StatusCollector] = {}
    lock = threading.Lock()

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process serves HTTP."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        """Readiness: bus and store reachable, no stage crash-looping (503 otherwise)."""
        st = await run_in_threadpool(current_status, request.app, counts=False)
        problems = [p.split(": ", 1)[0] if "crash-looping" in p else p.split(":", 1)[0]
                    for p in st.problems]  # fmt: skip
        body = {"status": "not ready" if problems else "ready", "problems": problems}
        return Response(orjson.dumps(body), 503 if problems else 200,
                        media_type="application/json")  # fmt: skip

    @router.get("/metrics")
    async def metrics(request: Request, principal: Admin) -> Response:
        """Prometheus metrics (text exposition format), for an admin credential; counts of
        content are the admin agency's (module docstring)."""
        reader = policy.reader_of(principal)
        scope = CountScope(tuple(policy.reader_tags(reader, policy.Purpose.READ)), reader.agency_id)
        with lock:
            collector = collectors.get(scope.tags)
            if collector is None:
                app = request.app
                collector = collectors[scope.tags] = StatusCollector(
                    lambda: current_status(app, scope=scope)
                )
        registry = CollectorRegistry()
        registry.register(IngestOf(counter, frozenset({reader.agency_id})))
        registry.register(collector)
        text = await run_in_threadpool(generate_latest, registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return router
