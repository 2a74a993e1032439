"""Pull feeds into ingest, one batch at a time, and schedule them on their intervals.

Every feed's objects go through the same ingest function an agency's TAXII
push uses (validation, provenance, policy, topic), as the feed's own source
agency ``feed-<name>``. The cursor moves only after ingest accepted a batch.
Objects ingest rejects (invalid STIX, bad pattern) are reported and passed
over: they would be rejected again on every retry. A batch ingest could not
accept at all (bus down) stops the pull with the cursor before that batch.

A failing feed (unreachable, HTTP errors, wrong credentials, malformed data)
is reported per feed and retried after an exponential, capped backoff; it
never stops the other feeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from core.access import Agency, Principal
from core.clock import Clock, parse_timestamp
from feeds.base import Batch, Puller
from feeds.config import FeedConfig, FeedRegistry
from feeds.http import FeedFailure, describe_failure
from feeds.prepare import prepare_objects
from records.feed_cursors import FeedCursors

log = logging.getLogger("threatbay.feeds")

MAX_REPORTED_REJECTIONS = 20


class OutcomeLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def message(self) -> str | None: ...


class IngestResultLike(Protocol):
    """What the push path answers: per-object successes and failures (TAXII 2.1 §4.3.1)."""

    @property
    def successes(self) -> Sequence[OutcomeLike]: ...

    @property
    def failures(self) -> Sequence[OutcomeLike]: ...


IngestFn = Callable[[Principal, list[Any]], IngestResultLike]
"""Hand objects to ingest as ``principal``; raises ``IngestUnavailable`` when nothing was kept."""

PullerFactory = Callable[[FeedConfig, Clock], Puller]


def default_puller(feed: FeedConfig, clock: Clock) -> Puller:
    """The puller for ``feed.kind``."""
    if feed.kind in ("taxii21", "taxii20"):
        from feeds.taxii import TaxiiPuller

        return TaxiiPuller(feed)
    if feed.kind == "misp":
        from feeds.misp import MispPuller

        return MispPuller(feed)
    from feeds.csv_feed import ListPuller

    return ListPuller(feed, clock)


@dataclass
class PullReport:
    """What one pull of one feed did; shown per feed, never hidden by another feed's failure."""

    feed: str
    fetched: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    cursor: str | None = None
    failure: FeedFailure | None = None
    rejections: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def note_rejections(self, messages: Sequence[str]) -> None:
        room = MAX_REPORTED_REJECTIONS - len(self.rejections)
        self.rejections.extend(messages[: max(room, 0)])

    def summary(self) -> str:
        """One line: counts, and the failure in plain words when there was one."""
        counts = (
            f"fetched {self.fetched}, accepted {self.accepted}, rejected {self.rejected}"
            f" in {self.batches} batch{'es' if self.batches != 1 else ''}"
        )
        if self.failure is None:
            return f"feed {self.feed}: ok, {counts}"
        return f"feed {self.feed}: FAILED ({self.failure.kind}) {self.failure.message}; {counts}"


def feed_principal(feed: FeedConfig) -> Principal:
    """The feed acting as its own source agency (publisher only)."""
    return Principal(agency=feed.agency(), roles=frozenset({"publisher"}), key_id="")


