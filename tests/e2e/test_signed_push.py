"""Signed objects through the TAXII inbox (issue #24 phase 2): verified before they are
accepted, each failure answered per object in the TAXII status, stored and served
byte-for-byte as received, and their verification shown on the indicator record.

Every attack of the issue is pushed over HTTP through the ASGI app with an honest
neighbour in the same envelope: the attacked object fails with its reason, the
neighbour is accepted. The same attacks through ``threatbay verify`` are in
tests/e2e/test_verify_cli.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from core import names
from core import object_signatures as sigs
from core.access import Agency
from core.clock import FakeClock
from core.jcs import b64url, b64url_decode
from core.ports import Consumer
from core.signing import TYP_OBJECT, generate
from core.trust import format_time
from correlate.worker import Correlator
from records.agencies import AgencyRegistry
from tests.e2e.conftest import TAXII, Key, embedded_or_real
from tests.e2e.test_verify_cli import CONTENT_ATTACKS, forged_header
from tests.signing_world import (
    GD,
    HK,
    MO,
    NOW,
    World,
    indicator,
    signed,
    with_rogue_hk_list,
    world,
)
from threatbay.bootstrap import Services, correlator_for
from threatbay.cli import app as cli_app

EXT = sigs.TRUSTED_DATA_EXTENSION
OTHER_ID = "indicator--4f1d2c3b-5a6e-4b7c-8d9e-0a1b2c3d4e5f"
AGENCIES = {
    "gd": Agency("gd-cac", "Guangdong CAC", "GD", GD, "B"),
    "hk": Agency("hk-govcert", "GovCERT.HK", "HK", HK, "A"),
    "mo": Agency("mo-caric", "CARIC", "MO", MO, "B"),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def w() -> World:
    return world()


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock, w: World) -> Iterator[Services]:
    from core.settings import Settings
    from threatbay.bootstrap import build

    svc = build(Settings(data_dir=tmp_path), clock=clock)
    svc.trust = w.trust()
    yield svc
    svc.close()


def register(services: Services) -> dict[str, Key]:
    registry = AgencyRegistry(services.store, services.clock)
    out: dict[str, Key] = {}
    for name, agency in AGENCIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        out[name] = Key(agency, cred.key_id, secret)
    return out


@pytest.fixture
def keys(services: Services) -> dict[str, Key]:
    return register(services)


@pytest.fixture
def client(services: Services, keys: dict[str, Key]) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


def push_text(client: TestClient, key: Key, text: str) -> dict[str, Any]:
    response = client.post(key.inbox + "objects/", headers=key.post, content=text.encode())
    assert response.status_code == 202, response.text
    status: dict[str, Any] = response.json()
    return status


def envelope_text(*objects: dict[str, Any]) -> str:
    return json.dumps({"objects": list(objects)}, ensure_ascii=False)


def outcome(status: dict[str, Any], stix_id: str) -> tuple[bool, str]:
    """(accepted?, message) of ``stix_id`` in a TAXII status."""
    for entry in status.get("successes", []):
        if entry["id"] == stix_id:
            return True, entry.get("message", "")
    for entry in status.get("failures", []):
        if entry["id"] == stix_id:
            return False, str(entry.get("message", ""))
    raise AssertionError(f"{stix_id} not in the status {status}")


def honest(w: World) -> dict[str, Any]:
    return signed("Ed25519", w, id=OTHER_ID)


def pushed_with_neighbour(
    client: TestClient, key: Key, attacked: dict[str, Any] | str, w: World
) -> tuple[bool, str]:
    """Push ``attacked`` next to an honest signed object; the neighbour must be accepted."""
    text = attacked if isinstance(attacked, str) else envelope_text(honest(w), attacked)
    status = push_text(client, key, text)
    assert outcome(status, OTHER_ID) == (True, ""), status
    stix_id = json.loads(text)["objects"][-1]["id"]
    return outcome(status, stix_id)


def drain_correlator(services: Services) -> Callable[[], int]:
    worker: Correlator = correlator_for(services)
    consumer: Consumer = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)

    def run() -> int:
        n = worker.drain(consumer)
        services.store.refresh(names.INDEX_INDICATORS)
        services.store.refresh(names.INDEX_OBJECTS)
        return n

    return run


# ---------------------------------------------------------------- attacks on the content


@pytest.mark.parametrize("attack", sorted(CONTENT_ATTACKS))
def test_a_tampered_field_is_refused_at_the_inbox(
    client: TestClient, keys: dict[str, Key], w: World, attack: str
) -> None:
    obj = signed("Ed25519", w)
    CONTENT_ATTACKS[attack](obj)
    ok, message = pushed_with_neighbour(client, keys["hk"], obj, w)
    assert not ok
    assert "signature" in message and "does not match the content" in message


def test_an_sm2_object_tampered_is_refused_and_untouched_accepted(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    good = signed("SM2SM3", w)
    bad = signed("SM2SM3", w, id="indicator--9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    bad["confidence"] = 10
    status = push_text(client, keys["gd"], envelope_text(good, bad))
    assert outcome(status, good["id"]) == (True, "")
    ok, message = outcome(status, bad["id"])
    assert not ok and "SM2SM3 signature by 'gd-cac-sm2-2026' does not match" in message


def test_a_signature_moved_to_another_object_or_version_is_refused(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    source = signed("Ed25519", w)
    entries = source["extensions"][EXT]["signatures"]
    moved_object = indicator(HK, id="indicator--7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b")
    moved_object["extensions"] = {
        EXT: {"extension_type": "property-extension", "signatures": entries}
    }
    moved_version = indicator(HK, modified="2026-11-30T10:00:00.000Z")
    moved_version["extensions"] = copy.deepcopy(moved_object["extensions"])
    for obj in (moved_object, moved_version):
        ok, message = pushed_with_neighbour(client, keys["hk"], obj, w)
        assert not ok and "does not match the content" in message


# ---------------------------------------------------------------- attacks on the signer


def test_a_key_of_agency_x_on_an_object_of_agency_y_is_refused(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    obj = sigs.sign(indicator(HK), w.keys["mo-es"])
    ok, message = pushed_with_neighbour(client, keys["hk"], obj, w)
    assert not ok and f"belongs to {MO}, not to {HK}" in message


def test_a_kid_of_another_jurisdiction_cannot_sign_for_this_one(
    services: Services, client: TestClient, keys: dict[str, Key], w: World
) -> None:
    services.trust = with_rogue_hk_list(w).trust()
    obj = sigs.sign(indicator(GD), w.keys["hk-rogue"])
    status = push_text(client, keys["gd"], envelope_text(obj))
    ok, message = outcome(status, obj["id"])
    assert not ok and "a list speaks only for its own jurisdiction" in message


def test_alg_none_hs256_and_b64_false_without_crit_are_refused(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    import hashlib
    import hmac

    none = forged_header(
        signed("Ed25519", w), {"alg": "none", "kid": "hk-govcert-ed-2026", "typ": TYP_OBJECT}
    )
    ok, message = pushed_with_neighbour(client, keys["hk"], none, w)
    assert not ok and "alg 'none' is refused" in message

    hs = indicator(HK)
    header = b64url(
        json.dumps({"alg": "HS256", "kid": "hk-govcert-ed-2026", "typ": TYP_OBJECT}).encode()
    )
    secret = b64url_decode(w.keys["hk-ed"].public.jwk["x"])
    mac = hmac.new(secret, (header + "." + b64url(sigs.object_payload(hs))).encode(), "sha256")
    assert mac.digest_size == hashlib.sha256().digest_size
    hs["extensions"] = {
        EXT: {
            "extension_type": "property-extension",
            "signatures": [{"role": "origin", "jws": header + ".." + b64url(mac.digest())}],
        }
    }
    ok, message = pushed_with_neighbour(client, keys["hk"], hs, w)
    assert not ok and "(HMAC) is refused" in message

    unencoded = indicator(HK)
    header = b64url(
        json.dumps(
            {"alg": "Ed25519", "kid": "hk-govcert-ed-2026", "typ": TYP_OBJECT, "b64": False}
        ).encode()
    )
    signature = w.keys["hk-ed"].sign((header + ".").encode() + sigs.object_payload(unencoded))
    unencoded["extensions"] = {
        EXT: {
            "extension_type": "property-extension",
            "signatures": [{"role": "origin", "jws": header + ".." + b64url(signature)}],
        }
    }
    ok, message = pushed_with_neighbour(client, keys["hk"], unencoded, w)
    assert not ok and "without 'crit'" in message


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("unknown", "unknown key"),
        ("gd-old", "expired at 2026-06-01"),
        ("gd-revoked", "revoked at 2026-11-01"),
    ],
)
def test_unknown_expired_and_revoked_keys_are_refused_even_with_a_backdated_modified(
    client: TestClient, keys: dict[str, Key], w: World, key: str, expected: str
) -> None:
    signer = generate("Ed25519", "gd-not-listed") if key == "unknown" else w.keys[key]
    backdated = indicator(
        GD, created="2026-03-01T00:00:00.000Z", modified="2026-03-01T00:00:00.000Z"
    )
    obj = sigs.sign(backdated, signer)
    status = push_text(client, keys["gd"], envelope_text(obj))
    ok, message = outcome(status, obj["id"])
    assert not ok and expected in message


# ---------------------------------------------------------------- stripped signatures


def test_a_stripped_signature_is_refused_where_the_agency_requires_signing(
    services: Services, client: TestClient, keys: dict[str, Key], w: World
) -> None:
    services.settings.signing.require_signed = ["hk-govcert"]
    stripped = sigs.unsigned_form(signed("Ed25519", w))
    emptied = signed("Ed25519", w, id="indicator--1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
    emptied["extensions"][EXT]["signatures"] = []
    flagged = indicator(HK, id="indicator--2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")
    flagged["extensions"] = {
        EXT: {"extension_type": "property-extension", "x_signature_optional": True}
    }
    flagged["x_threatbay_unsigned_ok"] = True
    for obj in (stripped, emptied, flagged):
        ok, message = pushed_with_neighbour(client, keys["hk"], obj, w)
        assert not ok and "hk-govcert requires signed objects" in message, message
    # MO does not require signatures: its unsigned object is accepted
    status = push_text(client, keys["mo"], envelope_text(indicator(MO)))
    assert status["success_count"] == 1


# ---------------------------------------------------------------- what the parser must catch


def test_duplicate_json_keys_on_the_raw_body_fail_that_object_only(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    dup = signed("Ed25519", w)
    text = envelope_text(honest(w), dup)
    # The signed confidence (85) comes last: orjson keeps it and would verify it; a
    # first-wins reader of the stored bytes would act on 5.
    marker = f'"id": "{dup["id"]}"'
    assert text.count(marker) == 1
    text = text.replace(marker, '"confidence": 5, ' + marker)
    ok, message = pushed_with_neighbour(client, keys["hk"], text, w)
    assert not ok and "duplicate member name(s) /confidence" in message


def test_an_integer_beyond_2_53_on_the_raw_body_is_refused(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    obj = signed("Ed25519", w, x_count=85)
    for big in ("9007199254740993", "18446744073709551617"):
        text = envelope_text(honest(w), obj).replace('"x_count": 85', f'"x_count": {big}')
        ok, message = pushed_with_neighbour(client, keys["hk"], text, w)
        assert not ok and "2^53" in message, message


# ---------------------------------------------------------------- what must still verify


def test_a_reserialised_object_is_accepted_and_served_as_received(
    client: TestClient, keys: dict[str, Key], w: World
) -> None:
    obj = signed("Ed25519", w)
    reordered = dict(reversed(list(obj.items())))
    # another serialiser: keys reversed, indented, every non-ASCII character \u-escaped
    raw = json.dumps(reordered, ensure_ascii=True, indent=3)
    status = push_text(client, keys["hk"], '{"objects": [\n' + raw + "\n]}")
    assert outcome(status, obj["id"]) == (True, "")


def _served(client: TestClient, key: Key, collection: str, stix_id: str) -> bytes:
    response = client.get(
        f"/taxii2/api/collections/{collection}/objects/{stix_id}/", headers=key.basic
    )
    assert response.status_code == 200, response.text
    return response.content


def verify_cli(tmp_path: Path, w: World, data: bytes) -> tuple[int, str]:
    source = tmp_path / "served.json"
    source.write_bytes(data)
    result = CliRunner().invoke(
        cli_app,
        ["verify", str(source), *w.write(tmp_path), "--received-at", format_time(NOW)],
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("alg", ["Ed25519", "ES256", "SM2SM3"])
def test_a_signed_object_is_served_byte_for_byte_and_verifies_with_the_command(
    services: Services,
    client: TestClient,
    keys: dict[str, Key],
    w: World,
    tmp_path: Path,
    alg: Any,
) -> None:
    obj = signed(alg, w, confidence=85, x_ratio=1.0, x_when="2026-11-30T09:00:00.000Z")
    raw = json.dumps(obj, ensure_ascii=False, indent=1)
    key = {"Ed25519": keys["hk"], "ES256": keys["mo"], "SM2SM3": keys["gd"]}[alg]
    status = push_text(client, key, '{"objects": [' + raw + "]}")
    assert outcome(status, obj["id"]) == (True, "")
    drain_correlator(services)()
    for collection in (f"inbox-{key.agency.id}", "shared-all"):
        served = _served(client, key, collection, obj["id"])
        assert raw.encode() in served
        code, out = verify_cli(tmp_path, w, served)
        assert code == 0 and "1 verified" in out, out


def test_a_view_redacted_for_a_reader_is_marked_not_verifiable(
    services: Services, client: TestClient, keys: dict[str, Key], w: World
) -> None:
    from core.markings import TLP2_GREEN

    obj = signed(
        "SM2SM3",
        w,
        object_marking_refs=[TLP2_GREEN],
        granular_markings=[],
        description="phishing sent to victim chan.tai.man@example.hk, phone +852 9123 4567",
    )
    status = push_text(client, keys["gd"], envelope_text(obj))
    assert outcome(status, obj["id"]) == (True, "")
    drain_correlator(services)()
    seen = json.loads(_served(client, keys["hk"], "shared-all", obj["id"]))["objects"][0]
    assert seen.get("description") != obj["description"]
    assert "redacted" in seen["x_threatbay_signature"]
    whole = json.loads(_served(client, keys["gd"], "shared-all", obj["id"]))["objects"][0]
    assert "x_threatbay_signature" not in whole


def test_a_replayed_older_version_never_hides_the_later_revocation(
    services: Services, client: TestClient, keys: dict[str, Key], w: World
) -> None:
    v1 = signed("Ed25519", w)
    v2 = signed("Ed25519", w, modified="2026-11-30T12:00:00.000Z", revoked=True)
    v2_text = json.dumps(v2, ensure_ascii=False)
    push_text(client, keys["hk"], envelope_text(v1))
    push_text(client, keys["hk"], '{"objects": [' + v2_text + "]}")
    status = push_text(client, keys["hk"], envelope_text(v1))  # the replay
    assert outcome(status, v1["id"])[0]
    drain_correlator(services)()
    served = _served(client, keys["hk"], "shared-all", v1["id"])
    assert v2_text.encode() in served


def test_the_record_shows_who_signed_each_source(
    services: Services, client: TestClient, keys: dict[str, Key], w: World
) -> None:
    from core.markings import TLP2_GREEN

    obj = signed("SM2SM3", w, object_marking_refs=[TLP2_GREEN], granular_markings=[])
    push_text(client, keys["gd"], envelope_text(obj))
    unsigned = indicator(MO, id="indicator--5c4b3a29-1807-4f6e-8d5c-4b3a29180700")
    unsigned["object_marking_refs"] = [TLP2_GREEN]
    unsigned.pop("granular_markings")
    push_text(client, keys["mo"], envelope_text(unsigned))
    drain_correlator(services)()
    key = "ipv4-addr|value|203.0.113.7"
    from core.access import bearer_token

    auth = {"Authorization": f"Bearer {bearer_token(keys['hk'].key_id, keys['hk'].secret)}"}
    response = client.get(f"/api/v1/indicators/{key}", headers=auth)
    assert response.status_code == 200, response.text
    sources = {s["agency"]: s for s in response.json()["sources"]}
    assert sources["gd-cac"]["verified"] is True
    assert sources["gd-cac"]["signed_by"] == GD
    assert sources["gd-cac"]["signature"]["alg"] == "SM2SM3"
    assert "verified" not in sources["mo-caric"]


# ---------------------------------------------------------------- both backends


@pytest.fixture(params=["embedded", "real"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, w: World
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "signed-push") as svc:
        svc.trust = w.trust()
        yield svc


def test_signed_push_and_byte_for_byte_read_on_each_backend(
    backends: Services, w: World, tmp_path: Path
) -> None:
    keys = register(backends)
    good = signed("SM2SM3", w)
    bad = signed("SM2SM3", w, id="indicator--9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    bad["pattern"] = "[ipv4-addr:value = '198.51.100.1']"
    raw = json.dumps(good, ensure_ascii=False, indent=2)
    with TestClient(create_app(backends)) as client:
        status = push_text(
            client, keys["gd"], '{"objects": [' + raw + ", " + json.dumps(bad) + "]}"
        )
        assert outcome(status, good["id"]) == (True, "")
        assert not outcome(status, bad["id"])[0]
        drain_correlator(backends)()
        served = _served(client, keys["gd"], "inbox-gd-cac", good["id"])
    assert raw.encode() in served
    assert verify_cli(tmp_path, w, served)[0] == 0
    assert TAXII


# ---------------------------------------------------------------- start-up wiring


def test_a_deployment_loads_its_trust_lists_at_start_and_refuses_a_bad_one(
    tmp_path: Path, w: World
) -> None:
    import pytest as _pytest

    from core.errors import ConfigurationError
    from core.settings import Settings, SigningSettings
    from threatbay.bootstrap import build

    options = w.write(tmp_path)
    lists = {Path(p).stem.removeprefix("trust-"): p for p in options[3::2]}
    signing = SigningSettings(roots_file=Path(options[1]), trust_lists=lists)
    svc = build(Settings(data_dir=tmp_path / "ok", signing=signing), clock=FakeClock(NOW))
    try:
        assert svc.trust is not None and sorted(svc.trust.lists) == ["GD", "HK", "MO"]
    finally:
        svc.close()
    tampered = json.loads(Path(lists["GD"]).read_text())
    tampered["keys"][0]["agency"] = HK
    Path(lists["GD"]).write_text(json.dumps(tampered))
    with _pytest.raises(ConfigurationError, match="trust list GD"):
        build(Settings(data_dir=tmp_path / "bad", signing=signing), clock=FakeClock(NOW))
