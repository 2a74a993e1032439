"""Issue 15 class 6: a STIX id belongs to the agency that first pushed it.

Another agency's push of that id (any version, a revocation), a TAXII DELETE of
it, an ``identity`` taking a member agency's identity id, a ``created_by_ref``
naming another agency's identity: each is a per-object failure, with ids
compared in lower case. Two first pushes racing past ingest are settled where
the correlator stores objects: the later one is dead-lettered and its TAXII
status turns into a failure.
"""

from __future__ import annotations

from typing import Any

from core import names
from tests.security.trust import (  # noqa: F401
    ROOT,
    TLP_GREEN,
    Platform,
    embedded,
    indicator,
    platform,
)

GD_DOMAIN = "gd-owned-c2.example.org"


def _taxii_objects(p: Platform, who: str, collection: str) -> list[dict[str, Any]]:
    response = p.get(who, f"{ROOT}collections/{collection}/objects/")
    assert response.status_code == 200, response.text
    return list(response.json().get("objects", []))


def _failures(status: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["message"] for f in status.get("failures", [])}


def test_another_agency_cannot_revoke_or_version_an_id(platform: Platform) -> None:  # noqa: F811
    p = platform
    gd = indicator(f"[domain-name:value = '{GD_DOMAIN}']")
    assert p.push("gd", [gd])["success_count"] == 1
    p.correlate()
    hijack = gd | {"modified": "2026-02-20T00:00:00.000Z", "revoked": True}
    upper = gd | {"id": gd["id"].upper().replace("INDICATOR", "indicator"),
                  "modified": "2026-02-21T00:00:00.000Z", "revoked": True}  # fmt: skip
    status = p.push("hk", [hijack, upper])
    assert status["success_count"] == 0, status
    assert all("belongs to another agency" in m for m in _failures(status).values())
    p.correlate()
    for reader in ("gd", "gd2", "hk", "mo"):
        seen = [o for o in _taxii_objects(p, reader, "shared-all") if o["id"] == gd["id"]]
        assert seen == [gd], f"{reader} sees {seen}"
    assert [o["id"] for o in _taxii_objects(p, "gd", "inbox-gd-cac")] == [gd["id"]]
    record = p.get("mo", f"/api/v1/indicators/domain-name|value|{GD_DOMAIN}").json()
    assert record["state"] != "revoked"


def test_identities_are_not_taken_whatever_the_case(platform: Platform) -> None:  # noqa: F811
    p = platform
    gd_identity = p.keys["gd"].agency.identity_id
    fake = {"type": "identity", "spec_version": "2.1", "id": gd_identity,
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "name": "Guangdong CAC (really HK)", "identity_class": "organization"}  # fmt: skip
    upper = "identity--" + gd_identity.split("--")[1].upper()
    shouty = fake | {"id": upper}
    forged = indicator("[domain-name:value = 'forged.example.org']", created_by_ref=upper)
    status = p.push("hk", [fake, shouty, forged])
    assert status["success_count"] == 0, status
    why = _failures(status)
    assert "identity of agency gd-cac" in why[fake["id"]]
    assert "identity of agency gd-cac" in why[shouty["id"]]
    assert "identity of agency gd-cac" in why[forged["id"]]


def test_a_race_of_two_first_pushes_is_settled_by_the_correlator(platform: Platform) -> None:  # noqa: F811
    p = platform
    gd = indicator(f"[domain-name:value = '{GD_DOMAIN}']")
    hk = gd | {"pattern": "[domain-name:value = 'hk-claims-it.example.org']",
               "modified": "2026-02-05T00:00:00.000Z"}  # fmt: skip
    assert p.push("gd", [gd])["success_count"] == 1
    hk_status = p.push("hk", [hk])  # before the correlator ran: ingest cannot know yet
    assert hk_status["success_count"] == 1
    p.correlate()
    later = p.get("hk", f"{ROOT}status/{hk_status['id']}/").json()
    assert later["success_count"] == 0 and later["failure_count"] == 1, later
    assert "belongs to another agency" in later["failures"][0]["message"]
    seen = [o for o in _taxii_objects(p, "mo", "shared-all") if o["id"] == gd["id"]]
    assert seen == [gd]
    assert p.get("hk", "/api/v1/lookup", value="hk-claims-it.example.org").json()["records"] == []
    dlq = p.services.bus.consumer(names.TOPIC_DLQ, "test-dlq", from_beginning=True)
    try:
        dead = [m for _ in range(10) for m in dlq.poll(max_records=100, timeout_s=0.3)]
    finally:
        dlq.close()
    assert any("belongs to another agency" in m.headers.get("reason", "") for m in dead)


