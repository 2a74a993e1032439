"""Admin API: an agency's admins manage the agencies of their own jurisdiction (role ``admin``).

DOMAIN.md "Parties": administration is scoped. An admin of a HK agency lists,
registers, reads and issues, rotates or revokes credentials for HK agencies
only; another jurisdiction's agency is answered 404, as if it did not exist, so
nobody can mint a credential that reads another jurisdiction's intelligence.
Consent to receive another jurisdiction's AMBER (``crossborder_consent``) is a
bilateral arrangement, not a jurisdiction's own choice: it is set on the host
(``threatbay agency add --crossborder-consent``), never through this API.
There is no platform-operator role over HTTP: cross-jurisdiction
administration is done on the host, by the command line, which holds the
store anyway. Every admin action is written to the audit log.
"""

from __future__ import annotations

import socket
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import Admin, Books, Svc
from api.errors import ERROR_RESPONSES, ApiError
from core.access import Agency, Credential, Principal, bearer_token
from core.clock import parse_timestamp
from core.errors import UnknownAgency
from core.settings import Settings
from core.webhook_targets import webhook_url_error
from records.agencies import AgencyExists, AgencyRegistry, UnknownCredential
from records.books import Records


class AgencyIn(BaseModel):
    id: str
    name: str
    jurisdiction: str
    identity_id: str
    reliability: str = "C"
    default_confidence: int = Field(50, ge=0, le=100)
    roles: list[str] = ["publisher", "analyst"]
    webhook_url: str | None = None
    crossborder_consent: list[str] = []
    cert_names: list[str] = []
    require_client_cert: bool = False


class CredentialIn(BaseModel):
    roles: list[str] | None = None
    expires_at: str | None = None


def _registry(books: Books) -> AgencyRegistry:
    return books.agencies


Registry = Annotated[AgencyRegistry, Depends(_registry)]


def _issued(cred: Credential, secret: str) -> dict[str, Any]:
    return cred.public() | {"secret": secret, "bearer": bearer_token(cred.key_id, secret)}


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (system resolver)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def webhook_target_error(settings: Settings, url: str) -> str | None:
    """Why ``url`` may not be a webhook of this deployment (core/webhook_targets.py)."""
    hooks = settings.webhooks
    https = hooks.require_https if hooks.require_https is not None else settings.env == "production"
    return webhook_url_error(
        url, require_https=https, allowed=hooks.allowed_targets, resolve=resolve_host
    )


def administered(registry: AgencyRegistry, admin: Principal, agency_id: str) -> Agency:
    """``agency_id`` if ``admin`` administers it (same jurisdiction); 404 otherwise."""
    try:
        agency = registry.get(agency_id)
    except UnknownAgency:
        agency = None
    if agency is None or agency.jurisdiction != admin.agency.jurisdiction:
        raise ApiError(
            404,
            "Not Found",
            f"no agency {agency_id!r} in your jurisdiction ({admin.agency.jurisdiction})",
        )
    return agency


def _credential_agency(registry: AgencyRegistry, admin: Principal, key_id: str) -> None:
    """404 unless credential ``key_id`` belongs to an agency ``admin`` administers."""
    try:
        cred = registry.credential(key_id)
    except UnknownCredential as exc:
        raise ApiError(404, "Not Found", f"unknown credential {key_id!r}") from exc
    administered(registry, admin, cred.agency_id)


def admin_router() -> APIRouter:
    """``/api/v1/admin/...``: manage agencies and credentials of one's jurisdiction."""
    router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)

    def audit(books: Records, action: str, admin: Principal, target: str | None) -> None:
        books.audit.record(action, admin, target, jurisdiction=admin.agency.jurisdiction)

    @router.get("/agencies")
    def list_agencies(admin: Admin, registry: Registry, books: Books) -> list[dict[str, Any]]:
        audit(books, "admin.agencies.list", admin, None)
        return [a.to_doc() for a in registry.list() if a.jurisdiction == admin.agency.jurisdiction]

    @router.post("/agencies", status_code=201)
    def add_agency(
        body: AgencyIn, admin: Admin, registry: Registry, books: Books, svc: Svc
    ) -> JSONResponse:
        if body.jurisdiction != admin.agency.jurisdiction:
            raise ApiError(
                403,
                "Forbidden",
                f"you administer agencies of {admin.agency.jurisdiction} only",
            )
        if body.crossborder_consent:
            raise ApiError(
                403,
                "Forbidden",
                "cross-border consent is a bilateral arrangement set on the host "
                "(threatbay agency add --crossborder-consent), not through the API",
            )
        if body.webhook_url is not None:
            problem = webhook_target_error(svc.settings, body.webhook_url)
            if problem is not None:
                return JSONResponse({"detail": problem}, status_code=422)
        try:
            agency = Agency(
                **body.model_dump()
                | {
                    "roles": tuple(body.roles),
                    "crossborder_consent": (),
                    "cert_names": tuple(body.cert_names),
                }
            )
            registry.add_agency(agency)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        except AgencyExists as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        audit(books, "admin.agencies.add", admin, agency.id)
        return JSONResponse(agency.to_doc(), status_code=201)

    @router.get("/agencies/{agency_id}")
    def get_agency(agency_id: str, admin: Admin, registry: Registry, books: Books) -> JSONResponse:
        agency = administered(registry, admin, agency_id)
        creds = [c.public() for c in registry.credentials(agency_id)]
        audit(books, "admin.agencies.read", admin, agency_id)
        return JSONResponse(agency.to_doc() | {"credentials": creds})

    @router.post("/agencies/{agency_id}/credentials", status_code=201)
    def add_credential(
        agency_id: str, body: CredentialIn, admin: Admin, registry: Registry, books: Books
    ) -> JSONResponse:
        administered(registry, admin, agency_id)
        try:
            expires = parse_timestamp(body.expires_at) if body.expires_at else None
            roles = tuple(body.roles) if body.roles is not None else None
            cred, secret = registry.add_credential(agency_id, roles, expires)
        except UnknownAgency as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        audit(books, "admin.credentials.add", admin, f"{agency_id}/{cred.key_id}")
        return JSONResponse(_issued(cred, secret), status_code=201)

    @router.post("/credentials/{key_id}/rotate")
    def rotate(key_id: str, admin: Admin, registry: Registry, books: Books) -> JSONResponse:
        _credential_agency(registry, admin, key_id)
        try:
            cred, secret = registry.rotate(key_id)
        except UnknownCredential as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        audit(books, "admin.credentials.rotate", admin, key_id)
        return JSONResponse(_issued(cred, secret))

    @router.post("/credentials/{key_id}/revoke")
    def revoke(key_id: str, admin: Admin, registry: Registry, books: Books) -> JSONResponse:
        _credential_agency(registry, admin, key_id)
        try:
            cred = registry.revoke(key_id)
        except UnknownCredential as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        audit(books, "admin.credentials.revoke", admin, key_id)
        return JSONResponse(cred.public())

    return router
