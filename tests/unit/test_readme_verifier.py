"""The standalone verifier printed in README "Trusted data" works, exactly as printed.

The block between the ``standalone-verifier`` markers is written to a file and
run in a separate interpreter on objects ThreatBay signed: it must accept the
honest ones (all three algorithms, re-serialised) and refuse the attacks.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core import object_signatures as sigs
from core.jcs import b64url
from tests.signing_world import GD, HK, MO, NOW, indicator, signed, world

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- standalone-verifier:begin -->\n```python\n(.*?)```\n"
        r"<!-- standalone-verifier:end -->",
        text,
        re.DOTALL,
    )
    assert match, "README has no standalone verifier block"
    return match.group(1)


def test_the_snippet_imports_only_the_three_libraries_and_the_standard_library() -> None:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(snippet())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules == {"base64", "json", "sys", "datetime", "gmalg", "rfc8785", "cryptography"}


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("partner") / "verify_standalone.py"
    path.write_text(snippet(), encoding="utf-8")
    return path


def run(
    script: Path, tmp: Path, obj: Any, jurisdiction: str, text: str | None = None
) -> tuple[int, str]:
    w = world()
    (tmp / "root.json").write_text(json.dumps(dict(w.roots[jurisdiction].public.jwk)))
    (tmp / "list.json").write_text(json.dumps(w.lists[jurisdiction]))
    (tmp / "object.json").write_text(text if text is not None else json.dumps(obj))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp / "root.json"), str(tmp / "list.json"),
         str(tmp / "object.json"), "2026-12-01T08:00:00Z"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("alg", "jurisdiction"), [("SM2SM3", "GD"), ("Ed25519", "HK"), ("ES256", "MO")]
)
def test_the_partner_verifier_accepts_honest_objects_even_reserialised(
    script: Path, tmp_path: Path, alg: str, jurisdiction: str
) -> None:
    obj = signed(alg)  # type: ignore[arg-type]
    text = json.dumps(dict(reversed(list(obj.items()))), ensure_ascii=True, indent=2)
    code, out = run(script, tmp_path, obj, jurisdiction, text)
    assert code == 0, out
    assert f"verified: {obj['id']}" in out and alg in out


def _hs256(obj: dict[str, Any], secret: bytes) -> dict[str, Any]:
    import hashlib
    import hmac

    header = b64url(b'{"alg":"HS256","kid":"hk-govcert-ed-2026","typ":"threatbay-object+jcs"}')
    mac = hmac.new(
        secret, (header + "." + b64url(sigs.object_payload(obj))).encode(), hashlib.sha256
    )
    out = copy.deepcopy(obj)
    out["extensions"] = {sigs.TRUSTED_DATA_EXTENSION: {
        "extension_type": "property-extension",
        "signatures": [{"role": "origin", "jws": header + ".." + b64url(mac.digest())}],
    }}  # fmt: skip
    return out


def test_the_partner_verifier_refuses_the_attacks(script: Path, tmp_path: Path) -> None:
    w = world()
    good = signed("Ed25519", w)
    tampered = copy.deepcopy(good)
    tampered["object_marking_refs"] = ["marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]
    stripped = copy.deepcopy(good)
    del stripped["extensions"]
    wrong_agency = sigs.sign(indicator(MO), w.keys["hk-ed"])
    from base64 import urlsafe_b64decode

    public = urlsafe_b64decode(w.keys["hk-ed"].public.jwk["x"] + "=")
    c85 = '"confidence": 85'
    cases = {
        "tampered TLP": (tampered, None, "bad signature"),
        "stripped": (stripped, None, "unsigned"),
        "other agency": (wrong_agency, None, "another agency"),
        "HS256 with the public key": (_hs256(indicator(HK), public), None, "wrong key or alg"),
        "duplicate member": (good, json.dumps(good).replace(c85, '"confidence": 5, ' + c85), "dup"),
    }  # fmt: skip
    for name, (obj, text, reason) in cases.items():
        code, out = run(script, tmp_path, obj, "HK", text)
        assert code == 1 and reason in out, f"{name}: {out}"
    revoked = sigs.sign(indicator(GD), w.keys["gd-revoked"])
    code, out = run(script, tmp_path, revoked, "GD")
    assert code == 1 and "revoked" in out
    assert NOW.year == 2026
