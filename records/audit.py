"""The append-only audit trail: every write, every read of a marked record, every release.

Entries are buffered and written in bulk by a background flusher so a lookup
does not wait on an audit write; ``flush()`` drains the buffer (shutdown,
tests, and a stage that must have its entries durable before it commits).

Two kinds of entry, each built in one place:
- ``action_entry``: who did what to which target (acknowledge, register a
  webhook, open a stream...);
- ``release_entry``: one thing released to one party — what, from which
  source, to whom, whether it crossed a border, redacted or not, under which
  rule (DOMAIN.md "Sharing": every cross-border release is logged). Records
  read through the API, objects served over TAXII and alerts notified by
  webhook all use it, so an auditor reads one shape.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from core import names
from core.access import Principal
from core.clock import Clock, format_timestamp
from core.ports import Put, Range, Sort, Store, Term
from core.ports import Query as StoreQuery

log = logging.getLogger("threatbay.audit")


class AuditEntry(TypedDict, total=False):
    """One line of the audit trail (index ``threatbay-audit``)."""

    at: str
    action: str
    purpose: str
    actor_agency: str
    actor_jurisdiction: str | None
    actor_key_id: str
    to_agency: str
    to_jurisdiction: str
    record_key: str | list[str] | None
    target: str | None
    source_agency: str | None
    source_jurisdiction: str | list[str] | None
    tlp: str | None
    cross_border: bool
    redacted: bool
    rule: str
    count: int
    resume_from: str | None


@dataclass(frozen=True, slots=True)
class Party:
    """Who acts or receives: an agency and its jurisdiction (the platform: jurisdiction None)."""

    agency: str
    jurisdiction: str | None

    @classmethod
    def of(cls, principal: Principal) -> Party:
        return cls(principal.agency.id, principal.agency.jurisdiction)


PLATFORM = Party("threatbay", None)


def action_entry(action: str, principal: Principal, target: str | None, **extra: Any) -> AuditEntry:
    """One action of an authenticated caller."""
    entry: dict[str, Any] = {
        "action": action,
        "actor_agency": principal.agency.id,
        "actor_jurisdiction": principal.agency.jurisdiction,
        "actor_key_id": principal.key_id,
        "target": target,
        **extra,
    }
    return entry  # type: ignore[return-value]


def release_entry(
    *,
    action: str,
    purpose: str,
    actor: Party,
    to: Party,
    target: str | None,
    source_agency: str | None,
    source_jurisdictions: Iterable[str | None],
    tlp: str | None,
    redacted: bool,
    rule: str,
    record_key: str | list[str] | None = None,
) -> AuditEntry:
    """One thing released to ``to`` (module docstring); crossing is computed, never passed."""
    sources = sorted({j for j in source_jurisdictions if j})
    entry: AuditEntry = {
        "action": action,
        "purpose": purpose,
        "actor_agency": actor.agency,
        "actor_jurisdiction": actor.jurisdiction,
        "to_agency": to.agency,
        "to_jurisdiction": to.jurisdiction or "",
        "record_key": record_key,
        "target": target,
        "source_agency": source_agency,
        "source_jurisdiction": sources[0] if len(sources) == 1 else sources,
        "tlp": tlp,
        "cross_border": any(j != to.jurisdiction for j in sources),
        "redacted": redacted,
        "rule": rule,
    }
    return entry


def record_release_entries(
    principal: Principal, action: str, view: Mapping[str, Any], purpose: str
) -> list[AuditEntry]:
    """One release entry per source report (and sighting) of a record view shown to a caller."""
    sharing = view.get("sharing") or {}
    rule = str(sharing.get("rule", ""))
    redacted_view = bool(sharing.get("redactions")) or sharing.get("outcome") == "allow_redacted"
    party = Party.of(principal)
    return [
        release_entry(
            action=action,
            purpose=purpose,
            actor=party,
            to=party,
            record_key=view.get("key"),
            target=source.get("stix_id"),
            source_agency=source.get("agency"),
            source_jurisdictions=[source.get("jurisdiction")],
            tlp=source.get("tlp"),
            redacted=bool(source.get("redacted")) or redacted_view or rule.startswith("redact"),
            rule=rule,
        )
        for source in [*view.get("sources", []), *view.get("sightings", [])]
    ]


#: Entries written per store write: a bounded write keeps the store's writer lock short.
FLUSH_BATCH = 2000
#: Entries buffered before appending waits for the flusher (backpressure, never a drop).
MAX_BUFFERED = 20_000


class AuditLog:
    """Buffered, append-only writer of audit entries.

    The flusher drains the buffer in writes of ``FLUSH_BATCH`` entries; when
    more than ``MAX_BUFFERED`` wait, ``append`` waits (up to a few seconds) for
    the flusher rather than let the buffer grow: under load on the embedded
    store the buffer outgrew the flusher, grew by hundreds of MiB in ten
    minutes, and its ever larger writes held the store's writer lock past
    TAXII clients' timeouts (issue #17).
    """

    def __init__(self, store: Store, clock: Clock, flush_every_s: float = 0.2) -> None:
        self.store = store
        self.clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._flush_every_s = flush_every_s
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background flusher (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_every_s):
            try:
                while self._flush_batch() >= FLUSH_BATCH:
                    pass  # more is waiting: write it now
            except Exception:  # the audit flusher must not die; entries stay buffered
                log.exception("audit flush failed; will retry")

    def append(self, entries: Iterable[AuditEntry]) -> None:
        at = format_timestamp(self.clock.now())
        with self._lock:
            if self._thread is not None and len(self._buffer) >= MAX_BUFFERED:
                self._drained.wait_for(lambda: len(self._buffer) < MAX_BUFFERED, timeout=5.0)
            for entry in entries:
                self._buffer.append({"at": at, **entry})

    def record(self, action: str, principal: Principal, target: str | None, **extra: Any) -> None:
        """Append one ``action_entry``."""
        self.append([action_entry(action, principal, target, **extra)])

    def record_access(
        self,
        principal: Principal,
        action: str,
        views: Iterable[Mapping[str, Any]],
        purpose: str = "read",
    ) -> None:
        """Audit a release of record ``views`` (as shown) to ``principal``."""
        entries = [e for v in views for e in record_release_entries(principal, action, v, purpose)]
        if not entries:
            entries = [action_entry(action, principal, None, purpose=purpose)]
        self.append(entries)

    def flush(self) -> int:
        """Write every buffered entry (in writes of ``FLUSH_BATCH``); how many were written."""
        total = 0
        while n := self._flush_batch():
            total += n
        return total

    def _flush_batch(self) -> int:
        """Write up to ``FLUSH_BATCH`` buffered entries; how many were written."""
        with self._lock:
            batch, self._buffer = self._buffer[:FLUSH_BATCH], self._buffer[FLUSH_BATCH:]
            self._drained.notify_all()
        if not batch:
            return 0
        try:
            self.store.put_many(
                names.INDEX_AUDIT,
                [Put(key=f"{e['at']}|{uuid.uuid4().hex}", doc=e, expected=None) for e in batch],
            )
        except Exception:
            with self._lock:
                self._buffer[:0] = batch
            raise
        return len(batch)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        self.flush()


def _all(store: Store, index: str, filters: tuple[Any, ...], limit: int = 10_000) -> list[Any]:
    hits: list[Any] = []
    after = None
    while len(hits) < limit:
        page = store.search(
            index, StoreQuery(filters=filters, sort=(Sort("at"),), limit=500, after=after)
        )
        hits.extend(page.hits)
        if not page.more or not page.hits:
            break
        after = page.hits[-1].cursor
    return hits[:limit]


_TRACED_SOURCE = (
    "agency",
    "jurisdiction",
    "stix_id",
    "modified",
    "tlp",
    "revoked",
    "first_seen",
    "last_seen",
)


def trace(store: Store, record: Mapping[str, Any]) -> dict[str, Any]:
    """A record back to each source report (and its versions) and forward to every release."""
    ids = tuple(record.get("stix_ids", []))
    versions: list[dict[str, Any]] = []
    if ids:
        page = store.search(
            names.INDEX_OBJECTS,
            StoreQuery(filters=(Term("id", ids),), sort=(Sort("date_added"),), limit=1000),
        )
        versions = [
            {
                "id": h.doc["id"],
                "version": h.doc.get("version"),
                "date_added": h.doc.get("date_added"),
                "agency": h.doc.get("agency"),
                "jurisdiction": h.doc.get("jurisdiction"),
                "tlp": h.doc.get("tlp"),
                "request_id": (h.doc.get("provenance") or {}).get("request_id"),
            }
            for h in page.hits
        ]
    releases = [
        h.doc for h in _all(store, names.INDEX_AUDIT, (Term("record_key", (record["key"],)),))
    ]
    return {
        "key": record["key"],
        "sources": [{k: s.get(k) for k in _TRACED_SOURCE} for s in record.get("sources", [])],
        "versions": versions,
        "releases": releases,
        "reached": sorted(
            {(r.get("to_agency"), r.get("to_jurisdiction")) for r in releases if r.get("to_agency")}
        ),
    }


def export(store: Store, since: str | None, until: str | None, limit: int) -> list[dict[str, Any]]:
    """Audit entries in a time range, oldest first (admin export)."""
    filters: tuple[Any, ...] = (Range("at", gte=since, lte=until),) if (since or until) else ()
    return [h.doc for h in _all(store, names.INDEX_AUDIT, filters, limit)]
