"""Per-object validation on the push path (ingest/validate.py, core/stix.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stix2

from core.stix import object_version
from ingest.validate import validation_error

IDENTITY = "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"


def indicator(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-02T00:00:00.000Z",
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not None}


def stix2_objects() -> list[dict[str, Any]]:
    """Objects serialised by the stix2 library: all of them must pass."""
    ind = stix2.Indicator(
        pattern="[file:hashes.'SHA-256' = '" + "ab" * 32 + "']",
        pattern_type="stix", created_by_ref=IDENTITY, labels=["x"], confidence=80,
        object_marking_refs=[stix2.TLP_GREEN], valid_until="2027-01-01T00:00:00Z",
    )  # fmt: skip
    mal = stix2.Malware(name="ShadowPad", is_family=True)
    rel = stix2.Relationship(ind, "indicates", mal)
    sight = stix2.Sighting(sighting_of_ref=ind.id, count=3, where_sighted_refs=[IDENTITY])
    ident = stix2.Identity(name="HKCERT", identity_class="organization")
    ip = stix2.IPv4Address(value="203.0.113.9")
    report = stix2.Report(name="r", published="2026-01-01T00:00:00Z", object_refs=[ind.id])
    loc = stix2.Location(country="HK")
    return [json.loads(o.serialize()) for o in (ind, mal, rel, sight, ident, ip, report, loc)]


@pytest.mark.parametrize("obj", stix2_objects(), ids=lambda o: o["type"])
def test_objects_made_by_stix2_are_valid(obj: dict[str, Any]) -> None:
    assert validation_error(obj) is None


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ([1, 2], "JSON object"),
        ({"id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}, "type is required"),
        (indicator(type="Indicator"), "not a valid STIX type"),
        (indicator(id="indicator--1234"), "<type>--<uuid>"),
        (indicator(id="malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"), "indicator--"),
        (indicator(spec_version="2.0"), "spec_version"),
        (indicator(spec_version=None), "spec_version is required"),
        (indicator(created=None), "created is required"),
        (indicator(modified="2025-12-31T00:00:00Z"), "modified must not be earlier"),
        (indicator(modified="2026-01-02 00:00:00"), "modified"),
        (indicator(modified="2026-01-02T00:00:00+08:00"), "modified"),
        (indicator(valid_from="2026-02-30T00:00:00Z"), "valid_from"),
        (indicator(valid_until="2025-01-01T00:00:00Z"), "valid_until must be later"),
        (indicator(pattern=None), "pattern is required"),
        (indicator(pattern_type=None), "pattern_type is required"),
        (indicator(pattern="[ipv4-addr:value = '1.2.3.4'"), "invalid STIX pattern"),
        (indicator(pattern="ipv4-addr:value = '1.2.3.4'"), "invalid STIX pattern"),
        (indicator(confidence=101), "confidence"),
        (indicator(confidence=True), "confidence"),
        (indicator(labels="bad"), "labels"),
        (indicator(created_by_ref=IDENTITY.replace("identity", "organization")), "identity"),
        (indicator(object_marking_refs=[IDENTITY]), "marking-definition"),
        (indicator(external_references=[{"url": "x"}]), "source_name"),
        (
            {"type": "relationship", "spec_version": "2.1",
             "id": "relationship--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
             "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z",
             "relationship_type": "indicates", "source_ref": "indicator--x"},
            "source_ref",
        ),
        (
            {"type": "sighting", "spec_version": "2.1",
             "id": "sighting--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
             "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z"},
            "sighting_of_ref is required",
        ),
        (
            {"type": "malware", "spec_version": "2.1",
             "id": "malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
             "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z",
             "is_family": True},
            "name is required",
        ),
    ],
)  # fmt: skip
def test_invalid_objects_are_refused_with_a_precise_reason(obj: Any, needle: str) -> None:
    err = validation_error(obj)
    assert err is not None and needle in err


def test_a_non_stix_pattern_type_is_not_parsed_as_stix() -> None:
    sigma = indicator(pattern="title: x\ndetection: {}", pattern_type="sigma")
    assert validation_error(sigma) is None


def test_stix2_agrees_on_the_invalid_cases_it_checks() -> None:
    """Where stix2.parse refuses an object, so do we.

    (We are stricter than stix2 3.0.2 on two spec rules it does not check:
    modified >= created and confidence 0..100, STIX 2.1 sections 3.2 and 3.3.)
    """
    cases = [
        indicator(valid_until="2025-01-01T00:00:00Z"),
        indicator(pattern="[ipv4-addr:value = '1.2.3.4'"),
        indicator(pattern_type=None),
        indicator(id="indicator--1234"),
    ]
    for obj in cases:
        assert validation_error(obj) is not None
        with pytest.raises(Exception):  # noqa: B017 - stix2 raises several error types
            stix2.parse(obj, allow_custom=False)


def test_version_is_modified_in_microsecond_form() -> None:
    assert object_version(indicator()) == "2026-01-02T00:00:00.000000Z"
    assert object_version(indicator(modified=None)) == "2026-01-01T00:00:00.000000Z"
    assert object_version({"type": "ipv4-addr"}) == ""
