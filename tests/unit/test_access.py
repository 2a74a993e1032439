"""Agencies, credentials and their string forms (core/access.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from api.auth import credentials_of
from core.access import (
    AccessError,
    Agency,
    bearer_token,
    new_credential,
    parse_bearer,
    with_new_secret,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
HK = Agency("hk-govcert", "GovCERT.HK", "HK", "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff")


def test_secret_is_checked_only_against_its_salted_hash() -> None:
    cred, secret = new_credential(HK, NOW)
    assert cred.matches(secret)
    assert not cred.matches(secret + "x")
    assert secret not in str(cred.to_doc())
    other, secret2 = new_credential(HK, NOW)
    assert other.salt != cred.salt and other.key_id != cred.key_id and secret2 != secret


def test_rotation_keeps_the_key_id_and_kills_the_old_secret() -> None:
    cred, old = new_credential(HK, NOW)
    fresh, new = with_new_secret(cred)
    assert fresh.key_id == cred.key_id
    assert fresh.matches(new) and not fresh.matches(old)


def test_expiry() -> None:
    cred, _ = new_credential(HK, NOW, expires_at=NOW + timedelta(days=1))
    assert not cred.expired(NOW)
    assert cred.expired(NOW + timedelta(days=1))


def test_bearer_and_basic_forms() -> None:
    cred, secret = new_credential(HK, NOW)
    token = bearer_token(cred.key_id, secret)
    assert parse_bearer(token) == (cred.key_id, secret)
    assert credentials_of(f"Bearer {token}") == (cred.key_id, secret)
    basic = base64.b64encode(f"{cred.key_id}:{secret}".encode()).decode()
    assert credentials_of(f"Basic {basic}") == (cred.key_id, secret)
    assert parse_bearer(secret) is None
    assert parse_bearer(f"tb_{cred.key_id}") is None
    assert credentials_of("Digest abc") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "HK GovCERT"},
        {"jurisdiction": "TW"},
        {"identity_id": "organization--f431f809-377b-45e0-aa1c-6a4751cae5ff"},
        {"reliability": "G"},
        {"roles": ("superuser",)},
        {"default_confidence": 101},
    ],
)
def test_malformed_agencies_are_refused(changes: dict[str, object]) -> None:
    fields = {
        "id": "hk-govcert", "name": "GovCERT.HK", "jurisdiction": "HK",
        "identity_id": "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
    } | changes  # fmt: skip
    with pytest.raises(AccessError):
        Agency(**fields)  # type: ignore[arg-type]
