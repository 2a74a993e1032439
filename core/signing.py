"""Detached compact JWS (RFC 7515 §7.1 and Appendix F) over canonical JSON, written here.

A signature is ``BASE64URL(protected) ".." BASE64URL(signature)``; the payload
(the RFC 8785 bytes of what is signed) travels separately. The signing input
is ``ASCII(BASE64URL(protected) "." BASE64URL(payload))`` (``b64`` true, the
default); RFC 7797 ``b64: false`` is verified only when ``crit`` lists it.

The protected header ThreatBay writes is ``{"alg", "kid", "typ"}``. ``typ``
names what is signed (an object, a countersignature, a manifest, a trust
list) so a signature made for one kind of document never verifies as
another (explicit typing, RFC 8725 §3.11).

Why the framing is ours and not a JOSE library's: it is ~100 lines; the
libraries (joserfc, jwcrypto) keep global algorithm registries and cannot
hold an SM2 key without a key-type hack; and every refusal below is a line we
can point at. joserfc verifies our Ed25519 and ES256 output in the tests.

Refused, always, whatever the settings say: ``alg: none``, every HMAC
algorithm (a public key used as an HMAC secret is the classic confusion),
``b64: false`` not listed in ``crit``, unknown ``crit`` entries, header
parameters that carry or point at keys (``jwk``, ``jku``, ``x5c``, ``x5u``:
keys come only from trust lists), duplicate header members, and any
algorithm outside the allow-list. A ``kid`` resolves to exactly one key,
bound to one algorithm; the header's ``alg`` must be that one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from core import sm2
from core.errors import ThreatBayError
from core.jcs import NotCanonical, b64url, b64url_decode, strict_loads

Algorithm = Literal["Ed25519", "ES256", "SM2SM3"]
ALGORITHMS: tuple[Algorithm, ...] = ("Ed25519", "ES256", "SM2SM3")

TYP_OBJECT = "threatbay-object+jcs"
TYP_COUNTERSIGNATURE = "threatbay-countersignature+jcs"
TYP_MANIFEST = "threatbay-manifest+jcs"
TYP_TRUST_LIST = "threatbay-trust-list+jcs"

_UNDERSTOOD_CRIT = frozenset({"b64"})
_HEADER_MEMBERS = frozenset({"alg", "kid", "typ", "b64", "crit"})
_SIGNATURE_LENGTH = 64
_JWK_PUBLIC_MEMBERS = {"Ed25519": ("x",), "ES256": ("x", "y"), "SM2SM3": ("x", "y")}
_KTY_CRV: dict[Algorithm, tuple[str, str]] = {
    "Ed25519": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
    "SM2SM3": ("EC", "SM2"),
}


class SignatureInvalid(ThreatBayError):
    """A signature or its header fails a check; ``reason`` says which, for a person to read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyInvalid(ThreatBayError):
    """A JWK cannot be a ThreatBay signing or verification key; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def refusal(alg: str, allowed: Collection[str]) -> str | None:
    """Why ``alg`` may not be used (None when it may): the allow-list and the never-list."""
    if alg.lower() == "none":
        return "alg 'none' is refused: an unsigned JWS proves nothing"
    if alg.upper().startswith("HS"):
        return (
            f"alg {alg!r} (HMAC) is refused: a shared secret proves no origin, and a public "
            "key is not a secret"
        )
    if alg not in ALGORITHMS:
        return f"alg {alg!r} is not one ThreatBay knows ({', '.join(ALGORITHMS)})"
    if alg not in allowed:
        return f"alg {alg!r} is not in the allow-list ({', '.join(sorted(allowed)) or 'empty'})"
    return None


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key: its ``kid``, the one algorithm it verifies, and its public JWK."""

    kid: str
    alg: Algorithm
    jwk: Mapping[str, str]
    _verify: Callable[[bytes, bytes], bool] = field(repr=False, compare=False)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``signing_input``."""
        if len(signature) != _SIGNATURE_LENGTH:
            return False
        return self._verify(signing_input, signature)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its ``kid`` and algorithm; ``public`` is what a trust list carries."""

    public: PublicKey
    _sign: Callable[[bytes], bytes] = field(repr=False, compare=False)
    _private_jwk: Mapping[str, str] = field(repr=False, compare=False)

    @property
    def kid(self) -> str:
        return self.public.kid

    @property
    def alg(self) -> Algorithm:
        return self.public.alg

    def sign(self, signing_input: bytes) -> bytes:
        """The 64-byte signature of ``signing_input``."""
        return self._sign(signing_input)

    def private_jwk(self) -> dict[str, str]:
        """The private JWK (with ``d``): for a key file, never for a trust list."""
        return dict(self._private_jwk)


# ---------------------------------------------------------------- keys from and to JWK


