"""Randomised check of core.policy against an independent oracle written from DOMAIN.md.

The oracle below never calls core.policy, core.markings or core.crossborder for its
answers: marking ids, TLP order, whitelists and object types are plain tables here.
Whitelists are fed to the module through whitelist_from_dict (the operator's form).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from core.crossborder import whitelist_from_dict
from core.policy import (
    Purpose,
    Reader,
    SharingPolicy,
    audience,
    decide_object,
    decide_record,
    reader_tags,
    record_audience,
)
from core.provenance import Provenance

# --- oracle tables (copied from DOMAIN.md, not imported) --------------------------------

MARKING_TLP = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "clear",  # TLP1 WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "clear",  # TLP2
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "green",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "amber",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "amber+strict",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "red",
}
NON_TLP_MARKING = "marking-definition--1d5e1e4c-0e47-4d6e-9a3c-2d1f2c3b4a5e"
RANK = {"clear": 0, "green": 1, "amber": 2, "amber+strict": 3, "red": 4}

AGENCIES = {
    "gd-cac": "GD",
    "gd-cncert": "GD",
    "hk-govcert": "HK",
    "hk-hkcert": "HK",
    "mo-caric": "MO",
    "mo-ctt": "MO",
    "hk-outsider": "HK",  # registered reader, not a participating agency in some variants
}
JS = ("GD", "HK", "MO")
PURPOSES = list(Purpose)

INFRA_OBJECTS = ["indicator", "sighting", "malware", "attack-pattern", "relationship", "ipv4-addr"]
INFRA_OBSERVABLES = ["ipv4-addr", "domain-name", "url", "file", "email-addr"]

# Whitelist variants: the module's file form, and the oracle's plain table of the same.
WHITELISTS: dict[str, tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]] = {}


def _variant(name: str, rules: list[dict[str, Any]]) -> None:
    table = {
        (r["from"], r["to"]): {
            "objects": set(r["object_types"]),
            "observables": set(r.get("observable_types", [])),
            "amber": {
                a: r.get("amber_requires_consent", True) for a in r.get("amber_counterparts", [])
            },
        }
        for r in rules
    }
    WHITELISTS[name] = ({"version": 1, "rules": rules}, table)


_variant("empty", [])
_variant(
    "infra-everywhere",
    [
        {
            "name": f"{f}-{t}",
            "from": f,
            "to": t,
            "object_types": INFRA_OBJECTS,
            "observable_types": INFRA_OBSERVABLES,
        }
        for f in JS
        for t in JS
        if f != t
    ],
)
_variant(
    "amber-counterparts",
    [
        {
            "name": "gd-hk",
            "from": "GD",
            "to": "HK",
            "object_types": INFRA_OBJECTS,
            "observable_types": INFRA_OBSERVABLES,
            "amber_requires_consent": True,
            "amber_counterparts": ["hk-govcert", "hk-outsider"],
        },
        {
            "name": "hk-mo",
            "from": "HK",
            "to": "MO",
            "object_types": INFRA_OBJECTS,
            "observable_types": INFRA_OBSERVABLES,
            "amber_requires_consent": False,
            "amber_counterparts": ["mo-caric"],
        },
        {
            "name": "mo-gd",
            "from": "MO",
            "to": "GD",
            "object_types": ["indicator"],
            "observable_types": ["ipv4-addr"],
            "amber_counterparts": ["gd-cac"],
        },
    ],
)
_variant(
    "narrow",
    [
        {
            "name": "hk-gd-ip",
            "from": "HK",
            "to": "GD",
            "object_types": ["indicator", "sighting"],
            "observable_types": ["ipv4-addr"],
        }
    ],
)

# Object templates: (object, the oracle's crossing facts: object type and observables).
TEMPLATES: list[tuple[dict[str, Any], str, set[str]]] = [
    (
        {
            "type": "indicator",
            "pattern": "[ipv4-addr:value = '203.0.113.5']",
            "pattern_type": "stix",
        },
        "indicator",
        {"ipv4-addr"},
    ),
    (
        {"type": "indicator", "pattern": "[domain-name:value = 'evil.example']"},
        "indicator",
        {"domain-name"},
    ),
    (
        {
            "type": "indicator",
            "pattern": "[email-message:from_ref.value = 'hr@evil.example']",
            "pattern_type": "stix",
        },
        "indicator",
        {"email-addr"},
    ),
    (
        {"type": "indicator", "pattern": "[user-account:user_id = 'jdoe']", "pattern_type": "stix"},
        "indicator",
        {"user-account"},
    ),
    ({"type": "malware", "name": "ShadowPad", "is_family": True}, "malware", set()),
    ({"type": "identity", "name": "Bank", "identity_class": "organization"}, "identity", set()),
    ({"type": "ipv4-addr", "value": "198.51.100.7"}, "ipv4-addr", {"ipv4-addr"}),
    ({"type": "email-addr", "value": "someone@corp.example"}, "email-addr", {"email-addr"}),
    (
        {"type": "indicator", "pattern": "rule x { condition: true }", "pattern_type": "yara"},
        "indicator",
        {"a-yara-rule"},  # only stix patterns have whitelisted observable types
    ),
]
# Relationships cross only when both ends' types may cross too.
RELATIONSHIPS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    (
        {
            "type": "relationship",
            "relationship_type": "indicates",
            "source_ref": "indicator--6b1e2c66-0a39-4f4b-9b0b-8d6a8e0d3c11",
            "target_ref": "malware--2b1e2c66-0a39-4f4b-9b0b-8d6a8e0d3c11",
        },
        ("indicator", "malware"),
    ),
    (
        {
            "type": "relationship",
            "relationship_type": "targets",
            "source_ref": "malware--2b1e2c66-0a39-4f4b-9b0b-8d6a8e0d3c11",
            "target_ref": "identity--3b1e2c66-0a39-4f4b-9b0b-8d6a8e0d3c11",
        },
        ("malware", "identity"),
    ),
]

# Free text with a known verdict when it crosses a border.
TEXTS = {
    "clean": "C2 server of the campaign, seen beaconing to 203.0.113.5 on port 8443",
    "redactable": "Reported by the victim bank, contact Tel: 9876 5432",
    "hold": "Victim HKID is A123456(7)",
}
TEXT_OUTCOME = {"clean": "allow", "redactable": "allow_redacted", "hold": "hold"}


@dataclass
class Case:
    src: str
    tlp_marks: list[str]
    recipients: list[str]
    text: str


def oracle_tlp(marks: list[str]) -> tuple[str, bool]:
    levels = [MARKING_TLP[m] for m in marks if m in MARKING_TLP]
    if not levels:
        return "amber", True
    return max(levels, key=RANK.__getitem__), False


def oracle_visible(
    reader: Reader,
    purpose: Purpose,
    src: str,
    tlp: str,
    recipients: set[str],
    obj_type: str,
    observables: set[str],
    wl: dict[tuple[str, str], dict[str, Any]],
    participants: set[str] | None,
    extra_objects: tuple[str, ...] = (),
) -> bool:
    """DOMAIN.md Sharing, as a table walk."""
    if reader.agency_id == src:
        return True
    src_j = AGENCIES[src]
    cross = reader.jurisdiction != src_j
    if tlp == "red":
        return (
            not cross
            and reader.agency_id in recipients
            and purpose in (Purpose.READ, Purpose.NOTIFY)
        )
    if tlp == "amber+strict":
        return False
    if tlp in ("green", "amber") and participants is not None:
        if reader.agency_id not in participants:
            return False
    if not cross:
        return True
    rule = wl.get((src_j, reader.jurisdiction))
    if rule is None:
        return False
    if obj_type not in rule["objects"] or not observables <= rule["observables"]:
        return False
    if any(t not in rule["objects"] for t in extra_objects):
        return False
    if tlp == "amber":
        if reader.agency_id not in rule["amber"]:
            return False
        if rule["amber"][reader.agency_id] and src_j not in reader.crossborder_consent:
            return False
    return True


def _reader(rng: random.Random) -> Reader:
    agency = rng.choice(list(AGENCIES))
    consent = frozenset(j for j in JS if rng.random() < 0.4)
    roles = frozenset(rng.sample(["analyst", "admin", "soc"], k=rng.randint(0, 2)))
    return Reader(agency, AGENCIES[agency], roles, consent)


def _marks(rng: random.Random) -> list[str]:
    ids = list(MARKING_TLP)
    n = rng.choice([0, 0, 1, 1, 1, 2, 3])
    marks = rng.sample(ids, k=n)
    if rng.random() < 0.2:
        marks.append(NON_TLP_MARKING)
    return marks


def _participants(rng: random.Random) -> set[str] | None:
    return None if rng.random() < 0.5 else {a for a in AGENCIES if a != "hk-outsider"}


def _check_tags(purpose: Purpose, outcome: str, tags: list[str], reader: Reader) -> None:
    intersects = bool(set(tags) & set(reader_tags(reader)))
    if outcome != "deny":
        assert intersects, (outcome, tags, reader_tags(reader))
    if purpose is Purpose.READ:
        assert intersects == (outcome != "deny"), (outcome, tags, reader_tags(reader))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decide_object_matches_oracle(seed: int) -> None:
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    for i in range(4000):
        wl_name = rng.choice(list(WHITELISTS))
        wl_dict, wl_table = WHITELISTS[wl_name]
        participants = _participants(rng)
        policy = SharingPolicy(
            whitelist_from_dict(wl_dict),
            frozenset(participants) if participants is not None else None,
        )
        extra: tuple[str, ...] = ()
        if rng.random() < 0.15:
            template, extra = rng.choice(RELATIONSHIPS)
            obj_type, observables = "relationship", set[str]()
        else:
            template, obj_type, observables = rng.choice(TEMPLATES)
        src = rng.choice([a for a in AGENCIES if a != "hk-outsider"])
        marks = _marks(rng)
        recipients = set(rng.sample(list(AGENCIES), k=rng.randint(0, 3)))
        text_kind = rng.choice(list(TEXTS))
        obj = dict(template)
        obj["id"] = f"{obj['type']}--00000000-0000-4000-8000-{i:012d}"
        obj["description"] = TEXTS[text_kind]
        if marks:
            obj["object_marking_refs"] = marks
        if recipients:
            obj["x_threatbay_recipients"] = sorted(recipients)
        tlp, defaulted = oracle_tlp(marks)
        prov = Provenance(
            agency=src,
            jurisdiction=AGENCIES[src],
            received_at="2026-11-27T00:00:00Z",
            request_id=f"r{i}",
            tlp=tlp,  # type: ignore[arg-type]
            tlp_defaulted=defaulted,
        )
        reader = _reader(rng)
        purpose = rng.choice(PURPOSES)

        visible = oracle_visible(
            reader,
            purpose,
            src,
            tlp,
            recipients,
            obj_type,
            observables,
            wl_table,
            participants,
            extra_objects=extra,
        )
        crossing = reader.agency_id != src and reader.jurisdiction != AGENCIES[src]
        if not visible:
            expected = "deny"
        elif crossing:
            expected = TEXT_OUTCOME[text_kind]
        else:
            expected = "allow"

        decision = decide_object(policy, reader, purpose, obj, prov)
        context = (wl_name, participants, obj, reader, purpose, decision)
        assert decision.outcome == expected, context
        seen[expected] = seen.get(expected, 0) + 1
        if decision.outcome in ("allow", "allow_redacted"):
            assert decision.view is not None
            assert decision.view["id"] == obj["id"]
            if decision.outcome == "allow_redacted":
                assert "9876 5432" not in decision.view["description"]
                assert "description:phone" in decision.redactions
        else:
            assert decision.view is None
        _check_tags(purpose, decision.outcome, audience(policy, obj, prov), reader)
    # the generator must really exercise every outcome
    assert set(seen) == {"allow", "allow_redacted", "deny", "hold"}, seen
    assert min(seen.values()) > 20, seen


def _record(rng: random.Random, i: int) -> tuple[dict[str, Any], list[Case]]:
    obs_type, value = rng.choice(
        [("ipv4-addr", "203.0.113.5"), ("domain-name", "evil.example"), ("user-account", "jdoe")]
    )
    cases: list[Case] = []
    sources: list[dict[str, Any]] = []
    for k in range(rng.randint(1, 3)):
        src = rng.choice([a for a in AGENCIES if a != "hk-outsider"])
        marks = _marks(rng)
        tlp, defaulted = oracle_tlp(marks)
        recipients = sorted(rng.sample(list(AGENCIES), k=rng.randint(0, 2)))
        text = rng.choice(list(TEXTS))
        cases.append(Case(src, marks, recipients, text))
        sources.append(
            {
                "agency": src,
                "jurisdiction": AGENCIES[src],
                "stix_id": f"indicator--00000000-0000-4000-8000-{i:06d}{k:06d}",
                "modified": "2026-11-01T00:00:00Z",
                "confidence": 80,
                "tlp": tlp,
                "tlp_defaulted": defaulted,
                "recipients": recipients,
                "revoked": False,
                "labels": [],
                "pattern": f"[{obs_type}:value = '{value}']",
                "description": TEXTS[text],
            }
        )
    sightings: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 2)):
        agency = rng.choice(list(AGENCIES))
        sightings.append(
            {
                "agency": agency,
                "jurisdiction": AGENCIES[agency],
                "stix_id": f"sighting--{rng.random()}",
                "count": 3,
                "tlp": rng.choice(list(RANK)),
            }
        )
    record = {
        "key": f"{obs_type}|value|{value}",
        "observable_type": obs_type,
        "value": value,
        "sources": sources,
        "sightings": sightings,
        "score": 70.0,
        "components": {"per_agency": {s["agency"]: 0.7 for s in sources}},
        "state": "active",
        "agencies": sorted({s["agency"] for s in sources}),
        "jurisdictions": sorted({s["jurisdiction"] for s in sources}),
        "tlp": max((s["tlp"] for s in sources), key=RANK.__getitem__),
    }
    return record, cases


@pytest.mark.parametrize("seed", [11, 12])
def test_decide_record_matches_oracle(seed: int) -> None:
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    for i in range(2000):
        wl_name = rng.choice(list(WHITELISTS))
        wl_dict, wl_table = WHITELISTS[wl_name]
        participants = _participants(rng)
        policy = SharingPolicy(
            whitelist_from_dict(wl_dict),
            frozenset(participants) if participants is not None else None,
        )
        record, cases = _record(rng, i)
        reader = _reader(rng)
        purpose = rng.choice(PURPOSES)
        obs = {record["observable_type"]}

        visible = []
        for source, case in zip(record["sources"], cases, strict=True):
            if oracle_visible(
                reader,
                purpose,
                case.src,
                source["tlp"],
                set(case.recipients),
                "indicator",
                obs,
                wl_table,
                participants,
            ):
                visible.append((source, case))
        crossing = [
            c
            for _, c in visible
            if c.src != reader.agency_id and AGENCIES[c.src] != reader.jurisdiction
        ]
        if not visible:
            expected = "deny"
        elif any(c.text == "hold" for c in crossing):
            expected = "hold"
        elif any(c.text == "redactable" for c in crossing):
            expected = "allow_redacted"
        else:
            expected = "allow"

        decision = decide_record(policy, reader, purpose, record)
        assert decision.outcome == expected, (wl_name, participants, record, reader, purpose)
        seen[expected] = seen.get(expected, 0) + 1
        if decision.shown:
            view = decision.view
            assert view is not None
            assert [s["stix_id"] for s in view["sources"]] == [s["stix_id"] for s, _ in visible]
            visible_sightings = [
                s
                for s in record["sightings"]
                if oracle_visible(
                    reader,
                    purpose,
                    s["agency"],
                    s["tlp"],
                    set(),
                    "sighting",
                    set(),
                    wl_table,
                    participants,
                    extra_objects=("indicator",),
                )
                and (
                    s["agency"] == reader.agency_id
                    or s["jurisdiction"] == reader.jurisdiction
                    or obs <= wl_table[(s["jurisdiction"], reader.jurisdiction)]["observables"]
                )
            ]
            assert [s["stix_id"] for s in view["sightings"]] == [
                s["stix_id"] for s in visible_sightings
            ]
            shown = [s["tlp"] for s, _ in visible] + [s["tlp"] for s in visible_sightings]
            assert view["tlp"] == max(shown, key=RANK.__getitem__)
            shown_agencies = {s["agency"] for s, _ in visible} | {
                s["agency"] for s in visible_sightings
            }
            assert view["agencies"] == sorted(shown_agencies)
            assert set(view["components"]["per_agency"]) <= shown_agencies
            for s in view["sources"]:
                if s["jurisdiction"] != reader.jurisdiction and s["agency"] != reader.agency_id:
                    assert "9876 5432" not in s["description"]
        else:
            assert decision.view is None
        _check_tags(purpose, decision.outcome, record_audience(policy, record), reader)
    assert set(seen) == {"allow", "allow_redacted", "deny", "hold"}, seen
    assert min(seen.values()) > 20, seen
