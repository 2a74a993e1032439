"""Authentication: HTTP Basic (TAXII 2.1 section 1.6.9) and bearer API keys.

``CurrentPrincipal`` is the ``Annotated`` dependency every protected route
takes. Each request reads the credential from the store: no caching, so a
revocation is effective on the next request. Failed attempts are rate
limited per client address with a small token bucket.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from api.registry import AgencyRegistry, AuthenticationFailed
from api.taxii.errors import TaxiiError
from core.access import Principal, parse_bearer

CHALLENGE = 'Basic realm="ThreatBay TAXII", Bearer realm="ThreatBay TAXII"'


class FailureLimiter:
    """Per-address token bucket over failed authentications (in memory, one process)."""

    def __init__(self, burst: int = 20, per_second: float = 1.0, max_clients: int = 10_000):
        self.burst = burst
        self.per_second = per_second
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def blocked(self, client: str) -> bool:
        """True when ``client`` has used up its failures."""
        with self._lock:
            return self._level(client, time.monotonic()) < 1.0

    def failed(self, client: str) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._buckets) >= self.max_clients:
                self._buckets.clear()
            self._buckets[client] = (max(0.0, self._level(client, now) - 1.0), now)


_LIMITER = FailureLimiter()


def unauthorized(description: str) -> TaxiiError:
    return TaxiiError(401, "Unauthorized", description, {"WWW-Authenticate": CHALLENGE})


def credentials_of(header: str | None) -> tuple[str, str] | None:
    """(key_id, secret) from an Authorization header; None when absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return parse_bearer(value)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, ValueError):  # ValueError: non-ASCII in the header
            return None
        user, colon, password = decoded.partition(":")
        return (user, password) if colon else None
    return None


def authenticate(request: Request) -> Principal:
    """The caller's principal; 401 with ``WWW-Authenticate`` when missing or bad."""
    client = request.client.host if request.client else "unknown"
    limiter: FailureLimiter = getattr(request.app.state, "auth_limiter", _LIMITER)
    if limiter.blocked(client):
        raise TaxiiError(
            429, "Too Many Requests", "too many failed authentications", {"Retry-After": "5"}
        )
    creds = credentials_of(request.headers.get("authorization"))
    if creds is None:
        raise unauthorized("HTTP Basic (key id, secret) or Bearer tb_<key id>.<secret> required")
    services = request.app.state.services
    try:
        return AgencyRegistry(services.store, services.clock).authenticate(*creds)
    except AuthenticationFailed as exc:
        limiter.failed(client)
        raise unauthorized("unknown, revoked or expired credential, or wrong secret") from exc


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require_role(*roles: str) -> Callable[[Principal], Principal]:
    """Dependency: the caller must hold one of ``roles`` (403 otherwise)."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.has(*roles):
            raise TaxiiError(403, "Forbidden", f"this needs one of the roles {list(roles)}")
        return principal

    return check
