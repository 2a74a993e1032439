"""A poller resuming from X-TAXII-Date-Added-Last misses nothing and gets nothing twice
while three correlator processes write concurrently (issue 18, real Kafka + Elasticsearch).

The stages are processes: ``threatbay api`` and three ``threatbay correlate``
(``tests/e2e/delayed_correlate.py``: the real command, its store wrapped so each
objects-index write is held back 0..2 s, as a slow node would). The objects
index refreshes every second. Three agencies push through TAXII while a fourth
agency polls ``shared-all`` in a loop, each request ``added_after`` = the last
response's ``X-TAXII-Date-Added-Last`` (Elastic ti_custom's and OpenCTI's
platform ingester's cursor). It must end with every accepted object exactly once.

Before issue 18 a version was stamped (``date_added`` = now, increasing only
within one process) before its write was searchable: an object stamped by one
correlator became visible after a later-stamped one from another, behind the
poller's cursor, and was skipped for ever.

A second poller reads the ``records`` collection the same way (its versions are
record views, stamped by the correlators under the same floors; the indicators
index writes are held back too): it must receive each record's versions in
increasing ``modified`` order and end with every record's latest version.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.access import Agency
from core.names import INDEX_AGENCIES
from records.agencies import AgencyRegistry
from tests.faults.harness import REPO, Platform, Stage

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.timeout(600)]

TAXII = "application/taxii+json;version=2.1"
PER_AGENCY = 300
POOL = 40
RECORDS = POOL  # the agencies' n-th objects share one value (tests/faults/harness.py)
CORRELATORS = 3
READER = Agency(
    "gd-cncert", "CNCERT Guangdong", "GD", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'gd2')}", "B"
)


class DelayedCorrelator(Stage):
    """``threatbay correlate`` with delayed objects-index writes (delayed_correlate.py)."""

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.delayed_correlate"],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


class Poller(threading.Thread):
    """Polls ``shared-all`` with ``added_after`` = the previous X-TAXII-Date-Added-Last."""

    def __init__(self, base: str, key: tuple[str, str], collection: str = "shared-all") -> None:
        super().__init__(name=f"poller-{collection}", daemon=True)
        token = base64.b64encode(f"{key[0]}:{key[1]}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Accept": TAXII}
        self.url = f"{base}/taxii2/api/collections/{collection}/objects/"
        self.received: Counter[str] = Counter()
        self.last: dict[str, str] = {}  # id -> the latest ``modified`` received
        self.regressions: list[tuple[str, str, str]] = []
        self.cursor: str | None = None
        self.requests = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self.stop.is_set():
                params: dict[str, Any] = {"limit": 50}
                if self.cursor is not None:
                    params["added_after"] = self.cursor
                try:
                    t0 = time.perf_counter()
                    resp = client.get(self.url, params=params, headers=self.headers)
                    self.latencies.append(time.perf_counter() - t0)
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                    time.sleep(0.5)
                    continue
                self.requests += 1
                if resp.status_code != 200:
                    self.errors[f"HTTP {resp.status_code}"] += 1
                    time.sleep(0.5)
                    continue
                with self.lock:
                    for obj in resp.json().get("objects", []):
                        self.received[obj["id"]] += 1
                        before = self.last.get(obj["id"])
                        if before is not None and obj["modified"] <= before:
                            self.regressions.append((obj["id"], before, obj["modified"]))
                        self.last[obj["id"]] = obj["modified"]
                last = resp.headers.get("x-taxii-date-added-last")
                if last:
                    self.cursor = last
                if not resp.json().get("more"):
                    time.sleep(0.2)

    def seen(self) -> set[str]:
        with self.lock:
            return set(self.received)


def latest_records(base: str, headers: dict[str, str]) -> dict[str, str]:
    """Every record indicator of the ``records`` collection now: id -> ``modified``."""
    out: dict[str, str] = {}
    params: dict[str, Any] = {"limit": 1000}
    url = f"{base}/taxii2/api/collections/records/objects/"
    while True:
        page = httpx.get(url, params=params, headers=headers, timeout=30.0).json()
        out.update({o["id"]: o["modified"] for o in page["objects"]})
        if not page.get("more"):
            return out
        params = {"limit": 1000, "next": page["next"]}


def test_poller_resuming_from_date_added_last_gets_every_object_once(
    kafka_bootstrap: str, es_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREATBAY_ELASTICSEARCH__REFRESH_INTERVAL", "1s")
    p = Platform(kafka_bootstrap, es_url, tmp_path)
    try:
        p.env["THREATBAY_ELASTICSEARCH__REFRESH_INTERVAL"] = "1s"
        p.env["THREATBAY_TEST_OBJECT_WRITE_DELAY_S"] = "2.0"
        p.env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
        registry = AgencyRegistry(p.services.store, p.services.clock)
        registry.add_agency(READER)
        cred, secret = registry.add_credential(READER.id)
        p.services.store.refresh(INDEX_AGENCIES)
        logs = p.stages["api"].log.parent
        for n in range(CORRELATORS):
            stage = DelayedCorrelator("correlate", p.env, logs)
            stage.log = logs / f"correlate-{n}.log"
            p.stages[f"correlate-{n}"] = stage
        p.start("api")
        for n in range(CORRELATORS):
            p.stages[f"correlate-{n}"].start()
        for n in range(CORRELATORS):
            p.stages[f"correlate-{n}"].wait_for_log("correlator consuming")

        poller = Poller(p.base, (cred.key_id, secret))
        poller.start()
        records = Poller(p.base, (cred.key_id, secret), "records")
        records.start()
        pushers = p.pushers(PER_AGENCY, batch=5, pause_s=0.15, pool=POOL, max_s=240)
        for t in pushers:
            t.join(300)
        with p.stats.lock:
            accepted = set(p.stats.accepted)
        assert len(accepted) == 3 * PER_AGENCY, p.stats.errors

        # Wait until every accepted object is stored, then give the poller time to catch up.
        stored_at = time.monotonic()
        deadline = stored_at + 180
        while time.monotonic() < deadline and not accepted <= p.stored_objects():
            time.sleep(0.5)
        assert accepted <= p.stored_objects(), "the correlators did not store every object"
        stored_at = time.monotonic()
        caught_up = None
        while time.monotonic() < stored_at + 30:
            if accepted <= poller.seen():
                caught_up = time.monotonic() - stored_at
                break
            time.sleep(0.2)
        final: dict[str, str] = {}
        while time.monotonic() < stored_at + 60:
            final = latest_records(p.base, poller.headers)
            if len(final) == RECORDS and records.last == final:
                break
            time.sleep(0.5)
        requests_then = poller.requests
        time.sleep(3)  # a few more polls: anything served twice would show now
        poller.stop.set()
        records.stop.set()
        poller.join(30)
        records.join(30)
        print(
            f"[records] records={len(final)} versions received={sum(records.received.values())} "
            f"polls={records.requests} regressions={len(records.regressions)} "
            f"poll_errors={dict(records.errors) or 'none'}"
        )
        assert len(final) == RECORDS, f"{len(final)} records listed, {RECORDS} expected"
        stale = {i: (records.last.get(i), m) for i, m in final.items() if records.last.get(i) != m}
        assert not stale, f"{len(stale)} records' latest versions never reached the poller"
        assert not records.regressions, records.regressions[:5]

        missing = accepted - poller.seen()
        twice = {sid: n for sid, n in poller.received.items() if n > 1}
        lat = sorted(poller.latencies)
        print(
            f"[date_added] poll latency p50 {lat[len(lat) // 2] * 1000:.0f} ms "
            f"p95 {lat[int(0.95 * (len(lat) - 1))] * 1000:.0f} ms max {lat[-1] * 1000:.0f} ms "
            f"mean {sum(lat) / len(lat) * 1000:.0f} ms"
        )
        print(
            f"[date_added] accepted={len(accepted)} received={len(poller.received)} "
            f"missing={len(missing)} twice={len(twice)} polls={poller.requests} "
            f"(+{poller.requests - requests_then} after catching up) "
            f"caught_up_after_stored={caught_up if caught_up is None else round(caught_up, 2)}s "
            f"poll_errors={dict(poller.errors) or 'none'} "
            f"push_errors={dict(p.stats.errors) or 'none'}"
        )
        assert not missing, f"{len(missing)} accepted objects never reached the poller"
        assert not twice, f"{len(twice)} objects reached the poller more than once"
        assert set(poller.received) <= accepted
    finally:
        p.close()
