"""Merging source reports into records: versioning, revocation, corroboration fields."""

from __future__ import annotations

import copy
from typing import Any

from core.observables import observables
from core.provenance import Provenance
from correlate import merge

GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"


def indicator(
    modified: str,
    *,
    stix_id: str = "indicator--11111111-1111-4111-8111-111111111111",
    revoked: bool = False,
    markings: list[str] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": modified,
        "pattern": "[domain-name:value = 'bad.example.com']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        "confidence": 80,
        "revoked": revoked,
    }
    if markings is not None:
        obj["object_marking_refs"] = markings
    return obj


def prov(agency: str, jurisdiction: str, at: str = "2026-01-02T00:00:00.000000Z") -> Provenance:
    return Provenance(agency=agency, jurisdiction=jurisdiction, received_at=at, request_id="r1")


def merged(*items: tuple[dict[str, Any], Provenance]) -> merge.Record:
    record: merge.Record | None = None
    for obj, provenance in items:
        (observable,) = observables(obj["pattern"])
        record = record or merge.new_record(observable)
        merge.apply_report(record, merge.source_report(obj, provenance, observable))
    assert record is not None
    merge.summarise(record)
    return record


def test_newer_version_replaces_the_sources_report() -> None:
    record = merged(
        (indicator("2026-01-01T00:00:00.000Z"), prov("hk-govcert", "HK")),
        (indicator("2026-01-05T00:00:00.000Z"), prov("hk-govcert", "HK")),
    )
    assert len(record["sources"]) == 1
    assert record["sources"][0]["modified"] == "2026-01-05T00:00:00.000Z"


def test_older_version_arriving_late_changes_nothing() -> None:
    newer = indicator("2026-01-05T00:00:00.000Z")
    older = indicator("2026-01-01T00:00:00.000Z")
    record = merged((newer, prov("hk-govcert", "HK")))
    (observable,) = observables(older["pattern"])
    changed = merge.apply_report(
        record, merge.source_report(older, prov("hk-govcert", "HK"), observable)
    )
    assert changed is False
    assert record["sources"][0]["modified"] == "2026-01-05T00:00:00.000Z"


def test_replaying_the_same_version_is_not_a_change() -> None:
    obj = indicator("2026-01-01T00:00:00.000Z")
    record = merged((obj, prov("hk-govcert", "HK")))
    (observable,) = observables(obj["pattern"])
    assert not merge.apply_report(
        record, merge.source_report(obj, prov("hk-govcert", "HK"), observable)
    )


def test_revocation_withdraws_and_cannot_be_undone_by_a_late_old_version() -> None:
    record = merged(
        (indicator("2026-01-01T00:00:00.000Z"), prov("hk-govcert", "HK")),
        (indicator("2026-01-03T00:00:00.000Z", revoked=True), prov("hk-govcert", "HK")),
        (indicator("2026-01-02T00:00:00.000Z"), prov("hk-govcert", "HK")),
    )
    assert record["sources"][0]["revoked"] is True
    assert merge.live_sources(record) == []
    assert record["agency_count"] == 0


def test_two_jurisdictions_corroborate_and_tlp_is_most_restrictive() -> None:
    record = merged(
        (indicator("2026-01-01T00:00:00.000Z", markings=[GREEN]), prov("hk-govcert", "HK")),
        (
            indicator(
                "2026-01-01T00:00:00.000Z",
                stix_id="indicator--22222222-2222-4222-8222-222222222222",
                markings=[RED],
            ),
            prov("gd-cert", "GD"),
        ),
    )
    assert record["agencies"] == ["gd-cert", "hk-govcert"]
    assert record["jurisdictions"] == ["GD", "HK"]
    assert record["agency_count"] == 2
    assert record["tlp"] == "red"


def test_change_kinds_name_what_matters_to_alerting() -> None:
    first = merged((indicator("2026-01-01T00:00:00.000Z"), prov("hk-govcert", "HK")))
    assert merge.change_kinds(None, first, [50.0]) == ["new_record"]
    second = copy.deepcopy(first)
    obj = indicator(
        "2026-01-01T00:00:00.000Z", stix_id="indicator--33333333-3333-4333-8333-333333333333"
    )
    (observable,) = observables(obj["pattern"])
    merge.apply_report(second, merge.source_report(obj, prov("mo-caric", "MO"), observable))
    merge.summarise(second)
    kinds = merge.change_kinds(first, second, [50.0])
    assert "new_agency" in kinds and "new_jurisdiction" in kinds
