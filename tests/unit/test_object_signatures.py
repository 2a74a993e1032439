"""Signed objects: the exact signed form, re-share chains, raised markings, manifests, schema."""

from __future__ import annotations

import copy
import json
import random
from datetime import timedelta
from importlib import resources
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import object_signatures as sigs
from core.alerts import PLATFORM_IDENTITY
from core.jcs import loads_marking_duplicates
from core.manifests import build_manifest, verify_manifest
from core.markings import TLP2_AMBER, TLP2_CLEAR, TLP2_GREEN
from tests.signing_world import ALLOWED, GD, HK, MO, NOW, REVOKED_AT, indicator, signed, world

EXT = sigs.TRUSTED_DATA_EXTENSION
NOTE_ID = "note--7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
TRUST = world().trust()  # the lists are immutable; verifying them once keeps the properties fast


def verify(obj: Any, **kw: Any) -> sigs.ObjectVerdict:
    return sigs.verify(obj, TRUST, kw.pop("at", NOW), ALLOWED, **kw)


# ---------------------------------------------------------------- what is signed


def test_the_signed_form_is_the_object_without_signatures_and_other_extensions_stay_signed() -> (
    None
):
    other = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
    original = indicator(HK, extensions={other: {"extension_type": "property-extension", "x": 1}})
    obj = sigs.sign(original, world().keys["hk-ed"])
    assert sigs.unsigned_form(obj) == original
    assert original == indicator(
        HK, extensions={other: {"extension_type": "property-extension", "x": 1}}
    )
    assert verify(obj).verified
    obj["extensions"][other]["x"] = 2
    assert "does not match the content" in verify(obj).reason


def test_an_object_is_signed_once_and_needs_a_creator() -> None:
    obj = signed("Ed25519")
    with pytest.raises(sigs.AlreadySigned):
        sigs.sign(obj, world().keys["hk-ed"])
    no_creator = indicator(HK)
    del no_creator["created_by_ref"]
    with pytest.raises(ValueError, match="created_by_ref"):
        sigs.sign(no_creator, world().keys["hk-ed"])
    obj_without = copy.deepcopy(obj)
    del obj_without["created_by_ref"]
    assert verify(obj_without).status == "failed"


# ---------------------------------------------------------------- re-share chains


def chain() -> dict[str, Any]:
    w = world()
    gd = signed("SM2SM3", w)
    hk = sigs.countersign(gd, w.keys["hk-ed"], HK, NOW - timedelta(hours=2), custody="custodial")
    return sigs.countersign(hk, w.keys["mo-es"], MO, NOW - timedelta(hours=1))


def entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["extensions"][EXT]["signatures"]  # type: ignore[no-any-return]


def test_a_three_jurisdiction_chain_verifies_and_names_every_link() -> None:
    verdict = verify(chain())
    assert verdict.verified, verdict.reason
    assert [(c.role, c.jurisdiction, c.alg, c.custody) for c in verdict.chain] == [
        ("origin", "GD", "SM2SM3", "agency"),
        ("countersignature", "HK", "Ed25519", "custodial"),
        ("countersignature", "MO", "ES256", "agency"),
    ]


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (lambda o: entries(o).pop(1), "signature 2 (countersignature): ES256 signature"),
        (lambda o: entries(o).reverse(), "the first signature must be the origin"),
        (lambda o: entries(o)[1].update(signed_at="2026-11-01T00:00:00.000Z"), "does not match"),
        (lambda o: entries(o)[1].update(signer=MO), "belongs to"),
        (lambda o: entries(o)[2].update(custody="custodial"), "the trust list says 'agency'"),
        (lambda o: entries(o)[1].update(note="hi"), "unexpected member(s) note"),
        (lambda o: entries(o).append(dict(entries(o)[0])), "only the first signature may be"),
        (lambda o: entries(o)[0].update(jws=entries(o)[1]["jws"]), "'typ' is"),
        (lambda o: o.update(confidence=1), "signature 1 (origin)"),
    ],
    ids=["middle-removed", "reordered", "time-changed", "signer-changed", "custody-claim",
         "extra-member", "second-origin", "countersig-as-origin", "content"],
)  # fmt: skip
def test_a_tampered_chain_fails(attack: Any, reason: str) -> None:
    obj = chain()
    attack(obj)
    verdict = verify(obj)
    assert verdict.status == "failed"
    assert reason in verdict.reason


