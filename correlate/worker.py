"""The correlation worker: ``intel.stix.raw`` in, scored records in the store.

A stage of the one consumer loop (core/consuming.py): it only decodes, calls
the pure functions of ``correlate.merge`` / ``correlate.score`` and writes
(STYLE.md 6). Guarantees (ARCHITECTURE.md):
- offsets are committed only after the store acknowledged every write;
- the store down -> no commit, back off, retry (rewind to the last commit);
- poison (an undecodable message, an object with no usable pattern) ->
  ``intel.dlq`` with its reason, the rest of the batch goes on; a bug is never
  taken for poison;
- optimistic concurrency (records/rmw.py): a conflicting write re-reads and
  re-applies, so two workers on different partitions never lose an update of
  a shared record;
- idempotent: re-applying a report already merged changes nothing, so a
  replay from offset 0 leaves the records as they were;
- record changes are noted in the outbox before the write and published after
  it (records/changes.py), so the alert engine hears of every change;
- noninterference (DOMAIN.md; core/views.py): each record is written with the
  view of every group of readers that sees it alike; a view is rebuilt only
  when its own parts change, and a change is announced once per group of
  readers whose view changed (with who they are), so the alert engine never
  hears of a report on behalf of a reader that may not see it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from core import envelope, names
from core.clock import Clock, format_timestamp
from core.consuming import ConsumerStage, DeadLetter, Handled
from core.envelope import Accepted
from core.errors import InvalidPattern
from core.indicators import RecordChange
from core.observables import observables
from core.patterns import DEFAULT_LIMITS, PatternLimits
from core.policy import SharingPolicy, crossing_observable_types
from core.ports import Bus, Incoming, Put, Store, Stored, Version
from core.provenance import Provenance
from core.record_indicators import STAMP_SPAN
from core.settings import OutboxSettings, WritesSettings
from correlate import merge
from correlate.score import AgencyProfile, Scorer
from correlate.views import announced, assemble, plan_record, snapshot
from records.changes import ChangeAnnouncer
from records.date_added import book_of
from records.objects import (
    note_references,
    object_key,
    references_to,
    store_objects,
    version_of,
    versions_of,
    withdrawal_of,
)
from records.outbox import Outbox
from records.owners import claim, mark_failed
from records.rmw import Contention, read_modify_write
from records.views import AudienceSource, Materialise, ViewWriter

log = logging.getLogger("threatbay.correlate")

LINK_FIELDS = {"malware": "malware", "campaign": "campaigns", "intrusion-set": "intrusion_sets"}


@dataclass
class BatchResult:
    objects: int = 0
    records_written: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    conflicts: int = 0
    changes: list[RecordChange] = field(default_factory=list)
    #: change-outbox notes of this batch's writes, removed once the changes are published
    notes: list[str] = field(default_factory=list)

    @property
    def dead_lettered(self) -> int:
        return len(self.dead)


@dataclass
class _Work:
    """What one batch asks of the records, keyed by canonical key."""

    reports: dict[str, list[merge.Report]] = field(default_factory=dict)
    sightings: dict[str, list[merge.Report]] = field(default_factory=dict)
    links: dict[str, list[merge.Report]] = field(default_factory=dict)
    observables: dict[str, Any] = field(default_factory=dict)
    #: (agency, indicator id) whose reports their source deleted (TAXII DELETE), and
    #: the reports that replace a deleted latest version
    withdrawals: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    restated: dict[str, list[merge.Report]] = field(default_factory=dict)

    def keys(self) -> set[str]:
        return (
            set(self.reports) | set(self.sightings) | set(self.links)
            | set(self.withdrawals) | set(self.restated)
        )  # fmt: skip


def object_problem(obj: Any) -> str | None:
    """Why an accepted object cannot be correlated; None when it can.

    Ingest validated every object already (ingest/validate.py); this guards the
    fields correlation reads against anything else that reached the topic.
    """
    if not isinstance(obj, dict):
        return "object is not a JSON object"
    if not isinstance(obj.get("id"), str) or not isinstance(obj.get("type"), str):
        return "object has no string id or type"
    if obj["type"] == "indicator" and obj.get("pattern_type", "stix") == "stix":
        if not isinstance(obj.get("pattern"), str):
            return "indicator has no string pattern"
    return None


class RecentRecords:
    """Records this worker wrote last, with their store versions (a bounded LRU).

    A record seen again soon (a second agency reporting the same value) is then
    merged without reading it back: the write carries the remembered version, so
    if anyone else changed it meanwhile the store answers a conflict and the
    record is re-read (optimistic concurrency, as for any other write). Kept as
    JSON bytes: ~1 KB a record.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[bytes, Version]] = OrderedDict()

    def lookup(self, keys: Iterable[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        for key in keys:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                found[key] = Stored(key=key, doc=orjson.loads(item[0]), version=item[1])
        return found

    def remember(self, key: str, doc: Mapping[str, Any], version: Version) -> None:
        self._items[key] = (orjson.dumps(doc), version)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


class Correlator(ConsumerStage):
    """Consumes accepted objects and maintains one record per canonical observable."""

    name = "correlator"
    topic = names.TOPIC_RAW
    group = names.GROUP_CORRELATOR

    def __init__(
        self,
        bus: Bus,
        store: Store,
        clock: Clock,
        agency_profile: Callable[[str], AgencyProfile],
        scorer: Scorer,
        sharing: SharingPolicy,
        *,
        changes: ChangeAnnouncer | None = None,
        writes: WritesSettings | None = None,
        outbox: OutboxSettings | None = None,
        batch_size: int = 200,
        pattern_limits: PatternLimits = DEFAULT_LIMITS,
        audiences: AudienceSource | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.clock = clock
        self.agency_profile = agency_profile
        self.scorer = scorer
        self.sharing = sharing
        self.writes = writes or WritesSettings()
        self.outbox_settings = outbox or OutboxSettings()
        self.changes = changes or ChangeAnnouncer(
            store, bus, Outbox(store, clock, self.outbox_settings)
        )
        self.batch_size = batch_size
        self.pattern_limits = pattern_limits
        self.audiences = audiences or AudienceSource(store, clock, sharing)
        self.views = ViewWriter(store, Outbox(store, clock, self.outbox_settings), self.writes)
        self.recent = RecentRecords()
        self._next_sweep = 0.0  # monotonic time of the next change-outbox sweep
        # One long-lived thread (not one per batch: every new thread would open its own
        # store connection on the embedded backend).
        self._objects_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="objects")

    # ----------------------------------------------------------------- loop

    def housekeeping(self) -> None:
        """Announce record changes a failed write left in the outbox (at start, then every
        ``outbox.sweep_interval_s``)."""
        if time.monotonic() >= self._next_sweep:
            self.views.sweep()
            self.changes.announce_pending()
            self._next_sweep = time.monotonic() + self.outbox_settings.sweep_interval_s

    def handle(self, messages: Sequence[Incoming]) -> Handled:
        result = self.process(messages)
        return Handled(result.dead, result.objects)

    def units(self, message: Incoming) -> Sequence[Incoming]:
        """Each accepted object of ``message`` as a message of its own (poison narrowing)."""
        try:
            items = envelope.decode(message.value)
        except ValueError:
            return [message]
        return [
            replace(message, value=out.value) for item in items for out in envelope.encode([item])
        ]

    def dead_letter(self, unit: Incoming, reason: str) -> DeadLetter:
        """One object as the correlator dead-letters it: the object and its provenance."""
        try:
            [item] = envelope.decode(unit.value)
        except ValueError:
            return DeadLetter.of(unit, reason)
        raw = orjson.dumps({"object": item.obj, "provenance": item.provenance.to_dict()})
        return DeadLetter(str(item.obj.get("id") or ""), raw, reason, unit)

    # ---------------------------------------------------------------- batch

    def process(self, messages: Sequence[Incoming]) -> BatchResult:
        """Decode, merge, score and write one batch of bus messages."""
        result = BatchResult()
        accepted: list[Accepted] = []
        for message in messages:
            try:
                accepted.extend(envelope.decode(message.value))
            except ValueError as exc:
                result.dead.append(DeadLetter.of(message, str(exc)))
        result.objects = len(accepted)
        # Ownership, authoritatively (core/ownership.py): another agency's push of an id
        # that raced past ingest is dead-lettered and its TAXII status entry failed.
        claimed = claim(self.store, accepted, self.writes)
        for item, reason in claimed.refused:
            raw = orjson.dumps({"object": item.obj, "provenance": item.provenance.to_dict()})
            result.dead.append(DeadLetter(str(item.obj.get("id") or ""), raw, reason))
        mark_failed(self.store, claimed.refused, self.writes)
        accepted = claimed.allowed

        work = _Work()
        sighting_refs: dict[str, list[merge.Report]] = {}
        link_refs: dict[str, list[merge.Report]] = {}
        referrers: dict[str, dict[str, dict[str, Any]]] = {}
        good: list[Accepted] = []
        withdrawn: list[tuple[str, str, Accepted | None]] = []
        for item in accepted:
            obj = item.obj
            if (gone := withdrawal_of(obj)) is not None:  # records/objects.py: not an object
                now_latest = obj.get("restated")
                restated = Accepted(now_latest, item.provenance) if now_latest else None
                withdrawn.append((item.provenance.agency, gone, restated))
                continue
            problem = object_problem(obj)
            if problem is None:
                try:
                    if obj["type"] == "indicator":
                        self._indicator(work, item)
                except InvalidPattern as exc:
                    problem = str(exc)
            if problem is not None:
                raw = orjson.dumps({"object": obj, "provenance": item.provenance.to_dict()})
                object_id = obj.get("id") if isinstance(obj, dict) else None
                result.dead.append(DeadLetter(str(object_id or ""), raw, problem))
                continue
            if (ref := reference_of(obj, item.provenance)) is not None:
                indicator_id, sighting, link = ref
                if sighting is not None:
                    sighting_refs.setdefault(indicator_id, []).append(sighting)
                if link is not None:
                    link_refs.setdefault(indicator_id, []).append(link)
                _note(referrers, indicator_id, item)
            good.append(item)

        # The objects index (TAXII out) and the records are independent within a batch:
        # sightings / links name indicators stored by earlier, committed batches or
        # present in this one (``_resolve_refs``). Writing them concurrently overlaps
        # one's store round trips with the other's Python work; both finish before
        # the caller commits.
        # The records' version stamp (core/record_indicators.py) is taken before the
        # objects are stamped, never concurrently: what a stamp is must not depend on
        # thread timing (nor, through it, on reports a reader may not see).
        with book_of(self.store, self.clock).hold() as held:
            stamp = held.stamp(STAMP_SPAN)
            objects_done = self._objects_writer.submit(
                store_objects, self.store, good, self.clock, self.sharing, self.writes
            )
            try:
                # References are noted before the named indicators' versions are read,
                # and an indicator's versions are stored before its references are read
                # (below): of a sighting and its indicator handled at the same moment by
                # two workers, one always sees the other.
                note_references(self.store, referrers, self.writes)
                keys_of = self._resolve_refs(work, sighting_refs, link_refs)
                if withdrawn:
                    self._withdraw(work, withdrawn)
                self._write_records(work, result, stamp)
            finally:
                objects_done.result()
        new_ids = sorted({i.obj["id"] for i in good if i.obj["type"] == "indicator"})
        if new_ids:
            late = self._attach_earlier(keys_of, new_ids, referrers)
            if late.keys():
                self._write_records(late, result)
        self.changes.publish(result.changes, result.notes)
        return result

    def _indicator(self, work: _Work, item: Accepted) -> None:
        obj = item.obj
        if obj.get("pattern_type", "stix") != "stix":
            return
        # What may cross a border is decided on the whole object (every observable type its
        # pattern carries, core/crossborder.py); its part of each record is shared alike.
        crossing = sorted(crossing_observable_types(obj))
        for observable in observables(obj["pattern"], self.pattern_limits):
            report = merge.source_report(obj, item.provenance, observable)
            report["observable_types"] = crossing
            work.reports.setdefault(observable.key, []).append(report)
            work.observables[observable.key] = observable

    def _withdraw(self, work: _Work, withdrawn: list[tuple[str, str, Accepted | None]]) -> None:
        """Records holding reports their source deleted: withdrawn, or restated as the version
        TAXII now has last (``records.objects.withdrawal``)."""
        naming = self._records_naming({gone for _, gone, _ in withdrawn})
        for agency, gone, restated in withdrawn:
            kept: set[str] = set()
            if restated is not None:
                try:
                    found = observables(restated.obj["pattern"], self.pattern_limits)
                except (InvalidPattern, KeyError, TypeError):
                    found = []
                # decided on the whole object, as ``_indicator`` does
                crossing = sorted(crossing_observable_types(restated.obj)) if found else []
                for observable in found:
                    report = merge.source_report(restated.obj, restated.provenance, observable)
                    report["observable_types"] = crossing
                    work.restated.setdefault(observable.key, []).append(report)
                    work.observables.setdefault(observable.key, observable)
                    kept.add(observable.key)
            for key, ids in naming.items():
                if gone in ids and key not in kept:
                    work.withdrawals.setdefault(key, []).append((agency, gone))

    def _resolve_refs(
        self,
        work: _Work,
        sighting_refs: dict[str, list[merge.Report]],
        link_refs: dict[str, list[merge.Report]],
    ) -> dict[str, set[str]]:
        """Map sightings / relationships to the records of the indicators they name.

        Returns indicator id -> record keys for every indicator of the batch too.
        """
        # Indicators seen in this batch: their keys are known without a query.
        keys_of: dict[str, set[str]] = {}
        for key, reports in work.reports.items():
            for report in reports:
                keys_of.setdefault(report["stix_id"], set()).add(key)
        wanted = (set(sighting_refs) | set(link_refs)) - set(keys_of)
        if wanted:
            for key, ids in self._records_naming(wanted).items():
                for stix_id in ids:
                    keys_of.setdefault(stix_id, set()).add(key)
        for ref, entries in sighting_refs.items():
            for key in keys_of.get(ref, ()):
                work.sightings.setdefault(key, []).extend(entries)
        for ref, links in link_refs.items():
            for key in keys_of.get(ref, ()):
                work.links.setdefault(key, []).extend(links)
        return keys_of

    def _records_naming(self, stix_ids: set[str]) -> dict[str, set[str]]:
        """Record key -> the given indicator ids it holds, by real-time reads only.

        The indicators' stored versions (``threatbay-object-versions`` then the
        objects index, both read by key) give their patterns, hence their keys;
        a search on ``stix_ids`` would miss records written less than one
        refresh interval ago on Elasticsearch.
        """
        _, versions = versions_of(self.store, sorted(stix_ids))
        found: dict[str, set[str]] = {}
        for stix_id, stored in versions.items():
            for version in stored.values():
                pattern = version.doc.get("object", {}).get("pattern")
                if not isinstance(pattern, str):
                    continue
                try:
                    keys = [o.key for o in observables(pattern, self.pattern_limits)]
                except InvalidPattern:
                    continue
                for key in keys:
                    found.setdefault(key, set()).add(stix_id)
        return found

    def _attach_earlier(
        self,
        keys_of: dict[str, set[str]],
        indicator_ids: list[str],
        noted_now: dict[str, dict[str, dict[str, Any]]],
    ) -> _Work:
        """Sightings / relationships stored before the indicators they name (real-time read).

        Those of this batch (``noted_now``) were applied already.
        """
        late = _Work()
        for indicator_id, items in references_to(self.store, indicator_ids).items():
            keys = keys_of.get(indicator_id, ())
            for object_key_, item in items.items():
                if object_key_ in noted_now.get(indicator_id, {}):
                    continue
                ref = reference_of(item["object"], Provenance.from_dict(item["provenance"]))
                if ref is None:
                    continue
                _, sighting, link = ref
                for key in keys:
                    if sighting is not None:
                        late.sightings.setdefault(key, []).append(sighting)
                    if link is not None:
                        late.links.setdefault(key, []).append(link)
        return late

    def _write_records(self, work: _Work, result: BatchResult, stamp: str | None = None) -> None:
        """Merge, plan the views of, score and write the records ``work`` touches.

        core/views.py: every view is rebuilt only if its own parts changed; the
        record document carries its own view and the others' (records/views.py
        materialises those after the write). records/rmw.py: a conflict re-reads
        and re-applies.

        Views rebuilt here are new versions in the ``records`` TAXII collection: their
        ``stamp`` is taken, and both writes made, under a date_added floor
        (records/date_added.py); without one given, a hold is taken here.
        """
        if stamp is None:
            with book_of(self.store, self.clock).hold() as held:
                self._write_records(work, result, held.stamp(STAMP_SPAN))
            return
        now = self.clock.now()
        at = format_timestamp(now)
        audiences = self.audiences.current()
        staged: dict[str, tuple[list[RecordChange], Materialise, dict[str, Any]]] = {}

        def change(key: str, stored: Stored | None) -> Put | None:
            # ``stored.doc`` was just read (store or LRU): merged into in place.
            doc = stored.doc if stored else None
            old = None
            if doc is None:
                observable = work.observables.get(key)
                if observable is None:
                    return None  # a sighting/link for a record that vanished
                record = merge.new_record(observable)
            else:
                record = merge.upgrade(doc)
                old = snapshot(record)
            changed = False
            for report in work.reports.get(key, []):
                changed |= merge.apply_report(record, report)
            for sighting in work.sightings.get(key, []):
                changed |= merge.apply_sighting(record, sighting)
            for link in work.links.get(key, []):
                changed |= merge.apply_link(record, link)
            for agency, ref in work.withdrawals.get(key, []):
                changed |= merge.withdraw(record, agency, ref)
            for report in work.restated.get(key, []):
                changed |= merge.restate(record, report)
            if not changed:
                staged.pop(key, None)
                return None
            plan = plan_record(
                record, old, audiences, self.scorer, self.agency_profile, now, stamp=stamp
            )
            rev = int((old or {}).get("rev", 0)) + 1
            new_doc = assemble(plan, audiences, rev)
            staged[key] = (
                announced(key, plan.changes, at),
                Materialise(key, rev, tuple(new_doc["views"]), tuple(plan.removed)),
                new_doc,
            )
            return Put(key=key, doc=new_doc, expected=stored.version if stored else None)

        def note(puts: list[Put]) -> None:
            # Noted before the write: a retried batch finds its reports merged already
            # and would announce nothing (records/outbox.py).
            changes = [c for p in puts for c in staged[p.key][0]]
            if changes:
                result.notes.append(self.changes.note(changes))
            views_note = self.views.note([staged[p.key][1] for p in puts])
            if views_note is not None:
                result.notes.append(views_note)

        pending = sorted(work.keys())
        contention = Contention()
        written = read_modify_write(
            self.store,
            names.INDEX_INDICATORS,
            pending,
            change,
            known=self.recent.lookup(pending),
            before_write=note,
            writes=self.writes,
            contention=contention,
        )
        result.conflicts += contention.conflicts
        for key in pending:
            outcome = written.get(key)
            if outcome is not None and outcome.version is not None and key in staged:
                self.recent.remember(key, staged[key][2], outcome.version)
            elif key in staged:
                self.recent.forget(key)
        result.records_written += len(written)
        self.views.write([staged[k][1] for k in written if k in staged], [])
        result.changes.extend(c for k in written if k in staged for c in staged[k][0])


def reference_of(
    obj: dict[str, Any], provenance: Provenance
) -> tuple[str, merge.Report | None, merge.Report | None] | None:
    """(indicator id, sighting report, link report) when ``obj`` attaches to an indicator's record.

    A ``sighting`` of an indicator, or an ``indicates`` relationship from an indicator
    to a malware / campaign / intrusion set; ``None`` for anything else.
    """
    if obj.get("type") == "sighting":
        ref = obj.get("sighting_of_ref", "")
        if ref.startswith("indicator--"):
            return ref, merge.sighting_report(obj, provenance), None
    elif obj.get("type") == "relationship" and obj.get("relationship_type") == "indicates":
        target = obj.get("target_ref", "")
        field_name = LINK_FIELDS.get(target.split("--", 1)[0])
        source = obj.get("source_ref", "")
        if field_name and source.startswith("indicator--"):
            return source, None, merge.link_report(obj, provenance, field_name)
    return None


def _note(referrers: dict[str, dict[str, dict[str, Any]]], ref: str, item: Accepted) -> None:
    key = object_key(item.obj["id"], version_of(item.obj))
    referrers.setdefault(ref, {})[key] = {
        "object": item.obj,
        "provenance": item.provenance.to_dict(),
    }
