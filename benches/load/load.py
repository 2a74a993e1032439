"""Bounded load test of one ThreatBay server on 127.0.0.1 (issue 8 "Load").

N agencies push STIX indicators through TAXII, M analysts search and look up,
K dashboards stream SSE, for a fixed time. Prints throughput, p50/p99 latency
per route, errors that are not the client's fault (must be 0) and the server's
RSS growth. The server is ``threatbay serve`` started here as a subprocess,
on the embedded backends (default) or on Kafka + Elasticsearch (``--kafka``,
own namespace, dropped afterwards).

The generator is one asyncio loop with httpx.AsyncClient: on the 2-core dev box
it caps at ~370 requests/s against GET /healthz (client and server sharing the
CPU), so figures near that measure the client, not ThreatBay.

    .venv/bin/python benches/load/load.py --duration 600   # the 10-minute soak (README)
    .venv/bin/python benches/load/load.py --duration 60
    .venv/bin/python benches/load/load.py --duration 30 --kafka
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.access import Agency  # noqa: E402
from core.settings import Settings  # noqa: E402
from records.agencies import AgencyRegistry  # noqa: E402
from threatbay.bootstrap import build  # noqa: E402

TAXII = "application/taxii+json;version=2.1"
TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
JURISDICTIONS = ("GD", "HK", "MO")


@dataclass
class Stats:
    """Latencies per route and error counts, split by whose fault they are."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server_errors: Counter[str] = field(default_factory=Counter)
    client_errors: Counter[str] = field(default_factory=Counter)
    objects_accepted: int = 0
    sse_events: int = 0

    def record(self, route: str, status: int | None, seconds: float, error: str = "") -> None:
        if status is not None and status < 400:
            self.latency[route].append(seconds)
        elif status is not None and status < 500 and status not in (408, 429):
            self.client_errors[f"{route} {status}"] += 1
        else:
            self.server_errors[f"{route} {status or error}"] += 1


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def basic(key_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": TAXII}


def indicator(run: str, agency: str, n: int, pool: int) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'{run}/{agency}/{n}')}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-02-01T00:00:00.000Z",
        "pattern": f"[domain-name:value = 'c2-{n % pool}.{run}.example.net']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        "confidence": 80,
        "object_marking_refs": [TLP_GREEN],
    }


async def timed(stats: Stats, route: str, call: Any) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        resp: httpx.Response = await call
    except httpx.HTTPError as exc:
        stats.record(route, None, time.perf_counter() - t0, type(exc).__name__)
        return None
    stats.record(route, resp.status_code, time.perf_counter() - t0)
    return resp


async def pusher(
    client: httpx.AsyncClient,
    stats: Stats,
    run: str,
    agency: str,
    headers: dict[str, str],
    batch: int,
    pool: int,
    until: float,
) -> None:
    url = f"/taxii2/api/collections/inbox-{agency}/objects/"
    n = 0
    post_headers = headers | {"Content-Type": TAXII}
    while time.monotonic() < until:
        objects = [indicator(run, agency, n + i, pool) for i in range(batch)]
        n += batch
        body = orjson.dumps({"objects": objects})
        resp = await timed(
            stats, "POST /taxii2/…/objects/", client.post(url, content=body, headers=post_headers)
        )
        if resp is not None and resp.status_code == 202:
            stats.objects_accepted += len(resp.json().get("successes", []))


async def analyst(
    client: httpx.AsyncClient,
    stats: Stats,
    run: str,
    headers: dict[str, str],
    pool: int,
    until: float,
    index: int,
) -> None:
    n = index
    while time.monotonic() < until:
        n += 1
        await timed(
            stats,
            "GET /api/v1/indicators",
            client.get("/api/v1/indicators", params={"limit": 50}, headers=headers),
        )
        # Looked-up values are defanged, as analysts paste them; half are unknown.
        value = f"c2-{n % (pool * 2)}[.]{run}[.]example[.]net"
        await timed(
            stats,
            "GET /api/v1/lookup",
            client.get("/api/v1/lookup", params={"value": value}, headers=headers),
        )
        await timed(stats, "GET /api/v1/alerts", client.get("/api/v1/alerts", headers=headers))


