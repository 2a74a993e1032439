"""The one consumer loop every bus-consuming stage runs (STYLE.md 9; ARCHITECTURE.md "Guarantees").

A stage says what it consumes (``topic``, ``group``) and implements
``handle(messages)``: process one batch, return a ``Handled`` with the dead
letters it found inside it (an undecodable message, one bad object among
many) and how many units it processed (objects for the correlator, messages
for the others: what ``step`` and ``drain`` count). The loop does
the rest, the same way for the correlator, the alert engine and the notifier:

- **poison**: the dead letters go to ``intel.dlq`` with their reason, then the
  batch is committed. A ``Poison`` raised by ``handle`` for a whole batch is
  narrowed down: the batch is handled again message by message (every stage
  is idempotent), and a message that still raises is handled unit by unit
  (``units``: the objects of a raw message, the changes of a change message);
  the units that still raise go to ``intel.dlq`` with the reason, the others
  are processed. ``Refused`` (the store refused a document for good: a value
  its mapping cannot hold, a document over its size limit) is such a
  ``Poison``, raised by the records writes once every other document of the
  write landed, so one bad document never stalls a partition;
- **outage**: ``StoreUnavailable`` / ``BusUnavailable`` (``Unavailable``) rewind
  to the last commit, back off (doubling, up to ``max_backoff_s``) and retry;
  nothing uncommitted is lost and nothing is committed that was not written;
- **bug**: anything else is a programming error. It is never dead-lettered:
  it is logged with the batch's positions and re-raised, so the stage crashes
  loudly and its supervisor (threatbay/bootstrap.py) restarts it, counts the
  crashes and reports them (``threatbay status``, ``/readyz``).

Offsets are committed only after ``handle`` returned, i.e. after the store
acknowledged every write of the batch.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core import names
from core.errors import BusUnavailable, Poison, Unavailable
from core.ports import Bus, Consumer, Incoming, Outgoing
from core.settings import ConsumerSettings

log = logging.getLogger("threatbay.consuming")

#: Longest reason kept on a dead letter (its header).
MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One input that can never be processed, with why and where it came from."""

    key: str
    value: bytes
    reason: str
    source: Incoming | None = None

    @classmethod
    def of(cls, message: Incoming, reason: str) -> DeadLetter:
        """The whole message ``message`` is poison."""
        return cls(message.key or "unknown", message.value, reason, message)

    def outgoing(self, stage: str) -> Outgoing:
        headers = {"reason": self.reason[:MAX_REASON], "stage": stage}
        if self.source is not None:
            headers.update(
                {
                    "source-topic": self.source.topic,
                    "source-partition": str(self.source.partition),
                    "source-offset": str(self.source.offset),
                }
            )
        return Outgoing(key=self.key or "unknown", value=self.value, headers=headers)


@dataclass
class Handled:
    """What ``handle`` did with one batch."""

    dead: list[DeadLetter] = field(default_factory=list)
    count: int = 0

    def add(self, other: Handled) -> None:
        self.dead.extend(other.dead)
        self.count += other.count


def positions(messages: Sequence[Incoming]) -> str:
    """Where a batch lies in the log, for a log line: ``topic[p]@first-last, ...``."""
    spans: dict[tuple[str, int], list[int]] = {}
    for m in messages:
        spans.setdefault((m.topic, m.partition), []).append(m.offset)
    return ", ".join(f"{t}[{p}]@{min(o)}-{max(o)}" for (t, p), o in sorted(spans.items()))


