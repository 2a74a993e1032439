"""Agencies, credentials and the authenticated principal (DOMAIN.md "Parties").

Pure: no I/O. Secrets are 256-bit random strings (``secrets.token_urlsafe(32)``),
so a fast hash is enough: brute force over 2**256 is hopeless whatever the
hash cost, and a slow KDF (bcrypt, PBKDF2) would cost milliseconds on every
TAXII request. We store ``SHA-256(salt || secret)`` with a random per-credential
salt (so equal secrets never give equal hashes and a leaked table cannot be
matched against a precomputed one) and compare with ``hmac.compare_digest``.

Credential strings (TAXII 2.1 section 1.6.9 mandates HTTP Basic):
- HTTP Basic: username = ``key_id``, password = secret;
- bearer: ``Authorization: Bearer tb_<key_id>.<secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from core.clock import format_timestamp, parse_timestamp
from core.provenance import JURISDICTIONS

Role = Literal["publisher", "analyst", "dashboard", "admin"]
ROLES: tuple[Role, ...] = ("publisher", "analyst", "dashboard", "admin")
RELIABILITIES = ("A", "B", "C", "D", "E", "F")
BEARER_PREFIX = "tb_"

_AGENCY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_IDENTITY_ID = re.compile(
    r"^identity--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


class AccessError(ValueError):
    """An agency or credential value is malformed; the message says which field."""


@dataclass(frozen=True, slots=True)
class Agency:
    """A participating agency (DOMAIN.md "Parties")."""

    id: str
    name: str
    jurisdiction: str
    identity_id: str
    reliability: str = "C"
    default_confidence: int = 50
    roles: tuple[str, ...] = ("publisher", "analyst")
    webhook_url: str | None = None
    crossborder_consent: tuple[str, ...] = ()
    cert_names: tuple[str, ...] = ()
    """Subject CN or SAN values (DNS, e-mail, URI) that name this agency's client certificates."""
    require_client_cert: bool = False
    """Refuse this agency's key or bearer token unless its client certificate comes with it."""

    def __post_init__(self) -> None:
        if not _AGENCY_ID.match(self.id):
            raise AccessError(f"agency id {self.id!r} must be lower-case letters, digits, '-'")
        if self.jurisdiction not in JURISDICTIONS:
            raise AccessError(f"jurisdiction must be one of {JURISDICTIONS}")
        if not _IDENTITY_ID.match(self.identity_id):
            raise AccessError(f"identity_id {self.identity_id!r} is not a STIX identity id")
        if self.reliability not in RELIABILITIES:
            raise AccessError(f"reliability must be one of {RELIABILITIES}")
        if not 0 <= self.default_confidence <= 100:
            raise AccessError("default_confidence must be 0..100")
        check_roles(self.roles)
        for j in self.crossborder_consent:
            if j not in JURISDICTIONS:
                raise AccessError(f"crossborder_consent entries must be among {JURISDICTIONS}")
        if any(not n.strip() or n != n.strip() for n in self.cert_names):
            raise AccessError("cert_names entries must be non-empty, without surrounding spaces")
        if self.require_client_cert and not self.cert_names:
            raise AccessError("require_client_cert needs cert_names naming the certificate")

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": "agency",
            "agency_id": self.id,
            "name": self.name,
            "jurisdiction": self.jurisdiction,
            "identity_id": self.identity_id,
            "reliability": self.reliability,
            "default_confidence": self.default_confidence,
            "roles": list(self.roles),
            "webhook_url": self.webhook_url,
            "crossborder_consent": list(self.crossborder_consent),
            "cert_names": list(self.cert_names),
            "require_client_cert": self.require_client_cert,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Agency:
        return cls(
            id=doc["agency_id"],
            name=doc["name"],
            jurisdiction=doc["jurisdiction"],
            identity_id=doc["identity_id"],
            reliability=doc.get("reliability", "C"),
            default_confidence=int(doc.get("default_confidence", 50)),
            roles=tuple(doc.get("roles", ())),
            webhook_url=doc.get("webhook_url"),
            crossborder_consent=tuple(doc.get("crossborder_consent") or ()),
            cert_names=tuple(doc.get("cert_names") or ()),
            require_client_cert=bool(doc.get("require_client_cert", False)),
        )


@dataclass(frozen=True, slots=True)
class Credential:
    """One API key of one agency; only the salted hash of its secret is kept."""

    key_id: str
    agency_id: str
    roles: tuple[str, ...]
    salt: str
    secret_hash: str
    created: str
    expires_at: str | None = None
    revoked: bool = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and parse_timestamp(self.expires_at) <= now

    def matches(self, secret: str) -> bool:
        """Constant-time comparison of ``secret`` against the stored hash."""
        return hmac.compare_digest(hash_secret(self.salt, secret), self.secret_hash)

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": "credential",
            "key_id": self.key_id,
            "agency_id": self.agency_id,
            "roles": list(self.roles),
            "salt": self.salt,
            "secret_hash": self.secret_hash,
            "created": self.created,
            "expires_at": self.expires_at,
            "revoked": self.revoked,
        }

    def public(self) -> dict[str, Any]:
        """What an operator may see: everything but salt and hash."""
        doc = self.to_doc()
        del doc["salt"], doc["secret_hash"], doc["kind"]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Credential:
        return cls(
            key_id=doc["key_id"],
            agency_id=doc["agency_id"],
            roles=tuple(doc.get("roles", ())),
            salt=doc["salt"],
            secret_hash=doc["secret_hash"],
            created=doc["created"],
            expires_at=doc.get("expires_at"),
            revoked=bool(doc.get("revoked", False)),
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: an agency acting through one credential."""

    agency: Agency
    roles: frozenset[str] = field(default_factory=frozenset)
    key_id: str = ""

    def has(self, *roles: str) -> bool:
        """True when the caller holds any of ``roles``."""
        return any(r in self.roles for r in roles)


def check_roles(roles: tuple[str, ...]) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AccessError(f"unknown roles {unknown}; known: {list(ROLES)}")


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def new_credential(
    agency: Agency,
    now: datetime,
    roles: tuple[str, ...] | None = None,
    expires_at: datetime | None = None,
) -> tuple[Credential, str]:
    """A fresh credential for ``agency`` and its secret (shown once, never stored)."""
    roles = tuple(roles) if roles is not None else agency.roles
    check_roles(roles)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    cred = Credential(
        key_id=secrets.token_hex(8),
        agency_id=agency.id,
        roles=roles,
        salt=salt,
        secret_hash=hash_secret(salt, secret),
        created=format_timestamp(now),
        expires_at=format_timestamp(expires_at) if expires_at else None,
    )
    return cred, secret


def with_new_secret(cred: Credential) -> tuple[Credential, str]:
    """The same key id with a new secret: the old secret stops working at once."""
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    return replace(cred, salt=salt, secret_hash=hash_secret(salt, secret)), secret


def bearer_token(key_id: str, secret: str) -> str:
    return f"{BEARER_PREFIX}{key_id}.{secret}"


def parse_bearer(token: str) -> tuple[str, str] | None:
    """``tb_<key_id>.<secret>`` -> (key_id, secret); None when malformed."""
    if not token.startswith(BEARER_PREFIX):
        return None
    key_id, dot, secret = token[len(BEARER_PREFIX) :].partition(".")
    if not dot or not secret or not _KEY_ID.match(key_id):
        return None
    return key_id, secret


def valid_key_id(key_id: str) -> bool:
    return bool(_KEY_ID.match(key_id))
