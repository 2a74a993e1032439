"""Operators manage agencies and credentials: admin API and ``threatbay agency`` CLI."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from core.settings import Settings
from threatbay.bootstrap import build
from threatbay.cli_agency import agency_app

TAXII = "application/taxii+json;version=2.1"
ADMIN = "/api/v1/admin"


def basic(key_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": TAXII}


def test_admin_api_adds_agency_issues_rotates_and_revokes(client: TestClient, keys: Any) -> None:
    ops = keys["ops"].bearer
    new = {
        "id": "hk-hkcert", "name": "HKCERT", "jurisdiction": "HK",
        "identity_id": "identity--2b9c4a5e-3f51-4d1e-9d0a-0f3c8c7b6a11", "reliability": "B",
    }  # fmt: skip
    assert client.post(f"{ADMIN}/agencies", json=new, headers=ops).status_code == 201
    assert client.post(f"{ADMIN}/agencies", json=new, headers=ops).status_code == 409
    issued = client.post(f"{ADMIN}/agencies/hk-hkcert/credentials", json={}, headers=ops).json()
    h = basic(issued["key_id"], issued["secret"])
    assert client.get("/taxii2/api/collections/inbox-hk-hkcert/", headers=h).status_code == 200

    shown = client.get(f"{ADMIN}/agencies/hk-hkcert", headers=ops).json()
    assert shown["credentials"][0]["key_id"] == issued["key_id"]
    assert issued["secret"] not in str(shown)

    rotated = client.post(f"{ADMIN}/credentials/{issued['key_id']}/rotate", headers=ops).json()
    assert client.get("/taxii2/api/", headers=h).status_code == 401
    h = basic(rotated["key_id"], rotated["secret"])
    assert client.get("/taxii2/api/", headers=h).status_code == 200
    client.post(f"{ADMIN}/credentials/{issued['key_id']}/revoke", headers=ops)
    assert client.get("/taxii2/api/", headers=h).status_code == 401


def test_admin_api_needs_the_admin_role(client: TestClient, keys: Any) -> None:
    assert client.get(f"{ADMIN}/agencies", headers=keys["gd"].basic).status_code == 403
    assert client.get(f"{ADMIN}/agencies").status_code == 401
    listed = client.get(f"{ADMIN}/agencies", headers=keys["ops"].basic).json()
    # an admin lists the agencies of its own jurisdiction only (ops is HK; issue 15)
    assert {a["agency_id"] for a in listed} == {"hk-govcert", "ops"}


def test_cli_add_prints_the_credential_once_and_it_works(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path)]
    out = runner.invoke(
        agency_app,
        ["add", "mo-caric", "--name", "CARIC", "--jurisdiction", "MO", "--reliability", "B", *args],
    )
    assert out.exit_code == 0, out.output
    key_id = re.search(r"key id:\s+(\S+)", out.output)
    secret = re.search(r"secret:\s+(\S+)", out.output)
    assert key_id and secret
    listing = runner.invoke(agency_app, ["list", *args])
    assert "mo-caric" in listing.output and key_id.group(1) in listing.output
    assert secret.group(1) not in listing.output

    services = build(Settings(data_dir=tmp_path))
    try:
        with TestClient(create_app(services)) as c:
            h = basic(key_id.group(1), secret.group(1))
            assert c.get("/taxii2/api/collections/inbox-mo-caric/", headers=h).status_code == 200
            assert runner.invoke(agency_app, ["revoke", key_id.group(1), *args]).exit_code == 0
            assert c.get("/taxii2/api/", headers=h).status_code == 401
    finally:
        services.close()
    bad = runner.invoke(agency_app, ["rotate", "0000000000000000", *args])
    assert bad.exit_code == 1
