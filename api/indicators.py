"""Analyst and dashboard routes for indicators: search, detail, lookup, sightings, stats.

Thin edges (STYLE.md 6): decode the request, call ``api.indicator_queries`` or
the ingest path, encode. Every route authenticates, checks the role, filters
through the sharing policy and writes the audit log.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.allowlist import with_allowlist_hits
from api.deps import Analyst, Books, ReaderRole, Sharing, Svc
from api.errors import ERROR_RESPONSES, ApiError, FastJSON, not_found
from api.indicator_queries import (
    SORTS,
    IndicatorFilters,
    indicator_detail,
    indicator_stats,
    lookup,
    search_indicators,
)
from core.access import Principal
from core.clock import format_timestamp
from core.errors import BusUnavailable
from core.policy import SharingPolicy, reader_of
from core.services import Services
from core.stix import object_version
from ingest.push import admission_for, push_objects
from ingest.sightings import (
    FALSE_POSITIVE,
    SIGHTING_TYPE,
    ended_now,
    own_false_positives,
    sighted_source,
    sighting_marking,
    withdrawal_of,
)
from records.object_signatures import signatures_of
from records.objects import stored_versions

CSV = Annotated[list[str] | None, Query()]
#: How old an allow-list read may be for lookup and detail annotations (one search saved per
#: request; this process's own changes apply at once, another API process's within this).
ANNOTATE_S = 2.0


class SightingIn(BaseModel):
    """A sighting of an indicator record by the caller's agency."""

    count: int = Field(1, ge=1, le=999_999_999)
    first_seen: str | None = None
    last_seen: str | None = None
    description: str | None = Field(None, max_length=4000)


class EndIn(BaseModel):
    """Why the caller's agency ends its own report of this record now (optional)."""

    reason: str | None = Field(None, max_length=4000)


class FalsePositiveIn(BaseModel):
    """Why the caller's agency holds this record to be a false positive."""

    reason: str = Field(min_length=1, max_length=4000)


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v for raw in values or [] for v in raw.split(",") if v)


def with_signatures(store: Any, view: dict[str, Any]) -> None:
    """Add ``verified``/``signed_by``/``signature`` to each source that arrived signed.

    Read by key from the source's own stored version (records/object_signatures.py), so
    it says nothing about reports the reader may not see; unsigned sources are unchanged.
    """
    sources = [s for s in view.get("sources") or [] if isinstance(s.get("stix_id"), str)]
    found = signatures_of(store, [(s["stix_id"], s.get("modified")) for s in sources])
    for source in sources:
        version = object_version({"modified": source.get("modified")})
        signature = found.get(f"{source['stix_id']}|{version}")
        if signature is not None:
            source["verified"] = signature.get("status") == "verified"
            source["signed_by"] = signature.get("signed_by")
            source["signature"] = signature


