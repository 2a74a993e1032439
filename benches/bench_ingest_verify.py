"""Ingest throughput with signature verification on, as a ratio to off, per algorithm.

What is timed is the TAXII inbox's work after the body is read, for envelopes of
``--batch`` ~1 KB indicators: ``orjson.loads`` of the body, locating each
object's text and the duplicate-aware parse (ingest/signed.py
``received_objects``), admission (validation, identities, markings) with the
signature check, and one publish to the embedded bus (SQLite, fsync as
configured). "on": the objects carry an origin signature of the algorithm and
are verified against a trust list; "off": the same objects unsigned, so the
inbox does what it did before signatures (no second parse, no check). Same
process, same run, alternating on/off rounds; medians of ``--rounds``.

Run: .venv/bin/python benches/bench_ingest_verify.py [--rounds 3] [--n 400] [--n-sm2 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.embedded_bus import EmbeddedBus  # noqa: E402
from core import object_signatures as sigs  # noqa: E402
from core.access import Agency, Principal  # noqa: E402
from core.clock import FakeClock  # noqa: E402
from core.signing import ALGORITHMS, generate  # noqa: E402
from core.trust import TrustStore, issue, key_entry, pinned_roots, verify_trust_list  # noqa: E402
from ingest.push import Admission, push_objects  # noqa: E402
from ingest.signed import received_objects  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
IDENTITY = "identity--0d3f1c59-7c2a-5b8e-9a41-6f2e8d1c0a01"
AGENCY = Agency("gd-cac", "Guangdong CAC", "GD", IDENTITY, "B")


def indicator(i: int) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--8e2e2d2b-17d4-4cbf-938f-{i:012x}",
        "created": "2026-11-30T09:00:00.000Z",
        "modified": "2026-11-30T09:00:00.000Z",
        "created_by_ref": IDENTITY,
        "name": f"C2 node {i} 粵港澳",
        "description": "Command-and-control server seen by several agencies; " * 8,
        "pattern": f"[ipv4-addr:value = '203.0.{i % 256}.{i // 256 % 256}']",
        "pattern_type": "stix",
        "valid_from": "2026-11-30T09:00:00Z",
        "confidence": 85,
        "labels": ["malicious-activity"],
        "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
    }


def trust_for(keys: dict[str, Any]) -> TrustStore:
    root = generate("Ed25519", "root-gd")
    entries = [
        key_entry(k.public, agency=IDENTITY, not_before=NOW - timedelta(days=1),
                  not_after=NOW + timedelta(days=365), custody="agency")
        for k in keys.values()
    ]  # fmt: skip
    document = issue("GD", entries, root, sequence=1, issued=NOW, expires=NOW + timedelta(days=9))
    roots = pinned_roots({"GD": [dict(root.public.jwk)]})
    return TrustStore([verify_trust_list(document, roots, ALGORITHMS, NOW)], {IDENTITY: "GD"})


def ingest(bodies: list[bytes], admission: Admission, bus: EmbeddedBus) -> float:
    """Objects per second over ``bodies``; every object must be accepted."""
    principal = Principal(AGENCY, frozenset({"publisher"}))
    clock = FakeClock(NOW)
    count = 0
    start = time.perf_counter()
    for body in bodies:
        objects = orjson.loads(body)["objects"]
        received = received_objects(body, objects)
        result = push_objects(
            principal, objects, bus, clock, admission, received=received, from_inbox=True
        )
        assert not result.failures, result.failures[:1]
        count += len(result.successes)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--n-sm2", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()

    keys = {alg: generate(alg, f"gd-{alg}") for alg in ALGORITHMS}
    trust = trust_for(keys)
    with tempfile.TemporaryDirectory() as tmp:
        bus = EmbeddedBus(str(Path(tmp) / "bus.db"))
        print(f"{'alg':<8} {'n':>5} {'off obj/s':>10} {'on obj/s':>10} {'on/off':>7}")
        for alg in ALGORITHMS:
            n = args.n_sm2 if alg == "SM2SM3" else args.n
            batch = min(args.batch, n)
            plain = [indicator(i) for i in range(n)]
            signed = [sigs.sign(o, keys[alg]) for o in plain]

            def bodies(objs: list[dict[str, Any]], size: int = batch) -> list[bytes]:
                return [
                    orjson.dumps({"objects": objs[i : i + size]}) for i in range(0, len(objs), size)
                ]

            off, on = [], []
            for _ in range(args.rounds):
                off.append(ingest(bodies(plain), Admission({}), bus))
                on.append(ingest(bodies(signed), Admission({}, trust=trust), bus))
            off_m, on_m = statistics.median(off), statistics.median(on)
            print(f"{alg:<8} {n:>5} {off_m:>10.0f} {on_m:>10.0f} {on_m / off_m:>7.2f}")
        bus.close()


if __name__ == "__main__":
    main()
