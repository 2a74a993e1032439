"""Jurisdiction trust lists: which key speaks for which agency, when (DOMAIN.md "Trusted data").

A trust list is a JWKS (RFC 7517 §5) with a few more members, signed by its
jurisdiction's root key, which every verifier pins in configuration::

    {"type": "threatbay-trust-list", "jurisdiction": "GD", "sequence": 7,
     "issued": "2026-12-01T00:00:00Z", "expires": "2027-03-01T00:00:00Z",
     "keys": [{"kty": "EC", "crv": "SM2", "x": "…", "y": "…", "kid": "gd-cac-2026",
               "alg": "SM2SM3", "use": "sig", "agency": "identity--…",
               "not_before": "…", "not_after": "…", "revoked_at": "…",
               "custody": "agency"}],
     "signature": "<detached JWS, typ threatbay-trust-list+jcs, by a pinned GD root>"}

Rules enforced here:
- only a root pinned *for that jurisdiction* signs its list (an HK root cannot
  issue GD's); an expired list is refused; ``sequence`` orders lists so a
  holder can refuse an older one (``supersedes``);
- each key is bound to one algorithm and one agency (STIX identity); the
  signer of an object must be that agency;
- a list speaks only for its own jurisdiction's agencies: an identity that the
  configured agency registry places in another jurisdiction, or that two
  jurisdictions' lists both claim, is not trusted from either;
- a kid listed by two jurisdictions is ambiguous and trusted from neither;
- validity is judged at the verifier's *recorded receipt time* (an input),
  never at a time the signed object states: a backdated ``modified`` changes
  nothing. Revoked keys stay listed, so what was received before
  ``revoked_at`` still verifies and what was received after does not;
- ``custody`` says whether the agency holds the key (``agency``, bring your
  own) or ThreatBay holds it for the agency (``custodial``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from core.errors import ThreatBayError
from core.jcs import NotCanonical, canonical
from core.signing import (
    TYP_TRUST_LIST,
    KeyInvalid,
    PublicKey,
    SignatureInvalid,
    SigningKey,
    parse_detached,
    public_key,
    sign_detached,
    verify_with,
)

Custody = Literal["agency", "custodial"]
CUSTODIES: tuple[Custody, ...] = ("agency", "custodial")
TRUST_LIST_TYPE = "threatbay-trust-list"
WELL_KNOWN_PATH = "/.well-known/threatbay/trust-list/{jurisdiction}.json"
_ENTRY_MEMBERS = ("agency", "not_before", "not_after", "revoked_at", "custody")


class TrustListInvalid(ThreatBayError):
    """A trust list is unsigned, signed by the wrong root, expired or malformed."""

    def __init__(self, jurisdiction: str | None, reason: str) -> None:
        super().__init__(f"trust list {jurisdiction or '?'}: {reason}")
        self.jurisdiction = jurisdiction
        self.reason = reason


def format_time(at: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` (what every ThreatBay signed document writes)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any, what: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as an aware datetime; ValueError says which."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a timestamp string")
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not an RFC 3339 timestamp") from exc
    if at.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no time zone")
    return at


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One listed key: who it speaks for, from which jurisdiction's list, and when."""

    key: PublicKey
    jurisdiction: str
    agency: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    custody: Custody

    def invalid_at(self, at: datetime) -> str | None:
        """Why this key could not sign something received at ``at`` (None when it could)."""
        if at < self.not_before:
            return f"key {self.key.kid!r} is not valid before {format_time(self.not_before)}"
        if at >= self.not_after:
            return f"key {self.key.kid!r} expired at {format_time(self.not_after)}"
        if self.revoked_at is not None and at >= self.revoked_at:
            return f"key {self.key.kid!r} was revoked at {format_time(self.revoked_at)}"
        return None


@dataclass(frozen=True, slots=True)
class TrustList:
    """A verified trust list."""

    jurisdiction: str
    sequence: int
    issued: datetime
    expires: datetime
    entries: tuple[KeyEntry, ...]
    signed_by: str

    def supersedes(self, other: TrustList) -> bool:
        """True when this list is newer than ``other`` of the same jurisdiction (anti-rollback)."""
        return self.jurisdiction == other.jurisdiction and self.sequence > other.sequence


# ---------------------------------------------------------------- issuing


