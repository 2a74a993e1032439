"""Every route of the app, enumerated from ``app.routes``: who may call it (issue 8).

The table ``RULES`` says, for each (method, path template), which roles may
call it and how to fill in a request that targets the caller's own agency.
A route the app serves that is in neither ``RULES`` nor ``EXEMPT`` fails
``test_every_route_is_classified``, so a new unauthenticated route cannot slip in.

Rules read from the route code (api/auth.py, api/admin.py, api/indicators.py,
api/audit.py, api/alerts.py, api/stream.py, api/webhooks.py, api/taxii/*):
- TAXII discovery, API root, collection list and collection resources: any
  authenticated caller (the resource says ``can_read``/``can_write``);
- TAXII reads of a collection: publisher, analyst, admin; TAXII writes and
  deletes: publisher, own inbox only;
- indicator search/detail/lookup/stats, alert list/detail, stream: analyst,
  dashboard, admin; sightings, false-positive marks, alert acknowledge/resolve/comment:
  analyst, admin;
- admin API, audit export, trace, webhook registration, delivery retry: admin;
  delivery list: analyst, admin; ``/api/v1/me``: any authenticated caller.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from core.access import ROLES, bearer_token
from tests.e2e.conftest import TAXII, Key
from tests.security.conftest import route_contexts

ANY = frozenset(ROLES)
TAXII_READ = frozenset({"publisher", "analyst", "admin"})
PUBLISHER = frozenset({"publisher"})
READER = frozenset({"analyst", "dashboard", "admin"})
ACTOR = frozenset({"analyst", "admin"})
ADMIN = frozenset({"admin"})

OWN = "gd-cac"  # the agency of every role key (tests/security/conftest.py ``role_keys``)
INBOX = f"/taxii2/api/collections/inbox-{OWN}"
NO_OBJECT = f"indicator--{uuid.UUID(int=7)}"
NO_KEY = "0123456789abcdef"


@dataclass(frozen=True)
class Call:
    """How to call one route as agency ``OWN``, and which roles may."""

    roles: frozenset[str]
    url: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


_TAXII_POST = {"Content-Type": TAXII}
_EMPTY_ENVELOPE = orjson.dumps({"objects": []})
_NEW_AGENCY = {  # of the role keys' own jurisdiction: admins administer only theirs
    "id": "gd-new",
    "name": "New Guangdong agency",
    "jurisdiction": "GD",
    "identity_id": f"identity--{uuid.UUID(int=99)}",
}

# Joint incident cases (api/incidents.py, api/incidents_taxii.py): read with analyst,
# dashboard or admin; act with analyst or admin; a case nobody shared is a 404.
NO_CASE = f"incident--{uuid.UUID(int=5)}"
_C = "/api/v1/incidents/{case_id}"
_CASE = f"/api/v1/incidents/{NO_CASE}"
_ITEM = str(uuid.UUID(int=6))
_CASES_ROOT = f"/taxii2/cases/collections/{uuid.UUID(int=5)}"
CASE_RULES: dict[tuple[str, str], Call] = {
    ("GET", "/api/v1/incidents"): Call(READER, "/api/v1/incidents"),
    ("POST", "/api/v1/incidents"): Call(ACTOR, "/api/v1/incidents", json={"title": "t"}),
    ("GET", "/api/v1/incidents/templates"): Call(READER, "/api/v1/incidents/templates"),
    ("GET", "/api/v1/incidents/clock-rules"): Call(READER, "/api/v1/incidents/clock-rules"),
    ("GET", "/api/v1/incidents/stream"): Call(
        READER, "/api/v1/incidents/stream", params={"max_seconds": 0.2}
    ),
    ("GET", _C): Call(READER, _CASE),
    ("PATCH", _C): Call(ACTOR, _CASE, json={"severity": "RED"}),
    ("POST", _C + "/accept"): Call(ACTOR, _CASE + "/accept"),
    ("POST", _C + "/decline"): Call(ACTOR, _CASE + "/decline", json={"reason": "no"}),
    ("POST", _C + "/participants"): Call(ACTOR, _CASE + "/participants", json={"agency": OWN}),
    ("POST", _C + "/lead"): Call(ACTOR, _CASE + "/lead", json={"agency": OWN}),
    ("POST", _C + "/links"): Call(ACTOR, _CASE + "/links", json={"alert_id": "no-alert"}),
    ("DELETE", _C + "/links/{item_id}"): Call(ACTOR, f"{_CASE}/links/{_ITEM}"),
    ("POST", _C + "/tasks"): Call(ACTOR, _CASE + "/tasks", json={"title": "t", "assignee": OWN}),
    ("POST", _C + "/tasks/{item_id}/{move}"): Call(ACTOR, f"{_CASE}/tasks/{_ITEM}/accept"),
    ("POST", _C + "/notes"): Call(ACTOR, _CASE + "/notes", json={"text": "n"}),
    ("POST", _C + "/impacts"): Call(
        ACTOR,
        _CASE + "/impacts",
        json={"category": "availability", "details": {"availability_impact": 10}},
    ),
    ("POST", _C + "/requests"): Call(
        ACTOR,
        _CASE + "/requests",
        json={"request_type": "information", "addressee": OWN, "text": "q"},
    ),
    ("POST", _C + "/requests/{item_id}/answer"): Call(
        ACTOR, f"{_CASE}/requests/{_ITEM}/answer", json={"text": "a"}
    ),
    ("GET", _C + "/requests/{item_id}/blocklist"): Call(
        READER, f"{_CASE}/requests/{_ITEM}/blocklist"
    ),
    ("POST", _C + "/entities"): Call(
        ACTOR, _CASE + "/entities", json={"aware_at": "2026-01-01T00:00:00Z"}
    ),
    ("PUT", _C + "/entities/{item_id}/awareness"): Call(
        ACTOR, f"{_CASE}/entities/{_ITEM}/awareness", json={"aware_at": "2026-01-01T00:00:00Z"}
    ),
    ("POST", _C + "/clocks/{clock_id}/reported"): Call(
        ACTOR, f"{_CASE}/clocks/x/reported", json={"reference": "r"}
    ),
    ("GET", _C + "/timeline"): Call(READER, _CASE + "/timeline"),
    ("GET", _C + "/audit"): Call(READER, _CASE + "/audit"),
    ("GET", _C + "/report"): Call(READER, _CASE + "/report"),
    ("GET", _C + "/stix"): Call(READER, _CASE + "/stix"),
    ("GET", _C + "/stream"): Call(READER, _CASE + "/stream", params={"max_seconds": 0.2}),
    ("GET", "/taxii2/cases/"): Call(ANY, "/taxii2/cases/"),
    ("GET", "/taxii2/cases/collections/"): Call(ANY, "/taxii2/cases/collections/"),
    ("GET", "/taxii2/cases/collections/{collection_id}/"): Call(ANY, f"{_CASES_ROOT}/"),
    ("GET", "/taxii2/cases/collections/{collection_id}/objects/"): Call(
        READER, f"{_CASES_ROOT}/objects/"
    ),
    ("GET", "/taxii2/cases/collections/{collection_id}/objects/{object_id}/"): Call(
        READER, f"{_CASES_ROOT}/objects/{NO_OBJECT}/"
    ),
    ("GET", "/taxii2/cases/collections/{collection_id}/manifest/"): Call(
        READER, f"{_CASES_ROOT}/manifest/"
    ),
    ("POST", "/taxii2/cases/collections/{collection_id}/objects/"): Call(
        ACTOR, f"{_CASES_ROOT}/objects/", content=_EMPTY_ENVELOPE, headers=_TAXII_POST
    ),
    ("GET", "/taxii2/cases/status/{status_id}/"): Call(
        ANY, f"/taxii2/cases/status/{uuid.UUID(int=1)}/"
    ),
}

RULES: dict[tuple[str, str], Call] = {
    # TAXII 2.1
    ("GET", "/taxii2/"): Call(ANY, "/taxii2/"),
    ("GET", "/taxii2/{api_root}/"): Call(ANY, "/taxii2/api/"),
    ("GET", "/taxii2/{api_root}/status/{status_id}/"): Call(
        ANY, f"/taxii2/api/status/{uuid.UUID(int=1)}/"
    ),
    ("GET", "/taxii2/{api_root}/collections/"): Call(ANY, "/taxii2/api/collections/"),
    ("GET", "/taxii2/{api_root}/collections/{collection_id}/"): Call(ANY, f"{INBOX}/"),
    ("GET", "/taxii2/{api_root}/collections/{collection_id}/manifest/"): Call(
        TAXII_READ, f"{INBOX}/manifest/"
    ),
    ("GET", "/taxii2/{api_root}/collections/{collection_id}/objects/"): Call(
        TAXII_READ, f"{INBOX}/objects/"
    ),
    ("POST", "/taxii2/{api_root}/collections/{collection_id}/objects/"): Call(
        PUBLISHER, f"{INBOX}/objects/", content=_EMPTY_ENVELOPE, headers=_TAXII_POST
    ),
    ("GET", "/taxii2/{api_root}/collections/{collection_id}/objects/{object_id}/"): Call(
        TAXII_READ, f"{INBOX}/objects/{NO_OBJECT}/"
    ),
    ("DELETE", "/taxii2/{api_root}/collections/{collection_id}/objects/{object_id}/"): Call(
        PUBLISHER, f"{INBOX}/objects/{NO_OBJECT}/"
    ),
    ("GET", "/taxii2/{api_root}/collections/{collection_id}/objects/{object_id}/versions/"): Call(
        TAXII_READ, f"{INBOX}/objects/{NO_OBJECT}/versions/"
    ),
    # admin API
    ("GET", "/api/v1/admin/agencies"): Call(ADMIN, "/api/v1/admin/agencies"),
    ("POST", "/api/v1/admin/agencies"): Call(ADMIN, "/api/v1/admin/agencies", json=_NEW_AGENCY),
    ("GET", "/api/v1/admin/agencies/{agency_id}"): Call(ADMIN, f"/api/v1/admin/agencies/{OWN}"),
    ("POST", "/api/v1/admin/agencies/{agency_id}/credentials"): Call(
        ADMIN, f"/api/v1/admin/agencies/{OWN}/credentials", json={"roles": ["analyst"]}
    ),
    ("POST", "/api/v1/admin/credentials/{key_id}/rotate"): Call(
        ADMIN, f"/api/v1/admin/credentials/{NO_KEY}/rotate"
    ),
    ("POST", "/api/v1/admin/credentials/{key_id}/revoke"): Call(
        ADMIN, f"/api/v1/admin/credentials/{NO_KEY}/revoke"
    ),
    # analyst API
    ("GET", "/api/v1/indicators"): Call(READER, "/api/v1/indicators"),
    ("GET", "/api/v1/indicators/{key:path}"): Call(
        READER, "/api/v1/indicators/ipv4-addr|value|198.51.100.1"
    ),
    ("POST", "/api/v1/indicators/{key:path}/sightings"): Call(
        ACTOR, "/api/v1/indicators/ipv4-addr|value|198.51.100.1/sightings", json={"count": 1}
    ),
    ("POST", "/api/v1/indicators/{key:path}/false-positive"): Call(
        ACTOR,
        "/api/v1/indicators/ipv4-addr|value|198.51.100.1/false-positive",
        json={"reason": "sinkhole"},
    ),
    ("POST", "/api/v1/indicators/{key:path}/expired"): Call(
        ACTOR, "/api/v1/indicators/ipv4-addr|value|198.51.100.1/expired", json={}
    ),
    ("DELETE", "/api/v1/indicators/{key:path}/false-positive"): Call(
        ACTOR, "/api/v1/indicators/ipv4-addr|value|198.51.100.1/false-positive"
    ),
    ("GET", "/api/v1/lookup"): Call(READER, "/api/v1/lookup", params={"value": "198.51.100.1"}),
    ("GET", "/api/v1/stats/indicators"): Call(READER, "/api/v1/stats/indicators"),
    ("GET", "/api/v1/exports/{format}"): Call(READER, "/api/v1/exports/csv"),
    ("GET", "/api/v1/allowlist"): Call(ADMIN, "/api/v1/allowlist"),
    ("POST", "/api/v1/allowlist"): Call(
        ADMIN, "/api/v1/allowlist", json={"entries": [{"kind": "suffix", "value": "own.example"}]}
    ),
    ("DELETE", "/api/v1/allowlist"): Call(
        ADMIN, "/api/v1/allowlist", params={"kind": "suffix", "value": "own.example"}
    ),
    ("GET", "/api/v1/trace/{key:path}"): Call(ADMIN, "/api/v1/trace/ipv4-addr|value|198.51.100.1"),
    ("GET", "/api/v1/audit"): Call(ADMIN, "/api/v1/audit"),
    ("GET", "/api/v1/me"): Call(ANY, "/api/v1/me"),
    # alerts, stream, notifications
    ("GET", "/api/v1/alerts"): Call(READER, "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/{alert_id}"): Call(READER, "/api/v1/alerts/no-such-alert"),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): Call(
        ACTOR, "/api/v1/alerts/no-such-alert/acknowledge", json={"note": "seen"}
    ),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): Call(
        ACTOR, "/api/v1/alerts/no-such-alert/resolve", json={"reason": "done"}
    ),
    ("POST", "/api/v1/alerts/{alert_id}/comments"): Call(
        ACTOR, "/api/v1/alerts/no-such-alert/comments", json={"text": "looking"}
    ),
    ("GET", "/api/v1/stream"): Call(READER, "/api/v1/stream", params={"max_seconds": 0.2}),
    ("PUT", "/api/v1/webhooks/{agency_id}"): Call(
        ADMIN, f"/api/v1/webhooks/{OWN}", json={"url": "http://127.0.0.1:9/hook"}
    ),
    ("GET", "/api/v1/deliveries"): Call(ACTOR, "/api/v1/deliveries"),
    ("POST", "/api/v1/deliveries/{job_id}/retry"): Call(ADMIN, "/api/v1/deliveries/no-job/retry"),
    **CASE_RULES,
    ("GET", "/metrics"): Call(ADMIN, "/metrics"),
}

# Served without credentials on purpose: API documentation, liveness, and the
# static page (it holds no data; every figure it shows comes from /api/v1 with the user's key).
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "/openapi.json",
    ("GET", "/docs"): "/docs",
    ("GET", "/docs/oauth2-redirect"): "/docs/oauth2-redirect",
    ("GET", "/redoc"): "/redoc",
    ("GET", "/healthz"): "/healthz",
    ("GET", "/readyz"): "/readyz",  # problems by stage name only, never error texts
    ("GET", "/ui"): "/ui",
    ("GET", "/ui/"): "/ui/",
    ("GET", "/ui/{name}"): "/ui/app.js",
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for route in route_contexts(app):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or set()
        if path is None:
            continue
        out |= {(m, path) for m in methods if m != "HEAD"}
    return out


def call(client: TestClient, method: str, c: Call, auth: dict[str, str]) -> Response:
    headers = {"Accept": TAXII if c.url.startswith("/taxii2/") else "application/json"}
    response: Response = client.request(
        method,
        c.url,
        json=c.json,
        content=c.content,
        params=c.params,
        headers=headers | c.headers | auth,
    )
    return response


def basic(key_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()}


def test_every_route_is_classified(app: FastAPI) -> None:
    served = served_routes(app)
    unclassified = served - set(RULES) - set(EXEMPT)
    assert not unclassified, (
        f"routes with no access rule in RULES or EXEMPT: {sorted(unclassified)}"
    )
    gone = (set(RULES) | set(EXEMPT)) - served
    assert not gone, f"RULES/EXEMPT name routes the app no longer serves: {sorted(gone)}"


@pytest.mark.parametrize("route", sorted(EXEMPT), ids=lambda r: f"{r[0]} {r[1]}")
def test_exempt_routes_answer_without_credentials(
    client: TestClient, route: tuple[str, str]
) -> None:
    response = client.request(route[0], EXEMPT[route], follow_redirects=False)
    assert response.status_code in (200, 307, 308), (route, response.status_code)


ROUTE_IDS = [f"{m} {p}" for m, p in RULES]


@pytest.mark.parametrize("route", list(RULES), ids=ROUTE_IDS)
def test_no_or_bad_credentials_get_401_with_a_challenge(
    client: TestClient, keys: dict[str, Key], route: tuple[str, str]
) -> None:
    method, _ = route
    c = RULES[route]
    real = keys["ops"]  # an admin key: a wrong secret on it must still be refused
    attempts = {
        "none": {},
        "wrong secret (basic)": basic(real.key_id, real.secret + "x"),
        "wrong secret (bearer)": {
            "Authorization": f"Bearer {bearer_token(real.key_id, 'not-the-secret')}"
        },
        "unknown key": basic(NO_KEY, real.secret),
        "malformed bearer": {"Authorization": "Bearer garbage"},
        "malformed basic": {"Authorization": "Basic %%%"},
        "unknown scheme": {"Authorization": f"Digest {real.secret}"},
    }
    for name, auth in attempts.items():
        response = call(client, method, c, auth)
        assert response.status_code == 401, (name, response.status_code, response.text)
        challenge = response.headers.get("www-authenticate", "")
        assert "Basic" in challenge and "Bearer" in challenge, (name, response.headers)


@pytest.mark.parametrize("route", list(RULES), ids=ROUTE_IDS)
def test_each_role_gets_only_what_it_allows(
    client: TestClient, role_keys: dict[str, Key], route: tuple[str, str]
) -> None:
    method, _ = route
    c = RULES[route]
    for role, key in role_keys.items():
        response = call(client, method, c, {"Authorization": key.bearer["Authorization"]})
        if role in c.roles:
            assert response.status_code not in (401, 403, 429), (role, response.text)
            assert response.status_code < 500, (role, response.status_code, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
