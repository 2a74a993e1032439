"""``date_added`` that a poller can resume from, whatever the writers and the refresh interval.

TAXII 2.1 pollers resume with ``added_after`` = the last ``X-TAXII-Date-Added-Last``
(section 3.4). That is safe only if no version ever becomes visible with a
``date_added`` at or before one already served. Stamping "now" and writing
afterwards breaks it twice over: writers in several processes (``threatbay
correlate`` x N, the alerts stage) stamp concurrently, and a write becomes
searchable only at the next refresh, so a version stamped earlier can appear
after one stamped later, behind the poller's cursor, and is skipped for ever.

The fix: writers announce a *floor* before they stamp; readers serve only what
lies below every floor and is certainly searchable (the *settled watermark*).
All coordination goes through one document read by key (real-time on every
backend), ``#date-added`` in the object-versions index::

    {"kind": "date_added", "horizon": T, "high": T,
     "writers": {writer id: {"floor": T, "expires": T}}}

Writer (``records.objects.store_objects``), per call, through ``Hold``:

1. register: write ``writers[me] = {floor F, expires now + lease}`` with
   ``F = max(now, horizon + 1 us, this process's last stamp + 1 us)``, under
   optimistic concurrency; stamping starts only once that write is
   acknowledged (threads of one process share one entry, whose floor is the
   lowest of theirs, so a process writes the document about twice per batch);
2. stamp each new version with a ``date_added >= F``, strictly increasing
   within the process;
3. write the versions; once the store has acknowledged them, release: drop the
   entry (or raise it to the floor of the process's other writes still under
   way) and raise ``high`` to the highest stamp released;
4. if the acknowledgement came after ``expires - clock_skew``, a reader may
   have taken the floor for a dead writer's: stamp those versions again under a
   new floor (they then reach a poller again, at least once, never zero times).
   A write that failed keeps its floor until the lease runs out (the store may
   still apply a request the client gave up on), unless it failed with
   ``WriteContention`` (every request was answered).

Reader (``DateAddedBook.settled``, the TAXII GET paths), at most once per
``taxii.settle_interval_s`` per process (in the background once the current
watermark is half that old, so a steadily polled process serves requests
without waiting for a refresh), and again after this process released a write
(read-your-writes):

1. read the document; ``W = max(horizon, min(live floors - 1 us, max(now,
   high)))``, where a floor is live while ``now < expires``;
2. if ``W`` is past ``horizon``, write ``horizon = W`` conditional on the
   version read (a writer that registered in between makes it conflict: read
   again);
3. refresh the objects index (and the indicators index, whose view documents are the
   versions of the ``records`` collection, stamped by the correlator, the re-score and
   the re-view under floors like any other writer: core/record_indicators.py);
4. serve only versions with ``date_added <= W``.

Why a version O with ``date_added(O) <= W`` is searchable when W is served.
Writes to the document are linearised by its version. Let t be the point of
the write in step 2 that published W (or of the read, when W was published
already), and X the writer that stamped O, with floor ``f <= date_added(O)``:

- X registered after t: it read ``horizon >= W``, so ``f > W``: impossible;
- X's entry was live at t: ``W <= f - 1 us < date_added(O)``: impossible;
- X released before t: O's write was acknowledged before the release, so
  before the refresh of step 3, so O is searchable;
- X's entry had expired at t (``now_reader(t) >= expires``): if O's write was
  acknowledged before t it is searchable; otherwise X saw its acknowledgement
  at ``now_X >= expires - clock_skew`` (clocks differ by at most the skew) and
  stamped O again under a new floor, so O is served at its new ``date_added``.

So a page or poll that ends at ``L <= W`` has seen every matching version with
``date_added <= L``, and everything stamped later lies after ``W``. No clock
is trusted for correctness except through the lease: ``now`` only moves the
watermark forward, ``high`` carries it past stamps from a faster clock, and a
writer with a slow clock stamps after ``horizon`` anyway.

Costs (measured in ``benches/bench_taxii_get.py``): a writer's batch makes two
extra document writes; a reader's settle one read, at most one write and one
refresh; a version becomes visible to TAXII once its batch is released and the
next settle ran (at most ``settle_interval_s`` later), instead of at the next
scheduled refresh.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import Clock, format_timestamp, parse_timestamp
from core.errors import StoreUnavailable, WriteContention
from core.names import INDEX_INDICATORS, INDEX_OBJECT_VERSIONS, INDEX_OBJECTS
from core.ports import Put, Store, Stored
from core.settings import TaxiiSettings, WritesSettings
from records.rmw import read_modify_write

log = logging.getLogger("threatbay.date_added")

KEY = "#date-added"
TICK = timedelta(microseconds=1)
_EPOCH = "1970-01-01T00:00:00.000000Z"


def _doc(stored: Stored | None) -> dict[str, Any]:
    if stored is None:
        return {"kind": "date_added", "horizon": _EPOCH, "high": _EPOCH, "writers": {}}
    doc = dict(stored.doc)
    doc["writers"] = dict(doc.get("writers", {}))
    return doc


def _put(doc: dict[str, Any], stored: Stored | None) -> Put:
    return Put(KEY, doc, expected=stored.version if stored is not None else None)


def watermark_of(doc: dict[str, Any], now: datetime) -> str:
    """``max(horizon, min(live floors - 1 us, max(now, high)))`` (module docstring, reader 1)."""
    top = max(now, parse_timestamp(doc["high"]))
    for entry in doc["writers"].values():
        if parse_timestamp(entry["expires"]) > now:
            top = min(top, parse_timestamp(entry["floor"]) - TICK)
    horizon: str = doc["horizon"]
    return max(horizon, format_timestamp(top))


@dataclass
class Hold:
    """One writer's right to stamp: ``stamp()`` gives date_added values at or above its floor."""

    book: DateAddedBook
    token: int
    floor: datetime
    deadline: datetime
    """After this (writer's clock) a reader may take the floor for a dead writer's."""
    high: datetime | None = None

    def stamp(self, span: int = 1) -> str:
        """A date_added at or above the floor, later than every other of this process.

        ``span`` > 1 reserves the ``span`` microseconds from it: the next stamp of the
        process comes after them (the ``records`` collection spreads one batch's
        versions over them, core/record_indicators.py ``stamp_for``).
        """
        return self.book._stamp(self, span)

    def overran(self) -> bool:
        """True when the writes made under this hold were acknowledged too late (writer 4)."""
        return self.book.clock.now() >= self.deadline


