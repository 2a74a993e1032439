"""The periodic re-score: keep stored indicator scores current as they decay (DOMAIN.md "Score").

Decay (DOMAIN.md "Score") moves every score with time alone, but the store can
only sort and filter on a stored value. So each record carries
``next_rescore_at`` (set by ``Scorer.apply``: when its score will have fallen by
``RESCORE_STEP`` point, or one of its reports ends), and this job, every
``rescore_interval_s``:

- pages through the records that are due (``next_rescore_at <= now``, plus
  active records written before that field existed) with ``search_after``;
- re-reads each page by key (real-time, with its version) and skips what is no
  longer due (the correlator re-scored it meanwhile);
- recomputes the decayed score from the stored components
  (``correlate.score.apply_decay``), or the full score when a report's
  ``valid_until`` passed (``Scorer.apply``);
- writes under optimistic concurrency: a conflict means the correlator wrote a
  fresher record, already scored at its write, so it is skipped, never retried;
- publishes a ``score_crossing`` change on ``intel.records.changes`` when a
  score falls through an alerting threshold, as the correlator does, marked
  ``cause: decay`` (the alert engine never opens or re-opens an alert on it),
  through the outbox (records/changes.py): noted before the write, announced
  by the correlators' sweep if the publish fails;
- sends a record it cannot re-score (``record_problem``: damaged in the store)
  to ``intel.dlq`` with the reason and goes on with the others; a bug stops
  the pass and is reported, never dead-lettered;
- reads at most ``max_rate`` records/s (setting ``rescore_max_rate``) so a
  backlog (e.g. after downtime) drains without starving ingestion of the store.

Only the store and bus ports are used; the API still decays on read
(``current_score``) so what a caller sees is current between passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from core import names
from core.clock import Clock, format_timestamp
from core.consuming import DeadLetter
from core.errors import Unavailable
from core.indicators import RecordChange, record_change
from core.ports import Bus, Filter, Hit, Missing, Put, Query, Range, Sort, Store, Stored, Term
from correlate import merge
from correlate.score import (
    SCORE_THRESHOLDS,
    AgencyProfile,
    Scorer,
    apply_decay,
    liveness_changed,
    record_problem,
)
from records.changes import ChangeAnnouncer
from records.outbox import Outbox

#: What a re-score changes; a record whose three are unchanged is not written.
_RESCORED = ("score", "state", "next_rescore_at")

log = logging.getLogger("threatbay.rescore")

PAGE_SIZE = 1000
MAX_BACKOFF_S = 300.0


@dataclass
class RescoreResult:
    """What one pass did (the figures a bench or a log line reports)."""

    due: int = 0
    written: int = 0
    conflicts: int = 0
    skipped: int = 0
    full: int = 0
    crossings: int = 0
    pages: int = 0
    dead_lettered: int = 0

    def add(self, other: RescoreResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def due_queries(now: datetime) -> list[tuple[tuple[Filter, ...], tuple[Sort, ...]]]:
    """Filters and sort of the records a pass at ``now`` re-scores, most overdue first."""
    active = Term("state", ("active",))
    return [
        ((active, Range("next_rescore_at", lte=format_timestamp(now))), (Sort("next_rescore_at"),)),
        # Records scored before next_rescore_at existed: active and not yet at 0.
        ((active, Missing("next_rescore_at"), Range("score", gt=0)), ()),
    ]


def is_due(record: dict[str, Any], now: datetime) -> bool:
    """True if ``record`` (as read by key) still needs a re-score at ``now``."""
    if record.get("state") != "active":
        return False
    due = record.get("next_rescore_at")
    if due is None:
        return float(record.get("score") or 0.0) > 0
    return str(due) <= format_timestamp(now)


class Rescorer:
    """Re-scores due indicator records in the store (module docstring)."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        clock: Clock,
        scorer: Scorer,
        agency_profile: Callable[[str], AgencyProfile],
        *,
        page_size: int = PAGE_SIZE,
        max_rate: float | None = None,
        changes: ChangeAnnouncer | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.scorer = scorer
        self.agency_profile = agency_profile
        self.page_size = page_size
        self.max_rate = max_rate
        """Records per second a pass may read (None: as fast as the store answers)."""
        self.changes = changes or ChangeAnnouncer(store, bus, Outbox(store, clock))

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """A pass every ``interval_s`` until ``stop``; an unavailable backend backs off."""
        backoff = interval_s
        while not stop.is_set():
            try:
                result = self.run_pass(stop)
                backoff = interval_s
                if result.due:
                    log.info(
                        "re-score: %d due, %d written, %d conflicts, %d crossings",
                        result.due, result.written, result.conflicts, result.crossings,
                    )  # fmt: skip
            except Unavailable as exc:  # transient: back off
                log.warning("re-score pass failed, next in %.0fs: %s", backoff, exc)
                backoff = min(backoff * 2, max(MAX_BACKOFF_S, interval_s))
            stop.wait(backoff)

    def run_pass(self, stop: threading.Event | None = None) -> RescoreResult:
        """Re-score every record due at the clock's now; returns what was done."""
        now = self.clock.now()
        total = RescoreResult()
        pause = stop or threading.Event()
        started, read = time.monotonic(), 0
        for filters, sort in due_queries(now):
            after: tuple[Any, ...] | None = None
            while stop is None or not stop.is_set():
                page = self.store.search(
                    names.INDEX_INDICATORS,
                    Query(
                        filters=filters,
                        sort=sort,
                        limit=self.page_size,
                        after=after,
                        versions=True,
                    ),
                )
                if page.hits:
                    total.add(self.rescore([_stored(h) for h in page.hits], now))
                if not page.more:
                    break
                after = page.hits[-1].cursor
                read += len(page.hits)
                if self.max_rate:
                    # Leave the store to ingestion: a backlog drains at max_rate, not flat out.
                    pause.wait(read / self.max_rate - (time.monotonic() - started))
        return total

    def rescore(self, page: list[Stored], now: datetime) -> RescoreResult:
        """Re-score the records of one search page still due, write, announce crossings.

        The page's documents and versions come with the search (no second read):
        on Elasticsearch one may be a refresh behind, and its write then comes back
        as a conflict and is skipped, as for a record the correlator wrote meanwhile.
        """
        result = RescoreResult(pages=1)
        puts: list[Put] = []
        changes: dict[str, RecordChange] = {}
        dead: list[DeadLetter] = []
        at = format_timestamp(now)
        for current in page:
            key = current.key
            if not is_due(current.doc, now):
                result.skipped += 1
                continue
            result.due += 1
            record = current.doc  # this page's own copy: re-scored in place
            problem = record_problem(record)
            if problem is not None:
                # One damaged record must not stop every other record's re-score.
                dead.append(DeadLetter(key, orjson.dumps(record), f"record {key}: {problem}"))
                continue
            before = merge.change_basis(record)
            was = [record.get(f) for f in _RESCORED]
            if liveness_changed(record, now):
                self.scorer.apply(record, self.agency_profile, now)
                result.full += 1
            else:
                apply_decay(record, now)
            kinds = merge.change_kinds(before, record, SCORE_THRESHOLDS)
            if [record.get(f) for f in _RESCORED] == was:
                result.skipped += 1
                continue
            puts.append(Put(key=key, doc=record, expected=current.version))
            if "score_crossing" in kinds:
                # "cause" lets the alert engine tell decay from new intelligence.
                changes[key] = record_change(key, kinds, at, record, cause="decay")
        if dead:
            self.bus.publish(names.TOPIC_DLQ, [d.outgoing("rescore") for d in dead])
            result.dead_lettered = len(dead)
            log.warning(
                "re-score: dead-lettered %d damaged record(s): %s", len(dead), dead[0].reason
            )
        if not puts:
            return result
        notes = [self.changes.note(list(changes.values()))] if changes else []
        outcomes = self.store.put_many(names.INDEX_INDICATORS, puts)
        failed = [r.key for r in outcomes if not r.ok and not r.conflict]
        conflicted = {r.key for r in outcomes if r.conflict}
        result.conflicts = len(conflicted)
        result.written = sum(1 for r in outcomes if r.ok)
        if failed:
            # Refused for good (core/ports.py PutResult): to intel.dlq with the store's reason,
            # like a damaged record; the rest of the page is written.
            docs = {p.key: p.doc for p in puts}
            refused = [
                DeadLetter(r.key, orjson.dumps(docs[r.key]), f"record {r.key}: {r.refused}")
                for r in outcomes
                if not r.ok and not r.conflict
            ]
            self.bus.publish(names.TOPIC_DLQ, [d.outgoing("rescore") for d in refused])
            result.dead_lettered += len(refused)
            log.warning("re-score: store refused %d write(s): %s", len(failed), refused[0].reason)
        announced = [c for k, c in changes.items() if k not in conflicted and k not in failed]
        self.changes.publish(announced, notes)
        result.crossings = len(announced)
        return result


def _stored(hit: Hit) -> Stored:
    if hit.version is None:  # an adapter that ignores ``Query.versions``
        raise RuntimeError(f"the store returned {hit.key} without the version asked for")
    return Stored(hit.key, hit.doc, hit.version)
