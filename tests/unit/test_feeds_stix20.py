"""STIX 2.0 objects become valid STIX 2.1 before ingest sees them."""

from __future__ import annotations

from typing import Any

from feeds.prepare import prepare_objects, with_default_tlp
from feeds.stix20 import upgrade_object, upgrade_objects
from ingest.validate import validation_error

TLP_GREEN_10 = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP_AMBER_20 = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"

INDICATOR_20: dict[str, Any] = {
    "type": "indicator",
    "id": "indicator--A932FCC6-E032-476C-826F-CB970A5A1ADE",
    "created": "2017-01-27T13:49:53.935Z",
    "modified": "2017-01-27T13:49:53.935Z",
    "labels": ["malicious-activity"],
    "pattern": "[ipv4-addr:value = '198.51.100.3']",
    "valid_from": "2017-01-27T13:49:53.935382Z",
    "created_by_ref": "identity--F431F809-377B-45E0-AA1C-6A4751CAE5FF",
    "object_marking_refs": [TLP_GREEN_10],
}
MALWARE_20: dict[str, Any] = {
    "type": "malware",
    "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
    "created": "2017-01-27T13:49:53.997Z",
    "modified": "2017-01-27T13:49:53.997Z",
    "name": "Poison Ivy",
    "labels": ["remote-access-trojan"],
}
REPORT_20: dict[str, Any] = {
    "type": "report",
    "id": "report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3",
    "created": "2015-12-21T19:59:11.000Z",
    "modified": "2015-12-21T19:59:11.000Z",
    "name": "The Black Vine Cyberespionage Group",
    "published": "2016-01-20T17:00:00Z",
    "labels": ["threat-actor"],
    "object_refs": ["indicator--A932FCC6-E032-476C-826F-CB970A5A1ADE"],
}


def test_a_20_indicator_is_valid_21_with_types_pattern_type_and_lowercase_refs() -> None:
    assert validation_error(INDICATOR_20) is not None  # ingest would refuse it as sent
    new = upgrade_object(INDICATOR_20)
    assert validation_error(new) is None
    assert new["spec_version"] == "2.1"
    assert new["pattern_type"] == "stix"
    assert new["indicator_types"] == ["malicious-activity"] and "labels" not in new
    assert new["id"] == "indicator--a932fcc6-e032-476c-826f-cb970a5a1ade"
    assert new["created_by_ref"] == "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"
    assert new["object_marking_refs"] == [TLP_GREEN_10]
    assert INDICATOR_20["labels"] == ["malicious-activity"]  # the input is not modified


def test_malware_and_report_vocabularies_move_and_references_still_match() -> None:
    (malware, report), upgraded = upgrade_objects([MALWARE_20, REPORT_20])
    assert upgraded == 2
    assert malware["malware_types"] == ["remote-access-trojan"] and malware["is_family"] is True
    assert report["report_types"] == ["threat-actor"]
    assert report["object_refs"] == [upgrade_object(INDICATOR_20)["id"]]
    assert validation_error(malware) is None and validation_error(report) is None


def test_21_objects_and_top_level_scos_are_left_alone() -> None:
    obj21 = upgrade_object(INDICATOR_20)
    assert upgrade_object(obj21) is obj21
    sco = {"type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
           "value": "198.51.100.3"}  # fmt: skip
    assert upgrade_object(sco) is sco


def test_unmarked_objects_get_the_feed_tlp_and_marked_ones_keep_theirs() -> None:
    marked, unmarked = prepare_objects([INDICATOR_20, MALWARE_20], "amber")
    assert marked["object_marking_refs"] == [TLP_GREEN_10]
    assert unmarked["object_marking_refs"] == [TLP_AMBER_20]
    statement = "marking-definition--0b6f4d0c-6f3a-4c1c-9d1e-1a2b3c4d5e6f"
    other = with_default_tlp({"type": "note", "object_marking_refs": [statement]}, "red")
    assert other["object_marking_refs"] == [
        statement,
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    ]
    definition = {"type": "marking-definition", "id": TLP_GREEN_10}
    assert with_default_tlp(definition, "red") is definition