@dataclass
class _Entry:
    floor: datetime
    abandoned_until: float | None = None  # monotonic; a failed write keeps its floor so long


@dataclass
class DateAddedBook:
    """The floors of this process's writers and its settled watermark, over one store."""

    store_ref: weakref.ref[Store]
    """The store, weakly: ``book_of`` keeps books by store and must not keep stores alive."""
    clock: Clock
    taxii: TaxiiSettings = field(default_factory=TaxiiSettings)
    writes: WritesSettings = field(default_factory=WritesSettings)
    writer_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stamp_lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: dict[int, _Entry] = field(default_factory=dict)
    _next_token: int = 0
    _registered: tuple[datetime, datetime] | None = None  # (floor, expires) as written
    _last: datetime | None = None
    _released: int = 0  # bumped by every release: the watermark must be settled again
    _settle_lock: threading.Lock = field(default_factory=threading.Lock)
    _settled: tuple[str, float, int] | None = None  # (watermark, monotonic, releases)

    @property
    def store(self) -> Store:
        store = self.store_ref()
        if store is None:
            raise StoreUnavailable("the store of this date_added book was closed")
        return store

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.taxii.date_added_lease_s)

    @property
    def skew(self) -> timedelta:
        return timedelta(seconds=self.taxii.clock_skew_s)

    # ------------------------------------------------------------ writers

    @contextmanager
    def hold(self) -> Iterator[Hold]:
        """Register a floor (acknowledged before this yields), release it after the block.

        The block must return only once its writes are acknowledged. If it
        raises, the floor stays registered until the lease runs out (a request
        the client gave up on may still be applied by the store), except after
        ``WriteContention``: every write was answered (some as conflicts).
        """
        held = self._begin()
        try:
            yield held
        except WriteContention:
            self._end(held, failed=False)
            raise
        except BaseException:
            self._end(held, failed=True)
            raise
        self._end(held, failed=False)

    def _write(self, change: Any) -> None:
        read_modify_write(self.store, INDEX_OBJECT_VERSIONS, [KEY], change, writes=self.writes)

    def _live_floors(self) -> list[datetime]:
        now = time.monotonic()
        for token in [
            t
            for t, e in self._inflight.items()
            if e.abandoned_until is not None and e.abandoned_until <= now
        ]:
            del self._inflight[token]
        return [e.floor for e in self._inflight.values()]

    def _begin(self) -> Hold:
        with self._lock:
            now = self.clock.now()
            reg = self._registered
            floor = max(now, self._last + TICK if self._last else now)
            if reg is not None and reg[1] - now > self.lease / 2:
                floor = max(floor, reg[0])  # covered by this process's entry, long enough
                deadline = reg[1]
            else:
                decided: dict[str, datetime] = {}
                expires = now + self.lease

                def register(_: str, stored: Stored | None) -> Put:
                    doc = _doc(stored)
                    mine = max(floor, parse_timestamp(doc["horizon"]) + TICK)
                    entry_floor = min([mine, *self._live_floors()])
                    if reg is not None:
                        entry_floor = min(entry_floor, reg[0])
                    doc["writers"][self.writer_id] = {
                        "floor": format_timestamp(entry_floor),
                        "expires": format_timestamp(expires),
                    }
                    decided.update(mine=mine, entry=entry_floor)
                    return _put(doc, stored)

                self._write(register)
                floor = decided["mine"]
                self._registered = (decided["entry"], expires)
                deadline = expires
            self._next_token += 1
            token = self._next_token
            self._inflight[token] = _Entry(floor)
            return Hold(self, token, floor, deadline - self.skew)

    def _stamp(self, held: Hold, span: int = 1) -> str:
        with self._stamp_lock:
            now = max(self.clock.now(), held.floor)
            if self._last is not None and now <= self._last:
                now = self._last + TICK
            self._last = now + (max(1, span) - 1) * TICK
            if held.high is None or self._last > held.high:
                held.high = self._last
            return format_timestamp(now)

    def _end(self, held: Hold, failed: bool) -> None:
        with self._lock:
            entry = self._inflight.get(held.token)
            if entry is None:
                return
            if failed:
                entry.abandoned_until = time.monotonic() + self.taxii.date_added_lease_s
                return
            del self._inflight[held.token]
            rest = self._live_floors()
            reg = self._registered
            high = held.high
            if rest and reg is not None and min(rest) <= reg[0] and high is None:
                return  # nothing stamped and the entry's floor stays: nothing to write
            now = self.clock.now()

            def release(_: str, stored: Stored | None) -> Put:
                doc = _doc(stored)
                if high is not None and format_timestamp(high) > doc["high"]:
                    doc["high"] = format_timestamp(high)
                if rest:
                    doc["writers"][self.writer_id] = {
                        "floor": format_timestamp(min(rest)),
                        "expires": format_timestamp(now + self.lease),
                    }
                else:
                    doc["writers"].pop(self.writer_id, None)
                return _put(doc, stored)

            self._write(release)
            self._registered = (min(rest), now + self.lease) if rest else None
            self._released += 1

    # ------------------------------------------------------------ readers

    def settled(self) -> str:
        """The settled watermark (module docstring, reader): serve ``date_added <= it``."""
        cached = self._settled
        interval = self.taxii.settle_interval_s
        if cached is not None and cached[2] == self._released:
            age = time.monotonic() - cached[1]
            if age < interval:
                if age >= interval / 2:
                    self._settle_ahead(cached)  # so that no steady reader waits for a refresh
                return cached[0]
        if not self._settle_lock.acquire(blocking=cached is None):
            assert cached is not None
            return cached[0]  # another thread is settling: the previous one is still safe
        try:
            return self._settle(cached)
        finally:
            self._settle_lock.release()

    def _settle_ahead(self, cached: tuple[str, float, int]) -> None:
        """Settle again in the background while the current watermark is still served."""
        if not self._settle_lock.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self._settle(cached)
            except Exception:  # the next reader settles inline; the watermark stays safe
                log.exception("background settle of the date_added watermark failed")
            finally:
                self._settle_lock.release()

        threading.Thread(target=run, name="date-added-settle", daemon=True).start()

    def _settle(self, cached: tuple[str, float, int] | None) -> str:
        releases, started = self._released, time.monotonic()
        result: dict[str, str] = {}

        def publish(_: str, stored: Stored | None) -> Put | None:
            doc = _doc(stored)
            now = self.clock.now()
            mark = watermark_of(doc, now)
            result["mark"] = mark
            dead = [
                w
                for w, e in doc["writers"].items()
                if parse_timestamp(e["expires"]) < now - self.skew
            ]
            if mark == doc["horizon"] and not dead:
                return None
            for w in dead:
                del doc["writers"][w]
            doc["horizon"] = mark
            return _put(doc, stored)

        try:
            self._write(publish)
            self.store.refresh(INDEX_OBJECTS)
            # the ``records`` collection's versions are view documents (core/record_indicators.py)
            self.store.refresh(INDEX_INDICATORS)
        except StoreUnavailable:
            if cached is None:
                raise
            log.warning("date_added watermark not settled (store unavailable); kept the last")
            return cached[0]
        mark = result["mark"]
        if cached is not None and cached[0] > mark:
            mark = cached[0]  # every published watermark stays safe
        self._settled = (mark, started, releases)
        return mark


_BOOKS: weakref.WeakKeyDictionary[Any, DateAddedBook] = weakref.WeakKeyDictionary()
_BOOKS_LOCK = threading.Lock()


def book_of(
    store: Store,
    clock: Clock,
    taxii: TaxiiSettings | None = None,
    writes: WritesSettings | None = None,
) -> DateAddedBook:
    """This process's book over ``store``, made on first use; settings given replace the
    defaults (``records.books.records_of`` passes the process's own)."""
    with _BOOKS_LOCK:
        found = _BOOKS.get(store)
        if found is None:
            found = _BOOKS[store] = DateAddedBook(
                weakref.ref(store), clock, taxii or TaxiiSettings(), writes or WritesSettings()
            )
        if taxii is not None:
            found.taxii = taxii
        if writes is not None:
            found.writes = writes
        return found
