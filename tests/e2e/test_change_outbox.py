"""A record change is announced even when the bus fails right after the records write.

Without the change outbox (records/outbox.py) the retried batch finds its
reports merged already, changes nothing and announces nothing: the alert
engine would never hear of those records. Runs on the embedded backends and on
real Kafka + Elasticsearch; the bus is the real one, wrapped to refuse the
first publish on ``intel.records.changes`` (a broker outage at that moment).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import envelope, names
from core.clock import FakeClock
from core.envelope import Accepted
from core.errors import BusUnavailable
from core.observables import observables
from core.ports import Bus, Outgoing
from core.provenance import Provenance
from core.settings import OutboxSettings
from records.changes import ChangeAnnouncer
from records.outbox import Outbox
from tests.e2e.conftest import embedded_or_real, indicator
from threatbay.bootstrap import Services, correlator_for

PATTERNS = ["[domain-name:value = 'outbox-one.example']", "[ipv4-addr:value = '203.0.113.77']"]
KEYS = sorted(o.key for p in PATTERNS for o in observables(p))


class ChangesRefusedOnce:
    """The real bus, refusing the first publish on the changes topic."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.refused = 0

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        if topic.endswith(names.TOPIC_CHANGES) and self.refused == 0:
            self.refused += 1
            raise BusUnavailable("broker unreachable (test)")
        self.bus.publish(topic, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "outbox") as svc:
        yield svc


def publish_indicators(services: Services) -> None:
    items = [
        Accepted(
            indicator(pattern=p, stix_id=f"indicator--{uuid.uuid4()}"),
            Provenance("gd-cert", "GD", "2026-03-01T00:00:00.000Z", "req-1", tlp="green"),
        )
        for p in PATTERNS
    ]
    services.bus.publish(names.TOPIC_RAW, envelope.encode(items))


def announced(services: Services) -> dict[str, list[str]]:
    """Record key -> kinds of every change on the changes topic so far."""
    consumer = services.bus.consumer(names.TOPIC_CHANGES, f"check-{uuid.uuid4().hex[:6]}",
                                     from_beginning=True)  # fmt: skip
    found: dict[str, list[str]] = {}
    try:
        for _ in range(20):
            for message in consumer.poll(max_records=500, timeout_s=0.5):
                for change in orjson.loads(message.value)["changes"]:
                    assert change["record"]["key"] == change["key"]
                    found.setdefault(change["key"], []).extend(change["kinds"])
            if found and set(found) >= set(KEYS):
                break
    finally:
        consumer.close()
    return found


def test_changes_lost_to_a_bus_failure_after_the_write_are_announced_by_the_sweep(
    backends: Services, clock: FakeClock
) -> None:
    publish_indicators(backends)
    flaky = ChangesRefusedOnce(backends.bus)
    worker = correlator_for(dataclasses.replace(backends, bus=flaky))
    consumer = backends.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR, from_beginning=True)
    with pytest.raises(BusUnavailable):
        worker.drain(consumer, idle_polls=8)
    consumer.close()  # not committed: the batch comes again
    assert flaky.refused == 1
    for key in KEYS:  # the records were written before the publish failed
        assert backends.store.get(names.INDEX_INDICATORS, key) is not None

    # A restarted correlator processes the batch again: nothing changes, nothing announced.
    restarted = correlator_for(backends)
    again = backends.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR, from_beginning=True)
    assert restarted.drain(again, idle_polls=8) == len(PATTERNS)
    assert announced(backends) == {}

    # Its sweep publishes what the failed write noted, once the grace period has passed.
    clock.advance(timedelta(seconds=OutboxSettings().grace_s + 1))
    backends.store.refresh(names.INDEX_CHANGE_OUTBOX)
    restarted._next_sweep = 0.0  # the next step sweeps (every SWEEP_INTERVAL_S otherwise)
    restarted.step(again, timeout_s=0.2)
    again.close()
    assert announced(backends) == {key: ["new_record"] for key in KEYS}

    # The note is gone: a later sweep announces nothing more.
    backends.store.refresh(names.INDEX_CHANGE_OUTBOX)
    assert backends.store.count(names.INDEX_CHANGE_OUTBOX) == 0
    no_grace = Outbox(backends.store, clock, OutboxSettings(grace_s=0))
    assert ChangeAnnouncer(backends.store, backends.bus, no_grace).announce_pending() == 0


def test_a_published_write_leaves_no_note(backends: Services) -> None:
    publish_indicators(backends)
    worker = correlator_for(backends)
    consumer = backends.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR, from_beginning=True)
    assert worker.drain(consumer, idle_polls=8) == len(PATTERNS)
    consumer.close()
    assert announced(backends) == {key: ["new_record"] for key in KEYS}
    backends.store.refresh(names.INDEX_CHANGE_OUTBOX)
    assert backends.store.count(names.INDEX_CHANGE_OUTBOX) == 0
