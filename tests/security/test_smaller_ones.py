"""Issue 15 class 8: the smaller ones.

- Failed logins are limited per key id and per source address, and 25 failures
  from one (NAT) address do not lock out the valid keys behind it.
- A custom marking definition posing as TLP:RED fails closed (refused), so its
  object never reaches anyone as AMBER.
- A sighting reported through the API inherits the marking of the indicator it
  names: a sighting of a RED report is not shown to non-recipients.
- Every bad cursor or event id is a 400.
- After a revocation or a TAXII DELETE, the record's state and TAXII's "last"
  version agree.
"""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from tests.security.trust import (  # noqa: F401
    ROOT,
    TLP_GREEN,
    TLP_RED,
    Platform,
    embedded,
    indicator,
    platform,
)


def test_failures_from_one_address_do_not_lock_out_valid_keys(embedded: Platform) -> None:  # noqa: F811
    p = embedded
    wrong = {"Authorization": f"Bearer tb_{p.keys['mo'].key_id}.not-the-secret"}
    codes = [p.client.get("/api/v1/me", headers=wrong).status_code for _ in range(25)]
    assert codes[0] == 401 and codes[-1] == 429, codes
    # The same address, the other valid keys (never used before): still served.
    for who in ("gd", "hk", "hk2"):
        r = p.client.get("/api/v1/me", headers=p.keys[who].bearer)
        assert r.status_code == 200, (who, r.status_code)
    # Unknown keys from that address are cut short; the guessed key stays limited there.
    unknown = {"Authorization": f"Bearer tb_{uuid.uuid4().hex[:16]}.guess"}
    assert p.client.get("/api/v1/me", headers=unknown).status_code == 429
    assert p.client.get("/api/v1/me", headers=wrong).status_code == 429


def test_a_custom_marking_posing_as_red_fails_closed(embedded: Platform) -> None:  # noqa: F811
    p = embedded
    custom = f"marking-definition--{uuid.uuid4()}"
    definition = {"type": "marking-definition", "spec_version": "2.1", "id": custom,
                  "created": "2026-01-01T00:00:00.000Z", "definition_type": "tlp",
                  "definition": {"tlp": "red"}}  # fmt: skip
    secret = indicator("[domain-name:value = 'custom-red.example.org']", tlp=custom)
    status = p.push("gd", [definition, secret])
    assert status["success_count"] == 0, status
    p.correlate()
    for reader in ("gd2", "hk", "mo"):
        assert "custom-red.example.org" not in p.everything(reader)


def test_an_api_sighting_inherits_the_red_marking(embedded: Platform) -> None:  # noqa: F811
    p = embedded
    red = indicator("[domain-name:value = 'sighted-red.example.org']", tlp=TLP_RED,
                    x_threatbay_recipients=["gd-cncert"])  # fmt: skip
    p.push("gd", [red])
    p.correlate()
    key = "domain-name|value|sighted-red.example.org"
    r = p.post("gd2", f"/api/v1/indicators/{key}/sightings", {"count": 3})
    assert r.status_code == 202, r.text
    p.correlate()
    # A GD agency that is no recipient (its admin reads GD's collection) sees nothing of it.
    shared = p.get("gdadmin", f"{ROOT}collections/shared-gd/objects/").text
    assert red["id"] not in shared
    assert "sighting--" not in shared
    # The source still sees the sighting of its report.
    own = p.get("gd", f"/api/v1/indicators/{key}").json()
    assert own["sightings"], own


def _token(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [[None], [], [1, 2, 3, 4, 5, 6], {"a": 1}, "x" * 5000])
@pytest.mark.parametrize("path", ["/api/v1/indicators", "/api/v1/alerts", "/api/v1/deliveries"])
def test_every_bad_cursor_is_a_400(embedded: Platform, path: str, cursor: object) -> None:  # noqa: F811
    token = cursor if isinstance(cursor, str) else _token(cursor)
    r = embedded.get("gd", path, cursor=token)
    assert r.status_code == 400, (path, cursor, r.status_code, r.text)


