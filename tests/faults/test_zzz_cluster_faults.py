"""SIGKILL one Kafka broker, then one Elasticsearch node, of a three-node cluster under load.

The cluster is ``deploy/dev/services up --cluster`` (CI: ``--secure --cluster``, so
the stages reconnect with TLS and SCRAM as they would in production): topics with
replication factor 3 and ``min.insync.replicas=2``, indices with one replica. The
stages (``threatbay api|correlate|alerts``, each its own principal on a secured
cluster) run under the load of ``benches/load/load.py``: three agencies pushing
(recording which objects got a 202), analysts searching, looking up and listing
alerts, dashboards streaming. The node killed is the leader of the raw topic's
partition 0 (Kafka; whether it is also the KRaft controller is reported) and
the elected master (Elasticsearch). It is restarted after ``DOWN_S``.

Checked: 0 accepted objects lost, 0 doubled, no alert duplicated or missing;
every error a client saw (5xx, 408/429, connection errors, timeouts) falls in a
window from the kill to at most ``MAX_ERRORS_AFTER_RESTART_S`` after the node is
back, and that window is printed; the cluster is back to full replication (every
partition's ISR has all its replicas; Elasticsearch green).

Marked ``cluster_faults``: run after every other test of the session (they
stop nodes of the stack the secured end-to-end test also uses).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.faults.harness import AGENCIES, Platform, Pusher
from tests.security.pki import platform_tls
from tests.security.stacks import Stack

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.elasticsearch,
    pytest.mark.cluster_faults,
    pytest.mark.timeout(900),
]

LOAD = Path(__file__).resolve().parents[2] / "benches" / "load" / "load.py"
PER_AGENCY = 20_000  # more than can be pushed: the load runs until stopped
DOWN_S = 15.0
LOAD_AFTER_BACK_S = 30.0
MAX_ERRORS_AFTER_RESTART_S = 60.0
CERT_NAMES = {a.id: (f"{a.id}.{a.jurisdiction.lower()}.example",) for a in AGENCIES}


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("threatbay_load_bench", LOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BENCH = load_bench()


@dataclass
class TimedStats(BENCH.Stats):  # type: ignore[misc, name-defined]
    """load.py's statistics, with the time of every error that is not the client's fault."""

    error_times: list[tuple[float, str]] = field(default_factory=list)

    def record(self, route: str, status: int | None, seconds: float, error: str = "") -> None:
        super().record(route, status, seconds, error)
        if status is None or status >= 500 or status in (408, 429):
            self.error_times.append((time.time(), f"{route} {status or error}"))


class ReadLoad(threading.Thread):
    """load.py's analysts and dashboards against the platform, in rounds until stopped."""

    ROUND_S = 10.0

    def __init__(self, p: Platform, analysts: int = 3, dashboards: int = 2):
        super().__init__(name="read-load", daemon=True)
        self.p = p
        self.analysts, self.dashboards = analysts, dashboards
        self.stats = TimedStats()
        self.stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._drive())

    async def _drive(self) -> None:
        headers = []
        for agency in AGENCIES:
            key_id, secret = self.p.keys[agency.id]
            headers.append(BENCH.basic(key_id, secret))
        verify = self.p.verify()
        async with httpx.AsyncClient(base_url=self.p.base, verify=verify, timeout=30) as client:
            while not self.stopping.is_set():
                until = time.monotonic() + self.ROUND_S
                tasks = [
                    BENCH.analyst(client, self.stats, self.p.run, headers[i % 3], 60, until, i)
                    for i in range(self.analysts)
                ] + [
                    BENCH.dashboard(client, self.stats, headers[i % 3], until)
                    for i in range(self.dashboards)
                ]
                await asyncio.gather(*tasks)


@pytest.fixture
def platform(cluster_stack: Stack, tmp_path: Path) -> Iterator[Platform]:
    tls = None
    if cluster_stack.secure:
        tls = platform_tls(tmp_path / "pki", CERT_NAMES, with_certs=("gd-cac",))
    p = Platform(cluster_stack, tmp_path, tls=tls)
    yield p
    p.close()


# ------------------------------------------------------------------ what the cluster says


def kafka_admin(stack: Stack) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**stack.kafka_client_config("admin"), request_timeout_ms=10_000)


