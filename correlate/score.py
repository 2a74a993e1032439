"""Score a merged record with its explanation (DOMAIN.md "Score").

The record stores the components (base, per-agency p_a, anchor, τ, δ,
warninglist hits) so the API can explain a score and recompute its decay at
read time; ``score`` itself is the value at ``scored_at`` and is refreshed by
the periodic re-score (see benches/bench_decay.py for why both exist).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core import scoring
from core.clock import format_timestamp, parse_timestamp
from core.scoring import current_score

#: Score values whose crossing is a change the alert engine hears about.
SCORE_THRESHOLDS = (50.0, 70.0, 80.0, 85.0, 90.0)

#: The periodic re-score refreshes a stored score once decay has moved it by this much.
RESCORE_STEP = 1.0


@dataclass(frozen=True, slots=True)
class AgencyProfile:
    """What scoring needs to know of a source agency."""

    reliability: str = "C"
    default_confidence: int = 50


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_timestamp(str(value))
    except ValueError:
        return None


class Scorer:
    """Applies ``core.scoring`` to records, with the warninglist hits of their value."""

    def __init__(
        self, warninglists: Any, false_positive_cap: float = scoring.FALSE_POSITIVE_CAP
    ) -> None:
        self.warninglists = warninglists
        self.false_positive_cap = false_positive_cap

    def hits(self, record: dict[str, Any]) -> list[str]:
        found: list[str] = self.warninglists.hits(record["observable_type"], record["value"])
        return found

    def apply(
        self,
        record: dict[str, Any],
        profile: Callable[[str], AgencyProfile],
        now: datetime,
        hits: list[str] | None = None,
    ) -> None:
        """Set ``score``, ``state`` and ``components`` of ``record`` in place."""
        if hits is None:
            hits = record.get("warninglist_hits")
            if hits is None:
                hits = self.hits(record)
        reports = []
        for source in record["sources"]:
            agency = profile(source["agency"])
            reports.append(
                scoring.SourceReport(
                    agency=source["agency"],
                    reliability=agency.reliability,
                    confidence=source.get("confidence"),
                    default_confidence=agency.default_confidence,
                    valid_until=_when(source.get("valid_until")),
                    revoked=bool(source.get("revoked")),
                )
            )
        result = scoring.score(
            scoring.ScoreInput(
                reports=reports,
                observable_type=record["observable_type"],
                path=record.get("path", ""),
                now=now,
                last_report_at=_when(record.get("last_report_at")),
                last_sighting_at=_when(record.get("last_sighting_at")),
                warninglist_hits=hits,
                false_positives=[
                    f"{fp['agency']}: {fp.get('reason') or 'no reason given'}"
                    for fp in record.get("false_positives") or []
                ],
                false_positive_cap=self.false_positive_cap,
            )
        )
        anchor = max(
            (m for m in (record.get("last_report_at"), record.get("last_sighting_at")) if m),
            default=None,
        )
        live = [s for s in record["sources"] if not s.get("revoked")]
        ends = [s.get("valid_until") for s in live]
        record["score"] = round(result.score, 3)
        record["base"] = round(result.base, 3)
        record["state"] = result.state
        record["warninglist_hits"] = list(hits)
        record["scored_at"] = format_timestamp(now)
        record["components"] = {
            "base": round(result.base, 4),
            "per_agency": {a: round(p, 4) for a, p in result.per_agency.items()},
            "anchor": anchor,
            "live_until": None if (not ends or None in ends) else max(e for e in ends if e),
            "t_days": round(result.t_days, 4),
            "tau_days": result.tau_days,
            "delta": result.delta,
            "decay_factor": round(result.decay_factor, 4),
            "capped_by": result.capped_by,
            "cap": result.cap,
            "explanation": result.explanation,
        }
        record["next_rescore_at"] = next_rescore_at(record, now)


def _timestamp_problem(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{what} is not a timestamp"
    try:
        parse_timestamp(value)
    except ValueError:
        return f"{what} {value[:40]!r} is not a timestamp"
    return None


def record_problem(record: Any) -> str | None:
    """Why a stored record cannot be re-scored; None when it can.

    Checks exactly what ``Scorer.apply`` and ``apply_decay`` read, so a record
    damaged in the store is dead-lettered with a reason instead of being taken
    for a bug (and a bug is never taken for a damaged record).
    """
    if not isinstance(record, dict):
        return "record is not a JSON object"
    for name in ("observable_type", "value"):
        if not isinstance(record.get(name), str):
            return f"record has no string {name}"
    sources = record.get("sources")
    if not isinstance(sources, list) or not all(
        isinstance(s, dict) and isinstance(s.get("agency"), str) for s in sources
    ):
        return "record sources are not a list of reports with an agency"
    for source in sources:
        problem = _timestamp_problem(source.get("valid_until"), "a source's valid_until")
        if problem:
            return problem
    if not isinstance(record.get("score", 0.0), int | float):
        return "record score is not a number"
    components = record.get("components")
    if components is not None:
        if not isinstance(components, dict):
            return "record components are not an object"
        for name in ("base", "tau_days", "delta"):
            if components.get("anchor") and not isinstance(components.get(name), int | float):
                return f"record components have no numeric {name}"
        problem = _timestamp_problem(components.get("anchor"), "components.anchor")
        if problem:
            return problem
    for name in ("scored_at", "last_report_at", "last_sighting_at"):
        problem = _timestamp_problem(record.get(name), name)
        if problem:
            return problem
    return None


def next_rescore_at(record: dict[str, Any], now: datetime) -> str | None:
    """When the stored score will have decayed by ``RESCORE_STEP`` or a live report ends.

    DOMAIN.md "Score": the polynomial ``base × (1 − (t/τ)^(1/δ))`` falls to a
    target value v at ``t = τ × (1 − v/base)^δ`` after the anchor; a report's
    ``valid_until`` changes the corroboration (or expires the record). ``None``
    means nothing will change with time alone (not active, or decayed to 0 with
    no report left to end).
    """
    if record.get("state") != "active":
        return None
    moments: list[datetime] = []
    for source in record.get("sources") or []:
        end = _when(source.get("valid_until")) if not source.get("revoked") else None
        if end is not None and end > now:
            moments.append(end)
    components = record.get("components") or {}
    anchor = _when(components.get("anchor"))
    base = float(components.get("base") or 0.0)
    value = float(record.get("score") or 0.0)
    tau = float(components.get("tau_days") or 0.0)
    delta = float(components.get("delta") or 0.0)
    if anchor is not None and base > 0 and value > 0 and tau > 0 and delta > 0:
        target = value - RESCORE_STEP
        fraction = 1.0 if target <= 0 else (1.0 - min(1.0, target / base)) ** delta
        moments.append(max(anchor + timedelta(days=tau * fraction), now + timedelta(seconds=1)))
    return format_timestamp(min(moments)) if moments else None


def liveness_changed(record: dict[str, Any], now: datetime) -> bool:
    """True if a report's ``valid_until`` passed since ``scored_at`` (corroboration must be redone).

    Also true for a record without ``scored_at`` or ``components``: its decay
    cannot be recomputed from stored values alone.
    """
    scored_at = _when(record.get("scored_at"))
    if scored_at is None or not record.get("components"):
        return True
    for source in record.get("sources") or []:
        end = _when(source.get("valid_until")) if not source.get("revoked") else None
        if end is not None and scored_at < end <= now:
            return True
    return False


def apply_decay(record: dict[str, Any], now: datetime) -> None:
    """Refresh ``score`` of ``record`` in place to its decayed value at ``now`` (periodic re-score).

    Only time moved since ``scored_at``: base, per-agency p_a, anchor, τ, δ and
    the warninglist cap are the stored components (DOMAIN.md "Score"); use
    ``Scorer.apply`` instead when ``liveness_changed`` says a report ended.
    """
    components = dict(record.get("components") or {})
    record["score"] = current_score(record, now)
    record["scored_at"] = format_timestamp(now)
    anchor = _when(components.get("anchor"))
    if record.get("state") == "active" and anchor is not None:
        t_days = max(0.0, (now - anchor).total_seconds() / 86400.0)
        tau, delta = float(components["tau_days"]), float(components["delta"])
        factor = scoring.decay_factor(t_days, tau, delta)
        line = f"decay {factor:.3f} after {t_days:.1f} d (tau {tau:g} d, delta {delta:g})"
        components["t_days"] = round(t_days, 4)
        components["decay_factor"] = round(factor, 4)
        components["explanation"] = [
            line if str(text).startswith("decay ") else text
            for text in components.get("explanation") or []
        ]
        record["components"] = components
    record["next_rescore_at"] = next_rescore_at(record, now)
