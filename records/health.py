"""Where work stands, across processes: stage heartbeats and the status snapshot (issue #17).

Every process writes one heartbeat document (``threatbay-stage-health``, key
= its process id) every few seconds with the health of its loops: running or
not, crashes and whether the loop is crash-looping, and for the consumer
stages their batches, dead letters with the last reasons, store and bus
errors and the last error with its time (core/consuming.py ``StageHealth``,
threatbay/bootstrap.py ``Loops``). ``status`` assembles what the operator
sees from everything any process can read: those heartbeats, the lag of every
consumer group (``Bus.lag``, from the log itself), the messages on
``intel.dlq``, and the records, alerts and deliveries counts. ``threatbay
status``, ``/readyz`` and ``/metrics`` all read it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from core import names
from core.clock import Clock, format_timestamp
from core.errors import Unavailable
from core.ports import Bus, Filter, Missing, Put, Query, Range, Store, Term

#: The consumer stages: (stage, topic, consumer group).
CONSUMERS: tuple[tuple[str, str, str], ...] = (
    ("correlator", names.TOPIC_RAW, names.GROUP_CORRELATOR),
    ("alerter", names.TOPIC_CHANGES, names.GROUP_ALERTER),
    ("notifier", names.TOPIC_ALERTS, names.GROUP_NOTIFIER),
)
#: The periodic loops (no consumer group).
PERIODIC = ("rescore", "escalation", "deliverer")
#: A group that never commits on intel.dlq: its lag is every dead letter kept.
DLQ_COUNTER_GROUP = "threatbay-status-dlq-counter"
#: Heartbeats older than this belong to a process that stopped (or is stuck).
STALE_AFTER_S = 30.0
#: Heartbeats older than this are not shown at all.
FORGET_AFTER_S = 600.0
#: A loop that crashed this many times within ``CRASH_WINDOW_S`` is crash-looping.
CRASH_LOOP_CRASHES = 3
CRASH_WINDOW_S = 600.0


def process_id() -> str:
    """This process, as heartbeats name it: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def crash_looping(crash_times: Sequence[float], now: float) -> bool:
    """``CRASH_LOOP_CRASHES`` crashes within the last ``CRASH_WINDOW_S`` seconds."""
    return sum(1 for t in crash_times if now - t <= CRASH_WINDOW_S) >= CRASH_LOOP_CRASHES


class Heartbeats:
    """The heartbeat documents of every process, in the store.

    Stamped with the wall clock, not the domain clock: they say whether a
    process is alive now, which a test's fake clock cannot.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def beat(self, process: str, loops: Mapping[str, dict[str, Any]]) -> None:
        """Write this process's loops (a blind write: one writer per document)."""
        doc = {
            "process": process,
            "beat_at": when(time.time()),
            "beat_epoch": time.time(),
            "loops": dict(loops),
        }
        self.store.put_many(names.INDEX_HEALTH, [Put(process, doc, blind=True)])

    def recent(self) -> list[dict[str, Any]]:
        """Heartbeats of the last ``FORGET_AFTER_S`` seconds (newest first)."""
        since = when(time.time() - FORGET_AFTER_S)
        query = Query(filters=(Range("beat_at", gte=since),), limit=200)
        self.store.refresh(names.INDEX_HEALTH)
        hits = self.store.search(names.INDEX_HEALTH, query).hits
        return sorted((h.doc for h in hits), key=lambda d: str(d.get("beat_at")), reverse=True)


@dataclass
class StageStatus:
    """One stage as the operator sees it, summed over the processes that run it."""

    stage: str
    topic: str | None = None
    group: str | None = None
    lag: int | None = None
    processes: int = 0
    running: int = 0
    stale: int = 0
    crashes: int = 0
    crash_looping: bool = False
    batches: int = 0
    messages: int = 0
    dead_letters: int = 0
    last_dead_reasons: list[str] = field(default_factory=list)
    store_errors: int = 0
    bus_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    batch_seconds_sum: float = 0.0
    batch_buckets: list[int] = field(default_factory=list)

    def add(self, loop: Mapping[str, Any], stale: bool) -> None:
        self.processes += 1
        self.stale += int(stale)
        self.running += int(bool(loop.get("running")) and not stale)
        self.crashes += int(loop.get("crashes") or 0)
        self.crash_looping |= bool(loop.get("crash_looping")) and not stale
        stage = loop.get("stage") or {}
        for name in ("batches", "messages", "dead_letters", "store_errors", "bus_errors"):
            setattr(self, name, getattr(self, name) + int(stage.get(name) or 0))
        self.batch_seconds_sum += float(stage.get("batch_seconds_sum") or 0.0)
        buckets = list(stage.get("batch_buckets") or [])
        if buckets:
            self.batch_buckets = [a + b for a, b in zip(
                self.batch_buckets or [0] * len(buckets), buckets, strict=True)]  # fmt: skip
        self.last_dead_reasons = (self.last_dead_reasons + list(stage.get("last_dead_reasons")
                                                                or []))[:5]  # fmt: skip
        for error, at in ((loop.get("last_error"), loop.get("last_crash_at")),
                          (stage.get("last_error"), stage.get("last_error_at"))):  # fmt: skip
            if error and (self.last_error_at is None or (at or 0) > self.last_error_at):
                self.last_error, self.last_error_at = str(error), float(at or 0)


