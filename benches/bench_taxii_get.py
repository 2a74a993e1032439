"""TAXII pull latency: GET objects pages (limit 100), ThreatBay vs medallion 3.0.0;
and what the date_added watermark costs (issue 18).

Run: ``.venv/bin/python benches/bench_taxii_get.py [--sizes 1000,100000]
[--medallion-sizes 1000,3000] [--medallion /tmp/medallion-venv/bin/medallion]``

Watermark: ``.venv/bin/python benches/bench_taxii_get.py --watermark [--es http://127.0.0.1:9200]
[--watermark-size 3000]``. For each store (embedded; Elasticsearch when ``--es`` is given, under
a throw-away namespace) and each mode it starts an API process and measures (a) the GET
latency of the first page, (b) how long after a writer's ``store_objects`` returned a poller
(``added_after`` = the last X-TAXII-Date-Added-Last, back to back) first sees each object,
while a writer in this process stores 10 objects every 100 ms for ~8 s. Modes: ``none`` (the
route with the watermark taken out: what GET did before issue 18), ``settle=1`` (the
default: one settle per second per process), ``settle=0`` (a settle on every request: the
worst case). The writer is another process than the API, as a correlator is.

ThreatBay: one uvicorn worker, embedded store, objects written with
``records.objects.store_objects`` (what the correlation worker does), read
by another GD agency through ``shared-all``: audience filter plus a policy
decision per returned object. medallion 3.0.0 (OASIS reference server, memory
backend, Flask dev server) gets the same objects by TAXII POST and the same
queries. Both servers run in their own process on 127.0.0.1; one client with
a keep-alive connection. Queries:

- ``first``: first page, ``?limit=100``;
- ``typed``: first page, ``?limit=100&match[type]=indicator``;
- ``next``: the following pages reached through ``next`` (up to 10).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_taxii_push import (  # noqa: E402
    TAXII,
    Server,
    basic,
    free_port,
    indicator,
    register,
)

REPEATS = 30


class Client:
    def __init__(self, port: int, auth: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": auth, "Accept": TAXII}
        self.last: str | None = None

    def get(self, path: str) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        assert resp.status == 200, (resp.status, body[:300])
        self.last = resp.getheader("X-TAXII-Date-Added-Last")
        return elapsed, orjson.loads(body)

    def post(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(doc)
        headers = self.headers | {"Content-Type": TAXII}
        self.conn.request("POST", path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data: dict[str, Any] = orjson.loads(resp.read())
        assert resp.status == 202, data
        return data


def measure(
    client: Client, base: str, repeats: int = REPEATS, walks_n: int = 3
) -> dict[str, float]:
    """p50 in ms of each query against the objects URL ``base``."""
    out: dict[str, float] = {}
    for name, query in (("first", "?limit=100"), ("typed", "?limit=100&match[type]=indicator")):
        client.get(base + query)  # warm
        times = [client.get(base + query)[0] for _ in range(repeats)]
        out[name] = statistics.median(times) * 1000
    walks: list[float] = []
    for _ in range(walks_n):
        _, body = client.get(base + "?limit=100")
        for _ in range(10 if walks_n > 1 else 3):
            if not body.get("more") or not body.get("next"):
                break
            elapsed, body = client.get(base + f"?limit=100&next={quote(body['next'])}")
            walks.append(elapsed)
    out["next"] = statistics.median(walks) * 1000 if walks else float("nan")
    return out


def load_threatbay(data_dir: str, n: int) -> None:
    from core.access import Agency
    from core.clock import format_timestamp
    from core.envelope import Accepted
    from core.provenance import Provenance
    from core.services import default_sharing
    from core.settings import Settings
    from records.objects import store_objects
    from threatbay.bootstrap import build

    services = build(Settings(data_dir=Path(data_dir)))
    sharing = default_sharing()
    agency = Agency("gd-cac", "GD-CAC", "GD", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'gd')}")
    prov = Provenance(
        agency=agency.id,
        jurisdiction="GD",
        received_at=format_timestamp(services.clock.now()),
        request_id="bench",
        tlp="green",
    )
    for start in range(0, n, 1000):
        batch = [Accepted(indicator(i), prov) for i in range(start, min(n, start + 1000))]
        store_objects(services.store, batch, services.clock, sharing)
    services.store.refresh("threatbay-objects")
    services.close()


def bench_threatbay(n: int) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="tb-get-")
    try:
        creds = register(tmp)
        t0 = time.perf_counter()
        load_threatbay(tmp, n)
        load_s = time.perf_counter() - t0
        server = Server(tmp)
        try:
            client = Client(server.port, basic(*creds["gd-cncert"]))
            result = measure(client, "/taxii2/api/collections/shared-all/objects/")
        finally:
            server.close()
        result["load_s"] = load_s
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


WATERMARK_SERVER = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from api.app import create_app
from api.taxii import routes
from core.settings import Settings
from threatbay.bootstrap import build
if {none!r}:
    routes._settled = lambda request: None  # the GET path as before issue 18
settings = Settings(data_dir={data_dir!r}, store_url={store_url!r} or "")
settings.taxii.settle_interval_s = {settle!r}
uvicorn.run(create_app(build(settings)), host="127.0.0.1", port={port}, log_level="warning")
"""


