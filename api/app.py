"""The FastAPI app factory: TAXII 2.1 under ``/taxii2/``, the analyst API, the page, health.

Errors are mapped in one place (api/errors.py): TAXII error resources with the
TAXII media type under ``/taxii2/``, ``{"detail": ...}`` elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import (
    admin,
    alerts,
    allowlist,
    audit,
    errors,
    exports,
    health,
    incidents,
    incidents_taxii,
    indicators,
    stream,
    ui,
    webhooks,
)
from api.alerts import AlertPages
from api.auth import CertificateAgencies, FailureLimiter, PrincipalCache
from api.client_certs import JurisdictionTrust
from api.errors import TAXII_21, TAXII_PREFIX
from api.taxii.routes import taxii_router
from core.policy import SharingPolicy
from core.services import Services
from ingest.budget import PushBudget
from records.books import records_of


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


class StrictTransportSecurity:
    """Pure ASGI middleware: HSTS on every response served over TLS (RFC 6797 section 7.2)."""

    def __init__(self, app: ASGIApp, max_age_s: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age_s}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_hsts)


def create_app(
    services: Services, sharing_policy: SharingPolicy | None = None, loops: Any = None
) -> FastAPI:
    """Build the app over ``services`` (from ``threatbay.bootstrap.build``).

    ``loops`` are the background loops of this process (``threatbay serve``), for health.
    """
    books = records_of(services)
    api = services.settings.api

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        books.audit.start()
        try:
            yield
        finally:
            books.audit.close()

    app = FastAPI(title="ThreatBay", version="0.1", lifespan=lifespan)
    app.state.services = services
    app.state.sharing_policy = sharing_policy or services.sharing
    app.state.loops = loops
    app.state.auth_limiter = FailureLimiter(api.auth_failure_burst, api.auth_failure_per_s)
    app.state.auth_cache = PrincipalCache(ttl_s=api.auth_cache_ttl_s)
    app.state.push_budget = PushBudget(services.settings.limits)
    app.state.alert_pages = AlertPages(api.alert_page_ttl_s or 0.0)
    tls = services.settings.tls
    app.state.client_trust = (
        JurisdictionTrust(tls.client_ca, tls.client_crl) if tls.client_ca else None
    )
    app.state.cert_agencies = CertificateAgencies(ttl_s=api.auth_cache_ttl_s)
    errors.install(app)
    health.install(app)  # /healthz, /readyz, /metrics and the ingest counter

    app.include_router(incidents_taxii.incidents_taxii_router())  # before /taxii2/{api_root}
    app.include_router(taxii_router())
    app.include_router(admin.admin_router())
    app.include_router(indicators.router())
    app.include_router(exports.exports_router())
    app.include_router(allowlist.allowlist_router())
    app.include_router(audit.router())
    app.include_router(ui.router())
    app.include_router(alerts.alerts_router())
    app.include_router(stream.stream_router())
    app.include_router(webhooks.webhooks_router())
    app.include_router(incidents.incidents_router())
    app.add_middleware(TaxiiMediaType)
    app.add_middleware(StrictTransportSecurity, max_age_s=tls.hsts_max_age_s)
    return app
