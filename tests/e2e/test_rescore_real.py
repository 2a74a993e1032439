"""The periodic re-score tests of ``test_rescore`` on real Kafka and real Elasticsearch.

Same tests, same assertions; only the backends differ (STYLE.md 3). Each run
uses its own topic and index prefix, dropped at the end. Skipped on a
developer machine without ``deploy/dev/services up``; fails instead under
CI=true or THREATBAY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import FakeClock
from core.settings import ElasticsearchSettings, KafkaSettings, Settings
from tests.e2e.test_rescore import (  # noqa: F401 - fixtures and tests run here too
    flow,
    test_a_concurrent_correlator_write_is_not_overwritten,
    test_a_rerun_with_nothing_due_writes_nothing,
    test_ten_days_later_the_rescore_reorders_the_score_sort,
)
from threatbay.bootstrap import Services

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch]


@pytest.fixture
def patience() -> float:
    return 20.0  # Kafka: the first polls come back empty while the group joins


@pytest.fixture
def services(
    tmp_path: Path, clock: FakeClock, kafka_bootstrap: str, es_url: str
) -> Iterator[Services]:
    """Real Kafka bus and real Elasticsearch store, private prefixes; overrides conftest's."""
    from backends.elasticsearch_store import ElasticsearchStore
    from backends.kafka_bus import KafkaBus

    run = uuid.uuid4().hex[:8]
    store = ElasticsearchStore(es_url, ElasticsearchSettings(), prefix=f"rescore-{run}-")
    bus = KafkaBus(
        kafka_bootstrap,
        KafkaSettings(partitions=3, session_timeout_ms=6000),
        prefix=f"rescore-{run}-",
    )
    svc = Services(settings=Settings(data_dir=tmp_path), bus=bus, store=store, clock=clock)
    yield svc
    store.drop_indices()
    svc.close()
