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

Failed attempts are rate limited per key id and per client address
(``FailureLimiter``): a source over its budget may still use existing keys, so
one attacker behind a NAT cannot lock out the agencies behind it.

Client certificates (``api/client_certs.py``): over TLS a caller may
present a certificate issued under one jurisdiction's CA. It names an agency
through the registry (``Agency.cert_names``: its subject CN or a SAN), and only
an agency of that same jurisdiction: a certificate from HK's CA naming a GD
agency is refused. Alone it authenticates the agency with the agency's roles;
with a key or bearer token both must name the same agency (the credential's
roles apply). An agency with ``require_client_cert`` is refused without it.
A presented certificate that fails any check refuses the request outright,
whatever else came with it.
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

from api.client_certs import CertificateRefused, JurisdictionTrust
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


class _Buckets:
    """Token buckets of failures by name: ``burst`` failures, refilled ``per_second``."""

    def __init__(self, burst: int, per_second: float, max_entries: int = 10_000) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_entries = max_entries
        self._levels: dict[str, tuple[float, float]] = {}

    def _level(self, name: str, now: float) -> float:
        tokens, at = self._levels.get(name, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def empty(self, name: str, now: float) -> bool:
        return self._level(name, now) < 1.0

    def take(self, name: str, now: float) -> None:
        if len(self._levels) >= self.max_entries:
            self._levels.clear()
        self._levels[name] = (max(0.0, self._level(name, now) - 1.0), now)


class FailureLimiter:
    """Failed authentications, limited per source address and per key id (in memory).

    - Per key id and address: ``burst`` wrong secrets for one key from one address,
      then that key is refused from that address (429, the secret not even checked)
      until the bucket refills; per key id from anywhere: ten times that.
    - Per address: past ``burst`` failures, a request naming a key id that does
      not exist is refused at once (429, no store read), but existing keys are
      still checked: an attacker behind a NAT never locks out the valid keys
      behind it. Which key ids exist is read from the registry at most every
      ``known_ttl_s`` seconds, and only while some address is over its budget.
    """

    def __init__(
        self,
        burst: int = 20,
        per_second: float = 1.0,
        max_clients: int = 10_000,
        known_ttl_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.burst = burst
        self._addresses = _Buckets(burst, per_second, max_clients)
        self._keys = _Buckets(burst, per_second, max_clients)
        self._keys_anywhere = _Buckets(burst * 10, per_second * 10, max_clients)
        self._known: frozenset[str] = frozenset()
        self._known_at = -1e18
        self._known_gen = -1
        self.known_ttl_s = known_ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        """True when ``client`` (an address) has used up its failures."""
        with self._lock:
            return self._addresses.empty(client, self._monotonic())

    def key_blocked(self, client: str, key_id: str) -> bool:
        """True when wrong secrets for ``key_id`` used up its budget (from ``client`` or all)."""
        with self._lock:
            now = self._monotonic()
            return self._keys.empty(f"{key_id}@{client}", now) or self._keys_anywhere.empty(
                key_id, now
            )

    def known(self, key_id: str, load: Callable[[], frozenset[str]]) -> bool:
        """True when ``key_id`` is an existing credential (``load`` reads them all)."""
        now = self._monotonic()
        gen = registry.generation()
        if now - self._known_at >= self.known_ttl_s or gen != self._known_gen:
            self._known, self._known_at, self._known_gen = load(), now, gen
        return key_id in self._known

    def failed(self, client: str, key_id: str | None = None) -> None:
        with self._lock:
            now = self._monotonic()
            self._addresses.take(client, now)
            if key_id is not None:
                self._keys.take(f"{key_id}@{client}", now)
                self._keys_anywhere.take(key_id, now)


class CertificateAgencies:
    """Agencies by the names their client certificates carry, re-read every ``ttl_s``."""

    def __init__(self, ttl_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._by_name: dict[str, list[Agency]] = {}
        self._read: tuple[int, float] | None = None

    def fresh(self) -> bool:
        if self._read is None:
            return False
        generation, read_at = self._read
        return generation == registry.generation() and self._monotonic() - read_at < self.ttl_s

    def load(self, reg: AgencyRegistry) -> None:
        """Read every agency's certificate names from the store (runs in the thread pool)."""
        read = (registry.generation(), self._monotonic())
        by_name: dict[str, list[Agency]] = {}
        for agency in reg.list():
            for name in agency.cert_names:
                by_name.setdefault(name.casefold(), []).append(agency)
        self._by_name, self._read = by_name, read

    def named(self, names: tuple[str, ...]) -> list[Agency]:
        found = {a.id: a for n in names for a in self._by_name.get(n.casefold(), [])}
        return list(found.values())


def peer_certificate(request: Request) -> str | None:
    """The client's certificate (PEM) from the ASGI TLS extension, if it presented one."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    return str(chain[0]) if chain else None


async def certificate_agency(request: Request) -> Agency | None:
    """The agency a presented client certificate proves; raises 401 when it proves none."""
    trust: JurisdictionTrust | None = request.app.state.client_trust
    pem = peer_certificate(request)
    if pem is None or trust is None:
        return None
    services: Services = request.app.state.services
    try:
        identity = trust.identify(pem, services.clock.now())
    except CertificateRefused as exc:
        raise unauthorized(str(exc)) from exc
    agencies: CertificateAgencies = request.app.state.cert_agencies
    if not agencies.fresh():
        await run_in_threadpool(agencies.load, records_of(services).agencies)
    named = agencies.named(identity.names)
    if len(named) != 1:
        which = "no agency" if not named else f"several agencies {sorted(a.id for a in named)}"
        raise unauthorized(f"client certificate {identity.subject} names {which} in the registry")
    agency = named[0]
    if agency.jurisdiction != identity.jurisdiction:
        raise unauthorized(
            f"client certificate {identity.subject} was issued by {identity.jurisdiction}'s CA "
            f"and cannot authenticate {agency.id}, an agency of {agency.jurisdiction}"
        )
    return agency


def with_certificate(principal: Principal, cert_agency: Agency | None) -> Principal:
    """Check a credential's principal against the client certificate that came with it."""
    if cert_agency is not None and cert_agency.id != principal.agency.id:
        raise unauthorized(
            f"the client certificate names {cert_agency.id}, the credential {principal.agency.id}"
        )
    if cert_agency is None and principal.agency.require_client_cert:
        raise unauthorized(f"agency {principal.agency.id} requires its client certificate")
    return principal


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
    try:
        cert_agency = await certificate_agency(request)
    except HttpError:
        if limiter.blocked(client):
            raise too_many() from None
        limiter.failed(client)
        raise
    services: Services = request.app.state.services
    key_header = services.settings.api.key_header
    api_key = request.headers.get(key_header) if key_header else None
    creds = credentials_of(request.headers.get("authorization"), api_key)
    if creds is None:
        if cert_agency is not None:
            return Principal(agency=cert_agency, roles=frozenset(cert_agency.roles), key_id="")
        if limiter.blocked(client):
            raise too_many()
        limiter.failed(client)
        raise unauthorized(
            "HTTP Basic (key id, secret), or Bearer / Token tb_<key id>.<secret> required"
        )
    key_id, secret = creds
    if limiter.key_blocked(client, key_id):
        raise too_many()
    cache: PrincipalCache = request.app.state.auth_cache
    reg = records_of(services).agencies
    found = cache.get(key_id)
    if found is None and limiter.blocked(client):
        # Over its budget, an address may still use existing keys, never probe for others.
        known = await run_in_threadpool(limiter.known, key_id, lambda: _key_ids(reg))
        if not known:
            raise too_many()
    try:
        if found is None:
            found = await run_in_threadpool(cache.read, reg, key_id)
        principal = principal_of(*found, secret, services.clock.now())
    except AuthenticationFailed as exc:
        limiter.failed(client, key_id)
        if limiter.key_blocked(client, key_id) or limiter.blocked(client):
            raise too_many() from exc
        raise unauthorized("unknown, revoked or expired credential, or wrong secret") from exc
    try:
        return with_certificate(principal, cert_agency)
    except HttpError:
        limiter.failed(client)
        raise


def _key_ids(reg: AgencyRegistry) -> frozenset[str]:
    return frozenset(c.key_id for c in reg.credentials())


def too_many() -> HttpError:
    return HttpError(
        429, "Too Many Requests", "too many failed authentications", {"Retry-After": "5"}
    )


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency: the caller, who must hold one of ``roles`` (403 otherwise)."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has(*roles):
            raise HttpError(403, "Forbidden", f"this needs one of the roles {list(roles)}")
        return principal

    return check
