"""Periodic re-score vs read-time decay on real Elasticsearch at 1M records (issue 4).

``bench_decay.py`` measured the pure-Python side. This is the Elasticsearch side:

1. load N indicator records (default 1,000,000) scored by ``correlate.score.Scorer``
   at T0 (anchors spread over each type's τ, 1–3 sources, 5 % with a
   ``valid_until``, 2 % warninglist-capped) with blind bulk puts of ``--batch``;
2. (a) ``correlate.rescore.Rescorer.run_pass`` (unthrottled) at T0+1 h, at T0+1 d
   (a day's decay) and at T0+30 d (worst case: nearly everything due, e.g. after
   a month without the job; run while ingesting, see 4): due, written, conflicts,
   crossings announced on Kafka, wall time, records/s, ES ``index_total`` delta;
   and the steady-state write rate (score points all records lose per day);
3. (b) the query-time alternative: a runtime-field sort (refused: no painless on
   this build, the error is printed), a 1k page + ``current_score`` in Python,
   and the scan a true read-time sort over all N would need;
4. (c) ingestion (``bench_correlate``'s workload, Kafka -> correlator -> ES, in its
   own process and namespace) alone, during the unthrottled T0+30 d pass, during
   a T0+60 d pass throttled to ``--throttled`` records/s (the ``rescore_max_rate``
   setting; stopped once ingestion is measured), and alone again.

Own namespaces (indices and Kafka topics), deleted at the end. Prints figures;
asserts nothing about speed.

    .venv/bin/python benches/bench_rescore.py [--n 1000000] [--batch 4000] [--page 1000]
        [--ingest-n 20000] [--throttled 500] [--ingestion-only]
        [--es http://127.0.0.1:9200] [--kafka 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from backends.elasticsearch_store import ElasticsearchStore
from core import names
from core.clock import FakeClock, format_timestamp
from core.crossborder import default_whitelist
from core.policy import SharingPolicy, record_audience
from core.ports import Put, Query, Sort, Term
from core.scoring import DEFAULT_DECAY
from core.settings import ElasticsearchSettings, KafkaSettings
from correlate.merge import summarise
from correlate.rescore import Rescorer, RescoreResult
from correlate.score import AgencyProfile, Scorer, current_score

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SOURCES = [("hk-govcert", "HK", "A"), ("gd-cac", "GD", "B"), ("mo-caric", "MO", "B"),
           ("hk-police", "HK", "C")]  # fmt: skip
PROFILES = {a: AgencyProfile(r) for a, _, r in SOURCES}
MIX = [("ip", 0.40), ("url", 0.20), ("domain", 0.20), ("file-hash", 0.15), ("other", 0.05)]


def observable(cls: str, i: int) -> tuple[str, str, str]:
    """(observable_type, path, value) of record ``i`` of decay class ``cls``."""
    if cls == "ip":
        return "ipv4-addr", "value", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    if cls == "url":
        return "url", "value", f"http://h{i}.rescore.example/p"
    if cls == "domain":
        return "domain-name", "value", f"h{i}.rescore.example"
    if cls == "file-hash":
        return "file", "hashes.sha-256", f"{i:064x}"
    return "email-addr", "value", f"u{i}@rescore.example"


class RecordFactory:
    """Records as the correlator stores them: merged sources, summarised, scored at T0."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.scorer = Scorer(None)
        self.sharing = SharingPolicy(default_whitelist())
        self.audience: dict[tuple[Any, ...], list[str]] = {}
        self.points_per_day = 0.0  # score points all records lose in their next day

    def record(self, i: int) -> dict[str, Any]:
        rng = self.rng
        cls = rng.choices([m[0] for m in MIX], [m[1] for m in MIX])[0]
        obs_type, path, value = observable(cls, i)
        anchor = T0 - timedelta(days=rng.uniform(0, DEFAULT_DECAY[cls].tau_days))
        at = format_timestamp(anchor)
        ends = format_timestamp(T0 + timedelta(days=rng.uniform(1, 60)))
        sources = []
        for s in range(1 + (i % 3 == 0) + (i % 7 == 0)):
            agency, jurisdiction, _ = SOURCES[(i + s) % len(SOURCES)]
            sources.append({
                "agency": agency, "jurisdiction": jurisdiction, "source_kind": "agency",
                "stix_id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                "modified": at, "confidence": rng.randrange(40, 101), "tlp": "green",
                "tlp_defaulted": False, "recipients": [], "valid_from": at,
                "valid_until": ends if rng.random() < 0.05 else None, "revoked": False,
                "labels": ["malicious-activity"], "kill_chain_phases": [], "first_seen": at,
                "last_seen": at, "source_path": f"{obs_type}:{path}",
                "pattern": f"[{obs_type}:{path} = '{value}']", "description": None, "name": None,
            })  # fmt: skip
        rec: dict[str, Any] = {
            "key": f"{obs_type}|{path}|{value}", "observable_type": obs_type, "path": path,
            "value": value, "sources": sources, "sightings": [], "malware": [],
            "campaigns": [], "intrusion_sets": [],
        }  # fmt: skip
        summarise(rec)
        hits = ["bench warninglist"] if rng.random() < 0.02 else []
        self.scorer.apply(rec, PROFILES.__getitem__, T0, hits=hits)
        self.points_per_day += rec["score"] - current_score(rec, T0 + timedelta(days=1))
        combo = tuple((s["agency"], s["jurisdiction"]) for s in sources) + (obs_type,)
        aud = self.audience.get(combo)
        if aud is None:
            aud = self.audience[combo] = record_audience(self.sharing, rec)
        rec["audience"] = aud
        return rec


