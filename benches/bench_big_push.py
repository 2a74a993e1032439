"""One 1.1 MB OR-pattern of 30,000 addresses, while another agency keeps pushing (issue 15).

Before: each OR-ed comparison became a record storing the whole pattern, and the
embedded store's WAL reached 14 GB in 5 minutes. Now:

- with the default limits the push is refused as that object's failure, at a
  cost of one ``len()``;
- with limits raised to let it in (``--raise``), it is stored in proportion to
  its size (bytes per record printed), and another agency's small pushes are
  measured push -> visible through ``/api/v1/lookup`` all the while (one
  correlator: they wait behind the big batch, which is reported as it is).

Embedded backends in a temporary directory, the real HTTP app, the real
correlator in a thread. Run: .venv/bin/python benches/bench_big_push.py [--raise]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.access import Agency, bearer_token
from core.settings import LimitsSettings, Settings
from records.agencies import AgencyRegistry
from threatbay.bootstrap import build, correlator_for

TAXII = "application/taxii+json;version=2.1"
GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"


def indicator(pattern: str) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z",
            "object_marking_refs": [GREEN]}  # fmt: skip


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("store.sqlite3*"))


def run(raised: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        limits = LimitsSettings()
        if raised:
            limits = LimitsSettings(pattern_max_chars=2_000_000, pattern_max_comparisons=50_000)
        services = build(Settings(data_dir=Path(tmp), limits=limits))
        registry = AgencyRegistry(services.store, services.clock)
        keys = {}
        parties = (
            Agency("hk-govcert", "GovCERT.HK", "HK", f"identity--{uuid.uuid4()}", "A"),
            Agency("gd-cac", "GD CAC", "GD", f"identity--{uuid.uuid4()}", "B"),
        )
        for agency in parties:
            registry.add_agency(agency)
            cred, secret = registry.add_credential(agency.id)
            keys[agency.id] = {"Authorization": f"Bearer {bearer_token(cred.key_id, secret)}",
                               "Accept": TAXII, "Content-Type": TAXII}  # fmt: skip
        stop = threading.Event()
        worker = correlator_for(services)

        def correlate() -> None:
            consumer = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
            while not stop.is_set():
                worker.step(consumer, timeout_s=0.1)
            consumer.close()

        thread = threading.Thread(target=correlate, daemon=True)
        thread.start()
        with TestClient(create_app(services)) as client:

            def push(agency: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
                r = client.post(
                    f"/taxii2/api/collections/inbox-{agency}/objects/",
                    headers=keys[agency],
                    content=orjson.dumps({"objects": objects}),
                )
                assert r.status_code == 202, r.text
                result: dict[str, Any] = r.json()
                return result

            latencies: list[tuple[float, float]] = []  # (started, push -> visible)
            other_done = threading.Event()

            def other_agency() -> None:
                n = 0
                while not other_done.is_set():
                    value = f"gd-{n}.example.org"
                    started = time.monotonic()
                    push("gd-cac", [indicator(f"[domain-name:value = '{value}']")])
                    while not other_done.is_set():
                        found = client.get("/api/v1/lookup", params={"value": value},
                                           headers=keys["gd-cac"]).json()  # fmt: skip
                        if found.get("records"):
                            latencies.append((started, time.monotonic() - started))
                            break
                        time.sleep(0.05)
                    n += 1
                    time.sleep(0.2)

            other = threading.Thread(target=other_agency, daemon=True)
            other.start()
            time.sleep(2)
            before = dir_bytes(Path(tmp))
            pattern = " OR ".join(
                f"[ipv4-addr:value = '10.0.{i // 256 % 256}.{i % 256}']" for i in range(30_000)
            )
            started = time.monotonic()
            status = push("hk-govcert", [indicator(pattern)])
            pushed = time.monotonic() - started
            print(f"pattern: {len(pattern):,} characters, 30,000 comparisons "
                  f"({'limits raised' if raised else 'default limits'})")  # fmt: skip
            print(f"push answered in {pushed * 1e3:,.0f} ms: success {status['success_count']}, "
                  f"failure {status['failure_count']}")  # fmt: skip
            for failure in status.get("failures", []):
                print(f"  failure: {failure['message']}")
            correlated = None
            if status["success_count"]:
                last = "10.0.117.47"  # the 30,000th address
                while correlated is None:
                    found = client.get("/api/v1/lookup", params={"value": last},
                                       headers=keys["hk-govcert"]).json()  # fmt: skip
                    if found.get("records"):
                        correlated = time.monotonic() - started
                    time.sleep(0.2)
            time.sleep(3)
            other_done.set()
            other.join(timeout=30)
            stop.set()
            thread.join(timeout=30)
            grown = dir_bytes(Path(tmp)) - before
            if correlated is not None:
                print(f"all 30,000 records visible after {correlated:,.1f} s")
            per_record = f" = {grown / 30_000:,.0f} bytes per record" if correlated else ""
            print(f"store (SQLite file and WAL) grew by {grown / 1e6:,.1f} MB{per_record}")
            window_end = started + (correlated if correlated is not None else pushed)
            during = [lat for at, lat in latencies if started - 0.5 <= at <= window_end]
            if during:
                print(f"other agency, pushes started while the big one was pushed and correlated: "
                      f"{len(during)}, push -> visible p50 {statistics.median(during) * 1e3:,.0f} "
                      f"ms, max {max(during) * 1e3:,.0f} ms")  # fmt: skip
            else:
                print(f"other agency: no push started within that window ({len(latencies)} in all)")
            timeline = ", ".join(
                f"{at - started:+.1f}s:{lat * 1e3:,.0f}ms" for at, lat in latencies
            )
            print(f"other agency's pushes (start vs the big push: push -> visible): {timeline}")
        services.close()


if __name__ == "__main__":
    run("--raise" in sys.argv)
