"""Correlation throughput: indicators/s from the raw topic to scored records in the store.

Three agencies (GD, HK, MO) report N indicators with ~30 % of observables
reported by more than one agency, published to ``intel.stix.raw`` as ingest
would; then ``--workers`` correlator processes (one consumer group) consume
until every object is processed. The clock runs from the first batch any
worker starts to the last one that completes the count (warninglist loading
and group joins are before it); at the end the store must hold exactly the
distinct observables as records and every object version, or the bench fails.

    .venv/bin/python benches/bench_correlate.py --n 20000                 # embedded
    .venv/bin/python benches/bench_correlate.py --n 50000 --workers 2 \
        --bus kafka://127.0.0.1:9092 --store http://127.0.0.1:9200         # Kafka + ES
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from core import envelope, names
from core.access import Agency
from core.clock import SystemClock, format_timestamp
from core.envelope import Accepted
from core.provenance import Provenance
from core.settings import Settings
from records.agencies import AgencyRegistry
from threatbay.bootstrap import build, correlator_for

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


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def es_cpu_s(url: str) -> float:
    """CPU seconds the Elasticsearch node has used (0 when the store is not ES)."""
    if not url.startswith("http"):
        return 0.0
    with urllib.request.urlopen(f"{url}/_nodes/stats/process", timeout=10) as response:
        nodes = json.load(response)["nodes"]
    return float(sum(n["process"]["cpu"]["total_in_millis"] for n in nodes.values())) / 1000.0


def _settings(args: argparse.Namespace, namespace: str, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, bus_url=args.bus, store_url=args.store, namespace=namespace)


def child(args: argparse.Namespace) -> None:
    """One correlator process of ``--workers``: load, say ready, wait for go, consume.

    Prints ``batch <objects> <t_start> <t_end>`` (wall clock) per processed batch,
    until the parent closes stdin... or says ``stop``.
    """
    services = build(_settings(args, args.namespace, Path(args.data_dir)))
    worker = correlator_for(services)  # loads the warninglists (~8 s) before the clock starts
    consumer = services.bus.consumer(names.TOPIC_RAW, args.group, from_beginning=False)
    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    while not stop.is_set():
        messages = consumer.poll(max_records=args.max_messages, timeout_s=0.5)
        if not messages:
            continue
        t0, cpu0 = time.time(), time.process_time()
        result = worker.process(messages)
        consumer.commit()
        cpu = time.process_time() - cpu0
        print(f"batch {result.objects} {t0:.6f} {time.time():.6f} {cpu:.6f}", flush=True)
    consumer.close()
    services.close()


def _forward(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def run_workers(
    args: argparse.Namespace, namespace: str, data_dir: Path
) -> tuple[int, float, float, tuple[float, float, float]]:
    """Start ``--workers`` correlator processes in one group.

    Returns (objects processed, wall seconds, CPU seconds the workers spent in batches,
    (seconds from "go" to the last batch, machine busy CPU seconds, ES CPU seconds) over
    that window).
    """
    group = f"bench-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, __file__, "--child", "--group", group, "--namespace", namespace,
           "--data-dir", str(data_dir), "--bus", args.bus, "--store", args.store,
           "--max-messages", str(args.max_messages)]  # fmt: skip
    return drive_workers(cmd, args.workers, args.n, args.store)


def drive_workers(
    cmd: list[str], workers: int, n: int, store: str
) -> tuple[int, float, float, tuple[float, float, float]]:
    """Start ``workers`` processes of ``cmd`` (each says ``ready``, waits for ``go``, prints
    ``batch`` lines) and run them until ``n`` objects are done; see ``run_workers``."""
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    lines: queue.Queue[str] = queue.Queue()
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            sys.exit("a worker failed to start")
        threading.Thread(target=_forward, args=(proc.stdout, lines), daemon=True).start()
    t_go, busy0, es0 = time.time(), machine_busy_s(), es_cpu_s(store)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    done, first, last, cpu = 0, float("inf"), 0.0, 0.0
    while done < n:
        parts = lines.get(timeout=600).split()
        if parts and parts[0] == "batch":
            done += int(parts[1])
            first, last = min(first, float(parts[2])), max(last, float(parts[3]))
            cpu += float(parts[4])
    usage = (time.time() - t_go, machine_busy_s() - busy0, es_cpu_s(store) - es0)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
    for proc in procs:
        proc.wait(timeout=60)
    return done, last - first, cpu, usage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--bus", default="")
    parser.add_argument("--store", default="")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="correlator processes in one consumer group (Kafka only)",
    )
    parser.add_argument("--max-messages", type=int, default=200, help="messages per poll")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--group", default="", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.workers > 1 and not args.bus.startswith("kafka://"):
        sys.exit("--workers > 1 needs Kafka: the embedded bus has one member per group")

    data_dir = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    namespace = f"bench{uuid.uuid4().hex[:8]}-"
    settings = _settings(args, namespace, data_dir)
    services = build(settings)
    registry = AgencyRegistry(services.store, services.clock)
    for agency_id, jurisdiction, reliability in AGENCIES:
        registry.add_agency(Agency(agency_id, agency_id, jurisdiction,
                                   f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}",
                                   reliability))  # fmt: skip
    items = workload(args.n, args.duplicates)
    distinct = len({it.obj["pattern"] for it in items})
    t0 = time.perf_counter()
    for start in range(0, len(items), 1000):
        services.bus.publish(names.TOPIC_RAW, envelope.encode(items[start : start + 1000]))
    t_publish = time.perf_counter() - t0
    services.close()  # the embedded store is SQLite: let the workers have it

    done, elapsed, cpu, (window, busy, es_cpu) = run_workers(args, namespace, data_dir)
    services = build(settings)
    services.store.refresh(names.INDEX_INDICATORS)
    services.store.refresh(names.INDEX_OBJECTS)
    records = services.store.count(names.INDEX_INDICATORS)
    objects = services.store.count(names.INDEX_OBJECTS)
    print(f"backend bus={settings.bus_url or 'embedded'} store={settings.store_url or 'embedded'}"
          f" workers={args.workers} messages/poll={args.max_messages}")  # fmt: skip
    print(f"published {args.n} indicators in {t_publish:.2f}s ({args.n / t_publish:,.0f}/s)")
    print(f"correlated {args.n} indicators in {elapsed:.2f}s -> {args.n / elapsed:,.0f} "
          f"indicators/s ({done} processed incl. re-deliveries after rebalances); "
          f"{records} records (expected {distinct}), {objects} object versions")  # fmt: skip
    print(f"correlator CPU {cpu / args.n * 1e6:,.0f} us per indicator (all workers); "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"from go to the last batch ({window:.1f} s, incl. group joins): machine CPU busy "
          f"{busy / (window * cores):.0%} of {cores} cores; Elasticsearch {es_cpu:.1f} s CPU "
          f"({es_cpu / args.n * 1e6:,.0f} us per indicator, any ES client)")  # fmt: skip
    drop = getattr(services.store, "drop_indices", None)
    if drop is not None:  # Elasticsearch: this run's indices (its topics stay, Kafka-style)
        drop()
    services.close()
    if records != distinct or objects != args.n:
        sys.exit("MISMATCH: the store does not hold what was published")


if __name__ == "__main__":
    main()
