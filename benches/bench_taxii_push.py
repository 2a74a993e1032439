"""TAXII push throughput: POST 100- and 1000-object envelopes to a real uvicorn server.

Run: ``.venv/bin/python benches/bench_taxii_push.py [--kafka host:port] [--rounds N]``

The server runs in its own process (one uvicorn worker) on 127.0.0.1 with the
embedded bus, and with Kafka too when ``--kafka`` / ``THREATBAY_TEST_KAFKA``
points at a reachable broker. Objects are 1 KB-ish indicators with distinct
simple patterns (so the pattern cache does not help). Prints objects/s
accepted and p50/p99 request latency per envelope size.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TAXII = "application/taxii+json;version=2.1"
GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"

SERVER = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from api.app import create_app
from core.settings import Settings
from threatbay.bootstrap import build
settings = Settings(data_dir={data_dir!r}, bus_url={bus_url!r} or "", store_url={store_url!r} or "")
uvicorn.run(create_app(build(settings)), host="127.0.0.1", port={port}, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def indicator(n: int, salt: str = "") -> dict[str, Any]:
    """One ~1 KB indicator with a distinct pattern."""
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'{salt}{n}')}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": f"C2 server {n}",
        "description": "Command-and-control endpoint observed in a phishing campaign. " * 8,
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        "labels": ["c2", "phishing"],
        "confidence": 80,
        "object_marking_refs": [GREEN],
    }


def register(data_dir: str, bus_url: str = "", store_url: str = "") -> dict[str, tuple[str, str]]:
    """Register two GD agencies; returns agency id -> (key id, secret)."""
    from core.access import Agency
    from core.settings import Settings
    from records.agencies import AgencyRegistry
    from threatbay.bootstrap import build

    services = build(Settings(data_dir=Path(data_dir), bus_url=bus_url, store_url=store_url))
    registry = AgencyRegistry(services.store, services.clock)
    creds: dict[str, tuple[str, str]] = {}
    for agency_id in ("gd-cac", "gd-cncert"):
        ident = f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}"
        try:
            registry.add_agency(Agency(agency_id, agency_id.upper(), "GD", ident, "B"))
        except Exception:  # noqa: BLE001 - re-registration in a reused data dir
            pass
        cred, secret = registry.add_credential(agency_id)
        creds[agency_id] = (cred.key_id, secret)
    services.close()
    return creds


class Server:
    """A uvicorn process serving the ThreatBay app."""

    def __init__(self, data_dir: str, bus_url: str = "", store_url: str = "") -> None:
        self.port = free_port()
        code = SERVER.format(
            root=str(ROOT), data_dir=data_dir, bus_url=bus_url, store_url=store_url, port=self.port
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_push(
    port: int, auth: str, size: int, rounds: int, salt: str, clients: int = 1
) -> dict[str, float]:
    """POST ``rounds`` envelopes of ``size`` objects from ``clients`` concurrent connections."""
    headers = {"Authorization": auth, "Accept": TAXII, "Content-Type": TAXII}
    url = "/taxii2/api/collections/inbox-gd-cac/objects/"
    bodies = [
        orjson.dumps({"objects": [indicator(r * size + i, salt) for i in range(size)]})
        for r in range(rounds)
    ]
    latencies: list[float] = []
    accepted: list[int] = []

    def client(share: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for body in share:
            t0 = time.perf_counter()
            conn.request("POST", url, body=body, headers=headers)
            resp = conn.getresponse()
            data = orjson.loads(resp.read())
            latencies.append(time.perf_counter() - t0)
            assert resp.status == 202, data
            accepted.append(data["success_count"])
        conn.close()

    threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "objects_per_s": sum(accepted) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "accepted": sum(accepted),
    }


def run(label: str, bus_url: str, rounds: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        creds = register(tmp, bus_url)
        server = Server(tmp, bus_url)
        try:
            auth = basic(*creds["gd-cac"])
            bench_push(server.port, auth, 100, 3, "warmup")  # imports, caches, first connection
            for size, n in ((100, rounds * 5), (1000, rounds)):
                salt = f"{label}{size}-{time.time()}"
                r = bench_push(server.port, auth, size, n, salt, clients)
                print(
                    f"{label:9s} {size:5d}-object envelopes x{n:3d}, {clients} client(s): "
                    f"{r['objects_per_s']:8.0f} objects/s  "
                    f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms"
                )
        finally:
            server.close()


def kafka_reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--kafka", default=os.environ.get("THREATBAY_TEST_KAFKA", ""))
    args = parser.parse_args()
    print(f"TAXII push, one uvicorn worker, {os.cpu_count()} cores")
    run("embedded", "", args.rounds, args.clients)
    if args.kafka and kafka_reachable(args.kafka):
        run("kafka", f"kafka://{args.kafka}", args.rounds, args.clients)
    else:
        print("kafka: skipped (set THREATBAY_TEST_KAFKA=host:port of a running broker)")


if __name__ == "__main__":
    main()
