"""The error body of the analyst API (non-TAXII routes), declared once for OpenAPI.

Also ``FastJSON``, the response class of the hot read routes.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class FastJSON(JSONResponse):
    """JSON rendered by orjson, skipping FastAPI's encoder walk (records and alerts are plain JSON).

    Same JSON as the default path; routes keep ``response_model`` for OpenAPI.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(BaseModel):
    """``detail`` says what is wrong: a sentence, or FastAPI's list of field errors."""

    detail: str | list[Any]


#: Every status an /api/v1 route may answer besides its success, for ``APIRouter(responses=)``.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ApiError, "description": text}
    for status, text in (
        (400, "Bad request (unparsable body, bad cursor or parameter)"),
        (401, "Missing, unknown, revoked or expired credential"),
        (403, "The credential's role or agency may not do this"),
        (404, "Not found, or not visible to the caller"),
        (409, "Conflict with the current state"),
        (422, "Unprocessable input"),
        (429, "Too many failed authentications"),
        (503, "The store or bus is unavailable; retry"),
    )
}
