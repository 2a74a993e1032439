"""Sharing decisions on objects and merged records (DOMAIN.md "Sharing")."""

from __future__ import annotations

from typing import Any

from core.crossborder import default_whitelist, whitelist_from_dict
from core.markings import MARKING_ID_BY_TLP
from core.policy import (
    Purpose,
    Reader,
    SharingPolicy,
    audience,
    decide_object,
    decide_record,
    observable_types_of_pattern,
    reader_tags,
    record_audience,
)
from core.provenance import Provenance, Tlp

POLICY = SharingPolicy(default_whitelist())
GD_CAC = Reader("gd-cac", "GD", frozenset({"analyst"}))
GD_CNCERT = Reader("gd-cncert", "GD", frozenset({"analyst"}))
HK_GOVCERT = Reader("hk-govcert", "HK", frozenset({"analyst"}))
HK_ADMIN = Reader("hk-hkcert", "HK", frozenset({"admin"}))


def _prov(agency: str = "gd-cac", jurisdiction: str = "GD", tlp: Tlp = "amber") -> Provenance:
    return Provenance(agency, jurisdiction, "2026-11-27T00:00:00Z", "req-1", tlp=tlp)


def _indicator(tlp: Tlp | None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "id": "indicator--6b1e2c66-0a39-4f4b-9b0b-8d6a8e0d3c11",
        "pattern": "[ipv4-addr:value = '203.0.113.5']",
        "pattern_type": "stix",
        "description": "C2 of the campaign",
    }
    if tlp is not None:
        obj["object_marking_refs"] = [MARKING_ID_BY_TLP[tlp]]
    obj.update(extra)
    return obj


def test_green_infrastructure_crosses_under_the_named_rule() -> None:
    d = decide_object(POLICY, HK_GOVCERT, Purpose.READ, _indicator("green"), _prov(tlp="green"))
    assert (d.outcome, d.rule) == ("allow", "crossborder:gd-to-hk-attacker-infrastructure")


def test_unmarked_is_amber_and_stays_home_by_default() -> None:
    obj = _indicator(None)
    assert decide_object(POLICY, GD_CNCERT, Purpose.READ, obj, _prov()).outcome == "allow"
    d = decide_object(POLICY, HK_GOVCERT, Purpose.READ, obj, _prov())
    assert d.outcome == "deny" and d.view is None


def test_red_only_named_recipients_in_jurisdiction_and_never_on_machine_channels() -> None:
    obj = _indicator("red", x_threatbay_recipients=["gd-cncert", "hk-govcert"])
    prov = _prov(tlp="red")
    assert decide_object(POLICY, GD_CNCERT, Purpose.READ, obj, prov).outcome == "allow"
    assert decide_object(POLICY, GD_CNCERT, Purpose.NOTIFY, obj, prov).outcome == "allow"
    assert decide_object(POLICY, GD_CNCERT, Purpose.TAXII_EXPORT, obj, prov).outcome == "deny"
    assert decide_object(POLICY, GD_CNCERT, Purpose.STREAM, obj, prov).outcome == "deny"
    hk = decide_object(POLICY, HK_GOVCERT, Purpose.READ, obj, prov)
    assert (hk.outcome, hk.rule) == ("deny", "deny:tlp:red:never-crosses")
    other = Reader("gd-other", "GD", frozenset())
    assert decide_object(POLICY, other, Purpose.READ, obj, prov).outcome == "deny"


def test_recipients_from_provenance_count_too() -> None:
    prov = Provenance("gd-cac", "GD", "t", "r", tlp="red", recipients=("gd-cncert",))
    d = decide_object(POLICY, GD_CNCERT, Purpose.READ, _indicator("red"), prov)
    assert d.outcome == "allow"


def test_amber_strict_only_source_and_source_always_sees_its_own() -> None:
    obj = _indicator("amber+strict")
    prov = _prov(tlp="amber+strict")
    assert decide_object(POLICY, GD_CNCERT, Purpose.READ, obj, prov).outcome == "deny"
    own = decide_object(POLICY, GD_CAC, Purpose.TAXII_EXPORT, obj, prov)
    assert (own.outcome, own.rule, own.view) == ("allow", "source-agency", obj)


def test_provenance_stamp_can_only_tighten_the_marking() -> None:
    d = decide_object(POLICY, HK_GOVCERT, Purpose.READ, _indicator("green"), _prov(tlp="amber"))
    assert d.outcome == "deny"


