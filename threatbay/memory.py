"""Keeping a long-running process's native memory in check (issue #17, README "Reliability").

Measured on the embedded ``serve`` under load: most of its growth was memory
glibc's allocator had been given back by SQLite and Python but kept in
per-thread arenas (``malloc_trim(0)`` every 10 s returned 30-60 MiB each
time). ``limit_arenas`` caps the arenas at two (``M_ARENA_MAX``, as
``MALLOC_ARENA_MAX=2`` would) before the worker threads start, and
``release_free`` hands free pages back (``malloc_trim``); the heartbeat loop
calls it every ``TRIM_EVERY_S``. Both do nothing off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("threatbay.memory")

_M_ARENA_MAX = -8
TRIM_EVERY_S = 30.0


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before starting threads); False off glibc."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free() -> None:
    """Return free heap pages to the system (glibc ``malloc_trim(0)``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
