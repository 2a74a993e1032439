"""Decay "current when read and sortable at scale": re-score periodically or at query time?

Prints, for N records (default 1,000,000) with a realistic type mix:
 (a) periodic re-score in Python: all N decayed scores from stored components, and the
     full ``score()`` (corroboration + decay + caps) per record, extrapolated;
 (b) query-time: the decayed score of every record plus a top-100 sort, and of a
     filtered page of 1,000;
 (c) how many records a "re-score when it moved by >= 1 point" job touches per hour
     and per day (``next_rescore_at`` = when the score will have fallen one point).

Run: .venv/bin/python benches/bench_decay.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import heapq
import random
import time
from datetime import UTC, datetime, timedelta

from core.scoring import DEFAULT_DECAY, ScoreInput, SourceReport, decay_factor, score

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MIX = [("ip", 0.40, "ipv4-addr"), ("url", 0.20, "url"), ("domain", 0.20, "domain-name"),
       ("file-hash", 0.15, "file"), ("other", 0.05, "email-addr")]  # fmt: skip


def records(n: int, rng: random.Random) -> list[tuple[float, float, float, float]]:
    """(base, anchor as epoch days, tau, delta) for n live records."""
    now_days = NOW.timestamp() / 86400.0
    classes = [m[0] for m in MIX]
    weights = [m[1] for m in MIX]
    out = []
    for cls in rng.choices(classes, weights, k=n):
        rule = DEFAULT_DECAY[cls]
        out.append((rng.uniform(20, 100), now_days - rng.uniform(0, rule.tau_days),
                    rule.tau_days, rule.delta))  # fmt: skip
    return out


def decayed_now(rows: list[tuple[float, float, float, float]], now_days: float) -> list[float]:
    return [base * decay_factor(now_days - anchor, tau, delta) for base, anchor, tau, delta in rows]


def next_rescore_day(
    base: float, anchor: float, tau: float, delta: float, now_days: float
) -> float:
    """Epoch day when the score will be one point lower than now (or reach 0)."""
    current = base * decay_factor(now_days - anchor, tau, delta)
    target = max(0.0, current - 1.0)
    return anchor + tau * float((1.0 - target / base) ** delta)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    n = parser.parse_args().n
    rng = random.Random(7)
    rows = records(n, rng)
    now_days = NOW.timestamp() / 86400.0

    start = time.perf_counter()
    scores = decayed_now(rows, now_days)
    recompute = time.perf_counter() - start
    print(f"(a) re-score {n:,} records from stored components: {recompute:6.2f} s "
          f"({recompute / n * 1e6:.2f} µs/record)")  # fmt: skip

    sample = 20_000
    inputs = [
        ScoreInput(
            [SourceReport("GD", "B", 80), SourceReport("HK", "C", 60), SourceReport("HK", "C", 70)],
            "ipv4-addr", NOW, last_report_at=NOW - timedelta(days=rng.uniform(0, 47)),
        )
        for _ in range(sample)
    ]  # fmt: skip
    start = time.perf_counter()
    for item in inputs:
        score(item)
    full = (time.perf_counter() - start) / sample
    print(f"(a) full score() per record (3 reports, 2 agencies): {full * 1e6:.1f} µs "
          f"-> {full * n:.1f} s for {n:,}")  # fmt: skip

    start = time.perf_counter()
    top = heapq.nlargest(100, range(n), key=decayed_now(rows, now_days).__getitem__)
    query_all = time.perf_counter() - start
    print(f"(b) query-time: decay all {n:,} + top-100: {query_all:6.2f} s per query")
    page = rows[:1000]
    start = time.perf_counter()
    for _ in range(100):
        sorted(decayed_now(page, now_days), reverse=True)
    query_page = (time.perf_counter() - start) / 100
    print(f"(b) query-time: decay + sort a filtered page of 1,000: {query_page * 1e3:.2f} ms")
    assert len(top) == 100 and len(scores) == n

    due = [next_rescore_day(*row, now_days) for row in rows]
    for label, horizon in (("hour", 1 / 24), ("day", 1.0)):
        count = sum(1 for d in due if d <= now_days + horizon)
        print(f"(c) records whose score falls >= 1 point within a {label}: {count:,} "
              f"({count / n:.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