def load(store: ElasticsearchStore, n: int, batch: int) -> tuple[float, float]:
    """Blind bulk puts of ``batch`` records, one in flight; (seconds, score points lost/day)."""
    factory = RecordFactory()
    start = time.perf_counter()
    pending: Future[Any] | None = None
    with ThreadPoolExecutor(1) as pool:
        for lo in range(0, n, batch):
            records = (factory.record(i) for i in range(lo, min(n, lo + batch)))
            puts = [Put(key=r["key"], doc=r, blind=True) for r in records]
            if pending is not None:
                bad = [r for r in pending.result() if not r.ok]
                assert not bad, bad[:3]
            pending = pool.submit(store.put_many, names.INDEX_INDICATORS, puts)
            if lo and lo % (batch * 50) == 0:
                print(f"  {lo:>9,} loaded, {lo / (time.perf_counter() - start):,.0f}/s", flush=True)
        if pending is not None:
            assert all(r.ok for r in pending.result())
    return time.perf_counter() - start, factory.points_per_day


def index_total(es: str, index: str) -> int:
    stats = httpx.get(f"{es}/{index}/_stats/indexing", timeout=30).json()
    return int(stats["_all"]["primaries"]["indexing"]["index_total"])


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed_pass(
    rescorer: Rescorer, es: str, index: str, stop: threading.Event | None = None
) -> tuple[RescoreResult, float, float, int]:
    """(result, wall s, this process's CPU s, ES documents indexed) of one pass."""
    before = index_total(es, index)
    cpu, wall = time.process_time(), time.perf_counter()
    result = rescorer.run_pass(stop)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return result, wall, cpu, index_total(es, index) - before


def report_pass(label: str, r: RescoreResult, wall: float, cpu: float, docs: int) -> None:
    print(f"(a) {label}: {r.due:,} due, {r.written:,} written ({r.full:,} full score), "
          f"{r.conflicts} conflicts, {r.crossings:,} crossings announced; {wall:.1f} s wall, "
          f"{r.due / wall:,.0f} records/s, {cpu:.1f} s CPU in the job; ES index_total "
          f"+{docs:,}; load {load_avg()}", flush=True)  # fmt: skip


