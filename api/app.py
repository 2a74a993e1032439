"""The FastAPI app factory: TAXII 2.1 under ``/taxii2/``, admin API, health.

Errors on TAXII paths are the TAXII error resource with the TAXII media type
(TAXII 2.1 sections 1.6.8, 3.6.1), whatever raised them (STYLE.md 8).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import audit, indicators, ui
from api.admin import admin_router
from api.alerts import alerts_router
from api.audit import audit_log
from api.auth import FailureLimiter
from api.stream import stream_router
from api.taxii.errors import TaxiiError, error_response
from api.taxii.media import TAXII_21
from api.taxii.routes import taxii_router
from api.webhooks import webhooks_router
from core.errors import StoreUnavailable
from core.policy import SharingPolicy

if TYPE_CHECKING:
    from threatbay.bootstrap import Services

log = logging.getLogger("threatbay.api")

TAXII_PREFIX = "/taxii2/"


class TaxiiMediaType:
    """Pure ASGI middleware: every response under ``/taxii2/`` carries the TAXII media type.

    Covers what no view renders itself: redirects, 405s, server errors.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(TAXII_PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_typed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"content-type"
                ]
                headers.append((b"content-type", TAXII_21.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_typed)


def _is_taxii(request: Request) -> bool:
    return request.url.path.startswith(TAXII_PREFIX)


def _error(request: Request, err: TaxiiError) -> Response:
    if _is_taxii(request):
        return error_response(err)
    return JSONResponse({"detail": err.description or err.title}, err.status, headers=err.headers)


def create_app(services: Services, sharing_policy: SharingPolicy | None = None) -> FastAPI:
    """Build the app over ``services`` (from ``threatbay.bootstrap.build``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        audit = audit_log(services)
        audit.start()
        try:
            yield
        finally:
            audit.close()

    app = FastAPI(title="ThreatBay", version="0.1", lifespan=lifespan)
    app.state.services = services
    app.state.sharing_policy = sharing_policy or services.sharing
    app.state.auth_limiter = FailureLimiter()

    @app.exception_handler(TaxiiError)
    async def on_taxii_error(request: Request, exc: TaxiiError) -> Response:
        return _error(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers: dict[str, Any] = dict(exc.headers or {})
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return _error(request, TaxiiError(exc.status_code, title, str(exc.detail), headers))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _is_taxii(request):
            return error_response(TaxiiError(400, "Bad Request", str(exc.errors())))
        return JSONResponse({"detail": exc.errors()}, 422)

    @app.exception_handler(StoreUnavailable)
    async def on_store_down(request: Request, exc: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", exc)
        return _error(request, TaxiiError(503, "Service Unavailable", "the store is unavailable"))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return _error(request, TaxiiError(500, "Internal Server Error", "unexpected error"))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(taxii_router())
    app.include_router(admin_router())
    app.include_router(indicators.router())
    app.include_router(audit.router())
    app.include_router(ui.router())
    app.include_router(alerts_router())
    app.include_router(stream_router())
    app.include_router(webhooks_router())
    app.add_middleware(TaxiiMediaType)
    return app
