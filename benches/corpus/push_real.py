"""Push → searchable for the real three-agency corpus through ``threatbay serve`` (issue #17).

Starts ``threatbay serve`` (every stage in one process) on Kafka +
Elasticsearch (``--kafka``, own namespace, dropped afterwards) or on the
embedded default, registers the agencies GD / HK / MO, pushes each agency's
stream (built by ``build_corpus.py``, outside the repository) through its
TAXII inbox with three concurrent clients, and measures the time until every
record is searchable: the indicators index counts exactly the distinct
observables of the accepted indicators (computed here with
``core.observables``), each record names exactly the agencies that reported
it, and ``threatbay status`` shows no lag. Prints the figures README
"Benchmarks" quotes.

    .venv/bin/python benches/corpus/push_real.py --corpus /tmp/real-corpus --kafka
    .venv/bin/python benches/corpus/push_real.py --corpus /tmp/real-corpus   # embedded
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.access import Agency  # noqa: E402
from core.errors import InvalidPattern  # noqa: E402
from core.names import INDEX_INDICATORS  # noqa: E402
from core.observables import observables  # noqa: E402
from core.settings import Settings  # noqa: E402
from ingest.validate import validation_error  # noqa: E402
from records.agencies import AgencyRegistry  # noqa: E402
from threatbay.bootstrap import build  # noqa: E402

TAXII = "application/taxii+json;version=2.1"
_PLACEHOLDER = "identity--00000000-0000-4000-8000-000000000000"  # replaced by the stream's own
AGENCIES = {
    "GD": Agency("gd-cert", "GD national CERT (corpus)", "GD", _PLACEHOLDER, "B"),
    "HK": Agency("hk-cert", "HK CERT (corpus)", "HK", _PLACEHOLDER, "A"),
    "MO": Agency("mo-cert", "MO CERT (corpus)", "MO", _PLACEHOLDER, "B"),
}


def load(corpus: Path, indicators_only: bool) -> dict[str, list[dict[str, Any]]]:
    streams: dict[str, list[dict[str, Any]]] = {}
    for code in AGENCIES:
        objs = [json.loads(line) for line in (corpus / f"{code}.jsonl").open(encoding="utf-8")]
        if indicators_only:
            objs = [o for o in objs if o.get("type") in ("indicator", "identity")]
        streams[code] = objs
    return streams


def expected_records(streams: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Canonical key -> agencies, over the indicators ingest accepts."""
    found: dict[str, set[str]] = {}
    for code, objs in streams.items():
        for o in objs:
            if o.get("type") != "indicator" or o.get("pattern_type", "stix") != "stix":
                continue
            if validation_error(o) is not None:
                continue
            try:
                for ob in observables(o["pattern"]):
                    found.setdefault(ob.key, set()).add(AGENCIES[code].id)
            except InvalidPattern:
                continue
    return found


