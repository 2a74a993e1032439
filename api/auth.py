"""Authentication: HTTP Basic (TAXII 2.1 section 1.6.9) and API keys (Bearer, Token, a header).

``authenticate`` is the dependency behind ``api.deps.CurrentPrincipal``. The
credential and its agency read from the store are kept in a
``PrincipalCache`` for at most ``api.auth_cache_ttl_s`` (1 s): that removes two
store round trips from every request. What a security reviewer needs to know:

- the secret, revocation and expiry are checked on every request against the
  cached credential (``records.agencies.principal_of``); only the store read is
  saved, and failures are never cached;
- every change made through ``AgencyRegistry`` in this process (admin API:
  revoke, rotate, agency or credential added) bumps ``registry.generation()``
  and empties the cache, so here a revocation applies on the very next request;
- a change written by another process (``threatbay agency revoke`` from the
  command line, another API process) applies within the TTL; a TTL of 0
  restores a store read on every request.

Failed attempts are rate limited per client address with a small token bucket.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.errors import HttpError
from core.access import Agency, Credential, Principal, parse_bearer
from core.services import Services
from records import agencies as registry
from records.agencies import AgencyRegistry, AuthenticationFailed, principal_of
from records.books import records_of

CHALLENGE = 'Basic realm="ThreatBay TAXII", Bearer realm="ThreatBay TAXII"'


class PrincipalCache:
    """Credentials with their agencies as last read from the store, for ``ttl_s`` seconds.

    An entry is used only while it is younger than ``ttl_s`` and no registry
    change happened in this process since the read began (``registry.generation``).
    """

    def __init__(
        self,
        ttl_s: float = 1.0,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[str, tuple[Credential, Agency, int, float]] = {}

    def get(self, key_id: str) -> tuple[Credential, Agency] | None:
        """The cached credential and agency of ``key_id`` if still fresh, else None."""
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        cred, agency, gen, read_at = entry
        if gen != registry.generation() or self._monotonic() - read_at >= self.ttl_s:
            self._entries.pop(key_id, None)
            return None
        return cred, agency

    def read(self, reg: AgencyRegistry, key_id: str) -> tuple[Credential, Agency]:
        """Read ``key_id`` from the store and keep it; raises ``AuthenticationFailed``."""
        # Taken before the read: a change landing during the read voids the entry.
        gen, read_at = registry.generation(), self._monotonic()
        cred, agency = reg.credential_of(key_id)
        if self.ttl_s > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key_id] = (cred, agency, gen, read_at)
        return cred, agency


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


def unauthorized(description: str) -> HttpError:
    return HttpError(401, "Unauthorized", description, {"WWW-Authenticate": CHALLENGE})


def credentials_of(header: str | None, api_key: str | None = None) -> tuple[str, str] | None:
    """(key_id, secret) from an Authorization header, else from the API-key header's value.

    Schemes (case-insensitive): ``Basic base64(key id:secret)`` (TAXII 2.1
    section 1.6.9), ``Bearer tb_<key id>.<secret>`` and ``Token tb_<key
    id>.<secret>`` (what taxii2-client's ``TokenAuth``, OpenCTI's connector
    ``use_token`` and Elastic ti_custom's ``key_type: Token`` send). ``api_key``
    is the value of the header named by ``api.key_header`` (OpenCTI's connector
    ``use_apikey`` sends a header its operator names), a bare ``tb_<key
    id>.<secret>``; it is read only when there is no Authorization header, so a
    wrong Authorization is never rescued by it. None when absent or malformed.
    """
    if not header:
        return parse_bearer(api_key.strip()) if api_key else None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() in ("bearer", "token"):
        return parse_bearer(value)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, ValueError):  # ValueError: non-ASCII in the header
            return None
        user, colon, password = decoded.partition(":")
        return (user, password) if colon else None
    return None


async def authenticate(request: Request) -> Principal:
    """The caller's principal; 401 with ``WWW-Authenticate`` when missing or bad.

    Async so a cached credential costs no thread-pool hop; a store read runs in
    the thread pool.
    """
    client = request.client.host if request.client else "unknown"
    limiter: FailureLimiter = request.app.state.auth_limiter
    if limiter.blocked(client):
        raise HttpError(
            429, "Too Many Requests", "too many failed authentications", {"Retry-After": "5"}
        )
    services: Services = request.app.state.services
    key_header = services.settings.api.key_header
    api_key = request.headers.get(key_header) if key_header else None
    creds = credentials_of(request.headers.get("authorization"), api_key)
    if creds is None:
        raise unauthorized(
            "HTTP Basic (key id, secret), or Bearer / Token tb_<key id>.<secret> required"
        )
    key_id, secret = creds
    cache: PrincipalCache = request.app.state.auth_cache
    try:
        found = cache.get(key_id)
        if found is None:
            reg = records_of(services).agencies
            found = await run_in_threadpool(cache.read, reg, key_id)
        return principal_of(*found, secret, services.clock.now())
    except AuthenticationFailed as exc:
        limiter.failed(client)
        raise unauthorized("unknown, revoked or expired credential, or wrong secret") from exc


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency: the caller, who must hold one of ``roles`` (403 otherwise)."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has(*roles):
            raise HttpError(403, "Forbidden", f"this needs one of the roles {list(roles)}")
        return principal

    return check