async def dashboard(
    client: httpx.AsyncClient, stats: Stats, headers: dict[str, str], until: float
) -> None:
    while time.monotonic() < until:
        seconds = max(1.0, min(10.0, until - time.monotonic()))
        t0 = time.perf_counter()
        try:
            async with client.stream(
                "GET", "/api/v1/stream", headers=headers, params={"max_seconds": seconds}
            ) as resp:
                stats.record(
                    "GET /api/v1/stream (headers)", resp.status_code, time.perf_counter() - t0
                )
                async for line in resp.aiter_lines():
                    if line.startswith("id:"):
                        stats.sse_events += 1
        except httpx.HTTPError as exc:
            stats.record("GET /api/v1/stream (headers)", None, 0.0, type(exc).__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register(settings: Settings, agencies: int) -> list[tuple[str, dict[str, str]]]:
    services = build(settings)
    try:
        registry = AgencyRegistry(services.store, services.clock)
        out = []
        for i in range(agencies):
            aid = f"load-{i}"
            agency = Agency(
                aid,
                f"Load agency {i}",
                JURISDICTIONS[i % 3],
                f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, 'load/' + aid)}",
                "B",
                roles=("publisher", "analyst", "dashboard"),
            )
            registry.add_agency(agency)
            cred, secret = registry.add_credential(aid)
            out.append((aid, basic(cred.key_id, secret)))
        return out
    finally:
        services.close()