class WatermarkServer(Server):
    """An API process whose GET path has the watermark (``settle`` s) or not (``none``)."""

    def __init__(self, data_dir: str, store_url: str, settle: float, none: bool) -> None:
        from bench_taxii_push import ROOT

        self.port = free_port()
        code = WATERMARK_SERVER.format(
            root=str(ROOT),
            data_dir=data_dir,
            store_url=store_url,
            settle=settle,
            none=none,
            port=self.port,
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


def _services(data_dir: str, store_url: str) -> Any:
    from core.settings import Settings
    from threatbay.bootstrap import build

    return build(Settings(data_dir=Path(data_dir), store_url=store_url))


def _provenance() -> Any:
    from core.provenance import Provenance

    return Provenance("gd-cac", "GD", "2026-01-01T00:00:00.000Z", "bench", tlp="green")


def visibility(port: int, auth: str, data_dir: str, store_url: str, salt: str) -> list[float]:
    """Seconds from ``store_objects`` returning to a poller first seeing each object."""
    import threading

    from core.envelope import Accepted
    from records.objects import store_objects

    services = _services(data_dir, store_url)
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def write() -> None:
        for r in range(80):
            batch = [Accepted(indicator(r * 10 + i, salt), _provenance()) for i in range(10)]
            store_objects(services.store, batch, services.clock)
            now = time.perf_counter()
            acked.update({a.obj["id"]: now for a in batch})
            time.sleep(0.1)
        stop.set()

    writer = threading.Thread(target=write)
    client = Client(port, auth)
    base = "/taxii2/api/collections/shared-all/objects/?limit=1000"
    _, _ = client.get(base)
    cursor = client.last
    writer.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = stop.is_set()
        query = base + (f"&added_after={quote(cursor)}" if cursor else "")
        _, body = client.get(query)
        now = time.perf_counter()
        for obj in body["objects"]:
            seen.setdefault(obj["id"], now)
        cursor = client.last or cursor
        if done and set(acked) <= set(seen):
            break
    writer.join()
    services.close()
    return [seen[i] - acked[i] for i in acked if i in seen]


def bench_watermark(n: int, es_url: str | None) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    stores = [("embedded", "")] + ([("elasticsearch", es_url)] if es_url else [])
    for label, store_url in stores:
        tmp = tempfile.mkdtemp(prefix="tb-wm-")
        ns = f"bench-wm-{uuid.uuid4().hex[:8]}-" if store_url else ""
        old_ns = os.environ.get("THREATBAY_NAMESPACE")
        os.environ["THREATBAY_NAMESPACE"] = ns
        try:
            creds = register(tmp, store_url=store_url)
            load(tmp, store_url, n)
            cost = settle_cost(tmp, store_url)
            print(f"{label:13s} one settle (floors read + write + objects refresh): {cost}")
            auth = basic(*creds["gd-cncert"])
            for mode, settle, none in (
                ("none", 1.0, True),
                ("settle=1", 1.0, False),
                ("settle=0", 0.0, False),
            ):
                server = WatermarkServer(tmp, store_url, settle, none)
                try:
                    client = Client(server.port, auth)
                    base = "/taxii2/api/collections/shared-all/objects/?limit=100"
                    client.get(base)
                    times = [client.get(base)[0] * 1000 for _ in range(REPEATS * 2)]
                    delays = sorted(visibility(server.port, auth, tmp, store_url, mode + ns))
                finally:
                    server.close()
                print(
                    f"{label:13s} {mode:11s} GET first page p50 {statistics.median(times):6.1f} "
                    f"ms p99 {sorted(times)[int(0.99 * (len(times) - 1))]:6.1f} ms | visible "
                    f"after ack p50 {statistics.median(delays) * 1000:6.0f} ms p95 "
                    f"{delays[int(0.95 * (len(delays) - 1))] * 1000:6.0f} ms max "
                    f"{delays[-1] * 1000:6.0f} ms ({len(delays)} objects)"
                )
        finally:
            if store_url:
                services = _services(tmp, store_url)
                services.store.drop_indices()  # type: ignore[attr-defined]
                services.close()
            if old_ns is None:
                os.environ.pop("THREATBAY_NAMESPACE", None)
            else:
                os.environ["THREATBAY_NAMESPACE"] = old_ns
            shutil.rmtree(tmp, ignore_errors=True)


def settle_cost(data_dir: str, store_url: str, repeats: int = 200) -> str:
    """Wall and CPU time of one settle of the watermark, in this process."""
    from records.date_added import book_of

    services = _services(data_dir, store_url)
    services.settings.taxii.settle_interval_s = 0.0
    book = book_of(services.store, services.clock, services.settings.taxii)
    book.settled()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        book.settled()
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    holds = []
    for _ in range(repeats):
        w0 = time.perf_counter()
        with book.hold() as held:
            held.stamp()
        holds.append((time.perf_counter() - w0) * 1000)
    services.close()
    walls.sort()
    holds.sort()
    return (
        f"p50 {statistics.median(walls):.2f} ms p99 {walls[int(0.99 * (len(walls) - 1))]:.2f} ms "
        f"wall, {statistics.median(cpus):.2f} ms CPU (client side); a writer's floor per batch "
        f"(register + release) p50 {statistics.median(holds):.2f} ms "
        f"p99 {holds[int(0.99 * (len(holds) - 1))]:.2f} ms"
    )


def load(data_dir: str, store_url: str, n: int) -> None:
    from core.envelope import Accepted
    from records.objects import store_objects

    services = _services(data_dir, store_url)
    for start in range(0, n, 1000):
        batch = [Accepted(indicator(i), _provenance()) for i in range(start, min(n, start + 1000))]
        store_objects(services.store, batch, services.clock)
    services.store.refresh("threatbay-objects")
    services.close()


MEDALLION_COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"


def medallion_config(tmp: Path, port: int) -> Path:
    data = {
        "/discovery": {
            "title": "bench",
            "default": f"http://127.0.0.1:{port}/api1/",
            "api_roots": [f"http://127.0.0.1:{port}/api1/"],
        },
        "api1": {
            "information": {
                "title": "api1",
                "versions": [TAXII],
                "max_content_length": 100_000_000,
            },
            "status": [],
            "collections": [
                {
                    "id": MEDALLION_COLLECTION,
                    "title": "bench",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }
    (tmp / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(tmp / "data.json"),
        },
        "users": {"bench": "pass"},
        "taxii": {"max_page_size": 100},
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def bench_medallion(executable: str, n: int, repeats: int = 3) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="medallion-"))
    port = free_port()
    config = medallion_config(tmp, port)
    proc = subprocess.Popen(
        [executable, "--host", "127.0.0.1", "--port", str(port), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("medallion did not start") from None
                time.sleep(0.1)
        client = Client(port, basic("bench", "pass"))
        base = f"/api1/collections/{MEDALLION_COLLECTION}/objects/"
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            client.post(
                base, {"objects": [indicator(i) for i in range(start, min(n, start + 500))]}
            )
        load_s = time.perf_counter() - t0
        # medallion needs seconds per page here: fewer repeats
        result = measure(client, base, repeats=repeats, walks_n=1)
        result["load_s"] = load_s
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


def report(label: str, n: int, r: dict[str, float]) -> None:
    print(
        f"{label:10s} {n:7d} objects: first page p50 {r['first']:8.1f} ms  "
        f"typed p50 {r['typed']:8.1f} ms  next p50 {r['next']:8.1f} ms  (load {r['load_s']:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--medallion-sizes", default="1000,3000")
    parser.add_argument("--medallion", default="/tmp/medallion-venv/bin/medallion")
    parser.add_argument("--medallion-repeats", type=int, default=3)
    parser.add_argument("--watermark", action="store_true", help="only the watermark's cost")
    parser.add_argument("--watermark-size", type=int, default=3000)
    parser.add_argument("--es", default=None, help="Elasticsearch URL for the watermark bench")
    args = parser.parse_args()
    if args.watermark:
        bench_watermark(args.watermark_size, args.es)
        return
    ours: dict[int, dict[str, float]] = {}
    sizes = sorted(
        {int(s) for s in args.sizes.split(",")} | {int(s) for s in args.medallion_sizes.split(",")}
    )
    for n in sizes:
        ours[n] = bench_threatbay(n)
        report("threatbay", n, ours[n])

    def run(n: int) -> dict[str, float]:
        return bench_medallion(args.medallion, n, args.medallion_repeats)

    if not Path(args.medallion).exists():
        print(
            f"medallion: skipped ({args.medallion} missing; pip install medallion==3.0.0 in a venv)"
        )
        return
    for n in (int(s) for s in args.medallion_sizes.split(",")):
        theirs = run(n)
        report("medallion", n, theirs)
        ratio = {k: theirs[k] / ours[n][k] for k in ("first", "typed", "next")}
        print(
            f"{'':10s} ratio medallion/threatbay at {n}: first {ratio['first']:.0f}x"
            f"  typed {ratio['typed']:.0f}x  next {ratio['next']:.1f}x"
        )


if __name__ == "__main__":
    main()
