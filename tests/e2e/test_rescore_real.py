"""The periodic re-score tests of ``test_rescore`` on real Kafka and real Elasticsearch.

Same tests, same assertions; only the backends differ (STYLE.md 3). Each run
uses its own topic and index prefix, dropped at the end. Skipped on a
developer machine without ``deploy/dev/services up``; fails instead under
CI=true or THREATBAY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import FakeClock
from tests.e2e.conftest import real_backends
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
    with real_backends(tmp_path, clock, kafka_bootstrap, es_url, "rescore") as svc:
        yield svc
