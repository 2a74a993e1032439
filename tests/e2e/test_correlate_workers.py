"""Several correlation workers on one store never lose an update (issue 4).

Each worker remembers the records it wrote last (``RecentRecords``) and merges
a repeat without reading the record back; the write carries the remembered
version, so a record changed by another worker in between must come back as a
conflict, be re-read and be merged again. Runs on the embedded store and on
real Elasticsearch (30 s refresh: only reads by key see fresh writes).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import envelope, names
from core.clock import FakeClock
from core.envelope import Accepted
from core.observables import observables
from core.ports import Incoming
from core.provenance import Provenance
from core.settings import ElasticsearchSettings, Settings
from correlate.worker import Correlator
from tests.e2e.conftest import indicator
from threatbay.bootstrap import Services, build, correlator_for

PATTERN = "[domain-name:value = 'shared-c2.example']"
[KEY] = [o.key for o in observables(PATTERN)]


@pytest.fixture(params=["embedded", "elasticsearch"])
def services(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    svc = build(Settings(data_dir=tmp_path), clock=clock)
    if request.param == "embedded":
        yield svc
        svc.close()
        return
    from backends.elasticsearch_store import ElasticsearchStore

    es = request.getfixturevalue("es_url")
    store = ElasticsearchStore(
        es,
        ElasticsearchSettings(refresh_interval="30s"),
        prefix=f"workers-{uuid.uuid4().hex[:8]}-",
    )
    real = Services(settings=svc.settings, bus=svc.bus, store=store, clock=clock)
    yield real
    store.drop_indices()
    svc.close()


def batch(agency: str, jurisdiction: str, n: int, at: str) -> list[Incoming]:
    obj = indicator(n, pattern=PATTERN, stix_id=f"indicator--{uuid.uuid4()}")
    item = Accepted(obj, Provenance(agency, jurisdiction, at, f"req-{n}", tlp="green"))
    return [
        Incoming(names.TOPIC_RAW, 0, i, m.key, m.value, dict(m.headers))
        for i, m in enumerate(envelope.encode([item]))
    ]


def record(services: Services) -> dict[str, object]:
    stored = services.store.get(names.INDEX_INDICATORS, KEY)
    assert stored is not None
    return stored.doc


def test_a_record_changed_by_another_worker_is_re_read_not_overwritten(
    services: Services,
) -> None:
    first: Correlator = correlator_for(services)
    second: Correlator = correlator_for(services)
    at = "2026-03-01T00:00:00.000Z"

    assert first.process(batch("gd-cert", "GD", 1, at)).records_written == 1
    assert second.process(batch("hk-govcert", "HK", 2, at)).records_written == 1
    # ``first`` still remembers the record as it wrote it, before HK's report.
    result = first.process(batch("mo-cert", "MO", 3, at))

    assert result.conflicts == 1, "the stale remembered version must be refused by the store"
    assert result.records_written == 1
    doc = record(services)
    assert doc["agencies"] == ["gd-cert", "hk-govcert", "mo-cert"]
    assert doc["jurisdiction_count"] == 3
    assert len(doc["sources"]) == 3  # type: ignore[arg-type]


def test_a_remembered_record_is_merged_and_replays_change_nothing(services: Services) -> None:
    worker = correlator_for(services)
    at = "2026-03-01T00:00:00.000Z"
    worker.process(batch("gd-cert", "GD", 1, at))
    messages = batch("hk-govcert", "HK", 2, at)

    assert worker.process(messages).records_written == 1
    assert worker.process(messages).records_written == 0  # the same report again
    doc = record(services)
    assert doc["agencies"] == ["gd-cert", "hk-govcert"]
    assert doc["agency_count"] == 2