@pytest.mark.parametrize("event_id", ["9" * 400, "-1", "1e5", "0x10", "abc"])
def test_every_bad_event_id_is_a_400(embedded: Platform, event_id: str) -> None:  # noqa: F811
    r = embedded.client.get(
        "/api/v1/stream",
        params={"max_seconds": 1},
        headers=embedded.keys["gd"].bearer | {"Last-Event-ID": event_id},
    )
    assert r.status_code == 400, (event_id, r.status_code)


def _last(p: Platform, who: str, stix_id: str) -> list[dict[str, object]]:
    r = p.get(who, f"{ROOT}collections/shared-all/objects/{stix_id}/")
    return list(r.json().get("objects", [])) if r.status_code == 200 else []


def test_record_state_follows_revocation_and_delete(platform: Platform) -> None:  # noqa: F811
    p = platform
    domain = "revoked-then-deleted.example.org"
    key = f"domain-name|value|{domain}"
    v1 = indicator(f"[domain-name:value = '{domain}']")
    v2 = v1 | {"modified": "2026-02-10T00:00:00.000Z", "revoked": True}
    v3 = v1 | {"modified": "2026-02-20T00:00:00.000Z"}  # after a revocation: refused
    p.push("gd", [v1])
    p.push("gd", [v2])
    p.correlate()
    status = p.push("gd", [v3])
    assert status["success_count"] == 0 and "revocation is permanent" in str(status)
    assert [o.get("revoked") for o in _last(p, "mo", v1["id"])] == [True]
    assert p.get("gd", f"/api/v1/indicators/{key}").json()["state"] == "revoked"
    # DELETE every version: the object is gone and so is the record's report.
    r = p.client.delete(f"{ROOT}collections/inbox-gd-cac/objects/{v1['id']}/",
                        headers=p.keys["gd"].basic)  # fmt: skip
    assert r.status_code == 200, r.text
    p.correlate()
    assert _last(p, "mo", v1["id"]) == []
    after = p.get("gd", f"/api/v1/indicators/{key}")
    assert after.status_code == 404 or after.json()["state"] == "revoked", after.text


def test_a_deleted_indicator_is_withdrawn_from_its_records(platform: Platform) -> None:  # noqa: F811
    p = platform
    domain = "deleted-report.example.org"
    key = f"domain-name|value|{domain}"
    v1 = indicator(f"[domain-name:value = '{domain}']")
    v2 = v1 | {"modified": "2026-02-10T00:00:00.000Z", "revoked": True}
    p.push("gd", [v1, v2])
    p.correlate()
    assert p.get("mo", f"/api/v1/indicators/{key}").json()["state"] == "revoked"
    inbox = f"{ROOT}collections/inbox-gd-cac/objects/{v1['id']}/"
    # The revocation (the latest version) deleted: TAXII's last is v1 again, and so is the record.
    only_latest = p.client.delete(
        inbox, params={"match[version]": "2026-02-10T00:00:00.000Z"}, headers=p.keys["gd"].basic
    )
    assert only_latest.status_code == 200, only_latest.text
    p.correlate()
    assert [o.get("modified") for o in _last(p, "mo", v1["id"])] == [v1["modified"]]
    record = p.get("mo", f"/api/v1/indicators/{key}").json()
    assert record["state"] == "active", record
    assert [s["modified"] for s in record["sources"]] == [v1["modified"]]
    # Every version deleted: the report is withdrawn, and stays so.
    assert p.client.delete(inbox, headers=p.keys["gd"].basic).status_code == 200
    p.correlate()
    assert _last(p, "mo", v1["id"]) == []
    assert p.get("mo", f"/api/v1/indicators/{key}").json()["state"] == "revoked"
    again = p.push("gd", [v1 | {"modified": "2026-03-01T00:00:00.000Z"}])
    assert again["success_count"] == 0, again