def test_admin_role_does_not_bypass_tlp() -> None:
    d = decide_object(POLICY, HK_ADMIN, Purpose.READ, _indicator("amber"), _prov())
    assert d.outcome == "deny"


def test_non_participant_sees_clear_but_not_green() -> None:
    policy = SharingPolicy(default_whitelist(), frozenset({"gd-cac", "hk-govcert"}))
    outsider = Reader("gd-vendor", "GD", frozenset())
    clear = decide_object(policy, outsider, Purpose.READ, _indicator("clear"), _prov(tlp="clear"))
    assert clear.shown
    d = decide_object(policy, outsider, Purpose.READ, _indicator("green"), _prov(tlp="green"))
    assert (d.outcome, d.rule) == ("deny", "deny:tlp:green:not-participant")


def test_amber_crosses_to_counterpart_with_consent_only() -> None:
    wl = whitelist_from_dict(
        {
            "rules": [
                {
                    "name": "gd-hk-amber",
                    "from": "GD",
                    "to": "HK",
                    "object_types": ["indicator"],
                    "observable_types": ["ipv4-addr"],
                    "amber_counterparts": ["hk-govcert"],
                }
            ]
        }
    )
    policy = SharingPolicy(wl)
    consenting = Reader("hk-govcert", "HK", frozenset(), frozenset({"GD"}))
    obj, prov = _indicator("amber"), _prov()
    assert decide_object(policy, consenting, Purpose.READ, obj, prov).outcome == "allow"
    assert decide_object(policy, HK_GOVCERT, Purpose.READ, obj, prov).outcome == "deny"
    assert decide_object(policy, HK_ADMIN, Purpose.READ, obj, prov).outcome == "deny"
    assert "consent:GD:hk-govcert@HK" in audience(policy, obj, prov)


def test_crossing_redacts_and_lists_what_was_removed() -> None:
    obj = _indicator("green", description="Hit the bank's clerk, Tel: 9123 4567")
    d = decide_object(POLICY, HK_GOVCERT, Purpose.READ, obj, _prov(tlp="green"))
    assert d.outcome == "allow_redacted"
    assert d.view is not None and d.view["description"] == (
        "Hit the bank's clerk, Tel: [REDACTED:phone]"
    )
    assert d.redactions == ("description:phone",)
    same = decide_object(POLICY, GD_CNCERT, Purpose.READ, obj, _prov(tlp="green"))
    assert same.outcome == "allow" and same.view == obj  # no redaction at home


def test_unremovable_personal_data_is_held_not_sent() -> None:
    obj = _indicator("green", description="Victim HKID is A123456(7)")
    d = decide_object(POLICY, HK_GOVCERT, Purpose.NOTIFY, obj, _prov(tlp="green"))
    assert d.outcome == "hold" and d.view is None and d.held


def test_victim_side_objects_never_cross_by_default() -> None:
    identity = {"type": "identity", "id": "identity--1", "name": "Bank", "identity_class": "org"}
    d = decide_object(POLICY, HK_GOVCERT, Purpose.READ, identity, _prov(tlp="clear"))
    assert d.outcome == "deny"
    rel_to_victim = {
        "type": "relationship",
        "id": "relationship--1",
        "relationship_type": "targets",
        "source_ref": "malware--1",
        "target_ref": "identity--1",
        "object_marking_refs": [MARKING_ID_BY_TLP["green"]],
    }
    assert (
        decide_object(POLICY, HK_GOVCERT, Purpose.READ, rel_to_victim, _prov(tlp="green")).outcome
        == "deny"
    )
    rel_infra = dict(
        rel_to_victim,
        relationship_type="indicates",
        source_ref="indicator--1",
        target_ref="malware--1",
    )
    assert decide_object(POLICY, HK_GOVCERT, Purpose.READ, rel_infra, _prov(tlp="green")).shown


def test_granular_red_description_is_cut_for_other_readers() -> None:
    obj = _indicator(
        "green",
        description="internal note",
        granular_markings=[{"marking_ref": MARKING_ID_BY_TLP["red"], "selectors": ["description"]}],
    )
    d = decide_object(POLICY, GD_CNCERT, Purpose.READ, obj, _prov(tlp="green"))
    assert d.outcome == "allow_redacted" and d.view is not None
    assert "description" not in d.view and d.redactions == ("description:granular-tlp",)
    assert obj["description"] == "internal note"


