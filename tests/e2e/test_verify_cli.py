"""``threatbay verify FILE|URL``: every attack of issue #24 that a file can carry fails, loudly.

The command is run as a partner would (the real typer app; a subprocess for
exit codes and a URL served by a real HTTP server). Each case writes one
bundle holding one attacked object and expects exit code 1 and the reason;
the re-serialised and the honest objects must verify with exit code 0.
"""

from __future__ import annotations

import copy
import http.server
import json
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core import object_signatures as sigs
from core.jcs import b64url, b64url_decode
from core.manifests import build_manifest
from core.markings import TLP2_CLEAR, TLP2_RED
from core.signing import TYP_OBJECT
from core.trust import format_time
from tests.signing_world import (
    EXPIRED_AT,
    GD,
    HK,
    NOW,
    REVOKED_AT,
    World,
    indicator,
    signed,
    with_rogue_hk_list,
    world,
)
from threatbay.cli import app

RECEIVED = format_time(NOW)
EXT = sigs.TRUSTED_DATA_EXTENSION


def run(tmp_path: Path, w: World, text: str, *extra: str) -> tuple[int, str]:
    source = tmp_path / "input.json"
    source.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["verify", str(source), *w.write(tmp_path), "--received-at", RECEIVED, *extra]
    )
    return result.exit_code, result.output


def bundle(*objects: dict[str, Any]) -> str:
    return json.dumps(
        {
            "type": "bundle",
            "id": "bundle--5d0f8a1e-2b3c-4d5e-8f60-718293a4b5c6",
            "objects": list(objects),
        },
        ensure_ascii=False,
    )


def jws_of(obj: dict[str, Any], index: int = 0) -> str:
    return str(obj["extensions"][EXT]["signatures"][index]["jws"])


def forged_header(obj: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    forged = copy.deepcopy(obj)
    _, _, signature = jws_of(obj).split(".")
    forged["extensions"][EXT]["signatures"][0]["jws"] = (
        b64url(json.dumps(header).encode()) + ".." + signature
    )
    return forged


# ---------------------------------------------------------------- attacks on the content


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def attack(obj: dict[str, Any]) -> None:
        target = obj
        keys = path.split("/")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[keys[-1] if isinstance(target, dict) else int(keys[-1])] = value  # type: ignore[index]

    return attack


CONTENT_ATTACKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pattern": _set("pattern", "[ipv4-addr:value = '198.51.100.1']"),
    "confidence": _set("confidence", 5),
    "description": _set("description", "benign CDN node"),
    "granular marking": _set("granular_markings/0/marking_ref", TLP2_CLEAR),
    "granular selector": _set("granular_markings/0/selectors", ["name", "description"]),
    "TLP downgraded": _set("object_marking_refs", [TLP2_CLEAR]),
    "TLP removed": lambda obj: obj.pop("object_marking_refs"),
    "revoked hidden": _set("revoked", False),
    "NFD rewrite": lambda obj: obj.update(name=unicodedata.normalize("NFD", obj["name"])),
    "Simplified rewrite": lambda obj: obj.update(
        description=obj["description"].replace("網絡攻擊", "网络攻击")
    ),
    "backdated modified": _set("modified", "2026-01-02T00:00:00.000Z"),
}


@pytest.mark.parametrize("attack", sorted(CONTENT_ATTACKS))
def test_a_tampered_field_fails_verification(tmp_path: Path, attack: str) -> None:
    w = world()
    obj = signed("Ed25519", w)
    CONTENT_ATTACKS[attack](obj)
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1, out
    assert "FAILED" in out and "does not match the content" in out


def test_an_sm2_signed_object_tampered_fails_and_untouched_verifies(tmp_path: Path) -> None:
    w = world()
    good = signed("SM2SM3", w)
    bad = copy.deepcopy(good)
    bad["confidence"] = 100
    code, out = run(tmp_path, w, bundle(good))
    assert code == 0, out
    assert "VERIFIED" in out and "SM2SM3" in out and "gd-cac-sm2-2026" in out and "GD" in out
    code, out = run(tmp_path, w, bundle(bad))
    assert code == 1 and "does not match the content" in out


# ---------------------------------------------------------------- stripped, moved, replayed


