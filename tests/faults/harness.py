"""Fault-injection harness: stages as separate processes, TAXII push load, store checks.

Everything runs on the real Kafka and Elasticsearch that ``deploy/dev/services
up`` starts (the plain single nodes, or a secured / clustered stack described by
its ``stack.json``: ``Backend``), under a fresh ``THREATBAY_NAMESPACE`` per
scenario. On a secured stack every stage process runs as its own Kafka
principal and Elasticsearch user, and the API serves TLS with client
certificates when the platform is given a ``TlsSetup``. The stages are
``.venv/bin/threatbay api|correlate|alerts`` subprocesses, so a SIGKILL is a
real process death. Clients record exactly which (id, version) pairs got a TAXII
202 success; the checks compare the store against that record.
"""

from __future__ import annotations

import base64
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from core.access import Agency
from core.names import (
    INDEX_ALERTS,
    INDEX_DELIVERIES,
    INDEX_INDICATORS,
    INDEX_OBJECTS,
    INDEX_WEBHOOKS,
)
from core.settings import Settings
from core.webhook_signing import HEADER_DELIVERY
from records.agencies import AgencyRegistry
from records.webhooks import WebhookDirectory
from threatbay.bootstrap import build

REPO = Path(__file__).resolve().parents[2]
THREATBAY = REPO / ".venv" / "bin" / "threatbay"
SERVICES = REPO / "deploy" / "dev" / "services"
TAXII = "application/taxii+json;version=2.1"
TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
AGENCIES = (
    Agency(
        "gd-cac", "Guangdong CAC", "GD", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'gd')}", "B"
    ),
    Agency(
        "hk-govcert", "GovCERT.HK", "HK", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'hk')}", "A"
    ),
    Agency("mo-caric", "CARIC", "MO", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'mo')}", "B"),
)


class Backend(Protocol):
    """Where the stages run: the plain services or a ``tests.security.stacks.Stack``."""

    def env(self, namespace: str, data_dir: Path) -> dict[str, str]: ...

    def settings(self, namespace: str, data_dir: Path) -> Settings: ...

    def es_http(self, user: str = "admin") -> httpx.Client: ...

    def grant(self, namespace: str) -> None: ...

    def drop(self, namespace: str) -> None: ...


@dataclass
class PlainBackend:
    """The shared plain Kafka broker and Elasticsearch node (no security)."""

    kafka: str
    es_url: str

    def env(self, namespace: str, data_dir: Path) -> dict[str, str]:
        return {
            "THREATBAY_BUS_URL": f"kafka://{self.kafka}",
            "THREATBAY_STORE_URL": self.es_url.rstrip("/"),
            "THREATBAY_NAMESPACE": namespace,
            "THREATBAY_DATA_DIR": str(data_dir),
        }

    def settings(self, namespace: str, data_dir: Path) -> Settings:
        return Settings(
            bus_url=f"kafka://{self.kafka}",
            store_url=self.es_url.rstrip("/"),
            namespace=namespace,
            data_dir=data_dir,
        )

    def es_http(self, user: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.es_url.rstrip("/"), timeout=30)

    def grant(self, namespace: str) -> None:
        return None  # ThreatBay creates its own topics on the plain broker

    def drop(self, namespace: str) -> None:
        try:
            with self.es_http() as es:
                es.delete(f"/{namespace}*")
        except httpx.HTTPError:
            pass
        try:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.kafka, request_timeout_ms=10_000)
            try:
                ours = [t for t in admin.list_topics() if t.startswith(namespace)]
                if ours:
                    admin.delete_topics(ours)
            finally:
                admin.close()
        except Exception:  # best effort: a leftover namespaced topic harms no one
            pass


@dataclass
class TlsSetup:
    """The API's TLS for a platform: its certificate, the jurisdictions' CAs, client certs."""

    server_ca: Path
    cert_file: Path
    key_file: Path
    client_ca: dict[str, Path]
    client_crl: dict[str, Path] = field(default_factory=dict)
    #: agency id -> (certificate, key) the agency's pusher presents; others use HTTP Basic.
    client_certs: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    #: agency id -> the names its certificate carries (``Agency.cert_names``).
    cert_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            "THREATBAY_TLS__CERT_FILE": str(self.cert_file),
            "THREATBAY_TLS__KEY_FILE": str(self.key_file),
        }
        env |= {f"THREATBAY_TLS__CLIENT_CA__{j}": str(p) for j, p in self.client_ca.items()}
        env |= {f"THREATBAY_TLS__CLIENT_CRL__{j}": str(p) for j, p in self.client_crl.items()}
        return env

    def context(self, agency: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.server_ca))
        if agency is not None and agency in self.client_certs:
            cert, key = self.client_certs[agency]
            ctx.load_cert_chain(str(cert), str(key))
        return ctx


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ stage processes


