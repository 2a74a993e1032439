"""MISP feeds: which events a pull takes, and what misp-stix makes of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.markings import tlp_of
from feeds.http import MalformedFeed
from feeds.misp import event_to_stix, inherit_event_tlp, pending_events
from ingest.validate import validation_error

MISP = Path(__file__).parents[1] / "data" / "feeds" / "misp"
PHISHING = "5f0b3a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
LOADER = "7a1c2d3e-4f50-4a6b-9c8d-1e2f3a4b5c6d"
SAME_SECOND = "8b2d3e4f-5061-4b7c-8d9e-2f3a4b5c6d7e"


def test_events_after_the_cursor_are_taken_oldest_first_and_ties_are_not_skipped() -> None:
    manifest = json.loads((MISP / "manifest.json").read_text())
    assert [u for _, u in pending_events(manifest, None)] == [PHISHING, LOADER, SAME_SECOND]
    # stopped after the first of two events with the same timestamp: the second still comes
    assert [u for _, u in pending_events(manifest, f"1767398400:{LOADER}")] == [SAME_SECOND]
    assert pending_events(manifest, f"1767398400:{SAME_SECOND}") == []
    manifest[PHISHING]["timestamp"] = 1767400000  # the event was updated
    assert [u for _, u in pending_events(manifest, f"1767398400:{SAME_SECOND}")] == [PHISHING]
    with pytest.raises(MalformedFeed):
        pending_events({"x": {"no": "timestamp"}}, None)


def test_misp_stix_converts_an_event_and_its_tlp_covers_every_object() -> None:
    objects = inherit_event_tlp(event_to_stix(json.loads((MISP / f"{PHISHING}.json").read_text())))
    patterns = [o["pattern"] for o in objects if o["type"] == "indicator"]
    assert "[domain-name:value = 'login-bank.example.com']" in patterns
    assert any("198.51.100.7" in p for p in patterns)
    for obj in objects:
        if obj["type"] not in ("marking-definition",):
            assert tlp_of(obj) == ("green", False), obj["id"]
        if obj["type"] == "indicator":
            assert validation_error(obj) is None


def test_an_event_without_tlp_leaves_objects_for_the_feed_default() -> None:
    objects = inherit_event_tlp(event_to_stix(json.loads((MISP / f"{LOADER}.json").read_text())))
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert len(indicators) == 2
    assert all(tlp_of(o)[1] for o in indicators)  # still unmarked: the runner adds the feed TLP


def test_garbage_is_malformed_with_misp_stix_reason() -> None:
    with pytest.raises(MalformedFeed):
        event_to_stix(["not", "an", "event"])
    with pytest.raises(MalformedFeed, match="info field"):
        event_to_stix({"Event": {"uuid": "5f0b3a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5c"}})
