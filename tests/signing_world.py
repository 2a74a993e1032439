"""A small three-jurisdiction world of roots, trust lists, agency keys and signed objects.

Shared by the trusted-data tests (unit, CLI, README verifier). Keys are made
fresh per process; times are fixed so expiry and revocation are exact.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from core import object_signatures as sigs
from core.alerts import PLATFORM_IDENTITY
from core.markings import TLP2_AMBER, TLP2_GREEN
from core.signing import ALGORITHMS, Algorithm, SigningKey, generate
from core.trust import TrustStore, issue, key_entry, pinned_roots, verify_trust_list

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 12, 31, tzinfo=UTC)
REVOKED_AT = datetime(2026, 11, 1, tzinfo=UTC)
EXPIRED_AT = datetime(2026, 6, 1, tzinfo=UTC)

GD = "identity--0d3f1c59-7c2a-5b8e-9a41-6f2e8d1c0a01"
HK = "identity--1e4a2d6a-8d3b-5c9f-8b52-7a3f9e2d1b02"
MO = "identity--2f5b3e7b-9e4c-5daf-9c63-8b4a0f3e2c03"
OTHER_GD = "identity--3a6c4f8c-af5d-5eb0-8d74-9c5b1a4f3d04"
ALLOWED = ALGORITHMS


@dataclass
class World:
    roots: dict[str, SigningKey]
    keys: dict[str, SigningKey]
    lists: dict[str, dict[str, Any]]
    identity_jurisdictions: dict[str, str] = field(default_factory=dict)

    def roots_config(self) -> dict[str, list[dict[str, str]]]:
        return {j: [dict(k.public.jwk)] for j, k in self.roots.items()}

    def trust(self, now: datetime = NOW, pin: bool = True) -> TrustStore:
        roots = pinned_roots(self.roots_config())
        lists = [verify_trust_list(doc, roots, ALLOWED, now) for doc in self.lists.values()]
        return TrustStore(lists, self.identity_jurisdictions if pin else None)

    def write(self, directory: Path) -> list[str]:
        """roots.json and <J>.json files; returns CLI options naming them."""
        (directory / "roots.json").write_text(json.dumps(self.roots_config()))
        options = ["--roots", str(directory / "roots.json")]
        for jurisdiction, document in self.lists.items():
            path = directory / f"trust-{jurisdiction}.json"
            path.write_text(json.dumps(document))
            options += ["--trust-list", str(path)]
        return options


def _entry(
    key: SigningKey, agency: str, custody: str = "agency", **times: datetime
) -> dict[str, Any]:
    return key_entry(
        key.public,
        agency=agency,
        not_before=times.get("not_before", YEAR_START),
        not_after=times.get("not_after", YEAR_END),
        revoked_at=times.get("revoked_at"),
        custody=custody,  # type: ignore[arg-type]
    )


@cache
def _base_world() -> World:
    roots = {j: generate("Ed25519", f"root-{j.lower()}-2026") for j in ("GD", "HK", "MO")}
    keys = {
        "gd-sm2": generate("SM2SM3", "gd-cac-sm2-2026"),
        "gd-old": generate("Ed25519", "gd-cac-ed-2025"),
        "gd-revoked": generate("ES256", "gd-cac-es-revoked"),
        "gd-other": generate("Ed25519", "gd-cncert-ed-2026"),
        "hk-ed": generate("Ed25519", "hk-govcert-ed-2026"),
        "hk-rogue": generate("Ed25519", "hk-claims-gd-2026"),
        "mo-es": generate("ES256", "mo-caric-es-2026"),
        "platform": generate("Ed25519", "threatbay-hk-platform-2026"),
    }
    gd_keys = [
        _entry(keys["gd-sm2"], GD),
        _entry(
            keys["gd-old"], GD, not_before=datetime(2025, 1, 1, tzinfo=UTC), not_after=EXPIRED_AT
        ),
        _entry(keys["gd-revoked"], GD, revoked_at=REVOKED_AT),
        _entry(keys["gd-other"], OTHER_GD),
    ]
    hk_keys = [
        _entry(keys["hk-ed"], HK, custody="custodial"),
        _entry(keys["platform"], PLATFORM_IDENTITY, custody="custodial"),
    ]
    mo_keys = [_entry(keys["mo-es"], MO)]
    lists = {
        j: issue(
            j,
            ks,
            roots[j],
            sequence=3,
            issued=NOW - timedelta(days=1),
            expires=NOW + timedelta(days=3650),
        )
        for j, ks in (("GD", gd_keys), ("HK", hk_keys), ("MO", mo_keys))
    }
    return World(
        roots=roots,
        keys=keys,
        lists=lists,
        identity_jurisdictions={
            GD: "GD",
            OTHER_GD: "GD",
            HK: "HK",
            MO: "MO",
            PLATFORM_IDENTITY: "HK",
        },
    )


def world() -> World:
    """The shared world (keys are generated once per test process)."""
    base = _base_world()
    return World(
        dict(base.roots),
        dict(base.keys),
        copy.deepcopy(base.lists),
        dict(base.identity_jurisdictions),
    )


def with_rogue_hk_list(w: World) -> World:
    """HK's root re-issues its list with a key naming a GD agency (it must not sign for GD)."""
    keys = [*w.lists["HK"]["keys"], _entry(w.keys["hk-rogue"], GD)]
    w.lists["HK"] = issue(
        "HK", keys, w.roots["HK"], sequence=4, issued=NOW - timedelta(hours=1),
        expires=NOW + timedelta(days=3650),
    )  # fmt: skip
    return w


def indicator(creator: str = GD, **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-11-30T09:00:00.000Z",
        "modified": "2026-11-30T09:00:00.000Z",
        "created_by_ref": creator,
        "name": "粵港澳 C2 節點 (Traditional) / café",
        "description": "網絡攻擊基礎設施 — C2 server seen by GD; 1.0 and \u2028 kept",
        "pattern": "[ipv4-addr:value = '203.0.113.7']",
        "pattern_type": "stix",
        "valid_from": "2026-11-30T09:00:00Z",
        "confidence": 85,
        "labels": ["malicious-activity"],
        "object_marking_refs": [TLP2_AMBER],
        "granular_markings": [{"marking_ref": TLP2_GREEN, "selectors": ["name"]}],
    }
    obj.update(overrides)
    return obj


def key_for(alg: Algorithm) -> tuple[str, str]:
    """(world key name, creator identity) of a valid key for ``alg``."""
    return {"SM2SM3": ("gd-sm2", GD), "Ed25519": ("hk-ed", HK), "ES256": ("mo-es", MO)}[alg]


def signed(alg: Algorithm = "Ed25519", w: World | None = None, **overrides: Any) -> dict[str, Any]:
    w = w or world()
    name, creator = key_for(alg)
    return sigs.sign(indicator(creator, **overrides), w.keys[name])
