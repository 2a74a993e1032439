"""Every way a SIEM may present a ThreatBay key, through HTTP (issue 18, README "The API").

- ``Authorization: Basic base64(key id:secret)`` (any case of ``Basic``; MISP sends ``basic``);
- ``Authorization: Bearer tb_<key id>.<secret>``;
- ``Authorization: Token tb_<key id>.<secret>`` (taxii2-client ``TokenAuth``, OpenCTI's
  connector ``use_token``, Elastic ``key_type: Token``);
- an API-key header, ``X-API-Key: tb_<key id>.<secret>`` by default
  (``THREATBAY_API__KEY_HEADER``; OpenCTI's connector ``use_apikey`` sends a header named by
  its operator); an empty setting turns it off.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.access import bearer_token
from threatbay.bootstrap import Services

ROOT = "/taxii2/api/"
TAXII = "application/taxii+json;version=2.1"


def token_of(key: Any) -> str:
    return bearer_token(key.key_id, key.secret)


def collections(client: TestClient, headers: dict[str, str]) -> Any:
    return client.get(ROOT + "collections/", headers={"Accept": TAXII} | headers)


@pytest.mark.parametrize("scheme", ["Token", "token", "TOKEN"])
def test_token_scheme_authenticates_like_bearer(client: TestClient, keys: Any, scheme: str) -> None:
    resp = collections(client, {"Authorization": f"{scheme} {token_of(keys['hk'])}"})
    assert resp.status_code == 200, resp.text
    assert any(c["alias"] == "inbox-hk-govcert" for c in resp.json()["collections"])


def test_lowercase_basic_as_misp_sends_it(client: TestClient, keys: Any) -> None:
    gd = keys["gd"]
    b64 = base64.b64encode(f"{gd.key_id}:{gd.secret}".encode()).decode()
    assert collections(client, {"Authorization": f"basic {b64}"}).status_code == 200


def test_api_key_header_authenticates(client: TestClient, keys: Any) -> None:
    resp = collections(client, {"X-API-Key": token_of(keys["mo"])})
    assert resp.status_code == 200, resp.text
    assert any(c["alias"] == "inbox-mo-caric" for c in resp.json()["collections"])


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Token tb_0123456789abcdef.wrong"},
        {"Authorization": "Token not-a-key"},
        {"Authorization": "Token "},
        {"X-API-Key": "tb_0123456789abcdef.wrong"},
        {"X-API-Key": "not-a-key"},
    ],
)
def test_bad_token_or_api_key_is_401_with_a_challenge(
    client: TestClient, keys: Any, headers: dict[str, str]
) -> None:
    resp = collections(client, headers)
    assert resp.status_code == 401 and resp.headers["content-type"] == TAXII
    assert "Basic" in resp.headers["www-authenticate"]


def test_a_present_authorization_header_decides_over_the_api_key(
    client: TestClient, keys: Any
) -> None:
    """A wrong Authorization is never rescued by a good API key sent with it."""
    resp = collections(
        client,
        {"Authorization": "Token tb_0123456789abcdef.wrong", "X-API-Key": token_of(keys["gd"])},
    )
    assert resp.status_code == 401


def test_the_api_key_header_name_is_a_setting(
    client: TestClient, services: Services, keys: Any
) -> None:
    services.settings.api.key_header = "X-OpenCTI-Taxii-Key"
    token = token_of(keys["hk"])
    assert collections(client, {"X-OpenCTI-Taxii-Key": token}).status_code == 200
    assert collections(client, {"X-API-Key": token}).status_code == 401


def test_an_empty_api_key_header_setting_turns_it_off(
    client: TestClient, services: Services, keys: Any
) -> None:
    services.settings.api.key_header = ""
    token = token_of(keys["gd"])
    assert collections(client, {"X-API-Key": token}).status_code == 401
    assert collections(client, {"Authorization": f"Token {token}"}).status_code == 200
