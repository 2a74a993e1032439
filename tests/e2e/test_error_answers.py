"""Errors are answered in one place (api/errors.py): the right family, status and headers.

An unavailable backend is a 503 with ``Retry-After`` on every route (never a
500, never a per-object 422); under ``/taxii2/`` it is the TAXII error resource
with the TAXII media type, under ``/api/v1`` a ``{"detail": ...}`` body.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.errors import BusUnavailable, StoreUnavailable
from core.ports import Outgoing, Query
from tests.e2e.conftest import TAXII, Key, indicator
from threatbay.bootstrap import Services, correlator_for


class BusDown:
    """The real bus, refusing every publish (a broker outage)."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        raise BusUnavailable("broker unreachable (test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


class SearchDown:
    """The real store, failing every search (a node that stopped answering queries)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def search(self, index: str, query: Query) -> Any:
        raise StoreUnavailable("search timed out (test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def api(key: Key) -> dict[str, str]:
    return {"Authorization": key.bearer["Authorization"]}


def test_a_sighting_with_the_bus_down_is_503_with_retry_after(
    services: Services, client: TestClient, keys: dict[str, Key]
) -> None:
    obj = indicator(5, pattern="[domain-name:value = 'sighted.example']")
    r = client.post(keys["hk"].inbox + "objects/", headers=keys["hk"].post,
                    content=orjson.dumps({"objects": [obj]}))  # fmt: skip
    assert r.status_code == 202
    correlator_for(services).drain(services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR))
    services.store.refresh(names.INDEX_INDICATORS)
    down = dataclasses.replace(services, bus=BusDown(services.bus))
    with TestClient(create_app(down)) as broken:
        r = broken.post("/api/v1/indicators/domain-name|value|sighted.example/sightings",
                        headers=api(keys["hk"]), json={"count": 1})  # fmt: skip
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    assert "bus" in r.json()["detail"]


def test_the_store_down_is_503_in_each_routes_own_family(
    services: Services, keys: dict[str, Key]
) -> None:
    down = dataclasses.replace(services, store=SearchDown(services.store))
    with TestClient(create_app(down)) as broken:
        r = broken.get("/api/v1/indicators", headers=api(keys["hk"]))
        assert r.status_code == 503
        assert r.headers["Retry-After"].isdigit()
        assert r.json() == {"detail": "the store is unavailable"}
        t = broken.get("/taxii2/api/collections/shared-all/objects/", headers=keys["hk"].basic)
        assert t.status_code == 503
        assert t.headers["content-type"] == TAXII
        assert t.headers["Retry-After"].isdigit()
        assert t.json()["http_status"] == "503"
