"""The periodic re-score over the whole flow (embedded backends): TAXII push -> correlate ->
time passes -> re-score -> the API's score sort and filters see the decayed scores.

``test_rescore_real`` runs the same tests on real Kafka and Elasticsearch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from core import names
from core.clock import FakeClock
from core.ports import Consumer, Page, Query, Store
from correlate.rescore import Rescorer
from tests.e2e.conftest import Key, indicator
from threatbay.bootstrap import Services, correlator_for, rescorer_for

IP = "ipv4-addr|value|203.0.113.77"
DOMAIN = "domain-name|value|slow.example.org"


@pytest.fixture
def patience() -> float:
    return 3.0  # seconds an empty poll is believed (the embedded bus answers at once)


@dataclass
class Flow:
    services: Services
    client: TestClient
    keys: dict[str, Key]
    clock: FakeClock
    correlate: Callable[[int], None]
    changes: Consumer
    patience: float

    def push(self, agency: str, *objects: dict[str, Any]) -> None:
        key = self.keys[agency]
        r = self.client.post(
            key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
        )
        assert r.status_code == 202 and r.json()["success_count"] == len(objects), r.text

    def ranked(self, agency: str = "mo", **params: Any) -> list[tuple[str, float]]:
        """(key, stored score) in the API's default order: stored score, descending."""
        self.services.store.refresh(names.INDEX_INDICATORS)
        r = self.client.get(
            "/api/v1/indicators",
            params={"sort": "score", **params},
            headers={"Authorization": self.keys[agency].bearer["Authorization"]},
        )
        assert r.status_code == 200, r.text
        return [(i["key"], i["score"]) for i in r.json()["items"]]

    def decay_changes(self, want: int) -> list[dict[str, Any]]:
        """Re-score changes (``cause: decay``) published on intel.records.changes."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline and len(found) < want:
            for message in self.changes.poll(timeout_s=0.2):
                found += [
                    c for c in orjson.loads(message.value)["changes"] if c.get("cause") == "decay"
                ]
        return found


@pytest.fixture
def flow(
    services: Services, client: TestClient, keys: dict[str, Key], clock: FakeClock, patience: float
) -> Iterator[Flow]:
    worker = correlator_for(services)
    raw = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
    changes = services.bus.consumer(names.TOPIC_CHANGES, "test-rescore", from_beginning=True)

    def correlate(objects: int) -> None:
        done, deadline = 0, time.monotonic() + 30 * patience
        while done < objects and time.monotonic() < deadline:
            done += worker.step(raw, timeout_s=0.2)
        assert done == objects
        services.store.refresh(names.INDEX_INDICATORS)

    yield Flow(services, client, keys, clock, correlate, changes, patience)
    raw.close()
    changes.close()


def scores(ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Scores to two decimals, as compared below."""
    return [(key, round(score, 2)) for key, score in ranked]


def reported(flow: Flow) -> None:
    """An IP (fast decay) from HK and GD, a domain (slow decay) from HK alone."""
    flow.push(
        "hk",
        indicator(1, pattern="[ipv4-addr:value = '203.0.113.77']", confidence=90),
        indicator(2, pattern="[domain-name:value = 'slow.example.org']", confidence=95),
    )
    flow.push("gd", indicator(3, pattern="[ipv4-addr:value = '203.0.113.77']", confidence=90))
    flow.correlate(3)


def test_ten_days_later_the_rescore_reorders_the_score_sort(flow: Flow) -> None:
    reported(flow)
    # IP: 100 × (1 − 0.1 × 0.19) = 98.1 (HK A 0.9, GD B 0.81); domain: HK 0.95 -> 95
    assert scores(flow.ranked()) == [(IP, 98.1), (DOMAIN, 95.0)]

    flow.clock.advance(timedelta(days=10))
    assert flow.ranked()[0][0] == IP  # stored scores are stale until the job runs
    result = rescorer_for(flow.services).run_pass()
    assert (result.due, result.written, result.conflicts) == (2, 2, 0)

    # IP: 98.1 × (1 − (10/47)^(1/1.65)) = 59.70; domain: 95 × (1 − (10/300)^(1/2.1)) = 76.19
    assert scores(flow.ranked()) == [(DOMAIN, 76.19), (IP, 59.70)]
    assert scores(flow.ranked(min_score=70)) == [(DOMAIN, 76.19)]

    announced = {c["key"]: c for c in flow.decay_changes(want=2)}
    assert set(announced) == {IP, DOMAIN}
    assert announced[IP]["kinds"] == ["score_crossing"]
    assert announced[IP]["record"]["score"] == pytest.approx(59.70, abs=0.01)


def test_a_rerun_with_nothing_due_writes_nothing(flow: Flow) -> None:
    reported(flow)
    flow.clock.advance(timedelta(days=3))
    assert rescorer_for(flow.services).run_pass().written == 2
    flow.services.store.refresh(names.INDEX_INDICATORS)
    store = flow.services.store
    before = store.get_many(names.INDEX_INDICATORS, [IP, DOMAIN])

    again = rescorer_for(flow.services).run_pass()
    assert (again.due, again.written) == (0, 0)
    after = store.get_many(names.INDEX_INDICATORS, [IP, DOMAIN])
    assert {k: s.version for k, s in after.items()} == {k: s.version for k, s in before.items()}


class RacingStore:
    """The real store, with one correlator write landing between the job's read and write."""

    def __init__(self, store: Store, race: Callable[[], None]) -> None:
        self._store = store
        self._race: Callable[[], None] | None = race

    def search(self, index: str, query: Query) -> Page:
        found = self._store.search(index, query)  # the job reads records with their versions
        if self._race is not None and index == names.INDEX_INDICATORS and found.hits:
            race, self._race = self._race, None
            race()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_concurrent_correlator_write_is_not_overwritten(flow: Flow) -> None:
    reported(flow)
    flow.clock.advance(timedelta(days=10))

    def macao_reports_the_ip_now() -> None:
        flow.push("mo", indicator(4, pattern="[ipv4-addr:value = '203.0.113.77']", confidence=90))
        flow.correlate(1)

    job = rescorer_for(flow.services)
    racing = Rescorer(
        RacingStore(flow.services.store, macao_reports_the_ip_now),
        job.bus, job.clock, job.scorer, job.agency_profile,
    )  # fmt: skip
    result = racing.run_pass()
    assert (result.conflicts, result.written) == (1, 1)

    stored = flow.services.store.get(names.INDEX_INDICATORS, IP)
    assert stored is not None
    # The correlator's record stands: MO's fresh report, decay reset (t = 0),
    # base 100 × (1 − 0.1 × 0.19 × 0.19) = 99.639, not the re-score's 59.70.
    assert "mo-caric" in stored.doc["agencies"]
    assert stored.doc["score"] == pytest.approx(99.639, abs=0.001)
    ranked = dict(flow.ranked())
    assert ranked[IP] == pytest.approx(99.639, abs=0.001)
    assert ranked[DOMAIN] == pytest.approx(76.19, abs=0.01)
