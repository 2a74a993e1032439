"""SIGKILL one ThreatBay stage process under a steady three-agency TAXII push load.

After each kill and restart: every object that got a 202 success is stored
exactly once in effect, no record's sources are doubled, no alert is
duplicated or lost, and (alert engine) pending webhooks are delivered.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import Platform, Pusher, Receiver, poll_until

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.timeout(400)]

PER_AGENCY = 300


def finish(p: Platform, scenario: str, restarted_at: float, threads: list[Pusher]) -> None:
    for t in threads:
        t.join(120)
    load_end = time.time()
    recovery = p.wait_stored(restarted_at)
    p.wait_alerts()
    report = p.report(scenario, recovery)
    report.drain_s = max(0.0, restarted_at + recovery - load_end) if recovery >= 0 else -1.0
    print(report.line())
    if report.lost or report.doubled or report.alerts_lost or report.alerts_duplicated:
        print(p.diagnosis())  # why: each stage's starts, crashes, errors and assignments
    assert report.accepted > 0, "no object was accepted at all"
    assert report.lost == 0, report.line()
    assert report.doubled == 0, report.line()
    assert report.alerts_duplicated == 0, report.line()
    assert report.alerts_lost == 0, report.line()
    assert recovery >= 0, report.line()


def test_correlator_sigkilled_three_times_mid_batch(platform: Platform) -> None:
    p = platform
    p.start_all()
    threads = p.pushers(PER_AGENCY, pause_s=0.4)
    restarted_at = time.time()
    for kill in range(3):
        # Kill while the worker is busy: objects accepted since the last start, not yet stored.
        p.wait_accepted(150 * (kill + 1))
        # Kill while the worker has a backlog (accepted, not yet stored), i.e. mid-batch.
        poll_until(lambda: p.backlog() > 0, 10, every_s=0.1)
        backlog = p.backlog()
        p.stages["correlate"].kill()
        print(f"[faults] correlator kill {kill + 1}: backlog {backlog} accepted, not stored")
        time.sleep(1.0)
        restarted_at = time.time()
        p.start("correlate")
    finish(p, "correlator SIGKILL x3 mid-batch", restarted_at, threads)


def test_api_sigkilled_mid_request(platform: Platform) -> None:
    p = platform
    p.start_all()
    threads = p.pushers(PER_AGENCY, pause_s=0.1)
    p.wait_accepted(200)
    p.stages["api"].kill()  # requests of three agencies are in flight
    time.sleep(2.0)
    restarted_at = time.time()
    p.start("api")
    finish(p, "ingest API SIGKILL mid-request", restarted_at, threads)


def test_alert_engine_sigkilled_with_webhooks_pending(
    hooked_platform: Platform, receiver: Receiver
) -> None:
    p = hooked_platform
    p.start_all()
    threads = p.pushers(PER_AGENCY, pause_s=0.2)
    # Alerts are raised and their deliveries fail (receiver down): jobs stay pending.
    assert poll_until(lambda: len(p.deliveries()) > 0, 90), "no webhook job was created"
    p.refresh()
    pending = [j for j in p.deliveries() if j["state"] == "pending"]
    p.stages["alerts"].kill()
    print(f"[faults] alert engine killed with {len(pending)} webhook jobs pending")
    time.sleep(1.0)
    receiver.up()
    restarted_at = time.time()
    p.start("alerts")
    finish(p, "alert engine SIGKILL, webhooks pending", restarted_at, threads)

    def all_delivered() -> bool:
        p.refresh()
        jobs = p.deliveries()
        return bool(jobs) and all(j["state"] == "delivered" for j in jobs)

    delivered = poll_until(all_delivered, 120)
    jobs = p.deliveries()
    states = {s: sum(1 for j in jobs if j["state"] == s) for s in {j["state"] for j in jobs}}
    received = set(receiver.deliveries)
    print(
        f"[faults] webhooks: jobs={len(jobs)} states={states} received={len(received)} "
        f"resent={len(receiver.deliveries) - len(received)} "
        f"delivered_after_restart={time.time() - restarted_at:.1f}s"
    )
    assert delivered, states
    assert {j["id"] for j in jobs} <= received
