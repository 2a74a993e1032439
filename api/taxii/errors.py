"""TAXII error resource (TAXII 2.1 section 3.6.1) and the one exception that carries it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from api.taxii.media import TAXII_21


class TaxiiError(Exception):
    """An HTTP answer that is an error; rendered as the TAXII error resource."""

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

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"title": self.title, "http_status": str(self.status)}
        if self.description:
            doc["description"] = self.description
        return doc


def error_response(err: TaxiiError) -> Response:
    """The error resource with the TAXII media type and ``http_status`` equal to the status."""
    return Response(
        orjson.dumps(err.body()), status_code=err.status, media_type=TAXII_21, headers=err.headers
    )


def bad_request(description: str) -> TaxiiError:
    return TaxiiError(400, "Bad Request", description)


def not_found(description: str) -> TaxiiError:
    return TaxiiError(404, "Not Found", description)


def forbidden(description: str) -> TaxiiError:
    return TaxiiError(403, "Forbidden", description)
