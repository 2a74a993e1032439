"""Credentials (issue 8): hashed at rest, compared in constant time, revocation and
rotation effective on the very next request, expiry, rate limiting of failures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import core.access
from core.clock import FakeClock
from core.names import INDEX_AGENCIES
from core.ports import Query
from records.agencies import AgencyRegistry, AuthenticationFailed
from tests.e2e.conftest import TAXII, Key
from threatbay.bootstrap import Services

ME = "/api/v1/me"


def bearer(key_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {core.access.bearer_token(key_id, secret)}"}


def basic(key_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": TAXII}


def agencies_index(services: Services) -> list[dict[str, Any]]:
    services.store.refresh(INDEX_AGENCIES)
    return [h.doc for h in services.store.search(INDEX_AGENCIES, Query(limit=10_000)).hits]


def test_secrets_are_never_stored_only_salted_hashes(
    client: TestClient, keys: dict[str, Key], services: Services
) -> None:
    admin = bearer(keys["ops"].key_id, keys["ops"].secret)
    # ops administers HK agencies (admin is scoped to its jurisdiction, issue 15)
    issued = client.post(
        "/api/v1/admin/agencies/hk-govcert/credentials", headers=admin, json={"roles": ["analyst"]}
    ).json()
    rotated = client.post(
        f"/api/v1/admin/credentials/{keys['hk'].key_id}/rotate", headers=admin
    ).json()
    secrets = [k.secret for k in keys.values()] + [issued["secret"], rotated["secret"]]
    docs = agencies_index(services)
    creds = [d for d in docs if d.get("kind") == "credential"]
    assert len(creds) == len(keys) + 1
    dump = orjson.dumps(docs).decode()
    for secret in secrets:
        assert secret not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() not in dump  # not an unsalted hash
    salts = [c["salt"] for c in creds]
    assert len(set(salts)) == len(salts), "every credential has its own salt"
    # What an operator reads back carries neither secret, salt nor hash.
    shown = client.get("/api/v1/admin/agencies/hk-govcert", headers=admin).text
    for c in creds:
        assert c["secret_hash"] not in shown and c["salt"] not in shown
    assert issued["secret"] not in shown


def test_secret_comparison_goes_through_hmac_compare_digest(
    services: Services, keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    assert vars(core.access)["hmac"] is hmac  # core.access looks compare_digest up at call time
    monkeypatch.setattr(hmac, "compare_digest", recording)
    registry = AgencyRegistry(services.store, services.clock)
    key = keys["gd"]
    stored = next(c for c in registry.credentials(key.agency.id) if c.key_id == key.key_id)
    assert registry.authenticate(key.key_id, key.secret).agency.id == key.agency.id
    with pytest.raises(AuthenticationFailed):
        registry.authenticate(key.key_id, key.secret[:-1] + "!")
    assert len(calls) == 2, "every secret check, right or wrong, goes through compare_digest"
    assert all(stored.secret_hash in pair for pair in calls)


def test_revocation_is_effective_on_the_next_request(
    client: TestClient, keys: dict[str, Key]
) -> None:
    admin = bearer(keys["ops"].key_id, keys["ops"].secret)
    hk = keys["hk"]  # ops administers HK agencies
    assert client.get(ME, headers=bearer(hk.key_id, hk.secret)).status_code == 200
    assert client.get(hk.inbox, headers=basic(hk.key_id, hk.secret)).status_code == 200
    r = client.post(f"/api/v1/admin/credentials/{hk.key_id}/revoke", headers=admin)
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert client.get(ME, headers=bearer(hk.key_id, hk.secret)).status_code == 401
    assert client.get(hk.inbox, headers=basic(hk.key_id, hk.secret)).status_code == 401
    # The other agencies' keys are untouched.
    gd = keys["gd"]
    assert client.get(ME, headers=bearer(gd.key_id, gd.secret)).status_code == 200


def test_rotation_invalidates_the_old_secret_at_once(
    client: TestClient, keys: dict[str, Key]
) -> None:
    admin = bearer(keys["ops"].key_id, keys["ops"].secret)
    mo = keys["hk"]  # ops administers HK agencies
    assert client.get(ME, headers=bearer(mo.key_id, mo.secret)).status_code == 200
    fresh = client.post(f"/api/v1/admin/credentials/{mo.key_id}/rotate", headers=admin).json()
    assert fresh["key_id"] == mo.key_id and fresh["secret"] != mo.secret
    assert client.get(ME, headers=bearer(mo.key_id, mo.secret)).status_code == 401
    assert client.get(mo.inbox, headers=basic(mo.key_id, mo.secret)).status_code == 401
    me = client.get(ME, headers=bearer(mo.key_id, fresh["secret"]))
    assert me.status_code == 200 and me.json()["agency"]["id"] == "hk-govcert"
    assert client.get(ME, headers={"Authorization": f"Bearer {fresh['bearer']}"}).status_code == 200
    assert client.get(mo.inbox, headers=basic(mo.key_id, fresh["secret"])).status_code == 200


def test_expired_credential_is_refused(
    client: TestClient, keys: dict[str, Key], services: Services, clock: FakeClock
) -> None:
    registry = AgencyRegistry(services.store, services.clock)
    cred, secret = registry.add_credential(
        "hk-govcert", expires_at=clock.now() + timedelta(hours=1)
    )
    assert client.get(ME, headers=bearer(cred.key_id, secret)).status_code == 200
    clock.advance(timedelta(hours=1, seconds=1))
    r = client.get(ME, headers=bearer(cred.key_id, secret))
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    assert client.get(keys["hk"].inbox, headers=basic(cred.key_id, secret)).status_code == 401
    # Issued already expired through the admin API: refused from the first request.
    admin = bearer(keys["ops"].key_id, keys["ops"].secret)
    past = (clock.now() - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    issued = client.post(
        "/api/v1/admin/agencies/hk-govcert/credentials", headers=admin, json={"expires_at": past}
    )
    assert issued.status_code == 201, issued.text
    assert (
        client.get(ME, headers=bearer(issued.json()["key_id"], issued.json()["secret"])).status_code
        == 401
    )


def test_repeated_failures_are_rate_limited_per_address(
    app: FastAPI, client: TestClient, keys: dict[str, Key]
) -> None:
    gd = keys["gd"]
    wrong = bearer(gd.key_id, "wrong-secret")
    statuses = [client.get(ME, headers=wrong).status_code for _ in range(40)]
    assert statuses[0] == 401
    assert 429 in statuses, statuses
    first_429 = statuses.index(429)
    assert first_429 <= 30, f"no 429 within 30 failures: {statuses}"
    assert set(statuses[first_429:]) == {429}, "once limited, stays limited in the burst"
    limited = client.get(ME, headers=wrong)
    assert limited.status_code == 429 and limited.headers.get("retry-after")
    # The TAXII routes answer the limit as a TAXII error.
    taxii = client.get(gd.inbox, headers=basic(gd.key_id, "wrong-secret"))
    assert taxii.status_code == 429 and taxii.json()["http_status"] == "429"
    # A good client at another address is not blocked by this one's failures.
    other = TestClient(app, client=("198.51.100.20", 40000))
    ok = other.get(ME, headers=bearer(keys["hk"].key_id, keys["hk"].secret))
    assert ok.status_code == 200, ok.text
