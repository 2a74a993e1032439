"""Explainable indicator score (DOMAIN.md "Score"): corroboration, decay, expiry, caps.

Pure functions over plain values. ``score`` returns every component so the stored
record can say why a score is what it is; ``decayed`` recomputes the decayed score
from stored components at read time (the base only changes when reports change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from core.clock import parse_timestamp

#: Admiralty source reliability -> weight w(a) (DOMAIN.md "Score").
RELIABILITY_WEIGHTS: Mapping[str, float] = {
    "A": 1.0, "B": 0.9, "C": 0.75, "D": 0.5, "E": 0.3, "F": 0.5,
}  # fmt: skip

#: Cap applied when a false-positive list or a private/reserved range matches.
WARNINGLIST_CAP = 20.0
#: Default ceiling of a view that sees a false-positive sighting (``scoring.false_positive_cap``).
FALSE_POSITIVE_CAP = 10.0

State = Literal["active", "expired", "revoked"]


@dataclass(frozen=True)
class DecayRule:
    """Polynomial decay parameters: lifetime ``tau_days`` and speed ``delta``."""

    tau_days: float
    delta: float


#: Defaults by decay class (DOMAIN.md "Score"; MISP decaying model, OpenCTI decay rules).
DEFAULT_DECAY: Mapping[str, DecayRule] = {
    "ip": DecayRule(47.0, 1.65),
    "url": DecayRule(47.0, 1.65),
    "domain": DecayRule(300.0, 2.1),
    "file-hash": DecayRule(460.0, 0.9),
    "other": DecayRule(470.0, 1.05),
}


def decay_class(observable_type: str, path: str = "") -> str:
    """Decay class of an observable: ip, url, domain, file-hash or other.

    A ``file`` or ``artifact`` key is a hash key (``file|hashes.sha-256|…``); so is any
    path through ``hashes``.
    """
    if "hashes" in path or observable_type in ("file", "artifact", "file-hash"):
        return "file-hash"
    if observable_type in ("ipv4-addr", "ipv6-addr"):
        return "ip"
    if observable_type == "url":
        return "url"
    if observable_type == "domain-name":
        return "domain"
    return "other"


class SourceReport(NamedTuple):
    """One source's current report on an indicator (its latest version).

    Named tuples, not frozen dataclasses, here: one is built per source of every
    record a correlator scores (a frozen dataclass costs ~2x to construct).
    """

    agency: str
    reliability: str
    confidence: int | None = None
    default_confidence: int = 50
    valid_until: datetime | None = None
    revoked: bool = False

    def live(self, now: datetime) -> bool:
        """Not revoked and not past ``valid_until``."""
        return not self.revoked and (self.valid_until is None or self.valid_until > now)


class ScoreInput(NamedTuple):
    """Everything the score of one canonical observable depends on."""

    reports: Sequence[SourceReport]
    observable_type: str
    now: datetime
    last_report_at: datetime | None = None
    last_sighting_at: datetime | None = None
    warninglist_hits: Sequence[str] = ()
    path: str = ""
    decay: Mapping[str, DecayRule] = DEFAULT_DECAY
    false_positives: Sequence[str] = ()
    """``agency: reason`` of each live false-positive sighting the view sees."""
    false_positive_cap: float = FALSE_POSITIVE_CAP


class Score(NamedTuple):
    """A score with the components that explain it."""

    score: float
    base: float
    per_agency: dict[str, float]
    t_days: float
    tau_days: float
    delta: float
    decay_factor: float
    state: State
    capped_by: list[str]
    explanation: list[str]
    cap: float | None = None


def agency_probability(report: SourceReport) -> float:
    """p for one report: confidence/100 × w(reliability); missing confidence -> agency default."""
    confidence = report.default_confidence if report.confidence is None else report.confidence
    confidence = min(100, max(0, confidence))
    return confidence / 100.0 * RELIABILITY_WEIGHTS.get(report.reliability.upper(), 0.0)


def corroboration(reports: Sequence[SourceReport], now: datetime) -> tuple[float, dict[str, float]]:
    """base = 100 × (1 − Π_a (1 − p_a)), p_a the best live report of agency a (DOMAIN.md)."""
    per_agency: dict[str, float] = {}
    for report in reports:
        if report.live(now):
            p = agency_probability(report)
            per_agency[report.agency] = max(p, per_agency.get(report.agency, 0.0))
    remaining = 1.0
    for p in per_agency.values():
        remaining *= 1.0 - p
    return 100.0 * (1.0 - remaining), per_agency


def decay_factor(t_days: float, tau_days: float, delta: float) -> float:
    """MISP polynomial decay ``1 − (t/τ)^(1/δ)``, floored at 0 (0 once t ≥ τ)."""
    if t_days <= 0:
        return 1.0
    if tau_days <= 0 or t_days >= tau_days or delta <= 0:
        return 0.0
    return max(0.0, 1.0 - math.pow(t_days / tau_days, 1.0 / delta))


def decayed(base: float, t_anchor: datetime, tau: float, delta: float, now: datetime) -> float:
    """Decayed score at ``now`` from stored components (anchor = latest report or sighting)."""
    t_days = (now - t_anchor).total_seconds() / 86400.0
    return base * decay_factor(t_days, tau, delta)


def _anchor(data: ScoreInput) -> datetime | None:
    moments = [m for m in (data.last_report_at, data.last_sighting_at) if m is not None]
    return max(moments) if moments else None


def score(data: ScoreInput) -> Score:
    """The explainable score of one canonical observable (DOMAIN.md "Score")."""
    rule = data.decay.get(decay_class(data.observable_type, data.path), DEFAULT_DECAY["other"])
    anchor = _anchor(data)
    t_days = max(0.0, (data.now - anchor).total_seconds() / 86400.0) if anchor else 0.0
    base, per_agency = corroboration(data.reports, data.now)
    explanation = [f"{agency}: p={p:.3f}" for agency, p in sorted(per_agency.items())]
    explanation.append(f"corroboration base {base:.2f} from {len(per_agency)} agencies")

    def result(
        value: float, factor: float, state: State, capped_by: list[str], cap: float | None = None
    ) -> Score:
        return Score(value, base, per_agency, t_days, rule.tau_days, rule.delta, factor, state,
                     capped_by, explanation, cap)  # fmt: skip

    if data.reports and all(r.revoked for r in data.reports):
        explanation.append("every source revoked its report: score 0")
        return result(0.0, 0.0, "revoked", [])
    if not per_agency:
        explanation.append("no live report (valid_until passed or revoked): score 0")
        return result(0.0, 0.0, "expired", [])
    factor = decay_factor(t_days, rule.tau_days, rule.delta)
    value = base * factor
    explanation.append(
        f"decay {factor:.3f} after {t_days:.1f} d (tau {rule.tau_days:g} d, delta {rule.delta:g})"
    )
    capped_by = list(data.warninglist_hits)
    cap: float | None = None
    if capped_by:
        cap = WARNINGLIST_CAP
        explanation.append(f"capped at {WARNINGLIST_CAP:g}: " + ", ".join(capped_by))
    if data.false_positives:
        # MISP sighting type 1: the view's readers were told the value is benign.
        fp_cap = data.false_positive_cap
        cap = fp_cap if cap is None else min(cap, fp_cap)
        explanation.extend(
            f"capped at {fp_cap:g}: false positive, {line}" for line in data.false_positives
        )
    if cap is not None:
        value = min(value, cap)
    return result(value, factor, "active", capped_by, cap)


def current_score(record: dict[str, Any], now: datetime) -> float:
    """The record's score at ``now``, from its stored components (read-time decay)."""
    components = record.get("components") or {}
    if record.get("state") != "active" or not components.get("anchor"):
        return float(record.get("score") or 0.0)
    live_until = components.get("live_until")
    if live_until and parse_timestamp(live_until) <= now:
        return 0.0
    anchor = parse_timestamp(components["anchor"])
    value = decayed(
        float(components["base"]), anchor, components["tau_days"], components["delta"], now
    )
    cap = components.get("cap")
    if cap is not None:
        value = min(value, float(cap))
    elif components.get("capped_by"):
        value = min(value, WARNINGLIST_CAP)
    return round(value, 3)
