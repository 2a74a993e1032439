"""Analyst and dashboard routes for indicators: search, detail, lookup, sightings, stats.

Thin edges (STYLE.md 6): decode the request, call ``api.indicator_queries`` or
the ingest path, encode. Every route authenticates, checks the role, filters
through the sharing policy and writes the audit log.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.audit import record_access
from api.auth import require_role
from api.errors import ERROR_RESPONSES, FastJSON
from api.indicator_queries import (
    SORTS,
    BadCursor,
    IndicatorFilters,
    indicator_detail,
    indicator_stats,
    lookup,
    search_indicators,
)
from api.registry import AgencyRegistry
from api.taxii.errors import TaxiiError
from api.taxii.sharing import reader_of
from core.access import Principal
from core.clock import format_timestamp
from ingest.push import push_objects

Reader_ = Annotated[Principal, Depends(require_role("analyst", "dashboard", "admin"))]
Analyst = Annotated[Principal, Depends(require_role("analyst", "admin"))]
CSV = Annotated[list[str] | None, Query()]


class SightingIn(BaseModel):
    """A sighting of an indicator record by the caller's agency."""

    count: int = Field(1, ge=1, le=999_999_999)
    first_seen: str | None = None
    last_seen: str | None = None
    description: str | None = Field(None, max_length=4000)


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v for raw in values or [] for v in raw.split(",") if v)


def router() -> APIRouter:
    r = APIRouter(prefix="/api/v1", tags=["indicators"], responses=ERROR_RESPONSES)

    @r.get("/indicators", summary="Search indicator records", response_model=dict[str, Any])
    def search(
        request: Request,
        principal: Reader_,
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
        s = request.app.state.services
        filters = IndicatorFilters(
            observable_type=_split(type), agency=_split(agency),
            jurisdiction=_split(jurisdiction), state=_split(state), malware=_split(malware),
            min_score=min_score, max_score=max_score, since=since, until=until,
        )  # fmt: skip
        try:
            items, next_cursor = search_indicators(
                s.store, request.app.state.sharing_policy, reader_of(principal), filters,
                sort=sort, limit=limit, cursor=cursor, now=s.clock.now(),
            )  # fmt: skip
        except BadCursor as exc:
            raise TaxiiError(400, "Bad Request", str(exc)) from exc
        record_access(s, principal, "indicators.search", items)
        return FastJSON({"items": items, "next": next_cursor})

    @r.get("/indicators/{key:path}", summary="One indicator record with its score explanation")
    def detail(request: Request, principal: Reader_, key: str) -> dict[str, Any]:
        s = request.app.state.services
        view = indicator_detail(
            s.store, request.app.state.sharing_policy, reader_of(principal), key, s.clock.now()
        )
        if view is None:
            raise TaxiiError(404, "Not Found", f"no indicator record {key!r} visible to you")
        record_access(s, principal, "indicators.read", [view])
        return view

    @r.get(
        "/lookup",
        summary="Canonicalise a raw value (defanged or not) and find its record",
        response_model=dict[str, Any],
    )
    def lookup_value(
        request: Request,
        principal: Reader_,
        value: Annotated[str, Query(min_length=1, max_length=4096)],
    ) -> Response:
        s = request.app.state.services
        answer = lookup(
            s.store, request.app.state.sharing_policy, reader_of(principal), value, s.clock.now()
        )
        record_access(s, principal, "indicators.lookup", answer["records"])
        return FastJSON(answer)

    @r.post("/indicators/{key:path}/sightings", status_code=202,
            summary="Report a sighting of this indicator by your agency")  # fmt: skip
    async def sighting(
        request: Request, principal: Analyst, key: str, body: SightingIn
    ) -> dict[str, Any]:
        s = request.app.state.services
        view = await run_in_threadpool(
            indicator_detail, s.store, request.app.state.sharing_policy,
            reader_of(principal), key, s.clock.now(),
        )  # fmt: skip
        if view is None:
            raise TaxiiError(404, "Not Found", f"no indicator record {key!r} visible to you")
        indicator_ids = [sid for sid in view.get("stix_ids", []) if sid.startswith("indicator--")]
        if not indicator_ids:
            raise TaxiiError(409, "Conflict", "the record names no indicator to sight")
        now = format_timestamp(s.clock.now())
        obj: dict[str, Any] = {
            "type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
            "created": now, "modified": now, "sighting_of_ref": indicator_ids[0],
            "count": body.count, "first_seen": body.first_seen or now,
            "last_seen": body.last_seen or body.first_seen or now,
            "created_by_ref": principal.agency.identity_id,
        }  # fmt: skip
        if body.description:
            obj["description"] = body.description
        registry = AgencyRegistry(s.store, s.clock)
        owners = await run_in_threadpool(registry.identity_owners)
        result = await run_in_threadpool(
            push_objects, principal, [obj], s.bus, s.clock, owners, str(uuid.uuid4())
        )
        if result.failures:
            raise TaxiiError(422, "Unprocessable", result.failures[0].message or "rejected")
        return {"accepted": True, "sighting": obj}

    @r.get("/stats/indicators", summary="Indicator counts for dashboards")
    def stats(request: Request, principal: Reader_) -> dict[str, Any]:
        s = request.app.state.services
        return indicator_stats(s.store, reader_of(principal))

    return r