def test_a_stripped_signature_is_unsigned_and_fails(tmp_path: Path) -> None:
    w = world()
    obj = signed("Ed25519", w)
    del obj["extensions"]
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and "UNSIGNED" in out


@pytest.mark.parametrize(
    "flag",
    [
        {"x_threatbay_signed": False},
        {"x_threatbay_unsigned_ok": True},
        {"extensions": {EXT: {"extension_type": "property-extension", "signatures": []}}},
        {"extensions": {EXT: {"extension_type": "property-extension", "protected": False}}},
    ],
    ids=["signed-false", "unsigned-ok", "empty-signatures", "protected-false"],
)
def test_a_payload_flag_never_excuses_a_missing_signature(
    tmp_path: Path, flag: dict[str, Any]
) -> None:
    w = world()
    obj = indicator(HK, **flag)
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1, out
    assert "UNSIGNED" in out or "FAILED" in out


def test_a_signature_moved_to_another_object_or_version_fails(tmp_path: Path) -> None:
    w = world()
    source = signed("Ed25519", w)
    other_object = indicator(HK, id="indicator--0b7c5e1a-3f2d-4c8b-9a6e-5d4c3b2a1f00")
    other_version = indicator(HK, modified="2026-12-01T07:00:00.000Z", revoked=True)
    for target in (other_object, other_version):
        target["extensions"] = copy.deepcopy(source["extensions"])
        code, out = run(tmp_path, w, bundle(target))
        assert code == 1 and "does not match the content" in out


def test_a_replayed_older_version_or_a_hidden_revocation_is_caught_by_the_manifest(
    tmp_path: Path,
) -> None:
    w = world()
    v1 = signed("Ed25519", w)
    v2 = signed("Ed25519", w, modified="2026-12-01T06:00:00.000Z", revoked=True)
    other = signed("Ed25519", w, id="indicator--0b7c5e1a-3f2d-4c8b-9a6e-5d4c3b2a1f00")
    manifest = build_manifest(
        [v2, other], w.keys["platform"], issuer=w_platform(), issued=NOW, scope="shared-mo page 1"
    )
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    opt = ["--manifest", str(tmp_path / "manifest.json")]
    code, out = run(tmp_path, w, bundle(v2, other), *opt)
    assert code == 0, out
    assert "manifest matches" in out
    code, out = run(tmp_path, w, bundle(v1, other), *opt)  # older version replayed
    assert code == 1 and "missing" in out and "not in the manifest" in out
    code, out = run(tmp_path, w, bundle(other), *opt)  # later revoked version hidden
    assert code == 1 and "missing indicator--8e2e2d2b" in out
    stripped = copy.deepcopy(v2)
    del stripped["extensions"]
    code, out = run(tmp_path, w, bundle(stripped, other), *opt)
    assert code == 1 and "other content or signatures than listed" in out


def w_platform() -> str:
    from core.alerts import PLATFORM_IDENTITY

    return PLATFORM_IDENTITY


# ---------------------------------------------------------------- who signed


def test_agency_x_key_while_created_by_ref_names_agency_y(tmp_path: Path) -> None:
    w = world()
    obj = sigs.sign(indicator(GD), w.keys["hk-ed"])  # HK's key, GD's name
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and f"belongs to {HK}, not to {GD}" in out


def test_a_kid_of_another_jurisdiction_cannot_sign_for_this_one(tmp_path: Path) -> None:
    w = with_rogue_hk_list(world())
    obj = sigs.sign(indicator(GD), w.keys["hk-rogue"])  # HK's list claims a GD agency
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and "claimed by the trust lists of GD, HK" in out
    (tmp_path / "agencies.json").write_text(json.dumps(w.identity_jurisdictions))
    code, out = run(tmp_path, w, bundle(obj), "--agencies", str(tmp_path / "agencies.json"))
    assert code == 1 and "a list speaks only for its own jurisdiction" in out


def test_alg_none_is_refused(tmp_path: Path) -> None:
    w = world()
    obj = forged_header(
        signed("Ed25519", w), {"alg": "none", "kid": "hk-govcert-ed-2026", "typ": TYP_OBJECT}
    )
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and "alg 'none' is refused" in out


