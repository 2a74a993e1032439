"""ThreatBay's lookup against the raw Elasticsearch read under it, and the alert list,
at scale on real Elasticsearch (issues 5 "Targets" and 25).

Loads N indicator records (default 1M) and K alerts (default 10k) straight into
Elasticsearch. Records are written as the correlator writes them, per-reader views
included (``view_records.py``, shared with ``bench_exports.py``: record ``i`` is
``observable(i)``, 60 % IPv4, 30 % domains, 10 % SHA-256), so the reader
``hk-govcert`` finds them; alerts are built by ``core.alerts.open_alert`` over those
records. Serves the API with uvicorn (``bench_api_app.py``: ``--api-workers``
processes sharing one listening socket, default 1) and drives it with ``wrk``,
``--duration`` seconds per step, at each of ``--conns`` connections:

- ``lookup``: GET /api/v1/lookup over 700 loaded values and 300 absent ones;
- ``es-mget``: the read the lookup makes, sent to Elasticsearch directly in the same
  run at the same connections, right after it: ``POST /<ns>threatbay-indicators/_mget``
  with ``{"ids": [...]}`` of the same value's candidate keys (``core.lookup.candidate_keys``,
  the store's ``doc_id``), in the same order. Per connection count it prints the
  ratio of the two rates (what the API's authentication, canonicalisation, sharing
  decision and JSON cost on top of the store): target lookup >= 0.50 x es-mget;
- ``alerts``: GET /api/v1/alerts?limit=50.

Targets: lookup p99 <= 25 ms, alert list p99 <= 100 ms. Prints figures; asserts
nothing about speed. Own index namespace, dropped at the end unless named with
``--namespace`` (then kept, so later runs can reuse it with ``--skip-load``).

    .venv/bin/python benches/bench_api_scale.py [--records 1000000] [--alerts 10000]
        [--load-budget-s 600] [--duration 15] [--es http://127.0.0.1:9200]
        [--namespace scale-issue5- [--skip-load]] [--conns 1,4,16]
        [--routes lookup,es-mget,alerts] [--api-workers 1] [--alert-page-ttl 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
from view_records import READER, T0, Loader, observable, register, ts

from backends.elasticsearch_store import ElasticsearchStore, doc_id
from core import names
from core.access import bearer_token
from core.alerts import Level, Trigger, Version, open_alert
from core.lookup import candidate_keys
from core.ports import Missing, Put
from core.settings import ElasticsearchSettings, Settings
from records.alerts import AlertBook
from records.books import records_of
from threatbay.bootstrap import build

BENCHES = Path(__file__).resolve().parent
PY = str(BENCHES.parent / ".venv/bin/python")
TARGET_MS = {"lookup": 25.0, "alerts": 100.0}
RATIO_TARGET = 0.50
ROUTES = ("lookup", "es-mget", "alerts")


def value_of(i: int) -> str:
    """The value an analyst would paste to find record ``i``."""
    return observable(i)[2]


def load_records(loader: Loader, total: int, batch: int, budget_s: float) -> tuple[int, float]:
    """Planned on this thread, written two batches in flight; stops at ``budget_s``.
    Returns (records loaded, seconds)."""
    start = time.perf_counter()
    loaded = 0
    pending: list[Future[int]] = []
    with ThreadPoolExecutor(2) as pool:
        for lo in range(0, total, batch):
            if time.perf_counter() - start > budget_s:
                print(f"  load budget {budget_s:.0f}s reached at {lo} records", flush=True)
                break
            puts, partials = loader.batch(lo, min(total, lo + batch))
            while len(pending) >= 2:
                loaded += pending.pop(0).result()
            pending.append(pool.submit(loader.write, puts, partials))
            if (lo // batch) % 10 == 0 and lo:
                el = time.perf_counter() - start
                print(f"  {lo:>9} records queued, {lo / el:,.0f}/s", flush=True)
        for f in pending:
            loaded += f.result()
    return loaded, time.perf_counter() - start


def load_alerts(loader: Loader, total: int, records: int) -> tuple[int, float]:
    """``total`` open alerts built by core.alerts.open_alert, each over 1–3 loaded records,
    stored as ``AlertBook.commit`` stores a first version: the head (``threatbay-alert-heads``)
    and the version materialised for the readers of its first record's view (the readers the
    alert engine routes that record's change to). Events are not written: lists never read
    them."""
    services = loader.services
    book = records_of(services).alerts
    audiences = book.audience_set()
    start = time.perf_counter()
    levels = (Level.RED, Level.ORANGE, Level.YELLOW, Level.BLUE)
    loaded = 0
    heads: list[Put] = []
    versions: list[Put] = []
    for a in range(total):
        inds = []
        readers: frozenset[str] = frozenset()
        for k in range(1 + a % 3):
            plan = loader.plan((a * 97 + k * 13) % max(records, 1))
            rec = loader.document(plan)[0]
            if not readers:
                readers = plan.full_tokens or next((p.tokens for p in plan.partials), readers)
            inds.append(
                {f: rec[f] for f in ("key", "observable_type", "value", "score", "tlp", "agencies")}
                | {
                    "jurisdictions": rec["jurisdictions"],
                    "sources": [
                        {f: s[f] for f in ("agency", "jurisdiction", "tlp", "recipients")}
                        for s in rec["sources"]
                    ],
                }
            )
        level = levels[a % 4]
        at = T0 + timedelta(minutes=a)
        trig = Trigger(
            rule=f"{level.value.lower()}-rule",
            family="indicator",
            level=level,
            dedup_key=f"indicator|scale|{a}",
            category="malicious-infrastructure",
            title=f"{level.value}: {inds[0]['value']}",
            trigger_id=f"t{a}",
            at=ts(at),
            jurisdictions=tuple(sorted({j for i in inds for j in i["jurisdictions"]})),
            agencies=tuple(sorted({g for i in inds for g in i["agencies"]})),
            indicators=tuple(inds),
            measures=("Block it.",),
        )
        alert, events = open_alert(trig, at)
        book.stamp(alert, events)
        version = Version(alert["id"], readers, alert)
        head = {
            "dedup_key": trig.dedup_key,
            "rev": 1,
            "versions": [{"key": version.key, "readers": sorted(readers), "alert": alert}],
        }
        heads.append(Put(key=trig.dedup_key, doc=head, blind=True))
        doc = AlertBook.version_document(version, audiences, 1)
        versions.append(Put(key=version.key, doc=dict(doc), blind=True))
        if len(versions) >= 2000 or a == total - 1:
            services.store.put_many(names.INDEX_ALERT_HEADS, heads)
            loaded += sum(1 for r in services.store.put_many(names.INDEX_ALERTS, versions) if r.ok)
            heads, versions = [], []
    return loaded, time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LUA = """
