"""Correlation throughput: indicators/s from the raw topic to scored records in the store.

Three agencies (GD, HK, MO) report N indicators with ~30 % of observables
reported by more than one agency, published to ``intel.stix.raw`` as ingest
would; then one correlator consumes until every object is processed.

    .venv/bin/python benches/bench_correlate.py --n 20000                 # embedded
    .venv/bin/python benches/bench_correlate.py --n 50000 \
        --bus kafka://127.0.0.1:9092 --store http://127.0.0.1:9200         # Kafka + ES
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path

from api.registry import AgencyRegistry
from core import envelope, names
from core.access import Agency
from core.clock import SystemClock, format_timestamp
from core.envelope import Accepted
from core.provenance import Provenance
from core.settings import Settings
from threatbay.bootstrap import build
from threatbay.stages import correlator_for

GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
AGENCIES = [("bench-gd", "GD", "B"), ("bench-hk", "HK", "A"), ("bench-mo", "MO", "B")]


def observable(i: int) -> str:
    kind = i % 4
    if kind == 0:
        return f"[ipv4-addr:value = '10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}']"
    if kind == 1:
        return f"[domain-name:value = 'host{i}.bench.example']"
    if kind == 2:
        return f"[url:value = 'http://host{i}.bench.example/p']"
    return f"[file:hashes.'SHA-256' = '{i:064x}']"


def workload(n: int, duplicate_rate: float, seed: int = 7) -> list[Accepted]:
    rng = random.Random(seed)
    distinct = int(n * (1 - duplicate_rate))
    now = format_timestamp(SystemClock().now())
    items: list[Accepted] = []
    for i in range(n):
        value = i if i < distinct else rng.randrange(distinct)
        agency, jurisdiction, _ = AGENCIES[i % 3]
        obj = {
            "type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            "created": now, "modified": now, "valid_from": now,
            "pattern": observable(value), "pattern_type": "stix",
            "confidence": 50 + i % 50, "object_marking_refs": [GREEN],
        }  # fmt: skip
        prov = Provenance(agency, jurisdiction, now, "bench", tlp="green")
        items.append(Accepted(obj, prov))
    return items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--bus", default="")
    parser.add_argument("--store", default="")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    settings = Settings(
        data_dir=data_dir,
        bus_url=args.bus,
        store_url=args.store,
        namespace=f"bench{uuid.uuid4().hex[:8]}-",
    )
    services = build(settings)
    registry = AgencyRegistry(services.store, services.clock)
    for agency_id, jurisdiction, reliability in AGENCIES:
        try:
            registry.add_agency(Agency(agency_id, agency_id, jurisdiction,
                                       f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}",
                                       reliability))  # fmt: skip
        except Exception:  # already registered by an earlier run on the same store
            pass
    items = workload(args.n, args.duplicates)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    for start in range(0, len(items), 1000):
        services.bus.publish(names.TOPIC_RAW, envelope.encode(items[start : start + 1000]))
    t_publish = time.perf_counter() - t0

    worker = correlator_for(services)
    consumer = services.bus.consumer(names.TOPIC_RAW, group, from_beginning=False)
    # A fresh group starts at the beginning of the topic; count only this run's objects.
    done = 0
    t1 = time.perf_counter()
    while done < args.n:
        messages = consumer.poll(max_records=200, timeout_s=1.0)
        if not messages:
            continue
        result = worker.process(messages)
        consumer.commit()
        done += result.objects
    elapsed = time.perf_counter() - t1
    services.store.refresh(names.INDEX_INDICATORS)
    records = services.store.count(names.INDEX_INDICATORS)
    print(f"backend bus={settings.bus_url} store={settings.store_url}")
    print(f"published {args.n} indicators in {t_publish:.2f}s ({args.n / t_publish:,.0f}/s)")
    print(f"correlated {done} objects in {elapsed:.2f}s -> {done / elapsed:,.0f} indicators/s; "
          f"{records} records in the store")  # fmt: skip
    consumer.close()
    services.close()


if __name__ == "__main__":
    main()
