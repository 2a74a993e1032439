"""Noninterference, case by case (issue 15, classes 1 and 2; DOMAIN.md "Noninterference").

Each test runs one scenario twice on the embedded backends: once as is, once
with extra reports the reader may not see. Everything the reader observes
(``World.observe``: records, lookup, filters, stats, alerts, stream, webhook
payloads, TAXII) must be byte for byte the same. The assertions before the
comparison name the leak each case was written for, so a failure says what
broke. The property-based version is ``test_noninterference_property.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.markings import TLP1_RED, TLP2_GREEN, TLP2_RED
from tests.security.noninterference import (
    Answer,
    World,
    between,
    differences,
    embedded,
    fresh_clock,
    later,
    world,
)

IP = "198.51.100.7"
DOMAIN = "joint-c2.example"


def indicator(name: str, pattern: str, tlp: str | None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, name)}",
        "created": "2026-03-01T00:00:00.000Z",
        "modified": "2026-03-01T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-03-01T00:00:00Z",
    }
    if tlp:
        obj["object_marking_refs"] = [tlp]
    obj.update(extra)
    return obj


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[World, World]]:
    """Two empty worlds: ``plain`` (the scenario) and ``more`` (the scenario + hidden reports)."""
    c1, c2 = fresh_clock(), fresh_clock()
    with (
        embedded(tmp_path / "plain", c1) as s1,
        embedded(tmp_path / "more", c2) as s2,
        world(s1, c1) as plain,
        world(s2, c2) as more,
    ):
        yield plain, more


def same_for(reader: str, plain: World, more: World) -> dict[str, Answer]:
    """Assert ``reader`` observes the same in both worlds; returns its answers in ``more``."""
    probes = plain.probes() | more.probes()
    seen_plain = plain.observe(reader, probes)
    seen_more = more.observe(reader, probes)
    assert seen_plain == seen_more, differences(seen_plain, seen_more)
    return seen_more


def body(answers: dict[str, Answer], label: str) -> Any:
    return orjson.loads(answers[label].body)


def test_a_hidden_red_report_changes_no_record_field_filter_or_count(
    pair: tuple[World, World],
) -> None:
    """GD TLP:RED (recipient one GD agency) and MO GREEN on one IP: HK sees MO's alone."""
    plain, more = pair
    mo = indicator("mo-ip", f"[ipv4-addr:value = '{IP}']", TLP2_GREEN, confidence=60,
                   labels=["c2"])  # fmt: skip
    red = indicator("gd-red-ip", f"[ipv4-addr:value = '{IP}']", TLP1_RED, confidence=90,
                    labels=["secret-operation"], x_threatbay_recipients=["gd-b"])  # fmt: skip
    for w in (plain, more):
        w.at(later(1))
        w.push("mo-a", [mo])
        w.settle()
    more.at(between(1))
    more.push("gd-a", [red])
    more.settle()
    for w in (plain, more):
        w.at(later(2))
        w.settle()

    seen = more.observe("hk-a", plain.probes() | more.probes())
    key = f"ipv4-addr|value|{IP}"
    record = body(seen, f"/api/v1/indicators/{key}")
    text = orjson.dumps(body(seen, f"/api/v1/lookup?value={IP}")).decode()
    assert "secret-operation" not in text, "the RED report's labels are shown"
    assert red["id"] not in text, "the RED report's STIX id is in stix_ids"
    assert "gd-a" not in text, "the explanation names the RED report's source"
    assert record["agency_count"] == 1 and record["jurisdictions"] == ["MO"]
    assert body(seen, "/api/v1/indicators?limit=500&agency=gd-a")["items"] == []
    assert body(seen, "/api/v1/indicators?limit=500&jurisdiction=GD")["items"] == []
    assert "GD" not in body(seen, "/api/v1/stats/indicators")["by_jurisdiction"]
    same_for("hk-a", plain, more)


def test_a_hidden_red_push_never_reaches_another_jurisdictions_alert_or_stream(
    pair: tuple[World, World],
) -> None:
    """HK + MO raise an alert on a domain; GD's RED report on it stays out of HK's view."""
    plain, more = pair
    pattern = f"[domain-name:value = '{DOMAIN}']"
    hk = indicator("hk-dom", pattern, TLP2_GREEN, confidence=60)
    mo = indicator("mo-dom", pattern, TLP2_GREEN, confidence=50)
    red = indicator("gd-red-dom", pattern, TLP2_RED, confidence=90,
                    x_threatbay_recipients=["gd-b"])  # fmt: skip
    for w in (plain, more):
        w.at(later(1))
        w.push("hk-a", [hk])
        w.push("mo-a", [mo])
        w.settle()
    more.at(between(1))
    more.push("gd-a", [red])
    more.settle()
    for w in (plain, more):
        w.at(later(2))
        w.tick()

    seen = more.observe("hk-b", plain.probes() | more.probes())
    [alert] = body(seen, "/api/v1/alerts?limit=500")["items"]
    assert alert["jurisdictions"] == ["HK", "MO"], "a hidden report notified its jurisdiction"
    assert alert["level"] == "YELLOW", "a hidden report raised the alert"
    stream = seen["/api/v1/stream?max_seconds=0.001 [Last-Event-ID: 0]"].body.decode()
    assert '"jurisdiction":"GD"' not in stream, "the stream shows 'notified GD'"
    assert "level_raised" not in stream
    same_for("hk-b", plain, more)
    same_for("mo-a", plain, more)


def test_granular_markings_cut_the_fields_they_select_on_the_records_api(
    pair: tuple[World, World],
) -> None:
    """A GREEN indicator with granular TLP:RED on description/labels (or on the pattern)."""
    _, w = pair
    marked = indicator(
        "hk-granular", f"[domain-name:value = '{DOMAIN}']", TLP2_GREEN, confidence=70,
        description="contact Chan Tai Man on 9123 4567", labels=["insider-source"],
        granular_markings=[{"marking_ref": TLP2_RED, "selectors": ["description", "labels"]}],
    )  # fmt: skip
    hidden_value = indicator(
        "hk-granular-pattern", "[domain-name:value = 'granular-pattern.example']", TLP2_GREEN,
        granular_markings=[{"marking_ref": TLP2_RED, "selectors": ["pattern"]}],
    )  # fmt: skip
    w.at(later(1))
    w.push("hk-a", [marked, hidden_value])
    w.settle()
    gd = w.keys["gd-a"].bearer
    taxii = w.client.get(
        f"/taxii2/api/collections/shared-all/objects/{marked['id']}/", headers=w.keys["gd-a"].basic
    ).json()["objects"][0]
    assert "description" not in taxii and "labels" not in taxii  # TAXII cuts them
    look = w.client.get("/api/v1/lookup", params={"value": DOMAIN}, headers=gd).json()
    text = orjson.dumps(look).decode()
    assert look["found"], look
    assert "Chan Tai Man" not in text, "granular RED description shown on /api/v1"
    assert "insider-source" not in text, "granular RED labels shown on /api/v1"
    hidden = w.client.get(
        "/api/v1/lookup", params={"value": "granular-pattern.example"}, headers=gd
    ).json()
    assert hidden["found"] is False, "a value the reader may not see was shown"
    # The source itself sees everything it marked.
    own = w.client.get(
        "/api/v1/lookup", params={"value": DOMAIN}, headers=w.keys["hk-a"].bearer
    ).json()
    assert "insider-source" in orjson.dumps(own).decode()
