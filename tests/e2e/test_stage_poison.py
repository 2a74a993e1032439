"""Every stage treats bad input and bugs the same way (core/consuming.py).

For the correlator, the alert engine, the notifier and the re-score: poison
(an undecodable message, one bad entry inside a good message, a record damaged
in the store) goes to ``intel.dlq`` with its reason and the stage that found
it, while the rest of the batch is processed; a programming error is never
dead-lettered: the stage raises, commits nothing, and the input comes again.
Embedded and real Kafka + Elasticsearch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import envelope, names
from core.clock import FakeClock
from core.envelope import Accepted
from core.ports import Consumer, Incoming, Outgoing, Put
from core.provenance import Provenance
from correlate import merge
from records.books import records_of
from tests.e2e.conftest import AGENCIES, embedded_or_real, indicator
from threatbay.bootstrap import (
    Services,
    alert_engine_for,
    correlator_for,
    notifier_for,
    rescorer_for,
)

DOMAIN = "poison-test.example"
KEY = f"domain-name|value|{DOMAIN}"


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "poison") as svc:
        for agency in AGENCIES.values():
            records_of(svc).agencies.add_agency(agency)
        yield svc


def accepted(agency: str, jurisdiction: str, **obj: Any) -> Accepted:
    return Accepted(
        {**indicator(stix_id=f"indicator--{uuid.uuid4()}"), **obj},
        Provenance(agency, jurisdiction, "2026-03-01T00:00:00.000Z", "req", tlp="green"),
    )


def poll_all(consumer: Consumer, want: int, seconds: float = 20.0) -> list[Incoming]:
    """Messages until ``want`` arrived or ``seconds`` passed (Kafka polls may come back empty)."""
    found: list[Incoming] = []
    deadline = time.monotonic() + seconds
    while len(found) < want and time.monotonic() < deadline:
        found += consumer.poll(max_records=500, timeout_s=0.5)
    return found


def dead_letters(services: Services, want: int) -> list[Incoming]:
    consumer = services.bus.consumer(names.TOPIC_DLQ, f"dlq-{uuid.uuid4().hex[:6]}",
                                     from_beginning=True)  # fmt: skip
    try:
        return poll_all(consumer, want)
    finally:
        consumer.close()


def drain(stage: Any, services: Services, want: int) -> int:
    """Drain ``stage`` until ``want`` units were processed (bounded)."""
    consumer = services.bus.consumer(stage.topic, stage.group)
    done, deadline = 0, time.monotonic() + 30
    try:
        while done < want and time.monotonic() < deadline:
            done += stage.step(consumer, timeout_s=0.5)
        return done
    finally:
        consumer.close()


def two_jurisdictions_report(services: Services) -> None:
    """GD and HK report one domain with high confidence: a record, changes, an alert."""
    items = [
        accepted("gd-cac", "GD", pattern=f"[domain-name:value = '{DOMAIN}']", confidence=90),
        accepted("hk-govcert", "HK", pattern=f"[domain-name:value = '{DOMAIN}']", confidence=80),
    ]
    services.bus.publish(names.TOPIC_RAW, envelope.encode(items))
    assert drain(correlator_for(services), services, 2) == 2


# ---------------------------------------------------------------- correlator


def test_correlator_dead_letters_poison_and_correlates_the_rest(backends: Services) -> None:
    good = accepted("gd-cac", "GD", pattern=f"[domain-name:value = '{DOMAIN}']")
    no_pattern = accepted("gd-cac", "GD")
    del no_pattern.obj["pattern"]
    later = accepted("hk-govcert", "HK", pattern="[ipv4-addr:value = '203.0.113.9']")
    backends.bus.publish(names.TOPIC_RAW, [Outgoing(key="b01", value=b"{not json")])
    backends.bus.publish(names.TOPIC_RAW, envelope.encode([good, no_pattern]))
    backends.bus.publish(names.TOPIC_RAW, envelope.encode([later]))

    assert drain(correlator_for(backends), backends, 3) == 3
    assert backends.store.get(names.INDEX_INDICATORS, KEY) is not None
    assert backends.store.get(names.INDEX_INDICATORS, "ipv4-addr|value|203.0.113.9") is not None
    letters = dead_letters(backends, 2)
    reasons = sorted(m.headers["reason"] for m in letters)
    assert len(reasons) == 2
    assert "undecodable" in reasons[1] and "no string pattern" in reasons[0]
    assert {m.headers["stage"] for m in letters} == {"correlator"}
    [lone] = [m for m in letters if "pattern" in m.headers["reason"]]
    assert orjson.loads(lone.value)["object"]["id"] == no_pattern.obj["id"]


def test_a_bug_in_the_correlator_is_not_dead_lettered(
    backends: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(merge, "source_report", broken)
    backends.bus.publish(
        names.TOPIC_RAW,
        envelope.encode([accepted("gd-cac", "GD", pattern=f"[domain-name:value = '{DOMAIN}']")]),
    )
    worker = correlator_for(backends)
    consumer = backends.bus.consumer(worker.topic, worker.group)
    with pytest.raises(KeyError):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            worker.step(consumer, timeout_s=0.5)
    consumer.close()
    assert dead_letters(backends, 1) == []
    monkeypatch.undo()
    # Nothing was committed: the same object comes again and is correlated.
    assert drain(correlator_for(backends), backends, 1) == 1
    assert backends.store.get(names.INDEX_INDICATORS, KEY) is not None


# -------------------------------------------------------------- alert engine


def test_alert_engine_dead_letters_poison_and_alerts_on_the_rest(backends: Services) -> None:
    two_jurisdictions_report(backends)
    bad_entry = {"changes": [{"record": "not a record", "kinds": ["new_record"]}]}
    backends.bus.publish(
        names.TOPIC_CHANGES,
        [
            Outgoing(key="b02", value=b"\xff\xfe not json"),
            Outgoing(key="b03", value=orjson.dumps(bad_entry)),
        ],
    )
    engine = alert_engine_for(backends)
    assert drain(engine, backends, 3) >= 3
    backends.store.refresh(names.INDEX_ALERTS)
    assert backends.store.count(names.INDEX_ALERTS) == 1
    letters = dead_letters(backends, 2)
    reasons = {m.headers["reason"].split(":")[0] for m in letters}
    assert reasons == {
        "undecodable record changes",
        "record change has no record with a string key",
    }
    assert {m.headers["stage"] for m in letters} == {"alerter"}


def test_a_bug_in_the_alert_engine_is_not_dead_lettered(
    backends: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_jurisdictions_report(backends)
    import correlate.alerter

    def broken(*_: Any, **__: Any) -> Any:
        raise TypeError("a bug, not bad input")

    monkeypatch.setattr(correlate.alerter, "evaluate", broken)
    engine = alert_engine_for(backends)
    consumer = backends.bus.consumer(engine.topic, engine.group)
    with pytest.raises(TypeError):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            engine.step(consumer, timeout_s=0.5)
    consumer.close()
    assert dead_letters(backends, 1) == []
    monkeypatch.undo()
    assert drain(alert_engine_for(backends), backends, 1) >= 1
    backends.store.refresh(names.INDEX_ALERTS)
    assert backends.store.count(names.INDEX_ALERTS) == 1


# ------------------------------------------------------------------ notifier


def test_notifier_dead_letters_poison_and_notifies_the_rest(backends: Services) -> None:
    books = records_of(backends)
    books.webhooks.register(AGENCIES["gd"], "https://gd.example/hook")
    backends.store.refresh(names.INDEX_WEBHOOKS)
    two_jurisdictions_report(backends)
    assert drain(alert_engine_for(backends), backends, 1) >= 1
    backends.bus.publish(
        names.TOPIC_ALERTS,
        [
            Outgoing(key="a1", value=b"not json at all"),
            Outgoing(key="a2", value=orjson.dumps({"type": "notified", "alert_id": 7})),
        ],
    )
    notifier = notifier_for(backends)
    assert drain(notifier, backends, 4) >= 4
    backends.store.refresh(names.INDEX_DELIVERIES)
    jobs, _ = books.deliveries.page(agency="gd-cac", state=None, alert_id=None, limit=10,
                                    cursor=None)  # fmt: skip
    assert [j["event_type"] for j in jobs] == ["notified"]
    letters = dead_letters(backends, 2)
    reasons = sorted(m.headers["reason"] for m in letters)
    assert reasons[0] == "alert event has no string 'id'"
    assert reasons[1].startswith("undecodable alert event")
    assert {m.headers["stage"] for m in letters} == {"notifier"}


def test_a_bug_in_the_notifier_is_not_dead_lettered(
    backends: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    records_of(backends).webhooks.register(AGENCIES["gd"], "https://gd.example/hook")
    backends.store.refresh(names.INDEX_WEBHOOKS)
    two_jurisdictions_report(backends)
    assert drain(alert_engine_for(backends), backends, 1) >= 1
    import notify.notifier

    def broken(*_: Any, **__: Any) -> Any:
        raise AttributeError("a bug, not bad input")

    monkeypatch.setattr(notify.notifier, "alert_view", broken)
    notifier = notifier_for(backends)
    consumer = backends.bus.consumer(notifier.topic, notifier.group)
    with pytest.raises(AttributeError):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            notifier.step(consumer, timeout_s=0.5)
    consumer.close()
    assert dead_letters(backends, 1) == []


# ------------------------------------------------------------------ re-score


def test_rescore_dead_letters_a_damaged_record_and_rescores_the_others(
    backends: Services, clock: FakeClock
) -> None:
    two_jurisdictions_report(backends)
    damaged = {"key": "domain-name|value|damaged.example", "observable_type": "domain-name",
               "value": "damaged.example", "state": "active", "score": 50.0,
               "sources": "not a list", "next_rescore_at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
    backends.store.put_many(names.INDEX_INDICATORS, [Put(damaged["key"], damaged)])
    backends.store.refresh(names.INDEX_INDICATORS)
    before = backends.store.get(names.INDEX_INDICATORS, KEY)
    assert before is not None
    clock.advance(timedelta(days=30))

    result = rescorer_for(backends).run_pass()
    assert result.dead_lettered == 1
    after = backends.store.get(names.INDEX_INDICATORS, KEY)
    assert after is not None and after.doc["score"] < before.doc["score"]
    [letter] = dead_letters(backends, 1)
    assert letter.key == damaged["key"]
    assert letter.headers["stage"] == "rescore"
    assert "sources are not a list" in letter.headers["reason"]


def test_a_bug_in_the_rescore_is_not_dead_lettered(
    backends: Services, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_jurisdictions_report(backends)
    backends.store.refresh(names.INDEX_INDICATORS)
    clock.advance(timedelta(days=30))
    import correlate.rescore

    def broken(*_: Any, **__: Any) -> Any:
        raise TypeError("a bug, not a damaged record")

    monkeypatch.setattr(correlate.rescore, "apply_decay", broken)
    with pytest.raises(TypeError):
        rescorer_for(backends).run_pass()
    assert dead_letters(backends, 1) == []
