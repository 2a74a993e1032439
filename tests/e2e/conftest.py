"""Whole-flow fixtures: embedded backends, registered agencies, the ASGI app, a bus drain.

``drain`` stands in for the correlation worker's object writes: it consumes
``intel.stix.raw`` and calls ``records.objects.store_objects``, as the
worker does for every batch.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from core import envelope
from core.access import Agency, bearer_token
from core.clock import FakeClock
from core.names import INDEX_OBJECTS, TOPIC_RAW
from core.settings import ElasticsearchSettings, KafkaSettings, Settings
from records.agencies import AgencyRegistry
from records.objects import store_objects
from threatbay.bootstrap import Services, build

TAXII = "application/taxii+json;version=2.1"
ROOT = "/taxii2/api/"


@dataclass
class Key:
    agency: Agency
    key_id: str
    secret: str

    @property
    def basic(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.key_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}", "Accept": TAXII}

    @property
    def bearer(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {bearer_token(self.key_id, self.secret)}",
            "Accept": TAXII,
        }

    @property
    def post(self) -> dict[str, str]:
        return self.basic | {"Content-Type": TAXII}

    @property
    def inbox(self) -> str:
        return f"{ROOT}collections/inbox-{self.agency.id}/"


def _identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, name)}"


AGENCIES = {
    "gd": Agency("gd-cac", "Guangdong CAC", "GD", _identity("gd"), "B"),
    "gd2": Agency("gd-cncert", "CNCERT Guangdong", "GD", _identity("gd2"), "B"),
    "hk": Agency("hk-govcert", "GovCERT.HK", "HK", _identity("hk"), "A"),
    "mo": Agency("mo-caric", "CARIC", "MO", _identity("mo"), "B"),
    "ops": Agency("ops", "ThreatBay operators", "HK", _identity("ops"), roles=("admin",)),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    svc = build(Settings(data_dir=tmp_path), clock=clock)
    yield svc
    svc.close()


@contextmanager
def real_backends(
    tmp_path: Path,
    clock: FakeClock,
    kafka_bootstrap: str,
    es_url: str,
    name: str,
    refresh_interval: str = "1s",
    partitions: int = 3,
) -> Iterator[Services]:
    """Real Kafka bus and Elasticsearch store under a private prefix, dropped afterwards.

    ``refresh_interval="30s"`` makes only reads by key see fresh writes (as under heavy
    ingest): tests of real-time reads use it.
    """
    from backends.elasticsearch_store import ElasticsearchStore
    from backends.kafka_bus import KafkaBus

    prefix = f"{name}-{uuid.uuid4().hex[:8]}-"
    store = ElasticsearchStore(
        es_url, ElasticsearchSettings(refresh_interval=refresh_interval), prefix=prefix
    )
    bus = KafkaBus(
        kafka_bootstrap,
        KafkaSettings(partitions=partitions, session_timeout_ms=6000),
        prefix=prefix,
    )
    svc = Services(settings=Settings(data_dir=tmp_path), bus=bus, store=store, clock=clock)
    try:
        yield svc
    finally:
        store.drop_indices()
        svc.close()


@contextmanager
def embedded_or_real(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    name: str,
    refresh_interval: str = "1s",
) -> Iterator[Services]:
    """The embedded backends when ``request.param`` is ``"embedded"``, else ``real_backends``."""
    if request.param == "embedded":
        svc = build(Settings(data_dir=tmp_path), clock=clock)
        try:
            yield svc
        finally:
            svc.close()
        return
    kafka = request.getfixturevalue("kafka_bootstrap")
    es = request.getfixturevalue("es_url")
    with real_backends(tmp_path, clock, kafka, es, name, refresh_interval) as svc:
        yield svc


@pytest.fixture
def keys(services: Services) -> dict[str, Key]:
    registry = AgencyRegistry(services.store, services.clock)
    out: dict[str, Key] = {}
    for name, agency in AGENCIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        out[name] = Key(agency, cred.key_id, secret)
    return out


@pytest.fixture
def client(services: Services, keys: dict[str, Key]) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


@pytest.fixture
def drain(services: Services) -> Callable[[], int]:
    """Move everything published on intel.stix.raw into the objects index; returns count."""
    consumer = services.bus.consumer(TOPIC_RAW, "test-objects-drain", from_beginning=True)

    def run() -> int:
        moved = 0
        while True:
            batch = consumer.poll(max_records=500, timeout_s=0.05)
            if not batch:
                break
            accepted = [a for m in batch for a in envelope.decode(m.value)]
            store_objects(services.store, accepted, services.clock)
            consumer.commit()
            moved += len(accepted)
        services.store.refresh(INDEX_OBJECTS)
        return moved

    return run


# ------------------------------------------------------------------ objects

TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"


def indicator(
    n: int = 0,
    *,
    modified: str = "2026-02-01T00:00:00.000Z",
    pattern: str | None = None,
    tlp: str | None = TLP_GREEN,
    stix_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id or f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, str(n))}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": modified,
        "pattern": pattern or f"[ipv4-addr:value = '198.51.{n // 250 % 250}.{n % 250}']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    if tlp:
        obj["object_marking_refs"] = [tlp]
    obj.update(extra)
    return obj


def bundle(*objects: dict[str, Any]) -> dict[str, Any]:
    return {"objects": list(objects)}


# ------------------------------------------------------------------ real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(services: Services, keys: dict[str, Key]) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1 in a background thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@dataclass(frozen=True)
class Stix:
    """STIX object builders for tests (``conftest`` itself cannot be imported)."""

    indicator: Callable[..., dict[str, Any]] = indicator
    bundle: Callable[..., dict[str, Any]] = bundle
    root: str = ROOT
    taxii: str = TAXII
    green: str = TLP_GREEN
    amber: str = TLP_AMBER


@pytest.fixture
def stix() -> Stix:
    return Stix()
