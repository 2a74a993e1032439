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

from core.errors import InvalidPattern
from core.markings import granular_tlps, most_restrictive, red_recipients, tlp_of
from core.observables import Observable
from core.patterns import parse_pattern
from core.provenance import Provenance
from core.stix import FALSE_POSITIVE, SIGHTING_TYPE

Record = dict[str, Any]
Report = dict[str, Any]


#: A record keeps a bounded view of each report: one object with N comparisons makes N
#: records, so anything stored per record in proportion to the object would make the
#: storage of one push quadratic (a 1.1 MB pattern of 30,000 OR-ed addresses wrote
#: 14 GB). The whole object is kept once, in the objects index (TAXII), which the
#: record names by ``stix_id`` and ``modified``.
MAX_REPORT_TEXT = 1000
MAX_REPORT_ITEMS = 50


def _bounded_text(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_REPORT_TEXT:
        return value[:MAX_REPORT_TEXT] + "…"
    return value


def _bounded_items(values: Any) -> list[Any]:
    return [_bounded_text(v) for v in list(values or [])[:MAX_REPORT_ITEMS]]


def _as_reported(obj: Mapping[str, Any]) -> str | None:
    """The pattern as written when it is one comparison (the spelling an analyst compares);
    a pattern of several is stored once, with its object, never in each of its records."""
    pattern = obj.get("pattern")
    if not isinstance(pattern, str) or len(pattern) > MAX_REPORT_TEXT:
        return None
    try:
        simple = parse_pattern(pattern).simple
    except InvalidPattern:
        return None
    return pattern if simple is not None and len(simple) == 1 else None


def source_report(obj: Mapping[str, Any], provenance: Provenance, observable: Observable) -> Report:
    """The per-source view of one indicator version that a record keeps (bounded in size)."""
    tlp, defaulted = tlp_of(obj)
    return {
        "agency": provenance.agency,
        "jurisdiction": provenance.jurisdiction,
        "source_kind": provenance.source_kind,
        "stix_id": obj["id"],
        "modified": obj.get("modified") or obj.get("created"),
        "confidence": obj.get("confidence"),
        "tlp": tlp,
        "tlp_defaulted": defaulted,
        "recipients": list(red_recipients(obj)),
        "valid_from": obj.get("valid_from"),
        "valid_until": obj.get("valid_until"),
        "revoked": bool(obj.get("revoked", False)),
        "labels": _bounded_items(obj.get("labels") or obj.get("indicator_types")),
        "kill_chain_phases": [
            {k: _bounded_text(v) for k, v in phase.items()} if isinstance(phase, dict) else phase
            for phase in list(obj.get("kill_chain_phases") or [])[:MAX_REPORT_ITEMS]
        ],
        "first_seen": provenance.received_at,
        "last_seen": provenance.received_at,
        "source_path": observable.source_path,
        "pattern": _as_reported(obj),
        "description": _bounded_text(obj.get("description")),
        "name": _bounded_text(obj.get("name")),
    } | _granular(obj)


def _granular(obj: Mapping[str, Any]) -> Report:
    """The granular TLP markings of ``obj`` by selector (core/views.py cuts fields by them)."""
    found = granular_tlps(obj)
    return {"granular": dict(sorted(found.items()))} if found else {}


def sighting_report(obj: Mapping[str, Any], provenance: Provenance) -> Report:
    """The per-source view of one sighting version."""
    tlp, _ = tlp_of(obj)
    return {
        "agency": provenance.agency,
        "jurisdiction": provenance.jurisdiction,
        "stix_id": obj["id"],
        "modified": obj.get("modified") or obj.get("created"),
        "count": int(obj.get("count", 1) or 1),
        "first_seen": obj.get("first_seen") or provenance.received_at,
        "last_seen": obj.get("last_seen") or obj.get("first_seen") or provenance.received_at,
        "tlp": tlp,
        "recipients": list(red_recipients(obj)),
        "revoked": bool(obj.get("revoked", False)),
        "of": obj.get("sighting_of_ref"),
    } | _sighting_type(obj)


def _sighting_type(obj: Mapping[str, Any]) -> Report:
    if obj.get(SIGHTING_TYPE) != FALSE_POSITIVE:
        return {}
    return {"sighting_type": FALSE_POSITIVE, "reason": _bounded_text(obj.get("description"))}


def is_false_positive(sighting: Mapping[str, Any]) -> bool:
    """A false-positive sighting (counter-evidence, never a sighting that raises a score)."""
    return sighting.get("sighting_type") == FALSE_POSITIVE


def link_report(obj: Mapping[str, Any], provenance: Provenance, field_name: str) -> Report:
    """One ``indicates`` relationship from an indicator to a malware / campaign / intrusion set.

    Kept with its source and marking: a reader sees the link only if it may see
    both the relationship and the indicator it starts from (core/views.py).
    """
    tlp, _ = tlp_of(obj)
    return {
        "field": field_name,
        "ref": obj["target_ref"],
        "agency": provenance.agency,
        "jurisdiction": provenance.jurisdiction,
        "stix_id": obj["id"],
        "modified": obj.get("modified") or obj.get("created"),
        "tlp": tlp,
        "recipients": list(red_recipients(obj)),
        "revoked": bool(obj.get("revoked", False)),
        "of": obj["source_ref"],
    }


LINK_FIELDS = ("malware", "campaigns", "intrusion_sets")


def new_record(observable: Observable) -> Record:
    return {
        "key": observable.key,
        "observable_type": observable.observable_type,
        "path": observable.path,
        "value": observable.value,
        "sources": [],
        "sightings": [],
        "links": [],
        "malware": [],
        "campaigns": [],
        "intrusion_sets": [],
    }


def _replace_versioned(items: list[Report], incoming: Report) -> bool:
    """Put ``incoming`` in ``items`` by (agency, stix_id) if it is newer; True if changed."""
    for i, existing in enumerate(items):
        if (
            existing.get("agency") == incoming["agency"]
            and existing.get("stix_id") == incoming["stix_id"]
        ):
            if existing.get("revoked") and not incoming.get("revoked"):
                return False
            if (incoming.get("modified") or "") <= (existing.get("modified") or ""):
                return False
            merged = dict(incoming)
            if "first_seen" in incoming:
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


def apply_link(record: Record, link: Report) -> bool:
    """Attach one relationship version to ``record`` in place; True if anything changed."""
    return _replace_versioned(record.setdefault("links", []), link)


def upgrade(record: Record) -> Record:
    """A record stored before links carried their source: its bare links become entries.

    They have no source, so only the view that sees every part shows them.
    """
    if "links" not in record:
        record["links"] = [
            {"field": f, "ref": ref} for f in LINK_FIELDS for ref in record.get(f) or []
        ]
    return record


def withdraw(record: Record, agency: str, stix_id: str) -> bool:
    """The source deleted its report (TAXII DELETE of every version): from now on it counts
    as revoked, as TAXII no longer has a version of it; True if anything changed."""
    changed = False
    for source in record["sources"]:
        if source["agency"] == agency and source["stix_id"] == stix_id:
            if not source.get("withdrawn"):
                source["revoked"] = source["withdrawn"] = True
                changed = True
    return changed


def restate(record: Record, report: Report) -> bool:
    """The source deleted the latest versions of its report (TAXII DELETE): the version now
    latest in TAXII replaces it, older or not; True if anything changed."""
    for i, existing in enumerate(record["sources"]):
        if existing["agency"] == report["agency"] and existing["stix_id"] == report["stix_id"]:
            restated = dict(report, first_seen=min(existing["first_seen"], report["first_seen"]))
            if restated == existing:
                return False
            record["sources"][i] = restated
            return True
    record["sources"].append(report)
    return True


def live_sources(record: Record) -> list[Report]:
    return [s for s in record["sources"] if not s.get("revoked")]


def summarise(record: Record) -> None:
    """Recompute the derived, searchable fields of ``record`` from its reports.

    One pass over the reports (this runs for every record a correlator writes).
    """
    sources: list[Report] = record["sources"]
    live_agencies: set[str] = set()
    live_jurisdictions: set[str] = set()
    agency_jurisdictions: set[str] = set()
    labels: set[str] = set()
    stix_ids: set[str] = set()
    tlps: list[Any] = []
    first_seen: str | None = None
    last_seen: str | None = None
    last_report_at: str | None = None
    for s in sources:
        stix_ids.add(s["stix_id"])
        tlps.append(s["tlp"])
        first, last = s["first_seen"], s["last_seen"]
        if first_seen is None or first < first_seen:
            first_seen = first
        if last_seen is None or last > last_seen:
            last_seen = last
        if s.get("revoked"):
            continue
        live_agencies.add(s["agency"])
        live_jurisdictions.add(s["jurisdiction"])
        # A feed is a source, not a jurisdiction's word: it never makes a report "cross-border".
        if s.get("source_kind", "agency") == "agency":
            agency_jurisdictions.add(s["jurisdiction"])
        labels.update(s.get("labels") or ())
        if last_report_at is None or last > last_report_at:
            last_report_at = last
    if live_agencies:
        shown_agencies, shown_jurisdictions = set(live_agencies), set(live_jurisdictions)
    else:
        shown_agencies = {s["agency"] for s in sources}
        shown_jurisdictions = {s["jurisdiction"] for s in sources}
    last_sighting_at: str | None = None
    sighted = False
    false_positives: list[Report] = []
    for s in record["sightings"]:
        if s.get("revoked"):
            continue  # a withdrawn sighting counts for nothing
        stix_ids.add(s["stix_id"])
        tlps.append(s["tlp"])
        if is_false_positive(s):
            false_positives.append(
                {"agency": s["agency"], "jurisdiction": s["jurisdiction"],
                 "reason": s.get("reason"), "at": s.get("modified"), "stix_id": s["stix_id"]}
            )  # fmt: skip
            continue
        first, last = s["first_seen"], s["last_seen"]
        if first_seen is None or first < first_seen:
            first_seen = first
        if last_seen is None or last > last_seen:
            last_seen = last
        sighted = True
        shown_agencies.add(s["agency"])
        shown_jurisdictions.add(s["jurisdiction"])
        if last_sighting_at is None or last > last_sighting_at:
            last_sighting_at = last
    linked: dict[str, set[str]] = {f: set() for f in LINK_FIELDS}
    for link in record.get("links") or []:
        if not link.get("revoked") and link.get("field") in linked:
            linked[link["field"]].add(link["ref"])
    for name, refs in linked.items():
        record[name] = sorted(refs)
    record["agencies"] = sorted(shown_agencies)
    record["jurisdictions"] = sorted(shown_jurisdictions)
    record["agency_count"] = len(live_agencies)
    record["jurisdiction_count"] = len(agency_jurisdictions)
    record["stix_ids"] = sorted(stix_ids)
    record["tlp"] = most_restrictive(tlps)
    record["labels"] = sorted(labels)
    record["sighted"] = sighted
    record["false_positives"] = sorted(false_positives, key=lambda f: (f["agency"], f["stix_id"]))
    record["first_seen"] = first_seen
    record["last_seen"] = last_seen
    record["created_day"] = (first_seen or "")[:10] or None
    record["last_report_at"] = last_report_at
    record["last_sighting_at"] = last_sighting_at


def change_kinds(
    before: Record | None, after: Record, score_thresholds: Iterable[float]
) -> list[str]:
    """What about this change matters to alerting (announced to the alert engine)."""
    if before is None:
        return ["new_record"]
    kinds: list[str] = []
    if set(after["agencies"]) - set(before.get("agencies", [])):
        kinds.append("new_agency")
    if set(after["jurisdictions"]) - set(before.get("jurisdictions", [])):
        kinds.append("new_jurisdiction")
    fp_after = len(after.get("false_positives") or [])
    fp_before = len(before.get("false_positives") or [])
    if fp_after > fp_before:
        kinds.append("false_positive")
    elif fp_after < fp_before:
        kinds.append("false_positive_withdrawn")
    seen_after = [s for s in after["sightings"] if not is_false_positive(s)]
    seen_before = [s for s in before.get("sightings", []) if not is_false_positive(s)]
    if len(seen_after) > len(seen_before) or any(
        a.get("modified") != b.get("modified")
        for a, b in zip(seen_after, seen_before, strict=False)
    ):
        kinds.append("new_sighting")
    if after.get("state") == "revoked" and before.get("state") != "revoked":
        kinds.append("revoked")
    old, new = float(before.get("score") or 0), float(after.get("score") or 0)
    if any((old < t) != (new < t) for t in score_thresholds):
        kinds.append("score_crossing")
    return kinds or ["updated"]


def change_basis(record: Record) -> Record:
    """What ``change_kinds`` compares of a record before a change (a copy of just that).

    Lets the correlator merge into a record it has just read in place, without a
    deep copy of every report.
    """
    return {
        "agencies": list(record.get("agencies", [])),
        "jurisdictions": list(record.get("jurisdictions", [])),
        "sightings": [
            {"modified": s.get("modified"), "sighting_type": s.get("sighting_type")}
            for s in record.get("sightings", [])
        ],
        "state": record.get("state"),
        "score": record.get("score"),
        "false_positives": list(record.get("false_positives") or []),
    }
