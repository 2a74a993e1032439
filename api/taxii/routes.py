"""TAXII 2.1 views (OASIS Standard, 10 June 2021), mounted under ``/taxii2/``.

Each view decodes, calls ``api.taxii.service`` / ``ingest.push``, encodes.
One API root, ``/taxii2/api/``; every path ends in ``/``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import CurrentPrincipal
from api.taxii import service
from api.taxii.collections import RECORDS, Collection, visible_collections
from api.taxii.errors import TaxiiError, not_found
from api.taxii.media import TAXII_21, accepts_taxii21, is_taxii21_content
from api.taxii.pagination import Filters, parse_filters
from api.taxii.records import select_records
from api.taxii.sharing import release_entries, tags_of, view_of
from core.access import Principal
from core.errors import StoreUnavailable
from core.policy import reader_of
from core.services import Services
from ingest.budget import grammar_chars
from ingest.push import admission_for, push_objects
from ingest.signed import received_objects
from records.books import records_of
from records.date_added import book_of

log = logging.getLogger("threatbay.taxii")

API_ROOT = "api"
MATCH_OBJECTS = ("id", "type", "version", "spec_version")


def taxii_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=TAXII_21, headers=headers)


def check_accept(request: Request) -> None:
    """406 when Accept allows no TAXII 2.1 type (section 1.6.8)."""
    if not accepts_taxii21(request.headers.get("accept")):
        raise TaxiiError(
            406, "Not Acceptable", f"this server answers {TAXII_21}; the Accept header excludes it"
        )


def check_root(api_root: str) -> None:
    if api_root != API_ROOT:
        raise not_found(f"no API root {api_root!r}; the API root is /taxii2/{API_ROOT}/")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _collection(request: Request, api_root: str, collection_id: str, p: Principal) -> Collection:
    check_root(api_root)
    services = _services(request)

    def agency_ids() -> list[str]:
        return [a.id for a in records_of(services).agencies.list()]

    return service.collection_for(collection_id, p, agency_ids)


def _filters(request: Request, allowed: tuple[str, ...], scope: str) -> Filters:
    taxii = _services(request).settings.taxii
    return parse_filters(
        request.query_params.multi_items(),
        allowed,
        scope,
        taxii.default_page_size,
        taxii.max_page_size,
    )


def _settled(request: Request) -> str:
    """The date_added watermark pages are served under (records/date_added.py)."""
    s = _services(request)
    return book_of(s.store, s.clock, s.settings.taxii, s.settings.writes).settled()


def _reader(
    request: Request, coll: Collection, p: Principal, rules: dict[str, str] | None = None
) -> tuple[Any, Any]:
    """(reader tags, view) for reading ``coll``; the owner reads its inbox as pushed."""
    if coll.is_inbox:
        return None, None
    reader = reader_of(p)
    sharing = request.app.state.sharing_policy
    return tags_of(reader), lambda doc: view_of(sharing, reader, doc, rules)


def _records_page(
    request: Request,
    p: Principal,
    filters: Filters,
    scope: str,
    stix_id: str | None = None,
) -> service.Selection:
    """A page of the ``records`` collection (api/taxii/records.py), its release audited."""
    s = _services(request)
    sel, views = select_records(
        s.store,
        request.app.state.sharing_policy,
        reader_of(p),
        filters,
        scope,
        settled=_settled(request),
        expire_below=s.settings.taxii.records_expire_below,
        now=s.clock.now(),
        stix_id=stix_id,
    )
    if views:
        records_of(s).audit.record_access(p, "taxii.records", views)
    return sel


def _audit_releases(request: Request, p: Principal, sel: service.Selection, rules: Any) -> None:
    """Write every cross-border release of this page to the audit log."""
    entries = release_entries(p, sel.items, rules)
    if entries:
        records_of(_services(request)).audit.append(entries)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes, chunked or not."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> TaxiiError:
    return TaxiiError(
        413, "Payload Too Large", f"the body exceeds max_content_length ({limit} bytes)"
    )


def taxii_router() -> APIRouter:
    router = APIRouter(prefix="/taxii2", dependencies=[Depends(check_accept)], tags=["taxii"])

    @router.get("/")
    def discovery(request: Request, _: CurrentPrincipal) -> Response:
        """Server Discovery (TAXII 2.1 section 4.1)."""
        root = str(request.base_url).rstrip("/") + f"/taxii2/{API_ROOT}/"
        return taxii_response(
            {
                "title": "ThreatBay TAXII 2.1",
                "description": "Greater Bay Area threat-intelligence exchange",
                "default": root,
                "api_roots": [root],
            }
        )

    @router.get("/{api_root}/")
    def api_root_info(request: Request, api_root: str, _: CurrentPrincipal) -> Response:
        """Get API Root Information (TAXII 2.1 section 4.2)."""
        check_root(api_root)
        return taxii_response(
            {
                "title": "ThreatBay",
                "description": "Push to your inbox; pull what is shared with you.",
                "versions": [TAXII_21],
                "max_content_length": _services(request).settings.taxii.max_content_length,
            }
        )

    @router.get("/{api_root}/status/{status_id}/")
    def get_status(
        request: Request, api_root: str, status_id: str, p: CurrentPrincipal
    ) -> Response:
        """Get Status (TAXII 2.1 section 4.3)."""
        check_root(api_root)
        s = _services(request)
        status = service.load_status(
            s.store, status_id, p, s.clock, s.settings.taxii.status_retention_hours
        )
        return taxii_response(status)

    @router.get("/{api_root}/collections/")
    def get_collections(api_root: str, p: CurrentPrincipal) -> Response:
        """Get Collections (TAXII 2.1 section 5.1)."""
        check_root(api_root)
        return taxii_response({"collections": [c.resource(p) for c in visible_collections(p)]})

    @router.get("/{api_root}/collections/{collection_id}/")
    def get_collection(
        request: Request, api_root: str, collection_id: str, p: CurrentPrincipal
    ) -> Response:
        """Get A Collection (TAXII 2.1 section 5.2)."""
        coll = _collection(request, api_root, collection_id, p)
        if coll.is_inbox and coll.owner != p.agency.id:
            raise TaxiiError(403, "Forbidden", f"{coll.name} is the inbox of another agency")
        return taxii_response(coll.resource(p, asked_as=collection_id))

    @router.get("/{api_root}/collections/{collection_id}/manifest/")
    def get_manifest(
        request: Request, api_root: str, collection_id: str, p: CurrentPrincipal
    ) -> Response:
        """Get Object Manifests (TAXII 2.1 section 5.3)."""
        coll = _collection(request, api_root, collection_id, p)
        service.require_read(coll, p)
        scope = f"manifest|{coll.name}"
        filters = _filters(request, MATCH_OBJECTS, scope)
        if coll.name == RECORDS:
            sel = _records_page(request, p, filters, scope)
            return taxii_response(service.manifest(sel), headers=sel.headers())
        tags, view = _reader(request, coll, p)
        sel = service.select(
            _services(request).store, coll, filters, scope, tags, view, settled=_settled(request)
        )
        return taxii_response(service.manifest(sel), headers=sel.headers())

    @router.get("/{api_root}/collections/{collection_id}/objects/")
    def get_objects(
        request: Request, api_root: str, collection_id: str, p: CurrentPrincipal
    ) -> Response:
        """Get Objects (TAXII 2.1 section 5.4)."""
        coll = _collection(request, api_root, collection_id, p)
        service.require_read(coll, p)
        scope = f"objects|{coll.name}"
        filters = _filters(request, MATCH_OBJECTS, scope)
        if coll.name == RECORDS:
            sel = _records_page(request, p, filters, scope)
            return taxii_response(service.envelope(sel), headers=sel.headers())
        rules: dict[str, str] = {}
        tags, view = _reader(request, coll, p, rules)
        sel = service.select(
            _services(request).store, coll, filters, scope, tags, view, settled=_settled(request)
        )
        _audit_releases(request, p, sel, rules)
        return taxii_response(service.envelope(sel), headers=sel.headers())

    @router.post("/{api_root}/collections/{collection_id}/objects/")
    async def add_objects(
        request: Request, api_root: str, collection_id: str, p: CurrentPrincipal
    ) -> Response:
        """Add Objects (TAXII 2.1 section 5.5): 202 with a status resource."""
        s = _services(request)
        coll = await run_in_threadpool(_collection, request, api_root, collection_id, p)
        service.require_write(coll, p)
        if not is_taxii21_content(request.headers.get("content-type")):
            raise TaxiiError(415, "Unsupported Media Type", f"the body must be sent as {TAXII_21}")
        raw = await read_body(request, s.settings.taxii.max_content_length)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TaxiiError(400, "Bad Request", f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise TaxiiError(
                422, "Unprocessable Entity", "the body must be a TAXII envelope object"
            )
        objects = body.get("objects", [])
        if not isinstance(objects, list):
            raise TaxiiError(422, "Unprocessable Entity", "the envelope's objects must be a list")
        parsing = await run_in_threadpool(
            grammar_chars, objects, s.settings.limits.pattern_max_chars
        )
        refusal = request.app.state.push_budget.charge(p.agency.id, len(objects), len(raw), parsing)
        if refusal is not None:
            if refusal.retry_after_s is None:
                raise TaxiiError(413, "Payload Too Large", refusal.message)
            raise TaxiiError(
                429,
                "Too Many Requests",
                refusal.message,
                {"Retry-After": str(refusal.retry_after_s)},
            )
        rules = await run_in_threadpool(admission_for, s)
        received = await run_in_threadpool(received_objects, raw, objects)
        result = await run_in_threadpool(
            functools.partial(push_objects, received=received, from_inbox=True),
            p, objects, s.bus, s.clock, rules, str(uuid.uuid4()),
        )  # fmt: skip
        status = service.status_resource(result)
        try:
            await run_in_threadpool(service.save_status, s.store, p.agency.id, status)
        except StoreUnavailable:
            # the objects are on the bus already: answer what happened, even if the status
            # resource cannot be kept for later polling
            log.warning("status %s not stored: the store is unavailable", status["id"])
        return taxii_response(status, status=202)

    @router.get("/{api_root}/collections/{collection_id}/objects/{object_id}/")
    def get_object(
        request: Request, api_root: str, collection_id: str, object_id: str, p: CurrentPrincipal
    ) -> Response:
        """Get An Object (TAXII 2.1 section 5.6)."""
        coll = _collection(request, api_root, collection_id, p)
        service.require_read(coll, p)
        scope = f"object|{coll.name}|{object_id}"
        filters = _filters(request, ("version", "spec_version"), scope)
        if coll.name == RECORDS:
            sel = _records_page(request, p, filters, scope, object_id)
            if not sel.items and filters.after is None:
                raise not_found(f"no object {object_id!r} in {coll.name} matching these filters")
            return taxii_response(service.envelope(sel), headers=sel.headers())
        rules: dict[str, str] = {}
        tags, view = _reader(request, coll, p, rules)
        sel = service.select(
            _services(request).store,
            coll,
            filters,
            scope,
            tags,
            view,
            stix_id=object_id,
            settled=_settled(request),
        )
        if not sel.items and filters.after is None:
            raise not_found(f"no object {object_id!r} in {coll.name} matching these filters")
        _audit_releases(request, p, sel, rules)
        return taxii_response(service.envelope(sel), headers=sel.headers())

    @router.delete("/{api_root}/collections/{collection_id}/objects/{object_id}/")
    def delete_object(
        request: Request, api_root: str, collection_id: str, object_id: str, p: CurrentPrincipal
    ) -> Response:
        """Delete An Object (TAXII 2.1 section 5.7): the pushing agency only."""
        coll = _collection(request, api_root, collection_id, p)
        service.require_write(coll, p)
        filters = _filters(request, ("version", "spec_version"), f"delete|{object_id}")
        s = _services(request)
        service.delete_object(s.store, s.bus, s.clock, coll, p, object_id, filters)
        return Response(b"", status_code=200, media_type=TAXII_21)

    @router.get("/{api_root}/collections/{collection_id}/objects/{object_id}/versions/")
    def get_versions(
        request: Request, api_root: str, collection_id: str, object_id: str, p: CurrentPrincipal
    ) -> Response:
        """Get Object Versions (TAXII 2.1 section 5.8)."""
        coll = _collection(request, api_root, collection_id, p)
        service.require_read(coll, p)
        scope = f"versions|{coll.name}|{object_id}"
        filters = _filters(request, ("spec_version",), scope)
        if coll.name == RECORDS:
            sel = _records_page(request, p, filters, scope, object_id)
            if not sel.items and filters.after is None:
                raise not_found(f"no object {object_id!r} in {coll.name}")
            return taxii_response(service.versions(sel), headers=sel.headers())
        tags, view = _reader(request, coll, p)
        sel = service.select(
            _services(request).store,
            coll,
            filters,
            scope,
            tags,
            view,
            stix_id=object_id,
            default_version="all",
            settled=_settled(request),
        )
        if not sel.items and filters.after is None:
            raise not_found(f"no object {object_id!r} in {coll.name}")
        return taxii_response(service.versions(sel), headers=sel.headers())

    return router
