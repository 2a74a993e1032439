"""The ceiling of any Python correlator here: topic to Elasticsearch with no correlation at all.

``--workers`` processes consume ``intel.stix.raw`` in one group with the real
Kafka consumer (``KafkaBus``), decode every message (``envelope.decode``) and
write, per indicator, exactly the documents the real correlator writes (its
record, its object version, its version list), then commit. The documents
are computed offline beforehand (the correlator on the embedded store, not
timed), so the loop does no merge, no score, no reads:

  ``--client raw``   the documents' bulk lines are pre-serialised too; the loop
                     only joins bytes and posts them (http.client): nothing
                     cheaper can talk to Kafka and Elasticsearch from Python;
  ``--client store`` the documents go through ``ElasticsearchStore.put_many``
                     (the elasticsearch client, serialising in the loop), as
                     the correlator's writes do.

With the raw client, ``--reads`` adds the real-time reads by key a correlator
batch makes (``_mget`` of the records this process has not written before, as
its LRU would, and of the version lists and references documents of the
batch's ids), and ``--changes`` the record changes it publishes on
``intel.records.changes`` (``change_messages``, real producer).

Whatever the correlator does on top of this costs more, so if this stays
under a target with the machine saturated, no Python correlator reaches it
on this machine. Same workload as ``bench_correlate.py``.

    .venv/bin/python benches/bench_pipeline_floor.py --n 50000 --workers 2 \
        --bus kafka://127.0.0.1:9092 --store http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import http.client
import os
import pickle
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import orjson
from bench_correlate import drive_workers, workload  # benches/ is sys.path[0]
from bench_es_floor import documents

from backends.elasticsearch_store import KEY_FIELD, ElasticsearchStore
from core import envelope, names
from core.ports import Bus, Put
from core.settings import ElasticsearchSettings, Settings
from records.changes import change_messages
from threatbay.bootstrap import build

WRITES = (names.INDEX_INDICATORS, names.INDEX_OBJECTS, names.INDEX_OBJECT_VERSIONS)


def per_indicator(n: int, duplicates: float) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """Indicator id -> the (index, key, document) writes the correlator makes for it."""
    docs = documents(n, duplicates)
    record_of = {i: key for key, doc in docs[names.INDEX_INDICATORS] for i in doc["stix_ids"]}
    records = dict(docs[names.INDEX_INDICATORS])
    heads = dict(docs[names.INDEX_OBJECT_VERSIONS])
    out: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for key, doc in docs[names.INDEX_OBJECTS]:
        stix_id = doc["id"]
        record_key = record_of[stix_id]
        out[stix_id] = [
            (names.INDEX_INDICATORS, record_key, records[record_key]),
            (names.INDEX_OBJECTS, key, doc),
            (names.INDEX_OBJECT_VERSIONS, f"{stix_id}|#versions", heads[f"{stix_id}|#versions"]),
        ]
    return out


def bulk_lines(prefix: str, writes: list[tuple[str, str, dict[str, Any]]]) -> bytes:
    lines = b""
    for index, key, doc in writes:
        lines += orjson.dumps({"index": {"_index": prefix + index, "_id": key}}) + b"\n"
        lines += orjson.dumps({**doc, KEY_FIELD: key}) + b"\n"
    return lines


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, ctype: str) -> bytes:
    conn.request("POST", path, body, {"Content-Type": ctype})
    return conn.getresponse().read()


def reads(conn: http.client.HTTPConnection, prefix: str, record_keys: list[str],
          ids: list[str]) -> None:  # fmt: skip
    """The reads by key of a correlator batch besides its writes."""
    heads = [f"{i}|#versions" for i in ids] + [f"{i}|#refs" for i in ids]
    for index, keys in ((names.INDEX_INDICATORS, record_keys),
                        (names.INDEX_OBJECT_VERSIONS, heads)):  # fmt: skip
        if keys:
            orjson.loads(_post(conn, f"/{prefix}{index}/_mget", orjson.dumps({"ids": keys}),
                               "application/json"))  # fmt: skip


def publish_changes(bus: Bus, writes: list[tuple[str, str, dict[str, Any]]]) -> None:
    changes = [{"key": key, "kinds": ["new"], "at": "", "record": doc} for _, key, doc in writes]
    bus.publish(names.TOPIC_CHANGES, change_messages(changes))


def child(args: argparse.Namespace) -> None:
    """One process: load the writes, say ready, wait for go, consume and write."""
    plan: dict[str, list[tuple[str, str, dict[str, Any]]]] = pickle.loads(
        Path(args.plan).read_bytes()
    )
    raw = {i: bulk_lines(args.namespace, w) for i, w in plan.items()}
    puts_of = {i: {ix: [Put(k, d, blind=True) for ix2, k, d in w if ix2 == ix] for ix in WRITES}
               for i, w in plan.items()}  # fmt: skip
    services = build(Settings(data_dir=Path(args.data_dir), bus_url=args.bus,
                              store_url=args.store, namespace=args.namespace))  # fmt: skip
    consumer = services.bus.consumer(names.TOPIC_RAW, args.group, from_beginning=False)
    parts = urllib.parse.urlsplit(args.store)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 9200)
    written: set[str] = set()  # record keys this process wrote (the correlator's LRU)
    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.is_set():
        messages = consumer.poll(max_records=args.max_messages, timeout_s=0.5)
        if not messages:
            continue
        t0, cpu0 = time.time(), time.process_time()
        ids = [a.obj["id"] for m in messages for a in envelope.decode(m.value)]
        if args.client == "raw":
            record_writes = {plan[i][0][1]: plan[i][0] for i in ids}
            if args.reads:
                unknown = sorted(k for k in record_writes if k not in written)
                reads(conn, args.namespace, unknown, ids)
                written.update(record_writes)
            body = b"".join(raw[i] for i in ids)
            if b'"errors":false' not in _post(conn, "/_bulk?filter_path=errors", body,
                                              "application/x-ndjson"):  # fmt: skip
                sys.exit("bulk errors")
            if args.changes:
                publish_changes(services.bus, list(record_writes.values()))
        else:
            for index in WRITES:
                puts = [put for i in ids for put in puts_of[i][index]]
                if not all(o.ok for o in services.store.put_many(index, puts)):
                    sys.exit("store refused writes")
        consumer.commit()
        cpu = time.process_time() - cpu0
        print(f"batch {len(ids)} {t0:.6f} {time.time():.6f} {cpu:.6f}", flush=True)
    consumer.close()
    services.close()


def run(args: argparse.Namespace, plan_file: Path, namespace: str, data_dir: Path) -> None:
    group = f"floor-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, __file__, "--child", "--plan", str(plan_file), "--group", group,
           "--namespace", namespace, "--data-dir", str(data_dir), "--bus", args.bus,
           "--store", args.store, "--client", args.client, *(["--reads"] * args.reads),
           *(["--changes"] * args.changes),
           "--max-messages", str(args.max_messages)]  # fmt: skip
    done, elapsed, cpu, (window, busy, es) = drive_workers(cmd, args.workers, args.n, args.store)
    if done < args.n:
        sys.exit(f"only {done} of {args.n} indicators written")
    cores = os.cpu_count() or 1
    extra = " +reads" * args.reads + " +changes" * args.changes
    print(
        f"client={args.client}{extra} workers={args.workers} "
        f"messages/poll={args.max_messages}: {args.n} indicators in {elapsed:.2f}s -> "
        f"{args.n / elapsed:,.0f} indicators/s"
    )
    print(
        f"  worker CPU {cpu / args.n * 1e6:,.0f} us per indicator (consume, decode, write); "
        f"ES {es / args.n * 1e6:,.0f} us; machine {busy / (window * cores):.0%} busy of "
        f"{cores} cores from go to the last batch ({window:.1f} s, incl. group joins)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--bus", default="kafka://127.0.0.1:9092")
    parser.add_argument("--store", default="http://127.0.0.1:9200")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client", choices=("raw", "store"), default="raw")
    parser.add_argument("--reads", action="store_true", help="also the reads by key")
    parser.add_argument("--changes", action="store_true", help="also the change publish")
    parser.add_argument("--max-messages", type=int, default=200, help="messages per poll")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--plan", "--group", "--namespace", "--data-dir"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="tb-pfloor-"))
    plan_file = data_dir / "plan.pickle"
    plan_file.write_bytes(pickle.dumps(per_indicator(args.n, args.duplicates)))
    namespace = f"pfloor{uuid.uuid4().hex[:8]}-"
    store = ElasticsearchStore(args.store, ElasticsearchSettings(), prefix=namespace)
    for index in WRITES:
        store._ensure_index(index)  # the real mappings (dynamic: false)
    services = build(Settings(data_dir=data_dir, bus_url=args.bus, store_url=args.store,
                              namespace=namespace))  # fmt: skip
    items = workload(args.n, args.duplicates)
    for start in range(0, len(items), 1000):
        services.bus.publish(names.TOPIC_RAW, envelope.encode(items[start : start + 1000]))
    services.close()
    try:
        run(args, plan_file, namespace, data_dir)
        for index in WRITES:
            store.refresh(index)
        counts = [store.count(index) for index in WRITES]
        print(f"  store: {counts[0]} records, {counts[1]} object versions, {counts[2]} lists")
    finally:
        store.drop_indices()
        store.close()


if __name__ == "__main__":
    main()
