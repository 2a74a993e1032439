"""Session fixtures for the real servers that ``deploy/dev/services up`` starts.

``kafka_bootstrap`` and ``es_url`` return the address of a running Kafka broker /
Elasticsearch node after checking that it answers. When it does not, the test is
skipped on a developer machine and fails under ``CI=true`` or
``THREATBAY_REQUIRE_SERVICES=1`` (STYLE.md 3: in CI a real-backend test may not be
skipped). Addresses: ``THREATBAY_TEST_KAFKA`` (default 127.0.0.1:9092) and
``THREATBAY_TEST_ES`` (default http://127.0.0.1:9200).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_ES = "http://127.0.0.1:9200"


def services_required() -> bool:
    """True when a missing real service must fail the run instead of skipping."""
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("THREATBAY_REQUIRE_SERVICES") == "1"
    )


def require_service(name: str, check: Callable[[], str | None]) -> None:
    """Run check() (None when the service answers, else why not); skip or fail if it does not."""
    try:
        problem = check()
    except Exception as exc:  # any failure to answer means unavailable
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        return
    message = f"{name} is not available ({problem}); start it with deploy/dev/services up"
    if services_required():
        pytest.fail(message + " [CI=true / THREATBAY_REQUIRE_SERVICES=1 forbid skipping]")
    pytest.skip(message)


def tcp_check(host: str, port: int) -> Callable[[], str | None]:
    """A check that a TCP port accepts connections."""

    def check() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return None
        except OSError as exc:
            return f"cannot connect to {host}:{port}: {exc}"

    return check


def _kafka_check(bootstrap: str) -> Callable[[], str | None]:
    def check() -> str | None:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        problem = tcp_check(host, int(port))()
        if problem is not None:
            return problem
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            brokers = admin.describe_cluster().get("brokers") or []
        finally:
            admin.close()
        return None if brokers else "the broker answered with no brokers in its metadata"

    return check


def _es_check(url: str) -> Callable[[], str | None]:
    def check() -> str | None:
        parts = urlsplit(url)
        problem = tcp_check(parts.hostname or "127.0.0.1", parts.port or 9200)()
        if problem is not None:
            return problem
        resp = httpx.get(
            f"{url.rstrip('/')}/_cluster/health",
            params={"wait_for_status": "yellow", "timeout": "10s"},
            timeout=15.0,
        )
        status = resp.json().get("status") if resp.status_code == 200 else None
        if status in ("yellow", "green"):
            return None
        return f"cluster health HTTP {resp.status_code}, status {status}"

    return check


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of a real Kafka broker that answers metadata (skip/fail otherwise)."""
    bootstrap = os.environ.get("THREATBAY_TEST_KAFKA", DEFAULT_KAFKA)
    require_service(f"Kafka at {bootstrap}", _kafka_check(bootstrap))
    return bootstrap


@pytest.fixture(scope="session")
def es_url() -> str:
    """Base URL of a real Elasticsearch node at yellow or green health (skip/fail otherwise)."""
    url = os.environ.get("THREATBAY_TEST_ES", DEFAULT_ES)
    require_service(f"Elasticsearch at {url}", _es_check(url))
    return url
