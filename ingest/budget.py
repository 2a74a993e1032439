"""Per-agency push budgets: objects, bytes and grammar-parsed pattern characters per minute.

The third bounds CPU: a pattern the fast path cannot read costs the grammar
~40 µs a character (benches/bench_screen.py), so objects and bytes alone would
let one agency keep the API busy with complex patterns.

A moving window per agency (the ``limits`` library, in memory): a push that
would exceed its agency's budget is refused whole, before anything is
published, with the seconds after which it would fit (HTTP 429
``Retry-After``). A push bigger than a whole minute's budget can never fit and
is refused as too large instead. Counted per API process: with N API
processes an agency may push up to N times the budget.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute, storage, strategies

from core.patterns import simple_comparisons
from core.settings import LimitsSettings


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a push is refused: ``retry_after_s`` None means it can never fit."""

    message: str
    retry_after_s: int | None


class PushBudget:
    """Objects and bytes per agency per minute."""

    def __init__(self, settings: LimitsSettings) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._budgets = [
            (name, RateLimitItemPerMinute(amount))
            for name, amount in (
                ("objects", settings.agency_objects_per_minute),
                ("bytes", settings.agency_bytes_per_minute),
                ("grammar_chars", settings.agency_grammar_chars_per_minute),
            )
            if amount > 0
        ]
        self._lock = threading.Lock()

    def charge(
        self, agency_id: str, objects: int, nbytes: int, grammar_chars: int = 0
    ) -> Refusal | None:
        """Take ``objects``, ``nbytes`` and ``grammar_chars`` from ``agency_id``'s minute, or
        say why not."""
        costs = {"objects": objects, "bytes": nbytes, "grammar_chars": grammar_chars}
        with self._lock:
            for name, item in self._budgets:
                cost = costs[name]
                if cost > item.amount:
                    return Refusal(
                        f"this push carries {cost:,} {name}; an agency may push at most "
                        f"{item.amount:,} {name} per minute (limits.agency_{name}_per_minute)",
                        None,
                    )
                if cost and not self._limiter.test(item, agency_id, name, cost=cost):
                    stats = self._limiter.get_window_stats(item, agency_id, name)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    return Refusal(
                        f"agency {agency_id} pushed its {item.amount:,} {name} of this minute; "
                        f"retry in {wait} s (limits.agency_{name}_per_minute)",
                        wait,
                    )
            for name, item in self._budgets:
                if costs[name]:
                    self._limiter.hit(item, agency_id, name, cost=costs[name])
        return None


def grammar_chars(objects: list[object], max_chars: int) -> int:
    """Characters of the STIX patterns in ``objects`` that the grammar, not the fast path,
    would have to parse (one longer than ``max_chars`` is refused without a parse)."""
    total = 0
    for obj in objects:
        if isinstance(obj, dict) and obj.get("type") == "indicator":
            pattern = obj.get("pattern")
            if isinstance(pattern, str) and obj.get("pattern_type", "stix") == "stix":
                if len(pattern) <= max_chars and simple_comparisons(pattern) is None:
                    total += len(pattern)
    return total