def raw_leader(stack: Stack, ns: str) -> tuple[str, bool]:
    """The node leading partition 0 of the raw topic, and whether it is the active controller."""
    admin = kafka_admin(stack)
    try:
        [meta] = admin.describe_topics([f"{ns}intel.stix.raw"])
        leader = next(p["leader_id"] for p in meta["partitions"] if p["partition_index"] == 0)
        controller = admin.describe_cluster().get("controller_id")
    finally:
        admin.close()
    name = next(n["name"] for n in stack.k["nodes"] if n["node_id"] == leader)
    return name, controller == leader


def under_replicated(stack: Stack, ns: str) -> list[str]:
    """Partitions (of this namespace and the group offsets) whose ISR lacks a replica."""
    admin = kafka_admin(stack)
    try:
        topics = [t for t in admin.list_topics() if t.startswith(ns)] + ["__consumer_offsets"]
        metas = admin.describe_topics(topics)
    finally:
        admin.close()
    return [
        f"{m['name']}/{p['partition_index']}"
        for m in metas
        for p in m["partitions"]
        if set(p["isr_nodes"]) != set(p["replica_nodes"]) or p["leader_id"] < 0
    ]


def es_master(stack: Stack) -> str:
    es = stack.es_http()
    try:
        resp = es.get("/_cat/master", params={"format": "json"})
        resp.raise_for_status()
        return str(resp.json()[0]["node"])
    finally:
        es.close()


def es_green(stack: Stack) -> bool:
    es = stack.es_http()
    try:
        health = es.get("/_cluster/health", params={"timeout": "2s"}).json()
        return health.get("status") == "green" and health.get("number_of_nodes") == 3
    except httpx.HTTPError:
        return False
    finally:
        es.close()


def wait_for(check: Any, timeout_s: float, every_s: float = 1.0) -> float:
    """Seconds until ``check()`` is true; -1 if it never was within ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if check():
                return time.monotonic() - t0
        except Exception:  # a node still starting: ask again
            pass
        time.sleep(every_s)
    return -1.0


# ------------------------------------------------------------------ the scenario


@dataclass
class Fault:
    what: str
    node: str
    killed_at: float = 0.0
    restart_at: float = 0.0
    back_at: float = 0.0
    replicated_after_back_s: float = -1.0


class Replication(threading.Thread):
    """Polls from the node's return until the cluster is fully replicated again."""

    def __init__(self, fault: Fault, check: Any) -> None:
        super().__init__(name="replication", daemon=True)
        self.fault, self.check = fault, check

    def run(self) -> None:
        self.fault.replicated_after_back_s = wait_for(self.check, 300, every_s=0.5)


def run_under_load(
    p: Platform, stack: Stack, fault: Fault, replicated: Any
) -> tuple[list[Pusher], ReadLoad, Replication]:
    """Load the running stages, SIGKILL ``fault.node``, restart it after ``DOWN_S``; the load
    goes on until ``LOAD_AFTER_BACK_S`` after the node answers again."""
    pushers = p.pushers(PER_AGENCY, batch=10, pause_s=0.3, pool=60, max_s=900)
    reads = ReadLoad(p)
    reads.start()
    p.wait_accepted(300, timeout_s=90)
    assert p.accepted_count() >= 300, f"load did not get going: {p.stats.errors}"
    fault.killed_at = time.time()
    stack.services("kill", fault.node)
    time.sleep(DOWN_S)
    fault.restart_at = time.time()
    stack.services("start", fault.node)  # waits until the node answers again
    fault.back_at = time.time()
    replication = Replication(fault, replicated)
    replication.start()
    time.sleep(LOAD_AFTER_BACK_S)
    for pusher in pushers:
        pusher.deadline = time.monotonic()  # objects not accepted by now are simply not sent
    reads.stopping.set()
    return pushers, reads, replication


