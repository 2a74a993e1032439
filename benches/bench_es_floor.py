"""The floor under correlation throughput: Elasticsearch alone indexing what correlation writes.

Takes the documents the correlator really writes for the bench_correlate
workload (N indicators, three agencies, ~30 % duplicates), computed offline on
the embedded store and not timed, and sends them to Elasticsearch as
pre-serialised ``_bulk`` bodies from ``--senders`` threads (no Python work per
document while the clock runs: the cheapest client there is). Elasticsearch's
own cost then bounds what any correlator can reach on this machine.

It also times the pure Python every indicator needs whatever the I/O
(decode, observables, merge, score, audience, the two documents serialised),
one core, no store: the floor of the correlator's own CPU.

Write sets, cumulative:
  records  — one write per indicator on its record (new records created, the
             duplicates' records re-indexed), as the correlator does
  objects  — plus one document per STIX object version (TAXII out)
  heads    — plus the per-id version list the objects index keeps today

    .venv/bin/python benches/bench_es_floor.py --n 50000 --store http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import http.client
import os
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import orjson
from bench_correlate import AGENCIES, es_cpu_s, machine_busy_s, workload  # benches/ is sys.path[0]

from core import envelope, names
from core.access import Agency
from core.ports import Incoming, Query
from core.settings import Settings
from records.agencies import AgencyRegistry
from threatbay.bootstrap import build, correlator_for

KEY_FIELD = "_tb_key"


def documents(n: int, duplicates: float) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """(key, doc) per index as the correlator leaves them on the embedded store."""
    data_dir = Path(tempfile.mkdtemp(prefix="tb-floor-"))
    services = build(Settings(data_dir=data_dir))
    registry = AgencyRegistry(services.store, services.clock)
    for agency_id, jurisdiction, reliability in AGENCIES:
        registry.add_agency(Agency(agency_id, agency_id, jurisdiction,
                                   f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}",
                                   reliability))  # fmt: skip
    worker = correlator_for(services)
    items = workload(n, duplicates)
    offset = 0
    for start in range(0, len(items), 1000):
        messages = [
            Incoming(names.TOPIC_RAW, 0, (offset := offset + 1), m.key, m.value, m.headers)
            for m in envelope.encode(items[start : start + 1000])
        ]
        worker.process(messages)
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for index in (names.INDEX_INDICATORS, names.INDEX_OBJECTS, names.INDEX_OBJECT_VERSIONS):
        docs: list[tuple[str, dict[str, Any]]] = []
        after = None
        while True:
            page = services.store.search(index, Query(limit=5000, after=after))
            docs.extend((h.key, h.doc) for h in page.hits)
            if not page.more:
                break
            after = page.hits[-1].cursor
        out[index] = docs
    services.close()
    return out


def python_floor(n: int, duplicates: float) -> dict[str, float]:
    """Seconds per indicator of each pure step the correlator takes, on one core."""
    from core.clock import SystemClock, format_timestamp
    from core.observables import observables
    from core.policy import record_audience
    from core.services import default_sharing
    from correlate import merge
    from correlate.score import SCORE_THRESHOLDS, AgencyProfile, Scorer
    from records.objects import new_document
    from threatbay.bootstrap import shared_warninglists

    sharing, scorer = default_sharing(), Scorer(shared_warninglists())
    now = SystemClock().now()
    at = format_timestamp(now)
    messages = envelope.encode(workload(n, duplicates))
    steps: dict[str, float] = {}
    timer = time.process_time
    t0 = timer()
    accepted = [a for m in messages for a in envelope.decode(m.value)]
    steps["decode"] = timer() - t0
    t0 = timer()
    found = [observables(a.obj["pattern"])[0] for a in accepted]
    steps["observables"] = timer() - t0
    t0 = timer()
    reports = [
        merge.source_report(a.obj, a.provenance, o) for a, o in zip(accepted, found, strict=True)
    ]
    steps["source report"] = timer() - t0
    records: dict[str, dict[str, Any]] = {}
    t0 = timer()
    for observable, report in zip(found, reports, strict=True):
        record = records.get(observable.key)
        before = merge.change_basis(record) if record is not None else None
        if record is None:
            record = records[observable.key] = merge.new_record(observable)
        merge.apply_report(record, report)
        merge.summarise(record)
        scorer.apply(record, lambda _: AgencyProfile("B", 50), now)
        record["audience"] = record_audience(sharing, record)
        merge.change_kinds(before, record, SCORE_THRESHOLDS)
        orjson.dumps(record)
    steps["merge + score + audience + serialise record"] = timer() - t0
    t0 = timer()
    for item in accepted:
        orjson.dumps(new_document(item, at, sharing))
    steps["object document + serialise"] = timer() - t0
    return {k: v / n for k, v in steps.items()}


def bodies(index: str, docs: list[tuple[str, dict[str, Any]]], per_request: int) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(docs), per_request):
        lines: list[bytes] = []
        for key, doc in docs[start : start + per_request]:
            lines.append(orjson.dumps({"index": {"_index": index, "_id": key}}))
            lines.append(orjson.dumps({**doc, KEY_FIELD: key}))
        out.append(b"\n".join(lines) + b"\n")
    return out


def send(url: str, work: list[bytes], senders: int) -> None:
    parts = urllib.parse.urlsplit(url)
    lock = threading.Lock()
    errors: list[str] = []

    def run() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 9200)
        while True:
            with lock:
                if not work:
                    break
                body = work.pop(0)
            conn.request("POST", "/_bulk?filter_path=errors", body,
                         {"Content-Type": "application/x-ndjson"})  # fmt: skip
            reply = conn.getresponse().read()
            if b'"errors":false' not in reply:
                errors.append(reply[:300].decode())
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"bulk errors: {errors[0]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--store", default="http://127.0.0.1:9200")
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--per-request", type=int, default=1000)
    parser.add_argument("--refresh", default="1s", help="refresh_interval of the indices")
    args = parser.parse_args()

    steps = python_floor(args.n, args.duplicates)
    python_us = sum(steps.values()) * 1e6
    for step, seconds in steps.items():
        print(f"python floor {step:>45}: {seconds * 1e6:6.1f} us per indicator")
    print(f"python floor {'total (one core, no I/O)':>45}: {python_us:6.1f} us per indicator")
    docs = documents(args.n, args.duplicates)
    records = docs[names.INDEX_INDICATORS]
    objects = docs[names.INDEX_OBJECTS]
    heads = [d for d in docs[names.INDEX_OBJECT_VERSIONS] if d[0].endswith("|#versions")]
    # One record write per indicator: the duplicates re-index a record already there.
    repeats = (records * (1 + args.n // max(1, len(records))))[: args.n - len(records)]
    from backends.elasticsearch_store import ElasticsearchStore
    from core.settings import ElasticsearchSettings

    cores = os.cpu_count() or 1
    print(f"{args.n} indicators -> {len(records)} records, {len(objects)} object versions, "
          f"{len(heads)} version lists; {args.senders} senders, "
          f"{args.per_request} docs/request")  # fmt: skip
    for label, sets in (
        ("records", [(names.INDEX_INDICATORS, records + repeats)]),
        (
            "records+objects",
            [(names.INDEX_INDICATORS, records + repeats), (names.INDEX_OBJECTS, objects)],
        ),  # fmt: skip
        (
            "records+objects+heads",
            [
                (names.INDEX_INDICATORS, records + repeats),
                (names.INDEX_OBJECTS, objects),
                (names.INDEX_OBJECT_VERSIONS, heads),
            ],
        ),  # fmt: skip
    ):
        prefix = f"floor{uuid.uuid4().hex[:8]}-"
        store = ElasticsearchStore(
            args.store, ElasticsearchSettings(refresh_interval=args.refresh), prefix=prefix
        )
        for index, _ in sets:
            store._ensure_index(index)  # the real mappings (dynamic: false)
        # Interleave the indices' requests as the correlator does.
        per_index = [bodies(prefix + index, d, args.per_request) for index, d in sets]
        work = [b for i in range(max(map(len, per_index))) for p in per_index for b in p[i : i + 1]]
        writes = sum(len(d) for _, d in sets)
        t0, busy0, es0 = time.perf_counter(), machine_busy_s(), es_cpu_s(args.store)
        send(args.store, work, args.senders)
        wall = time.perf_counter() - t0
        busy, es = machine_busy_s() - busy0, es_cpu_s(args.store) - es0
        print(f"{label:>22}: {writes} writes in {wall:.2f}s -> {args.n / wall:,.0f} indicators/s; "
              f"ES {es / args.n * 1e6:,.0f} us CPU per indicator "
              f"({es / writes * 1e6:,.0f} per write); "
              f"machine {busy / (wall * cores):.0%} busy")  # fmt: skip
        per = es / args.n * 1e6 + python_us
        print(f"{'':>24}at 10,000 indicators/s: ES {es / args.n * 1e6 / 100:.2f} cores + "
              f"Python floor {python_us / 100:.2f} cores = {per / 100:.2f} of {cores} cores "
              f"(Kafka not counted)")  # fmt: skip
        store.drop_indices()
        store.close()


if __name__ == "__main__":
    main()
