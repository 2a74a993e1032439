"""The Kafka and Elasticsearch adapters on the secured stack, one principal per stage.

Each test works in a fresh namespace whose topics and stage ACLs the admin
creates (``Stack.grant``), as an operator does for the production names; the
stages have no CREATE, DELETE or cluster right (deploy/dev/SECURE.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.elasticsearch_store import ElasticsearchStore
from backends.kafka_bus import KafkaAuth, KafkaBus
from core import names
from core.errors import BusUnavailable, ConfigurationError
from core.ports import Outgoing, Put
from core.settings import ElasticsearchSettings, KafkaSettings
from tests.security.stacks import Stack, fresh_namespace
from threatbay.bootstrap import STAGE_TOPICS, build, check_bus_access

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.timeout(600)]


@pytest.fixture
def ns(secure_stack: Stack) -> Iterator[str]:
    namespace = fresh_namespace("sec")
    secure_stack.grant(namespace)
    yield namespace
    secure_stack.drop(namespace)


def bus_as(stack: Stack, user: str, ns: str, timeout_s: float = 15.0) -> KafkaBus:
    return KafkaBus(
        stack.bootstrap,
        KafkaSettings(replication_factor=stack.replication_factor, session_timeout_ms=6000),
        prefix=ns,
        request_timeout_s=timeout_s,
        auth=stack.kafka_auth(user),
    )


def message(n: int = 0) -> Outgoing:
    return Outgoing(key=f"k{n}", value=b'{"probe": true}', headers={"stage": "test"})


def test_a_stage_without_the_create_right_publishes_to_its_existing_topic(
    secure_stack: Stack, ns: str
) -> None:
    """The broker refuses a create (TOPIC_AUTHORIZATION_FAILED) even for an existing topic."""
    bus = bus_as(secure_stack, "ingest", ns)
    try:
        bus.publish(names.TOPIC_RAW, [message(1), message(2)])
    finally:
        bus.close()
    reader = bus_as(secure_stack, "correlator", ns)
    try:
        member = reader.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
        got: list[str] = []
        for _ in range(40):
            got += [m.key for m in member.poll(timeout_s=0.5)]
            if len(got) >= 2:
                break
        member.commit()
        member.close()
    finally:
        reader.close()
    assert sorted(got) == ["k1", "k2"]


def test_a_stage_principal_writing_a_topic_it_may_not_is_refused(
    secure_stack: Stack, ns: str
) -> None:
    bus = bus_as(secure_stack, "ingest", ns, timeout_s=10)
    try:
        with pytest.raises(BusUnavailable) as refused:
            bus.publish(names.TOPIC_CHANGES, [message()])
    finally:
        bus.close()
    text = str(refused.value)
    assert "User:ingest" in text and f"{ns}{names.TOPIC_CHANGES}" in text, text


def test_a_stage_started_with_another_stages_principal_fails_at_start_naming_what_it_lacks(
    secure_stack: Stack, ns: str, tmp_path: Path
) -> None:
    """kafka-python's consumer without READ would poll nothing forever, silently."""
    settings = secure_stack.settings(ns, tmp_path)
    # The rescore stage's process, wrongly given the ingest principal.
    settings.kafka_security.stages["rescore"] = settings.kafka_security.stages["ingest"]
    services = build(settings, stage="rescore")
    try:
        with pytest.raises(ConfigurationError) as refused:
            check_bus_access(services, "rescore")
    finally:
        services.close()
    text = str(refused.value)
    assert f"{ns}{names.TOPIC_CHANGES}" in text and "User:ingest" in text, text
    # Each stage's own principal passes the same check.
    for stage in STAGE_TOPICS:
        own = build(secure_stack.settings(ns, tmp_path), stage=stage)
        try:
            check_bus_access(own, stage)
        finally:
            own.close()


def test_a_consumer_without_read_right_is_refused_at_start(secure_stack: Stack, ns: str) -> None:
    """ingest may describe and write the raw topic, but not read it."""
    bus = bus_as(secure_stack, "ingest", ns)
    try:
        bus.check_access(write=[names.TOPIC_RAW])
        with pytest.raises(ConfigurationError, match="User:ingest has no READ on Kafka topic"):
            bus.check_access(read=[names.TOPIC_RAW])
    finally:
        bus.close()


