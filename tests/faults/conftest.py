"""Fault scenarios on real Kafka and Elasticsearch (issue 8 "Faults").

Tests marked ``faults_services`` SIGKILL the shared Kafka broker or
Elasticsearch node: they are moved to the very end of the whole session so no
other engineer's test runs while a service is down, and each one restarts the
service it killed (``finally``) and waits for it to be healthy.

Tests marked ``cluster_faults`` SIGKILL nodes of the three-node cluster
(``tests.security.stacks``): they run after those, last of all, because the
secured end-to-end test may share that cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Platform, Receiver
from tests.security.stacks import cluster_stack, secure_stack, stack_session  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults_services: SIGKILLs shared Kafka/Elasticsearch; runs last in a session"
    )
    config.addinivalue_line(
        "markers", "cluster_faults: SIGKILLs nodes of the three-node cluster; runs last of all"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move ``faults_services`` tests after all others, and ``cluster_faults`` after those."""
    killing = [i for i in items if i.get_closest_marker("faults_services")]
    cluster = [i for i in items if i.get_closest_marker("cluster_faults")]
    if killing or cluster:
        rest = [i for i in items if i not in killing and i not in cluster]
        items[:] = rest + killing + cluster


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
