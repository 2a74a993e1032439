"""The situational-awareness page at ``/ui/`` and ``GET /api/v1/me``.

The page is plain HTML/JS/CSS shipped as package data under ``api/ui_static``:
no CDN (agency networks have no internet) and no build step. It is a client
of the public API only — every figure it shows comes from ``/api/v1/...``
called with the user's own API key, so it shows exactly what that key may see.
Serving the files needs no authentication (they hold no data); ``/api/v1/me``
does, and tells a client which agency, jurisdiction and roles its key carries.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from api.deps import CurrentPrincipal
from api.errors import ERROR_RESPONSES, not_found

UI_PATH = "/ui/"

# Only these files are served: no path from the request ever reaches the file system.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "i18n.json": "application/json; charset=utf-8",
    # The joint incident case page (respond/, README "Joint incident response").
    "incidents.html": "text/html; charset=utf-8",
    "incidents.js": "text/javascript; charset=utf-8",
    "incidents.css": "text/css; charset=utf-8",
    "incidents-i18n.json": "application/json; charset=utf-8",
}

# Same-origin only: the page may talk to this API and nothing else, and run only its own script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def load_assets() -> dict[str, bytes]:
    """The page's files, read from the installed package (``api/ui_static``)."""
    folder = resources.files("api").joinpath("ui_static")
    return {name: folder.joinpath(name).read_bytes() for name in ASSETS}


def me_view(principal: CurrentPrincipal) -> dict[str, Any]:
    """Who the caller is, as far as the API is concerned (no secret, no hash)."""
    agency = principal.agency
    return {
        "agency": {"id": agency.id, "name": agency.name, "jurisdiction": agency.jurisdiction},
        "roles": sorted(principal.roles),
        "key_id": principal.key_id,
    }


def router() -> APIRouter:
    """``/ui/`` (the page and its assets) and ``/api/v1/me``."""
    assets = load_assets()
    r = APIRouter(tags=["ui"], responses=ERROR_RESPONSES)

    @r.get("/ui", include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse(UI_PATH, status_code=308)

    @r.get(UI_PATH, include_in_schema=False)
    def ui_index() -> Response:
        return Response(assets["index.html"], media_type=ASSETS["index.html"],
                        headers=SECURITY_HEADERS)  # fmt: skip

    @r.get(UI_PATH + "{name}", include_in_schema=False)
    def ui_asset(name: str) -> Response:
        if name not in assets:
            raise not_found(f"no such file {name!r}")
        return Response(assets[name], media_type=ASSETS[name], headers=SECURITY_HEADERS)

    @r.get("/api/v1/me", summary="The caller's agency, jurisdiction and roles")
    def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return me_view(principal)

    return r