def test_hs256_with_the_public_key_as_secret_is_refused(tmp_path: Path) -> None:
    import hashlib
    import hmac

    w = world()
    obj = indicator(HK)
    public_x = w.keys["hk-ed"].public.jwk["x"]
    header = b64url(
        json.dumps({"alg": "HS256", "kid": "hk-govcert-ed-2026", "typ": TYP_OBJECT}).encode()
    )
    payload = sigs.object_payload(obj)
    mac = hmac.new(
        b64url_decode(public_x), (header + "." + b64url(payload)).encode(), hashlib.sha256
    )
    obj["extensions"] = {
        EXT: {
            "extension_type": "property-extension",
            "signatures": [{"role": "origin", "jws": header + ".." + b64url(mac.digest())}],
        }
    }
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and "(HMAC) is refused" in out


def test_b64_false_without_crit_is_refused(tmp_path: Path) -> None:
    w = world()
    obj = indicator(HK)
    header = b64url(
        json.dumps(
            {"alg": "Ed25519", "kid": "hk-govcert-ed-2026", "typ": TYP_OBJECT, "b64": False}
        ).encode()
    )
    signature = w.keys["hk-ed"].sign((header + ".").encode() + sigs.object_payload(obj))
    obj["extensions"] = {
        EXT: {
            "extension_type": "property-extension",
            "signatures": [{"role": "origin", "jws": header + ".." + b64url(signature)}],
        }
    }
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and "without 'crit'" in out


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("unknown", "unknown key"),
        ("gd-old", "expired at 2026-06-01"),
        ("gd-revoked", "revoked at 2026-11-01"),
    ],
)
def test_unknown_expired_and_revoked_keys_fail_even_with_a_backdated_modified(
    tmp_path: Path, key: str, expected: str
) -> None:
    from core.signing import generate

    w = world()
    signer = generate("Ed25519", "gd-not-listed") if key == "unknown" else w.keys[key]
    # modified/created claim a time inside the key's validity: it must not help.
    backdated = indicator(
        GD, created="2026-03-01T00:00:00.000Z", modified="2026-03-01T00:00:00.000Z"
    )
    obj = sigs.sign(backdated, signer)
    code, out = run(tmp_path, w, bundle(obj))
    assert code == 1 and expected in out


def test_a_revoked_key_still_verifies_what_was_received_before_the_revocation(
    tmp_path: Path,
) -> None:
    w = world()
    obj = sigs.sign(indicator(GD), w.keys["gd-revoked"])
    source = tmp_path / "input.json"
    source.write_text(bundle(obj))
    before = format_time(REVOKED_AT.replace(day=1, month=10))
    result = CliRunner().invoke(
        app, ["verify", str(source), *w.write(tmp_path), "--received-at", before]
    )
    assert result.exit_code == 0, result.output
    assert EXPIRED_AT < REVOKED_AT


# ---------------------------------------------------------------- what the parser must refuse


def test_duplicate_json_keys_fail_that_object_only(tmp_path: Path) -> None:
    w = world()
    good = signed("Ed25519", w)
    dup = signed("Ed25519", w, id="indicator--0b7c5e1a-3f2d-4c8b-9a6e-5d4c3b2a1f00")
    text = bundle(good, dup)
    # The signed confidence (85) appears last: a last-wins parser would verify it,
    # a first-wins reader would act on 5.
    marker = '"id": "indicator--0b7c5e1a-3f2d-4c8b-9a6e-5d4c3b2a1f00"'
    text = text.replace(marker, '"confidence": 5, ' + marker)
    code, out = run(tmp_path, w, text)
    assert code == 1
    assert "duplicate member name(s) /confidence" in out
    assert out.count("VERIFIED") == 1


def test_an_integer_beyond_2_53_fails(tmp_path: Path) -> None:
    w = world()
    obj = signed("Ed25519", w)
    text = bundle(obj).replace('"confidence": 85', '"confidence": 9007199254740993')
    code, out = run(tmp_path, w, text)
    assert code == 1 and "2^53" in out


# ---------------------------------------------------------------- what must still verify