def test_dropping_the_latest_countersignature_leaves_a_shorter_valid_chain() -> None:
    # Appends can be dropped without trace per object: that is what manifests are for.
    obj = chain()
    entries(obj).pop()
    assert verify(obj).verified and len(verify(obj).chain) == 2


def test_a_countersignature_from_the_future_or_by_a_revoked_key_fails() -> None:
    w = world()
    future = sigs.countersign(signed("SM2SM3", w), w.keys["hk-ed"], HK, NOW + timedelta(hours=1))
    assert "after it was received" in verify(future).reason
    late = sigs.countersign(
        signed("Ed25519", w), w.keys["gd-revoked"], GD, REVOKED_AT - timedelta(days=3)
    )
    assert "was revoked" in verify(late).reason
    assert verify(late, at=REVOKED_AT - timedelta(days=1)).verified


# ---------------------------------------------------------------- raised markings


def test_a_signed_note_raises_the_effective_marking_and_can_never_lower_it() -> None:
    w = world()
    obj = signed("SM2SM3", w)
    red = sigs.sign(
        sigs.marking_note(note_id=NOTE_ID, object_ids=[obj["id"]],
                          created_by_ref=HK, created=NOW, tlp="red", content="RED on re-share"),
        w.keys["hk-ed"],
    )  # fmt: skip
    clear = copy.deepcopy(red)
    clear["object_marking_refs"] = [TLP2_CLEAR]
    unrelated = copy.deepcopy(red)
    unrelated["extensions"][EXT]["marking_for"] = [
        "indicator--00000000-0000-4000-8000-000000000000"
    ]
    unmarked = copy.deepcopy(red)
    del unmarked["object_marking_refs"]
    assert sigs.effective_tlp(obj, []) == "amber"
    assert sigs.effective_tlp(obj, [red]) == "red"
    assert sigs.effective_tlp(obj, [clear, unrelated, unmarked]) == "amber"
    assert verify(red).verified
    # marking_for is part of what the note's signature covers.
    assert "does not match" in verify(unrelated).reason
    assert "does not match" in verify(clear).reason


# ---------------------------------------------------------------- manifests


def test_a_manifest_names_dropped_added_and_swapped_objects() -> None:
    w = world()
    a = signed("Ed25519", w)
    b = signed("Ed25519", w, id="indicator--0b7c5e1a-3f2d-4c8b-9a6e-5d4c3b2a1f00")
    c = signed("Ed25519", w, id="indicator--1c8d6f2b-4a3e-4d9c-8b7f-6e5d4c3b2a10")
    manifest = build_manifest(
        [a, b], w.keys["platform"], issuer=PLATFORM_IDENTITY, issued=NOW, scope="export 7"
    )
    trust = w.trust()
    assert verify_manifest(manifest, [b, a], trust, NOW, ALLOWED).ok
    dropped = verify_manifest(manifest, [a], trust, NOW, ALLOWED)
    assert not dropped.ok and dropped.missing == (f"{b['id']} ({b['modified']})",)
    added = verify_manifest(manifest, [a, b, c], trust, NOW, ALLOWED)
    assert added.unexpected == (f"{c['id']} ({c['modified']})",)
    twice = verify_manifest(manifest, [a, b, a], trust, NOW, ALLOWED)
    assert not twice.ok and "twice" in twice.unexpected[0]
    recountersigned = sigs.countersign(a, w.keys["mo-es"], MO, NOW)
    assert verify_manifest(manifest, [recountersigned, b], trust, NOW, ALLOWED).mismatched


