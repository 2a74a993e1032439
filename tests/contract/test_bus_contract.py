"""One contract for every ``Bus`` adapter: embedded SQLite log and real Kafka (STYLE.md 3).

Guarantees checked are those ARCHITECTURE.md relies on: at-least-once
delivery (uncommitted messages come back, committed ones do not), per-key
order, independent groups, replay from the beginning, and a failed publish
that says so.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.errors import BusUnavailable
from core.ports import Bus, Consumer, Incoming, Outgoing
from core.settings import KafkaSettings

BusFactory = Callable[[], Bus]

KAFKA_TEST_SETTINGS = KafkaSettings(partitions=3, session_timeout_ms=6000, linger_ms=5)


@pytest.fixture(params=["embedded", "kafka"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make_bus(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BusFactory]:
    """Builds bus instances on one shared log (a new instance = a restarted process)."""
    built: list[Bus] = []
    if backend == "embedded":
        from backends.embedded_bus import EmbeddedBus

        path = str(tmp_path / "bus.sqlite3")

        def factory() -> Bus:
            built.append(EmbeddedBus(path))
            return built[-1]
    else:
        from backends.kafka_bus import KafkaBus

        bootstrap: str = request.getfixturevalue("kafka_bootstrap")

        def factory() -> Bus:
            built.append(KafkaBus(bootstrap, KAFKA_TEST_SETTINGS))
            return built[-1]

    yield factory
    for bus in built:
        bus.close()


@pytest.fixture
def topic() -> str:
    return f"tb-contract-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def group() -> str:
    return f"tb-group-{uuid.uuid4().hex[:12]}"


def _messages(n: int, prefix: str = "m", keys: int = 5) -> list[Outgoing]:
    return [
        Outgoing(key=f"key-{i % keys}", value=f"{prefix}-{i}".encode(), headers={"seq": str(i)})
        for i in range(n)
    ]


def _drain(consumer: Consumer, want: int, timeout_s: float = 45.0) -> list[Incoming]:
    """Poll until ``want`` messages arrived (or the deadline passed)."""
    got: list[Incoming] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(consumer.poll(max_records=500, timeout_s=0.5))
    return got


def _values(batch: list[Incoming]) -> set[bytes]:
    return {m.value for m in batch}


def test_published_messages_are_consumed_with_key_and_headers(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    bus = make_bus()
    bus.publish(
        topic, [Outgoing(key="indicator--1", value=b"\x00{}\xff", headers={"agency": "HK"})]
    )
    consumer = bus.consumer(topic, group)
    got = _drain(consumer, 1)
    consumer.close()
    assert [(m.topic, m.key, m.value, dict(m.headers)) for m in got] == [
        (topic, "indicator--1", b"\x00{}\xff", {"agency": "HK"})
    ]


def test_committed_messages_are_not_redelivered_after_restart(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    bus = make_bus()
    bus.publish(topic, _messages(30))
    first = bus.consumer(topic, group)
    assert len(_drain(first, 30)) == 30
    first.commit()
    first.close()
    bus.close()

    bus = make_bus()
    bus.publish(topic, [Outgoing(key="key-0", value=b"after-restart")])
    second = bus.consumer(topic, group)
    got = _drain(second, 1)
    got += second.poll(timeout_s=1.0)
    second.close()
    assert [m.value for m in got] == [b"after-restart"]


def test_uncommitted_messages_are_redelivered_to_the_next_member(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    bus = make_bus()
    sent = _messages(40)
    bus.publish(topic, sent)
    first = bus.consumer(topic, group)
    assert len(_drain(first, 40)) == 40
    first.close()  # crashed before committing

    second = make_bus().consumer(topic, group)
    again = _drain(second, 40)
    second.close()
    assert _values(again) == {m.value for m in sent}


def test_partial_commit_redelivers_only_the_rest(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    bus = make_bus()
    bus.publish(topic, _messages(20, prefix="early"))
    first = bus.consumer(topic, group)
    assert len(_drain(first, 20)) == 20
    first.commit()
    bus.publish(topic, _messages(10, prefix="late"))
    assert len(_drain(first, 10)) == 10
    first.close()

    second = bus.consumer(topic, group)
    rest = _drain(second, 10)
    rest += second.poll(timeout_s=1.0)
    second.close()
    assert _values(rest) == {f"late-{i}".encode() for i in range(10)}


def test_rewind_redelivers_uncommitted_messages(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    bus = make_bus()
    bus.publish(topic, _messages(12))
    consumer = bus.consumer(topic, group)
    assert len(_drain(consumer, 12)) == 12
    consumer.rewind()
    again = _drain(consumer, 12)
    consumer.close()
    assert _values(again) == {f"m-{i}".encode() for i in range(12)}


def test_order_is_kept_per_key(make_bus: BusFactory, topic: str, group: str) -> None:
    bus = make_bus()
    for batch in range(4):
        bus.publish(topic, _messages(50, prefix=f"b{batch}", keys=7))
    consumer = bus.consumer(topic, group)
    got = _drain(consumer, 200)
    consumer.close()
    assert len(got) == 200
    per_key: dict[str, list[tuple[int, int]]] = {}
    for m in got:
        batch_no = int(m.value.decode().split("-")[0][1:])
        per_key.setdefault(m.key, []).append((batch_no, int(m.headers["seq"])))
    assert len(per_key) == 7
    for key, seen in per_key.items():
        assert seen == sorted(seen), f"{key} delivered out of order"


def test_two_groups_consume_independently(make_bus: BusFactory, topic: str) -> None:
    bus = make_bus()
    bus.publish(topic, _messages(25))
    correlator = bus.consumer(topic, f"correlator-{uuid.uuid4().hex[:8]}")
    assert len(_drain(correlator, 25)) == 25
    correlator.commit()
    correlator.close()

    alerter = bus.consumer(topic, f"alerter-{uuid.uuid4().hex[:8]}")
    got = _drain(alerter, 25)
    alerter.close()
    assert _values(got) == {f"m-{i}".encode() for i in range(25)}


def test_from_beginning_replays_the_whole_log(make_bus: BusFactory, topic: str, group: str) -> None:
    bus = make_bus()
    bus.publish(topic, _messages(15))
    first = bus.consumer(topic, group)
    assert len(_drain(first, 15)) == 15
    first.commit()
    first.close()

    replay = bus.consumer(topic, group, from_beginning=True)
    got = _drain(replay, 15)
    replay.close()
    assert _values(got) == {f"m-{i}".encode() for i in range(15)}


def test_publish_on_a_closed_bus_raises_bus_unavailable(make_bus: BusFactory, topic: str) -> None:
    bus = make_bus()
    bus.close()
    with pytest.raises(BusUnavailable):
        bus.publish(topic, _messages(1))


def _closed_port() -> int:
    """A loopback TCP port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_publish_to_an_unreachable_bus_raises_bus_unavailable(
    backend: str, tmp_path: Path, topic: str
) -> None:
    with pytest.raises(BusUnavailable):
        if backend == "embedded":
            from backends.embedded_bus import EmbeddedBus

            blocker = tmp_path / "not-a-directory"
            blocker.write_text("")
            bus: Bus = EmbeddedBus(str(blocker / "bus.sqlite3"))
        else:
            from backends.kafka_bus import KafkaBus

            bus = KafkaBus(f"127.0.0.1:{_closed_port()}", KafkaSettings(), request_timeout_s=3.0)
        bus.publish(topic, _messages(1))


