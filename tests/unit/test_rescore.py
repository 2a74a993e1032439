"""The periodic re-score's pure parts: decay from stored components, when a record is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.clock import format_timestamp, parse_timestamp
from correlate.rescore import is_due
from correlate.score import (
    AgencyProfile,
    Scorer,
    apply_decay,
    current_score,
    liveness_changed,
    next_rescore_at,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PROFILES = {"gd": AgencyProfile("B"), "hk": AgencyProfile("A")}


def profile(agency: str) -> AgencyProfile:
    return PROFILES[agency]


def record(
    observable_type: str = "ipv4-addr",
    *,
    hits: list[str] | None = None,
    valid_until: str | None = None,
) -> dict[str, Any]:
    """A record reported by GD (B, confidence 100) and HK (A, 80) at T0: base 98."""
    at = format_timestamp(T0)
    rec: dict[str, Any] = {
        "key": f"{observable_type}|value|x",
        "observable_type": observable_type,
        "path": "value",
        "value": "x",
        "sources": [
            {"agency": "gd", "confidence": 100, "valid_until": valid_until, "revoked": False},
            {"agency": "hk", "confidence": 80, "valid_until": None, "revoked": False},
        ],
        "last_report_at": at,
        "last_sighting_at": None,
    }
    Scorer(None).apply(rec, profile, T0, hits=hits or [])
    return rec


def test_ip_score_decays_by_the_misp_polynomial_after_ten_days() -> None:
    rec = record()
    assert rec["score"] == pytest.approx(98.0)
    apply_decay(rec, T0 + timedelta(days=10))
    # 98 × (1 − (10/47)^(1/1.65))
    assert rec["score"] == pytest.approx(59.639, abs=1e-3)
    assert rec["scored_at"] == format_timestamp(T0 + timedelta(days=10))
    assert rec["components"]["t_days"] == pytest.approx(10.0)
    assert rec["components"]["decay_factor"] == pytest.approx(0.6086, abs=1e-4)
    assert "decay 0.609 after 10.0 d (tau 47 d, delta 1.65)" in rec["components"]["explanation"]
    assert rec["components"]["base"] == pytest.approx(98.0)


def test_domain_decays_slower_than_an_ip() -> None:
    rec = record("domain-name")
    apply_decay(rec, T0 + timedelta(days=100))
    # 98 × (1 − (100/300)^(1/2.1))
    assert rec["score"] == pytest.approx(39.920, abs=1e-3)


def test_decayed_score_matches_read_time_decay() -> None:
    rec = record()
    later = T0 + timedelta(days=23, hours=5)
    expected = current_score(rec, later)
    apply_decay(rec, later)
    assert rec["score"] == expected


def test_next_rescore_is_when_the_score_has_fallen_one_point() -> None:
    rec = record()
    # 98 -> 97: t = 47 d × (1 − 97/98)^1.65 = 0.02435 d = 35.07 min
    due = parse_timestamp(rec["next_rescore_at"])
    assert (due - T0).total_seconds() == pytest.approx(0.024354 * 86400, abs=1.0)
    apply_decay(rec, due)
    assert rec["score"] == pytest.approx(97.0, abs=1e-3)
    assert parse_timestamp(rec["next_rescore_at"]) > due


def test_capped_score_is_due_only_when_decay_takes_it_below_the_cap() -> None:
    rec = record(hits=["RFC 5737 documentation range"])
    assert rec["score"] == 20.0
    # 98 × f(t) = 19  ->  t = 47 d × (1 − 19/98)^1.65 = 32.94 d
    due = parse_timestamp(rec["next_rescore_at"])
    assert (due - T0).total_seconds() / 86400 == pytest.approx(32.935, abs=1e-3)
    apply_decay(rec, T0 + timedelta(days=30))
    assert rec["score"] == 20.0
    apply_decay(rec, due)
    assert rec["score"] == pytest.approx(19.0, abs=1e-3)


def test_fully_decayed_record_is_never_due_again() -> None:
    rec = record()
    apply_decay(rec, T0 + timedelta(days=46))
    # 98 × (1 − (46/47)^(1/1.65))
    assert rec["score"] == pytest.approx(1.269, abs=1e-3)
    apply_decay(rec, parse_timestamp(rec["next_rescore_at"]))
    assert rec["score"] == pytest.approx(0.269, abs=1e-3)
    # less than one point left: due when it reaches 0, at tau
    assert parse_timestamp(rec["next_rescore_at"]) == T0 + timedelta(days=47)
    apply_decay(rec, T0 + timedelta(days=47))
    assert rec["score"] == 0.0
    assert rec["next_rescore_at"] is None
    assert not is_due(rec, T0 + timedelta(days=400))


def test_a_report_ending_makes_the_record_due_and_needs_a_full_score() -> None:
    end = T0 + timedelta(days=2)
    rec = record(valid_until=format_timestamp(end))
    assert parse_timestamp(rec["next_rescore_at"]) <= end
    rec["next_rescore_at"] = format_timestamp(end)  # the decay step is sooner; look at the end
    assert next_rescore_at({**rec, "score": 0.0}, T0) == format_timestamp(end)
    assert not liveness_changed(rec, end - timedelta(seconds=1))
    assert liveness_changed(rec, end)
    Scorer(None).apply(rec, profile, end + timedelta(hours=1))
    # only HK (A, 80) is live now: base 80, not 98
    assert rec["components"]["base"] == pytest.approx(80.0)
    assert rec["components"]["per_agency"] == {"hk": 0.8}


def test_every_report_ended_expires_the_record() -> None:
    rec = record()
    for source in rec["sources"]:
        source["valid_until"] = format_timestamp(T0 + timedelta(days=1))
    Scorer(None).apply(rec, profile, T0)
    assert liveness_changed(rec, T0 + timedelta(days=1))
    Scorer(None).apply(rec, profile, T0 + timedelta(days=1))
    assert (rec["state"], rec["score"], rec["next_rescore_at"]) == ("expired", 0.0, None)
    assert not is_due(rec, T0 + timedelta(days=5))


def test_due_only_once_its_time_has_come() -> None:
    rec = record()
    due = parse_timestamp(rec["next_rescore_at"])
    assert not is_due(rec, due - timedelta(seconds=1))
    assert is_due(rec, due)
    legacy = {k: v for k, v in rec.items() if k != "next_rescore_at"}
    assert is_due(legacy, T0)  # scored before the field existed


def test_record_without_components_cannot_be_decayed_alone() -> None:
    rec = record()
    del rec["components"]
    assert liveness_changed(rec, T0 + timedelta(days=1))
