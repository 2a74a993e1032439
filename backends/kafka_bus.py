"""Kafka bus: the ``Bus`` port on Apache Kafka via kafka-python (ARCHITECTURE.md, "bus").

Publishing waits for every record to be acknowledged by all in-sync replicas
(``acks=all``, idempotent producer) before returning, so a TAXII push is
answered 202 only for durably accepted objects. Consumers never auto-commit:
``commit()`` records the positions of everything polled, synchronously.
Consumers run with ``check_crcs=False``: the broker already verified batch
CRCs on write, and checking them again in Python costs most of the consume
time (PERFORMANCE.md). CRC32C on produce uses the ``crc32c`` C extension.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic, OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError

from core.errors import BusUnavailable
from core.ports import GroupLag, Incoming, Outgoing
from core.settings import KafkaSettings

MAX_MESSAGE_BYTES = 10 * 1024 * 1024 + 64 * 1024
"""A whole TAXII envelope limit (10 MB) plus record overhead."""

_ASSIGNMENT_WAIT_S = 30.0


def _incoming(record: Any) -> Incoming:
    return Incoming(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode() if record.key is not None else "",
        value=record.value if record.value is not None else b"",
        headers={k: (v or b"").decode() for k, v in (record.headers or [])},
    )


class _ReplayFromStart(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to the beginning once (fallback for replay)."""

    def __init__(self) -> None:
        self.consumer: KafkaConsumer | None = None
        self.pending = False

    def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.pending and self.consumer is not None and assigned:
            self.consumer.seek_to_beginning(*assigned)
            self.pending = False


class KafkaConsumerMember:
    """A member of a Kafka consumer group on one topic (manual, synchronous commits)."""

    def __init__(self, consumer: KafkaConsumer, listener: _ReplayFromStart) -> None:
        self._consumer = consumer
        self._listener = listener
        self._closed = False

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Incoming]:
        """Next records across the assigned partitions (joins the group on first call)."""
        try:
            batches = self._consumer.poll(
                timeout_ms=int(max(timeout_s, 0.0) * 1000), max_records=max(1, max_records)
            )
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka poll failed: {exc}") from exc
        return [_incoming(r) for records in batches.values() for r in records]

    def commit(self) -> None:
        """Commit the position after everything polled so far; raise ``BusUnavailable``."""
        try:
            self._consumer.commit()
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka commit failed: {exc}") from exc

    def rewind(self) -> None:
        """Seek every assigned partition back to its committed offset."""
        try:
            for tp in self._consumer.assignment():
                committed = self._consumer.committed(tp)
                if committed is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka rewind failed: {exc}") from exc

    def close(self) -> None:
        """Leave the group without committing."""
        if not self._closed:
            self._closed = True
            self._consumer.close(autocommit=False)


