"""Fuzzing fixtures: one app per module over the embedded backends, shared by all examples.

Hypothesis runs many examples per test, so the app, its store and keys live for
the module (function-scoped fixtures would be shared across examples anyway).
Server exceptions are not re-raised: a crash must show as the 500 it gives a client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core import names
from core.clock import FakeClock
from core.settings import Settings
from records.agencies import AgencyRegistry
from tests.e2e.conftest import AGENCIES, TLP_GREEN, Key, indicator
from tests.security.conftest import full_app
from threatbay.bootstrap import Services, build, correlator_for


class FuzzTarget:
    """The running app, a TestClient on it, and keys: publisher+analyst agencies, an admin.

    Not a dataclass: hypothesis prints dataclass fields in failure reports, secrets included.
    """

    def __init__(
        self,
        app: FastAPI,
        client: TestClient,
        services: Services,
        keys: dict[str, Key],
        object_ids: list[str],
    ) -> None:
        self.app = app
        self.client = client
        self.services = services
        self.keys = keys
        self.object_ids = object_ids

    def __repr__(self) -> str:  # hypothesis prints its arguments; keep secrets out of reports
        return "FuzzTarget(<app>)"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    clock = FakeClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    services = build(Settings(data_dir=tmp_path_factory.mktemp("fuzz")), clock=clock)
    registry = AgencyRegistry(services.store, services.clock)
    keys: dict[str, Key] = {}
    for name, agency in AGENCIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[name] = Key(agency, cred.key_id, secret)
    app = full_app(services)
    with TestClient(app, raise_server_exceptions=False) as client:
        # A few real objects so reads have pages, versions and cursors to walk.
        objects = [indicator(n, tlp=TLP_GREEN) for n in range(5)]
        objects.append(indicator(0, modified="2026-02-02T00:00:00.000Z", tlp=TLP_GREEN))
        r = client.post(
            keys["hk"].inbox + "objects/",
            headers=keys["hk"].post,
            content=orjson.dumps({"objects": objects}),
        )
        assert r.status_code == 202, r.text
        correlator_for(services).drain(
            services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
        )
        services.store.refresh(names.INDEX_OBJECTS)
        services.store.refresh(names.INDEX_INDICATORS)
        ids = sorted({o["id"] for o in objects}) + [f"indicator--{uuid.UUID(int=3)}"]
        yield FuzzTarget(app, client, services, keys, ids)
    services.close()
