"""Score a merged record with its explanation (DOMAIN.md "Score").

The record stores the components (base, per-agency p_a, anchor, τ, δ,
warninglist hits) so the API can explain a score and recompute its decay at
read time; ``score`` itself is the value at ``scored_at`` and is refreshed by
the periodic re-score (see benches/bench_decay.py for why both exist).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import scoring
from core.clock import format_timestamp, parse_timestamp

#: Score values whose crossing is a change the alert engine hears about.
SCORE_THRESHOLDS = (50.0, 70.0, 80.0, 85.0, 90.0)


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

    def __init__(self, warninglists: Any) -> None:
        self.warninglists = warninglists

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
            "cap": scoring.WARNINGLIST_CAP if result.capped_by else None,
            "explanation": result.explanation,
        }


def current_score(record: dict[str, Any], now: datetime) -> float:
    """The record's score at ``now``, from its stored components (read-time decay)."""
    components = record.get("components") or {}
    if record.get("state") != "active" or not components.get("anchor"):
        return float(record.get("score") or 0.0)
    live_until = components.get("live_until")
    if live_until and parse_timestamp(live_until) <= now:
        return 0.0
    anchor = parse_timestamp(components["anchor"])
    value = scoring.decayed(
        float(components["base"]), anchor, components["tau_days"], components["delta"], now
    )
    if components.get("capped_by"):
        value = min(value, scoring.WARNINGLIST_CAP)
    return round(value, 3)
