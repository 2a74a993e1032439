"""Errors answered to HTTP callers, rendered in one place (STYLE.md 8).

``HttpError`` is an answer that is an error: status, title, description,
headers. ``ApiError`` is raised by ``/api/v1`` routes, ``TaxiiError``
(api/taxii/errors.py) by TAXII views; shared code (authentication) raises
``HttpError`` itself. ``install`` maps every error to its answer by path:
under ``/taxii2/`` the TAXII error resource with the TAXII media type (TAXII
2.1 sections 1.6.8, 3.6.1), elsewhere ``{"detail": ...}``. Domain errors from
the rooms below are mapped here too, once:

- ``BadCursor`` -> 400; ``UnknownAgency`` -> 404;
- ``StoreUnavailable`` / ``BusUnavailable`` -> 503 with ``Retry-After``;
- anything else -> 500, logged with its traceback.

Also ``FastJSON``, the response class of the hot read routes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from core.errors import BadCursor, BusUnavailable, ThreatBayError, Unavailable, UnknownAgency

log = logging.getLogger("threatbay.api")

TAXII_PREFIX = "/taxii2/"
TAXII_21 = "application/taxii+json;version=2.1"
#: Seconds a client should wait before retrying when a backend is unavailable.
RETRY_AFTER_S = "5"


class HttpError(ThreatBayError):
    """An HTTP answer that is an error (module docstring)."""

    def __init__(
        self,
        status: int,
        title: str,
        description: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {description or ''}")
        self.status = status
        self.title = title
        self.description = description
        self.headers = dict(headers or {})


class ApiError(HttpError):
    """An error answered by an ``/api/v1`` route."""


def forbidden(description: str) -> ApiError:
    return ApiError(403, "Forbidden", description)


def not_found(description: str) -> ApiError:
    return ApiError(404, "Not Found", description)


class FastJSON(JSONResponse):
    """JSON rendered by orjson, skipping FastAPI's encoder walk (records and alerts are plain JSON).

    Same JSON as the default path; routes keep ``response_model`` for OpenAPI.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ErrorBody(BaseModel):
    """``detail`` says what is wrong: a sentence, or FastAPI's list of field errors."""

    detail: str | list[Any]


#: Every status an /api/v1 route may answer besides its success, for ``APIRouter(responses=)``.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Bad request (unparsable body, bad cursor or parameter)"),
        (401, "Missing, unknown, revoked or expired credential"),
        (403, "The credential's role or agency may not do this"),
        (404, "Not found, or not visible to the caller"),
        (409, "Conflict with the current state"),
        (422, "Unprocessable input"),
        (429, "Too many failed authentications"),
        (503, "The store or bus is unavailable; retry (see Retry-After)"),
    )
}


def is_taxii(request: Request) -> bool:
    return request.url.path.startswith(TAXII_PREFIX)


def render(request: Request, err: HttpError) -> Response:
    """The answer to ``err`` in the family of the route asked (module docstring)."""
    if is_taxii(request):
        doc: dict[str, Any] = {"title": err.title, "http_status": str(err.status)}
        if err.description:
            doc["description"] = err.description
        return Response(
            orjson.dumps(doc), status_code=err.status, media_type=TAXII_21, headers=err.headers
        )
    return JSONResponse({"detail": err.description or err.title}, err.status, headers=err.headers)


def http_error_of(exc: ThreatBayError) -> HttpError:
    """The HTTP answer to a domain error that reached a route."""
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, BadCursor):
        return HttpError(400, "Bad Request", str(exc))
    if isinstance(exc, UnknownAgency):
        return HttpError(404, "Not Found", str(exc))
    if isinstance(exc, Unavailable):
        what = "the bus" if isinstance(exc, BusUnavailable) else "the store"
        return HttpError(
            503, "Service Unavailable", f"{what} is unavailable", {"Retry-After": RETRY_AFTER_S}
        )
    return HttpError(500, "Internal Server Error", "unexpected error")


def install(app: FastAPI) -> None:
    """Map every error to its answer (module docstring)."""

    @app.exception_handler(ThreatBayError)
    async def on_error(request: Request, exc: ThreatBayError) -> Response:
        err = http_error_of(exc)
        if err.status >= 500:
            log.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return render(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers: dict[str, Any] = dict(exc.headers or {})
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return render(request, HttpError(exc.status_code, title, str(exc.detail), headers))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        if is_taxii(request):
            return render(request, HttpError(400, "Bad Request", str(exc.errors())))
        return JSONResponse({"detail": exc.errors()}, 422)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return render(request, HttpError(500, "Internal Server Error", "unexpected error"))