#: Log lines worth printing when a fault scenario fails (its stage logs stay on disk too).
NOTABLE = re.compile(
    r"===== start|ERROR|CRITICAL|Traceback|crashed|Error:|WARNING (?!elastic_transport)"
    r"|newly assigned partitions|Successfully joined|consuming"
)


class Stage:
    """One ``threatbay <stage>`` subprocess that can be SIGKILLed and started again."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        self.name, self.env = name, env
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [str(THREATBAY), self.name],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the process (no shutdown hooks run) and reap it."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def notable(self, limit: int = 40) -> list[str]:
        """The lines of its log that explain a failure: starts, crashes, errors, assignments."""
        lines = [
            f"{self.name}: {line[:400]}"
            for line in self.log_text().splitlines()
            if NOTABLE.search(line) and not line.startswith("    ")
        ]
        return lines[-limit:]

    def wait_for_log(self, text: str, timeout_s: float = 90.0) -> None:
        """Wait until the current run has written ``text`` (e.g. its start-up banner)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            tail = self.log_text().rsplit("===== start #", 1)[-1]
            if text in tail:
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{tail[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {text!r} not logged in {timeout_s}s")


# ------------------------------------------------------------------ load


@dataclass
class PushStats:
    pushed: set[str] = field(default_factory=set)  # ids ever sent
    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (agency, ver)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # client-visible, while a part is down
    error_times: list[float] = field(default_factory=list)  # when a push was not all accepted
    push_times: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    lock: threading.Lock = field(default_factory=threading.Lock)


def indicator(run: str, agency: str, n: int, pool: int) -> dict[str, Any]:
    """An indicator whose value is shared by the other agencies' n-th object (cross-agency)."""
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


class Pusher(threading.Thread):
    """One agency pushing ``total`` indicators in batches; failed ones are pushed again."""

    def __init__(
        self,
        base: str,
        run: str,
        agency: Agency,
        key: tuple[str, str],
        stats: PushStats,
        total: int,
        batch: int,
        pause_s: float,
        pool: int,
        deadline: float,
        verify: ssl.SSLContext | bool = True,
        basic: bool = True,
    ) -> None:
        super().__init__(name=f"push-{agency.id}", daemon=True)
        self.base, self.run_id, self.agency, self.stats = base, run, agency, stats
        token = base64.b64encode(f"{key[0]}:{key[1]}".encode()).decode()
        self.headers = {"Accept": TAXII, "Content-Type": TAXII}
        if basic:  # else its client certificate alone authenticates it
            self.headers["Authorization"] = f"Basic {token}"
        self.total, self.batch, self.pause_s, self.pool = total, batch, pause_s, pool
        self.deadline = deadline
        self.verify = verify

    def run(self) -> None:
        todo = [indicator(self.run_id, self.agency.id, n, self.pool) for n in range(self.total)]
        url = f"{self.base}/taxii2/api/collections/inbox-{self.agency.id}/objects/"
        with httpx.Client(timeout=10.0, verify=self.verify) as client:
            while todo and time.monotonic() < self.deadline:
                chunk, todo = todo[: self.batch], todo[self.batch :]
                with self.stats.lock:
                    self.stats.pushed.update(o["id"] for o in chunk)
                    self.stats.requests += 1
                ok: dict[str, str] = {}
                sent = time.time()
                try:
                    resp = client.post(
                        url, content=orjson.dumps({"objects": chunk}), headers=self.headers
                    )
                    if resp.status_code == 202:
                        ok = {s["id"]: s["version"] for s in resp.json().get("successes", [])}
                        if len(ok) < len(chunk):
                            self._error("202 with failures")
                    else:
                        self._error(f"HTTP {resp.status_code}")
                except httpx.HTTPError as exc:
                    self._error(type(exc).__name__)
                with self.stats.lock:
                    self.stats.push_times.append((sent, time.time() - sent))
                    if len(ok) < len(chunk):
                        self.stats.error_times.append(time.time())
                with self.stats.lock:
                    for sid, ver in ok.items():
                        self.stats.accepted[sid] = (self.agency.id, ver)
                retry = [o for o in chunk if o["id"] not in ok]
                todo = retry + todo  # not accepted: push the same objects again
                time.sleep(self.pause_s if not retry else 0.5)

    def _error(self, kind: str) -> None:
        with self.stats.lock:
            self.stats.errors[kind] += 1


# ------------------------------------------------------------------ webhook receiver


@dataclass
class Receiver:
    """A webhook receiver on a fixed port that is down until ``up()``."""

    port: int = field(default_factory=free_port)
    deliveries: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.deliveries.append(self.headers.get(HEADER_DELIVERY, ""))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ------------------------------------------------------------------ platform


@dataclass
class Report:
    scenario: str
    pushed: int
    accepted: int
    stored: int
    lost: int
    doubled: int
    recovery_s: float
    alerts_open: int = 0
    alerts_duplicated: int = 0
    alerts_lost: int = 0
    drain_s: float = 0.0
    client_errors: str = ""

    def line(self) -> str:
        return (
            f"[faults] {self.scenario}: pushed={self.pushed} accepted={self.accepted} "
            f"stored={self.stored} lost={self.lost} doubled={self.doubled} "
            f"recovery={self.recovery_s:.1f}s (after load end {self.drain_s:.1f}s) "
            f"alerts_open={self.alerts_open} alerts_duplicated={self.alerts_duplicated} "
            f"alerts_lost={self.alerts_lost} "
            f"client_errors={self.client_errors or 'none'}"
        )


class Platform:
    """A namespace on the real services, three registered agencies and the stage processes."""

    def __init__(
        self,
        backend: Backend | str,
        es_url: str | Path,
        tmp: Path | Receiver | None = None,
        receiver: Receiver | None = None,
        *,
        tls: TlsSetup | None = None,
        namespace: str | None = None,
    ):
        if isinstance(backend, str):  # Platform(kafka, es_url, tmp[, receiver]): plain services
            assert isinstance(tmp, Path)
            backend, tmp = PlainBackend(backend, str(es_url)), tmp
        else:  # Platform(backend, tmp[, receiver], tls=...)
            receiver = tmp if isinstance(tmp, Receiver) else receiver
            tmp = Path(es_url)
        self.backend = backend
        self.tls = tls
        self.run = uuid.uuid4().hex[:8]
        self.ns = namespace or f"test-faults-{self.run}-"
        self.port = free_port()
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        data = tmp / "data"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("THREATBAY_")},
            **backend.env(self.ns, data),
            **(tls.env() if tls else {}),
            "THREATBAY_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        backend.grant(self.ns)
        self.es = backend.es_http()
        self.services = build(backend.settings(self.ns, data))
        registry = AgencyRegistry(self.services.store, self.services.clock)
        self.keys: dict[str, tuple[str, str]] = {}
        for agency in AGENCIES:
            if tls is not None and agency.id in tls.cert_names:
                agency = replace(agency, cert_names=tls.cert_names[agency.id])
            registry.add_agency(agency)
            cred, secret = registry.add_credential(agency.id)
            self.keys[agency.id] = (cred.key_id, secret)
            if receiver is not None:
                WebhookDirectory(self.services.store).register(
                    agency, f"{receiver.url}/hook/{agency.id}"
                )
        self.services.store.refresh(INDEX_WEBHOOKS)
        logs = Path(os.environ.get("THREATBAY_FAULTS_LOGS", "/tmp/threatbay-faults")) / self.ns
        logs.mkdir(parents=True, exist_ok=True)
        self.stages = {n: Stage(n, self.env, logs) for n in ("api", "correlate", "alerts")}
        self.stats = PushStats()

    # -- stages

    def start(self, name: str) -> None:
        stage = self.stages[name]
        stage.start()
        if name == "api":
            self.wait_api()
        elif name == "correlate":
            stage.wait_for_log("correlator consuming")
        else:
            stage.wait_for_log("alert engine consuming")

    def verify(self, agency: str | None = None) -> ssl.SSLContext | bool:
        """What an HTTP client of the API verifies (and presents, for ``agency``)."""
        return self.tls.context(agency) if self.tls else True

    def wait_api(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"{self.base}/healthz", timeout=2, verify=self.verify())
                if resp.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            proc = self.stages["api"].proc
            if proc is not None and proc.poll() is not None:
                raise AssertionError("api exited:\n" + self.stages["api"].log_text()[-3000:])
            time.sleep(0.2)
        raise AssertionError("api did not answer /healthz")

    def start_all(self) -> None:
        for name in ("api", "correlate", "alerts"):
            self.start(name)

    # -- load

    def pushers(
        self,
        total: int,
        *,
        batch: int = 10,
        pause_s: float = 0.3,
        pool: int = 60,
        max_s: float = 90.0,
    ) -> list[Pusher]:
        deadline = time.monotonic() + max_s
        threads = [
            Pusher(
                self.base,
                self.run,
                a,
                self.keys[a.id],
                self.stats,
                total,
                batch,
                pause_s,
                pool,
                deadline,
                verify=self.verify(a.id),
                basic=not (self.tls and a.id in self.tls.client_certs),
            )
            for a in AGENCIES
        ]
        for t in threads:
            t.start()
        return threads

    def accepted_count(self) -> int:
        with self.stats.lock:
            return len(self.stats.accepted)

    def wait_accepted(self, n: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.accepted_count() < n and time.monotonic() < deadline:
            time.sleep(0.1)

    # -- store reads (plain HTTP to Elasticsearch: the checks trust nothing of ours)

    def _all(self, index: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        resp = self.es.post(f"/{self.ns}{index}/_search", json={"size": 10_000, **(body or {})})
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return [h["_source"] | {"_id": h["_id"]} for h in resp.json()["hits"]["hits"]]

    def refresh(self) -> None:
        self.es.post(f"/{self.ns}*/_refresh")

    def backlog(self) -> int:
        """Accepted objects not yet in the objects index (work the correlator has pending)."""
        self.refresh()
        with self.stats.lock:
            n = len(self.stats.accepted)
        return n - len(self.stored_objects())

    def stored_objects(self) -> set[str]:
        """Accepted ids whose exact (id, version) document is in the objects index."""
        with self.stats.lock:
            accepted = dict(self.stats.accepted)
        docs = [f"{sid}|{ver}" for sid, (_, ver) in accepted.items()]
        found: set[str] = set()
        for i in range(0, len(docs), 1000):
            resp = self.es.post(
                f"/{self.ns}{INDEX_OBJECTS}/_mget",
                json={"ids": docs[i : i + 1000]},
                params={"_source": "false"},
            )
            if resp.status_code == 404:
                return found
            resp.raise_for_status()
            found |= {d["_id"].split("|", 1)[0] for d in resp.json()["docs"] if d.get("found")}
        return found

    def source_counts(self) -> Counter[tuple[str, str]]:
        """(agency, stix_id) -> how many times it appears in the sources of all records."""
        counts: Counter[tuple[str, str]] = Counter()
        for rec in self._all(INDEX_INDICATORS):
            for src in rec.get("sources", []):
                counts[(src["agency"], src["stix_id"])] += 1
        return counts

    def wait_stored(self, since: float, timeout_s: float = 120.0) -> float:
        """Seconds from ``since`` until every accepted object is stored and merged."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.stats.lock:
                want = set(self.stats.accepted)
            try:
                self.refresh()
                got = self.stored_objects()
                merged = {sid for (_, sid) in self.source_counts()}
            except httpx.HTTPError:
                got, merged = set(), set()
            if want <= got and want <= merged:
                return time.time() - since
            time.sleep(0.5)
        return -1.0

    def wait_alerts(self, timeout_s: float = 60.0) -> None:
        """Wait until every record reported by 3 agencies has an alert (YELLOW rule)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.refresh()
            if not self.missing_alerts():
                return
            time.sleep(0.5)

    def diagnosis(self) -> str:
        """What each stage logged that matters, for a failed scenario's report."""
        return "\n".join(line for stage in self.stages.values() for line in stage.notable())

    def missing_alerts(self) -> list[str]:
        covered = {k for a in self._all(INDEX_ALERTS) for k in a.get("indicator_keys", [])}
        return [
            r["key"]
            for r in self._all(INDEX_INDICATORS)
            if r.get("agency_count", 0) >= 3 and r["key"] not in covered
        ]

    def deliveries(self) -> list[dict[str, Any]]:
        return self._all(INDEX_DELIVERIES)

    def report(self, scenario: str, recovery_s: float) -> Report:
        self.refresh()
        with self.stats.lock:
            accepted = dict(self.stats.accepted)
            pushed = len(self.stats.pushed)
            errors = ",".join(f"{k}:{v}" for k, v in sorted(self.stats.errors.items()))
        stored = self.stored_objects() & set(accepted)
        counts = self.source_counts()
        merged = {sid for (_, sid) in counts}
        lost = len(set(accepted) - (stored & merged))
        doubled = sum(1 for n in counts.values() if n > 1)
        alerts = self._all(INDEX_ALERTS)
        open_keys = Counter(a["dedup_key"] for a in alerts if a.get("status") == "open")
        return Report(
            scenario=scenario,
            pushed=pushed,
            accepted=len(accepted),
            stored=len(stored),
            lost=lost,
            doubled=doubled,
            recovery_s=recovery_s,
            alerts_open=sum(open_keys.values()),
            alerts_duplicated=sum(n - 1 for n in open_keys.values() if n > 1),
            alerts_lost=len(self.missing_alerts()),
            client_errors=errors,
        )

    # -- teardown

    def close(self) -> None:
        for stage in self.stages.values():
            stage.stop()
        self.services.close()
        self.es.close()
        self.backend.drop(self.ns)


def services_cmd(*args: str) -> None:
    """Run ``deploy/dev/services ARGS`` (SIGKILL / start Kafka or Elasticsearch)."""
    subprocess.run([sys.executable, str(SERVICES), *args], check=True, cwd=REPO, timeout=300)


def poll_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return False


def jitter(rng: random.Random, lo: float, hi: float) -> Iterator[float]:
    while True:
        yield rng.uniform(lo, hi)