local token = "{token}"
local paths = {{ {paths} }}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {{["Authorization"] = token}})
end
"""
# The raw Elasticsearch request: POST one JSON body per value, in the lookup's order.
LUA_POST = """
local path = "{path}"
local headers = {{["Content-Type"] = "application/json"}}
local bodies = {{ {bodies} }}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", path, headers, bodies[(i % #bodies) + 1])
end
"""


def lua_string(text: str) -> str:
    """``text`` as a Lua long string (no escapes inside, so JSON goes in as it is)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def mget_body(value: str) -> str:
    """The ``_mget`` body the lookup of ``value`` sends: the ids of its candidate keys, as
    ``api/indicator_queries.py`` ``lookup`` computes them and the store names them."""
    return json.dumps({"ids": [doc_id(k) for k in dict.fromkeys(candidate_keys(value))]})


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v if unit == "ms" else v * 1000 if unit == "s" else v * 6e4


def run_wrk(url: str, script: Path, conns: int, duration: int) -> dict[str, float]:
    """One bounded wrk run; rps, p50, p99 (ms) and non-2xx count."""
    cmd = [
        "wrk",
        f"-t{min(conns, 2)}",
        f"-c{conns}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    if errs:
        print("   ", errs.group(0))
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": _ms(p50.group(1)) if p50 else float("nan"),
        "p99": _ms(p99.group(1)) if p99 else float("nan"),
        "non2xx": float(bad.group(1)) if bad else 0.0,
    }


def row(route: str, conns: int, r: dict[str, float]) -> str:
    return (
        f"{route:7} c={conns:<3} {r['rps']:8.1f} rps  p50 {r['p50']:7.2f} ms  "
        f"p99 {r['p99']:7.2f} ms  non-2xx {r['non2xx']:.0f}"
    )