# ------------------------------------------------- embedded: several processes

_PUBLISHER = """
import sys
from backends.embedded_bus import EmbeddedBus
from core.ports import Outgoing
bus = EmbeddedBus(sys.argv[1])
for i in range(50):
    bus.publish("shared", [Outgoing(key=sys.argv[2], value=f"{sys.argv[2]}-{i}".encode())])
bus.close()
"""


def test_embedded_log_accepts_publishers_in_several_processes(tmp_path: Path) -> None:
    from backends.embedded_bus import EmbeddedBus

    path = str(tmp_path / "bus.sqlite3")
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", _PUBLISHER, path, f"proc{n}"], cwd=root)
        for n in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    bus = EmbeddedBus(path)
    consumer = bus.consumer("shared", "g")
    got = _drain(consumer, 150, timeout_s=5)
    consumer.close()
    bus.close()
    assert sorted(m.offset for m in got) == list(range(150))
    for n in range(3):
        mine = [m.value.decode() for m in got if m.key == f"proc{n}"]
        assert mine == [f"proc{n}-{i}" for i in range(50)]


def test_a_large_object_up_to_the_taxii_limit_passes(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    # TaxiiSettings.max_content_length is 10 MB; one object may be most of it.
    big = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    bus = make_bus()
    bus.publish(topic, [Outgoing(key="indicator--big", value=big)])
    consumer = bus.consumer(topic, group)
    got = _drain(consumer, 1)
    consumer.close()
    assert [len(m.value) for m in got] == [len(big)] and got[0].value == big


# ------------------------------------------------------------------ lag
# ``threatbay status``, ``/metrics`` and ``/readyz`` rely on it (issue #17): a group that
# never committed is behind by the whole log, ``commit`` moves it, and a second bus
# instance (another process) sees the same numbers.


def test_lag_counts_what_the_group_has_not_committed(
    make_bus: BusFactory, topic: str, group: str
) -> None:
    bus = make_bus()
    consumer = bus.consumer(topic, group)
    assert bus.lag(topic, group).lag == 0
    bus.publish(topic, _messages(10))
    assert bus.lag(topic, group).lag == 10
    got = _drain(consumer, 10)
    assert len(got) == 10
    assert bus.lag(topic, group).lag == 10  # polled is not processed: only a commit counts
    consumer.commit()
    observer = make_bus()  # another process
    lag = observer.lag(topic, group)
    assert lag.lag == 0 and lag.topic == topic and lag.group == group
    assert sum(end for _, end in lag.partitions.values()) == 10
    bus.publish(topic, _messages(3, prefix="late"))
    assert observer.lag(topic, group).lag == 3
    assert observer.lag(topic, "a-group-that-never-read").lag == 13
    consumer.close()


def test_lag_of_a_topic_nobody_published_to_is_zero(make_bus: BusFactory, group: str) -> None:
    assert make_bus().lag("tb-contract-never-created-topic", group).lag == 0


@pytest.mark.kafka
def test_a_member_is_assigned_partitions_the_operator_adds(kafka_bootstrap: str) -> None:
    """Partitions added to a topic (scaling out) reach the group within seconds, not minutes.

    The same refresh heals a member that joined before it knew its topic's
    partitions and was assigned none (kafka-python refreshes every 5 min by default).
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewPartitions

    from backends.kafka_bus import KafkaBus

    topic, group = f"tb-contract-{uuid.uuid4().hex[:12]}", f"tb-group-{uuid.uuid4().hex[:12]}"
    bus = KafkaBus(kafka_bootstrap, KAFKA_TEST_SETTINGS)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        consumer = bus.consumer(topic, group)
        bus.publish(topic, _messages(3))
        assert len(_drain(consumer, 3)) == 3
        admin.create_partitions({topic: NewPartitions(total_count=5)})
        admin.wait_for_topics([topic])
        for partition in (3, 4):
            producer.send(topic, key=b"k", value=f"new-{partition}".encode(), partition=partition)
        producer.flush()
        got = _drain(consumer, 2, timeout_s=30.0)
        consumer.close()
        assert _values(got) == {b"new-3", b"new-4"}
    finally:
        producer.close()
        admin.close()
        bus.close()