def test_key_order_whitespace_and_escapes_changed_by_a_reserialiser_still_verify(
    tmp_path: Path,
) -> None:
    w = world()
    obj = signed("ES256", w)
    reordered = dict(reversed(list(obj.items())))
    text = json.dumps(
        {
            "type": "bundle",
            "id": "bundle--5d0f8a1e-2b3c-4d5e-8f60-718293a4b5c6",
            "objects": [reordered],
        },
        ensure_ascii=True,
        indent=7,
    )
    assert "\\u7db2" in text
    code, out = run(tmp_path, w, text)
    assert code == 0, out
    assert "1 verified, 0 failed, 0 unsigned" in out


def test_a_chain_gd_sm2_then_hk_countersignature_prints_every_link(tmp_path: Path) -> None:
    w = world()
    origin = signed("SM2SM3", w)
    chained = sigs.countersign(origin, w.keys["hk-ed"], HK, NOW, custody="custodial")
    envelope = json.dumps({"more": False, "objects": [chained]})
    code, out = run(tmp_path, w, envelope)
    assert code == 0, out
    assert "origin" in out and "countersignature" in out
    assert "gd-cac-sm2-2026" in out and "hk-govcert-ed-2026" in out and "custodial" in out


def test_a_raised_marking_travels_in_a_signed_note(tmp_path: Path) -> None:
    w = world()
    obj = signed("SM2SM3", w)
    note = sigs.sign(
        sigs.marking_note(
            note_id="note--7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            object_ids=[obj["id"]],
            created_by_ref=HK,
            created=NOW,
            tlp="red",
            content="HK re-shares this only as TLP:RED",
        ),
        w.keys["hk-ed"],
    )
    code, out = run(tmp_path, w, bundle(obj, note))
    assert code == 0, out
    assert "effective TLP red" in out
    assert note["object_marking_refs"] == [TLP2_RED]


