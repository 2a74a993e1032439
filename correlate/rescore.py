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

A record with per-reader views (core/views.py) is due when any of its views
is (``rescore_due``); each due view is re-scored on its own and a view that is
not due is left exactly as it was, so no reader's view moves because another's
did. When the audience set changes (an agency added, consent or jurisdiction
changed, a new whitelist), the loop first re-plans every record's views
(``review``).

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
from core.record_indicators import STAMP_SPAN, stamp_for
from core.record_indicators import stamp as stamp_version
from core.services import default_sharing
from core.views import AudienceSet, content_of, rescore_due
from correlate import merge
from correlate.score import (
    SCORE_THRESHOLDS,
    AgencyProfile,
    Scorer,
    apply_decay,
    liveness_changed,
    record_problem,
)
from correlate.views import assemble, plan_record
from records.changes import ChangeAnnouncer
from records.date_added import book_of
from records.outbox import Outbox
from records.views import (
    AudienceSource,
    Materialise,
    ViewWriter,
    mark_reviewed,
    record_pages,
    reviewed_fingerprint,
)

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
    """Filters and sort of the records a pass at ``now`` re-scores, most overdue first.

    A record with views (core/views.py) is due when any of its views is
    (``rescore_due``); its partial view documents are never paged here (they are
    re-written from their record).
    """
    active = Term("state", ("active",))
    stamp = format_timestamp(now)
    legacy = (Missing("rescore_due"), Missing("view_of"), Missing("basis"))
    return [
        ((Range("rescore_due", lte=stamp),), (Sort("rescore_due"),)),
        ((active, Range("next_rescore_at", lte=stamp), *legacy), (Sort("next_rescore_at"),)),
        # Records scored before next_rescore_at existed: active and not yet at 0.
        ((active, Missing("next_rescore_at"), Range("score", gt=0), *legacy), ()),
    ]


def content_due(content: dict[str, Any], now: datetime) -> bool:
    """True if one view's content (or a record stored before views) needs a re-score."""
    if content.get("state") != "active":
        return False
    due = content.get("next_rescore_at")
    if due is None:
        return float(content.get("score") or 0.0) > 0
    return str(due) <= format_timestamp(now)


