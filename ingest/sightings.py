"""A sighting reported through the API inherits the marking of what it sights.

A sighting names one indicator (``sighting_of_ref``); whoever sees the sighting
learns that indicator exists. So the sighting takes the TLP of the indicator
report it names, and a sighting of a TLP:RED report is RED to that report's
recipients and its source agency (DOMAIN.md "Sharing"; before, it was stored
unmarked, which is AMBER, and named the RED indicator to non-recipients).
Of the reports the caller may see, the least restrictive one is named, so the
sighting travels as far as it legitimately can.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.clock import format_timestamp, parse_timestamp
from core.markings import MARKING_ID_BY_TLP, RECIPIENTS_PROPERTY, normalise_tlp, tlp_rank
from core.provenance import Tlp
from core.stix import FALSE_POSITIVE, SIGHTING_TYPE

__all__ = ["FALSE_POSITIVE", "SIGHTING_TYPE", "own_false_positives", "sighted_source",
           "sighting_marking", "withdrawal_of", "ended_now"]  # fmt: skip


def _tlp(source: Mapping[str, Any]) -> Tlp:
    try:
        return normalise_tlp(str(source.get("tlp") or "amber"))
    except ValueError:
        return "red"


def sighted_source(view: Mapping[str, Any]) -> dict[str, Any] | None:
    """The visible indicator report a sighting of this record view names, or None."""
    reports: list[dict[str, Any]] = [
        s
        for s in view.get("sources") or []
        if isinstance(s, dict) and str(s.get("stix_id", "")).startswith("indicator--")
    ]
    if not reports:
        return None
    return min(reports, key=lambda s: (tlp_rank(_tlp(s)), str(s["stix_id"])))


def sighting_marking(source: Mapping[str, Any], sighter: str) -> dict[str, Any]:
    """The marking properties of a sighting of ``source`` made by agency ``sighter``."""
    tlp = _tlp(source)
    marks: dict[str, Any] = {"object_marking_refs": [MARKING_ID_BY_TLP[tlp]]}
    if tlp == "red":
        recipients = {str(r) for r in source.get("recipients") or []}
        recipients.add(str(source.get("agency")))
        marks[RECIPIENTS_PROPERTY] = sorted(recipients - {sighter})
    return marks


def own_false_positives(view: Mapping[str, Any], agency: str) -> list[dict[str, Any]]:
    """The live false-positive sightings of ``agency`` in a record view."""
    return [
        s
        for s in view.get("sightings") or []
        if isinstance(s, dict)
        and s.get("sighting_type") == FALSE_POSITIVE
        and s.get("agency") == agency
        and not s.get("revoked")
    ]


def withdrawal_of(obj: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The next version of a sighting, revoked (STIX 2.1 3.6: revocation is a new version)."""
    modified = parse_timestamp(str(obj.get("modified") or obj["created"]))
    at = max(now, modified + timedelta(milliseconds=1))
    return dict(obj) | {"modified": format_timestamp(at), "revoked": True}


#: Custom property carrying why an agency ended its own report early (optional).
END_REASON = "x_threatbay_end_reason"


def ended_now(obj: Mapping[str, Any], now: datetime, reason: str | None) -> dict[str, Any]:
    """The next version of an indicator, valid until ``now`` (MISP's sighting type 2).

    STIX 2.1 4.1: ``valid_until`` is when the indicator stops being valid; the
    creator ends its own report with a new version (ownership applies on ingest).
    """
    modified = parse_timestamp(str(obj.get("modified") or obj["created"]))
    at = max(now, modified + timedelta(milliseconds=1))
    out = dict(obj) | {"modified": format_timestamp(at), "valid_until": format_timestamp(now)}
    if reason:
        out[END_REASON] = reason
    return out