def read_time(store: ElasticsearchStore, es: str, index: str, now: datetime) -> None:
    """(b) what decaying at read time costs on this store."""
    runtime = httpx.post(f"{es}/{index}/_search", timeout=30, json={
        "size": 10, "runtime_mappings": {"score_now": {"type": "double", "script": {
            "source": "emit(doc['score'].value * 0.5)"}}},
        "sort": [{"score_now": "desc"}]})  # fmt: skip
    reason = runtime.json().get("error", {}).get("root_cause", [{}])[0].get("reason", "")
    print(f"(b) runtime-field sort on score_now: HTTP {runtime.status_code} {reason[:140]}")
    query = Query(filters=(Term("state", ("active",)),), sort=(Sort("score", "desc"),), limit=1000)
    fetch, compute = [], []
    for _ in range(10):
        t = time.perf_counter()
        page = store.search(names.INDEX_INDICATORS, query)
        fetch.append(time.perf_counter() - t)
        t = time.perf_counter()
        ranked = sorted((current_score(h.doc, now) for h in page.hits), reverse=True)
        compute.append(time.perf_counter() - t)
        assert len(ranked) == 1000
    print(f"(b) read path, page of 1,000 sorted by stored score: fetch "
          f"{statistics.median(fetch) * 1e3:.1f} ms + score_now for each and re-sort "
          f"{statistics.median(compute) * 1e3:.2f} ms (medians of 10)")  # fmt: skip
    scanned, after, t = 0, None, time.perf_counter()
    cpu = 0.0
    while scanned < 50_000:
        page = store.search(names.INDEX_INDICATORS, Query(limit=5000, after=after))
        c = time.perf_counter()
        for h in page.hits:
            current_score(h.doc, now)
        cpu += time.perf_counter() - c
        scanned += len(page.hits)
        if not page.more:
            break
        after = page.hits[-1].cursor
    per = (time.perf_counter() - t) / scanned
    total = store.count(names.INDEX_INDICATORS)
    print(f"(b) true read-time sort needs every record: scan {scanned:,} at "
          f"{scanned / (time.perf_counter() - t):,.0f} docs/s ({cpu / scanned * 1e6:.1f} µs/doc "
          f"decay) -> {per * total:.0f} s per query over {total:,}")  # fmt: skip


def ingest(args: argparse.Namespace, label: str) -> float:
    """Run the correlation workload in a subprocess, own namespace; indicators/s."""
    ns = f"rsingest{secrets.token_hex(3)}-"
    cmd = [PY, __file__, "--ingest-only", "--namespace", ns, "--ingest-n", str(args.ingest_n),
           "--es", args.es, "--kafka", args.kafka]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    rate = next((float(line.split()[1]) for line in out.stdout.splitlines()
                 if line.startswith("INGEST ")), float("nan"))  # fmt: skip
    if rate != rate:
        print(out.stdout[-2000:], out.stderr[-2000:])
    cleanup(args, ns)
    print(f"(c) ingestion {label}: {rate:,.0f} indicators/s ({args.ingest_n:,} indicators, "
          f"Kafka -> correlator -> ES); load {load_avg()}", flush=True)  # fmt: skip
    return rate


def ingest_only(args: argparse.Namespace) -> None:
    """Subprocess mode: ``bench_correlate``'s workload and loop on Kafka + ES in ``--namespace``."""
    sys.path.insert(0, str(ROOT / "benches"))
    from bench_correlate import AGENCIES, workload

    from core import envelope
    from core.access import Agency
    from core.settings import Settings
    from records.agencies import AgencyRegistry
    from threatbay.bootstrap import build, correlator_for

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="tb-rs-")), namespace=args.namespace,
                        bus_url=f"kafka://{args.kafka}", store_url=args.es)  # fmt: skip
    services = build(settings)
    registry = AgencyRegistry(services.store, services.clock)
    for agency_id, jurisdiction, reliability in AGENCIES:
        registry.add_agency(Agency(agency_id, agency_id, jurisdiction,
                                   f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}",
                                   reliability))  # fmt: skip
    items = workload(args.ingest_n, 0.3)
    for lo in range(0, len(items), 1000):
        services.bus.publish(names.TOPIC_RAW, envelope.encode(items[lo : lo + 1000]))
    worker = correlator_for(services)
    consumer = services.bus.consumer(names.TOPIC_RAW, "bench-rescore-ingest")
    done, t = 0, 0.0
    while done < args.ingest_n:
        messages = consumer.poll(max_records=200, timeout_s=1.0)
        if messages:
            t = t or time.perf_counter()
            done += worker.process(messages).objects
            consumer.commit()
    print(f"INGEST {done / (time.perf_counter() - t):.1f}")
    consumer.close()
    services.close()


