"""TAXII out on real Elasticsearch: versions stay right without waiting for a refresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.clock import FakeClock
from core.names import INDEX_OBJECTS
from core.settings import ElasticsearchSettings, Settings
from records.objects import store_objects
from threatbay.bootstrap import Services, bus_from_url

pytestmark = pytest.mark.elasticsearch


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock, es_url: str) -> Iterator[Services]:
    """Real Elasticsearch (own index prefix) with the embedded bus; overrides conftest's."""
    url = es_url  # tests/conftest.py: fails under CI when unreachable, skips otherwise
    from backends.elasticsearch_store import ElasticsearchStore

    settings = Settings(data_dir=tmp_path)
    store = ElasticsearchStore(
        url, ElasticsearchSettings(), prefix=f"taxii-{uuid.uuid4().hex[:8]}-"
    )
    svc = Services(
        settings=settings,
        bus=bus_from_url(settings.bus_url, settings),
        store=store,
        clock=clock,
    )
    yield svc
    store.drop_indices()
    svc.close()


def test_versions_are_flagged_right_without_a_refresh_between_batches(
    client: TestClient, services: Services, keys: Any, stix: Any
) -> None:
    from core.envelope import Accepted
    from core.provenance import Provenance

    sid = "indicator--2f0e5b8a-5a53-4b4e-8f0f-7d3c1a9e6b21"
    prov = Provenance("gd-cac", "GD", "2026-03-01T08:00:00.000000Z", "r1", tlp="green")
    months = ["2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", "2026-04-01T00:00:00.000Z"]
    for modified in (months[1], months[2], months[0]):  # one batch each, no refresh between
        one = Accepted(stix.indicator(1, stix_id=sid, modified=modified), prov)
        store_objects(services.store, [one], services.clock)
    services.store.refresh(INDEX_OBJECTS)
    h = keys["gd2"].basic
    base = f"/taxii2/api/collections/shared-all/objects/{sid}/"
    last = client.get(base, headers=h).json()["objects"]
    first = client.get(base + "?match[version]=first", headers=h).json()["objects"]
    every = client.get(base + "?match[version]=all", headers=h).json()["objects"]
    assert [o["modified"] for o in last] == [months[2]]
    assert [o["modified"] for o in first] == [months[0]]
    assert sorted(o["modified"] for o in every) == months
