"""SIGKILL the shared Kafka broker / Elasticsearch node under a three-agency push load.

Marked ``faults_services``: conftest moves these after every other test of the
session, and each test restarts the service it killed (``finally``) and waits
until it is healthy again.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import Platform, services_cmd
from tests.faults.test_stage_kills import PER_AGENCY, finish

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.elasticsearch,
    pytest.mark.faults_services,
    pytest.mark.timeout(600),
]


def kill_and_restart(p: Platform, service: str, down_s: float) -> float:
    """SIGKILL ``service`` mid-load, keep it down ``down_s``, restart; returns restart time."""
    p.wait_accepted(200)
    restarted_at = time.time()
    try:
        services_cmd("kill", service)
        time.sleep(down_s)
    finally:
        restarted_at = time.time()
        services_cmd("start", service)  # waits for metadata / yellow health
    return restarted_at


def test_kafka_broker_sigkilled(platform: Platform) -> None:
    p = platform
    p.start_all()
    threads = p.pushers(PER_AGENCY, pause_s=0.2, max_s=150)
    restarted_at = kill_and_restart(p, "kafka", 3.0)
    finish(p, "Kafka broker SIGKILL", restarted_at, threads)


def test_elasticsearch_sigkilled(platform: Platform) -> None:
    p = platform
    p.start_all()
    threads = p.pushers(PER_AGENCY, pause_s=0.2, max_s=200)
    restarted_at = kill_and_restart(p, "es", 3.0)
    finish(p, "Elasticsearch SIGKILL", restarted_at, threads)