def test_pattern_observable_types() -> None:
    assert observable_types_of_pattern("[network-traffic:dst_ref.value = '203.0.113.5']") == {
        "ipv4-addr"
    }
    assert observable_types_of_pattern(
        "[email-message:from_ref.value = 'a@evil.example'] OR [url:value = 'http://x:80/a']"
    ) == {"email-addr", "url"}
    sha256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
    assert observable_types_of_pattern(f"[file:hashes.'SHA-256' = '{sha256}']") == {"file"}
    # read from the parse: an invalid pattern is never taken for the types it seems to name
    assert observable_types_of_pattern("[file:hashes.'SHA-256' = 'ab12']") == {"pattern:unparsed"}
    assert observable_types_of_pattern(
        "[ipv4-addr:value = '1.2.3.4' AND email-message : to_ref.value = 'v@x.example']"
    ) == {"ipv4-addr", "email-message"}
    assert observable_types_of_pattern("[user-account : user_id = 'chan']") == {"user-account"}
    assert observable_types_of_pattern("[email-message:from_ref.display_name = 'Chan']") == {
        "email-message"
    }
    assert observable_types_of_pattern("[email-message:to_refs[*].value = 'v@x.example']") == {
        "email-message"
    }


def _record() -> dict[str, Any]:
    def source(agency: str, j: str, tlp: str, desc: str, recipients: list[str]) -> dict[str, Any]:
        return {
            "agency": agency,
            "jurisdiction": j,
            "stix_id": f"indicator--{agency}",
            "modified": "2026-11-01T00:00:00Z",
            "confidence": 80,
            "tlp": tlp,
            "tlp_defaulted": False,
            "recipients": recipients,
            "pattern": "[network-traffic:dst_ref.value = '203.0.113.5']",
            "source_path": "network-traffic:dst_ref.value",
            "description": desc,
            "labels": [],
        }

    return {
        "key": "ipv4-addr|value|203.0.113.5",
        "observable_type": "ipv4-addr",
        "value": "203.0.113.5",
        "sources": [
            source("hk-govcert", "HK", "green", "C2 203.0.113.5, victim Tel: 9123 4567", []),
            source("gd-cac", "GD", "amber", "seen in provincial network", []),
            source("mo-caric", "MO", "red", "only for CTT", ["mo-ctt"]),
        ],
        "sightings": [
            {
                "agency": "gd-cncert",
                "jurisdiction": "GD",
                "stix_id": "sighting--1",
                "count": 4,
                "first_seen": "2026-11-02T00:00:00Z",
                "last_seen": "2026-11-03T00:00:00Z",
                "tlp": "green",
            },
        ],
        "score": 73.2,
        "components": {"per_agency": {"hk-govcert": 0.72, "gd-cac": 0.8, "mo-caric": 0.9}},
        "state": "active",
        "agencies": ["gd-cac", "hk-govcert", "mo-caric"],
        "jurisdictions": ["GD", "HK", "MO"],
        "tlp": "red",
    }


def test_record_view_keeps_only_visible_sources_redacted_when_crossing() -> None:
    d = decide_record(POLICY, GD_CNCERT, Purpose.READ, _record())
    assert d.outcome == "allow_redacted" and d.view is not None
    view = d.view
    assert [s["agency"] for s in view["sources"]] == ["hk-govcert", "gd-cac"]
    assert view["sources"][0]["description"] == "C2 203.0.113.5, victim Tel: [REDACTED:phone]"
    assert view["sources"][0]["pattern"].endswith("'203.0.113.5']")
    assert view["tlp"] == "amber"
    assert view["agencies"] == ["gd-cac", "gd-cncert", "hk-govcert"]
    assert view["jurisdictions"] == ["GD", "HK"]
    assert "mo-caric" not in view["components"]["per_agency"]
    assert d.redactions == ("sources[indicator--hk-govcert].description:phone",)


def test_record_denied_when_no_source_visible() -> None:
    reader = Reader("mo-other", "MO", frozenset())
    record = _record()
    record["sources"] = record["sources"][1:]  # amber GD + red MO (not for mo-other)
    d = decide_record(POLICY, reader, Purpose.READ, record)
    assert (d.outcome, d.view) == ("deny", None)
    assert not set(reader_tags(reader)) & set(record_audience(POLICY, record))


def test_red_recipient_sees_record_with_its_red_source() -> None:
    reader = Reader("mo-ctt", "MO", frozenset())
    d = decide_record(POLICY, reader, Purpose.READ, _record())
    assert d.view is not None
    assert {s["agency"] for s in d.view["sources"]} == {"hk-govcert", "mo-caric"}
    assert d.view["tlp"] == "red"
    assert set(reader_tags(reader)) & set(record_audience(POLICY, _record()))
