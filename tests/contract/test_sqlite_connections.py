"""The embedded backends keep a small, bounded pool of SQLite connections per file.

Each connection carries its own page cache and statement cache. With one
connection per thread, the API's 40 pool threads and short-lived threads (a
pool per tick, an executor per batch) made the embedded ``serve`` grow by
hundreds of MiB (issue #17): however many threads use a file, at most
``ConnectionPool`` size connections exist.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from core import envelope, names
from core.ports import Incoming, Put
from core.settings import Settings
from threatbay.bootstrap import build, correlator_for


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    services = build(Settings(data_dir=tmp_path))
    try:
        store = services.store
        for i in range(25):
            worker = threading.Thread(
                target=store.put_many, args=(names.INDEX_AUDIT, [Put(f"k{i}", {"n": i})])
            )
            worker.start()
            worker.join()
        store.put_many(names.INDEX_AUDIT, [Put("main", {"n": -1})])  # opens one, prunes the rest
        assert store._conns.open_count() <= 2  # type: ignore[attr-defined]
        assert store.count(names.INDEX_AUDIT) == 26  # nothing written was lost
    finally:
        services.close()


def test_the_correlator_does_not_open_a_connection_per_batch(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[2] / "benches"))
    import bench_correlate

    services = build(Settings(data_dir=tmp_path))
    try:
        worker = correlator_for(services)
        items = bench_correlate.workload(300, 0.3)
        for start in range(0, 300, 10):
            messages = [
                Incoming(names.TOPIC_RAW, 0, n, m.key, m.value, {})
                for n, m in enumerate(envelope.encode(items[start : start + 10]))
            ]
            worker.process(messages)
        assert services.store._conns.open_count() <= 3  # type: ignore[attr-defined]
        assert services.store.count(names.INDEX_OBJECTS) == 300
    finally:
        services.close()


def test_many_concurrent_threads_share_a_bounded_pool(tmp_path: Path) -> None:
    services = build(Settings(data_dir=tmp_path))
    try:
        store = services.store
        barrier = threading.Barrier(40)

        def work(i: int) -> None:
            barrier.wait()
            for j in range(5):
                store.put_many(names.INDEX_AUDIT, [Put(f"k{i}-{j}", {"n": i})])
                store.get(names.INDEX_AUDIT, f"k{i}-{j}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store._conns.open_count() <= 8  # type: ignore[attr-defined]
        assert store.count(names.INDEX_AUDIT) == 200
    finally:
        services.close()
