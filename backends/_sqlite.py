"""Shared SQLite plumbing for the embedded bus and store (one file, many threads/processes).

Memory and latency under load (issue #17, README "Reliability"): every SQLite
connection carries its own page cache and prepared-statement cache, and the
API's thread pool has 40 threads, so one connection per thread made the
embedded ``serve`` grow by hundreds of MiB as the caches of ~25 connections
per file filled. Connections now come from a small pool per file
(``ConnectionPool``: borrowed for one call, returned after). Writers of one
file in this process queue on one lock before ``BEGIN IMMEDIATE`` instead of
polling SQLite's busy handler, whose sleeping retries let a TAXII push wait
behind other writers past a client's 30 s timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


def open_connection(path: str, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open ``path`` in WAL mode with a long busy timeout; transactions are explicit."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is fsynced before it returns, so an ack survives power loss.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    # 2 MB of page cache per connection (a pool of a few per file): the OS caches the file
    # too; 64 MB per connection per thread made the embedded server grow by ~600 MiB (README).
    conn.execute("PRAGMA cache_size=-2048")
    return conn


_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def writer_lock(path: str) -> threading.Lock:
    """The in-process lock every writer of ``path`` takes before ``BEGIN IMMEDIATE``."""
    key = str(Path(path).resolve())
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.Lock())


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock: threading.Lock | None = None
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error): one writer at a time per file.

    ``lock`` (``writer_lock(path)``) queues this process's writers in order;
    other processes are still kept apart by SQLite's own lock.
    """
    if lock is not None:
        lock.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if lock is not None:
            lock.release()


class ConnectionPool:
    """At most ``size`` connections to one file, each used by one thread at a time.

    ``borrow()`` lends an idle connection (opening one while fewer than
    ``size`` exist, else waiting for one) and takes it back afterwards, so the
    page and statement caches are bounded by ``size`` whatever the number of
    threads. ``writer`` is the file's in-process writer lock.
    """

    def __init__(
        self,
        path: str,
        *,
        size: int = 8,
        synchronous: str = "FULL",
        on_open: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._path = path
        self._size = size
        self._synchronous = synchronous
        self._on_open = on_open
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._available = threading.Condition()
        self._closed = False
        self.writer = writer_lock(path)

    @contextmanager
    def borrow(self) -> Iterator[sqlite3.Connection]:
        """An idle connection for the duration of the ``with`` block."""
        conn = self._take()
        try:
            yield conn
        finally:
            with self._available:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
                    self._available.notify()

    def _take(self) -> sqlite3.Connection:
        with self._available:
            while True:
                if self._closed:
                    raise sqlite3.ProgrammingError("closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self._size:
                    break
                self._available.wait()
            conn = open_connection(self._path, synchronous=self._synchronous)
            if self._on_open is not None:
                self._on_open(conn)
            self._all.append(conn)
            return conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A borrowed connection inside a write transaction (``write_transaction``).

        The writer lock is taken before a connection is borrowed: a writer waiting
        for its turn must not hold a connection readers could use.
        """
        with self.writer, self.borrow() as conn, write_transaction(conn):
            yield conn

    def open_count(self) -> int:
        """Connections currently open (at most ``size``)."""
        with self._available:
            return len(self._all)

    def close(self) -> None:
        """Close every idle connection now and each borrowed one when it comes back."""
        with self._available:
            self._closed = True
            idle, self._idle = self._idle, []
            self._all = [c for c in self._all if c not in idle]
            self._available.notify_all()
        for conn in idle:
            conn.close()