def key_entry(
    key: PublicKey,
    *,
    agency: str,
    not_before: datetime,
    not_after: datetime,
    custody: Custody,
    revoked_at: datetime | None = None,
) -> dict[str, Any]:
    """The JWK a trust list carries for ``key``."""
    entry: dict[str, Any] = dict(key.jwk)
    entry.update(
        agency=agency,
        not_before=format_time(not_before),
        not_after=format_time(not_after),
        custody=custody,
    )
    if revoked_at is not None:
        entry["revoked_at"] = format_time(revoked_at)
    return entry


def revoke(keys: Iterable[Mapping[str, Any]], kid: str, at: datetime) -> list[dict[str, Any]]:
    """The key entries with ``kid`` marked revoked at ``at``; it stays listed."""
    out: list[dict[str, Any]] = []
    found = False
    for entry in keys:
        copy = dict(entry)
        if copy.get("kid") == kid:
            found = True
            copy.setdefault("revoked_at", format_time(at))
        out.append(copy)
    if not found:
        raise KeyError(kid)
    return out


def issue(
    jurisdiction: str,
    keys: Iterable[Mapping[str, Any]],
    root: SigningKey,
    *,
    sequence: int,
    issued: datetime,
    expires: datetime,
) -> dict[str, Any]:
    """A trust-list document for ``jurisdiction``, signed by its root key."""
    document: dict[str, Any] = {
        "type": TRUST_LIST_TYPE,
        "jurisdiction": jurisdiction,
        "sequence": sequence,
        "issued": format_time(issued),
        "expires": format_time(expires),
        "keys": [dict(k) for k in keys],
    }
    document["signature"] = sign_detached(canonical(document), root, TYP_TRUST_LIST)
    return document


# ---------------------------------------------------------------- verifying


def pinned_roots(config: Any) -> dict[str, list[PublicKey]]:
    """``{"GD": [root JWK, …], …}`` from configuration as verification keys."""
    if not isinstance(config, dict):
        raise TrustListInvalid(None, 'pinned roots must be {"GD": [root JWK, ...], ...}')
    roots: dict[str, list[PublicKey]] = {}
    for jurisdiction, jwks in config.items():
        if not isinstance(jwks, list) or not all(isinstance(j, dict) for j in jwks):
            raise TrustListInvalid(jurisdiction, "pinned roots must be a list of JWKs")
        if any("d" in jwk for jwk in jwks):
            raise TrustListInvalid(jurisdiction, "a pinned root carries its private key ('d')")
        try:
            roots[jurisdiction] = [public_key(jwk) for jwk in jwks]
        except KeyInvalid as exc:
            raise TrustListInvalid(jurisdiction, f"pinned root: {exc.reason}") from exc
    return roots


def verify_trust_list(
    document: Any,
    roots: Mapping[str, Collection[PublicKey]],
    allowed: Collection[str],
    now: datetime,
    skew: timedelta = timedelta(minutes=5),
) -> TrustList:
    """Check a trust-list document against the pinned roots; ``TrustListInvalid`` says why not."""
    if not isinstance(document, dict) or document.get("type") != TRUST_LIST_TYPE:
        raise TrustListInvalid(None, f"not a {TRUST_LIST_TYPE} document")
    jurisdiction = document.get("jurisdiction")
    if not isinstance(jurisdiction, str) or jurisdiction not in roots:
        raise TrustListInvalid(
            str(jurisdiction), "no root key is pinned for this jurisdiction in configuration"
        )
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        jws = parse_detached(document.get("signature"), TYP_TRUST_LIST, allowed)
        root = next((r for r in roots[jurisdiction] if r.kid == jws.kid), None)
        if root is None:
            raise SignatureInvalid(
                f"signed by {jws.kid!r}, which is not a root pinned for {jurisdiction}"
            )
        verify_with(jws, canonical(body), root)
    except (SignatureInvalid, NotCanonical) as exc:
        raise TrustListInvalid(jurisdiction, str(exc)) from exc
    try:
        sequence = document.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise ValueError("sequence is not a non-negative integer")
        issued = parse_time(document.get("issued"), "issued")
        expires = parse_time(document.get("expires"), "expires")
        entries = _entries(jurisdiction, document.get("keys"))
    except (ValueError, KeyInvalid) as exc:
        raise TrustListInvalid(jurisdiction, str(exc)) from exc
    if now >= expires:
        raise TrustListInvalid(jurisdiction, f"expired at {format_time(expires)}")
    if issued > now + skew:
        raise TrustListInvalid(jurisdiction, f"issued in the future ({format_time(issued)})")
    return TrustList(jurisdiction, sequence, issued, expires, entries, signed_by=jws.kid)


