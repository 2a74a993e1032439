"""Every FastAPI dependency of the API, as ``Annotated`` aliases, in one module.

(full-stack-fastapi-template ``app/api/deps.py``.) Routes declare what they
need — ``principal: Analyst, svc: Svc, books: Books`` — and never reach into
``request.app.state`` themselves.

A dependency that only reads ``app.state`` is ``async def``: FastAPI runs a plain
``def`` dependency in its thread pool, one hand-off per dependency per request,
which cost a lookup more than the store read (benches/bench_api_scale.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import authenticate, require_role
from core.access import Principal
from core.policy import Reader, SharingPolicy, reader_of
from core.services import Services
from records.books import Records, records_of
from respond.service import Responder


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _records(request: Request) -> Records:
    return records_of(request.app.state.services)


async def _sharing(request: Request) -> SharingPolicy:
    sharing: SharingPolicy = request.app.state.sharing_policy
    return sharing


async def _responder(request: Request) -> Responder:
    found: Responder | None = getattr(request.app.state, "responder", None)
    if found is None:
        services: Services = request.app.state.services
        found = request.app.state.responder = Responder(
            records_of(services), request.app.state.sharing_policy, services.settings.cases
        )
    return found


async def _reader(principal: Annotated[Principal, Depends(authenticate)]) -> Reader:
    return reader_of(principal)


Svc = Annotated[Services, Depends(_services)]
Books = Annotated[Records, Depends(_records)]
Sharing = Annotated[SharingPolicy, Depends(_sharing)]
#: Joint incident cases (respond/service.py) over this process's record books.
Cases = Annotated[Responder, Depends(_responder)]

#: Any authenticated caller.
CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
#: The caller as the sharing policy's reader.
CurrentReader = Annotated[Reader, Depends(_reader)]
#: Callers that may read indicators and alerts.
ReaderRole = Annotated[Principal, Depends(require_role("analyst", "dashboard", "admin"))]
#: Callers that may act (acknowledge, resolve, comment, report sightings).
Analyst = Annotated[Principal, Depends(require_role("analyst", "admin"))]
#: Administrators.
Admin = Annotated[Principal, Depends(require_role("admin"))]

READ_ROLES = ("analyst", "dashboard", "admin")
ACT_ROLES = ("analyst", "admin")