def register(settings: Settings, streams: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Agencies whose STIX identity is their stream's own identity object; Basic auth headers."""
    services = build(settings)
    try:
        registry = AgencyRegistry(services.store, services.clock)
        headers: dict[str, str] = {}
        for code, agency in AGENCIES.items():
            identity = next(o["id"] for o in streams[code] if o["type"] == "identity")
            registry.add_agency(
                Agency(
                    agency.id,
                    agency.name,
                    agency.jurisdiction,
                    identity,
                    agency.reliability,
                    roles=("publisher", "analyst", "admin"),
                )  # fmt: skip
            )
            cred, secret = registry.add_credential(agency.id)
            token = base64.b64encode(f"{cred.key_id}:{secret}".encode()).decode()
            headers[code] = f"Basic {token}"
        return headers
    finally:
        services.close()


def push(base: str, code: str, auth: str, objs: list[dict[str, Any]], size: int,
         out: dict[str, Any]) -> None:  # fmt: skip
    headers = {"Authorization": auth, "Accept": TAXII, "Content-Type": TAXII}
    url = f"{base}/taxii2/api/collections/inbox-{AGENCIES[code].id}/objects/"
    accepted = failed = 0
    with httpx.Client(timeout=120) as client:
        for i in range(0, len(objs), size):
            body = json.dumps({"objects": objs[i : i + size]}).encode()
            r = client.post(url, content=body, headers=headers)
            r.raise_for_status()
            accepted += r.json()["success_count"]
            failed += r.json()["failure_count"]
    out[code] = {"accepted": accepted, "failed": failed, "done_at": time.monotonic()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True, help="build_corpus.py --out directory")
    ap.add_argument("--kafka", action="store_true", help="Kafka + Elasticsearch (else embedded)")
    ap.add_argument("--kafka-bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--es-url", default="http://127.0.0.1:9200")
    ap.add_argument("--envelope", type=int, default=500, help="objects per TAXII POST")
    ap.add_argument("--indicators-only", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    streams = load(args.corpus, args.indicators_only)
    t = time.monotonic()
    expected = expected_records(streams)
    indicators = sum(1 for s in streams.values() for o in s if o["type"] == "indicator")
    print(f"corpus: {sum(len(s) for s in streams.values()):,} objects, {indicators:,} indicators; "
          f"{len(expected):,} distinct observables expected "
          f"({sum(1 for a in expected.values() if len(a) > 1):,} reported by several agencies; "
          f"computed in {time.monotonic() - t:.1f} s)")  # fmt: skip

    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="threatbay-corpus-"))
    port = 18000 + int(run[:3], 16) % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREATBAY_")}
    env |= {"THREATBAY_DATA_DIR": str(tmp), "THREATBAY_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    namespace = f"corpus-{run}-"
    if args.kafka:
        env |= {"THREATBAY_BUS_URL": f"kafka://{args.kafka_bootstrap}",
                "THREATBAY_STORE_URL": args.es_url, "THREATBAY_NAMESPACE": namespace}  # fmt: skip
    settings = Settings(data_dir=tmp, bus_url=env.get("THREATBAY_BUS_URL", ""),
                        store_url=env.get("THREATBAY_STORE_URL", ""),
                        namespace=env.get("THREATBAY_NAMESPACE", ""))  # fmt: skip
    auth = register(settings, streams)
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "threatbay"), "serve"], env=env,
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    "server did not start:\n" + (tmp / "server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        time.sleep(10)  # warninglists, consumer-group joins
        pushed: dict[str, Any] = {}
        t0 = time.monotonic()
        threads = [
            threading.Thread(
                target=push, args=(base, c, auth[c], streams[c], args.envelope, pushed)
            )
            for c in AGENCIES
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        push_s = max(p["done_at"] for p in pushed.values()) - t0
        accepted = sum(p["accepted"] for p in pushed.values())
        print(f"pushed: {accepted:,} accepted, {sum(p['failed'] for p in pushed.values())} "
              f"refused, in {push_s:.1f} s ({accepted / push_s:,.0f} objects/s)")  # fmt: skip

        services = build(settings)
        try:
            store = services.store
            count = -1
            while True:
                store.refresh(INDEX_INDICATORS)
                count = store.count(INDEX_INDICATORS)
                if count >= len(expected):
                    break
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"only {count:,} of {len(expected):,} records after "
                                     f"{args.timeout:.0f} s")  # fmt: skip
                time.sleep(1.0)
            searchable_s = time.monotonic() - t0
            keys = sorted(expected)
            wrong, missing = 0, 0
            for i in range(0, len(keys), 1000):
                chunk = keys[i : i + 1000]
                got = store.get_many(INDEX_INDICATORS, chunk)
                for k in chunk:
                    if k not in got:
                        missing += 1
                    elif set(got[k].doc["agencies"]) != expected[k]:
                        wrong += 1
        finally:
            services.close()
        print(f"searchable: {count:,} records (expected {len(expected):,}; missing {missing}, "
              f"wrong agencies {wrong}) {searchable_s:.1f} s after the first push "
              f"({accepted / searchable_s:,.0f} objects/s end to end)")  # fmt: skip
        status = subprocess.run([str(REPO / ".venv" / "bin" / "threatbay"), "status", "--json"],
                                env=env, capture_output=True, text=True, timeout=120,
                                check=False)  # fmt: skip
        report = json.loads(status.stdout.strip().splitlines()[-1])
        lags = {s["stage"]: s["lag"] for s in report["stages"] if s.get("group")}
        print(f"threatbay status: lag {lags}, intel.dlq {report['dlq_total']}, "
              f"records {report['records']}, alerts {report['alerts']} "
              f"{report['alerts_by_level']}, problems {report['problems']}")  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if args.kafka:
            drop(args, namespace)
        shutil.rmtree(tmp, ignore_errors=True)


def drop(args: argparse.Namespace, namespace: str) -> None:
    """Remove the run's indices and topics (best effort)."""
    try:
        listed = httpx.get(f"{args.es_url}/{namespace}*", timeout=30).json()
        if listed:
            httpx.delete(f"{args.es_url}/{','.join(listed)}", timeout=60)
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=args.kafka_bootstrap)
        try:
            ours = [t for t in admin.list_topics() if t.startswith(namespace)]
            if ours:
                admin.delete_topics(ours)
        finally:
            admin.close()
    except Exception as exc:  # a leftover namespace harms no one
        print(f"cleanup of {namespace} incomplete: {exc!r}")


if __name__ == "__main__":
    main()
