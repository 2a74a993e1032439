"""Admin API: operators manage agencies and credentials (DOMAIN.md "Parties"), role ``admin``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import Admin, Books
from api.errors import ERROR_RESPONSES
from core.access import Agency, Credential, bearer_token
from core.clock import parse_timestamp
from core.errors import UnknownAgency
from records.agencies import AgencyExists, AgencyRegistry, UnknownCredential


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


def admin_router() -> APIRouter:
    """``/api/v1/admin/...``: manage agencies and credentials (role ``admin``)."""
    router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)

    @router.get("/agencies")
    def list_agencies(_: Admin, registry: Registry) -> list[dict[str, Any]]:
        return [a.to_doc() for a in registry.list()]

    @router.post("/agencies", status_code=201)
    def add_agency(body: AgencyIn, _: Admin, registry: Registry) -> JSONResponse:
        try:
            agency = Agency(
                **body.model_dump()
                | {
                    "roles": tuple(body.roles),
                    "crossborder_consent": tuple(body.crossborder_consent),
                    "cert_names": tuple(body.cert_names),
                }
            )
            registry.add_agency(agency)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        except AgencyExists as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return JSONResponse(agency.to_doc(), status_code=201)

    @router.get("/agencies/{agency_id}")
    def get_agency(agency_id: str, _: Admin, registry: Registry) -> JSONResponse:
        try:
            agency = registry.get(agency_id)
        except UnknownAgency as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        creds = [c.public() for c in registry.credentials(agency_id)]
        return JSONResponse(agency.to_doc() | {"credentials": creds})

    @router.post("/agencies/{agency_id}/credentials", status_code=201)
    def add_credential(
        agency_id: str, body: CredentialIn, _: Admin, registry: Registry
    ) -> JSONResponse:
        try:
            expires = parse_timestamp(body.expires_at) if body.expires_at else None
            roles = tuple(body.roles) if body.roles is not None else None
            cred, secret = registry.add_credential(agency_id, roles, expires)
        except UnknownAgency as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse(_issued(cred, secret), status_code=201)

    @router.post("/credentials/{key_id}/rotate")
    def rotate(key_id: str, _: Admin, registry: Registry) -> JSONResponse:
        try:
            cred, secret = registry.rotate(key_id)
        except UnknownCredential as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return JSONResponse(_issued(cred, secret))

    @router.post("/credentials/{key_id}/revoke")
    def revoke(key_id: str, _: Admin, registry: Registry) -> JSONResponse:
        try:
            cred = registry.revoke(key_id)
        except UnknownCredential as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return JSONResponse(cred.public())

    return router
