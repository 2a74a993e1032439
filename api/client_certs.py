"""Client certificates per jurisdiction: mutual recognition of electronic authentication.

The operator configures one CA file per jurisdiction (``THREATBAY_TLS__CLIENT_CA__GD`` ...).
The TLS layer has already checked the chain against all of them together
(``threatbay/tls.py``); here we decide *which* jurisdiction vouches for the
certificate: the one whose CA file holds the certificate that issued it. An
agency named by that certificate is accepted only if it belongs to that
jurisdiction (``api/auth.py``), so HK's CA cannot vouch for a GD agency.

Revocation is by CRL: each jurisdiction may publish one (``THREATBAY_TLS__CLIENT_CRL__HK``),
checked against that jurisdiction's CA signature and re-read whenever the file
changes (looked at no more than once a second). Validity is checked on every
request, not only at the handshake: a keep-alive connection opened before a
certificate expired is refused after.

What reaches the app is the ASGI TLS extension's ``client_cert_chain`` (PEM),
put into the scope by ``threatbay/tls.py``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

log = logging.getLogger("threatbay.api.certs")

_CACHE_MAX = 10_000
_CRL_RECHECK_S = 1.0


class CertificateRefused(Exception):
    """A presented client certificate cannot authenticate anyone; the message says why."""


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """What a verified client certificate says, and which jurisdiction's CA issued it."""

    jurisdiction: str
    names: tuple[str, ...]
    """Subject common name(s) and subject-alternative-name values, as written."""
    subject: str
    serial: int
    fingerprint: str
    """SHA-256 of the DER certificate, hex."""
    not_before: datetime
    not_after: datetime


def names_of(cert: x509.Certificate) -> tuple[str, ...]:
    """Subject CNs and SAN DNS names, e-mail addresses and URIs."""
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        san = None
    if isinstance(san, x509.SubjectAlternativeName):
        for kind in (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier):
            names += [str(v) for v in san.get_values_for_type(kind)]
    return tuple(dict.fromkeys(names))


def _load_certs(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _load_crl(path: Path) -> x509.CertificateRevocationList:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


@dataclass
class _Crl:
    path: Path
    mtime_ns: int = -1
    checked_at: float = 0.0
    revoked: frozenset[int] = frozenset()
    problem: str | None = None


class JurisdictionTrust:
    """Which jurisdiction's CA issued a client certificate, and whether it is still good."""

    def __init__(self, client_ca: dict[str, Path], client_crl: dict[str, Path]) -> None:
        self._ca_files = dict(client_ca)
        self._crl_files = dict(client_crl)
        self._lock = threading.Lock()
        self._cas: dict[str, list[x509.Certificate]] = {}
        self._crls: dict[str, _Crl] = {}
        self._identities: dict[str, CertificateIdentity | CertificateRefused] = {}
        self.reload()

    @property
    def enabled(self) -> bool:
        return bool(self._ca_files)

    def reload(self) -> None:
        """Read the CA files again (SIGHUP); CRLs are re-read whenever they change anyway."""
        cas = {j: _load_certs(p) for j, p in self._ca_files.items()}
        with self._lock:
            self._cas = cas
            self._crls = {j: _Crl(p) for j, p in self._crl_files.items()}
            self._identities.clear()

    def identify(self, pem: str, now: datetime) -> CertificateIdentity:
        """The identity of a client certificate the TLS layer verified; ``CertificateRefused``."""
        key = hashlib.sha256(pem.encode()).hexdigest()
        with self._lock:
            found = self._identities.get(key)
        if found is None:
            found = self._parse(pem)
            with self._lock:
                if len(self._identities) >= _CACHE_MAX:
                    self._identities.clear()
                self._identities[key] = found
        if isinstance(found, CertificateRefused):
            raise found
        if not found.not_before <= now < found.not_after:
            raise CertificateRefused(
                f"client certificate {found.subject} is valid from "
                f"{found.not_before:%Y-%m-%dT%H:%M:%SZ} to {found.not_after:%Y-%m-%dT%H:%M:%SZ}, "
                "not now"
            )
        revoked, problem = self._revocations(found.jurisdiction)
        if problem is not None:
            raise CertificateRefused(problem)
        if found.serial in revoked:
            raise CertificateRefused(
                f"client certificate {found.subject} (serial {found.serial:x}) is revoked by "
                f"{found.jurisdiction}'s CRL"
            )
        return found

    def _parse(self, pem: str) -> CertificateIdentity | CertificateRefused:
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError as exc:
            return CertificateRefused(f"unreadable client certificate: {exc}")
        issuers = [j for j, cas in self._cas.items() if any(_issued_by(cert, ca) for ca in cas)]
        subject = cert.subject.rfc4514_string()
        if not issuers:
            return CertificateRefused(
                f"client certificate {subject} was not issued by any jurisdiction's CA"
            )
        if len(issuers) > 1:
            return CertificateRefused(
                f"client certificate {subject} chains to the CAs of {issuers}: one CA may "
                "vouch for one jurisdiction only (fix THREATBAY_TLS__CLIENT_CA__*)"
            )
        return CertificateIdentity(
            jurisdiction=issuers[0],
            names=names_of(cert),
            subject=subject,
            serial=cert.serial_number,
            fingerprint=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    def _revocations(self, jurisdiction: str) -> tuple[frozenset[int], str | None]:
        crl = self._crls.get(jurisdiction)
        if crl is None:
            return frozenset(), None
        now = time.monotonic()
        with self._lock:
            if now - crl.checked_at < _CRL_RECHECK_S:
                return crl.revoked, crl.problem
            crl.checked_at = now
            try:
                mtime = crl.path.stat().st_mtime_ns
            except OSError as exc:
                crl.problem = f"{jurisdiction}'s CRL {crl.path} cannot be read ({exc.strerror})"
                return crl.revoked, crl.problem
            if mtime != crl.mtime_ns:
                crl.mtime_ns = mtime
                crl.revoked, crl.problem = self._read_crl(jurisdiction, crl.path)
            return crl.revoked, crl.problem

    def _read_crl(self, jurisdiction: str, path: Path) -> tuple[frozenset[int], str | None]:
        """Serials a jurisdiction's CA revoked; a CRL its CA did not sign refuses everyone."""
        try:
            crl = _load_crl(path)
        except (OSError, ValueError) as exc:
            return frozenset(), f"{jurisdiction}'s CRL {path} is unreadable: {exc}"
        if not any(_crl_signed_by(crl, ca) for ca in self._cas.get(jurisdiction, [])):
            return frozenset(), f"{jurisdiction}'s CRL {path} is not signed by {jurisdiction}'s CA"
        stale = crl.next_update_utc
        if stale is not None and stale < datetime.now(tz=stale.tzinfo):
            # Still applied: an old list of revocations is better than none.
            log.warning("%s's CRL %s is past its next update (%s)", jurisdiction, path, stale)
        log.info("%s's CRL loaded: %d revoked certificates", jurisdiction, len(crl))
        return frozenset(r.serial_number for r in crl), None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # not this CA
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return bool(crl.is_signature_valid(ca.public_key()))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
