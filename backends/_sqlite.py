"""Shared SQLite plumbing for the embedded bus and store (one file, many threads/processes)."""

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
    # 8 MB of page cache per connection (one per live thread): 64 MB made the embedded
    # server grow by ~600 MiB under load (40 API pool threads x 2 files); measured in README.
    conn.execute("PRAGMA cache_size=-8192")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error): one writer at a time per file."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class ConnectionPerThread:
    """One connection per thread (SQLite connections must not be shared mid-transaction)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        on_open: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._path = path
        self._on_open = on_open
        self._synchronous = synchronous
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False

    def get(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on first use.

        Opening one also closes those of threads that have ended (short-lived pool
        threads would otherwise leave a connection and its page cache behind each).
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("closed")
            conn = open_connection(self._path, synchronous=self._synchronous)
            if self._on_open is not None:
                self._on_open(conn)
            self._local.conn = conn
            with self._lock:
                ended = [c for t, c in self._all if not t.is_alive()]
                self._all = [(t, c) for t, c in self._all if t.is_alive()]
                self._all.append((threading.current_thread(), conn))
            for old in ended:
                old.close()
        return conn

    def open_count(self) -> int:
        """Connections currently open (one per live thread that used this file)."""
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        """Close every connection opened through this object."""
        self._closed = True
        with self._lock:
            conns, self._all = [c for _, c in self._all], []
        for conn in conns:
            conn.close()
