"""Topic and index names, in one place (ARCHITECTURE.md)."""

from __future__ import annotations

TOPIC_RAW = "intel.stix.raw"
TOPIC_DLQ = "intel.dlq"
TOPIC_ALERTS = "intel.alerts"
TOPIC_CHANGES = "intel.records.changes"

INDEX_INDICATORS = "threatbay-indicators"
INDEX_OBJECTS = "threatbay-objects"
INDEX_OBJECT_VERSIONS = "threatbay-object-versions"
INDEX_ALERTS = "threatbay-alerts"
INDEX_ALERT_HEADS = "threatbay-alert-heads"
INDEX_AUDIT = "threatbay-audit"
INDEX_AGENCIES = "threatbay-agencies"
INDEX_STATUS = "threatbay-taxii-status"
INDEX_FEED_CURSORS = "threatbay-feed-cursors"
INDEX_ALERT_EVENTS = "threatbay-alert-events"
INDEX_DELIVERIES = "threatbay-deliveries"
INDEX_WEBHOOKS = "threatbay-webhooks"
INDEX_CHANGE_OUTBOX = "threatbay-change-outbox"

GROUP_CORRELATOR = "threatbay-correlator"
GROUP_ALERTER = "threatbay-alerter"
GROUP_NOTIFIER = "threatbay-notifier"
