"""Noninterference, case by case (issue 15, classes 1 and 2; DOMAIN.md "Noninterference").

Each test runs one scenario twice on the embedded backends: once as is, once
with extra reports the reader may not see. Everything the reader observes
(``World.observe``: records, lookup, filters, stats, alerts, stream, webhook
payloads, TAXII) must be byte for byte the same. The assertions before the
comparison name the leak each case was written for, so a failure says what
broke. The property-based version is ``test_noninterference_property.py``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import markings as m
from core import names
from core.access import Agency
from core.errors import StoreUnavailable
from core.markings import TLP1_RED, TLP2_GREEN, TLP2_RED
from core.ports import Put
from core.settings import OutboxSettings
from records.agencies import AgencyRegistry
from tests.security.noninterference import (
    Answer,
    Key,
    World,
    between,
    differences,
    embedded,
    fresh_clock,
    identity,
    later,
    world,
)
from threatbay.bootstrap import correlator_for, rescorer_for

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


def lookup(w: World, reader: str, value: str) -> dict[str, Any]:
    r = w.client.get("/api/v1/lookup", params={"value": value}, headers=w.keys[reader].bearer)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_a_withdrawn_consent_or_a_new_agency_is_followed_by_the_re_view(
    pair: tuple[World, World],
) -> None:
    """core/views.py: registry changes. Until the re-view, fail closed; after it, exact views."""
    w, _ = pair
    amber = indicator("gd-amber-ip", f"[ipv4-addr:value = '{IP}']", m.TLP2_AMBER, confidence=70)
    green = indicator("gd-green-ip", f"[ipv4-addr:value = '{IP}']", TLP2_GREEN, confidence=60)
    w.at(later(1))
    w.push("gd-b", [amber])
    w.push("gd-a", [green])
    w.settle()
    # hk-a holds consent from GD (AMBER reaches it, a named counterpart); hk-b does not.
    assert len(lookup(w, "hk-a", IP)["records"][0]["sources"]) == 2
    assert len(lookup(w, "hk-b", IP)["records"][0]["sources"]) == 1

    registry = AgencyRegistry(w.services.store, w.clock)
    hk_a = registry.get("hk-a")
    w.services.store.put_many(
        names.INDEX_AGENCIES,
        [Put(f"agency:{hk_a.id}", dataclasses.replace(hk_a, crossborder_consent=()).to_doc(),
             blind=True)],
    )  # fmt: skip
    newcomer = Agency("hk-c", "HK agency C", "HK", identity("hk-c"), "B")
    registry.add_agency(newcomer)
    cred, secret = registry.add_credential("hk-c")
    w.keys["hk-c"] = Key(newcomer, cred.key_id, secret)
    w.services.store.refresh(names.INDEX_AGENCIES)
    # Before the re-view: hk-a's view still holds the AMBER report -> refused, not filtered;
    # the newcomer has no view yet.
    assert lookup(w, "hk-a", IP)["found"] is False
    assert lookup(w, "hk-c", IP)["found"] is False
    rescorer = rescorer_for(w.services)
    rescorer.audiences.ttl_s = 0
    assert rescorer.review() == 1
    assert rescorer.review() == 0  # done for this registry
    w.services.store.refresh(names.INDEX_INDICATORS)
    for reader in ("hk-a", "hk-b", "hk-c"):
        [record] = lookup(w, reader, IP)["records"]
        assert [s["stix_id"] for s in record["sources"]] == [green["id"]], reader


class FailingViews:
    """The real store, refusing the first write of per-reader view documents (a crash then)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.refused = 0

    def put_many(self, index: str, puts: Any) -> Any:
        if index == names.INDEX_INDICATORS and not self.refused and any("#" in p.key for p in puts):
            self.refused += 1
            raise StoreUnavailable("store went away (test)")
        return self.store.put_many(index, puts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_view_left_unwritten_by_a_failure_is_written_by_the_sweep(
    pair: tuple[World, World],
) -> None:
    """records/views.py: the record is written, its partial view not; the outbox sweep repairs."""
    w, _ = pair
    w.at(later(1))
    w.push("gd-a", [indicator("gd-green", f"[ipv4-addr:value = '{IP}']", TLP2_GREEN)])
    w.push("gd-b", [indicator("gd-strict", f"[ipv4-addr:value = '{IP}']", m.TLP2_AMBER_STRICT)])
    store = FailingViews(w.services.store)
    correlator = correlator_for(dataclasses.replace(w.services, store=store))
    consumer = w.services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
    with pytest.raises(StoreUnavailable):
        correlator.step(consumer, timeout_s=0)
    assert store.refused == 1
    record = w.services.store.get(names.INDEX_INDICATORS, f"ipv4-addr|value|{IP}")
    assert record is not None and record.doc["views"], "the record was written, with its views"
    # The readers of the partial view (everyone but gd-b) find nothing yet: never a wrong view.
    assert lookup(w, "gd-a", IP)["found"] is True  # by key: the record holds every view
    listed = w.client.get("/api/v1/indicators", headers=w.keys["gd-a"].bearer).json()["items"]
    assert listed == []
    w.clock.advance(timedelta(seconds=OutboxSettings().grace_s + 1))
    correlator._next_sweep = 0.0
    correlator.housekeeping()
    w.services.store.refresh(names.INDEX_INDICATORS)
    listed = w.client.get("/api/v1/indicators", headers=w.keys["gd-a"].bearer).json()["items"]
    assert [len(i["sources"]) for i in listed] == [1]
    own = w.client.get("/api/v1/indicators", headers=w.keys["gd-b"].bearer).json()["items"]
    assert [len(i["sources"]) for i in own] == [2]


def test_the_first_re_view_gives_records_stored_before_views_their_views(
    pair: tuple[World, World],
) -> None:
    """An upgrade: a record as the previous version stored it (no readers) is invisible
    until the re-view, then read as every reader's exact view."""
    w, _ = pair
    w.at(later(1))
    w.push("hk-a", [indicator("hk-old", f"[ipv4-addr:value = '{IP}']", TLP2_GREEN)])
    w.push("gd-b", [indicator("gd-old", f"[ipv4-addr:value = '{IP}']", m.TLP2_AMBER_STRICT)])
    w.settle()
    key = f"ipv4-addr|value|{IP}"
    stored = w.services.store.get(names.INDEX_INDICATORS, key)
    assert stored is not None
    legacy = {k: v for k, v in stored.doc.items()
              if k not in ("readers", "views", "basis", "rev", "rescore_due")}  # fmt: skip
    for s in legacy["sources"]:
        s.pop("observable_types", None)
    for view in stored.doc["views"]:
        w.services.store.delete(names.INDEX_INDICATORS, view["key"])
    w.services.store.put_many(names.INDEX_INDICATORS, [Put(key, legacy, blind=True)])
    assert lookup(w, "mo-a", IP)["found"] is False  # fail closed
    rescorer = rescorer_for(w.services)
    assert rescorer.review() == 1
    w.services.store.refresh(names.INDEX_INDICATORS)
    [mo] = lookup(w, "mo-a", IP)["records"]
    assert [s["agency"] for s in mo["sources"]] == ["hk-a"]
    [gd] = lookup(w, "gd-b", IP)["records"]  # (HK's ipv4 does not cross to GD: whitelist)
    assert [s["agency"] for s in gd["sources"]] == ["gd-b"]
    assert lookup(w, "gd-a", IP)["found"] is False
