"""The TAXII family of HTTP errors (TAXII 2.1 section 3.6.1), raised only by TAXII views.

Rendered as the TAXII error resource by api/errors.py, like every error under
``/taxii2/``.
"""

from __future__ import annotations

from api.errors import HttpError


class TaxiiError(HttpError):
    """An error answered by a TAXII view."""


def bad_request(description: str) -> TaxiiError:
    return TaxiiError(400, "Bad Request", description)


def not_found(description: str) -> TaxiiError:
    return TaxiiError(404, "Not Found", description)


def forbidden(description: str) -> TaxiiError:
    return TaxiiError(403, "Forbidden", description)