# ---------------------------------------------------------------- as a partner runs it


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_installed_command_verifies_a_url_and_exits_non_zero_on_failure(
    tmp_path: Path, served: str
) -> None:
    w = world()
    options = w.write(tmp_path)
    # Trust lists by URL too, as they will be published at a well-known URL.
    options = [
        f"{served}/{Path(o).name}" if o.startswith(str(tmp_path)) and "trust-" in o else o
        for o in options
    ]
    good, bad = signed("Ed25519", w), signed("Ed25519", w)
    bad["confidence"] = 1
    (tmp_path / "good.json").write_text(bundle(good))
    (tmp_path / "bad.json").write_text(bundle(bad))
    command = [sys.executable, "-m", "threatbay.cli", "verify"]
    ok = subprocess.run(
        [*command, f"{served}/good.json", *options, "--received-at", RECEIVED],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout
    failed = subprocess.run(
        [*command, f"{served}/bad.json", *options, "--received-at", RECEIVED, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stdout + failed.stderr
    report = json.loads(failed.stdout)
    assert report["objects"][0]["status"] == "failed"
    assert "does not match the content" in report["objects"][0]["reason"]


def test_operators_make_keys_issue_a_list_sign_and_a_partner_verifies(tmp_path: Path) -> None:
    """keygen (root, agency) → trust issue → trust sign → countersign → verify, all by command."""
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    root_public = json.loads(
        ok(
            "trust",
            "keygen",
            "--alg",
            "Ed25519",
            "--kid",
            "root-gd",
            "--out",
            str(tmp_path / "root.jwk"),
        )
    )
    assert (tmp_path / "root.jwk").stat().st_mode & 0o077 == 0
    gd_entry = json.loads(
        ok(
            "trust",
            "keygen",
            "--alg",
            "SM2SM3",
            "--kid",
            "gd-1",
            "--out",
            str(tmp_path / "gd.jwk"),
            "--agency",
            GD,
        )
    )
    hk_entry = json.loads(
        ok(
            "trust",
            "keygen",
            "--alg",
            "ES256",
            "--kid",
            "hk-1",
            "--out",
            str(tmp_path / "hk.jwk"),
            "--agency",
            HK,
            "--custody",
            "custodial",
        )
    )
    (tmp_path / "keys.json").write_text(json.dumps([gd_entry, hk_entry]))
    (tmp_path / "roots.json").write_text(json.dumps({"GD": [root_public]}))
    ok(
        "trust",
        "issue",
        "--jurisdiction",
        "GD",
        "--root",
        str(tmp_path / "root.jwk"),
        "--keys",
        str(tmp_path / "keys.json"),
        "--sequence",
        "1",
        "--out",
        str(tmp_path / "gd-list.json"),
    )
    (tmp_path / "bundle.json").write_text(bundle(indicator(GD)))
    ok(
        "trust",
        "sign",
        str(tmp_path / "bundle.json"),
        "--key",
        str(tmp_path / "gd.jwk"),
        "--out",
        str(tmp_path / "signed.json"),
    )
    ok(
        "trust",
        "sign",
        str(tmp_path / "signed.json"),
        "--key",
        str(tmp_path / "hk.jwk"),
        "--out",
        str(tmp_path / "shared.json"),
        "--countersign-as",
        HK,
    )
    out = ok(
        "verify",
        str(tmp_path / "shared.json"),
        "--roots",
        str(tmp_path / "roots.json"),
        "--trust-list",
        str(tmp_path / "gd-list.json"),
    )
    assert "VERIFIED" in out and "gd-1 SM2SM3" in out and "hk-1 ES256 custodial" in out
    again = runner.invoke(
        app,
        ["trust", "keygen", "--alg", "Ed25519", "--kid", "x", "--out", str(tmp_path / "root.jwk")],
    )
    assert again.exit_code == 2 and "not overwriting" in again.output


def test_a_manifest_embedded_in_the_bundle_is_checked(tmp_path: Path) -> None:
    w = world()
    a = signed("Ed25519", w)
    b = signed("ES256", w, id="indicator--0b7c5e1a-3f2d-4c8b-9a6e-5d4c3b2a1f00")
    manifest = build_manifest(
        [a, b], w.keys["platform"], issuer=w_platform(), issued=NOW, scope="export"
    )
    document = json.loads(bundle(a))
    document["x_threatbay_manifest"] = manifest
    code, out = run(tmp_path, w, json.dumps(document))
    assert code == 1 and f"missing {b['id']}" in out and "manifest by" in out
    document["objects"].append(b)
    code, out = run(tmp_path, w, json.dumps(document))
    assert code == 0 and "manifest matches" in out


def test_a_container_with_duplicate_members_fails_even_if_every_object_verifies(
    tmp_path: Path,
) -> None:
    w = world()
    text = bundle(signed("Ed25519", w))
    text = text.replace('"objects": [', '"objects": [], "objects": [', 1)
    code, out = run(tmp_path, w, text)
    assert code == 1 and "duplicate member 'objects' in the container" in out


def test_a_trust_list_signed_by_the_wrong_root_makes_the_run_unusable(tmp_path: Path) -> None:
    w = world()
    w.roots["GD"] = w.roots["HK"]  # the verifier pins HK's root as GD's
    code, out = run(tmp_path, w, bundle(signed("Ed25519", w)))
    assert code == 2 and "trust list GD" in out and "not a root pinned for GD" in out


def test_verify_takes_roots_and_trust_lists_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world()
    options = w.write(tmp_path)
    lists = {j: str(tmp_path / f"trust-{j}.json") for j in w.lists}
    monkeypatch.setenv("THREATBAY_SIGNING__ROOTS_FILE", options[1])
    monkeypatch.setenv("THREATBAY_SIGNING__TRUST_LISTS", json.dumps(lists))
    (tmp_path / "input.json").write_text(bundle(signed("SM2SM3", w)))
    result = CliRunner().invoke(
        app, ["verify", str(tmp_path / "input.json"), "--received-at", RECEIVED]
    )
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("THREATBAY_SIGNING__ALGORITHMS", '["Ed25519", "ES256"]')
    result = CliRunner().invoke(
        app, ["verify", str(tmp_path / "input.json"), "--received-at", RECEIVED]
    )
    assert result.exit_code == 1 and "not in the allow-list" in result.output


def test_one_object_and_a_plain_array_are_inputs_too(tmp_path: Path) -> None:
    w = world()
    obj = signed("ES256", w)
    code, out = run(tmp_path, w, json.dumps(obj))
    assert code == 0 and "1 objects: 1 verified" in out
    bad = copy.deepcopy(obj)
    bad["pattern"] = "[ipv4-addr:value = '10.0.0.1']"
    code, out = run(tmp_path, w, json.dumps([obj, bad]))
    assert code == 1 and "2 objects: 1 verified, 1 failed" in out