async def drive(
    args: argparse.Namespace, base: str, creds: list[tuple[str, dict[str, str]]], run: str
) -> tuple[Stats, float]:
    stats = Stats()
    limits = httpx.Limits(max_connections=args.agencies + args.analysts + args.dashboards + 4)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
        t0 = time.monotonic()
        until = t0 + args.duration
        tasks = [
            pusher(client, stats, run, aid, h, args.batch, args.pool, until) for aid, h in creds
        ]
        tasks += [
            analyst(client, stats, run, creds[i % len(creds)][1], args.pool, until, i)
            for i in range(args.analysts)
        ]
        tasks += [
            dashboard(client, stats, creds[i % len(creds)][1], until)
            for i in range(args.dashboards)
        ]
        await asyncio.gather(*tasks)
        return stats, time.monotonic() - t0


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """Start a server, drive it for ``args.duration`` seconds, stop it; returns the figures."""
    run = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="threatbay-load-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREATBAY_")}
    env |= {"THREATBAY_DATA_DIR": str(tmp), "THREATBAY_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    namespace = f"load-{run}-"
    if args.kafka:
        env |= {
            "THREATBAY_BUS_URL": f"kafka://{args.kafka_bootstrap}",
            "THREATBAY_STORE_URL": args.es_url,
            "THREATBAY_NAMESPACE": namespace,
        }
    settings = Settings(
        data_dir=tmp,
        bus_url=env.get("THREATBAY_BUS_URL", ""),
        store_url=env.get("THREATBAY_STORE_URL", ""),
        namespace=env.get("THREATBAY_NAMESPACE", ""),
    )
    creds = register(settings, args.agencies)
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "threatbay"), "serve"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    "server did not start:\n"
                    + (tmp / "server.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.3)
        time.sleep(args.warmup)  # warninglists load and Kafka group joins happen here
        rss_before = rss_kib(server.pid)
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not done.wait(5.0):
                samples.append((time.monotonic() - t0, rss_kib(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stats, elapsed = asyncio.run(drive(args, base, creds, run))
        done.set()
        sampler.join()
        rss_after = rss_kib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
        if args.kafka:
            drop_namespace(args, namespace)
        shutil.rmtree(tmp, ignore_errors=True)
    return figures(args, stats, elapsed, rss_before, rss_after, samples)


def drop_namespace(args: argparse.Namespace, namespace: str) -> None:
    try:
        httpx.delete(f"{args.es_url}/{namespace}*", timeout=30)
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=args.kafka_bootstrap)
        try:
            ours = [t for t in admin.list_topics() if t.startswith(namespace)]
            if ours:
                admin.delete_topics(ours)
        finally:
            admin.close()
    except Exception as exc:  # best effort; a leftover namespace harms no one
        print(f"cleanup of {namespace} incomplete: {exc!r}")


def figures(
    args: argparse.Namespace,
    stats: Stats,
    elapsed: float,
    rss_before: int,
    rss_after: int,
    samples: list[tuple[float, int]] | None = None,
) -> dict[str, Any]:
    total = sum(len(v) for v in stats.latency.values())
    print(
        f"backend={'kafka+es' if args.kafka else 'embedded'} duration={elapsed:.1f}s "
        f"agencies={args.agencies} analysts={args.analysts} dashboards={args.dashboards}"
    )
    print(f"{'route':36} {'ok':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for route, values in sorted(stats.latency.items()):
        print(
            f"{route:36} {len(values):7d} {len(values) / elapsed:8.1f} "
            f"{pct(values, 0.5):8.1f} {pct(values, 0.99):8.1f}"
        )
    print(
        f"total ok requests {total} ({total / elapsed:.1f}/s); objects accepted "
        f"{stats.objects_accepted} ({stats.objects_accepted / elapsed:.1f}/s); "
        f"SSE events {stats.sse_events}"
    )
    print(
        f"server errors (not the client's fault, must be 0): "
        f"{sum(stats.server_errors.values())} {dict(stats.server_errors)}"
    )
    print(f"client errors (4xx): {sum(stats.client_errors.values())} {dict(stats.client_errors)}")
    print(
        f"server RSS {rss_before / 1024:.1f} MiB -> {rss_after / 1024:.1f} MiB "
        f"(+{(rss_after - rss_before) / 1024:.1f} MiB)"
    )
    # The first minute fills what a server holds for good (caches, pools, warninglists).
    after_minute = [kib for t, kib in samples or [] if t >= 60.0]
    growth_after_minute = rss_after - after_minute[0] if after_minute else None
    if growth_after_minute is not None:
        print(
            f"server RSS after the first minute {after_minute[0] / 1024:.1f} MiB -> "
            f"{rss_after / 1024:.1f} MiB (+{growth_after_minute / 1024:.1f} MiB); samples every "
            f"5 s: {[round(kib / 1024) for _, kib in samples or []]}"
        )
    timeouts = sum(n for k, n in stats.server_errors.items() if "Timeout" in k)
    print(f"client timeouts: {timeouts}")
    return {
        "timeouts": timeouts,
        "growth_after_first_minute_kib": growth_after_minute,
        "server_errors": sum(stats.server_errors.values()),
        "ok": total,
        "client_errors": sum(stats.client_errors.values()),
        "accepted": stats.objects_accepted,
        "rss_growth_kib": rss_after - rss_before,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--agencies", type=int, default=3, help="N agencies pushing")
    ap.add_argument("--analysts", type=int, default=4, help="M analysts querying")
    ap.add_argument("--dashboards", type=int, default=2, help="K dashboards streaming SSE")
    ap.add_argument("--batch", type=int, default=20, help="objects per TAXII push")
    ap.add_argument("--pool", type=int, default=200, help="distinct values shared by agencies")
    ap.add_argument(
        "--warmup",
        type=float,
        default=15.0,
        help="seconds idle before measuring (warninglists load, group joins)",
    )
    ap.add_argument("--kafka", action="store_true", help="use Kafka + Elasticsearch")
    ap.add_argument("--kafka-bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--es-url", default="http://127.0.0.1:9200")
    return ap.parse_args(argv)


def main() -> None:
    result = run_load(parse())
    sys.exit(1 if result["server_errors"] else 0)


if __name__ == "__main__":
    main()