class KafkaBus:
    """The ``Bus`` port on a Kafka cluster (``kafka://host:9092[,host:9092]``).

    ``prefix`` is prepended to every topic name (isolates test runs).
    """

    def __init__(
        self,
        bootstrap: str,
        settings: KafkaSettings,
        *,
        prefix: str = "",
        request_timeout_s: float = 30.0,
    ) -> None:
        self._bootstrap = bootstrap.split(",")
        self._settings = settings
        self._prefix = prefix
        self._timeout_ms = int(request_timeout_s * 1000)
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._closed = False

    # ------------------------------------------------------------ plumbing

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self._bootstrap,
            "client_id": self._settings.client_id,
            "bootstrap_timeout_ms": self._timeout_ms,
        }

    def _admin_client(self) -> KafkaAdminClient:
        if self._closed:
            raise BusUnavailable("the Kafka bus is closed")
        if self._admin is None:
            self._admin = KafkaAdminClient(**self._common(), request_timeout_ms=self._timeout_ms)
        return self._admin

    def _producer_client(self) -> KafkaProducer:
        if self._closed:
            raise BusUnavailable("the Kafka bus is closed")
        if self._producer is None:
            compression = self._settings.compression
            self._producer = KafkaProducer(
                **self._common(),
                acks="all",
                enable_idempotence=True,
                linger_ms=self._settings.linger_ms,
                compression_type=None if compression == "none" else compression,
                max_request_size=MAX_MESSAGE_BYTES,
                request_timeout_ms=self._timeout_ms,
                max_block_ms=self._timeout_ms,
                delivery_timeout_ms=self._timeout_ms + self._settings.linger_ms + 1000,
            )
        return self._producer

    def _ensure_topic(self, name: str) -> None:
        """Create ``name`` with the configured partitions on first use (idempotent)."""
        if name in self._topics:
            return
        admin = self._admin_client()
        topic = NewTopic(
            name,
            num_partitions=self._settings.partitions,
            replication_factor=self._settings.replication_factor,
            topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
        )
        try:
            admin.create_topics([topic], timeout_ms=self._timeout_ms)
        except TopicAlreadyExistsError:
            pass
        admin.wait_for_topics([name], timeout_ms=self._timeout_ms)
        self._topics.add(name)

    # ----------------------------------------------------------------- api

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Send all ``messages`` and wait until each is acknowledged (acks=all)."""
        if not messages:
            return
        name = self._prefix + topic
        deadline = time.monotonic() + self._timeout_ms / 1000 * 2
        try:
            with self._lock:
                self._ensure_topic(name)
                producer = self._producer_client()
            futures = [
                producer.send(
                    name,
                    key=m.key.encode(),
                    value=m.value,
                    headers=[(k, v.encode()) for k, v in m.headers.items()],
                )
                for m in messages
            ]
            producer.flush(timeout=max(0.1, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.1, deadline - time.monotonic()))
        except BusUnavailable:
            raise
        except Exception as exc:  # every client failure means "not acknowledged"
            raise BusUnavailable(
                f"Kafka did not acknowledge {len(messages)} message(s) on {name!r}: {exc!r}"
            ) from exc

    def consumer(
        self, topic: str, group: str, *, from_beginning: bool = False
    ) -> KafkaConsumerMember:
        """Join ``group`` on ``topic``; ``from_beginning`` resets the group to the start."""
        name = self._prefix + topic
        # Groups are namespaced like topics: two namespaces sharing a group id would be one
        # consumer group, rebalancing across runs that have nothing to do with each other.
        group = self._prefix + group
        listener = _ReplayFromStart()
        try:
            with self._lock:
                self._ensure_topic(name)
                if from_beginning:
                    listener.pending = not self._reset_group(group, name)
            session = self._settings.session_timeout_ms
            consumer = KafkaConsumer(
                **self._common(),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=session,
                heartbeat_interval_ms=max(100, session // 3),
                request_timeout_ms=max(self._timeout_ms, session + 5000),
                check_crcs=False,
                fetch_max_bytes=MAX_MESSAGE_BYTES * 5,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            )
            listener.consumer = consumer
            consumer.subscribe([name], listener=listener)
        except BusUnavailable:
            raise
        except Exception as exc:
            raise BusUnavailable(f"cannot join group {group!r} on {name!r}: {exc!r}") from exc
        return KafkaConsumerMember(consumer, listener)

    def lag(self, topic: str, group: str) -> GroupLag:
        """Committed offset (the log start if none) and end offset of every partition."""
        name, group_id = self._prefix + topic, self._prefix + group
        try:
            with self._lock:  # the admin client is shared with topic creation
                return self._lag(topic, group, name, group_id)
        except BusUnavailable:
            raise
        except Exception as exc:  # any client failure: the bus cannot answer
            raise BusUnavailable(
                f"cannot read the lag of {group_id!r} on {name!r}: {exc!r}"
            ) from exc

    def _lag(self, topic: str, group: str, name: str, group_id: str) -> GroupLag:
        admin = self._admin_client()
        topics = admin.describe_topics([name])
        partitions = [
            TopicPartition(name, p["partition_index"])
            for t in topics
            if not t.get("error_code")
            for p in t["partitions"]
        ]
        if not partitions:
            return GroupLag(topic, group, {})
        ends = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
        starts = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.EARLIEST))
        committed = admin.list_group_offsets({group_id: partitions}).get(group_id, {})
        found: dict[int, tuple[int, int]] = {}
        for tp in partitions:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else starts[tp].offset
            found[tp.partition] = (position, ends[tp].offset)
        return GroupLag(topic, group, found)

    def _reset_group(self, group: str, name: str) -> bool:
        """Commit the earliest offsets for ``group``; ``False`` if the group has live members."""
        admin = self._admin_client()
        [meta] = admin.describe_topics([name])
        specs = {
            TopicPartition(name, p["partition_index"]): OffsetSpec.EARLIEST
            for p in meta["partitions"]
        }
        result = admin.reset_group_offsets(group, specs)
        # Each partition reports an error class; NoError (errno 0) means reset.
        return all(getattr(r.get("error"), "errno", 0) == 0 for r in result.values())

    def close(self) -> None:
        """Flush and close the producer and admin client."""
        with self._lock:
            self._closed = True
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
            if self._admin is not None:
                self._admin.close()
                self._admin = None
