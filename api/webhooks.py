"""Webhook routes: register an agency's endpoint, list deliveries, retry a dead one.

The notifier and deliverer that create and send deliveries live in notify/;
endpoints and jobs in records/webhooks.py and records/deliveries.py. The
signing secret is shown once, at registration (core/webhook_signing.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.admin import administered, webhook_target_error
from api.deps import Books, CurrentPrincipal, Svc
from api.errors import ERROR_RESPONSES, ApiError, forbidden, not_found
from records.deliveries import DEAD


class WebhookIn(BaseModel):
    url: str = Field(..., min_length=8, max_length=2000)


def webhooks_router() -> APIRouter:
    """``/api/v1/webhooks`` and ``/api/v1/deliveries``."""
    router = APIRouter(prefix="/api/v1", tags=["notifications"], responses=ERROR_RESPONSES)

    @router.put("/webhooks/{agency_id}")
    def register_webhook(
        agency_id: str, body: WebhookIn, principal: CurrentPrincipal, books: Books, svc: Svc
    ) -> JSONResponse:
        """Set the webhook URL of an agency of the caller's jurisdiction (admin); answers the new
        signing secret once. The URL must be https (in production) and resolve to public
        addresses only, unless allow-listed (core/webhook_targets.py)."""
        if not principal.has("admin"):
            raise forbidden("registering a webhook needs the admin role")
        agency = administered(books.agencies, principal, agency_id)
        problem = webhook_target_error(svc.settings, body.url)
        if problem is not None:
            raise ApiError(422, "Unprocessable Entity", problem)
        secret = books.webhooks.register(agency, body.url)
        books.audit.record("webhooks.register", principal, agency_id)
        return JSONResponse({"agency_id": agency_id, "url": body.url, "secret": secret})

    @router.get("/deliveries")
    def list_deliveries(
        principal: CurrentPrincipal,
        books: Books,
        state: Literal["pending", "delivered", "dead"] | None = None,
        agency: str | None = None,
        alert_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: str | None = None,
    ) -> JSONResponse:
        """Delivery jobs with their attempt logs (admins: all; others: their own)."""
        if not principal.has("admin", "analyst"):
            raise forbidden("this needs the analyst or admin role")
        if not principal.has("admin"):
            agency = principal.agency.id
        items, nxt = books.deliveries.page(
            agency=agency, state=state, alert_id=alert_id, limit=limit, cursor=cursor
        )
        return JSONResponse({"items": items, "next_cursor": nxt})

    @router.post("/deliveries/{job_id}/retry")
    def retry_delivery(job_id: str, principal: CurrentPrincipal, books: Books) -> JSONResponse:
        """Put a dead job back in the queue (admin)."""
        if not principal.has("admin"):
            raise forbidden("this needs the admin role")
        stored = books.deliveries.get(job_id)
        if stored is None:
            raise not_found(f"no delivery {job_id}")
        if stored.doc["state"] != DEAD:
            raise ApiError(409, "Conflict", f"delivery is {stored.doc['state']}")
        job = books.deliveries.requeue(stored)
        if job is None:
            raise ApiError(409, "Conflict", "delivery changed meanwhile; retry")
        books.audit.record("deliveries.retry", principal, job_id)
        return JSONResponse({k: v for k, v in job.items() if k != "payload"})

    return router
