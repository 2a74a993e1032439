"""Lookup and alert-list latency at scale on real Elasticsearch (issue 5 "Targets").

Loads N indicator records (default 1M) and K alerts (default 10k) straight into
Elasticsearch with blind bulk puts (records shaped as the correlator builds
them: ``correlate.merge`` + ``core.policy.record_audience``), serves the API
with uvicorn in a subprocess (one process), and drives it with ``wrk`` at
1, 4 and 16 connections, 15 s each, on GET /api/v1/lookup and GET /api/v1/alerts.
Targets: lookup p99 <= 25 ms, alert list p99 <= 100 ms. Prints figures; asserts
nothing about speed. Own index namespace, dropped at the end unless named with
``--namespace`` (then kept, so later runs can reuse it with ``--skip-load``).

    .venv/bin/python benches/bench_api_scale.py [--records 1000000] [--alerts 10000]
        [--load-budget-s 600] [--duration 15] [--es http://127.0.0.1:9200]
        [--namespace scale-issue5- [--skip-load]] [--conns 1,2,4,16] [--routes lookup,alerts]
        [--alert-page-ttl 0]
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from backends.elasticsearch_store import ElasticsearchStore
from core import names
from core.access import Agency, bearer_token
from core.alerts import Level, Trigger, open_alert
from core.clock import SystemClock
from core.crossborder import default_whitelist
from core.policy import SharingPolicy, record_audience
from core.ports import Put
from core.settings import ElasticsearchSettings
from correlate.merge import summarise
from records.agencies import AgencyExists, AgencyRegistry

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
TARGET_MS = {"lookup": 25.0, "alerts": 100.0}
SOURCES = (
    ("hk-govcert", "HK"),
    ("gd-cac", "GD"),
    ("mo-ctpc", "MO"),
    ("hk-police", "HK"),
)
T0 = datetime(2026, 10, 1, tzinfo=UTC)

SERVER_CODE = """
import uvicorn
from api.app import create_app
from core.settings import Settings
from threatbay.bootstrap import build
app = create_app(build(Settings()))
{setup}
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""
# --alert-page-ttl: override api.alerts.AlertPages' TTL (0 = read the store on every list).
PAGE_TTL_SETUP = """
from api.alerts import AlertPages
app.state.alert_pages = AlertPages(ttl_s={ttl})
"""


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def observable(i: int) -> tuple[str, str, str]:
    """(observable_type, value, key) for record ``i``: 60 % IPv4, 30 % domains, 10 % SHA-256."""
    r = i % 10
    if r < 6:
        value = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        return "ipv4-addr", value, f"ipv4-addr|value|{value}"
    if r < 9:
        value = f"h{i}.scale.example"
        return "domain-name", value, f"domain-name|value|{value}"
    value = f"{i:064x}"
    return "file", value, f"file|hashes.sha-256|{value}"


class RecordFactory:
    """Indicator records as correlate.merge summarises them, audience per source combination."""

    def __init__(self, sharing: SharingPolicy) -> None:
        self._sharing = sharing
        self._audience: dict[tuple[Any, ...], list[str]] = {}

    def record(self, i: int) -> dict[str, Any]:
        obs_type, value, key = observable(i)
        path = key.split("|")[1]
        n = 1 + (i % 3 == 0) + (i % 7 == 0)
        at = T0 + timedelta(seconds=i * 7)
        sources = []
        for s in range(n):
            agency, jurisdiction = SOURCES[(i + s) % len(SOURCES)]
            sources.append(
                {
                    "agency": agency,
                    "jurisdiction": jurisdiction,
                    "source_kind": "agency",
                    "stix_id": f"indicator--{i:08x}-0000-4000-8000-{s:012x}",
                    "modified": _ts(at),
                    "confidence": 60,
                    "tlp": "amber" if (i + s) % 5 == 0 else "green",
                    "tlp_defaulted": False,
                    "recipients": [],
                    "valid_from": _ts(at),
                    "valid_until": None,
                    "revoked": False,
                    "labels": ["malicious-activity"],
                    "kill_chain_phases": [],
                    "first_seen": _ts(at),
                    "last_seen": _ts(at + timedelta(hours=s)),
                    "source_path": f"{obs_type}:{path}",
                    "pattern": f"[{obs_type}:{path} = '{value}']",
                    "description": None,
                    "name": None,
                }
            )
        rec: dict[str, Any] = {
            "key": key,
            "observable_type": obs_type,
            "path": path,
            "value": value,
            "sources": sources,
            "sightings": [],
            "malware": [],
            "campaigns": [],
            "intrusion_sets": [],
        }
        summarise(rec)
        base = 40.0 + 15.0 * rec["agency_count"]
        rec["base"] = base
        rec["score"] = base
        rec["components"] = {"corroboration": 15.0 * rec["agency_count"], "confidence": 40.0}
        rec["state"] = "active"
        rec["warninglist_hits"] = []
        rec["last_activity"] = rec["last_seen"]
        combo = tuple((s["agency"], s["jurisdiction"], s["tlp"]) for s in sources) + (obs_type,)
        aud = self._audience.get(combo)
        if aud is None:
            aud = self._audience[combo] = record_audience(self._sharing, rec)
        rec["audience"] = aud
        return rec