def test_a_wrong_kafka_password_gets_nothing(secure_stack: Stack, ns: str) -> None:
    good = secure_stack.kafka_auth("ingest")
    assert good is not None
    bus = KafkaBus(
        secure_stack.bootstrap,
        KafkaSettings(),
        prefix=ns,
        request_timeout_s=5,
        auth=KafkaAuth("ingest", good.password + "x", ca_file=good.ca_file),
    )
    try:
        with pytest.raises(BusUnavailable):
            bus.publish(names.TOPIC_RAW, [message()])
    finally:
        bus.close()


def test_elasticsearch_users_write_only_their_stages_indices(secure_stack: Stack, ns: str) -> None:
    settings = ElasticsearchSettings(replicas=secure_stack.es_replicas)
    correlator = ElasticsearchStore(
        secure_stack.store_url, settings, prefix=ns, auth=secure_stack.es_auth("correlator")
    )
    try:
        [ok] = correlator.put_many(names.INDEX_INDICATORS, [Put("k", {"key": "k"})])
        assert ok.ok
        # The bulk item is refused (403 security_exception): a configuration error that stops
        # the stage and names the index, never a silent refusal or a retry for ever.
        with pytest.raises(ConfigurationError, match=r"threatbay-agencies \(HTTP 403\)"):
            correlator.put_many(names.INDEX_AGENCIES, [Put("agency:x", {"kind": "agency"})])
    finally:
        correlator.close()
    es = secure_stack.es_http()
    try:
        found = es.get(f"/{ns}{names.INDEX_AGENCIES}/_doc/agency:x")
        assert found.status_code == 404, found.text
        direct = es.post(  # the same write as that user, to read Elasticsearch's own answer
            f"/{ns}{names.INDEX_AGENCIES}/_doc/agency:y",
            json={"kind": "agency"},
            auth=("correlator", secure_stack.password_file("es", "correlator").read_text()),
        )
        assert direct.status_code == 403, direct.text
        assert "security_exception" in direct.text
    finally:
        es.close()


def test_a_wrong_elasticsearch_password_is_a_configuration_error(
    secure_stack: Stack, ns: str
) -> None:
    auth = secure_stack.es_auth("ingest")
    assert auth is not None
    from backends.elasticsearch_store import ElasticsearchAuth

    wrong = ElasticsearchAuth(auth.ca_file, "ingest", (auth.password or "") + "x")
    with pytest.raises(ConfigurationError, match="refused user 'ingest' \\(HTTP 401\\)"):
        ElasticsearchStore(secure_stack.store_url, ElasticsearchSettings(), prefix=ns, auth=wrong)


def test_no_password_shows_in_settings_reprs_or_client_logs(
    secure_stack: Stack, ns: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = secure_stack.settings(ns, tmp_path)
    passwords = [
        secure_stack.password_file(system, stage).read_text().strip()
        for system in ("kafka", "es")
        for stage in STAGE_TOPICS
    ]
    caplog.set_level(logging.DEBUG)
    services = build(settings, stage="ingest")
    try:
        services.bus.publish(names.TOPIC_RAW, [message()])
        services.store.get(names.INDEX_AGENCIES, "agency:none")
        shown = [
            repr(settings),
            str(settings.model_dump()),
            repr(services.bus),
            repr(getattr(services.bus, "_auth", None)),
            repr(services.bus._common()),  # type: ignore[attr-defined]  # kafka-python logs it
        ]
    finally:
        services.close()
    text = "\n".join(shown) + "\n" + caplog.text
    assert "Starting KafkaAdminClient with configuration" in caplog.text  # the log was on
    leaked = [p[:4] + "..." for p in passwords if p in text]
    assert not leaked, f"passwords shown: {leaked}"


def test_serve_gives_each_stage_its_own_principal_in_one_process(
    secure_stack: Stack, ns: str, tmp_path: Path
) -> None:
    """``threatbay serve`` on a secured stack: four clients, each with its stage's rights."""
    from threatbay.bootstrap import stage_services

    by_stage = stage_services(secure_stack.settings(ns, tmp_path))
    try:
        principals = {stage: svc.bus.principal for stage, svc in by_stage.items()}  # type: ignore[attr-defined]
        assert principals == {s: f"User:{s}" for s in STAGE_TOPICS}
        with pytest.raises(BusUnavailable):
            by_stage["rescore"].bus.publish(names.TOPIC_RAW, [message()])
    finally:
        for svc in by_stage.values():
            svc.close()