def _coordinate(jwk: Mapping[str, Any], name: str, length: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise KeyInvalid(f"JWK member {name!r} missing")
    try:
        raw = b64url_decode(value)
    except NotCanonical as exc:
        raise KeyInvalid(f"JWK member {name!r}: {exc}") from exc
    if len(raw) != length:
        raise KeyInvalid(f"JWK member {name!r} must be {length} bytes, not {len(raw)}")
    return raw


def _algorithm_of(jwk: Mapping[str, Any]) -> tuple[str, Algorithm]:
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if not isinstance(kid, str) or not kid:
        raise KeyInvalid("JWK has no 'kid'")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise KeyInvalid(f"JWK {kid!r}: 'alg' must be one of {', '.join(ALGORITHMS)}, not {alg!r}")
    algorithm: Algorithm = alg
    kty, crv = _KTY_CRV[algorithm]
    if jwk.get("kty") != kty or jwk.get("crv") != crv:
        raise KeyInvalid(
            f"JWK {kid!r}: alg {alg} needs kty {kty!r} and crv {crv!r}, "
            f"not {jwk.get('kty')!r} / {jwk.get('crv')!r}"
        )
    if jwk.get("use", "sig") != "sig":
        raise KeyInvalid(f"JWK {kid!r}: 'use' must be 'sig'")
    return kid, algorithm


def _public_jwk(kid: str, alg: Algorithm, jwk: Mapping[str, Any]) -> dict[str, str]:
    kty, crv = _KTY_CRV[alg]
    out = {"kty": kty, "crv": crv, "kid": kid, "alg": alg, "use": "sig"}
    for name in _JWK_PUBLIC_MEMBERS[alg]:
        out[name] = jwk[name]
    return out


def public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The verification key a public JWK describes (``kid``, ``alg`` and key type must agree)."""
    kid, alg = _algorithm_of(jwk)
    verify: Callable[[bytes, bytes], bool]
    try:
        if alg == "Ed25519":
            ed_key = ed25519.Ed25519PublicKey.from_public_bytes(_coordinate(jwk, "x", 32))
            verify = _ed25519_verifier(ed_key)
        elif alg == "ES256":
            ec_key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_coordinate(jwk, "x", 32), "big"),
                int.from_bytes(_coordinate(jwk, "y", 32), "big"),
                ec.SECP256R1(),
            ).public_key()
            verify = _es256_verifier(ec_key)
        else:
            point = sm2.public_point(_coordinate(jwk, "x", 32), _coordinate(jwk, "y", 32))
            verify = _sm2_verifier(point)
    except ValueError as exc:
        raise KeyInvalid(f"JWK {kid!r}: {exc}") from exc
    return PublicKey(kid=kid, alg=alg, jwk=_public_jwk(kid, alg, jwk), _verify=verify)


def signing_key(jwk: Mapping[str, Any]) -> SigningKey:
    """The signing key a private JWK (with ``d``) describes; its public part must match."""
    kid, alg = _algorithm_of(jwk)
    d = _coordinate(jwk, "d", 32)
    public = public_key(jwk)
    sign: Callable[[bytes], bytes]
    try:
        if alg == "Ed25519":
            ed_private = ed25519.Ed25519PrivateKey.from_private_bytes(d)
            matches = ed_private.public_key().public_bytes_raw() == b64url_decode(jwk["x"])
            sign = ed_private.sign
        elif alg == "ES256":
            ec_private = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
            numbers = ec_private.public_key().public_numbers()
            matches = (numbers.x, numbers.y) == (
                int.from_bytes(b64url_decode(jwk["x"]), "big"),
                int.from_bytes(b64url_decode(jwk["y"]), "big"),
            )
            sign = _es256_signer(ec_private)
        else:
            point = sm2.derive_public(d)
            matches = point == b"\x04" + b64url_decode(jwk["x"]) + b64url_decode(jwk["y"])
            sign = _sm2_signer(d, point)
    except ValueError as exc:
        raise KeyInvalid(f"JWK {kid!r}: {exc}") from exc
    if not matches:
        raise KeyInvalid(f"JWK {kid!r}: private key 'd' does not match the public key")
    private = dict(public.jwk)
    private["d"] = b64url(d)
    return SigningKey(public=public, _sign=sign, _private_jwk=private)


def generate(alg: Algorithm, kid: str) -> SigningKey:
    """A fresh key pair for ``alg`` (from the operating system's CSPRNG)."""
    kty, crv = _KTY_CRV[alg]
    jwk: dict[str, str] = {"kty": kty, "crv": crv, "kid": kid, "alg": alg, "use": "sig"}
    if alg == "Ed25519":
        ed_private = ed25519.Ed25519PrivateKey.generate()
        jwk["x"] = b64url(ed_private.public_key().public_bytes_raw())
        jwk["d"] = b64url(ed_private.private_bytes_raw())
    elif alg == "ES256":
        ec_private = ec.generate_private_key(ec.SECP256R1())
        numbers = ec_private.private_numbers()
        jwk["x"] = b64url(numbers.public_numbers.x.to_bytes(32, "big"))
        jwk["y"] = b64url(numbers.public_numbers.y.to_bytes(32, "big"))
        jwk["d"] = b64url(numbers.private_value.to_bytes(32, "big"))
    else:
        d, point = sm2.generate()
        jwk["x"], jwk["y"], jwk["d"] = b64url(point[1:33]), b64url(point[33:]), b64url(d)
    return signing_key(jwk)


def _ed25519_verifier(key: ed25519.Ed25519PublicKey) -> Callable[[bytes, bytes], bool]:
    def verify(message: bytes, signature: bytes) -> bool:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _es256_signer(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def _es256_verifier(key: ec.EllipticCurvePublicKey) -> Callable[[bytes, bytes], bool]:
    def verify(message: bytes, signature: bytes) -> bool:
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    return verify


def _sm2_signer(d: bytes, point: bytes) -> Callable[[bytes], bytes]:
    def sign(message: bytes) -> bytes:
        return sm2.sign(d, point, message)

    return sign


def _sm2_verifier(point: bytes) -> Callable[[bytes, bytes], bool]:
    def verify(message: bytes, signature: bytes) -> bool:
        return sm2.verify(point, message, signature)

    return verify


# ---------------------------------------------------------------- JWS


@dataclass(frozen=True, slots=True)
class DetachedJws:
    """A parsed detached compact JWS whose header passed every structural check."""

    protected: str
    alg: str
    kid: str
    typ: str
    b64: bool
    signature: bytes

    def signing_input(self, payload: bytes) -> bytes:
        """RFC 7515 §5.1 step 5 (or RFC 7797 §3 when ``b64`` is false)."""
        if self.b64:
            return (self.protected + "." + b64url(payload)).encode("ascii")
        return (self.protected + ".").encode("ascii") + payload


def sign_detached(payload: bytes, key: SigningKey, typ: str) -> str:
    """``protected..signature`` over ``payload`` with ``key`` (b64 true)."""
    header = {"alg": key.alg, "kid": key.kid, "typ": typ}
    protected = b64url(json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode())
    signing_input = (protected + "." + b64url(payload)).encode("ascii")
    return protected + ".." + b64url(key.sign(signing_input))


def parse_detached(token: Any, typ: str, allowed: Collection[str]) -> DetachedJws:
    """Parse and check a detached compact JWS for ``typ``; ``SignatureInvalid`` says why not."""
    if not isinstance(token, str):
        raise SignatureInvalid("signature is not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureInvalid("not a compact JWS (expected 'header..signature')")
    if parts[1] != "":
        raise SignatureInvalid("JWS carries an attached payload; ThreatBay signatures are detached")
    try:
        header = strict_loads(b64url_decode(parts[0]))
        signature = b64url_decode(parts[2])
    except NotCanonical as exc:
        raise SignatureInvalid(f"malformed JWS: {exc}") from exc
    if not isinstance(header, dict):
        raise SignatureInvalid("JWS protected header is not a JSON object")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str):
        raise SignatureInvalid("JWS header has no 'alg'")
    refused = refusal(alg, allowed)
    if refused:
        raise SignatureInvalid(refused)
    extra = sorted(set(header) - _HEADER_MEMBERS)
    if extra:
        raise SignatureInvalid(
            f"JWS header parameter(s) {', '.join(extra)} refused (keys come only from trust lists)"
        )
    if not isinstance(kid, str) or not kid:
        raise SignatureInvalid("JWS header has no 'kid'")
    b64 = _check_b64(header)
    if header.get("typ") != typ:
        raise SignatureInvalid(f"JWS 'typ' is {header.get('typ')!r}, expected {typ!r}")
    if len(signature) != _SIGNATURE_LENGTH:
        raise SignatureInvalid(f"{alg} signature must be 64 bytes, not {len(signature)}")
    return DetachedJws(protected=parts[0], alg=alg, kid=kid, typ=typ, b64=b64, signature=signature)


def _check_b64(header: Mapping[str, Any]) -> bool:
    """RFC 7797 §6: ``b64`` must be understood, so it is honoured only when ``crit`` lists it."""
    crit = header.get("crit")
    if crit is not None:
        if not isinstance(crit, list) or not crit or len(set(map(str, crit))) != len(crit):
            raise SignatureInvalid("JWS 'crit' must be a non-empty list of distinct names")
        for name in crit:
            if name not in _UNDERSTOOD_CRIT:
                raise SignatureInvalid(f"JWS 'crit' names {name!r}, which ThreatBay does not know")
            if name not in header:
                raise SignatureInvalid(f"JWS 'crit' names {name!r}, which the header lacks")
    b64 = header.get("b64", True)
    if not isinstance(b64, bool):
        raise SignatureInvalid("JWS 'b64' must be true or false")
    if b64 is False and (crit is None or "b64" not in crit):
        raise SignatureInvalid("JWS 'b64': false without 'crit': ['b64'] (RFC 7797 §6) refused")
    return b64


def verify_with(jws: DetachedJws, payload: bytes, key: PublicKey) -> None:
    """Check ``jws`` over ``payload`` with ``key`` (the key the trust list bound to its kid)."""
    if key.kid != jws.kid:
        raise SignatureInvalid(f"key {key.kid!r} is not the JWS's kid {jws.kid!r}")
    if key.alg != jws.alg:
        raise SignatureInvalid(f"key {key.kid!r} is an {key.alg} key; the JWS says {jws.alg}")
    if not key.verify(jws.signing_input(payload), jws.signature):
        raise SignatureInvalid(f"{jws.alg} signature by {jws.kid!r} does not match the content")
