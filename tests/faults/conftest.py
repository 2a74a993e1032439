"""Fault scenarios on real Kafka and Elasticsearch (issue 8 "Faults").

Tests marked ``faults_services`` SIGKILL the shared Kafka broker or
Elasticsearch node: they are moved to the very end of the whole session so no
other engineer's test runs while a service is down, and each one restarts the
service it killed (``finally``) and waits for it to be healthy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Platform, Receiver


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults_services: SIGKILLs shared Kafka/Elasticsearch; runs last in a session"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move every ``faults_services`` test after all other tests of the session."""
    killing = [i for i in items if i.get_closest_marker("faults_services")]
    if killing:
        rest = [i for i in items if not i.get_closest_marker("faults_services")]
        items[:] = rest + killing


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.down()


@pytest.fixture
def platform(kafka_bootstrap: str, es_url: str, tmp_path: Path) -> Iterator[Platform]:
    p = Platform(kafka_bootstrap, es_url, tmp_path)
    yield p
    p.close()


@pytest.fixture
def hooked_platform(
    kafka_bootstrap: str, es_url: str, tmp_path: Path, receiver: Receiver
) -> Iterator[Platform]:
    """A platform whose three agencies have webhooks on ``receiver`` (down at first)."""
    p = Platform(kafka_bootstrap, es_url, tmp_path, receiver)
    yield p
    p.close()
