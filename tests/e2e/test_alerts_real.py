"""The early-warning flow of ``test_alerts_flow`` on real Kafka and real Elasticsearch.

Same tests, same assertions; only the backends differ (STYLE.md 3). Each run
uses its own topic and index prefix. Skipped on a developer machine without
``deploy/dev/services up``; fails instead under CI=true or
THREATBAY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import FakeClock
from tests.e2e.conftest import real_backends
from tests.e2e.test_alerts_flow import (  # noqa: F401 - fixtures and tests run here too
    platform,
    receiver,
    test_a_burst_of_events_larger_than_a_page_reaches_the_stream_whole,
    test_a_resolve_whose_notification_fails_to_publish_is_still_notified,
    test_dead_delivery_is_visible_in_the_api,
    test_replaying_the_change_log_changes_no_alert,
    test_surge_of_200_indicators_of_one_malware_family_gives_one_alert,
    test_tlp_red_alert_reaches_only_named_recipients,
    test_two_jurisdictions_one_alert_notified_acknowledged_and_escalated,
)
from threatbay.bootstrap import Services

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.elasticsearch,
]


@pytest.fixture
def patience() -> int:
    return 10  # Kafka: polls may come back empty while a batch is in flight


@pytest.fixture
def services(
    tmp_path: Path, clock: FakeClock, kafka_bootstrap: str, es_url: str
) -> Iterator[Services]:
    """Real Kafka bus and real Elasticsearch store, private prefixes; overrides conftest's."""
    with real_backends(tmp_path, clock, kafka_bootstrap, es_url, "alerts") as svc:
        yield svc
