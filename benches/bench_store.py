"""Store benchmark: bulk writes and search pages on indicator-like documents.

Run: ``.venv/bin/python benches/bench_store.py [--es http://127.0.0.1:9200] [--sizes 1000,100000]``.
Prints one line per figure; nothing is asserted (STYLE: no timed assertions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import names  # noqa: E402
from core.ports import Put, Query, Range, Sort, Store, Term, Text  # noqa: E402

IND = names.INDEX_INDICATORS
AGENCIES = ["gd-cac", "gd-cncert", "hk-govcert", "hk-hkcert", "mo-caric"]


def indicator(n: int) -> dict[str, Any]:
    """An indicator record of roughly the production shape (~1 KB of JSON)."""
    agencies = AGENCIES[: 1 + n % 3]
    return {
        "key": f"ipv4-addr|value|10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "observable_type": ["ipv4-addr", "domain-name", "url", "file"][n % 4],
        "value": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "state": ["active", "expired", "revoked"][n % 3],
        "score": float(n % 101),
        "base": float(n % 50),
        "agencies": agencies,
        "jurisdictions": sorted({a[:2].upper() for a in agencies}),
        "agency_count": len(agencies),
        "jurisdiction_count": len({a[:2] for a in agencies}),
        "tlp": ["clear", "green", "amber"][n % 3],
        "first_seen": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T00:00:00.000000Z",
        "last_seen": f"2026-11-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.000000Z",
        "last_activity": f"2026-11-{1 + n % 28:02d}T00:00:00.000000Z",
        "stix_ids": [f"indicator--{uuid.UUID(int=n * 7 + i)}" for i in range(len(agencies))],
        "malware": ["emotet"] if n % 10 == 0 else [],
        "sighted": n % 5 == 0,
        "labels": ["malicious-activity"],
        "explanation": [{"factor": "corroboration", "points": 10, "why": "x" * 80}],
        "sources": [{"agency": a, "reliability": "B", "confidence": 80} for a in agencies],
    }


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def bench(name: str, store: Store, sizes: list[int], batch: int) -> None:
    """Load ``sizes`` cumulatively and print write and query figures at each size."""
    loaded = 0
    for size in sizes:
        start = time.perf_counter()
        for lo in range(loaded, size, batch):
            hi = min(size, lo + batch)
            res = store.put_many(IND, [Put(key=f"k{n}", doc=indicator(n)) for n in range(lo, hi)])
            assert all(r.ok for r in res)
        took = time.perf_counter() - start
        store.refresh(IND)
        if size > loaded:
            print(
                f"{name:14} put_many  {size - loaded:>7} docs (batch {batch}): "
                f"{took:7.2f} s = {(size - loaded) / took:8.0f} docs/s"
            )
        loaded = size
        queries: dict[str, Query] = {
            "state=active, last_seen desc, 100": Query(
                filters=(Term("state", ("active",)),), sort=(Sort("last_seen", "desc"),)
            ),
            "agencies∋hk-govcert, score desc": Query(
                filters=(Term("agencies", ("hk-govcert",)),), sort=(Sort("score", "desc"),)
            ),
            "score>=90 & sighted, score desc": Query(
                filters=(Range("score", gte=90.0), Term("sighted", (True,))),
                sort=(Sort("score", "desc"),),
            ),
            "value Text '.1.2' , 100": Query(filters=(Text(("value",), ".1.2"),)),
            "value = exact": Query(filters=(Term("value", ("10.0.1.2",)),)),
        }
        for label, q in queries.items():
            ms = timed(partial(store.search, IND, q))
            print(f"{name:14} @{size:>7}: search {label:31} {ms:8.2f} ms")
        page = store.search(IND, queries["state=active, last_seen desc, 100"])
        extra: dict[str, Callable[[], object]] = {
            "count_by agencies": lambda: store.count_by(IND, "agencies"),
            "count state=active": lambda: store.count(IND, [Term("state", ("active",))]),
        }
        keys = [f"k{n}" for n in range(0, size, max(1, size // 100))][:100]
        extra["get_many 100 keys"] = partial(store.get_many, IND, keys)
        if page.hits:
            deep = Query(
                filters=(Term("state", ("active",)),),
                sort=(Sort("last_seen", "desc"),),
                after=page.hits[-1].cursor,
            )
            extra["search: next page (cursor)"] = partial(store.search, IND, deep)
        for label, fn in extra.items():
            print(f"{name:14} @{size:>7}: {label:38} {timed(fn):8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--es", default="", help="Elasticsearch URL (skipped when empty)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not args.skip_embedded:
        from backends.embedded_store import EmbeddedStore

        with tempfile.TemporaryDirectory() as tmp:
            store = EmbeddedStore(str(Path(tmp) / "store.sqlite3"))
            bench("embedded", store, sizes, args.batch)
            store.close()
    if args.es:
        from backends.elasticsearch_store import ElasticsearchStore
        from core.settings import ElasticsearchSettings

        es = ElasticsearchStore(
            args.es,
            ElasticsearchSettings(refresh_interval="30s"),
            prefix=f"tb-bench-{uuid.uuid4().hex[:8]}-",
        )
        try:
            bench("elasticsearch", es, sizes, args.batch)
        finally:
            es.drop_indices()
            es.close()


if __name__ == "__main__":
    main()
