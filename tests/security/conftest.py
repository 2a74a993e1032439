"""Access-control fixtures: the whole app (every router), agencies, one key per role.

Reuses the whole-flow fixtures of ``tests/e2e/conftest.py`` (embedded backends,
agencies GD/GD2/HK/MO and the admin agency ``ops``) and adds what the alert,
stream and webhook routers need while ``create_app`` does not mount them yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.access import ROLES
from core.ports import Consumer
from core.services import default_sharing
from correlate.alerter import AlertEngine
from correlate.rules import load_ruleset
from records.agencies import AgencyRegistry
from records.alerts import AlertBook
from tests.e2e.conftest import Key, clock, keys, services  # noqa: F401  (fixtures)
from tests.security.stacks import cluster_stack, secure_stack, stack_session  # noqa: F401
from threatbay.bootstrap import Services, correlator_for


def full_app(svc: Services) -> FastAPI:
    """``create_app`` plus the alerts, stream and webhooks routers when it does not mount them."""
    from api.alerts import alerts_router
    from api.stream import stream_router
    from api.webhooks import webhooks_router

    app = create_app(svc)
    paths = {getattr(r, "path", "") for r in route_contexts(app)}
    if "/api/v1/alerts" not in paths:
        app.include_router(alerts_router())
    if "/api/v1/stream" not in paths:
        app.include_router(stream_router())
    if "/api/v1/deliveries" not in paths:
        app.include_router(webhooks_router())
    return app


def route_contexts(app: FastAPI) -> list[object]:
    """Every route of ``app`` flattened through included routers (FastAPI >= 0.16x nests them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


@pytest.fixture
def app(services: Services, keys: dict[str, Key]) -> FastAPI:  # noqa: F811
    return full_app(services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def role_keys(services: Services, keys: dict[str, Key]) -> dict[str, Key]:  # noqa: F811
    """One single-role credential per role, all for the GD agency ``gd-cac``."""
    registry = AgencyRegistry(services.store, services.clock)
    agency = keys["gd"].agency
    out: dict[str, Key] = {}
    for role in ROLES:
        cred, secret = registry.add_credential(agency.id, roles=(role,))
        out[role] = Key(agency, cred.key_id, secret)
    return out


@pytest.fixture
def correlate(services: Services) -> Callable[[], int]:  # noqa: F811
    """Run the real correlation worker over everything pushed so far."""
    worker = correlator_for(services)
    consumer: Consumer = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)

    def run() -> int:
        n = int(worker.drain(consumer))
        services.store.refresh(names.INDEX_INDICATORS)
        services.store.refresh(names.INDEX_OBJECTS)
        return n

    return run


@pytest.fixture
def raise_alerts(services: Services) -> Callable[[], None]:  # noqa: F811
    """Run the alert engine over the indicator change log."""
    book = AlertBook(services.store, services.bus, services.clock, default_sharing())
    engine = AlertEngine(book, load_ruleset())
    consumer = services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)

    def run() -> None:
        engine.drain(consumer)
        services.store.refresh(names.INDEX_ALERTS)
        services.store.refresh(names.INDEX_ALERT_EVENTS)

    return run
