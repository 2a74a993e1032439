"""``/api/v1/allowlist``: an agency's admins manage its allow-list (issue #19).

The list is the caller's own agency's and nobody else's: every route reads and
writes ``principal.agency.id`` only, there is no agency parameter, so one
agency's list is never shown to, or changed by, another (not even an admin of
the same jurisdiction). Effects (core/allowlist.py): the agency's exports
leave covered values out, the notifier sends it no alert whose indicators are
all covered, and its readers see the hits in a record's explanation.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import Admin, Books
from api.errors import ERROR_RESPONSES, ApiError
from core.allowlist import AllowEntry, AllowList, AllowListError, allow_entry
from records.allowlists import AllowListFull


class EntryIn(BaseModel):
    kind: str = Field(description="value, cidr or suffix")
    value: str = Field(min_length=1, max_length=2048)
    note: str = Field("", max_length=500)


class EntriesIn(BaseModel):
    entries: list[EntryIn] = Field(min_length=1, max_length=10_000)


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("entry_kind", "value", "normal", "note", "added_at", "added_by")
            if k in doc} | {"kind": doc["entry_kind"]}  # fmt: skip


def entries_of(body: EntriesIn) -> list[AllowEntry]:
    """Every entry read, or a 422 naming the first that cannot be."""
    out = []
    for i, e in enumerate(body.entries):
        try:
            out.append(allow_entry(e.kind, e.value, e.note))
        except AllowListError as exc:
            raise ApiError(422, "Unprocessable", f"entries[{i}]: {exc}") from None
    return out


def with_allowlist_hits(view: dict[str, Any], allow: AllowList) -> dict[str, Any]:
    """The reader's view, naming the reader agency's allow-list entries that cover it."""
    hits = allow.hits(view)
    if hits:
        view["allowlist_hits"] = hits
        components = view.get("components")
        if isinstance(components, dict):
            view["components"] = components | {
                "explanation": [
                    *(components.get("explanation") or []),
                    "on your agency's allow-list (" + ", ".join(hits) + "): "
                    "left out of your exports and alerts",
                ]
            }
    return view


def allowlist_router() -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["allowlist"], responses=ERROR_RESPONSES)

    @r.get("/allowlist", summary="Your agency's allow-list")
    def list_entries(admin: Admin, books: Books) -> dict[str, Any]:
        docs = books.allowlists.entries(admin.agency.id)
        return {"agency": admin.agency.id, "entries": [_public(d) for d in docs]}

    @r.post("/allowlist", status_code=201, summary="Add entries to your agency's allow-list")
    def add_entries(body: EntriesIn, admin: Admin, books: Books) -> dict[str, Any]:
        entries = entries_of(body)
        try:
            docs = books.allowlists.add(admin.agency.id, entries, by=admin.key_id)
        except AllowListFull as exc:
            raise ApiError(409, "Conflict", str(exc)) from None
        books.audit.record("allowlist.add", admin, admin.agency.id,
                           jurisdiction=admin.agency.jurisdiction)  # fmt: skip
        return {"agency": admin.agency.id, "entries": [_public(d) for d in docs]}

    @r.delete("/allowlist", summary="Remove one entry from your agency's allow-list")
    def remove_entry(
        admin: Admin,
        books: Books,
        kind: Annotated[str, Query()],
        value: Annotated[str, Query(min_length=1, max_length=2048)],
    ) -> dict[str, Any]:
        try:
            entry = allow_entry(kind, value)
        except AllowListError as exc:
            raise ApiError(422, "Unprocessable", str(exc)) from None
        if not books.allowlists.remove(admin.agency.id, entry):
            raise ApiError(404, "Not Found", f"no {kind} entry {value!r} on your allow-list")
        books.audit.record("allowlist.remove", admin, admin.agency.id,
                           jurisdiction=admin.agency.jurisdiction)  # fmt: skip
        return {"removed": {"kind": entry.kind, "value": value}}

    return r