def _entries(jurisdiction: str, keys: Any) -> tuple[KeyEntry, ...]:
    if not isinstance(keys, list):
        raise ValueError("'keys' is not a list")
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    for jwk in keys:
        if not isinstance(jwk, dict):
            raise ValueError("a key entry is not a JSON object")
        if "d" in jwk:
            raise ValueError(f"key {jwk.get('kid')!r} carries private key material ('d')")
        key = public_key(jwk)
        if key.kid in seen:
            raise ValueError(f"kid {key.kid!r} listed twice")
        seen.add(key.kid)
        agency, custody = jwk.get("agency"), jwk.get("custody")
        if not isinstance(agency, str) or not agency.startswith("identity--"):
            raise ValueError(f"key {key.kid!r}: 'agency' must be a STIX identity id")
        if custody not in CUSTODIES:
            raise ValueError(f"key {key.kid!r}: 'custody' must be one of {', '.join(CUSTODIES)}")
        revoked = jwk.get("revoked_at")
        entries.append(
            KeyEntry(
                key=key,
                jurisdiction=jurisdiction,
                agency=agency.lower(),
                not_before=parse_time(jwk.get("not_before"), f"key {key.kid!r} not_before"),
                not_after=parse_time(jwk.get("not_after"), f"key {key.kid!r} not_after"),
                revoked_at=None
                if revoked is None
                else parse_time(revoked, f"key {key.kid!r} revoked_at"),
                custody=custody,
            )
        )
    return tuple(entries)


class TrustStore:
    """The verified trust lists a verifier holds, indexed by kid and by agency identity.

    ``identity_jurisdictions`` (agency STIX identity → jurisdiction, from the
    agency registry) pins which list may speak for an agency; without it, an
    identity claimed by more than one jurisdiction's list is trusted from none.
    """

    def __init__(
        self,
        lists: Iterable[TrustList],
        identity_jurisdictions: Mapping[str, str] | None = None,
    ) -> None:
        self.lists: dict[str, TrustList] = {}
        for trust_list in lists:
            held = self.lists.get(trust_list.jurisdiction)
            if held is None or trust_list.supersedes(held):
                self.lists[trust_list.jurisdiction] = trust_list
        self._by_kid: dict[str, list[KeyEntry]] = {}
        self._claims: dict[str, set[str]] = {}
        for trust_list in self.lists.values():
            for entry in trust_list.entries:
                self._by_kid.setdefault(entry.key.kid, []).append(entry)
                self._claims.setdefault(entry.agency, set()).add(entry.jurisdiction)
        self._pinned = {k.lower(): v for k, v in (identity_jurisdictions or {}).items()}

    def entry(self, kid: str) -> KeyEntry:
        """The one listed key with ``kid``; ``SignatureInvalid`` when none or several."""
        found = self._by_kid.get(kid, [])
        if not found:
            return _raise(f"unknown key {kid!r}: in no trust list held")
        if len(found) > 1:
            where = ", ".join(sorted(e.jurisdiction for e in found))
            return _raise(f"key {kid!r} is listed by several jurisdictions ({where}): ambiguous")
        return found[0]

    def signer(self, kid: str, agency: str, at: datetime) -> KeyEntry:
        """The key ``kid`` if it may sign for ``agency`` at receipt time ``at``; else why not."""
        entry = self.entry(kid)
        agency = agency.lower()
        if entry.agency != agency:
            _raise(f"key {kid!r} belongs to {entry.agency}, not to {agency}")
        pinned = self._pinned.get(agency)
        if pinned is not None and pinned != entry.jurisdiction:
            _raise(
                f"key {kid!r} comes from {entry.jurisdiction}'s trust list, but {agency} is "
                f"an agency of {pinned}: a list speaks only for its own jurisdiction"
            )
        claims = self._claims.get(agency, set())
        if pinned is None and len(claims) > 1:
            _raise(f"{agency} is claimed by the trust lists of {', '.join(sorted(claims))}")
        problem = entry.invalid_at(at)
        if problem:
            _raise(f"{problem} (received {format_time(at)})")
        return entry


def _raise(reason: str) -> KeyEntry:
    raise SignatureInvalid(reason)
