"""Embedded bus: a durable, replayable log in one SQLite file (ARCHITECTURE.md, "bus").

One partition per topic, so the order of every key is the order of publication.
Offsets are dense per topic, starting at 0; a group's committed position is
the offset of the next message to read (as in Kafka). Every publish and commit
is one ``BEGIN IMMEDIATE`` transaction fsynced before it returns
(``synchronous=FULL``), so an acknowledged message or commit survives a crash.

Limitation: at most one live consumer per (group, topic) at a time — there is
no rebalancing; two members of one group would both read everything. Separate
groups are fully independent.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence

import orjson

from backends._sqlite import ConnectionPool, open_connection, write_transaction, writer_lock
from core.errors import BusUnavailable
from core.ports import GroupLag, Incoming, Outgoing

PARTITION = 0
_POLL_STEP_S = 0.025

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_log (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    key       TEXT    NOT NULL,
    value     BLOB    NOT NULL,
    headers   TEXT    NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_group_offsets (
    grp       TEXT    NOT NULL,
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""


class EmbeddedConsumer:
    """A group member on one topic reading the SQLite log (see module docstring)."""

    def __init__(self, path: str, topic: str, group: str, *, from_beginning: bool) -> None:
        self._conn = open_connection(path)
        self._writer = writer_lock(path)
        self._lock = threading.Lock()
        self._topic = topic
        self._group = group
        if from_beginning:
            self._store_committed(0)
        self._position = self._read_committed()
        self._closed = False

    def _read_committed(self) -> int:
        row = self._conn.execute(
            "SELECT committed FROM bus_group_offsets WHERE grp=? AND topic=? AND partition=?",
            (self._group, self._topic, PARTITION),
        ).fetchone()
        return int(row[0]) if row else 0

    def _store_committed(self, position: int) -> None:
        try:
            with write_transaction(self._conn, self._writer) as conn:
                conn.execute(
                    "INSERT INTO bus_group_offsets (grp, topic, partition, committed) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition) "
                    "DO UPDATE SET committed=excluded.committed",
                    (self._group, self._topic, PARTITION, position),
                )
        except sqlite3.Error as exc:
            raise BusUnavailable(f"embedded bus commit failed: {exc}") from exc

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Incoming]:
        """Messages after this member's position, waiting up to ``timeout_s`` for some."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            with self._lock:
                if self._closed:
                    raise BusUnavailable("consumer is closed")
                rows = self._conn.execute(
                    "SELECT offset, key, value, headers FROM bus_log "
                    "WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?",
                    (self._topic, PARTITION, self._position, max(1, max_records)),
                ).fetchall()
                if rows:
                    self._position = int(rows[-1][0]) + 1
                    return [
                        Incoming(
                            topic=self._topic,
                            partition=PARTITION,
                            offset=int(offset),
                            key=key,
                            value=bytes(value),
                            headers=orjson.loads(headers),
                        )
                        for offset, key, value, headers in rows
                    ]
            if time.monotonic() >= deadline:
                return []
            time.sleep(min(_POLL_STEP_S, max(0.0, deadline - time.monotonic())))

    def commit(self) -> None:
        """Durably record the position after everything polled so far."""
        with self._lock:
            self._store_committed(self._position)

    def rewind(self) -> None:
        """Go back to the committed position; uncommitted messages come again."""
        with self._lock:
            self._position = self._read_committed()

    def close(self) -> None:
        """Leave the group without committing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


class EmbeddedBus:
    """The ``Bus`` port on a SQLite file (``sqlite:///abs/path``)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conns = ConnectionPool(path, size=4)
        try:
            with self._conns.borrow() as conn:
                conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise BusUnavailable(f"embedded bus at {path!r} unavailable: {exc}") from exc

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Append ``messages`` in one fsynced transaction; raise ``BusUnavailable`` on failure."""
        if not messages:
            return
        try:
            with self._conns.writing() as conn:
                row = conn.execute(
                    "SELECT MAX(offset) FROM bus_log WHERE topic=? AND partition=?",
                    (topic, PARTITION),
                ).fetchone()
                start = 0 if row[0] is None else int(row[0]) + 1
                conn.executemany(
                    "INSERT INTO bus_log (topic, partition, offset, key, value, headers) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            topic,
                            PARTITION,
                            start + i,
                            m.key,
                            m.value,
                            orjson.dumps(dict(m.headers)).decode(),
                        )
                        for i, m in enumerate(messages)
                    ],
                )
        except sqlite3.Error as exc:
            raise BusUnavailable(f"embedded bus publish to {topic!r} failed: {exc}") from exc

    def consumer(self, topic: str, group: str, *, from_beginning: bool = False) -> EmbeddedConsumer:
        """Join ``group`` on ``topic`` (one live member per group; see module docstring)."""
        try:
            return EmbeddedConsumer(self._path, topic, group, from_beginning=from_beginning)
        except sqlite3.Error as exc:
            raise BusUnavailable(f"embedded bus unavailable: {exc}") from exc

    def lag(self, topic: str, group: str) -> GroupLag:
        """The group's committed position and the log's end (one partition; none if empty)."""
        try:
            with self._conns.borrow() as conn:
                (end,) = conn.execute(
                    "SELECT MAX(offset) FROM bus_log WHERE topic=? AND partition=?",
                    (topic, PARTITION),
                ).fetchone()
                row = conn.execute(
                    "SELECT committed FROM bus_group_offsets WHERE grp=? AND topic=? AND "
                    "partition=?",
                    (group, topic, PARTITION),
                ).fetchone()
        except sqlite3.Error as exc:
            raise BusUnavailable(f"embedded bus unavailable: {exc}") from exc
        if end is None and row is None:
            return GroupLag(topic, group, {})
        committed = int(row[0]) if row else 0
        return GroupLag(topic, group, {PARTITION: (committed, 0 if end is None else int(end) + 1)})

    def close(self) -> None:
        """Close this process's connections to the log."""
        self._conns.close()
