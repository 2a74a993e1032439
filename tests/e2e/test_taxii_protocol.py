"""TAXII 2.1 protocol behaviour through HTTP (issue 3, checklist items 1, 2 and 6)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.clock import FakeClock
from core.settings import Settings
from records.agencies import AgencyRegistry
from threatbay.bootstrap import Services, build

ROOT = "/taxii2/api/"
TAXII = "application/taxii+json;version=2.1"


def assert_taxii_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == TAXII
    body: dict[str, Any] = resp.json()
    assert body["title"]
    assert int(body["http_status"]) == status
    return body


# ------------------------------------------------------------ media types


def test_every_taxii_response_has_the_taxii_media_type(client: TestClient, keys: Any) -> None:
    h = keys["gd"].basic
    for path in ("/taxii2/", ROOT, ROOT + "collections/", ROOT + "collections/shared-all/"):
        resp = client.get(path, headers=h)
        assert resp.status_code == 200, path
        assert resp.headers["content-type"] == TAXII, path
    assert_taxii_error(client.get("/taxii2/nope/", headers=h), 404)
    assert_taxii_error(client.get(ROOT + "collections/nope/", headers=h), 404)
    assert_taxii_error(client.get(ROOT + "collections/", headers={"Accept": TAXII}), 401)
    assert_taxii_error(client.put(ROOT + "collections/", headers=h), 405)


def test_discovery_and_api_root_describe_the_server(client: TestClient, keys: Any) -> None:
    disc = client.get("/taxii2/", headers=keys["hk"].basic).json()
    assert disc["api_roots"] == ["http://testserver/taxii2/api/"]
    root = client.get(ROOT, headers=keys["hk"].basic).json()
    assert root["versions"] == [TAXII]
    assert root["max_content_length"] == 10 * 1024 * 1024


@pytest.mark.parametrize(
    "accept",
    ["application/json", "application/taxii+json;version=2.0", "text/html", TAXII + ";q=0"],
)
def test_accept_without_taxii_21_is_406(client: TestClient, keys: Any, accept: str) -> None:
    resp = client.get(ROOT, headers=keys["gd"].basic | {"Accept": accept})
    assert_taxii_error(resp, 406)


@pytest.mark.parametrize(
    "accept",
    ["application/taxii+json", "*/*", "application/json, application/taxii+json;version=2.1"],
)
def test_accept_allowing_taxii_21_is_served(client: TestClient, keys: Any, accept: str) -> None:
    resp = client.get(ROOT, headers=keys["gd"].basic | {"Accept": accept})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == TAXII


def test_post_of_another_content_type_is_415(client: TestClient, keys: Any, stix: Any) -> None:
    gd = keys["gd"]
    resp = client.post(
        gd.inbox + "objects/",
        headers=gd.basic | {"Content-Type": "application/json"},
        content=orjson.dumps(stix.bundle(stix.indicator(1))),
    )
    assert_taxii_error(resp, 415)


def test_oversize_body_is_413_and_nothing_is_published(
    client: TestClient, services: Services, keys: Any, stix: Any, drain: Callable[[], int]
) -> None:
    services.settings.taxii.max_content_length = 4000
    gd = keys["gd"]
    body = orjson.dumps(stix.bundle(*[stix.indicator(i) for i in range(20)]))
    assert len(body) > 4000
    assert_taxii_error(client.post(gd.inbox + "objects/", headers=gd.post, content=body), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    assert_taxii_error(client.post(gd.inbox + "objects/", headers=gd.post, content=chunks()), 413)
    assert drain() == 0
    small = orjson.dumps(stix.bundle(stix.indicator(1)))
    ok = client.post(gd.inbox + "objects/", headers=gd.post, content=iter([small]))
    assert ok.status_code == 202 and ok.json()["success_count"] == 1


def test_malformed_json_is_400_and_non_envelope_is_422(client: TestClient, keys: Any) -> None:
    gd = keys["gd"]
    url = gd.inbox + "objects/"
    assert_taxii_error(client.post(url, headers=gd.post, content=b'{"objects": ['), 400)
    assert_taxii_error(client.post(url, headers=gd.post, content=b"[1, 2]"), 422)
    assert_taxii_error(client.post(url, headers=gd.post, content=b'"objects"'), 422)
    assert_taxii_error(client.post(url, headers=gd.post, content=b'{"objects": {}}'), 422)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-5",
        "limit=ten",
        "next=garbage!!",
        "added_after=yesterday",
        "added_after=2026-01-01",
        "match[colour]=red",
        "match[type]=indicator&match[type]=malware",
        "match[version]=2026-13-01T00:00:00Z",
    ],
)
def test_bad_url_parameters_are_400(client: TestClient, keys: Any, query: str) -> None:
    resp = client.get(ROOT + "collections/shared-all/objects/?" + query, headers=keys["gd"].basic)
    assert_taxii_error(resp, 400)


def test_limit_above_the_maximum_is_lowered_not_refused(client: TestClient, keys: Any) -> None:
    resp = client.get(
        ROOT + "collections/shared-all/objects/?limit=999999", headers=keys["gd"].basic
    )
    assert resp.status_code == 200


# ------------------------------------------------------------ authentication


def test_missing_or_bad_credentials_are_401_with_a_challenge(client: TestClient, keys: Any) -> None:
    gd = keys["gd"]
    wrong_secret = base64.b64encode(f"{gd.key_id}:nope".encode()).decode()
    unknown_key = base64.b64encode(f"0123456789abcdef:{gd.secret}".encode()).decode()
    for headers in (
        {"Accept": TAXII},
        {"Accept": TAXII, "Authorization": f"Basic {wrong_secret}"},
        {"Accept": TAXII, "Authorization": f"Basic {unknown_key}"},
        {"Accept": TAXII, "Authorization": "Basic !!!notbase64"},
        {"Accept": TAXII, "Authorization": f"Bearer tb_{gd.key_id}.wrong"},
        {"Accept": TAXII, "Authorization": f"Bearer {gd.secret}"},
    ):
        resp = client.get(ROOT + "collections/", headers=headers)
        assert_taxii_error(resp, 401)
        assert resp.headers["www-authenticate"].startswith('Basic realm="ThreatBay TAXII"')


def test_basic_and_bearer_both_authenticate(client: TestClient, keys: Any) -> None:
    for headers in (keys["hk"].basic, keys["hk"].bearer):
        resp = client.get(ROOT + "collections/", headers=headers)
        assert resp.status_code == 200
        assert any(c["alias"] == "inbox-hk-govcert" for c in resp.json()["collections"])


def test_revoked_rotated_and_expired_credentials_stop_working(
    client: TestClient, services: Services, keys: Any, clock: FakeClock
) -> None:
    registry = AgencyRegistry(services.store, services.clock)
    mo = keys["mo"]
    assert client.get(ROOT, headers=mo.basic).status_code == 200
    registry.revoke(mo.key_id)
    assert_taxii_error(client.get(ROOT, headers=mo.basic), 401)

    hk = keys["hk"]
    _, new_secret = registry.rotate(hk.key_id)
    assert_taxii_error(client.get(ROOT, headers=hk.basic), 401)
    hk.secret = new_secret
    assert client.get(ROOT, headers=hk.basic).status_code == 200

    cred, secret = registry.add_credential("gd-cac", expires_at=clock.now() + timedelta(hours=1))
    token = base64.b64encode(f"{cred.key_id}:{secret}".encode()).decode()
    headers = {"Accept": TAXII, "Authorization": f"Basic {token}"}
    assert client.get(ROOT, headers=headers).status_code == 200
    clock.advance(timedelta(hours=2))
    assert_taxii_error(client.get(ROOT, headers=headers), 401)


def test_repeated_auth_failures_are_rate_limited(client: TestClient, keys: Any) -> None:
    bad = {"Accept": TAXII, "Authorization": f"Bearer tb_{keys['gd'].key_id}.wrong"}
    codes = [client.get(ROOT, headers=bad).status_code for _ in range(25)]
    assert codes[0] == 401
    assert codes[-1] == 429


def test_secrets_are_stored_hashed(services: Services, keys: Any) -> None:
    doc = services.store.get("threatbay-agencies", f"cred:{keys['gd'].key_id}")
    assert doc is not None
    assert keys["gd"].secret not in orjson.dumps(doc.doc).decode()


# ------------------------------------------------------------ collections


def test_collections_list_shared_ones_and_only_my_inbox(client: TestClient, keys: Any) -> None:
    cols = client.get(ROOT + "collections/", headers=keys["gd"].basic).json()["collections"]
    aliases = {c["alias"]: c for c in cols}
    assert set(aliases) == {
        "shared-all",
        "shared-gd",
        "shared-hk",
        "shared-mo",
        "records",
        "inbox-gd-cac",
    }
    assert aliases["inbox-gd-cac"]["can_write"] is True
    assert aliases["shared-all"]["can_write"] is False
    assert all(c["can_read"] for c in cols)
    # ids are stable UUIDs and usable in URLs
    by_id = client.get(
        ROOT + f"collections/{aliases['shared-hk']['id']}/", headers=keys["gd"].basic
    )
    assert by_id.json()["alias"] == "shared-hk"


def test_other_agencies_inbox_is_403_unknown_collection_404(
    client: TestClient, keys: Any, stix: Any
) -> None:
    gd, hk = keys["gd"], keys["hk"]
    assert_taxii_error(client.get(hk.inbox, headers=gd.basic), 403)
    assert_taxii_error(client.get(hk.inbox + "objects/", headers=gd.basic), 403)
    post = client.post(hk.inbox + "objects/", headers=gd.post, json=stix.bundle(stix.indicator(1)))
    assert_taxii_error(post, 403)
    shared = client.post(
        ROOT + "collections/shared-all/objects/", headers=gd.post, json=stix.bundle()
    )
    assert_taxii_error(shared, 403)
    assert_taxii_error(
        client.get(ROOT + "collections/inbox-nobody/objects/", headers=gd.basic), 404
    )


def test_dashboard_role_may_not_read_objects(
    client: TestClient, services: Services, keys: Any
) -> None:
    cred, secret = AgencyRegistry(services.store, services.clock).add_credential(
        "gd-cac", roles=("dashboard",)
    )
    token = base64.b64encode(f"{cred.key_id}:{secret}".encode()).decode()
    headers = {"Accept": TAXII, "Authorization": f"Basic {token}"}
    assert_taxii_error(client.get(ROOT + "collections/shared-all/objects/", headers=headers), 403)


# ------------------------------------------------------------ status


def test_status_survives_a_restart_and_is_private(
    tmp_path: Any, services: Services, client: TestClient, keys: Any, stix: Any, clock: FakeClock
) -> None:
    gd = keys["gd"]
    status = client.post(
        gd.inbox + "objects/", headers=gd.post, json=stix.bundle(stix.indicator(1))
    ).json()
    url = f"{ROOT}status/{status['id']}/"
    services.close()
    again = build(Settings(data_dir=tmp_path), clock=clock)
    try:
        with TestClient(create_app(again)) as fresh:
            resp = fresh.get(url, headers=gd.basic)
            assert resp.status_code == 200
            assert resp.json() == status
            assert_taxii_error(fresh.get(url, headers=keys["hk"].basic), 404)
            assert_taxii_error(fresh.get(f"{ROOT}status/unknown/", headers=gd.basic), 404)
            clock.advance(timedelta(hours=25))
            assert fresh.get(url, headers=gd.basic).status_code == 200
    finally:
        again.close()


def test_health_is_not_taxii(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
