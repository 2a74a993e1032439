"""The append-only audit trail: every write, every read of a marked record, every release.

Entries are buffered and written in bulk by a background flusher so a lookup
does not wait on an audit write; ``flush()`` drains the buffer (shutdown,
tests). Each release of a record names what, from which source, to whom,
whether it crossed a border and under which rule (DOMAIN.md "Sharing").
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require_role
from api.errors import ERROR_RESPONSES
from api.taxii.errors import TaxiiError
from core import names
from core.access import Principal
from core.clock import Clock, format_timestamp
from core.ports import Put, Range, Sort, Store, Term
from core.ports import Query as StoreQuery

if TYPE_CHECKING:
    from threatbay.bootstrap import Services

log = logging.getLogger("threatbay.audit")


class AuditLog:
    """Buffered, append-only writer of audit entries."""

    def __init__(self, store: Store, clock: Clock, flush_every_s: float = 0.2) -> None:
        self.store = store
        self.clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flush_every_s = flush_every_s
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_every_s):
            try:
                self.flush()
            except Exception:  # the audit flusher must not die; entries stay buffered
                log.exception("audit flush failed; will retry")

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        at = format_timestamp(self.clock.now())
        with self._lock:
            for entry in entries:
                self._buffer.append({"at": at, **entry})

    def flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
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
        self.flush()


def release_entries(
    principal: Principal, action: str, view: dict[str, Any], purpose: str, rule: str
) -> list[dict[str, Any]]:
    """One entry per source report of ``view`` released to ``principal``."""
    to_j = principal.agency.jurisdiction
    sharing = view.get("sharing") or {}
    redacted_view = bool(sharing.get("redactions")) or sharing.get("outcome") == "allow_redacted"
    entries = []
    for source in view.get("sources", []) + view.get("sightings", []):
        entries.append(
            {
                "action": action,
                "purpose": purpose,
                "actor_agency": principal.agency.id,
                "actor_jurisdiction": to_j,
                "to_agency": principal.agency.id,
                "to_jurisdiction": to_j,
                "record_key": view.get("key"),
                "target": source.get("stix_id"),
                "source_agency": source.get("agency"),
                "source_jurisdiction": source.get("jurisdiction"),
                "tlp": source.get("tlp"),
                "cross_border": source.get("jurisdiction") != to_j,
                "redacted": (
                    bool(source.get("redacted")) or redacted_view or rule.startswith("redact")
                ),
                "rule": rule,
            }
        )
    return entries


def audit_log(services: Services) -> AuditLog:
    """The process's audit log, created on first use."""
    if services.audit is None:
        services.audit = AuditLog(services.store, services.clock)
    log_: AuditLog = services.audit
    return log_


def record_access(
    services: Services,
    principal: Principal,
    action: str,
    views: Sequence[dict[str, Any]],
    purpose: str = "read",
) -> None:
    """Audit a release of ``views`` (records as shown) to ``principal``."""
    entries: list[dict[str, Any]] = []
    for view in views:
        sharing = view.get("sharing") or {}
        entries.extend(
            release_entries(principal, action, view, purpose, str(sharing.get("rule", "")))
        )
    if not entries:
        entries.append(
            {
                "action": action,
                "purpose": purpose,
                "actor_agency": principal.agency.id,
                "actor_jurisdiction": principal.agency.jurisdiction,
            }
        )
    audit_log(services).append(entries)


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


def trace(store: Store, record: dict[str, Any]) -> dict[str, Any]:
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
            }  # fmt: skip
            for h in page.hits
        ]
    releases = [
        h.doc for h in _all(store, names.INDEX_AUDIT, (Term("record_key", (record["key"],)),))
    ]
    return {
        "key": record["key"],
        "sources": [
            {
                k: s.get(k)
                for k in (
                    "agency",
                    "jurisdiction",
                    "stix_id",
                    "modified",
                    "tlp",
                    "revoked",
                    "first_seen",
                    "last_seen",
                )
            }  # fmt: skip
            for s in record.get("sources", [])
        ],
        "versions": versions,
        "releases": releases,
        "reached": sorted(
            {(r.get("to_agency"), r.get("to_jurisdiction")) for r in releases if r.get("to_agency")}
        ),  # fmt: skip
    }


def export(store: Store, since: str | None, until: str | None, limit: int) -> list[dict[str, Any]]:
    """Audit entries in a time range, oldest first (admin export)."""
    filters: tuple[Any, ...] = (Range("at", gte=since, lte=until),) if (since or until) else ()
    return [h.doc for h in _all(store, names.INDEX_AUDIT, filters, limit)]


Admin = Annotated[Principal, Depends(require_role("admin"))]


def router() -> APIRouter:
    """Admin routes: trace a record, export the audit log."""
    r = APIRouter(prefix="/api/v1", tags=["audit"], responses=ERROR_RESPONSES)

    @r.get("/trace/{key:path}", summary="Trace a record to its sources and every release")
    def trace_record(request: Request, principal: Admin, key: str) -> dict[str, Any]:
        s = request.app.state.services
        audit_log(s).flush()
        stored = s.store.get(names.INDEX_INDICATORS, key)
        if stored is None:
            raise TaxiiError(404, "Not Found", f"no indicator record {key!r}")
        s.store.refresh(names.INDEX_AUDIT)
        return trace(s.store, stored.doc)

    @r.get("/audit", summary="Export the audit log for a time range (admin only)")
    def export_audit(
        request: Request,
        principal: Admin,
        since: str | None = None,
        until: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> dict[str, Any]:
        s = request.app.state.services
        audit_log(s).flush()
        s.store.refresh(names.INDEX_AUDIT)
        return {"entries": export(s.store, since, until, limit)}

    return r