def cleanup(args: argparse.Namespace, namespace: str) -> None:
    """Delete this namespace's indices and Kafka topics (only ours: unique prefix)."""
    from kafka.admin import KafkaAdminClient

    store = ElasticsearchStore(args.es, ElasticsearchSettings(), prefix=namespace)
    store.drop_indices()
    store.close()
    # Indices without declared fields (object versions) are created on first use: list them.
    listed = httpx.get(f"{args.es}/_cat/indices/{namespace}*", params={"h": "index"}, timeout=30)
    for name in listed.text.split():
        if name.startswith(namespace):
            httpx.delete(f"{args.es}/{name}", timeout=60)
    admin = KafkaAdminClient(bootstrap_servers=args.kafka)
    try:
        ours = [t for t in admin.list_topics() if t.startswith(namespace)]
        if ours:
            admin.delete_topics(ours)
    finally:
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4000)
    ap.add_argument("--page", type=int, default=1000)
    ap.add_argument("--ingest-n", type=int, default=20_000)
    ap.add_argument("--es", default="http://127.0.0.1:9200")
    ap.add_argument("--kafka", default="127.0.0.1:9092")
    ap.add_argument(
        "--throttled",
        type=float,
        default=500.0,
        help="max_rate (records/s) of the throttled pass run during ingestion",
    )
    ap.add_argument(
        "--ingestion-only",
        action="store_true",
        help="load, then only (c): no (a) passes at T0+1h/1d, no (b)",
    )
    ap.add_argument("--ingest-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--namespace", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ingest_only:
        ingest_only(args)
        return

    from backends.kafka_bus import KafkaBus

    ns = f"rescore{secrets.token_hex(3)}-"
    index = ns + names.INDEX_INDICATORS
    store = ElasticsearchStore(
        args.es, ElasticsearchSettings(refresh_interval="30s", request_timeout_s=120), prefix=ns
    )
    bus = KafkaBus(args.kafka, KafkaSettings(partitions=3), prefix=ns)
    clock = FakeClock(T0)
    rescorer = Rescorer(store, bus, clock, Scorer(None), PROFILES.__getitem__,
                        page_size=args.page)  # fmt: skip
    print(f"namespace {ns}; {os.cpu_count()} cores; load {load_avg()}", flush=True)
    try:
        elapsed, points = load(store, args.n, args.batch)
        store.refresh(names.INDEX_INDICATORS)
        print(f"loaded {store.count(names.INDEX_INDICATORS):,} records in {elapsed:.0f} s "
              f"({args.n / elapsed:,.0f}/s); load {load_avg()}", flush=True)  # fmt: skip
        print(f"steady state: the records lose {points:,.0f} score points a day -> about "
              f"that many 1-point re-score writes a day ({points / 86400:.1f}/s)")  # fmt: skip

        if not args.ingestion_only:
            clock.set(T0 + timedelta(hours=1))
            report_pass("pass at T0+1h", *timed_pass(rescorer, args.es, index))
            store.refresh(names.INDEX_INDICATORS)
            read_time(store, args.es, index, clock.now())
            clock.set(T0 + timedelta(days=1))
            report_pass("pass at T0+1d (a day's decay)", *timed_pass(rescorer, args.es, index))
            store.refresh(names.INDEX_INDICATORS)

        alone = [ingest(args, "alone (before)")]
        during: dict[str, float] = {}
        for day, rate in ((30, None), (60, args.throttled)):
            clock.set(T0 + timedelta(days=day))
            rescorer.max_rate = rate
            label = f"T0+{day}d pass, " + (f"throttled to {rate:g}/s" if rate else "unthrottled")
            stop = threading.Event()
            stoppable = rate is not None or args.ingestion_only
            holder: list[tuple[RescoreResult, float, float, int]] = []
            job = threading.Thread(
                target=lambda h, *a: h.append(timed_pass(*a)),
                args=(holder, rescorer, args.es, index, stop if stoppable else None),
            )
            job.start()
            time.sleep(3)
            during[label] = ingest(args, f"during the {label}")
            overlapped = job.is_alive()
            stop.set()
            job.join()
            what = "stopped after ingestion" if stoppable else "ran to the end"
            report_pass(f"{label} ({what}), with ingestion running", *holder[0])
            print(f"(c) the pass was still running when ingestion finished: {overlapped}")
            store.refresh(names.INDEX_INDICATORS)
        alone.append(ingest(args, "alone (after)"))
        base = statistics.mean(alone)
        for label, rate in during.items():
            print(f"(c) ingestion during the {label}: {rate / base:.0%} of alone "
                  f"({rate:,.0f} vs {base:,.0f} indicators/s)")  # fmt: skip
        if not args.ingestion_only:
            rescorer.max_rate = None
            rescorer.run_pass()
            store.refresh(names.INDEX_INDICATORS)
            again = rescorer.run_pass()
            print(f"re-run at T0+60d right after: {again.due} due, {again.written} written")
    finally:
        bus.close()
        store.close()
        cleanup(args, ns)
        print(f"deleted namespace {ns}")


if __name__ == "__main__":
    main()
