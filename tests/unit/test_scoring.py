"""Explainable score (DOMAIN.md "Score").

Decay follows MISP's polynomial decaying model, score = base × (1 − (t/τ)^(1/δ)),
documented in "Decaying Indicators of Compromise" (Mokaddem, Wagener, Dulaunoy,
Iklody, arXiv:1803.11052, 2018) and MISP's decaying-model docs
(https://www.misp-project.org/2019/09/12/Decaying-Of-Indicators.html). Expected
values below are computed by hand, arithmetic in the comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.scoring import (
    ScoreInput,
    SourceReport,
    current_score,
    decay_factor,
    decayed,
    score,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def gd(confidence: int | None = 80, **kw: object) -> SourceReport:
    return SourceReport("GD-CAC", "B", confidence, **kw)  # type: ignore[arg-type]


def hk(confidence: int | None = 60, **kw: object) -> SourceReport:
    return SourceReport("HKCERT", "C", confidence, **kw)  # type: ignore[arg-type]


def at(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


def ip_score(*reports: SourceReport, days: float = 0.0, **kw: object) -> float:
    data = ScoreInput(list(reports), "ipv4-addr", NOW, last_report_at=at(days), **kw)  # type: ignore[arg-type]
    return score(data).score


# --- MISP decay, by hand --------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "tau", "delta", "expected"),
    [
        (15, 30, 0.3, 0.900787),  # (15/30)^(1/0.3) = 0.5^3.3333 = 0.099213
        (15, 30, 1.0, 0.5),  # linear: 1 − 0.5
        (15, 30, 2.0, 0.292893),  # 0.5^0.5 = 0.707107
        # IP default: (10/47)^0.606061 = e^(0.606061 × −1.547563) = 0.391442
        (10, 47, 1.65, 0.608558),
        (0, 30, 0.3, 1.0),
        (30, 30, 0.3, 0.0),  # at τ the indicator is dead
        (45, 30, 0.3, 0.0),  # floor 0, never negative
    ],
)
def test_misp_polynomial_decay(t: float, tau: float, delta: float, expected: float) -> None:
    assert decay_factor(t, tau, delta) == pytest.approx(expected, abs=1e-5)


def test_decayed_from_stored_components() -> None:
    # base 80, τ=30, δ=0.3, anchored 15 days ago: 80 × 0.900787 = 72.06
    assert decayed(80.0, at(15), 30.0, 0.3, NOW) == pytest.approx(72.063, abs=1e-3)


# --- corroboration ----------------------------------------------------------------------


def test_single_report_base_is_confidence_times_reliability() -> None:
    assert ip_score(gd(80)) == pytest.approx(72.0)  # 0.8 × 0.9 (B)


def test_second_jurisdiction_raises_corroboration() -> None:
    # 1 − (1 − 0.72)(1 − 0.45) = 1 − 0.28 × 0.55 = 0.846
    assert ip_score(gd(80), hk(60)) == pytest.approx(84.6)


def test_repeat_from_same_agency_never_raises_it() -> None:
    assert ip_score(gd(80), gd(70), gd(80)) == pytest.approx(72.0)


def test_missing_confidence_uses_agency_default() -> None:
    report = SourceReport("MO-CARIC", "A", None, default_confidence=40)
    assert ip_score(report) == pytest.approx(40.0)


def test_per_agency_components_explain_the_score() -> None:
    result = score(ScoreInput([gd(80), hk(60)], "ipv4-addr", NOW, last_report_at=at(10)))
    assert result.per_agency == pytest.approx({"GD-CAC": 0.72, "HKCERT": 0.45})
    assert result.base == pytest.approx(84.6)
    assert (result.tau_days, result.delta) == (47.0, 1.65)
    assert result.t_days == pytest.approx(10.0)
    assert result.score == pytest.approx(84.6 * 0.608558, abs=1e-3)
    assert result.state == "active"
    assert any("GD-CAC" in line for line in result.explanation)


@pytest.mark.parametrize(
    ("observable_type", "path", "tau", "delta"),
    [
        ("ipv4-addr", "value", 47.0, 1.65),
        ("url", "value", 47.0, 1.65),
        ("domain-name", "value", 300.0, 2.1),
        ("file", "hashes.sha-256", 460.0, 0.9),
        ("file", "", 460.0, 0.9),
        ("email-addr", "value", 470.0, 1.05),
        ("pattern", "pattern", 470.0, 1.05),
    ],
)
def test_decay_defaults_by_type(observable_type: str, path: str, tau: float, delta: float) -> None:
    result = score(ScoreInput([gd()], observable_type, NOW, last_report_at=at(1), path=path))
    assert (result.tau_days, result.delta) == (tau, delta)


def test_sighting_resets_decay_clock() -> None:
    data = ScoreInput([gd(80)], "ipv4-addr", NOW, last_report_at=at(40), last_sighting_at=at(0))
    assert score(data).score == pytest.approx(72.0)
    assert ip_score(gd(80), days=40) < 20


def test_old_ip_decays_to_zero_but_stays_active() -> None:
    result = score(ScoreInput([gd(80)], "ipv4-addr", NOW, last_report_at=at(60)))
    assert result.score == 0.0 and result.state == "active"


# --- expiry, revocation, caps ---------------------------------------------------------


def test_valid_until_passed_expires() -> None:
    result = score(ScoreInput([gd(valid_until=at(1))], "ipv4-addr", NOW, last_report_at=at(5)))
    assert (result.score, result.state) == (0.0, "expired")


def test_expired_report_no_longer_counts() -> None:
    assert ip_score(gd(80), hk(60, valid_until=at(1))) == pytest.approx(72.0)


def test_every_source_revoked() -> None:
    result = score(ScoreInput([gd(revoked=True), hk(revoked=True)], "ipv4-addr", NOW))
    assert (result.score, result.state) == (0.0, "revoked")


def test_one_revocation_withdraws_only_that_source() -> None:
    assert ip_score(gd(80, revoked=True), hk(60)) == pytest.approx(45.0)


def test_warninglist_hit_caps_at_20_and_is_named() -> None:
    hits = ["private-range:10.0.0.0/8"]
    result = score(ScoreInput([gd(90), hk(90)], "ipv4-addr", NOW, warninglist_hits=hits))
    assert result.score == 20.0
    assert result.capped_by == hits
    assert any("private-range:10.0.0.0/8" in line for line in result.explanation)


def test_cap_never_raises_a_low_score() -> None:
    hits = ["misp:List of known google domains"]
    result = score(ScoreInput([hk(20)], "domain-name", NOW, warninglist_hits=hits))
    assert result.score == pytest.approx(15.0)  # 0.2 × 0.75


def test_a_false_positive_caps_the_score_and_names_the_reason() -> None:
    """Issue #19: the cap holds at scoring time and at read time (``current_score``)."""
    data = ScoreInput([gd(95), hk(95)], "domain-name", NOW, last_report_at=at(1),
                      false_positives=["hk-govcert: sinkhole"], false_positive_cap=7.5)  # fmt: skip
    result = score(data)
    assert result.base > 90 and result.score == 7.5 and result.cap == 7.5
    assert "capped at 7.5: false positive, hk-govcert: sinkhole" in result.explanation
    stored = {
        "state": "active",
        "score": result.score,
        "components": {"base": result.base, "anchor": "2026-05-31T00:00:00Z", "tau_days": 300,
                       "delta": 2.1, "capped_by": [], "cap": result.cap},
    }  # fmt: skip
    assert current_score(stored, NOW + timedelta(days=1)) == 7.5
