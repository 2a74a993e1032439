"""Every outward path decides sharing through ``core.policy`` (issue 6).

The app's routes are enumerated; each one that releases intelligence is
called with real data while the policy module's entry points are spied on,
and must have consulted it. A route nobody classified fails the test, so a
new outward path cannot slip past the policy unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

import api.indicator_queries
from api.app import create_app
from core import names, policy
from correlate.alerter import AlertEngine
from correlate.rules import load_ruleset
from records.alerts import AlertBook
from tests.e2e.conftest import TLP_GREEN, Key, indicator
from tests.security.conftest import route_contexts
from threatbay.bootstrap import Services, correlator_for

#: Routes that release no intelligence to the caller, with the reason.
NO_RELEASE = {
    "/healthz": "liveness only",
    "/readyz": "readiness: reachability and crash-looping stage names, no intelligence",
    "/api/v1/me": "the caller's own agency",
    "/api/v1/admin/agencies": "agency registry (admin)",
    "/api/v1/admin/agencies/{agency_id}": "agency registry (admin)",
    "/api/v1/admin/agencies/{agency_id}/credentials": "credential issue (admin)",
    "/api/v1/admin/credentials/{key_id}/rotate": "credential management (admin)",
    "/api/v1/admin/credentials/{key_id}/revoke": "credential management (admin)",
    "/api/v1/webhooks/{agency_id}": "webhook registration (admin)",
    "/api/v1/deliveries": "delivery log; payloads were decided when queued (api/webhooks.py)",
    "/api/v1/deliveries/{job_id}/retry": "re-sends an already decided payload",
    "/api/v1/trace/{key:path}": "audit trail of releases (admin), not a release",
    "/api/v1/audit": "audit export (admin), not a release",
    "/api/v1/alerts/{alert_id}/acknowledge": "state change; answers with the policy view",
    "/api/v1/alerts/{alert_id}/resolve": "state change; answers with the policy view",
    "/api/v1/alerts/{alert_id}/comments": "state change",
    "/api/v1/indicators/{key:path}/sightings": "a write through the ingest path",
    "/api/v1/indicators/{key:path}/false-positive": "a write through the ingest path; "
    "its effects on views: tests/e2e/test_false_positive.py",
    "/api/v1/indicators/{key:path}/expired": "a write through the ingest path (the caller's "
    "own reports)",
    "/api/v1/allowlist": "the caller agency's own allow-list (admin); no other agency's, ever",
    "/api/v1/stream": "streams; checked per event in tests/e2e/test_alerts_flow.py (TLP:RED)",
    "/taxii2/": "discovery",
    "/taxii2/{api_root}/": "API root information",
    "/taxii2/{api_root}/collections/": "collection list",
    "/taxii2/{api_root}/collections/{collection_id}/": "collection resource",
    "/taxii2/{api_root}/status/{status_id}/": "the caller's own push status",
    "/ui": "static page", "/ui/": "static page", "/ui/{name}": "static page",
}  # fmt: skip


#: Joint incident cases decide every item per reader in respond/ (core.policy.report_access),
#: proved by tests/unit/test_case_noninterference.py and tests/e2e/test_incidents_flow.py.
CASE_PREFIXES = ("/api/v1/incidents", "/taxii2/cases/")


#: Writes that answer with a status, not intelligence (TAXII 2.1 sections 5.5, 5.7).
WRITES = {
    ("POST", "/taxii2/{api_root}/collections/{collection_id}/objects/"),
    ("DELETE", "/taxii2/{api_root}/collections/{collection_id}/objects/{object_id}/"),
}


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every call into the policy's entry points, wherever they were imported."""
    calls: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for name in ("decide_record", "decide_object", "reader_tags"):
        real = getattr(policy, name)
        monkeypatch.setattr(policy, name, spy(name, real))
        if hasattr(api.indicator_queries, name):
            monkeypatch.setattr(api.indicator_queries, name, spy(name, real))
    yield calls


def seeded(services: Services, client: TestClient, keys: dict[str, Key]) -> dict[str, str]:
    """Two jurisdictions report one domain: a record, its objects, and an alert."""
    hk = indicator(1, pattern="[domain-name:value = 'paths.example.com']", tlp=TLP_GREEN,
                   confidence=95)  # fmt: skip
    gd = indicator(2, pattern="[domain-name:value = 'paths.example.com']", tlp=TLP_GREEN,
                   confidence=90)  # fmt: skip
    for who, obj in (("hk", hk), ("gd", gd)):
        r = client.post(keys[who].inbox + "objects/", headers=keys[who].post,
                        content=orjson.dumps({"objects": [obj]}))  # fmt: skip
        assert r.status_code == 202, r.text
    worker = correlator_for(services)
    worker.drain(services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR))
    book = AlertBook(services.store, services.bus, services.clock, services.sharing)
    AlertEngine(book, load_ruleset()).drain(
        services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)
    )
    for index in (names.INDEX_INDICATORS, names.INDEX_OBJECTS, names.INDEX_ALERTS):
        services.store.refresh(index)
    alerts = client.get("/api/v1/alerts", headers=keys["hk"].bearer).json()["items"]
    assert alerts, "the seed must raise an alert"
    return {
        "key": "domain-name|value|paths.example.com",
        "alert_id": alerts[0]["id"],
        "collection_id": "shared-all",
        "api_root": "api",
        "object_id": hk["id"],
        "format": "csv",
    }


def test_every_route_that_releases_intelligence_consults_the_policy(
    services: Services, keys: dict[str, Key], spied: list[str]
) -> None:
    app = create_app(services)
    with TestClient(app) as client:
        values = seeded(services, client, keys)
        releasing = []
        for route in route_contexts(app):
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if path is None or not methods or path in NO_RELEASE:
                continue
            if path.startswith(CASE_PREFIXES):
                continue
            if path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
                continue
            if "GET" not in methods:
                assert {(m, path) for m in methods} <= WRITES, f"unclassified route {path}"
                continue
            releasing.append(path)
            url = path.replace(":path}", "}").format(**values)
            spied.clear()
            params = {"value": "paths[.]example[.]com"} if path.endswith("/lookup") else None
            # /metrics is an admin's; its content counts come from the admin agency's view
            caller = keys["ops"] if path == "/metrics" else keys["gd"]
            response = client.get(url, params=params, headers=caller.bearer)
            assert response.status_code == 200, (url, response.status_code, response.text)
            assert spied, f"{path} answered without consulting core.policy"
    assert {
        "/api/v1/indicators", "/api/v1/indicators/{key:path}", "/api/v1/lookup",
        "/api/v1/stats/indicators", "/api/v1/alerts", "/api/v1/alerts/{alert_id}",
        "/api/v1/exports/{format}",
        "/taxii2/{api_root}/collections/{collection_id}/objects/",
        "/taxii2/{api_root}/collections/{collection_id}/objects/{object_id}/",
        "/taxii2/{api_root}/collections/{collection_id}/objects/{object_id}/versions/",
        "/taxii2/{api_root}/collections/{collection_id}/manifest/",
    } <= set(releasing)  # fmt: skip
