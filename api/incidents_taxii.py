"""Cases over TAXII 2.1: the API root ``/taxii2/cases/``, one collection per case.

TAXII 2.1 (OASIS Standard, 10 June 2021): API root information (section 4.2),
collections (5.1, 5.2), objects (5.4 get, 5.5 add), an object (5.6), the
manifest (5.3) and status (4.3). The collection id of a case is the UUID of
its ``incident--`` id; ``/collections/`` lists the cases the caller takes
part in. What a caller reads is its own STIX form of the case
(respond/stix.py, ``Purpose.TAXII_EXPORT``: TLP:RED items never go on this
machine channel); what it pushes are case updates (a task outcome, a note, an
impact) applied under the ownership and sharing rules of any push
(``respond.service.apply_pushed``). Pushes are applied synchronously, so the
status is ``complete`` in the answer.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import Cases, CurrentPrincipal
from api.errors import HttpError
from api.incidents import stix_objects
from api.taxii import service
from api.taxii.errors import TaxiiError, not_found
from api.taxii.media import STIX_21, TAXII_21, is_taxii21_content
from api.taxii.routes import check_accept, read_body
from core.access import Principal
from core.clock import format_timestamp
from core.cursors import decode_token, encode_token
from core.errors import BadCursor
from core.policy import Purpose, reader_of
from respond.service import Responder, apply_pushed

ROOT = "cases"


def _response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=TAXII_21, headers=headers)


def _case_id(collection_id: str) -> str:
    text = collection_id.removeprefix("case-")
    try:
        return f"incident--{uuid.UUID(text)}"
    except ValueError:
        raise not_found(f"no collection {collection_id!r} in this API root") from None


def _collection(case_id: str, title: str, principal: Principal) -> dict[str, Any]:
    cid = case_id.removeprefix("incident--")
    return {
        "id": cid,
        "title": title,
        "description": "A joint incident case as STIX 2.1; push task outcomes, notes, impacts.",
        "alias": f"case-{cid}",
        "can_read": principal.has("analyst", "dashboard", "admin"),
        "can_write": principal.has("analyst", "admin"),
        "media_types": [STIX_21],
    }


def _objects(responder: Responder, p: Principal, collection_id: str) -> list[dict[str, Any]]:
    if not p.has("analyst", "dashboard", "admin"):
        raise TaxiiError(403, "Forbidden", "reading a case needs the analyst or dashboard role")
    try:
        return stix_objects(responder, p, _case_id(collection_id), Purpose.TAXII_EXPORT)
    except HttpError as err:
        raise TaxiiError(err.status, err.title, err.description) from None


def _select(request: Request, objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool,
                                                                      str | None]:  # fmt: skip
    params = request.query_params
    types = set(params.getlist("match[type]"))
    ids = set(params.getlist("match[id]"))
    added_after = params.get("added_after")
    chosen = [
        o
        for o in objects
        if (not types or o["type"] in types)
        and (not ids or o["id"] in ids)
        and (not added_after or o.get("modified", o.get("created", "")) > added_after)
    ]
    chosen.sort(key=lambda o: (o.get("modified", ""), o["id"]))
    start = 0
    if params.get("next"):
        token = decode_token(params["next"])
        if not isinstance(token, int) or token < 0:
            raise BadCursor("next is not valid")
        start = token
    try:
        limit = max(1, min(1000, int(params.get("limit", "100"))))
    except ValueError:
        raise TaxiiError(400, "Bad Request", "limit must be an integer") from None
    page = chosen[start : start + limit]
    more = start + limit < len(chosen)
    return page, more, encode_token(start + limit) if more else None


def incidents_taxii_router() -> APIRouter:
    router = APIRouter(prefix=f"/taxii2/{ROOT}", dependencies=[Depends(check_accept)],
                       tags=["taxii"])  # fmt: skip

    @router.get("/")
    def root(request: Request, _: CurrentPrincipal) -> Response:
        """Get API Root Information (section 4.2) of the cases root."""
        return _response(
            {
                "title": "ThreatBay joint incident cases",
                "description": "One collection per case you take part in.",
                "versions": [TAXII_21],
                "max_content_length": request.app.state.services.settings.taxii.max_content_length,
            }
        )

    @router.get("/collections/")
    def collections(p: CurrentPrincipal, responder: Cases) -> Response:
        """Get Collections (section 5.1): the caller's cases."""
        items, _, _ = responder.list_for(reader_of(p), None, 200, None)
        return _response(
            {
                "collections": [
                    _collection(c["id"], c["title"], p) for c in items if c["role"] == "participant"
                ]
            }  # fmt: skip
        )

    @router.get("/collections/{collection_id}/")
    def collection(collection_id: str, p: CurrentPrincipal, responder: Cases) -> Response:
        """Get A Collection (section 5.2)."""
        case_id = _case_id(collection_id)
        found = responder.view(case_id, reader_of(p))
        if found is None:
            raise not_found(f"no collection {collection_id!r} in this API root")
        return _response(_collection(case_id, found[1]["title"], p))

    @router.get("/collections/{collection_id}/objects/")
    def get_objects(
        request: Request, collection_id: str, p: CurrentPrincipal, responder: Cases
    ) -> Response:
        """Get Objects (section 5.4): the caller's STIX form of the case."""
        page, more, nxt = _select(request, _objects(responder, p, collection_id))
        body: dict[str, Any] = {"more": more, "objects": page}
        if nxt:
            body["next"] = nxt
        return _response(body)

    @router.get("/collections/{collection_id}/objects/{object_id}/")
    def get_object(
        request: Request, collection_id: str, object_id: str, p: CurrentPrincipal,
        responder: Cases,
    ) -> Response:  # fmt: skip
        """Get An Object (section 5.6)."""
        found = [o for o in _objects(responder, p, collection_id) if o["id"] == object_id]
        if not found:
            raise not_found(f"no object {object_id!r} in this collection")
        return _response({"more": False, "objects": found})

    @router.get("/collections/{collection_id}/manifest/")
    def manifest(
        request: Request, collection_id: str, p: CurrentPrincipal, responder: Cases
    ) -> Response:
        """Get Object Manifests (section 5.3)."""
        page, more, nxt = _select(request, _objects(responder, p, collection_id))
        body: dict[str, Any] = {
            "more": more,
            "objects": [
                {"id": o["id"], "date_added": o.get("modified", o.get("created")),
                 "version": o.get("modified", o.get("created")), "media_type": STIX_21}
                for o in page
            ],
        }  # fmt: skip
        if nxt:
            body["next"] = nxt
        return _response(body)

    @router.post("/collections/{collection_id}/objects/")
    async def add_objects(
        request: Request, collection_id: str, p: CurrentPrincipal, responder: Cases
    ) -> Response:
        """Add Objects (section 5.5): task outcomes, notes and impacts for the case."""
        if not p.has("analyst", "admin"):
            raise TaxiiError(403, "Forbidden", "pushing case updates needs the analyst role")
        case_id = _case_id(collection_id)
        found = await run_in_threadpool(responder.view, case_id, reader_of(p))
        if found is None or found[1]["role"] != "participant":
            raise not_found(f"no collection {collection_id!r} in this API root")
        if not is_taxii21_content(request.headers.get("content-type")):
            raise TaxiiError(415, "Unsupported Media Type", f"the body must be sent as {TAXII_21}")
        settings = request.app.state.services.settings
        raw = await read_body(request, settings.taxii.max_content_length)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TaxiiError(400, "Bad Request", f"the body is not valid JSON: {exc}") from exc
        objects = body.get("objects") if isinstance(body, dict) else None
        if not isinstance(objects, list):
            raise TaxiiError(422, "Unprocessable Entity", "the body must be a TAXII envelope")
        results = await run_in_threadpool(apply_pushed, responder, p, case_id, objects)
        now = format_timestamp(responder.now)
        status = {
            "id": str(uuid.uuid4()),
            "status": "complete",
            "request_timestamp": now,
            "total_count": len(results),
            "success_count": sum(1 for _, e in results if e is None),
            "failure_count": sum(1 for _, e in results if e is not None),
            "pending_count": 0,
        }
        if status["success_count"]:
            status["successes"] = [{"id": i, "version": now} for i, e in results if e is None]
        if status["failure_count"]:
            status["failures"] = [
                {"id": i, "version": now, "message": e} for i, e in results if e is not None
            ]
        await run_in_threadpool(service.save_status, responder.books.cases.store, p.agency.id,
                                status)  # fmt: skip
        return _response(status, status=202)

    @router.get("/status/{status_id}/")
    def get_status(request: Request, status_id: str, p: CurrentPrincipal,
                   responder: Cases) -> Response:  # fmt: skip
        """Get Status (section 4.3)."""
        s = request.app.state.services
        return _response(
            service.load_status(
                s.store, status_id, p, s.clock, s.settings.taxii.status_retention_hours
            )
        )

    return router
