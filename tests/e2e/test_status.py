"""The operator sees where work stands (issue #17): ``/readyz``, ``/metrics``, ``threatbay status``.

Through HTTP against the real app with its loops running in this process
(correlator, alert engine, notifier: ``threatbay serve`` minus uvicorn), on
embedded and on real Kafka + Elasticsearch; ``threatbay status`` runs as a
separate process over the same backends and reads the lag from the bus and
the running stages from their heartbeats. The stalled case: a bug makes the
correlator crash on every batch; lag stays, ``/readyz`` answers 503 naming
it, ``/metrics`` and ``status`` show the crash loop and the last error, and
the log has one traceback, then one line per crash with its count.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.clock import FakeClock
from correlate import merge
from records.books import records_of
from tests.e2e.conftest import AGENCIES, Key, bundle, embedded_or_real, indicator
from threatbay.bootstrap import Loops, Services, start_alerter, start_correlator

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "status") as svc:
        yield svc


def keys_for(services: Services) -> dict[str, Key]:
    registry = records_of(services).agencies
    out: dict[str, Key] = {}
    for name, agency in AGENCIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        out[name] = Key(agency, cred.key_id, secret)
    return out


def admin_key(services: Services, agency_id: str) -> Key:
    """An admin credential of ``agency_id`` (its /metrics count what that agency may see)."""
    registry = records_of(services).agencies
    cred, secret = registry.add_credential(agency_id, roles=("admin",))
    return Key(registry.get(agency_id), cred.key_id, secret)


def running(services: Services, restart_s: float = 60.0) -> Loops:
    loops = Loops(max_restart_delay_s=restart_s)
    start_correlator(services, loops)
    start_alerter(services, loops)
    loops.beat(services, every_s=0.5)
    return loops


TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"


def push(client: TestClient, key: Key, n: int, offset: int = 0, **extra: Any) -> None:
    objects = [
        indicator(offset + i, stix_id=f"indicator--{uuid.uuid4()}", **extra) for i in range(n)
    ]
    r = client.post(
        key.inbox + "objects/", content=orjson.dumps(bundle(*objects)), headers=key.post
    )
    assert r.status_code == 202 and r.json()["success_count"] == n, r.text


def wait_for(check: Callable[[], bool], seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.3)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text ``text``."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            return float(value)
    return None


def cli_status(services: Services, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """``threatbay status --json`` as a separate process over the same backends."""
    env = dict(os.environ, THREATBAY_DATA_DIR=str(tmp_path))
    bus = type(services.bus).__name__
    if bus == "KafkaBus":
        env |= {
            "THREATBAY_BUS_URL": "kafka://"
            + os.environ.get("THREATBAY_TEST_KAFKA", "127.0.0.1:9092"),
            "THREATBAY_STORE_URL": os.environ.get("THREATBAY_TEST_ES", "http://127.0.0.1:9200"),
            "THREATBAY_NAMESPACE": services.store._prefix,  # type: ignore[attr-defined]
        }
    done = subprocess.run(
        [sys.executable, "-m", "threatbay.cli", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr
    return done.returncode, orjson.loads(done.stdout.strip().splitlines()[-1])


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["stage"] == name)


def test_status_metrics_and_readyz_show_work_done(backends: Services, tmp_path: Path) -> None:
    keys = keys_for(backends)
    loops = running(backends)
    try:
        with TestClient(create_app(backends, loops=loops)) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            push(client, keys["gd"], 30)
            push(client, keys["hk"], 20, offset=10)  # 10 values reported by both
            # RED to GD's own analysts: HK's admin's /metrics may not count them (nor GD's
            # pushes at all); the host's ``threatbay status`` counts everything.
            push(client, keys["gd"], 5, offset=100, tlp=TLP_RED)
            wait_for(lambda: loops.health["correlator"].stage is not None
                     and loops.health["correlator"].stage.messages > 0)  # fmt: skip

            def caught_up() -> bool:
                from records.health import status

                st = status(backends.bus, backends.store, backends.clock)
                return st.stage("correlator").lag == 0 and st.records == 35

            wait_for(caught_up)
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {"status": "ready", "problems": []}

            assert client.get("/metrics").status_code == 401
            hk_admin = admin_key(backends, "hk-govcert")
            assert client.get("/metrics", headers=keys["ops"].bearer).status_code == 200
            text = client.get("/metrics", headers=hk_admin.bearer).text
            assert metric(text, "threatbay_ingest_objects_total", agency="gd-cac",
                          outcome="accepted") is None  # fmt: skip
            assert metric(text, "threatbay_ingest_objects_total", agency="hk-govcert",
                          outcome="accepted") == 20  # fmt: skip
            assert metric(text, "threatbay_consumer_lag", stage="correlator") == 0
            assert metric(text, "threatbay_records") == 30  # the RED ones not counted
            assert metric(text, "threatbay_backend_up", backend="store") == 1
            assert (metric(text, "threatbay_batch_seconds_count", stage="correlator") or 0) >= 1
            assert metric(text, "threatbay_stage_crash_looping", stage="correlator") == 0
            assert metric(text, "threatbay_dlq_messages") == 0

            code, report = cli_status(backends, tmp_path)
            assert code == 0, report
            correlator = stage(report, "correlator")
            assert correlator["lag"] == 0 and correlator["running"] == 1
            assert correlator["messages"] >= 1 and not correlator["crash_looping"]
            assert report["records"] == 35 and report["problems"] == []
    finally:
        loops.shutdown()


def test_a_stalled_stage_shows_in_readyz_metrics_status_and_one_log_line_per_crash(
    backends: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = keys_for(backends)

    def broken(*_: Any) -> Any:
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(merge, "source_report", broken)
    caplog.set_level(logging.INFO, logger="threatbay")
    loops = running(backends, restart_s=0.2)
    try:
        with TestClient(create_app(backends, loops=loops)) as client:
            push(client, keys["gd"], 5)
            wait_for(lambda: loops.health["correlator"].crashes >= 4)
            ready = client.get("/readyz")
            assert ready.status_code == 503
            [problem] = ready.json()["problems"]
            assert problem.startswith("correlator is crash-looping (")
            assert "a bug" not in problem  # unauthenticated: no error text

            text = client.get("/metrics", headers=keys["ops"].bearer).text
            assert metric(text, "threatbay_stage_crash_looping", stage="correlator") == 1
            assert (metric(text, "threatbay_stage_crashes_total", stage="correlator") or 0) >= 3
            assert (metric(text, "threatbay_consumer_lag", stage="correlator") or 0) >= 1

            code, report = cli_status(backends, tmp_path)
            assert code == 1
            correlator = stage(report, "correlator")
            assert correlator["crash_looping"] and correlator["crashes"] >= 3
            assert correlator["lag"] >= 1
            assert "KeyError" in correlator["last_error"] and correlator["last_error_at"]
            assert any("crash-looping" in p for p in report["problems"])
    finally:
        loops.shutdown()
    crash_lines = [r for r in caplog.records if "loop correlator crashed" in r.getMessage()]
    assert len(crash_lines) >= 4
    assert sum(1 for r in crash_lines if r.exc_info) == 1  # one traceback, then one line each
    assert "crash-looping" in crash_lines[-1].getMessage()
    assert "times" in crash_lines[-1].getMessage()
