"""Admin routes over the audit trail: trace a record, export the log (records/audit.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Admin, Books, Svc
from api.errors import ERROR_RESPONSES, not_found
from core import names
from records.audit import export, trace


def router() -> APIRouter:
    """``/api/v1/trace/{key}`` and ``/api/v1/audit`` (role ``admin``)."""
    r = APIRouter(prefix="/api/v1", tags=["audit"], responses=ERROR_RESPONSES)

    @r.get("/trace/{key:path}", summary="Trace a record to its sources and every release")
    def trace_record(principal: Admin, svc: Svc, books: Books, key: str) -> dict[str, Any]:
        books.audit.flush()
        stored = svc.store.get(names.INDEX_INDICATORS, key)
        if stored is None:
            raise not_found(f"no indicator record {key!r}")
        svc.store.refresh(names.INDEX_AUDIT)
        return trace(svc.store, stored.doc)

    @r.get("/audit", summary="Export the audit log for a time range (admin only)")
    def export_audit(
        principal: Admin,
        svc: Svc,
        books: Books,
        since: str | None = None,
        until: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> dict[str, Any]:
        books.audit.flush()
        svc.store.refresh(names.INDEX_AUDIT)
        return {"entries": export(svc.store, since, until, limit)}

    return r
