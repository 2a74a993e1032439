"""The consumer loop every stage runs over the Bus port, written once.

Transient failure (the store down): rewind to the last commit, back off,
retry; never commit what was not written (STYLE.md 9). Each stage supplies
``step``: poll one batch, process it, commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from core.errors import StoreUnavailable
from core.ports import Consumer

MAX_BACKOFF_S = 30.0


def consume_until(
    stop: threading.Event,
    consumer: Consumer,
    step: Callable[[Consumer], int],
    log: logging.Logger,
) -> None:
    """Run ``step`` until ``stop``; on ``StoreUnavailable`` rewind and back off."""
    backoff = 0.5
    try:
        while not stop.is_set():
            try:
                step(consumer)
                backoff = 0.5
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying in %.1fs: %s", backoff, exc)
                consumer.rewind()
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
    finally:
        consumer.close()


def drain_until_idle(step: Callable[[], int], idle_polls: int = 2) -> int:
    """Call ``step`` until it returned 0 ``idle_polls`` times in a row; the sum (tests, replay)."""
    total, idle = 0, 0
    while idle < idle_polls:
        n = step()
        total += n
        idle = idle + 1 if n == 0 else 0
    return total
