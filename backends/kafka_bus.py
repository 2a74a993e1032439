"""Kafka bus: the ``Bus`` port on Apache Kafka via kafka-python (ARCHITECTURE.md, "bus").

Publishing waits for every record to be acknowledged by all in-sync replicas
(``acks=all``, idempotent producer) before returning, so a TAXII push is
answered 202 only for durably accepted objects. Consumers never auto-commit:
``commit()`` records the positions of everything polled, synchronously.
Consumers run with ``check_crcs=False``: the broker already verified batch
CRCs on write, and checking them again in Python costs most of the consume
time (PERFORMANCE.md). CRC32C on produce uses the ``crc32c`` C extension.

On a secured cluster (``KafkaAuth``: SASL_SSL, SCRAM, the brokers' CA) each
stage connects as its own principal, which may not create topics: creation is
then skipped for topics that exist and this principal may describe
(deploy/dev/SECURE.md: the broker answers TOPIC_AUTHORIZATION_FAILED to a
create even for an existing topic). ``check_access`` tells a stage at start-up,
loudly, when its principal lacks a right it needs: a kafka-python consumer
without READ would otherwise poll nothing, forever, without an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic, OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from core.errors import BusUnavailable, ConfigurationError
from core.ports import GroupLag, Incoming, Outgoing
from core.settings import KafkaSettings

MAX_MESSAGE_BYTES = 10 * 1024 * 1024 + 64 * 1024
"""A whole TAXII envelope limit (10 MB) plus record overhead."""

_ASSIGNMENT_WAIT_S = 30.0
_TOPIC_AUTHORIZATION_FAILED = 29
_UNKNOWN_TOPIC = 3


#: How often a consumer refreshes its metadata (kafka-python's default is 5 minutes).
METADATA_MAX_AGE_MS = 5_000


class Secret(str):
    """A password that never shows in a repr (kafka-python logs its whole config at DEBUG)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class KafkaAuth:
    """How to reach a secured cluster: SASL_SSL + SCRAM as one principal, the brokers' CA."""

    username: str
    password: str = field(repr=False)
    ca_file: Path | None = None
    mechanism: str = "SCRAM-SHA-512"
    check_hostname: bool = True

    def client_config(self) -> dict[str, Any]:
        """kafka-python settings (deploy/dev/SECURE.md, "Client settings that worked")."""
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": Secret(self.password),
            "ssl_cafile": str(self.ca_file) if self.ca_file else None,
            "ssl_check_hostname": self.check_hostname,
        }


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
        auth: KafkaAuth | None = None,
    ) -> None:
        self._bootstrap = bootstrap.split(",")
        self._auth = auth
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
        common = {
            "bootstrap_servers": self._bootstrap,
            "client_id": self._settings.client_id,
            "bootstrap_timeout_ms": self._timeout_ms,
        }
        if self._auth is not None:
            common |= self._auth.client_config()
        return common

    @property
    def principal(self) -> str:
        """Who this bus is to the brokers (for messages; never a secret)."""
        return f"User:{self._auth.username}" if self._auth else "an unauthenticated client"

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
        """Create ``name`` with the configured partitions on first use (idempotent).

        A principal without CREATE (every stage on a secured cluster) is refused the
        create even when the topic exists; then the topic must exist and be
        describable, which is checked instead.
        """
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
        except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
            self._describe(name)  # raises when it does not exist or is not ours to use
        admin.wait_for_topics([name], timeout_ms=self._timeout_ms)
        self._topics.add(name)

    def _describe(self, name: str) -> dict[str, Any]:
        """The topic's metadata; ``ConfigurationError`` when missing or not describable."""
        [meta] = self._admin_client().describe_topics([name])
        assert isinstance(meta, dict)
        code = meta.get("error_code", 0)
        if code == _TOPIC_AUTHORIZATION_FAILED:
            raise ConfigurationError(
                f"Kafka refuses topic {name!r} to {self.principal} (no DESCRIBE ACL, or no "
                "such topic); the operator grants the stage ACLs (deploy/dev/SECURE.md)"
            )
        if code == _UNKNOWN_TOPIC:
            raise ConfigurationError(
                f"Kafka topic {name!r} does not exist and {self.principal} may not create it; "
                "the operator creates ThreatBay's topics (deploy/dev/services acls, compose.yaml)"
            )
        if code:
            raise BusUnavailable(f"Kafka cannot describe topic {name!r} (error {code})")
        return meta

    def check_access(self, write: Sequence[str] = (), read: Sequence[str] = ()) -> None:
        """Raise ``ConfigurationError`` naming every topic this principal may not use as needed.

        For a stage's start-up on a secured cluster: kafka-python would otherwise fail late
        (a publish) or never (a consumer without READ polls nothing). Topics are created
        first where this principal may; unauthenticated (PLAINTEXT) buses are not checked.
        """
        if self._auth is None:
            return
        problems: list[str] = []
        wanted = [(t, "WRITE") for t in write] + [(t, "READ") for t in read]
        for topic, op in wanted:
            name = self._prefix + topic
            try:
                with self._lock:
                    self._ensure_topic(name)
                meta = self._describe(name)
            except ConfigurationError as exc:
                problems.append(str(exc))
                continue
            except KafkaError as exc:
                raise BusUnavailable(f"Kafka unreachable while checking {name!r}: {exc!r}") from exc
            allowed = meta.get("authorized_operations")
            if isinstance(allowed, list) and op not in allowed and "ALL" not in allowed:
                problems.append(f"{self.principal} has no {op} on Kafka topic {name!r}")
        if problems:
            raise ConfigurationError("; ".join(dict.fromkeys(problems)))

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
                # A member that joined before it knew the topic's partitions is assigned none
                # and rejoins only on its next metadata refresh: every 5 s, not every 5 min.
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
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