class FeedRunner:
    """Pulls feeds into ingest; one instance per process."""

    def __init__(
        self,
        cursors: FeedCursors,
        ingest: IngestFn,
        clock: Clock,
        register: Callable[[Agency], None] | None = None,
        puller_factory: PullerFactory = default_puller,
    ) -> None:
        self.cursors = cursors
        self.ingest = ingest
        self.clock = clock
        self.register = register
        self.puller_factory = puller_factory
        self._registered: set[str] = set()

    def _ensure_agency(self, feed: FeedConfig) -> None:
        agency = feed.agency()
        if self.register is not None and agency.id not in self._registered:
            self.register(agency)
            self._registered.add(agency.id)

    def _ingest_batch(
        self, feed: FeedConfig, principal: Principal, batch: Batch, report: PullReport
    ) -> int:
        report.fetched += len(batch.objects)
        report.rejected += len(batch.invalid)
        report.note_rejections(list(batch.invalid))
        objects = prepare_objects(batch.objects, feed.tlp)
        if not objects:
            return 0
        result = self.ingest(principal, objects)
        accepted = len(result.successes)
        report.accepted += accepted
        report.rejected += len(result.failures)
        report.note_rejections(
            [f"{o.id or '<no id>'}: {o.message or 'rejected'}" for o in result.failures]
        )
        return accepted

    def pull(
        self, feed: FeedConfig, progress: Callable[[PullReport], None] | None = None
    ) -> PullReport:
        """Pull ``feed`` from its saved cursor to the end; never raises for feed trouble."""
        report = PullReport(feed=feed.name)
        try:
            state = self.cursors.load(feed.name, feed.kind)
        except Exception as exc:  # the store is down: report it like any other failure
            report.failure = describe_failure(exc, feed.url)
            log.warning("%s", report.summary())
            return report
        report.cursor = state.cursor
        principal = feed_principal(feed)
        try:
            self._ensure_agency(feed)
            puller = self.puller_factory(feed, self.clock)
            try:
                for batch in puller.batches(state.cursor):
                    accepted = self._ingest_batch(feed, principal, batch, report)
                    state = self.cursors.advance(state, batch.cursor, accepted)
                    report.batches += 1
                    report.cursor = state.cursor
                    if progress is not None:
                        progress(report)
            finally:
                puller.close()
        except Exception as exc:  # a feed's failure is reported, never propagated
            report.failure = describe_failure(exc, feed.url)
            log.warning("%s", report.summary())
            try:
                self.cursors.failed(state, report.failure.message)
            except Exception:
                log.exception("feed %s: could not record the failure", feed.name)
            return report
        self.cursors.succeeded(state)
        log.info("%s", report.summary())
        return report


def retry_delay(feed: FeedConfig, failures: int) -> float:
    """Seconds to the next pull: the interval, or after ``failures`` failures a capped backoff."""
    if failures <= 0:
        return feed.interval_s
    return min(feed.backoff_max_s, feed.backoff_base_s * 2.0 ** (failures - 1))


class FeedScheduler:
    """Runs every enabled feed on its interval; failing feeds back off, others carry on."""

    def __init__(self, runner: FeedRunner, registry: FeedRegistry, clock: Clock) -> None:
        self.runner = runner
        self.clock = clock
        self.feeds = [f for f in registry.feeds if f.enabled]
        now = clock.now()
        self.due: dict[str, datetime] = {}
        self.failures: dict[str, int] = {}
        for feed in self.feeds:
            state = runner.cursors.load(feed.name, feed.kind)
            self.failures[feed.name] = state.failures
            due = now
            if state.failures == 0 and state.last_success:
                due = parse_timestamp(state.last_success) + timedelta(seconds=feed.interval_s)
            self.due[feed.name] = min(due, now + timedelta(seconds=feed.interval_s))

    def run_due(
        self, on_report: Callable[[PullReport], None] | None = None, *, force: bool = False
    ) -> list[PullReport]:
        """Pull every feed that is due now (every feed with ``force``), oldest due first."""
        reports: list[PullReport] = []
        now = self.clock.now()
        for feed in sorted(self.feeds, key=lambda f: self.due[f.name]):
            if self.due[feed.name] > now and not force:
                continue
            report = self.runner.pull(feed)
            self.failures[feed.name] = 0 if report.ok else self.failures[feed.name] + 1
            delay = retry_delay(feed, self.failures[feed.name])
            self.due[feed.name] = self.clock.now() + timedelta(seconds=delay)
            if not report.ok:
                log.warning("feed %s: next attempt in %.0f s", feed.name, delay)
            reports.append(report)
            if on_report is not None:
                on_report(report)
        return reports

    def seconds_until_next(self) -> float:
        if not self.due:
            return 60.0
        soonest = min(self.due.values())
        return max(0.0, (soonest - self.clock.now()).total_seconds())

    def run(
        self, stop: threading.Event, on_report: Callable[[PullReport], None] | None = None
    ) -> None:
        """Loop until ``stop`` is set."""
        while not stop.is_set():
            self.run_due(on_report)
            stop.wait(min(self.seconds_until_next(), 60.0) or 0.05)