#: Upper bounds (seconds) of the batch-latency histogram buckets (``/metrics``).
BATCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class StageHealth:
    """What the operator sees of one running stage (``threatbay status``, ``/metrics``)."""

    name: str
    topic: str | None = None
    group: str | None = None
    batches: int = 0
    messages: int = 0
    dead_letters: int = 0
    last_dead_reasons: list[str] = field(default_factory=list)
    outages: int = 0
    store_errors: int = 0
    bus_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_batch_s: float = 0.0
    last_batch_at: float | None = None
    batch_seconds_sum: float = 0.0
    #: batches per bucket of ``BATCH_BUCKETS`` (not cumulative), the last one for +Inf
    batch_buckets: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS) + 1))

    def dead(self, letters: Sequence[DeadLetter]) -> None:
        self.dead_letters += len(letters)
        self.last_dead_reasons = ([d.reason[:200] for d in letters] + self.last_dead_reasons)[:5]

    def failed(self, error: str) -> None:
        self.last_error, self.last_error_at = error[:500], time.time()

    def unavailable(self, exc: Unavailable) -> None:
        self.outages += 1
        if isinstance(exc, BusUnavailable):
            self.bus_errors += 1
        else:
            self.store_errors += 1
        self.failed(f"{type(exc).__name__}: {exc}")

    def batch(self, messages: int, seconds: float) -> None:
        self.batches += 1
        self.messages += messages
        self.last_batch_s = seconds
        self.last_batch_at = time.time()
        self.batch_seconds_sum += seconds
        self.batch_buckets[bisect.bisect_left(BATCH_BUCKETS, seconds)] += 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (heartbeats, ``threatbay status``)."""
        return dataclasses.asdict(self)


class ConsumerStage:
    """Base of every bus-consuming stage: the loop above, written once.

    Subclasses set ``name``, ``topic``, ``group``, ``bus`` and implement
    ``handle``; ``housekeeping`` runs before each poll (outbox sweeps on their
    own schedule).
    """

    name: ClassVar[str]
    topic: ClassVar[str]
    group: ClassVar[str]
    bus: Bus
    batch_size: int = 200
    poll_timeout_s: float = 0.5
    consumer_settings: ConsumerSettings = ConsumerSettings()
    health: StageHealth | None = None

    def handle(self, messages: Sequence[Incoming]) -> Handled:
        """Process one batch: the dead letters found inside it and the units done."""
        raise NotImplementedError

    def housekeeping(self) -> None:
        """Periodic work done between polls (none by default)."""

    def units(self, message: Incoming) -> Sequence[Incoming]:
        """The independent parts of ``message``, each as a message of its own (poison narrowing).

        By default the message itself; a stage whose messages carry several
        objects or changes splits them, so only the one that is poison is
        dead-lettered.
        """
        return [message]

    def dead_letter(self, unit: Incoming, reason: str) -> DeadLetter:
        """The dead letter of one message or unit found to be poison."""
        return DeadLetter.of(unit, reason)

    # --------------------------------------------------------------- driving

    def run(self, stop: threading.Event, *, from_beginning: bool = False) -> None:
        """Consume until ``stop``; outages back off and retry, bugs propagate (module docstring)."""
        consumer = self.bus.consumer(self.topic, self.group, from_beginning=from_beginning)
        backoff = 0.5
        try:
            while not stop.is_set():
                try:
                    self.step(consumer, timeout_s=self.poll_timeout_s)
                    backoff = 0.5
                except Unavailable as exc:
                    self._health().unavailable(exc)
                    log.warning("%s: %s; rewinding, retry in %.1fs", self.name, exc, backoff)
                    consumer.rewind()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.consumer_settings.max_backoff_s)
        finally:
            consumer.close()

    def step(self, consumer: Consumer, timeout_s: float | None = None) -> int:
        """Poll one batch, process it, dead-letter its poison, commit; the units processed."""
        self.housekeeping()
        messages = consumer.poll(
            max_records=self.batch_size,
            timeout_s=self.poll_timeout_s if timeout_s is None else timeout_s,
        )
        if not messages:
            return 0
        started = time.monotonic()
        try:
            handled = self.process_batch(messages)
        except Unavailable:
            raise
        except Exception as exc:
            # Logged once by the supervisor (threatbay/bootstrap.py ``Loops``), with this note.
            where = f"{self.name}: bug while processing {positions(messages)} (not committed)"
            exc.add_note(where)
            self._health().failed(f"{type(exc).__name__}: {exc} [{where}]")
            raise
        dead = handled.dead
        if dead:
            self.bus.publish(names.TOPIC_DLQ, [d.outgoing(self.name) for d in dead])
            self._health().dead(dead)
            for d in dead[:3]:
                log.warning("%s: dead-lettered %s: %s", self.name, d.key, d.reason[:300])
        consumer.commit()
        self._health().batch(len(messages), time.monotonic() - started)
        return handled.count

    def process_batch(self, messages: Sequence[Incoming]) -> Handled:
        """``handle`` the batch; on ``Poison`` narrow it down to the units that cause it."""
        try:
            return self.handle(messages)
        except Poison as poison:
            if len(messages) == 1:
                return self._narrow_units(messages[0], poison)
        log.warning("%s: poison in %s; narrowing it down", self.name, positions(messages))
        handled = Handled()
        for message in messages:
            try:
                handled.add(self.handle([message]))
            except Poison as poison:
                handled.add(self._narrow_units(message, poison))
        return handled

    def _narrow_units(self, message: Incoming, poison: Poison) -> Handled:
        """``message`` raised ``poison``: handle its units one by one, dead-letter the bad ones."""
        units = self.units(message)
        if len(units) <= 1:
            return Handled([self.dead_letter(message, poison.reason)])
        handled = Handled()
        for unit in units:
            try:
                handled.add(self.handle([unit]))
            except Poison as bad:
                handled.dead.append(self.dead_letter(unit, bad.reason))
        return handled

    def drain(self, consumer: Consumer, idle_polls: int = 2, *, settle_s: float = 60.0) -> int:
        """Process until the group has nothing left to do (tests, benches, replay).

        Until the topic has been empty for ``idle_polls`` polls *and* the group's lag
        on it is 0, for at most ``settle_s`` more once it is quiet: an empty poll
        alone does not mean done — a member may have joined with no partitions yet
        (it rejoins at its next metadata refresh), or a fetch may be slow.
        """

        def step() -> int:
            return self.step(consumer, timeout_s=0.2)

        total = drain_until_idle(step, idle_polls)
        deadline = time.monotonic() + settle_s
        while self.bus.lag(self.topic, self.group).lag > 0 and time.monotonic() < deadline:
            total += drain_until_idle(step, 1)
        return total

    def _health(self) -> StageHealth:
        if self.health is None:
            self.health = StageHealth(self.name, self.topic, self.group)
        return self.health

    def stage_health(self) -> StageHealth:
        """This stage's health, created on first use (the supervisor reports it)."""
        return self._health()


def drain_until_idle(step: Callable[[], int], idle_polls: int = 2) -> int:
    """Call ``step`` until it returned 0 ``idle_polls`` times in a row; the sum (tests, replay)."""
    total, idle = 0, 0
    while idle < idle_polls:
        n = step()
        total += n
        idle = idle + 1 if n == 0 else 0
    return total