def router() -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["indicators"], responses=ERROR_RESPONSES)

    @r.get("/indicators", summary="Search indicator records", response_model=dict[str, Any])
    def search(
        principal: ReaderRole,
        svc: Svc,
        books: Books,
        sharing: Sharing,
        type: CSV = None,
        agency: CSV = None,
        jurisdiction: CSV = None,
        state: CSV = None,
        malware: CSV = None,
        min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
        max_score: Annotated[float | None, Query(ge=0, le=100)] = None,
        since: str | None = None,
        until: str | None = None,
        sort: Annotated[str, Query(pattern="^(" + "|".join(SORTS) + ")$")] = "score",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> Response:
        filters = IndicatorFilters(
            observable_type=_split(type), agency=_split(agency),
            jurisdiction=_split(jurisdiction), state=_split(state), malware=_split(malware),
            min_score=min_score, max_score=max_score, since=since, until=until,
        )  # fmt: skip
        items, next_cursor = search_indicators(
            svc.store, sharing, reader_of(principal), filters,
            sort=sort, limit=limit, cursor=cursor, now=svc.clock.now(),
        )  # fmt: skip
        books.audit.record_access(principal, "indicators.search", items)
        return FastJSON({"items": items, "next": next_cursor})

    @r.get("/indicators/{key:path}", summary="One indicator record with its score explanation")
    def detail(
        principal: ReaderRole, svc: Svc, books: Books, sharing: Sharing, key: str
    ) -> dict[str, Any]:
        view = indicator_detail(svc.store, sharing, reader_of(principal), key, svc.clock.now())
        if view is None:
            raise not_found(f"no indicator record {key!r} visible to you")
        with_signatures(svc.store, view)
        books.audit.record_access(principal, "indicators.read", [view])
        allow = books.allowlists.allow_list(principal.agency.id, ANNOTATE_S)
        return with_allowlist_hits(view, allow)

    @r.get(
        "/lookup",
        summary="Canonicalise a raw value (defanged or not) and find its record",
        response_model=dict[str, Any],
    )
    def lookup_value(
        principal: ReaderRole,
        svc: Svc,
        books: Books,
        sharing: Sharing,
        value: Annotated[str, Query(min_length=1, max_length=4096)],
    ) -> Response:
        answer = lookup(svc.store, sharing, reader_of(principal), value, svc.clock.now())
        allow = books.allowlists.allow_list(principal.agency.id, ANNOTATE_S)
        answer["records"] = [with_allowlist_hits(r, allow) for r in answer["records"]]
        books.audit.record_access(principal, "indicators.lookup", answer["records"])
        return FastJSON(answer)

    @r.post("/indicators/{key:path}/sightings", status_code=202,
            summary="Report a sighting of this indicator by your agency")  # fmt: skip
    async def sighting(
        principal: Analyst, svc: Svc, books: Books, sharing: Sharing, key: str, body: SightingIn
    ) -> dict[str, Any]:
        now = format_timestamp(svc.clock.now())
        first = body.first_seen or now
        fields: dict[str, Any] = {"count": body.count, "first_seen": first,
                                  "last_seen": body.last_seen or first}  # fmt: skip
        if body.description:
            fields["description"] = body.description
        obj = await _sighting(principal, svc, sharing, key, fields)
        return {"accepted": True, "sighting": obj}

    @r.post("/indicators/{key:path}/false-positive", status_code=202,
            summary="Mark this indicator a false positive for your agency")  # fmt: skip
    async def false_positive(
        principal: Analyst,
        svc: Svc,
        sharing: Sharing,
        key: str,
        body: FalsePositiveIn,
    ) -> dict[str, Any]:
        now = format_timestamp(svc.clock.now())
        fields = {"count": 1, "first_seen": now, "last_seen": now,
                  "description": body.reason, SIGHTING_TYPE: FALSE_POSITIVE}  # fmt: skip
        obj = await _sighting(principal, svc, sharing, key, fields)
        return {"accepted": True, "sighting": obj}

    @r.delete("/indicators/{key:path}/false-positive", status_code=202,
              summary="Withdraw your agency's false-positive marks of this indicator")  # fmt: skip
    async def withdraw_false_positive(
        principal: Analyst, svc: Svc, sharing: Sharing, key: str
    ) -> dict[str, Any]:
        marks = own_false_positives(await _view(principal, svc, sharing, key), principal.agency.id)
        if not marks:
            raise not_found(f"your agency has no false-positive mark on {key!r}")
        stored = await _stored(svc, marks, "the mark")
        withdrawn = [withdrawal_of(obj, svc.clock.now()) for obj in stored]
        await _push(principal, svc, withdrawn)
        return {"accepted": True, "withdrawn": withdrawn}

    @r.post("/indicators/{key:path}/expired", status_code=202,
            summary="End your agency's own report of this indicator now")  # fmt: skip
    async def expired(
        principal: Analyst, svc: Svc, sharing: Sharing, key: str, body: EndIn
    ) -> dict[str, Any]:
        """MISP sighting type 2, done the STIX way: a new version with ``valid_until`` now."""
        own = [
            s for s in (await _view(principal, svc, sharing, key)).get("sources") or []
            if s.get("agency") == principal.agency.id and not s.get("revoked")
            and str(s.get("stix_id", "")).startswith("indicator--")
        ]  # fmt: skip
        if not own:
            raise not_found(f"your agency has no live report of {key!r}")
        stored = await _stored(svc, own, "the report")
        ended = [ended_now(obj, svc.clock.now(), body.reason) for obj in stored]
        await _push(principal, svc, ended)
        return {"accepted": True, "ended": ended}

    async def _view(
        principal: Principal, svc: Services, sharing: SharingPolicy, key: str
    ) -> dict[str, Any]:
        """The caller's view of the record under ``key`` (empty when it sees none)."""
        view = await run_in_threadpool(
            indicator_detail, svc.store, sharing, reader_of(principal), key, svc.clock.now()
        )
        return view or {}

    async def _sighting(
        principal: Principal,
        svc: Services,
        sharing: SharingPolicy,
        key: str,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        """Push the caller's sighting (``fields``) of the indicator the record names."""
        view = await _view(principal, svc, sharing, key)
        if not view:
            raise not_found(f"no indicator record {key!r} visible to you")
        sighted = sighted_source(view)
        if sighted is None:
            raise ApiError(409, "Conflict", "the record names no indicator to sight")
        now = format_timestamp(svc.clock.now())
        obj: dict[str, Any] = {
            "type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
            "created": now, "modified": now, "sighting_of_ref": sighted["stix_id"],
            "created_by_ref": principal.agency.identity_id,
        } | fields | sighting_marking(sighted, principal.agency.id)  # fmt: skip
        await _push(principal, svc, [obj])
        return obj

    async def _stored(
        svc: Services, entries: list[dict[str, Any]], what: str
    ) -> list[dict[str, Any]]:
        """The stored STIX versions the view's ``entries`` name (409 until all are stored)."""
        pairs = [(str(e["stix_id"]), object_version({"modified": e["modified"]})) for e in entries]
        stored = await run_in_threadpool(stored_versions, svc.store, pairs)
        if len(stored) != len(pairs):
            raise ApiError(409, "Conflict", f"{what} is not stored yet; try again shortly")
        return [stored[p] for p in pairs]

    async def _push(principal: Principal, svc: Services, objs: list[dict[str, Any]]) -> None:
        """Push objects in one envelope through the ingest path (ownership, admission, bus)."""
        rules = await run_in_threadpool(admission_for, svc)
        result = await run_in_threadpool(
            push_objects, principal, objs, svc.bus, svc.clock, rules, str(uuid.uuid4())
        )
        if result.unavailable is not None:
            raise BusUnavailable(result.unavailable)
        if result.failures:
            raise ApiError(422, "Unprocessable", result.failures[0].message or "rejected")

    @r.get("/stats/indicators", summary="Indicator counts for dashboards")
    def stats(principal: ReaderRole, svc: Svc) -> dict[str, Any]:
        return indicator_stats(svc.store, reader_of(principal))

    return r
