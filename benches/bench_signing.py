"""µs per object to sign and to verify, per algorithm (Ed25519, ES256, SM2SM3), on ~1 KB indicators.

"sign" is the whole origin signature: strip, RFC 8785, JWS framing, the
primitive. "verify" is what ``threatbay verify`` does per object: the
duplicate check, strip, RFC 8785, the strict header parse, the trust-list
lookup with the agency and validity checks, the primitive. The JCS and
primitive-only columns split where the time goes. One core, medians of
``--rounds`` rounds. (Ingest throughput with verification on vs off comes
with the push-path integration, issue #24 phase 2.)

Run: .venv/bin/python benches/bench_signing.py [--rounds 5] [--n 1000] [--n-sm2 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import object_signatures as sigs  # noqa: E402
from core.jcs import canonical  # noqa: E402
from core.signing import ALGORITHMS, Algorithm, generate  # noqa: E402
from core.trust import TrustStore, issue, key_entry, pinned_roots, verify_trust_list  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
AGENCY = "identity--0d3f1c59-7c2a-5b8e-9a41-6f2e8d1c0a01"


def indicator(i: int) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--8e2e2d2b-17d4-4cbf-938f-{i:012x}",
        "created": "2026-11-30T09:00:00.000Z",
        "modified": "2026-11-30T09:00:00.000Z",
        "created_by_ref": AGENCY,
        "name": f"C2 node {i} 粵港澳",
        "description": "Command-and-control server seen by several agencies; " * 8,
        "pattern": f"[ipv4-addr:value = '203.0.{i % 256}.{i // 256 % 256}']",
        "pattern_type": "stix",
        "valid_from": "2026-11-30T09:00:00Z",
        "confidence": 85,
        "labels": ["malicious-activity"],
        "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
        "kill_chain_phases": [{"kill_chain_name": "lockheed", "phase_name": "command-and-control"}],
    }


def per_op(fn: Callable[[Any], object], items: list[Any], rounds: int) -> float:
    """Median over rounds of µs per call."""
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - start) / len(items) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-sm2", type=int, default=40)
    args = parser.parse_args()

    root = generate("Ed25519", "root")
    keys = {alg: generate(alg, f"k-{alg}") for alg in ALGORITHMS}
    entries = [
        key_entry(k.public, agency=AGENCY, not_before=NOW - timedelta(days=1),
                  not_after=NOW + timedelta(days=365), custody="agency")
        for k in keys.values()
    ]  # fmt: skip
    document = issue("GD", entries, root, sequence=1, issued=NOW, expires=NOW + timedelta(days=30))
    roots = pinned_roots({"GD": [dict(root.public.jwk)]})
    trust = TrustStore([verify_trust_list(document, roots, ALGORITHMS, NOW)])
    size = len(canonical(indicator(0)))
    print(f"objects: ~{size} bytes canonical; rounds: {args.rounds}; one core")
    jcs_us = per_op(canonical, [indicator(i) for i in range(args.n)], args.rounds)
    print(f"RFC 8785 canonical form alone: {jcs_us:,.1f} µs/object")
    print(f"{'alg':<8} {'n':>5} {'sign µs':>10} {'verify µs':>10} {'primitive sign':>15} "
          f"{'primitive verify':>17}")  # fmt: skip
    for alg in ALGORITHMS:
        n = args.n_sm2 if alg == "SM2SM3" else args.n
        key = keys[alg]
        objects = [indicator(i) for i in range(n)]
        signed = [sigs.sign(o, key) for o in objects]
        assert all(sigs.verify(s, trust, NOW, ALGORITHMS).verified for s in signed)
        sign_us = per_op(lambda o, k=key: sigs.sign(o, k), objects, args.rounds)
        verify_us = per_op(lambda s: sigs.verify(s, trust, NOW, ALGORITHMS), signed, args.rounds)
        messages = [canonical(o) for o in objects]
        signatures = [key.sign(m) for m in messages]
        prim_sign = per_op(key.sign, messages, args.rounds)
        pairs = list(zip(messages, signatures, strict=True))
        prim_verify = per_op(lambda p, k=key: k.public.verify(p[0], p[1]), pairs, args.rounds)
        label: Algorithm = alg
        print(f"{label:<8} {n:>5} {sign_us:>10,.0f} {verify_us:>10,.0f} {prim_sign:>15,.0f} "
              f"{prim_verify:>17,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
