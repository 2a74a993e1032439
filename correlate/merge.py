"""Merge source reports into one record per canonical observable (DOMAIN.md "Sameness").

Pure functions over plain dicts: the worker decodes, calls these, writes.

A record keeps every source report, keyed by (agency, STIX id):
- a newer ``modified`` of the same STIX id replaces that source's report;
- an older or equal version arriving late changes nothing (replay-safe);
- revocation by the creator withdraws the report (kept, marked revoked, so a
  late older version cannot resurrect it).
Sightings attach to the record and reset decay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from core.markings import most_restrictive, red_recipients, tlp_of
from core.observables import Observable
from core.provenance import Provenance

Record = dict[str, Any]
Report = dict[str, Any]


def source_report(obj: Mapping[str, Any], provenance: Provenance, observable: Observable) -> Report:
    """The per-source view of one indicator version that a record keeps."""
    tlp, defaulted = tlp_of(dict(obj))
    return {
        "agency": provenance.agency,
        "jurisdiction": provenance.jurisdiction,
        "source_kind": provenance.source_kind,
        "stix_id": obj["id"],
        "modified": obj.get("modified") or obj.get("created"),
        "confidence": obj.get("confidence"),
        "tlp": tlp,
        "tlp_defaulted": defaulted,
        "recipients": list(red_recipients(dict(obj))),
        "valid_from": obj.get("valid_from"),
        "valid_until": obj.get("valid_until"),
        "revoked": bool(obj.get("revoked", False)),
        "labels": list(obj.get("labels") or obj.get("indicator_types") or []),
        "kill_chain_phases": list(obj.get("kill_chain_phases") or []),
        "first_seen": provenance.received_at,
        "last_seen": provenance.received_at,
        "source_path": observable.source_path,
        "pattern": obj.get("pattern"),
        "description": obj.get("description"),
        "name": obj.get("name"),
    }


def sighting_report(obj: Mapping[str, Any], provenance: Provenance) -> Report:
    """The per-source view of one sighting version."""
    tlp, _ = tlp_of(dict(obj))
    return {
        "agency": provenance.agency,
        "jurisdiction": provenance.jurisdiction,
        "stix_id": obj["id"],
        "modified": obj.get("modified") or obj.get("created"),
        "count": int(obj.get("count", 1) or 1),
        "first_seen": obj.get("first_seen") or provenance.received_at,
        "last_seen": obj.get("last_seen") or obj.get("first_seen") or provenance.received_at,
        "tlp": tlp,
        "recipients": list(red_recipients(dict(obj))),
        "revoked": bool(obj.get("revoked", False)),
    }


def new_record(observable: Observable) -> Record:
    return {
        "key": observable.key,
        "observable_type": observable.observable_type,
        "path": observable.path,
        "value": observable.value,
        "sources": [],
        "sightings": [],
        "malware": [],
        "campaigns": [],
        "intrusion_sets": [],
    }


def _replace_versioned(items: list[Report], incoming: Report) -> bool:
    """Put ``incoming`` in ``items`` by (agency, stix_id) if it is newer; True if changed."""
    for i, existing in enumerate(items):
        if existing["agency"] == incoming["agency"] and existing["stix_id"] == incoming["stix_id"]:
            if existing.get("revoked") and not incoming.get("revoked"):
                return False
            if (incoming.get("modified") or "") <= (existing.get("modified") or ""):
                return False
            merged = dict(incoming)
            merged["first_seen"] = min(existing["first_seen"], incoming["first_seen"])
            items[i] = merged
            return True
    items.append(incoming)
    return True


def apply_report(record: Record, report: Report) -> bool:
    """Merge one indicator version into ``record`` in place; True if anything changed."""
    return _replace_versioned(record["sources"], report)


def apply_sighting(record: Record, sighting: Report) -> bool:
    """Attach one sighting version to ``record`` in place; True if anything changed."""
    return _replace_versioned(record["sightings"], sighting)


def link(record: Record, field: str, ref: str) -> bool:
    """Link a malware / campaign / intrusion-set id to ``record``; True if new."""
    refs: list[str] = record.setdefault(field, [])
    if ref in refs:
        return False
    refs.append(ref)
    refs.sort()
    return True


def live_sources(record: Record) -> list[Report]:
    return [s for s in record["sources"] if not s.get("revoked")]


def summarise(record: Record) -> None:
    """Recompute the derived, searchable fields of ``record`` from its reports."""
    sources: list[Report] = record["sources"]
    sightings = [s for s in record["sightings"] if not s.get("revoked")]
    live = live_sources(record)
    shown = live or sources
    record["agencies"] = sorted({s["agency"] for s in shown} | {s["agency"] for s in sightings})
    record["jurisdictions"] = sorted(
        {s["jurisdiction"] for s in shown} | {s["jurisdiction"] for s in sightings}
    )
    record["agency_count"] = len({s["agency"] for s in live})
    # A feed is a source, not a jurisdiction's word: it never makes a report "cross-border".
    record["jurisdiction_count"] = len(
        {s["jurisdiction"] for s in live if s.get("source_kind", "agency") == "agency"}
    )
    record["stix_ids"] = sorted({s["stix_id"] for s in sources} | {s["stix_id"] for s in sightings})
    record["tlp"] = most_restrictive([s["tlp"] for s in sources] + [s["tlp"] for s in sightings])
    record["labels"] = sorted({label for s in live for label in s.get("labels", [])})
    record["sighted"] = bool(sightings)
    seen = [s["first_seen"] for s in sources] + [s["first_seen"] for s in sightings]
    last = [s["last_seen"] for s in sources] + [s["last_seen"] for s in sightings]
    record["first_seen"] = min(seen) if seen else None
    record["last_seen"] = max(last) if last else None
    record["created_day"] = (record["first_seen"] or "")[:10] or None
    record["last_report_at"] = max((s["last_seen"] for s in live), default=None)
    record["last_sighting_at"] = max((s["last_seen"] for s in sightings), default=None)


def change_kinds(
    before: Record | None, after: Record, score_thresholds: Iterable[float]
) -> list[str]:
    """What about this change matters to alerting (issue 4: emitted for the alert engine)."""
    if before is None:
        return ["new_record"]
    kinds: list[str] = []
    if set(after["agencies"]) - set(before.get("agencies", [])):
        kinds.append("new_agency")
    if set(after["jurisdictions"]) - set(before.get("jurisdictions", [])):
        kinds.append("new_jurisdiction")
    if len(after["sightings"]) > len(before.get("sightings", [])) or any(
        a.get("modified") != b.get("modified")
        for a, b in zip(after["sightings"], before.get("sightings", []), strict=False)
    ):
        kinds.append("new_sighting")
    if after.get("state") == "revoked" and before.get("state") != "revoked":
        kinds.append("revoked")
    old, new = float(before.get("score") or 0), float(after.get("score") or 0)
    if any((old < t) != (new < t) for t in score_thresholds):
        kinds.append("score_crossing")
    return kinds or ["updated"]


def copy_record(record: Record) -> Record:
    """A deep copy (JSON round trip: records are JSON by construction, and it is ~5x deepcopy)."""
    copied: Record = orjson.loads(orjson.dumps(record))
    return copied