def is_due(record: dict[str, Any], now: datetime) -> bool:
    """True if ``record`` (as read by key) still needs a re-score at ``now``."""
    if "basis" in record:
        due = record.get("rescore_due")
        return due is not None and str(due) <= format_timestamp(now)
    return content_due(record, now)


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
        audiences: AudienceSource | None = None,
        views: ViewWriter | None = None,
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
        self.audiences = audiences or AudienceSource(store, clock, default_sharing())
        self.views = views or ViewWriter(store, Outbox(store, clock))

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """A pass every ``interval_s`` until ``stop``; an unavailable backend backs off."""
        backoff = interval_s
        while not stop.is_set():
            try:
                self.review(stop)
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

    def review(self, stop: threading.Event | None = None) -> int:
        """Re-plan every record's views if the audience set changed since the last re-view.

        core/views.py: an agency added, or one whose jurisdiction or consent
        changed, or a new whitelist, changes who reads which view. Views whose
        parts are unchanged for their readers keep their content; a new reader
        adopts the view of its parts; a record stored before views existed gets
        its views (the first re-view after an upgrade migrates the index).
        Nothing is announced: no record changed. Returns the records written.
        """
        audiences = self.audiences.current()
        if reviewed_fingerprint(self.store) == audiences.fingerprint:
            return 0
        now = self.clock.now()
        written = 0
        for page in record_pages(self.store):
            if stop is not None and stop.is_set():
                return written
            with book_of(self.store, self.clock).hold() as held:
                written += self._review_page(page, audiences, now, held.stamp(STAMP_SPAN))
        mark_reviewed(self.store, audiences.fingerprint)
        if written:
            log.info("re-view: %d records' views re-planned for a new audience set", written)
        return written

    def _review_page(
        self, page: list[Stored], audiences: AudienceSet, now: datetime, stamp: str
    ) -> int:
        """Re-plan one page of records (``review``); views rebuilt get ``stamp``."""
        written = 0
        puts: list[Put] = []
        items: list[Materialise] = []
        for stored in page:
            record = stored.doc
            if record_problem(record) is not None:
                continue
            # A record stored before views existed gets its views now (scored now).
            parts = merge.upgrade(dict(record))
            plan = plan_record(parts, record, audiences, self.scorer, self.agency_profile,
                               now, stamp=stamp)  # fmt: skip
            rev = int(record.get("rev", 0)) + 1
            doc = assemble(plan, audiences, rev)
            if [doc.get(f) for f in ("readers", "views")] == [
                record.get(f) for f in ("readers", "views")
            ]:
                continue
            puts.append(Put(stored.key, doc, expected=stored.version))
            items.append(Materialise(stored.key, rev, tuple(doc["views"]),
                                     tuple(plan.removed)))  # fmt: skip
        if puts:
            notes = [n for n in [self.views.note(items)] if n is not None]
            outcomes = self.store.put_many(names.INDEX_INDICATORS, puts)
            ok = {r.key for r in outcomes if r.ok}
            self.views.write([i for i in items if i.record_key in ok], notes)
            written += len(ok)
        return written

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
        Every view re-scored is a new version in the ``records`` TAXII collection:
        one stamp for the page, taken and written under a date_added floor.
        """
        with book_of(self.store, self.clock).hold() as held:
            return self._rescore_page(page, now, held.stamp(STAMP_SPAN))

    def _rescore_page(self, page: list[Stored], now: datetime, stamp: str) -> RescoreResult:
        result = RescoreResult(pages=1)
        puts: list[Put] = []
        changes: dict[str, RecordChange] = {}
        dead: list[DeadLetter] = []
        at = format_timestamp(now)
        staged: dict[str, Materialise] = {}
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
            if "basis" in record:
                found = self._rescore_views(key, record, now, at, stamp_for(stamp, key))
                if found is None:
                    result.skipped += 1
                    continue
                put_doc, view_changes, item = found
                puts.append(Put(key=key, doc=put_doc, expected=current.version))
                staged[key] = item
                for change in view_changes:
                    changes[f"{key}@{change['view']}"] = change
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
            stamp_version(record, stamp_for(stamp, key))
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
        views_note = self.views.note(list(staged.values()))
        if views_note is not None:
            notes.append(views_note)
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
        written = {r.key for r in outcomes if r.ok}
        self.views.write([item for k, item in staged.items() if k in written], [])
        announced = [
            c for c in changes.values() if c["key"] not in conflicted and c["key"] not in failed
        ]
        self.changes.publish(announced, notes)
        result.crossings = len(announced)
        return result

    def _rescored(
        self, content: dict[str, Any], now: datetime, stamp: str
    ) -> dict[str, Any] | None:
        """``content`` re-scored at ``now`` as a new dict, or None when nothing changes.

        A view that is not due, or whose score, state and next re-score stay, is
        left exactly as it was (its ``scored_at`` too): what a reader sees never
        moves because another reader's view did.
        """
        if not content_due(content, now):
            return None
        fresh = dict(content)
        if liveness_changed(fresh, now):
            self.scorer.apply(fresh, self.agency_profile, now)
        else:
            apply_decay(fresh, now)
        if [fresh.get(f) for f in _RESCORED] == [content.get(f) for f in _RESCORED]:
            return None
        stamp_version(fresh, stamp)
        return fresh

    def _rescore_views(
        self, key: str, record: dict[str, Any], now: datetime, at: str, stamp: str
    ) -> tuple[dict[str, Any], list[RecordChange], Materialise] | None:
        """Re-score each due view of a record; the record to write, its crossings, its views."""
        audiences = self.audiences.current()
        found: list[RecordChange] = []
        own = content_of(record)
        fresh_own = self._rescored(own, now, stamp)
        views = [dict(v) for v in record.get("views") or []]
        touched = fresh_own is not None
        for view in views:
            fresh = self._rescored(view["view"], now, stamp)
            if fresh is None:
                continue
            touched = True
            kinds = merge.change_kinds(view["view"], fresh, SCORE_THRESHOLDS)
            if "score_crossing" in kinds:
                found.append(record_change(
                    key, kinds, at, fresh, cause="decay",
                    readers=sorted(audiences.expand(view["readers"])), view=view["key"],
                ))  # fmt: skip
            view["view"] = fresh
        if not touched:
            return None
        doc = dict(fresh_own) if fresh_own is not None else dict(own)
        if fresh_own is not None:
            kinds = merge.change_kinds(own, fresh_own, SCORE_THRESHOLDS)
            if "score_crossing" in kinds:
                found.append(record_change(
                    key, kinds, at, fresh_own, cause="decay",
                    readers=sorted(audiences.expand(record.get("readers") or [])), view=key,
                ))  # fmt: skip
        rev = int(record.get("rev", 0)) + 1
        for name in ("readers", "views", "basis"):
            doc[name] = record.get(name) if name != "views" else views
        doc["rev"] = rev
        doc["rescore_due"] = rescore_due(doc, views)
        return doc, found, Materialise(key, rev, tuple(views))


def _stored(hit: Hit) -> Stored:
    if hit.version is None:  # an adapter that ignores ``Query.versions``
        raise RuntimeError(f"the store returned {hit.key} without the version asked for")
    return Stored(hit.key, hit.doc, hit.version)
