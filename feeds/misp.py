"""Pull a MISP feed (``manifest.json`` + ``<uuid>.json`` events), converted by misp-stix.

A MISP feed directory lists its events in ``manifest.json`` (event uuid ->
metadata with a Unix ``timestamp`` that changes whenever the event does).
Incremental by timestamp: events are taken in (timestamp, uuid) order and the
cursor ``<timestamp>:<uuid>`` names the last event ingest accepted, so a
restart resumes at the next event, an updated event (new timestamp) is pulled
again, and two events with the same timestamp are never skipped.

Conversion is misp-stix's ``MISPtoSTIX21Parser``, the converter MISP itself
uses for STIX 2.1 export. A MISP event's ``tlp:*`` tag marks the whole event,
but misp-stix puts that marking on the report only; the event's other
objects inherit it here (so they are not given the feed default instead).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from misp_stix_converter import MISPtoSTIX21Parser

from core.markings import tlp_of_marking_refs
from core.provenance import Tlp
from feeds.base import Batch
from feeds.config import FeedConfig
from feeds.http import MalformedFeed, get_bytes, session_for
from feeds.prepare import with_default_tlp


def parse_cursor(cursor: str | None) -> tuple[int, str]:
    """``"<timestamp>:<uuid>"`` -> (timestamp, uuid); (-1, "") before the first pull."""
    if not cursor:
        return -1, ""
    stamp, _, uuid = cursor.partition(":")
    return int(stamp), uuid


def pending_events(manifest: Any, cursor: str | None) -> list[tuple[int, str]]:
    """(timestamp, uuid) of events after ``cursor``, oldest first."""
    if not isinstance(manifest, dict):
        raise MalformedFeed("manifest.json is not a JSON object of event uuid -> metadata")
    after = parse_cursor(cursor)
    events: list[tuple[int, str]] = []
    for uuid, meta in manifest.items():
        try:
            stamp = int(meta["timestamp"])
        except (TypeError, KeyError, ValueError):
            raise MalformedFeed(f"manifest entry {uuid!r} has no integer timestamp") from None
        if (stamp, uuid) > after:
            events.append((stamp, uuid))
    return sorted(events)


def event_to_stix(event: Any) -> list[dict[str, Any]]:
    """STIX 2.1 objects of one MISP event (``{"Event": {...}}``) via misp-stix."""
    if not isinstance(event, dict) or not isinstance(event.get("Event", event), dict):
        raise MalformedFeed("an event file is not a MISP event JSON object")
    parser = MISPtoSTIX21Parser()
    try:
        parser.parse_misp_event(event)
        bundle = json.loads(parser.bundle.serialize())
    except Exception as exc:  # misp-stix raises many types; any of them means bad input
        raise MalformedFeed(f"misp-stix could not convert the event: {exc}") from exc
    objects: list[dict[str, Any]] = bundle.get("objects", [])
    if not objects:  # misp-stix records load errors instead of raising
        errors = [m for messages in dict(parser.errors).values() for m in messages]
        raise MalformedFeed("; ".join(errors) or "misp-stix produced no STIX objects")
    return objects


def inherit_event_tlp(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give the event's TLP (on its report) to the event's unmarked objects."""
    event_tlp: Tlp | None = None
    for obj in objects:
        if obj.get("type") == "report":
            event_tlp = tlp_of_marking_refs(obj.get("object_marking_refs") or [])
            break
    if event_tlp is None:
        return objects
    return [with_default_tlp(obj, event_tlp) for obj in objects]


class MispPuller:
    """One MISP feed directory served over HTTP(S)."""

    def __init__(self, feed: FeedConfig) -> None:
        self.feed = feed
        self.base = feed.url.rstrip("/")
        self.session = session_for(feed)

    def _json(self, url: str) -> Any:
        body, _ = get_bytes(self.session, url)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise MalformedFeed(f"{url} is not JSON: {exc}") from None

    def batches(self, cursor: str | None) -> Iterator[Batch]:
        """One batch per new or updated event, oldest first."""
        manifest = self._json(f"{self.base}/manifest.json")
        for stamp, uuid in pending_events(manifest, cursor):
            event = self._json(f"{self.base}/{uuid}.json")
            position = f"{stamp}:{uuid}"
            try:
                objects = inherit_event_tlp(event_to_stix(event))
            except MalformedFeed as exc:
                # Valid JSON that misp-stix cannot convert will never convert: report
                # it and move on rather than block the feed behind it forever.
                yield Batch([], position, f"event {uuid}", (f"event {uuid}: {exc}",))
                continue
            yield Batch(objects=objects, cursor=position, label=f"event {uuid}")

    def close(self) -> None:
        self.session.close()