def settle(p: Platform, pushers: list[Pusher], reads: ReadLoad, fault: Fault) -> dict[str, Any]:
    for t in pushers:
        t.join(120)
    reads.join(60)
    recovery = p.wait_stored(fault.back_at, timeout_s=240)
    p.wait_alerts(timeout_s=120)
    report = p.report(f"{fault.what} SIGKILL ({fault.node})", recovery)
    with p.stats.lock:
        push_errors = [(t, "POST objects") for t in p.stats.error_times]
        pushes = list(p.stats.push_times)
    during = sorted(d for t, d in pushes if fault.killed_at <= t <= fault.back_at)
    calm = sorted(d for t, d in pushes if t < fault.killed_at)
    errors = sorted(push_errors + reads.stats.error_times)
    first = errors[0][0] - fault.killed_at if errors else 0.0
    last = errors[-1][0] - fault.killed_at if errors else 0.0
    figures = {
        "report": report,
        "errors": len(errors),
        "error_kinds": sorted({kind for _, kind in errors}),
        "errors_before_kill": sum(1 for t, _ in errors if t < fault.killed_at),
        "window_s": last - first if errors else 0.0,
        "first_error_after_kill_s": first,
        "last_error_after_kill_s": last,
        "last_error_after_back_s": (errors[-1][0] - fault.back_at) if errors else 0.0,
        "down_s": fault.back_at - fault.killed_at,
        "start_s": fault.back_at - fault.restart_at,
        "reads_ok": sum(len(v) for v in reads.stats.latency.values()),
        "push_p50_before_ms": 1000 * calm[len(calm) // 2] if calm else 0.0,
        "push_p99_down_ms": 1000 * during[int(len(during) * 0.99)] if during else 0.0,
        "push_max_down_ms": 1000 * during[-1] if during else 0.0,
    }
    print(report.line())
    print(
        f"[faults] {fault.what}: node {fault.node} down {figures['down_s']:.1f}s (kill -> "
        f"answering again; its start-up {figures['start_s']:.1f}s); {report.accepted} objects "
        f"accepted; client errors {figures['errors']} in a window of "
        f"{figures['window_s']:.1f}s (first {first:.1f}s, last {last:.1f}s after the kill, "
        f"{figures['last_error_after_back_s']:.1f}s after it was back) "
        f"{figures['error_kinds']}; {figures['reads_ok']} reads ok; TAXII POST p50 "
        f"{figures['push_p50_before_ms']:.0f} ms before the kill, p99 "
        f"{figures['push_p99_down_ms']:.0f} / max {figures['push_max_down_ms']:.0f} ms while "
        "the node was down"
    )
    return figures


def check(figures: dict[str, Any]) -> None:
    report = figures["report"]
    assert report.accepted > 0, report.line()
    assert report.lost == 0, report.line()
    assert report.doubled == 0, report.line()
    assert report.alerts_duplicated == 0 and report.alerts_lost == 0, report.line()
    assert report.recovery_s >= 0, report.line()
    assert figures["errors_before_kill"] == 0, figures
    assert figures["last_error_after_back_s"] <= MAX_ERRORS_AFTER_RESTART_S, figures


def test_a_kafka_broker_leading_partitions_is_sigkilled_under_load(
    platform: Platform, cluster_stack: Stack
) -> None:
    p, stack = platform, cluster_stack
    p.start_all()
    node, is_controller = raw_leader(stack, p.ns)
    role = "partition leader, KRaft controller" if is_controller else "partition leader"
    fault = Fault(f"Kafka broker ({role})", node)
    pushers, reads, replication = run_under_load(
        p, stack, fault, lambda: not under_replicated(stack, p.ns)
    )
    figures = settle(p, pushers, reads, fault)
    replication.join(300)
    print(
        f"[faults] {fault.what}: every ISR has all its replicas again "
        f"{fault.replicated_after_back_s:.1f}s after the broker answered"
    )
    check(figures)
    assert fault.replicated_after_back_s >= 0, under_replicated(stack, p.ns)


def test_the_elected_elasticsearch_master_is_sigkilled_under_load(
    platform: Platform, cluster_stack: Stack
) -> None:
    p, stack = platform, cluster_stack
    p.start_all()
    fault = Fault("Elasticsearch node (elected master)", es_master(stack))
    pushers, reads, replication = run_under_load(p, stack, fault, lambda: es_green(stack))
    figures = settle(p, pushers, reads, fault)
    replication.join(300)
    print(
        f"[faults] {fault.what}: green (every replica assigned) again "
        f"{fault.replicated_after_back_s:.1f}s after the node answered"
    )
    check(figures)
    assert fault.replicated_after_back_s >= 0, "Elasticsearch did not get back to green"
