"""The whole flow on the secured stack, as agencies would run it (issue 20).

``threatbay api``, ``correlate`` and ``alerts`` run as separate processes, each
as its own Kafka principal (SASL_SSL, SCRAM-SHA-512) and Elasticsearch user
(HTTPS), in a namespace whose topics and stage ACLs the admin created. The API
serves TLS: GD and MO push with their client certificates alone, HK with HTTP
Basic over TLS. Push -> correlate -> alert -> signed webhook -> TAXII read.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends.kafka_bus import KafkaBus
from core.names import INDEX_DELIVERIES, TOPIC_DLQ
from core.settings import KafkaSettings
from tests.faults.harness import TAXII, Platform, Receiver, poll_until
from tests.security.pki import platform_tls
from tests.security.stacks import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.timeout(900)]

PER_AGENCY = 60
CERT_NAMES = {
    "gd-cac": ("gd-cac.gd.example",),
    "hk-govcert": ("hk-govcert.hk.example",),
    "mo-caric": ("caric.mo.example",),
}


@pytest.fixture
def platform(secure_stack: Stack, tmp_path: Path) -> Iterator[tuple[Platform, Receiver]]:
    receiver = Receiver()
    receiver.up()
    tls = platform_tls(tmp_path / "pki", CERT_NAMES, with_certs=("gd-cac", "mo-caric"))
    p = Platform(secure_stack, tmp_path, receiver, tls=tls)
    try:
        yield p, receiver
    finally:
        p.close()
        receiver.down()


def test_push_correlate_alert_webhook_and_taxii_read_on_the_secured_stack(
    platform: tuple[Platform, Receiver], secure_stack: Stack
) -> None:
    p, receiver = platform
    t0 = time.time()
    p.start_all()
    started = time.time() - t0
    for pusher in p.pushers(PER_AGENCY, batch=10, pause_s=0.1, pool=20, max_s=120):
        pusher.join(150)
    pushed = time.time() - t0
    assert p.accepted_count() == 3 * PER_AGENCY, (p.accepted_count(), p.stats.errors)
    assert not p.stats.errors, p.stats.errors

    stored_s = p.wait_stored(t0, timeout_s=300)
    assert stored_s >= 0, "not every accepted object was stored and merged"
    p.wait_alerts(timeout_s=120)
    report = p.report("secured stack end to end", stored_s)
    print(report.line())
    assert report.lost == 0 and report.doubled == 0, report.line()
    assert report.alerts_open > 0 and report.alerts_lost == 0, report.line()
    assert report.alerts_duplicated == 0, report.line()

    def delivered() -> bool:
        p.refresh()
        jobs = p.deliveries()
        return bool(jobs) and all(j["state"] == "delivered" for j in jobs)

    assert poll_until(delivered, 120), {j["state"] for j in p.deliveries()}
    jobs = p._all(INDEX_DELIVERIES)
    assert {j["id"] for j in jobs} <= set(receiver.deliveries)

    # TAXII read: HK with HTTP Basic over TLS, GD with its certificate alone: every pushed
    # indicator in shared-all, the alerts as reports in the jurisdiction's own collection.
    for agency, jurisdiction, basic in (("hk-govcert", "hk", True), ("gd-cac", "gd", False)):
        headers = {"Accept": TAXII}
        if basic:
            key_id, secret = p.keys[agency]
            token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        with httpx.Client(base_url=p.base, verify=p.verify(agency), timeout=30) as c:
            shared = c.get(
                "/taxii2/api/collections/shared-all/objects/",
                params={"limit": 1000, "match[type]": "indicator"},
                headers=headers,
            )
            reports = c.get(
                f"/taxii2/api/collections/shared-{jurisdiction}/objects/",
                params={"match[type]": "report"},
                headers=headers,
            )
        assert shared.status_code == reports.status_code == 200, (shared.text, reports.text)
        assert shared.headers["strict-transport-security"].startswith("max-age=")
        ids = {o["id"] for o in shared.json().get("objects", [])}
        assert ids == set(p.stats.accepted), (agency, len(ids))
        levels = [o["x_threatbay_alert"]["level"] for o in reports.json().get("objects", [])]
        assert levels and len(levels) == report.alerts_open, (agency, levels)

    # Nothing was dead-lettered (a write the stage's role lacks would be, silently).
    assert dead_letters(secure_stack, p.ns) == []

    # No loop of any stage crashed (a topic, group or index its principal lacks a right on
    # makes a loop crash-loop while the others work on).
    for name, stage in p.stages.items():
        text = stage.log_text()
        crashed = [line for line in text.splitlines()
                   if " crashed" in line or line.startswith("Exception in thread")]  # fmt: skip
        assert not crashed, (name, crashed[:3])

    # No stage printed a secret.
    passwords = [
        secure_stack.password_file(system, stage).read_text().strip()
        for system in ("kafka", "es")
        for stage in ("ingest", "correlator", "alerts", "rescore")
    ]
    logs = "".join(stage.log_text() for stage in p.stages.values())
    assert not [pw[:3] for pw in passwords if pw in logs]
    print(
        f"[secure-e2e] stages up {started:.1f}s, {3 * PER_AGENCY} objects pushed in "
        f"{pushed - started:.1f}s, all stored+merged {stored_s:.1f}s after the stages started, "
        f"{report.alerts_open} alerts, {len(jobs)} webhooks delivered"
    )


def dead_letters(stack: Stack, ns: str) -> list[str]:
    """The reasons of everything on the namespace's ``intel.dlq`` (read as ``tester``)."""
    bus = KafkaBus(
        stack.bootstrap,
        KafkaSettings(session_timeout_ms=6000),
        prefix=ns,
        auth=stack.kafka_auth("tester"),
    )
    try:
        member = bus.consumer(TOPIC_DLQ, "dlq-check")
        reasons: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reasons += [m.headers.get("reason", m.value.decode()[:200]) for m in member.poll()]
        member.close()
        return reasons
    finally:
        bus.close()
