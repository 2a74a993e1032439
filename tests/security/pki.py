"""A throwaway PKI for the TLS tests: a CA per jurisdiction, server and client certificates, CRLs.

Built with ``cryptography`` (EC P-256 keys: fast to make), written as PEM files;
validity can be seconds long, so expiry mid-run can be tested.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from tests.faults.harness import TlsSetup


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


@dataclass
class Issued:
    cert_file: Path
    key_file: Path
    cert: x509.Certificate

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def client_context(self, server_ca: Path) -> ssl.SSLContext:
        """A client context trusting ``server_ca`` and presenting this certificate."""
        ctx = ssl.create_default_context(cafile=str(server_ca))
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


@dataclass
class Authority:
    """One CA (a jurisdiction's, or the server's) that issues into ``folder``."""

    name: str
    folder: Path
    key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    cert: x509.Certificate = field(init=False)
    revoked: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} test CA")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_file(self) -> Path:
        return self.folder / f"{self.name}-ca.pem"

    @property
    def crl_file(self) -> Path:
        return self.folder / f"{self.name}-crl.pem"

    def issue(
        self,
        cn: str,
        *,
        sans: tuple[str, ...] = (),
        server: bool = False,
        valid_for: timedelta = timedelta(days=1),
        file_stem: str | None = None,
    ) -> Issued:
        key = _key()
        now = datetime.now(UTC)
        alt: list[x509.GeneralName] = [x509.DNSName(s) for s in sans]
        if server:
            alt += [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
        oid = x509.ExtendedKeyUsageOID
        usage = oid.SERVER_AUTH if server else oid.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([usage]),
                critical=False,
            )
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = file_stem or f"{self.name}-{cn}-{cert.serial_number:x}"[:80]
        cert_file, key_file = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return Issued(cert_file, key_file, cert)

    def write_crl(self) -> Path:
        """Publish the CRL with every serial in ``revoked`` (replaces the file atomically)."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + timedelta(days=1))
        )
        for serial in self.revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - timedelta(seconds=1))
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        tmp = self.crl_file.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        tmp.replace(self.crl_file)
        return self.crl_file


def platform_tls(
    folder: Path, cert_names: dict[str, tuple[str, ...]], with_certs: tuple[str, ...]
) -> TlsSetup:
    """A ``tests.faults.harness.TlsSetup``: server certificate, a CA per jurisdiction, and
    client certificates for the agencies in ``with_certs`` (named by their first cert name)."""
    from tests.faults.harness import AGENCIES, TlsSetup

    server_ca = Authority("server", folder)
    server = server_ca.issue("threatbay.test", server=True, file_stem="server")
    cas = {j: Authority(j.lower(), folder) for j in ("GD", "HK", "MO")}
    jurisdiction = {a.id: a.jurisdiction for a in AGENCIES}
    certs = {}
    for agency in with_certs:
        issued = cas[jurisdiction[agency]].issue(cert_names[agency][0])
        certs[agency] = (issued.cert_file, issued.key_file)
    return TlsSetup(
        server_ca=server_ca.ca_file,
        cert_file=server.cert_file,
        key_file=server.key_file,
        client_ca={j: ca.ca_file for j, ca in cas.items()},
        client_crl={j: ca.write_crl() for j, ca in cas.items()},
        client_certs=certs,
        cert_names=cert_names,
    )
