"""The correlation worker: ``intel.stix.raw`` in, scored records in the store.

It only decodes, calls the pure functions of ``correlate.merge`` /
``correlate.score`` and writes (STYLE.md 6). Guarantees (ARCHITECTURE.md):
- offsets are committed only after the store acknowledged every write;
- the store down -> no commit, back off, retry (rewind to the last commit);
- poison -> ``intel.dlq`` with its reason, then committed;
- optimistic concurrency: a conflicting write re-reads and re-applies, so two
  workers on different partitions never lose an update of a shared record;
- idempotent: re-applying a report already merged changes nothing, so a
  replay from offset 0 leaves the records as they were.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from core import envelope, names
from core.clock import Clock, format_timestamp
from core.consuming import consume_until, drain_until_idle
from core.envelope import Accepted
from core.errors import InvalidPattern, StoreUnavailable
from core.observables import observables
from core.policy import SharingPolicy, record_audience
from core.ports import Bus, Consumer, Incoming, Outgoing, Put, Store, Stored, Version
from core.provenance import Provenance
from correlate import merge, outbox
from correlate.objects import (
    note_references,
    object_key,
    references_to,
    store_objects,
    version_of,
    versions_of,
)
from correlate.outbox import change_messages
from correlate.score import SCORE_THRESHOLDS, AgencyProfile, Scorer

log = logging.getLogger("threatbay.correlate")

LINK_FIELDS = {"malware": "malware", "campaign": "campaigns", "intrusion-set": "intrusion_sets"}
MAX_CONFLICT_RETRIES = 20


@dataclass
class BatchResult:
    objects: int = 0
    records_written: int = 0
    dead_lettered: int = 0
    conflicts: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: change-outbox notes of this batch's writes, removed once the changes are published
    notes: list[str] = field(default_factory=list)


@dataclass
class _Work:
    """What one batch asks of the records, keyed by canonical key."""

    reports: dict[str, list[merge.Report]] = field(default_factory=dict)
    sightings: dict[str, list[merge.Report]] = field(default_factory=dict)
    links: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    observables: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> set[str]:
        return set(self.reports) | set(self.sightings) | set(self.links)


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

    def remember(self, key: str, doc: dict[str, Any], version: Version) -> None:
        self._items[key] = (orjson.dumps(doc), version)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


class Correlator:
    """Consumes accepted objects and maintains one record per canonical observable."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        clock: Clock,
        agency_profile: Callable[[str], AgencyProfile],
        scorer: Scorer,
        sharing: SharingPolicy,
    ) -> None:
        self.bus = bus
        self.store = store
        self.clock = clock
        self.agency_profile = agency_profile
        self.scorer = scorer
        self.sharing = sharing
        self.recent = RecentRecords()
        self._next_sweep = 0.0  # monotonic time of the next change-outbox sweep
        # One long-lived thread (not one per batch: every new thread would open its own
        # store connection on the embedded backend).
        self._objects_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="objects")

    # ----------------------------------------------------------------- loop

    def run(self, stop: threading.Event, *, from_beginning: bool = False) -> None:
        """Consume until ``stop`` is set; transient store failures back off and retry."""
        consumer = self.bus.consumer(
            names.TOPIC_RAW, names.GROUP_CORRELATOR, from_beginning=from_beginning
        )
        consume_until(stop, consumer, self.step, log)

    def step(self, consumer: Consumer, max_records: int = 200, timeout_s: float = 0.5) -> int:
        """Process one polled batch; commit only after the store acknowledged it."""
        if time.monotonic() >= self._next_sweep:
            outbox.announce_pending(self.store, self.bus, self.clock.now())
            self._next_sweep = time.monotonic() + outbox.SWEEP_INTERVAL_S
        messages = consumer.poll(max_records=max_records, timeout_s=timeout_s)
        if not messages:
            return 0
        result = self.process(messages)
        consumer.commit()
        return result.objects

    def drain(self, consumer: Consumer, idle_polls: int = 2) -> int:
        """Process until the topic has been empty for ``idle_polls`` polls (tests, replay)."""
        return drain_until_idle(lambda: self.step(consumer, timeout_s=0.2), idle_polls)

    # ---------------------------------------------------------------- batch

    def process(self, messages: list[Incoming]) -> BatchResult:
        """Decode, merge, score and write one batch of bus messages."""
        result = BatchResult()
        accepted: list[Accepted] = []
        poison: list[Outgoing] = []
        for message in messages:
            try:
                accepted.extend(envelope.decode(message.value))
            except ValueError as exc:
                poison.append(_dead_letter(message.key, message.value, str(exc), message))
        result.objects = len(accepted)

        work = _Work()
        sighting_refs: dict[str, list[merge.Report]] = {}
        link_refs: dict[str, list[tuple[str, str]]] = {}
        referrers: dict[str, dict[str, dict[str, Any]]] = {}
        good: list[Accepted] = []
        for item in accepted:
            obj = item.obj
            try:
                kind = obj.get("type")
                if kind == "indicator":
                    self._indicator(work, item)
                elif (ref := reference_of(obj, item.provenance)) is not None:
                    indicator_id, sighting, link = ref
                    if sighting is not None:
                        sighting_refs.setdefault(indicator_id, []).append(sighting)
                    if link is not None:
                        link_refs.setdefault(indicator_id, []).append(link)
                    _note(referrers, indicator_id, item)
                good.append(item)
            except (InvalidPattern, KeyError, TypeError, ValueError) as exc:
                raw = orjson.dumps({"object": obj, "provenance": item.provenance.to_dict()})
                poison.append(_dead_letter(str(obj.get("id", "")), raw, f"{exc}", None))

        if poison:
            self.bus.publish(names.TOPIC_DLQ, poison)
            result.dead_lettered = len(poison)

        # The objects index (TAXII out) and the records are independent within a batch:
        # sightings / links name indicators stored by earlier, committed batches or
        # present in this one (``_resolve_refs``). Writing them concurrently overlaps
        # one's store round trips with the other's Python work; both finish before
        # the caller commits.
        objects_done = self._objects_writer.submit(
            store_objects, self.store, good, self.clock, self.sharing
        )
        try:
            # References are noted before the named indicators' versions are read,
            # and an indicator's versions are stored before its references are read
            # (below): of a sighting and its indicator handled at the same moment by
            # two workers, one always sees the other.
            note_references(self.store, referrers)
            keys_of = self._resolve_refs(work, sighting_refs, link_refs)
            self._write_records(work, result)
        finally:
            objects_done.result()
        new_ids = sorted({i.obj["id"] for i in good if i.obj.get("type") == "indicator"})
        if new_ids:
            late = self._attach_earlier(keys_of, new_ids, referrers)
            if late.keys():
                self._write_records(late, result)
        if result.changes:
            self.bus.publish(names.TOPIC_CHANGES, change_messages(result.changes))
        outbox.published(self.store, result.notes)
        return result

    def _indicator(self, work: _Work, item: Accepted) -> None:
        obj = item.obj
        if obj.get("pattern_type", "stix") != "stix":
            return
        for observable in observables(obj["pattern"]):
            report = merge.source_report(obj, item.provenance, observable)
            work.reports.setdefault(observable.key, []).append(report)
            work.observables[observable.key] = observable

    def _resolve_refs(
        self,
        work: _Work,
        sighting_refs: dict[str, list[merge.Report]],
        link_refs: dict[str, list[tuple[str, str]]],
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
                    keys = [o.key for o in observables(pattern)]
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

    def _write_records(self, work: _Work, result: BatchResult) -> None:
        pending = work.keys()
        now = self.clock.now()
        for attempt in range(MAX_CONFLICT_RETRIES):
            if not pending:
                return
            existing = self.recent.lookup(pending) if attempt == 0 else {}
            unknown = sorted(k for k in pending if k not in existing)
            if unknown:
                existing |= self.store.get_many(names.INDEX_INDICATORS, unknown)
            puts: list[Put] = []
            changes: dict[str, dict[str, Any]] = {}
            for key in sorted(pending):
                stored = existing.get(key)
                # ``stored.doc`` was just read (store or LRU): merged into in place.
                record = stored.doc if stored else None
                before = merge.change_basis(record) if record is not None else None
                if record is None:
                    observable = work.observables.get(key)
                    if observable is None:
                        continue  # a sighting/link for a record that vanished
                    record = merge.new_record(observable)
                changed = False
                for report in work.reports.get(key, []):
                    changed |= merge.apply_report(record, report)
                for sighting in work.sightings.get(key, []):
                    changed |= merge.apply_sighting(record, sighting)
                for link_field, ref in work.links.get(key, []):
                    changed |= merge.link(record, link_field, ref)
                if not changed:
                    continue
                merge.summarise(record)
                self.scorer.apply(record, self.agency_profile, now)
                record["audience"] = record_audience(self.sharing, record)
                puts.append(Put(key=key, doc=record, expected=stored.version if stored else None))
                kinds = merge.change_kinds(before, record, SCORE_THRESHOLDS)
                changes[key] = {
                    "key": key,
                    "kinds": kinds,
                    "at": format_timestamp(now),
                    "record": record,
                }
            if not puts:
                return
            # Noted before the write: a retried batch finds its reports merged already and
            # would announce nothing (correlate/outbox.py).
            result.notes.append(outbox.note(self.store, list(changes.values()), now))
            results = self.store.put_many(names.INDEX_INDICATORS, puts)
            for put, outcome in zip(puts, results, strict=True):
                if outcome.ok and outcome.version is not None:
                    self.recent.remember(put.key, put.doc, outcome.version)
                else:
                    self.recent.forget(put.key)
            conflicted = {r.key for r in results if r.conflict}
            failed = [r.key for r in results if not r.ok and not r.conflict]
            if failed:
                raise StoreUnavailable(f"store refused writes for {failed[:5]}")
            result.records_written += len(puts) - len(conflicted)
            result.conflicts += len(conflicted)
            result.changes.extend(c for k, c in changes.items() if k not in conflicted)
            pending = conflicted
            if pending:
                time.sleep(0.005)
        raise StoreUnavailable(f"gave up after {MAX_CONFLICT_RETRIES} conflicting writes")


def reference_of(
    obj: dict[str, Any], provenance: Provenance
) -> tuple[str, merge.Report | None, tuple[str, str] | None] | None:
    """(indicator id, sighting report, link) when ``obj`` attaches to an indicator's record.

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
            return source, None, (field_name, target)
    return None


def _note(referrers: dict[str, dict[str, dict[str, Any]]], ref: str, item: Accepted) -> None:
    key = object_key(item.obj["id"], version_of(item.obj))
    referrers.setdefault(ref, {})[key] = {
        "object": item.obj,
        "provenance": item.provenance.to_dict(),
    }


def _dead_letter(key: str, value: bytes, reason: str, message: Incoming | None) -> Outgoing:
    headers = {"reason": reason[:1000]}
    if message is not None:
        headers.update(
            {
                "source-topic": message.topic,
                "source-partition": str(message.partition),
                "source-offset": str(message.offset),
            }
        )
    return Outgoing(key=key or "unknown", value=value, headers=headers)