def ratio_line(conns: int, lookup: dict[str, float], mget: dict[str, float]) -> str:
    ratio = lookup["rps"] / mget["rps"] if mget["rps"] else float("nan")
    return (
        f"c={conns:<3} lookup/es-mget rate ratio {ratio:.2f} (target >= {RATIO_TARGET:.2f}), "
        f"lookup p99 {lookup['p99']:.1f} ms (target <= {TARGET_MS['lookup']:.0f})"
    )


def wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(240):
        if server.poll() is not None:
            sys.exit(f"API server exited with {server.returncode}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit("API server did not answer /healthz in 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=4000)
    ap.add_argument("--load-budget-s", type=float, default=600.0)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--conns", default="1,4,16")
    ap.add_argument("--routes", default=",".join(ROUTES), help=f"any of {','.join(ROUTES)}")
    ap.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--es", default="http://127.0.0.1:9200")
    ap.add_argument(
        "--namespace", default=None, help="fixed index prefix, kept after the run (reusable)"
    )
    ap.add_argument(
        "--skip-load", action="store_true", help="reuse the records and alerts of --namespace"
    )
    ap.add_argument(
        "--alert-page-ttl", type=float, default=None, help="AlertPages TTL in s (0 = off)"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    if args.skip_load and not args.namespace:
        sys.exit("--skip-load needs --namespace (the dataset to reuse)")
    routes = args.routes.split(",")
    if unknown := set(routes) - set(ROUTES):
        sys.exit(f"unknown routes {sorted(unknown)}: use {','.join(ROUTES)}")
    conns_steps = [int(c) for c in args.conns.split(",")]

    keep = args.namespace is not None
    namespace = args.namespace or f"scale-{secrets.token_hex(4)}-"
    tmp = Path(tempfile.mkdtemp(prefix="tb-scale-"))
    env = dict(
        os.environ,
        THREATBAY_NAMESPACE=namespace,
        THREATBAY_STORE_URL=args.es,
        THREATBAY_BUS_URL=f"sqlite:///{tmp / 'bus.sqlite3'}",
        THREATBAY_DATA_DIR=str(tmp),
    )
    if args.alert_page_ttl is not None:
        env["THREATBAY_API__ALERT_PAGE_TTL_S"] = str(args.alert_page_ttl)
    services = build(
        Settings(
            data_dir=tmp,
            namespace=namespace,
            store_url=args.es,
            bus_url=env["THREATBAY_BUS_URL"],
            elasticsearch=ElasticsearchSettings(refresh_interval="30s", request_timeout_s=120),
        )
    )
    store = services.store
    assert isinstance(store, ElasticsearchStore)
    server: subprocess.Popen[bytes] | None = None
    results: list[tuple[str, int, dict[str, float]]] = []
    try:
        register(services)  # before the loader: the views are planned for these readers
        records_only = (Missing("view_of"),)
        if args.skip_load:
            # Records are ``observable(i)`` for i < count, so the count is enough to reuse them.
            n_rec = store.count(names.INDEX_INDICATORS, records_only)
            print(f"namespace {namespace}; reusing {n_rec:,} records (--skip-load)")
            if n_rec == 0:
                sys.exit(f"namespace {namespace} holds no records: run once without --skip-load")
        else:
            print(
                f"namespace {namespace}; loading {args.records:,} records "
                f"in batches of {args.batch}"
            )
            loader = Loader(services)
            n_rec, t_rec = load_records(loader, args.records, args.batch, args.load_budget_s)
            print(f"records: {n_rec:,} in {t_rec:.1f}s = {n_rec / t_rec:,.0f} docs/s", flush=True)
            n_al, t_al = load_alerts(loader, args.alerts, n_rec)
            print(f"alerts: {n_al:,} in {t_al:.1f}s = {n_al / t_al:,.0f} docs/s", flush=True)
        t = time.perf_counter()
        store.refresh(names.INDEX_INDICATORS)
        store.refresh(names.INDEX_ALERTS)
        store.refresh(names.INDEX_ALERT_HEADS)
        print(
            f"refresh: {time.perf_counter() - t:.1f}s; records in index: "
            f"{store.count(names.INDEX_INDICATORS, records_only):,} (all documents, partial "
            f"views included: {store.count(names.INDEX_INDICATORS):,}), "
            f"alerts: {store.count(names.INDEX_ALERTS):,}"
        )

        cred, secret = records_of(services).agencies.add_credential(READER.id)
        token = "Bearer " + bearer_token(cred.key_id, secret)

        port = free_port()
        server = subprocess.Popen(
            [PY, str(BENCHES / "bench_api_app.py"), str(port), str(args.api_workers)],
            cwd=BENCHES,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server)
        print(f"API: {args.api_workers} uvicorn worker process(es) on {base}")
        rng = random.Random(5)
        existing = [value_of(rng.randrange(n_rec)) for _ in range(700)]
        missing = [f"192.0.2.{k % 250}" if k % 2 else f"absent{k}.example" for k in range(300)]
        values = existing + missing
        rng.shuffle(values)
        auth = {"Authorization": token}
        mget_path = f"/{namespace}{names.INDEX_INDICATORS}/_mget"
        seen = 0
        for value in existing[:50]:
            check = httpx.get(
                base + "/api/v1/lookup", params={"value": value}, headers=auth, timeout=10
            )
            check.raise_for_status()
            seen += bool(check.json()["records"])
            if value == existing[0]:
                print(
                    f"check lookup {value}: HTTP {check.status_code}, "
                    f"records={len(check.json()['records'])}"
                )
        print(f"check lookup: {seen} of the first 50 loaded values found by {READER.id}")
        raw = httpx.post(
            args.es + mget_path,
            content=mget_body(existing[0]),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        print(
            f"check es-mget {existing[0]}: HTTP {raw.status_code}, found="
            f"{sum(1 for d in raw.json().get('docs', []) if d.get('found'))}"
        )
        check = httpx.get(base + "/api/v1/alerts", params={"limit": 50}, headers=auth, timeout=30)
        print(
            f"check alerts: HTTP {check.status_code}, "
            f"items={len(check.json().get('items', [])) if check.status_code == 200 else '-'}"
        )
        lookup_script = tmp / "lookup.lua"
        paths = ", ".join(f'"/api/v1/lookup?value={v}"' for v in values)
        lookup_script.write_text(LUA.format(token=token, paths=paths))
        mget_script = tmp / "es-mget.lua"
        bodies = ", ".join(lua_string(mget_body(v)) for v in values)
        mget_script.write_text(LUA_POST.format(path=mget_path, bodies=bodies))
        alerts_script = tmp / "alerts.lua"
        alerts_script.write_text(LUA.format(token=token, paths='"/api/v1/alerts?limit=50"'))
        steps = (
            ("lookup", base, lookup_script),
            ("es-mget", args.es, mget_script),
        )
        for conns in conns_steps:
            step: dict[str, dict[str, float]] = {}
            for route, url, script in steps:
                if route in routes:
                    step[route] = run_wrk(url, script, conns, args.duration)
                    results.append((route, conns, step[route]))
                    print(row(route, conns, step[route]), flush=True)
            if "lookup" in step and "es-mget" in step:
                print("  " + ratio_line(conns, step["lookup"], step["es-mget"]), flush=True)
        if "alerts" in routes:
            for conns in conns_steps:
                r = run_wrk(base, alerts_script, conns, args.duration)
                results.append(("alerts", conns, r))
                print(row("alerts", conns, r), flush=True)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        if keep:
            print(f"kept namespace {namespace} (reuse with --namespace {namespace} --skip-load)")
        else:
            store.drop_indices()
        services.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\napi workers: {args.api_workers}")
    print("route    conns      rps   p50 ms   p99 ms  target  within")
    for route, conns, r in results:
        target = TARGET_MS.get(route)
        if target is None:
            verdict, shown = ("yes" if r["non2xx"] == 0 else "NO"), "      -"
        else:
            verdict = "yes" if r["p99"] <= target and r["non2xx"] == 0 else "NO"
            shown = f"{target:7.0f}"
        print(
            f"{route:7} {conns:>6} {r['rps']:8.1f} {r['p50']:8.2f} {r['p99']:8.2f} "
            f"{shown}  {verdict}"
        )
    by = {(route, conns): r for route, conns, r in results}
    for conns in conns_steps:
        if ("lookup", conns) in by and ("es-mget", conns) in by:
            print(ratio_line(conns, by["lookup", conns], by["es-mget", conns]))
    for route, target in TARGET_MS.items():
        if route not in routes:
            continue
        within = [
            r["rps"]
            for rt, _c, r in results
            if rt == route and r["p99"] <= target and r["non2xx"] == 0
        ]
        best = f"{max(within):.0f} rps" if within else "none of the steps"
        print(f"{route}: highest rate with p99 <= {target:.0f} ms: {best}")


if __name__ == "__main__":
    main()
