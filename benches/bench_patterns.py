"""µs per pattern: fast path vs stix2-patterns (ANTLR), and pattern_error on a mix.

Run: .venv/bin/python benches/bench_patterns.py
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from stix2patterns.validator import run_validator

from core.observables import _CACHE as OBSERVABLES_CACHE
from core.observables import observables
from core.patterns import clear_caches, pattern_error, simple_comparisons

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "patterns"
SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
SIMPLE = [
    "[ipv4-addr:value = '198.51.100.7']",
    f"[file:hashes.'SHA-256' = '{SHA256}']",
    "[url:value = 'http://evil.example.com/a?b=1' OR domain-name:value = 'evil.example.com']",
    "[network-traffic:dst_ref.value = '203.0.113.9']",
]
COMPOUND = [
    "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '1.2.3.4']",
    "[file:name = 'a.exe'] FOLLOWEDBY [domain-name:value = 'b.example'] WITHIN 60 SECONDS",
]


def per_call_us(fn: Callable[[str], object], patterns: list[str], rounds: int = 5) -> float:
    """Median over rounds of the mean µs per call."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for pattern in patterns:
            fn(pattern)
        results.append((time.perf_counter() - start) / len(patterns) * 1e6)
    return statistics.median(results)


def report(label: str, micros: float) -> None:
    print(f"{label:<44}: {micros:9.1f} µs")


def main() -> None:
    def uncached_pattern_error(p: str) -> object:
        return simple_comparisons(p) is not None or run_validator(p, stix_version="2.1")

    simple = SIMPLE * 250
    compound = COMPOUND * 100
    report("fast path (simple_comparisons), simple", per_call_us(simple_comparisons, simple))
    report("stix2-patterns run_validator, simple", per_call_us(run_validator, simple[:200]))
    report("stix2-patterns run_validator, compound", per_call_us(run_validator, compound))
    report("pattern_error uncached, simple", per_call_us(uncached_pattern_error, simple))
    clear_caches()
    report("pattern_error compound, cached (hit)", per_call_us(pattern_error, compound))
    report("observables(), simple (after 1st call)", per_call_us(observables, simple))
    distinct = [
        f"[ipv4-addr:value = '198.51.{i // 256}.{i % 256}' OR url:value = 'HTTP://e{i}.example/A'"
        f" OR file:hashes.SHA256 = '{SHA256[:-4]}{i:04x}']"
        for i in range(2000)
    ]
    OBSERVABLES_CACHE.clear()
    report("observables(), 3 simple comparisons, uncached", per_call_us(observables, distinct, 1))
    compound_distinct = [
        f"[network-traffic:dst_ref.value = '198.51.{i // 256}.{i % 256}'"
        " AND network-traffic:dst_port = 443]"
        for i in range(300)
    ]
    report("observables(), compound, uncached", per_call_us(observables, compound_distinct, 1))

    rows = [json.loads(line) for line in (CORPUS / "generated.jsonl").open(encoding="utf-8")]
    mix = [r["pattern"] for r in rows]
    fast = sum(simple_comparisons(p) is not None for p in mix)
    valid = sum(r["antlr_valid"] for r in rows)
    print(f"generated corpus: {len(mix)} patterns, {valid} valid, fast path takes {fast}")
    clear_caches()
    start = time.perf_counter()
    for pattern in mix:
        pattern_error(pattern)
    cold = (time.perf_counter() - start) / len(mix) * 1e6
    print(f"pattern_error over corpus, cold cache     : {cold:8.1f} µs/pattern")
    start = time.perf_counter()
    for pattern in mix:
        pattern_error(pattern)
    warm = (time.perf_counter() - start) / len(mix) * 1e6
    print(f"pattern_error over corpus, warm cache     : {warm:8.1f} µs/pattern")


if __name__ == "__main__":
    main()
