"""Canonical JSON, the JWS framing and its refusals, joserfc as an oracle, SM2 published vectors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import gmalg
import gmalg.ellipticcurve as gec
import gmalg.sm2 as gsm2
import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey, OKPKey

from core import jcs, sm2
from core.signing import (
    ALGORITHMS,
    TYP_MANIFEST,
    TYP_OBJECT,
    KeyInvalid,
    SignatureInvalid,
    generate,
    parse_detached,
    public_key,
    refusal,
    sign_detached,
    signing_key,
    verify_with,
)

PAYLOAD = jcs.canonical({"type": "indicator", "name": "網絡 café", "confidence": 85})


# ---------------------------------------------------------------- RFC 8785 and strict parsing


def test_canonical_form_sorts_keys_normalises_numbers_and_keeps_utf8() -> None:
    assert (
        jcs.canonical({"b": 1.0, "a": "é\u2028", "c": 7.50})
        == '{"a":"é\u2028","b":1,"c":7.5}'.encode()
    )


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, float("inf"), float("nan")])
def test_numbers_without_a_canonical_form_are_refused(value: float) -> None:
    with pytest.raises(jcs.NotCanonical):
        jcs.canonical({"x": value})


def test_strict_parser_refuses_duplicates_and_nan_and_the_marking_parser_records_them() -> None:
    with pytest.raises(jcs.NotCanonical, match="duplicate member name 'a'"):
        jcs.strict_loads('{"a": 1, "a": 2}')
    with pytest.raises(jcs.NotCanonical, match="NaN"):
        jcs.strict_loads('{"a": NaN}')
    with pytest.raises(jcs.NotCanonical, match="UTF-8"):
        jcs.strict_loads(b'{"a": "\xff"}')
    parsed = jcs.loads_marking_duplicates('{"o": [{"x": 1, "y": {"z": 1, "z": 2}}], "o2": 1}')
    assert jcs.duplicate_members(parsed) == ["/o/0/y/z"]
    assert jcs.duplicate_members({"a": {"b": 1}}) == []


def test_base64url_refuses_padding_other_alphabets_and_trailing_bits() -> None:
    assert jcs.b64url_decode(jcs.b64url(b"\x00\xff")) == b"\x00\xff"
    for bad in ("AP8=", "AP+", "AP9", "A"):
        with pytest.raises(jcs.NotCanonical):
            jcs.b64url_decode(bad)


json_values = st.recursive(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",))),
        st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    ),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), inner, max_size=5
        )
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values)
def test_the_fast_canonical_form_is_byte_for_byte_rfc8785(value: object) -> None:
    assert jcs.canonical(value) == jcs.rfc8785_canonical(value)


def test_every_unicode_scalar_value_escapes_and_ascii_keys_sort_as_rfc8785_does() -> None:
    scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert jcs.canonical(scalars) == jcs.rfc8785_canonical(scalars)
    ascii_keys = dict.fromkeys((chr(a) + chr(b) for a in range(128) for b in range(0, 128, 5)), 0)
    assert jcs.canonical(ascii_keys) == jcs.rfc8785_canonical(ascii_keys)


# ---------------------------------------------------------------- JWS


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_algorithm_signs_and_verifies_and_rejects_a_changed_payload(alg: str) -> None:
    key = generate(alg, f"k-{alg}")  # type: ignore[arg-type]
    token = sign_detached(PAYLOAD, key, TYP_OBJECT)
    parsed = parse_detached(token, TYP_OBJECT, ALGORITHMS)
    verify_with(parsed, PAYLOAD, key.public)
    with pytest.raises(SignatureInvalid, match="does not match the content"):
        verify_with(parsed, PAYLOAD + b" ", key.public)
    reloaded = signing_key(key.private_jwk())
    verify_with(
        parse_detached(sign_detached(PAYLOAD, reloaded, TYP_OBJECT), TYP_OBJECT, ALGORITHMS),
        PAYLOAD,
        public_key(key.public.jwk),
    )


def _forge(header: dict[str, object], signature: bytes = b"\x01" * 64) -> str:
    return jcs.b64url(json.dumps(header).encode()) + ".." + jcs.b64url(signature)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "none", "kid": "k", "typ": TYP_OBJECT}, "alg 'none' is refused"),
        ({"alg": "HS256", "kid": "k", "typ": TYP_OBJECT}, "(HMAC) is refused"),
        ({"alg": "HS512", "kid": "k", "typ": TYP_OBJECT}, "(HMAC) is refused"),
        ({"alg": "RS256", "kid": "k", "typ": TYP_OBJECT}, "not one ThreatBay knows"),
        ({"alg": "EdDSA", "kid": "k", "typ": TYP_OBJECT}, "not one ThreatBay knows"),
        ({"alg": "Ed25519", "kid": "k", "typ": TYP_OBJECT, "b64": False}, "without 'crit'"),
        ({"alg": "Ed25519", "kid": "k", "typ": TYP_OBJECT, "crit": ["exp"], "exp": 1}, "exp"),
        (
            {"alg": "Ed25519", "kid": "k", "typ": TYP_OBJECT, "crit": ["b64"]},
            "which the header lacks",
        ),
        ({"alg": "Ed25519", "kid": "k", "typ": TYP_OBJECT, "jwk": {"kty": "OKP"}}, "jwk refused"),
        ({"alg": "Ed25519", "kid": "k", "typ": TYP_OBJECT, "jku": "http://x"}, "jku refused"),
        ({"alg": "Ed25519", "typ": TYP_OBJECT}, "no 'kid'"),
        ({"alg": "Ed25519", "kid": "k", "typ": TYP_MANIFEST}, "expected 'threatbay-object+jcs'"),
        ({"alg": "Ed25519", "kid": "k"}, "'typ' is None"),
    ],
)
def test_headers_that_are_refused(header: dict[str, object], reason: str) -> None:
    with pytest.raises(SignatureInvalid, match=re.escape(reason)):
        parse_detached(_forge(header), TYP_OBJECT, ALGORITHMS)


def test_an_algorithm_missing_from_the_allow_list_is_refused() -> None:
    key = generate("ES256", "k")
    with pytest.raises(SignatureInvalid, match="not in the allow-list"):
        parse_detached(sign_detached(PAYLOAD, key, TYP_OBJECT), TYP_OBJECT, ["Ed25519"])
    assert refusal("ES256", ALGORITHMS) is None


def test_malformed_tokens_are_refused() -> None:
    key = generate("Ed25519", "k")
    token = sign_detached(PAYLOAD, key, TYP_OBJECT)
    head, _, sig = token.split(".")
    for bad, reason in [
        (head + "." + jcs.b64url(PAYLOAD) + "." + sig, "attached payload"),
        (head + ".." + sig + "AA", "64 bytes"),
        (head + "..", "64 bytes"),
        ("a.b", "not a compact JWS"),
        (
            jcs.b64url(
                b'{"alg":"Ed25519","alg":"Ed25519","kid":"k","typ":"' + TYP_OBJECT.encode() + b'"}'
            )
            + ".."
            + sig,
            "duplicate",
        ),
        (42, "not a string"),
    ]:
        with pytest.raises(SignatureInvalid, match=reason):
            parse_detached(bad, TYP_OBJECT, ALGORITHMS)


def test_a_key_is_bound_to_one_algorithm_and_kid() -> None:
    ed, es = generate("Ed25519", "same"), generate("ES256", "same")
    parsed = parse_detached(sign_detached(PAYLOAD, ed, TYP_OBJECT), TYP_OBJECT, ALGORITHMS)
    with pytest.raises(SignatureInvalid, match="is an ES256 key"):
        verify_with(parsed, PAYLOAD, es.public)
    with pytest.raises(SignatureInvalid, match="is not the JWS's kid"):
        verify_with(parsed, PAYLOAD, generate("Ed25519", "other").public)
    wrong = dict(ed.public.jwk, alg="ES256")
    with pytest.raises(KeyInvalid, match="needs kty 'EC'"):
        public_key(wrong)
    with pytest.raises(KeyInvalid, match="does not match"):
        signing_key(dict(ed.private_jwk(), x=generate("Ed25519", "z").public.jwk["x"]))


def test_b64_false_listed_in_crit_verifies_per_rfc_7797() -> None:
    key = generate("Ed25519", "k")
    header = jcs.b64url(
        json.dumps(
            {"alg": "Ed25519", "kid": "k", "typ": TYP_OBJECT, "b64": False, "crit": ["b64"]}
        ).encode()
    )
    token = header + ".." + jcs.b64url(key.sign((header + ".").encode() + PAYLOAD))
    verify_with(parse_detached(token, TYP_OBJECT, ALGORITHMS), PAYLOAD, key.public)


# ---------------------------------------------------------------- joserfc as an independent oracle


@pytest.mark.parametrize(("alg", "key_class"), [("Ed25519", OKPKey), ("ES256", ECKey)])
def test_joserfc_verifies_ours_and_we_verify_joserfc(alg: str, key_class: type) -> None:
    key = generate(alg, "k1")  # type: ignore[arg-type]
    token = sign_detached(PAYLOAD, key, TYP_OBJECT)
    theirs_public = key_class.import_key(dict(key.public.jwk))
    result = joserfc_jws.deserialize_compact(
        token, theirs_public, algorithms=[alg], payload=PAYLOAD
    )
    assert result.payload == PAYLOAD
    with pytest.raises(Exception):  # noqa: B017  # joserfc's own BadSignatureError
        joserfc_jws.deserialize_compact(
            token, theirs_public, algorithms=[alg], payload=PAYLOAD + b"x"
        )
    theirs_private = key_class.import_key(key.private_jwk())
    full = joserfc_jws.serialize_compact(
        {"alg": alg, "kid": "k1", "typ": TYP_OBJECT}, PAYLOAD, theirs_private, algorithms=[alg]
    )
    verify_with(
        parse_detached(joserfc_jws.detach_content(full), TYP_OBJECT, ALGORITHMS),
        PAYLOAD,
        key.public,
    )


# ---------------------------------------------------------------- SM2 with SM3: published vectors


def _h(text: str) -> int:
    return int(text.replace(" ", ""), 16)


def _b32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


MSG = b"message digest"
# GB/T 32918.5 (GM/T 0003.5-2012) example on the recommended curve sm2p256v1, ID 1234567812345678.
V1 = {
    "d": _h("3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8"),
    "px": _h("09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020"),
    "py": _h("CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13"),
    "za": _h("B2E14C5C 79C6DF5B 85F4FE7E D8DB7A26 2B9DA7E0 7CCB0EA9 F4747B8C CDA8A4F3"),
    "e": _h("F0B43E94 BA45ACCA ACE692ED 534382EB 17E6AB5A 19CE7B31 F4486FDF C0D28640"),
    "k": _h("59276E27 D506861A 16680F3A D9C02DCC EF3CC1FA 3CDBE4CE 6D54B80D EAC1BC21"),
    "r": _h("F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3"),
    "s": _h("B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA"),
}
V1_DER = (
    "3046022100F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "022100B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)
# GB/T 32918.2-2016 Annex A (draft-shen-sm2-ecdsa-02): example Fp-256 curve, ID ALICE123@YAHOO.COM.
V2_CURVE = {
    "p": _h("8542D69E 4C044F18 E8B92435 BF6FF7DE 45728391 5C45517D 722EDB8B 08F1DFC3"),
    "a": _h("787968B4 FA32C3FD 2417842E 73BBFEFF 2F3C848B 6831D7E0 EC65228B 3937E498"),
    "b": _h("63E4C6D3 B23B0C84 9CF84241 484BFE48 F61D59A5 B16BA06E 6E12D1DA 27C5249A"),
    "gx": _h("421DEBD6 1B62EAB6 746434EB C3CC315E 32220B3B ADD50BDC 4C4E6C14 7FEDD43D"),
    "gy": _h("0680512B CBB42C07 D47349D2 153B70C4 E5D7FDFC BFA36EA1 A85841B9 E46E09A2"),
    "n": _h("8542D69E 4C044F18 E8B92435 BF6FF7DD 29772063 0485628D 5AE74EE7 C32E79B7"),
}
V2 = {
    "d": _h("128B2FA8 BD433C6C 068C8D80 3DFF7979 2A519A55 171B1B65 0C23661D 15897263"),
    "px": _h("0AE4C779 8AA0F119 471BEE11 825BE462 02BB79E2 A5844495 E97C04FF 4DF2548A"),
    "py": _h("7C0240F8 8F1CD4E1 6352A73C 17B7F16F 07353E53 A176D684 A9FE0C6B B798E857"),
    "za": _h("F4A38489 E32B45B6 F876E3AC 2168CA39 2362DC8F 23459C1D 1146FC3D BFB7BC9A"),
    "e": _h("B524F552 CD82B8B0 28476E00 5C377FB1 9A87E6FC 682D48BB 5D42E3D9 B9EFFE76"),
    "k": _h("6CB28D99 385C175C 94F94E93 4817663F C176D925 DD72B727 260DBAAE 1FB2F96F"),
    "r": _h("40F1EC59 F793D9F4 9E09DCEF 49130D41 94F79FB1 EED2CAA5 5BACDB49 C4E755D1"),
    "s": _h("6FC6DAC3 2C5D5CF1 0C77DFB2 0F7C2EB6 67A45787 2FB09EC5 6327A67E C7DEEBE7"),
}
V1_POINT = b"\x04" + _b32(V1["px"]) + _b32(V1["py"])
V1_SIG = _b32(V1["r"]) + _b32(V1["s"])


def test_sm2_v1_public_key_za_e_and_signature_match_the_published_values() -> None:
    assert sm2.derive_public(_b32(V1["d"])) == V1_POINT
    core = gmalg.SM2(_b32(V1["d"]), sm2.DEFAULT_ID, V1_POINT, rnd_fn=lambda bits: V1["k"])
    za = core._core.entity_info(sm2.DEFAULT_ID, (V1["px"], V1["py"]))
    assert int.from_bytes(za, "big") == V1["za"]
    assert int.from_bytes(_sm3(za + MSG), "big") == V1["e"]
    r, s = core.sign(MSG)
    assert bytes(r).rjust(32, b"\0") + bytes(s).rjust(32, b"\0") == V1_SIG
    assert sm2.verify(V1_POINT, MSG, V1_SIG)
    assert sm2.to_der(V1_SIG).hex().upper() == V1_DER


def test_sm2_v1_verification_rejects_tampering_a_wrong_id_and_out_of_range_values() -> None:
    n = sm2.N
    assert not sm2.verify(V1_POINT, MSG + b".", V1_SIG)
    assert not sm2.verify(V1_POINT, MSG, V1_SIG, uid=b"ALICE123@YAHOO.COM")
    assert not sm2.verify(V1_POINT, MSG, _b32(0) + _b32(V1["s"]))
    assert not sm2.verify(V1_POINT, MSG, _b32(V1["r"]) + _b32(n))
    assert not sm2.verify(V1_POINT, MSG, V1_SIG[:-1])
    with pytest.raises(ValueError, match="not a point"):
        sm2.public_point(_b32(V1["px"]), _b32(V1["py"] ^ 1))
    with pytest.raises(ValueError, match="field element"):
        sm2.public_point(b"\xff" * 32, _b32(V1["py"]))


def test_sm2_v2_example_curve_vector_through_the_same_library() -> None:
    c = V2_CURVE
    core = gsm2.SM2Core(
        gec.ECDLP(c["p"], c["a"], c["b"], (c["gx"], c["gy"]), c["n"]),
        gmalg.SM3(),
        rnd_fn=lambda bits: V2["k"],
    )
    uid, point = b"ALICE123@YAHOO.COM", (V2["px"], V2["py"])
    za = core.entity_info(uid, point)
    assert int.from_bytes(za, "big") == V2["za"]
    assert int.from_bytes(_sm3(za + MSG), "big") == V2["e"]
    assert core.sign(MSG, V2["d"], uid, point) == (V2["r"], V2["s"])
    assert core.verify(MSG, V2["r"], V2["s"], uid, point)
    assert not core.verify(MSG, V2["r"], V2["s"], sm2.DEFAULT_ID, point)


def _v1_jwk() -> dict[str, str]:
    return {
        "kty": "EC", "crv": "SM2", "kid": "gd-v1", "alg": "SM2SM3", "use": "sig",
        "x": jcs.b64url(_b32(V1["px"])), "y": jcs.b64url(_b32(V1["py"])),
        "d": jcs.b64url(_b32(V1["d"])),
    }  # fmt: skip


def test_an_sm2sm3_jws_made_with_the_v1_key_verifies_and_signatures_are_r_s_64_bytes() -> None:
    key = signing_key(_v1_jwk())
    token = sign_detached(PAYLOAD, key, TYP_OBJECT)
    parsed = parse_detached(token, TYP_OBJECT, ALGORITHMS)
    assert len(parsed.signature) == 64
    verify_with(parsed, PAYLOAD, public_key({k: v for k, v in _v1_jwk().items() if k != "d"}))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI on this machine")
def test_openssl_verifies_our_sm2sm3_jws_signature_with_the_default_id(tmp_path: Path) -> None:
    """An independent C implementation (OpenSSL 3) agrees on SM2SM3's Z value and encoding."""
    key = signing_key(_v1_jwk())
    token = sign_detached(PAYLOAD, key, TYP_OBJECT)
    parsed = parse_detached(token, TYP_OBJECT, ALGORITHMS)
    spki = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200") + V1_POINT
    (tmp_path / "pub.der").write_bytes(spki)
    (tmp_path / "msg").write_bytes(parsed.signing_input(PAYLOAD))
    (tmp_path / "sig").write_bytes(sm2.to_der(parsed.signature))

    def openssl(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.der"),
             "-keyform", "DER", "-rawin", "-digest", "sm3", "-in", str(tmp_path / "msg"),
             "-sigfile", str(tmp_path / "sig"), *extra],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    ok = openssl("-pkeyopt", "distid:1234567812345678")
    if "sm3" in (ok.stderr or "").lower() and "unknown" in (ok.stderr or "").lower():
        pytest.skip(f"this openssl has no SM3: {ok.stderr.strip()}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong_id = openssl("-pkeyopt", "distid:ALICE123@YAHOO.COM")
    assert wrong_id.returncode != 0