def test_a_manifest_must_be_signed_by_its_issuer_and_untouched() -> None:
    w = world()
    a = signed("Ed25519", w)
    forged = build_manifest([a], w.keys["hk-ed"], issuer=PLATFORM_IDENTITY, issued=NOW, scope="x")
    assert "belongs to" in verify_manifest(forged, [a], w.trust(), NOW, ALLOWED).reason
    manifest = build_manifest(
        [a], w.keys["platform"], issuer=PLATFORM_IDENTITY, issued=NOW, scope="x"
    )
    manifest["objects"] = []
    assert "does not match" in verify_manifest(manifest, [], w.trust(), NOW, ALLOWED).reason
    doubled = build_manifest(
        [a, a], w.keys["platform"], issuer=PLATFORM_IDENTITY, issued=NOW, scope="x"
    )
    assert "lists indicator--" in verify_manifest(doubled, [a], w.trust(), NOW, ALLOWED).reason


# ---------------------------------------------------------------- the extension definition


def _data(name: str) -> Any:
    return json.loads(resources.files("core").joinpath(name).read_text(encoding="utf-8"))


def test_the_extension_definition_carries_the_schema_and_signed_objects_follow_it() -> None:
    definition, schema = _data("trusted_data_extension.json"), _data("trusted_data_schema.json")
    assert definition["id"] == EXT and definition["extension_types"] == ["property-extension"]
    assert json.loads(definition["schema"]) == schema
    assert sigs.extension_definition() == definition and sigs.extension_schema() == schema
    assert definition["created_by_ref"] == PLATFORM_IDENTITY
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    w = world()
    full = sigs.countersign(signed("SM2SM3", w), w.keys["hk-ed"], HK, NOW, custody="custodial")
    note = sigs.marking_note(note_id=NOTE_ID, object_ids=[full["id"]],
                             created_by_ref=HK, created=NOW, tlp="red", content="x")  # fmt: skip
    for obj in (full, note, sigs.sign(note, w.keys["hk-ed"])):
        validator.validate(obj["extensions"][EXT])
    bad = copy.deepcopy(full["extensions"][EXT])
    bad["signatures"][0]["role"] = "countersignature"
    assert list(validator.iter_errors(bad))


# ---------------------------------------------------------------- re-serialisers (hypothesis)

safe_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
json_leaf = st.one_of(
    safe_text,
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
    max_leaves=12,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.dictionaries(st.from_regex(r"x_[a-z_]{1,12}", fullmatch=True), json_value, max_size=4),
    description=safe_text,
    seed=st.integers(0, 2**32 - 1),
    indent=st.sampled_from([None, 0, 1, 4, "\t"]),
    ensure_ascii=st.booleans(),
    separators=st.sampled_from([None, (",", ":"), (" ,  ", " :\n")]),
)
def test_any_reserialisation_of_a_signed_object_still_verifies(
    extra: dict[str, Any],
    description: str,
    seed: int,
    indent: Any,
    ensure_ascii: bool,
    separators: Any,
) -> None:
    w = world()
    obj = sigs.sign(indicator(HK, description=description, **extra), w.keys["hk-ed"])
    text = json.dumps(
        _shuffled(obj, random.Random(seed)),
        indent=indent,
        ensure_ascii=ensure_ascii,
        separators=separators,
    )
    received = loads_marking_duplicates(text)
    verdict = sigs.verify(received, TRUST, NOW, ALLOWED)
    assert verdict.verified, verdict.reason


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["name", "description", "pattern", "confidence", "labels"]),
       replacement=json_value)  # fmt: skip
def test_any_change_to_a_signed_field_fails(field: str, replacement: Any) -> None:
    w = world()
    obj = sigs.sign(indicator(HK), w.keys["hk-ed"])
    if obj[field] == replacement or (
        isinstance(replacement, (int, float)) and not isinstance(replacement, bool)
        and isinstance(obj[field], (int, float)) and float(obj[field]) == float(replacement)
    ):  # fmt: skip
        return  # JCS: 85 and 85.0 are one number, so not a change
    obj[field] = replacement
    assert sigs.verify(obj, TRUST, NOW, ALLOWED).status == "failed"


def test_markings_in_the_world_fixture_are_what_the_attacks_assume() -> None:
    obj = indicator()
    assert obj["object_marking_refs"] == [TLP2_AMBER]
    assert obj["granular_markings"][0]["marking_ref"] == TLP2_GREEN
    assert obj["created_by_ref"] == GD