def test_a_taxii_delete_by_another_agency_is_refused(platform: Platform) -> None:  # noqa: F811
    p = platform
    gd = indicator(f"[domain-name:value = '{GD_DOMAIN}']")
    p.push("gd", [gd])
    p.correlate()
    key = p.keys["hk"]
    for coll in ("inbox-hk-govcert", "inbox-gd-cac", "shared-all"):
        r = p.client.delete(f"{ROOT}collections/{coll}/objects/{gd['id']}/", headers=key.basic)
        assert r.status_code in (403, 404), (coll, r.status_code, r.text)
    assert [o["id"] for o in _taxii_objects(p, "gd", "inbox-gd-cac")] == [gd["id"]]


def test_ids_stored_before_owner_records_keep_their_first_pusher(embedded: Platform) -> None:  # noqa: F811
    """Data from before this rule: its first pusher is read from the stored versions."""
    from core.envelope import Accepted
    from core.provenance import Provenance
    from records.objects import store_objects

    p = embedded
    gd = indicator(f"[domain-name:value = '{GD_DOMAIN}']")
    prov = Provenance("gd-cac", "GD", "2026-02-01T00:00:00.000000Z", "before-owners", tlp="green")
    store_objects(p.services.store, [Accepted(gd, prov)], p.services.clock)
    hijack = gd | {"modified": "2026-02-20T00:00:00.000Z", "revoked": True}
    assert p.push("hk", [hijack])["success_count"] == 1  # no owner record to refuse it yet
    p.correlate()
    seen = [o for o in _taxii_objects(p, "mo", "shared-all") if o["id"] == gd["id"]]
    assert seen == [gd]


def test_an_exact_reshare_of_another_agencys_object_is_a_success_that_changes_nothing(
    platform: Platform,  # noqa: F811
) -> None:
    """Agencies re-sharing a producer's feed all carry its identity and extension definitions.

    An exact copy of a stored version is answered as a success and stores nothing; a copy
    differing in any property (the same version) and a later version stay refused.
    """
    p = platform
    producer = {"type": "identity", "spec_version": "2.1",
                "id": "identity--0b7f1c4e-8d3b-5e5a-9c61-3f0d6c2b7a10",
                "created": "2025-06-01T00:00:00.000Z", "modified": "2025-06-01T00:00:00.000Z",
                "name": "A public research lab", "identity_class": "organization"}  # fmt: skip
    assert p.push("gd", [producer])["success_count"] == 1
    p.correlate()
    status = p.push("hk", [dict(producer)])
    assert status["success_count"] == 1 and status["failure_count"] == 0, status
    renamed = producer | {"name": "A public research lab (now ours)"}
    later = producer | {"modified": "2026-06-01T00:00:00.000Z"}
    status = p.push("mo", [renamed, later])
    assert status["success_count"] == 0, status
    assert all("belongs to another agency" in m for m in _failures(status).values())
    p.correlate()
    for reader in ("gd", "gd2"):
        seen = [o for o in _taxii_objects(p, reader, "shared-all") if o["id"] == producer["id"]]
        assert seen == [producer], f"{reader} sees {seen}"
    assert producer["id"] not in {o["id"] for o in _taxii_objects(p, "hk", "inbox-hk-govcert")}
