"""The push path on real Kafka: 202 only after acks=all, then pulled back through TAXII."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import envelope
from core.clock import FakeClock
from core.names import INDEX_OBJECTS, TOPIC_RAW
from core.settings import KafkaSettings, Settings
from records.objects import store_objects
from threatbay.bootstrap import Services

pytestmark = pytest.mark.kafka


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock, kafka_bootstrap: str) -> Iterator[Services]:
    """Real Kafka bus (own topic prefix) with the embedded store; overrides conftest's."""
    address = kafka_bootstrap  # tests/conftest.py: fails under CI when unreachable, skips otherwise
    from backends.embedded_store import EmbeddedStore
    from backends.kafka_bus import KafkaBus

    bus = KafkaBus(
        address,
        KafkaSettings(partitions=3, session_timeout_ms=6000),
        prefix=f"taxii-{uuid.uuid4().hex[:8]}-",
    )
    svc = Services(
        settings=Settings(data_dir=tmp_path),
        bus=bus,
        store=EmbeddedStore(str(tmp_path / "store.sqlite3")),
        clock=clock,
    )
    yield svc
    svc.close()


def test_push_to_kafka_and_pull_back(
    client: TestClient, services: Services, keys: Any, stix: Any
) -> None:
    gd = keys["gd"]
    objects = [stix.indicator(i) for i in range(200)]
    objects[17]["pattern"] = "[url:value = ]"
    resp = client.post(gd.inbox + "objects/", headers=gd.post, json=stix.bundle(*objects))
    status = resp.json()
    assert resp.status_code == 202
    assert status["success_count"] == 199 and status["failures"][0]["id"] == objects[17]["id"]

    consumer = services.bus.consumer(TOPIC_RAW, "taxii-test", from_beginning=True)
    accepted: list[envelope.Accepted] = []
    deadline = time.monotonic() + 60
    while len(accepted) < 199 and time.monotonic() < deadline:
        for message in consumer.poll(max_records=500, timeout_s=1.0):
            accepted += envelope.decode(message.value)
    consumer.close()
    assert len(accepted) == 199
    assert {a.provenance.agency for a in accepted} == {"gd-cac"}
    store_objects(services.store, accepted, services.clock)
    services.store.refresh(INDEX_OBJECTS)

    seen: list[str] = []
    url = "/taxii2/api/collections/shared-gd/objects/?limit=50"
    while True:
        body = client.get(url, headers=keys["gd2"].basic).json()
        seen += [o["id"] for o in body.get("objects", [])]
        if not body["more"]:
            break
        url = f"/taxii2/api/collections/shared-gd/objects/?limit=50&next={body['next']}"
    assert sorted(seen) == sorted(o["id"] for i, o in enumerate(objects) if i != 17)
