"""SM2 with SM3 (GB/T 32918.2-2016, GM/T 0003.2), as ThreatBay's JOSE algorithm ``SM2SM3``.

JOSE has no registered SM2 algorithm, so ThreatBay names it ``SM2SM3`` (the
mnemonic IANA registered for DNSSEC algorithm 17, RFC 9563) and fixes:

- curve sm2p256v1 (GB/T 32918.5), digest SM3, the signer's Z value computed
  with the default distinguishing identifier ``1234567812345678`` (GM/T 0009);
- signature = r ‖ s, each left-padded to 32 bytes (64 bytes), the fixed-width
  form JOSE uses for ECDSA (RFC 7518 §3.4); GM/T 0009 DER only at HSM or
  OpenSSL boundaries (``to_der``);
- public keys as JWK ``{"kty": "EC", "crv": "SM2", "x", "y"}`` (the convention
  of the SM2 JOSE libraries that exist), private keys add ``"d"``.

The arithmetic is gmalg's (pure Python, maintained, nonce from ``secrets``,
r and s range-checked on verify). It is not constant-time: keep custodial SM2
signing keys in an HSM where local timing attacks are in the threat model.
"""

from __future__ import annotations

import gmalg
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

DEFAULT_ID = b"1234567812345678"
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SIGNATURE_LENGTH = 64


def public_point(x: bytes, y: bytes) -> bytes:
    """``04 ‖ x ‖ y`` after checking both are field elements and the point is on the curve."""
    if len(x) != 32 or len(y) != 32:
        raise ValueError("SM2 public key coordinates must be 32 bytes each")
    if int.from_bytes(x, "big") >= P or int.from_bytes(y, "big") >= P:
        raise ValueError("SM2 public key coordinate is not a field element")
    point = b"\x04" + x + y
    if not gmalg.SM2(uid=DEFAULT_ID, pk=point).verify_pk(point):
        raise ValueError("SM2 public key is not a point of order n on sm2p256v1")
    return point


def generate() -> tuple[bytes, bytes]:
    """A fresh (32-byte private scalar, 65-byte public point)."""
    d, point = gmalg.SM2().generate_keypair()
    return d.rjust(32, b"\0"), point


def derive_public(d: bytes) -> bytes:
    """The public point of private scalar ``d`` (1 ≤ d ≤ n − 2, GB/T 32918.1 §6.1)."""
    scalar = int.from_bytes(d, "big")
    if not 1 <= scalar <= N - 2:
        raise ValueError("SM2 private key out of range")
    point: bytes = gmalg.SM2().generate_pk(d.rjust(32, b"\0"))
    return point


def sign(d: bytes, point: bytes, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
    """r ‖ s (64 bytes) over ``message`` with private key ``d`` (nonce from ``secrets``)."""
    r, s = gmalg.SM2(d, uid, point).sign(message)
    return bytes(r).rjust(32, b"\0") + bytes(s).rjust(32, b"\0")


def verify(point: bytes, message: bytes, signature: bytes, uid: bytes = DEFAULT_ID) -> bool:
    """True when ``signature`` (r ‖ s) is a valid SM2-with-SM3 signature of ``message``."""
    if len(signature) != SIGNATURE_LENGTH:
        return False
    return bool(gmalg.SM2(None, uid, point).verify(message, signature[:32], signature[32:]))


def to_der(signature: bytes) -> bytes:
    """GM/T 0009 ``SEQUENCE { r INTEGER, s INTEGER }`` form of r ‖ s (for HSMs, OpenSSL)."""
    return encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
