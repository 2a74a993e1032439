"""Field types of every index, the one source for ES mappings and embedded indexes.

Only declared fields are searchable/sortable; the rest of a document is kept
as stored. Types: ``keyword`` (exact, also arrays of keywords; timestamps are
keywords in the fixed form ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so they sort as
text the same way in every backend), ``long``, ``double``, ``boolean``,
``text`` (full-text / substring search).
"""

from __future__ import annotations

from typing import Literal

from core import names

FieldType = Literal["keyword", "long", "double", "boolean", "text"]

SCHEMAS: dict[str, dict[str, FieldType]] = {
    names.INDEX_INDICATORS: {
        "key": "keyword",
        "observable_type": "keyword",
        "value": "keyword",
        "state": "keyword",
        "score": "double",
        "base": "double",
        "agencies": "keyword",
        "jurisdictions": "keyword",
        "agency_count": "long",
        "jurisdiction_count": "long",
        "tlp": "keyword",
        "first_seen": "keyword",
        "last_seen": "keyword",
        "last_activity": "keyword",
        "created_day": "keyword",
        "stix_ids": "keyword",
        "malware": "keyword",
        "campaigns": "keyword",
        "intrusion_sets": "keyword",
        "warninglist_hits": "keyword",
        "sighted": "boolean",
        "labels": "keyword",
        "audience": "keyword",
        "next_rescore_at": "keyword",
        # core/views.py: who reads this document; the record a partial view belongs to;
        # the earliest re-score of any view of a record (record documents only).
        "readers": "keyword",
        "view_of": "keyword",
        "rescore_due": "keyword",
        # core/record_indicators.py: the view's version in the ``records`` TAXII collection
        "changed_at": "keyword",
        "indicator_id": "keyword",
    },
    names.INDEX_OBJECTS: {
        "id": "keyword",
        "type": "keyword",
        "spec_version": "keyword",
        "version": "keyword",
        "date_added": "keyword",
        "collections": "keyword",
        "agency": "keyword",
        "jurisdiction": "keyword",
        "tlp": "keyword",
        "audience": "keyword",
        "is_latest": "boolean",
        "is_first": "boolean",
        "deleted": "boolean",
        "version_tags": "keyword",
        "sighting_of_ref": "keyword",
        "source_ref": "keyword",
        "target_ref": "keyword",
        "relationship_type": "keyword",
    },
    names.INDEX_ALERTS: {
        "id": "keyword",
        "level": "keyword",
        "level_rank": "long",
        "status": "keyword",
        "rule": "keyword",
        "category": "keyword",
        "jurisdictions": "keyword",
        "agencies": "keyword",
        "overdue_jurisdictions": "keyword",
        "pending_jurisdictions": "keyword",
        "dedup_key": "keyword",
        "tlp": "keyword",
        "audience": "keyword",
        "created": "keyword",
        "updated": "keyword",
        "created_day": "keyword",
        "title": "text",
        "indicator_keys": "keyword",
        "family": "keyword",
        "closed_at": "keyword",
        "incident": "boolean",
        "next_deadline": "keyword",
        "next_update_due": "keyword",
        "readers": "keyword",
    },
    names.INDEX_ALERT_HEADS: {
        "dedup_key": "keyword",
    },
    names.INDEX_ALERT_EVENTS: {
        "id": "keyword",
        "stream_seq": "long",
        "alert_id": "keyword",
        "type": "keyword",
        "at": "keyword",
        "level": "keyword",
        "jurisdictions": "keyword",
        "audience": "keyword",
        "readers": "keyword",
    },
    names.INDEX_DELIVERIES: {
        "id": "keyword",
        "state": "keyword",
        "agency": "keyword",
        "jurisdiction": "keyword",
        "alert_id": "keyword",
        "event_id": "keyword",
        "event_type": "keyword",
        "attempts": "long",
        "next_attempt_at": "keyword",
        "created": "keyword",
        "updated": "keyword",
    },
    names.INDEX_WEBHOOKS: {
        "agency_id": "keyword",
        "jurisdiction": "keyword",
        "active": "boolean",
    },
    names.INDEX_AUDIT: {
        "at": "keyword",
        "action": "keyword",
        "actor_agency": "keyword",
        "actor_jurisdiction": "keyword",
        "target": "keyword",
        "record_key": "keyword",
        "source_agency": "keyword",
        "source_jurisdiction": "keyword",
        "to_agency": "keyword",
        "to_jurisdiction": "keyword",
        "cross_border": "boolean",
        "rule": "keyword",
        "purpose": "keyword",
        "redacted": "boolean",
    },
    names.INDEX_AGENCIES: {
        "kind": "keyword",
        "agency_id": "keyword",
        "jurisdiction": "keyword",
        "key_id": "keyword",
        "revoked": "boolean",
    },
    names.INDEX_STATUS: {
        "id": "keyword",
        "agency": "keyword",
        "request_timestamp": "keyword",
    },
    names.INDEX_CHANGE_OUTBOX: {
        "at": "keyword",
        "kind": "keyword",
    },
    names.INDEX_CASES: {
        "id": "keyword",
        "status": "keyword",
        "severity": "keyword",
        "incident_type": "keyword",
        "participant_ids": "keyword",
        "proposed_jurisdictions": "keyword",
        "alert_ids": "keyword",
        "record_keys": "keyword",
        "source_alert": "keyword",
        "created": "keyword",
        "next_deadline": "keyword",
        "title": "text",
    },
    names.INDEX_CASE_EVENTS: {
        "id": "keyword",
        "stream_seq": "long",
        "case_id": "keyword",
        "type": "keyword",
        "at": "keyword",
    },
    names.INDEX_HEALTH: {
        "process": "keyword",
        "beat_at": "keyword",
    },
    names.INDEX_ALLOWLISTS: {
        "kind": "keyword",
        "agency_id": "keyword",
        "entry_kind": "keyword",
        "added_at": "keyword",
    },
    names.INDEX_FEED_CURSORS: {
        "feed": "keyword",
        "kind": "keyword",
        "updated": "keyword",
    },
}


def schema(index: str) -> dict[str, FieldType]:
    """Declared fields of ``index`` (indices not listed here have none)."""
    return SCHEMAS.get(index, {})
