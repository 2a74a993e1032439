"""core/record_indicators.py: a record view as a STIX 2.1 indicator (the ``records`` collection)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stix2

from core.clock import format_timestamp, parse_timestamp
from core.observables import observables
from core.record_indicators import expires_at, indicator_id, pattern_of, render, stamp
from core.scoring import decayed

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SOURCE = "indicator--11111111-1111-4111-8111-111111111111"
PATTERNS = (
    "[ipv4-addr:value = '198.51.100.7']",
    "[ipv6-addr:value = '2001:db8::1/128']",
    "[domain-name:value = 'C2.Example.']",
    "[url:value = 'http://evil.example/a\\'b']",
    "[email-addr:value = 'X@Evil.Example']",
    "[file:hashes.'SHA-256' = '" + "AB" * 32 + "']",
    "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
    "[windows-registry-key:key = 'HKLM\\\\Soft']",
    "[ipv4-addr:value = '10.0.0.1'] AND [domain-name:value = 'a.example']",
    "[network-traffic:dst_port = 443]",
)


def view(key: str, **extra: Any) -> dict[str, Any]:
    kind, path, value = key.split("|", 2)
    out: dict[str, Any] = {
        "key": key, "observable_type": kind, "path": path, "value": value,
        "first_seen": format_timestamp(T0), "scored_at": format_timestamp(T0),
        "state": "active", "score": 80.0, "tlp": "green", "labels": ["c2"],
        "sources": [{"agency": "hk-govcert", "stix_id": SOURCE}],
        "components": {"base": 80.0, "anchor": format_timestamp(T0), "tau_days": 47.0,
                       "delta": 1.65, "live_until": None, "capped_by": None},
    }  # fmt: skip
    out.update(extra)
    stamp(out, format_timestamp(T0 + timedelta(seconds=1)))
    return out


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_pattern_of_a_key_is_read_back_as_the_same_key(pattern: str) -> None:
    [observable] = observables(pattern)
    v = view(observable.key)
    again = pattern_of(v)
    assert [o.key for o in observables(again)] == [observable.key]
    obj = render(v, 25.0)
    assert obj["id"] == indicator_id(observable.key) == v["indicator_id"]
    stix2.parse(obj, allow_custom=False)


def test_valid_until_is_when_the_decayed_score_falls_below_the_threshold() -> None:
    v = view("ipv4-addr|value|198.51.100.7")
    ends = expires_at(v, 25.0)
    assert ends is not None
    assert decayed(80.0, T0, 47.0, 1.65, ends - timedelta(minutes=1)) > 25.0
    assert decayed(80.0, T0, 47.0, 1.65, ends + timedelta(minutes=1)) < 25.0
    assert render(v, 25.0)["valid_until"] == format_timestamp(ends)


def test_a_report_ending_first_or_a_low_score_ends_it_sooner() -> None:
    live_until = format_timestamp(T0 + timedelta(days=2))
    v = view("ipv4-addr|value|198.51.100.7")
    v["components"]["live_until"] = live_until
    assert render(v, 25.0)["valid_until"] == live_until
    capped = view("ipv4-addr|value|198.51.100.7")
    capped["components"]["capped_by"] = "private range"
    obj = render(capped, 25.0)  # capped at 20 < 25: ends at once, still after valid_from
    assert parse_timestamp(obj["valid_until"]) > parse_timestamp(obj["valid_from"])
    stix2.parse(obj, allow_custom=False)


def test_revoked_views_are_revoked_and_marking_is_the_views_tlp() -> None:
    obj = render(view("domain-name|value|c2.example", state="revoked", tlp="amber+strict"), 25.0)
    assert obj["revoked"] is True
    assert obj["object_marking_refs"] == [
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
    ]
    assert obj["confidence"] == 80 and obj["indicator_types"] == ["malicious-activity"]
    stix2.parse(obj, allow_custom=False)
