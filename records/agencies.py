"""Agencies and their credentials, kept in the agencies index (DOMAIN.md "Parties").

Documents: ``agency:<id>`` (kind ``agency``) and ``cred:<key_id>`` (kind
``credential``). ``api/auth.py`` keeps what it read for a short TTL; every
change made here bumps ``generation()``, which drops that cache at once, so in
this process a revocation or rotation takes effect on the very next request
(changes written by another process apply within the TTL).
"""

from __future__ import annotations

import builtins
import itertools
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.access import (
    Agency,
    Credential,
    Principal,
    new_credential,
    valid_key_id,
    with_new_secret,
)
from core.clock import Clock
from core.errors import ThreatBayError, UnknownAgency
from core.names import INDEX_AGENCIES
from core.ports import Put, Query, Store, Term

PAGE = 1000

# Bumped after every change this process makes to agencies or credentials.
_changes = itertools.count(1)
_generation = 0


def generation() -> int:
    """How many agency/credential changes this process has made (auth cache key)."""
    return _generation


def _changed() -> None:
    global _generation
    _generation = next(_changes)


class AuthenticationFailed(ThreatBayError):
    """Unknown key, wrong secret, revoked or expired credential (the reason is logged only)."""


class UnknownCredential(ThreatBayError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown credential {key_id!r}")
        self.key_id = key_id


class AgencyExists(ThreatBayError):
    def __init__(self, agency_id: str) -> None:
        super().__init__(f"agency {agency_id!r} already exists")
        self.agency_id = agency_id


class AgencyRegistry:
    """Agencies and credentials over the ``Store`` port."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # ------------------------------------------------------------ agencies

    def add_agency(self, agency: Agency) -> Agency:
        """Register ``agency``; raises ``AgencyExists`` if its id is taken."""
        (result,) = self.store.put_many(
            INDEX_AGENCIES, [Put(f"agency:{agency.id}", agency.to_doc(), expected=None)]
        )
        if not result.ok:
            raise AgencyExists(agency.id)
        self.store.refresh(INDEX_AGENCIES)
        _changed()
        return agency

    def set_client_certificates(
        self, agency_id: str, names: tuple[str, ...], required: bool
    ) -> Agency:
        """Which client certificates name ``agency_id``, and whether its keys need one."""
        stored = self.store.get(INDEX_AGENCIES, f"agency:{agency_id}")
        if stored is None:
            raise UnknownAgency(agency_id)
        agency = replace(
            Agency.from_doc(stored.doc), cert_names=tuple(names), require_client_cert=required
        )
        (result,) = self.store.put_many(
            INDEX_AGENCIES, [Put(f"agency:{agency_id}", agency.to_doc(), expected=stored.version)]
        )
        if not result.ok:
            raise AgencyExists(f"{agency_id} (changed concurrently; retry)")
        self.store.refresh(INDEX_AGENCIES)
        _changed()
        return agency

    def get(self, agency_id: str) -> Agency:
        stored = self.store.get(INDEX_AGENCIES, f"agency:{agency_id}")
        if stored is None:
            raise UnknownAgency(agency_id)
        return Agency.from_doc(stored.doc)

    def _all(self, filters: tuple[Term, ...]) -> builtins.list[dict[str, Any]]:
        """Every matching document, page by page (Elasticsearch caps one page at 10,000)."""
        docs: builtins.list[dict[str, Any]] = []
        after: tuple[Any, ...] | None = None
        while True:
            page = self.store.search(
                INDEX_AGENCIES, Query(filters=filters, limit=PAGE, after=after)
            )
            docs += [h.doc for h in page.hits]
            if not page.more or not page.hits:
                return docs
            after = page.hits[-1].cursor

    def list(self) -> builtins.list[Agency]:
        return [Agency.from_doc(d) for d in self._all((Term("kind", ("agency",)),))]

    def identity_owners(self) -> dict[str, str]:
        """Canonical (lower-case) STIX identity id -> agency id (core/ownership.py)."""
        return {a.identity_id.lower(): a.id for a in self.list()}

    # --------------------------------------------------------- credentials

    def add_credential(
        self,
        agency_id: str,
        roles: tuple[str, ...] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[Credential, str]:
        """New credential for ``agency_id``; the secret is returned once and never stored."""
        agency = self.get(agency_id)
        cred, secret = new_credential(agency, self.clock.now(), roles, expires_at)
        self.store.put_many(INDEX_AGENCIES, [Put(f"cred:{cred.key_id}", cred.to_doc())])
        self.store.refresh(INDEX_AGENCIES)
        _changed()
        return cred, secret

    def credentials(self, agency_id: str | None = None) -> builtins.list[Credential]:
        filters: tuple[Term, ...] = (Term("kind", ("credential",)),)
        if agency_id is not None:
            filters += (Term("agency_id", (agency_id,)),)
        return [Credential.from_doc(d) for d in self._all(filters)]

    def _credential(self, key_id: str) -> tuple[Credential, Any]:
        stored = self.store.get(INDEX_AGENCIES, f"cred:{key_id}") if valid_key_id(key_id) else None
        if stored is None:
            raise UnknownCredential(key_id)
        return Credential.from_doc(stored.doc), stored.version

    def credential(self, key_id: str) -> Credential:
        """The credential ``key_id`` (read by key); raises ``UnknownCredential``."""
        return self._credential(key_id)[0]

    def rotate(self, key_id: str) -> tuple[Credential, str]:
        """New secret for ``key_id``; the old secret is refused from now on."""
        cred, version = self._credential(key_id)
        fresh, secret = with_new_secret(cred)
        (result,) = self.store.put_many(
            INDEX_AGENCIES, [Put(f"cred:{key_id}", fresh.to_doc(), expected=version)]
        )
        if not result.ok:
            raise AuthenticationFailed(f"credential {key_id} changed concurrently; retry")
        self.store.refresh(INDEX_AGENCIES)
        _changed()
        return fresh, secret

    def revoke(self, key_id: str) -> Credential:
        """Revoke ``key_id``, effective for the next request."""
        cred, _ = self._credential(key_id)
        doc = cred.to_doc() | {"revoked": True}
        self.store.put_many(INDEX_AGENCIES, [Put(f"cred:{key_id}", doc, blind=True)])
        self.store.refresh(INDEX_AGENCIES)
        _changed()
        return Credential.from_doc(doc)

    def credential_of(self, key_id: str) -> tuple[Credential, Agency]:
        """The credential ``key_id`` and its agency, unchecked; raises ``AuthenticationFailed``."""
        try:
            cred, _ = self._credential(key_id)
        except UnknownCredential as exc:
            raise AuthenticationFailed("unknown key") from exc
        try:
            agency = self.get(cred.agency_id)
        except UnknownAgency as exc:
            raise AuthenticationFailed("agency gone") from exc
        return cred, agency

    def authenticate(self, key_id: str, secret: str) -> Principal:
        """The principal for a key id and secret; raises ``AuthenticationFailed``."""
        cred, agency = self.credential_of(key_id)
        return principal_of(cred, agency, secret, self.clock.now())


def principal_of(cred: Credential, agency: Agency, secret: str, now: datetime) -> Principal:
    """Check ``secret``, revocation and expiry at ``now``; raises ``AuthenticationFailed``."""
    if not cred.matches(secret):
        raise AuthenticationFailed("wrong secret")
    if cred.revoked:
        raise AuthenticationFailed("revoked")
    if cred.expired(now):
        raise AuthenticationFailed("expired")
    return Principal(agency=agency, roles=frozenset(cred.roles), key_id=cred.key_id)