def load_records(
    store: ElasticsearchStore, sharing: SharingPolicy, total: int, batch: int, budget_s: float
) -> tuple[int, float]:
    """Blind bulk puts, two requests in flight; stops at ``budget_s``. Returns (loaded, seconds)."""
    factory = RecordFactory(sharing)
    start = time.perf_counter()
    loaded = 0
    pending: list[Future[Any]] = []
    with ThreadPoolExecutor(2) as pool:
        for lo in range(0, total, batch):
            if time.perf_counter() - start > budget_s:
                print(f"  load budget {budget_s:.0f}s reached at {lo} records", flush=True)
                break
            puts = [
                Put(key=r["key"], doc=r, blind=True)
                for r in (factory.record(i) for i in range(lo, min(total, lo + batch)))
            ]
            while len(pending) >= 2:
                loaded += sum(1 for res in pending.pop(0).result() if res.ok)
            pending.append(pool.submit(store.put_many, names.INDEX_INDICATORS, puts))
            if (lo // batch) % 40 == 0 and lo:
                el = time.perf_counter() - start
                print(f"  {lo:>9} records queued, {lo / el:,.0f}/s", flush=True)
        for f in pending:
            loaded += sum(1 for res in f.result() if res.ok)
    return loaded, time.perf_counter() - start


def load_alerts(store: ElasticsearchStore, total: int, records: int) -> tuple[int, float]:
    """``total`` open alerts built by core.alerts.open_alert, each over 1–3 loaded records."""
    start = time.perf_counter()
    levels = (Level.RED, Level.ORANGE, Level.YELLOW, Level.BLUE)
    factory = RecordFactory(SharingPolicy(default_whitelist()))
    loaded = 0
    batch: list[Put] = []
    for a in range(total):
        inds = []
        for k in range(1 + a % 3):
            rec = factory.record((a * 97 + k * 13) % max(records, 1))
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
            at=_ts(at),
            jurisdictions=tuple(sorted({j for i in inds for j in i["jurisdictions"]})),
            agencies=tuple(sorted({g for i in inds for g in i["agencies"]})),
            indicators=tuple(inds),
            measures=("Block it.",),
        )
        alert, _events = open_alert(trig, at)
        batch.append(Put(key=alert["id"], doc=alert, blind=True))
        if len(batch) >= 2000:
            loaded += sum(1 for r in store.put_many(names.INDEX_ALERTS, batch) if r.ok)
            batch = []
    if batch:
        loaded += sum(1 for r in store.put_many(names.INDEX_ALERTS, batch) if r.ok)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=4000)
    ap.add_argument("--load-budget-s", type=float, default=600.0)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--conns", default="1,4,16")
    ap.add_argument("--routes", default="lookup,alerts")
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

    keep = args.namespace is not None
    namespace = args.namespace or f"scale-{secrets.token_hex(4)}-"
    tmp = Path(tempfile.mkdtemp(prefix="tb-scale-"))
    store = ElasticsearchStore(
        args.es,
        ElasticsearchSettings(refresh_interval="30s", request_timeout_s=120),
        prefix=namespace,
    )
    server: subprocess.Popen[bytes] | None = None
    results: list[tuple[str, int, dict[str, float]]] = []
    try:
        sharing = SharingPolicy(default_whitelist())
        if args.skip_load:
            # Records are ``observable(i)`` for i < count, so the count is enough to reuse them.
            n_rec = store.count(names.INDEX_INDICATORS)
            print(f"namespace {namespace}; reusing {n_rec:,} records (--skip-load)")
            if n_rec == 0:
                sys.exit(f"namespace {namespace} holds no records: run once without --skip-load")
        else:
            print(
                f"namespace {namespace}; loading {args.records:,} records "
                f"in batches of {args.batch}"
            )
            n_rec, t_rec = load_records(
                store, sharing, args.records, args.batch, args.load_budget_s
            )
            print(f"records: {n_rec:,} in {t_rec:.1f}s = {n_rec / t_rec:,.0f} docs/s", flush=True)
            n_al, t_al = load_alerts(store, args.alerts, n_rec)
            print(f"alerts: {n_al:,} in {t_al:.1f}s = {n_al / t_al:,.0f} docs/s", flush=True)
        t = time.perf_counter()
        store.refresh(names.INDEX_INDICATORS)
        store.refresh(names.INDEX_ALERTS)
        print(
            f"refresh: {time.perf_counter() - t:.1f}s; indicators in index: "
            f"{store.count(names.INDEX_INDICATORS):,}, alerts: {store.count(names.INDEX_ALERTS):,}"
        )

        registry = AgencyRegistry(store, SystemClock())
        try:
            registry.add_agency(
                Agency(
                    "hk-govcert", "HKCERT", "HK", "identity--11111111-1111-4111-8111-111111111111"
                )
            )
        except AgencyExists:
            pass  # a reused namespace: one more credential for the same agency
        cred, secret = registry.add_credential("hk-govcert")
        token = "Bearer " + bearer_token(cred.key_id, secret)

        port = free_port()
        env = dict(
            os.environ,
            THREATBAY_NAMESPACE=namespace,
            THREATBAY_STORE_URL=args.es,
            THREATBAY_BUS_URL=f"sqlite:///{tmp / 'bus.sqlite3'}",
            THREATBAY_DATA_DIR=str(tmp),
        )
        ttl = args.alert_page_ttl
        setup = "" if ttl is None else PAGE_TTL_SETUP.format(ttl=ttl)
        code = SERVER_CODE.format(port=port, setup=setup)
        server = subprocess.Popen([PY, "-c", code], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        rng = random.Random(5)
        existing = [observable(rng.randrange(n_rec))[1] for _ in range(700)]
        missing = [f"192.0.2.{k % 250}" if k % 2 else f"absent{k}.example" for k in range(300)]
        values = existing + missing
        rng.shuffle(values)
        check = httpx.get(
            base + "/api/v1/lookup",
            params={"value": existing[0]},
            headers={"Authorization": token},
            timeout=10,
        )
        print(
            f"check lookup {existing[0]}: HTTP {check.status_code}, "
            f"records={len(check.json().get('records', [])) if check.status_code == 200 else '-'}"
        )
        check = httpx.get(
            base + "/api/v1/alerts",
            params={"limit": 50},
            headers={"Authorization": token},
            timeout=30,
        )
        print(
            f"check alerts: HTTP {check.status_code}, "
            f"items={len(check.json().get('items', [])) if check.status_code == 200 else '-'}"
        )
        scripts = {
            "lookup": [f'"/api/v1/lookup?value={v}"' for v in values],
            "alerts": ['"/api/v1/alerts?limit=50"'],
        }
        for route, paths in scripts.items():
            if route not in args.routes.split(","):
                continue
            script = tmp / f"{route}.lua"
            script.write_text(LUA.format(token=token, paths=", ".join(paths)))
            for conns in (int(c) for c in args.conns.split(",")):
                r = run_wrk(base, script, conns, args.duration)
                results.append((route, conns, r))
                print(
                    f"{route:7} c={conns:<3} {r['rps']:8.1f} rps  p50 {r['p50']:7.2f} ms  "
                    f"p99 {r['p99']:7.2f} ms  non-2xx {r['non2xx']:.0f}",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        if keep:
            print(f"kept namespace {namespace} (reuse with --namespace {namespace} --skip-load)")
        else:
            store.drop_indices()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nroute    conns      rps   p50 ms   p99 ms  target  within")
    for route, conns, r in results:
        ok = r["p99"] <= TARGET_MS[route] and r["non2xx"] == 0
        print(
            f"{route:7} {conns:>6} {r['rps']:8.1f} {r['p50']:8.2f} {r['p99']:8.2f} "
            f"{TARGET_MS[route]:7.0f}  {'yes' if ok else 'NO'}"
        )
    for route in TARGET_MS:
        if route not in args.routes.split(","):
            continue
        within = [
            r["rps"]
            for rt, _c, r in results
            if rt == route and r["p99"] <= TARGET_MS[route] and r["non2xx"] == 0
        ]
        best = f"{max(within):.0f} rps" if within else "none of the steps"
        print(f"{route}: highest rate with p99 <= {TARGET_MS[route]:.0f} ms: {best}")


if __name__ == "__main__":
    main()
