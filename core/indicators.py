"""The indicator record: one stored document per canonical observable key (DOMAIN.md "Sameness").

These are the typed shapes that cross rooms: the correlator builds them
(correlate/merge.py, correlate/score.py), records/ stores them, the sharing
policy decides on them (core/policy.py) and the API shows them. ``total=False``
because a record is built up field by field and older stored records may lack
a field added later; a misspelt key still fails type-checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast


class SourceEntry(TypedDict, total=False):
    """One source's report on a record: the latest version of one indicator of one agency."""

    agency: str
    jurisdiction: str
    source_kind: str
    stix_id: str
    modified: str | None
    confidence: int | None
    tlp: str
    tlp_defaulted: bool
    recipients: list[str]
    valid_from: str | None
    valid_until: str | None
    revoked: bool
    labels: list[str]
    kill_chain_phases: list[Any]
    first_seen: str
    last_seen: str
    source_path: str
    pattern: str | None
    description: str | None
    name: str | None
    granular: dict[str, str]
    #: every observable type of the report's pattern (what may cross is decided on all)
    observable_types: list[str]


class SightingEntry(TypedDict, total=False):
    """One sighting (its latest version) attached to a record."""

    agency: str
    jurisdiction: str
    stix_id: str
    modified: str | None
    count: int
    first_seen: str
    last_seen: str
    tlp: str
    recipients: list[str]
    revoked: bool
    of: str | None


class LinkEntry(TypedDict, total=False):
    """One ``indicates`` relationship from an indicator of the record to a malware,
    campaign or intrusion set, with its source and marking (``of``: the indicator)."""

    field: str
    ref: str
    agency: str
    jurisdiction: str
    stix_id: str
    modified: str | None
    tlp: str
    recipients: list[str]
    revoked: bool
    of: str


class IndicatorRecord(TypedDict, total=False):
    """The stored record of one canonical key (index ``threatbay-indicators``)."""

    key: str
    observable_type: str
    path: str
    value: str
    sources: list[SourceEntry]
    sightings: list[SightingEntry]
    malware: list[str]
    campaigns: list[str]
    intrusion_sets: list[str]
    agencies: list[str]
    jurisdictions: list[str]
    agency_count: int
    jurisdiction_count: int
    stix_ids: list[str]
    tlp: str
    labels: list[str]
    sighted: bool
    first_seen: str | None
    last_seen: str | None
    created_day: str | None
    last_report_at: str | None
    last_sighting_at: str | None
    score: float
    state: str
    components: dict[str, Any]
    explanation: str
    next_rescore_at: str | None
    warninglist_hits: list[str]
    links: list[LinkEntry]
    #: core/views.py: who reads this document, the other views, their bookkeeping
    readers: list[str]
    views: list[dict[str, Any]]
    basis: str
    rev: int
    rescore_due: str | None
    view_of: str
    audience: list[str]


class RecordChange(TypedDict, total=False):
    """What the correlator / re-score announce on ``intel.records.changes`` per changed record."""

    key: str
    kinds: list[str]
    at: str
    cause: str
    record: IndicatorRecord
    #: the exact view tokens (core/views.py) whose view of the record this is; absent
    #: on changes made before views existed (the alert engine then decides itself)
    readers: list[str]
    #: the document holding that view (the record key, or ``<key>#<hash>``)
    view: str


def record_change(
    key: str,
    kinds: list[str],
    at: str,
    record: Mapping[str, Any],
    cause: str | None = None,
    *,
    readers: list[str] | None = None,
    view: str | None = None,
) -> RecordChange:
    """One change of a record as announced: the view as just written, and who has it."""
    change: RecordChange = {
        "key": key,
        "kinds": kinds,
        "at": at,
        "record": cast(IndicatorRecord, record),
    }
    if cause is not None:
        change["cause"] = cause
    if readers is not None:
        change["readers"] = readers
    if view is not None:
        change["view"] = view
    return change
