"""Trust lists: pinned roots, expiry, rollback, who may speak for whom, and when keys are valid."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from core.settings import SigningSettings
from core.signing import ALGORITHMS, SignatureInvalid, generate
from core.trust import (
    TrustListInvalid,
    TrustStore,
    issue,
    pinned_roots,
    revoke,
    verify_trust_list,
)
from tests.signing_world import (
    EXPIRED_AT,
    GD,
    HK,
    NOW,
    REVOKED_AT,
    YEAR_END,
    with_rogue_hk_list,
    world,
)


def roots() -> dict[str, list]:  # type: ignore[type-arg]
    return pinned_roots(world().roots_config())


def test_a_list_signed_by_its_pinned_root_verifies_and_says_what_it_holds() -> None:
    w = world()
    gd = verify_trust_list(w.lists["GD"], roots(), ALGORITHMS, NOW)
    assert gd.jurisdiction == "GD" and gd.sequence == 3 and gd.signed_by == "root-gd-2026"
    sm2 = next(e for e in gd.entries if e.key.kid == "gd-cac-sm2-2026")
    assert (sm2.agency, sm2.custody, sm2.key.alg) == (GD, "agency", "SM2SM3")


def test_a_list_signed_by_another_jurisdictions_root_is_refused() -> None:
    w = world()
    forged = issue(
        "GD", w.lists["GD"]["keys"], w.roots["HK"], sequence=9, issued=NOW, expires=YEAR_END
    )
    with pytest.raises(TrustListInvalid, match="not a root pinned for GD"):
        verify_trust_list(forged, roots(), ALGORITHMS, NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["keys"][0].update(agency=HK), "does not match the content"),
        (lambda d: d["keys"][2].pop("revoked_at"), "does not match the content"),
        (lambda d: d.update(sequence=99), "does not match the content"),
        (lambda d: d.pop("signature"), "not a string"),
        (lambda d: d.update(jurisdiction="XX"), "no root key is pinned"),
    ],
    ids=["agency", "unrevoke", "sequence", "unsigned", "jurisdiction"],
)
def test_a_changed_or_unsigned_list_is_refused(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    document = copy.deepcopy(world().lists["GD"])
    change(document)
    with pytest.raises(TrustListInvalid, match=reason):
        verify_trust_list(document, roots(), ALGORITHMS, NOW)


def test_an_expired_or_future_list_is_refused_and_a_newer_one_supersedes() -> None:
    w = world()
    keys = w.lists["GD"]["keys"]
    old = issue(
        "GD",
        keys,
        w.roots["GD"],
        sequence=1,
        issued=NOW - timedelta(days=40),
        expires=NOW - timedelta(days=10),
    )
    with pytest.raises(TrustListInvalid, match="expired"):
        verify_trust_list(old, roots(), ALGORITHMS, NOW)
    future = issue(
        "GD", keys, w.roots["GD"], sequence=5, issued=NOW + timedelta(days=1), expires=YEAR_END
    )
    with pytest.raises(TrustListInvalid, match="issued in the future"):
        verify_trust_list(future, roots(), ALGORITHMS, NOW)
    current = verify_trust_list(w.lists["GD"], roots(), ALGORITHMS, NOW)
    rolled_back = verify_trust_list(
        issue("GD", keys, w.roots["GD"], sequence=2, issued=NOW, expires=YEAR_END),
        roots(),
        ALGORITHMS,
        NOW,
    )
    assert current.supersedes(rolled_back) and not rolled_back.supersedes(current)
    # A store handed both keeps the newer one, whatever the order.
    assert TrustStore([current, rolled_back]).lists["GD"].sequence == 3
    assert TrustStore([rolled_back, current]).lists["GD"].sequence == 3


def test_a_list_with_a_duplicate_kid_or_a_bad_key_is_refused() -> None:
    w = world()
    keys = w.lists["GD"]["keys"]
    for bad_keys, reason in [
        ([*keys, keys[0]], "listed twice"),
        ([dict(keys[0], agency="gd-cac")], "STIX identity"),
        ([dict(keys[0], custody="escrow")], "custody"),
        ([dict(keys[0], alg="HS256")], "'alg' must be one of"),
        ([dict(keys[0], not_after="tomorrow")], "RFC 3339"),
        ([dict(keys[0], d="AAAA")], "private key material"),
    ]:
        document = issue("GD", bad_keys, w.roots["GD"], sequence=4, issued=NOW, expires=YEAR_END)
        with pytest.raises(TrustListInvalid, match=reason):
            verify_trust_list(document, roots(), ALGORITHMS, NOW)


def test_keys_are_judged_at_the_receipt_time_and_revoked_keys_stay_listed() -> None:
    trust = world().trust()
    assert trust.signer("gd-cac-es-revoked", GD, REVOKED_AT - timedelta(seconds=1)).agency == GD
    with pytest.raises(SignatureInvalid, match="was revoked at 2026-11-01"):
        trust.signer("gd-cac-es-revoked", GD, REVOKED_AT)
    with pytest.raises(SignatureInvalid, match="expired at 2026-06-01"):
        trust.signer("gd-cac-ed-2025", GD, EXPIRED_AT)
    assert (
        trust.signer("gd-cac-ed-2025", GD, EXPIRED_AT - timedelta(days=1)).key.kid
        == "gd-cac-ed-2025"
    )
    with pytest.raises(SignatureInvalid, match="not valid before"):
        trust.signer("gd-cac-sm2-2026", GD, NOW.replace(year=2025))


def test_revoke_keeps_the_key_listed_with_its_time() -> None:
    w = world()
    keys = revoke(w.lists["HK"]["keys"], "hk-govcert-ed-2026", NOW)
    assert [k["kid"] for k in keys] == [k["kid"] for k in w.lists["HK"]["keys"]]
    assert keys[0]["revoked_at"] == "2026-12-01T08:00:00.000Z"
    with pytest.raises(KeyError):
        revoke(keys, "nope", NOW)


def test_only_its_own_jurisdiction_speaks_for_an_agency() -> None:
    w = with_rogue_hk_list(world())
    unpinned, pinned = w.trust(pin=False), w.trust(pin=True)
    with pytest.raises(SignatureInvalid, match="claimed by the trust lists of GD, HK"):
        unpinned.signer("hk-claims-gd-2026", GD, NOW)
    with pytest.raises(SignatureInvalid, match="but .* is an agency of GD"):
        pinned.signer("hk-claims-gd-2026", GD, NOW)
    assert pinned.signer("gd-cac-sm2-2026", GD, NOW).jurisdiction == "GD"
    with pytest.raises(SignatureInvalid, match="belongs to"):
        pinned.signer("gd-cac-sm2-2026", HK, NOW)


def test_a_kid_listed_by_two_jurisdictions_is_ambiguous() -> None:
    w = world()
    clash = copy.deepcopy(w.lists["GD"]["keys"][0])
    clash["agency"] = HK
    w.lists["HK"] = issue(
        "HK",
        [*w.lists["HK"]["keys"], clash],
        w.roots["HK"],
        sequence=4,
        issued=NOW,
        expires=YEAR_END,
    )
    with pytest.raises(SignatureInvalid, match="listed by several jurisdictions"):
        w.trust().signer("gd-cac-sm2-2026", GD, NOW)
    with pytest.raises(SignatureInvalid, match="unknown key"):
        w.trust().signer("nobody", GD, NOW)


def test_settings_refuse_none_hmac_and_unknown_algorithms() -> None:
    assert SigningSettings().algorithms == list(ALGORITHMS)
    for bad in (["none"], ["HS256"], ["Ed25519", "RS256"]):
        with pytest.raises(ValueError, match="refused|not one ThreatBay knows"):
            SigningSettings(algorithms=bad)
    assert SigningSettings(algorithms=["SM2SM3"]).algorithms == ["SM2SM3"]


def test_pinned_roots_must_be_jwks() -> None:
    with pytest.raises(TrustListInvalid):
        pinned_roots({"GD": "root"})
    with pytest.raises(TrustListInvalid):
        pinned_roots({"GD": [{"kty": "oct", "k": "c2VjcmV0", "kid": "r", "alg": "HS256"}]})
    assert pinned_roots({"GD": [dict(generate("Ed25519", "r").public.jwk)]})["GD"][0].kid == "r"
    with pytest.raises(TrustListInvalid, match="private key"):
        pinned_roots({"GD": [generate("Ed25519", "r").private_jwk()]})