@dataclass
class Status:
    """Everything ``threatbay status`` prints and ``/metrics`` exports."""

    at: str
    stages: list[StageStatus]
    bus_error: str | None = None
    store_error: str | None = None
    dlq_total: int | None = None
    records: int | None = None
    alerts: int | None = None
    alerts_by_level: dict[str, int] = field(default_factory=dict)
    open_alerts_by_level: dict[str, int] = field(default_factory=dict)
    deliveries_by_state: dict[str, int] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Why this deployment is not ready (``/readyz``); empty when it is."""
        found: list[str] = []
        if self.bus_error:
            found.append(f"bus unreachable: {self.bus_error}")
        if self.store_error:
            found.append(f"store unreachable: {self.store_error}")
        for s in self.stages:
            if s.crash_looping:
                found.append(f"{s.stage} is crash-looping ({s.crashes} crashes): {s.last_error}")
        return found

    def stage(self, name: str) -> StageStatus:
        return next(s for s in self.stages if s.stage == name)


def status(
    bus: Bus,
    store: Store,
    clock: Clock,
    local: Mapping[str, dict[str, Any]] | None = None,
    *,
    process: str | None = None,
    counts: bool = True,
    scope: CountScope | None = None,
) -> Status:
    """The status of the deployment behind ``bus`` and ``store`` (see module docstring).

    ``local`` are the loops of this process (``process``), fresher than its
    last heartbeat and the only source when the store is down; ``counts=False``
    skips the store counts (``/readyz``). ``scope``: count only what one reader may
    see (``/metrics`` for an agency's admin); without it, the host operator's
    platform-wide counts (``threatbay status``).
    """
    result = Status(at=format_timestamp(clock.now()), stages=[])
    stages = {name: StageStatus(name, topic, group) for name, topic, group in CONSUMERS}
    stages.update({name: StageStatus(name) for name in PERIODIC})
    beats: list[dict[str, Any]] = []
    try:
        beats = Heartbeats(store).recent()
        if counts:
            _counts(store, result, scope)
    except Unavailable as exc:
        result.store_error = str(exc)[:300]
    now = time.time()
    for beat in beats:
        if local is not None and beat.get("process") == process:
            continue
        stale = now - float(beat.get("beat_epoch") or 0) > STALE_AFTER_S
        for name, loop in (beat.get("loops") or {}).items():
            stages.setdefault(name, StageStatus(name)).add(loop, stale)
    for name, loop in (local or {}).items():
        stages.setdefault(name, StageStatus(name)).add(loop, False)
    try:
        for name, topic, group in CONSUMERS:
            stages[name].lag = bus.lag(topic, group).lag
        result.dlq_total = bus.lag(names.TOPIC_DLQ, DLQ_COUNTER_GROUP).lag
    except Unavailable as exc:
        result.bus_error = str(exc)[:300]
    result.stages = list(stages.values())
    return result


@dataclass(frozen=True, slots=True)
class CountScope:
    """The records, alerts and deliveries one reader may count (DOMAIN.md "Noninterference").

    ``tags``: the reader's view tags (core/policy.py ``reader_tags``), which match
    exactly one view document per record it sees and one version per alert;
    ``agency``: whose webhook deliveries it counts (another agency's, even of its
    jurisdiction, carry alerts as that agency sees them).
    """

    tags: tuple[str, ...]
    agency: str


def _counts(store: Store, result: Status, scope: CountScope | None = None) -> None:
    # A record's other views are documents of their own (records/views.py): the host
    # operator counts records, a reader counts the one view of each it sees.
    records: tuple[Filter, ...] = (Missing("view_of"),)
    alerts: tuple[Filter, ...] = ()
    deliveries: tuple[Filter, ...] = ()
    if scope is not None:
        records = alerts = (Term("readers", scope.tags),)
        deliveries = (Term("agency", (scope.agency,)),)
    result.records = store.count(names.INDEX_INDICATORS, records)
    result.alerts = store.count(names.INDEX_ALERTS, alerts)
    result.alerts_by_level = store.count_by(names.INDEX_ALERTS, "level", alerts)
    result.open_alerts_by_level = store.count_by(
        names.INDEX_ALERTS, "level", (*alerts, Term("status", ("open",)))
    )
    result.deliveries_by_state = store.count_by(names.INDEX_DELIVERIES, "state", deliveries)


@overload
def when(epoch: float) -> str: ...
@overload
def when(epoch: None) -> None: ...
def when(epoch: float | None) -> str | None:
    """An epoch second as a timestamp (display, heartbeats)."""
    return None if epoch is None else format_timestamp(datetime.fromtimestamp(epoch, UTC))
