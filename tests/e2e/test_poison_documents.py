"""No poison pill (issue #17): a document Elasticsearch would reject never stalls a stage.

Each test pushes a batch in which one object leads to a document at one of
Elasticsearch's limits, next to good objects of the same bus message, and
drives the stage through the one consumer loop. Either the document lands
(keys over 512 bytes, keyword values over 32,766 bytes: the adapter stores
them) or the object behind it goes to ``intel.dlq`` with Elasticsearch's
reason (a value its mapping cannot parse, a document over
``http.max_content_length``); in every case every other object of the batch
lands and the stage commits. Before the fix the correlator raised on the
first two kinds (a crash loop: 400 ``action_request_validation_exception``;
a retry loop: the refused term read as an outage) and on the last one (413),
and the refused value was retried for ever. Embedded and real Kafka +
Elasticsearch; the mapping and size refusals are injected by a wrapper that
alters one document on its way into the real store, so the real store refuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import envelope, names
from core.clock import FakeClock
from core.ports import Outgoing, Put, PutResult, Query, Store, Term
from records.books import records_of
from tests.e2e.conftest import AGENCIES, embedded_or_real
from tests.e2e.test_stage_poison import accepted, dead_letters, drain
from threatbay.bootstrap import Services, alert_engine_for, correlator_for, rescorer_for

IND = names.INDEX_INDICATORS
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024  # core.ports.MAX_DOCUMENT_BYTES

#: A real producer shape (3 hashes + a file name, MISP-STIX): its key is over 512 bytes.
COMPOUND = (
    "[file:hashes.'SHA-1' = '" + "a" * 40 + "' AND file:hashes.'SHA-256' = '" + "b" * 64
    + "' AND file:hashes.MD5 = '" + "c" * 32 + "' AND file:name = '" + "setup-" * 60 + ".exe']"
)  # fmt: skip
LONG_URL = "http://long.example/" + "segment/" * 5_000  # 40 KB: a keyword term over 32,766 bytes


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "poisondoc") as svc:
        for agency in AGENCIES.values():
            records_of(svc).agencies.add_agency(agency)
        yield svc


class Altering:
    """The real store, with one document altered on its way in (so the real store refuses it)."""

    def __init__(self, store: Store, index: str, key_part: str, alter: Any) -> None:
        self._store, self._index, self._part, self._alter = store, index, key_part, alter

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        if index == self._index:
            puts = [
                dataclasses.replace(p, doc=self._alter(p.doc)) if self._part in p.key else p
                for p in puts
            ]
        return self._store.put_many(index, puts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def altered(services: Services, index: str, key_part: str, alter: Any) -> Services:
    return dataclasses.replace(services, store=Altering(services.store, index, key_part, alter))


def push_one_message(services: Services, patterns: list[str]) -> list[str]:
    """Publish indicators with ``patterns`` in ONE bus message (neighbours of the bad one)."""
    items = [accepted("gd-cac", "GD", pattern=p) for p in patterns]
    value = orjson.dumps(
        {
            "v": envelope.WIRE_VERSION,
            "items": [{"object": i.obj, "provenance": i.provenance.to_dict()} for i in items],
        }
    )
    services.bus.publish(names.TOPIC_RAW, [Outgoing(key="b00", value=value)])
    return [i.obj["id"] for i in items]


GOOD = ["[domain-name:value = 'good-one.example']", "[ipv4-addr:value = '203.0.113.77']"]
GOOD_KEYS = ["domain-name|value|good-one.example", "ipv4-addr|value|203.0.113.77"]


def assert_good_landed(services: Services) -> None:
    for key in GOOD_KEYS:
        assert services.store.get(IND, key) is not None, key


def test_a_record_key_over_512_bytes_lands_and_is_read_by_key(backends: Services) -> None:
    push_one_message(backends, [GOOD[0], COMPOUND, GOOD[1]])
    assert drain(correlator_for(backends), backends, 3) == 3
    assert_good_landed(backends)
    keys = [k for k in _record_keys(backends) if k.startswith("pattern|")]
    assert len(keys) == 1 and len(keys[0].encode()) > 512
    record = backends.store.get(IND, keys[0])
    assert record is not None and record.doc["key"] == keys[0]
    assert no_dead_letters(backends)


def test_a_keyword_value_over_32766_bytes_lands_and_is_found_by_exact_match(
    backends: Services,
) -> None:
    push_one_message(backends, [GOOD[0], f"[url:value = '{LONG_URL}']", GOOD[1]])
    assert drain(correlator_for(backends), backends, 3) == 3
    assert_good_landed(backends)
    from core.lookup import candidate_keys

    [key] = candidate_keys(LONG_URL)
    assert len(key.encode()) > 32_766
    assert backends.store.get(IND, key) is not None
    backends.store.refresh(IND)
    hits = backends.store.search(IND, Query(filters=(Term("key", (key,)),))).hits
    assert [h.key for h in hits] == [key]
    assert no_dead_letters(backends)


def test_a_value_the_mapping_cannot_parse_sends_only_its_object_to_the_dlq(
    backends: Services,
) -> None:
    bad = "[domain-name:value = 'unparseable.example']"
    poisoned = altered(backends, IND, "unparseable.example", lambda d: d | {"score": "high"})
    ids = push_one_message(backends, [GOOD[0], bad, GOOD[1]])
    assert drain(correlator_for(poisoned), poisoned, 3) >= 2
    assert_good_landed(backends)
    assert backends.store.get(IND, "domain-name|value|unparseable.example") is None
    [letter] = dead_letters(backends, 1)
    assert letter.headers["stage"] == "correlator"
    assert "score" in letter.headers["reason"]
    assert orjson.loads(letter.value)["object"]["id"] == ids[1]
    # Committed: a correlator started afterwards finds nothing left to do.
    assert drain(correlator_for(backends), backends, 1) == 0


def test_a_document_over_the_size_limit_sends_only_its_object_to_the_dlq(
    backends: Services,
) -> None:
    bad = "[domain-name:value = 'huge-record.example']"
    huge = "z" * (MAX_DOCUMENT_BYTES + 10)
    poisoned = altered(backends, IND, "huge-record.example", lambda d: d | {"blob": huge})
    ids = push_one_message(backends, [GOOD[0], bad, GOOD[1]])
    assert drain(correlator_for(poisoned), poisoned, 3) >= 2
    assert_good_landed(backends)
    [letter] = dead_letters(backends, 1)
    assert "bytes" in letter.headers["reason"]
    assert orjson.loads(letter.value)["object"]["id"] == ids[1]


def test_the_alert_engine_dead_letters_the_change_whose_alert_is_refused(
    backends: Services,
) -> None:
    both = [("gd-cac", "GD", 90), ("hk-govcert", "HK", 85)]
    items = [
        accepted(agency, j, pattern=f"[domain-name:value = '{d}.example']", confidence=c)
        for d in ("alert-ok", "alert-bad")
        for agency, j, c in both
    ]
    backends.bus.publish(names.TOPIC_RAW, envelope.encode(items))
    assert drain(correlator_for(backends), backends, 4) == 4
    poisoned = altered(
        backends,
        names.INDEX_ALERTS,
        "",
        lambda d: d | {"level_rank": "x"} if "alert-bad" in str(d.get("indicator_keys")) else d,
    )
    assert drain(alert_engine_for(poisoned), poisoned, 1) >= 1
    backends.store.refresh(names.INDEX_ALERTS)
    alerts = backends.store.search(names.INDEX_ALERTS, Query(limit=10)).hits
    assert [a.doc["indicator_keys"] for a in alerts] == [["domain-name|value|alert-ok.example"]]
    [letter] = dead_letters(backends, 1)
    assert letter.headers["stage"] == "alerter" and "level_rank" in letter.headers["reason"]
    assert "alert-bad.example" in letter.value.decode()


def test_rescore_dead_letters_a_record_the_store_refuses_and_rescores_the_rest(
    backends: Services, clock: FakeClock
) -> None:
    push_one_message(backends, [GOOD[0], GOOD[1]])
    assert drain(correlator_for(backends), backends, 2) == 2
    backends.store.refresh(IND)
    clock.advance(timedelta(days=30))
    poisoned = altered(backends, IND, "good-one", lambda d: d | {"sighted": "perhaps"})
    result = rescorer_for(poisoned).run_pass()
    assert result.dead_lettered == 1 and result.written == 1
    [letter] = dead_letters(backends, 1)
    assert letter.headers["stage"] == "rescore" and "sighted" in letter.headers["reason"]


def no_dead_letters(services: Services) -> bool:
    """Nothing on ``intel.dlq`` (polled for a few seconds: Kafka may answer empty at first)."""
    consumer = services.bus.consumer(names.TOPIC_DLQ, "dlq-empty", from_beginning=True)
    try:
        return not any(consumer.poll(max_records=10, timeout_s=1.0) for _ in range(5))
    finally:
        consumer.close()


def _record_keys(services: Services) -> list[str]:
    services.store.refresh(IND)
    return [h.key for h in services.store.search(IND, Query(limit=100)).hits]
