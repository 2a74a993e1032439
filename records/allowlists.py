"""Agencies' allow-lists (index ``threatbay-allowlists``) and export SOA serials.

One document per entry, ``allow:<agency>:<digest of kind and normal form>``,
carrying its agency: every read filters on that agency, so one agency's list is
never read for another (core/allowlist.py says what an entry matches). Export
serials (``serial:<agency>:<digest of the request>``) remember the last
content digest of an export and its serial, so an RPZ zone's SOA serial
increases exactly when its content changes.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from core.allowlist import AllowEntry, AllowList, Kind
from core.clock import Clock, format_timestamp
from core.names import INDEX_ALLOWLISTS
from core.ports import Put, Query, Store, Term

PAGE = 1000
#: Entries one agency may keep (an allow-list is its own infrastructure, not a feed).
MAX_ENTRIES = 50_000


class AllowListFull(ValueError):
    """Adding would exceed ``MAX_ENTRIES`` for the agency."""


def _entry_key(agency_id: str, kind: str, normal: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"{kind}\0{'|'.join(normal)}".encode()).hexdigest()[:32]
    return f"allow:{agency_id}:{digest}"


def _entry_of(doc: dict[str, Any]) -> AllowEntry:
    kind: Kind = doc["entry_kind"]
    return AllowEntry(kind, doc["value"], tuple(doc["normal"]), doc.get("note") or "")


class AllowListBook:
    """Per-agency allow-lists over the ``Store`` port."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        #: agency -> (monotonic time read, its matcher), for reads that accept ``max_age_s``.
        self._recent: dict[str, tuple[float, AllowList]] = {}
        #: Bumped by every add/remove: a read that overlapped a change is not kept.
        self._changes = 0

    def entries(self, agency_id: str) -> list[dict[str, Any]]:
        """Every stored entry of ``agency_id`` (documents, oldest first)."""
        docs: list[dict[str, Any]] = []
        after: tuple[Any, ...] | None = None
        while True:
            page = self.store.search(
                INDEX_ALLOWLISTS,
                Query(
                    filters=(Term("kind", ("entry",)), Term("agency_id", (agency_id,))),
                    limit=PAGE,
                    after=after,
                ),
            )
            docs += [h.doc for h in page.hits]
            if not page.more or not page.hits:
                return sorted(docs, key=lambda d: (d.get("added_at", ""), d["id"]))
            after = page.hits[-1].cursor

    def allow_list(self, agency_id: str, max_age_s: float = 0.0) -> AllowList:
        """The matcher of ``agency_id``'s list (an empty list matches nothing).

        Read now by default (exports, webhooks). A caller that only annotates what it
        shows (lookup, detail) may accept a list read up to ``max_age_s`` ago by this
        process; this process's own ``add``/``remove`` take effect at once, another
        process's within ``max_age_s``. It saves a search per request.
        """
        if max_age_s > 0:
            recent = self._recent.get(agency_id)
            if recent is not None and time.monotonic() - recent[0] < max_age_s:
                return recent[1]
        read_at, changes = time.monotonic(), self._changes
        matcher = AllowList.of(_entry_of(d) for d in self.entries(agency_id))
        if changes == self._changes:
            self._recent[agency_id] = (read_at, matcher)
        return matcher

    def add(self, agency_id: str, entries: list[AllowEntry], by: str) -> list[dict[str, Any]]:
        """Add ``entries`` (an entry already there is kept as it is); the stored documents."""
        now = format_timestamp(self.clock.now())
        existing = {d["id"] for d in self.entries(agency_id)}
        docs = {}
        for e in entries:
            key = _entry_key(agency_id, e.kind, e.normal)
            docs[key] = {
                "id": key,
                "kind": "entry",
                "agency_id": agency_id,
                "entry_kind": e.kind,
                "value": e.value,
                "normal": list(e.normal),
                "note": e.note,
                "added_at": now,
                "added_by": by,
            }
        new = [k for k in docs if k not in existing]
        if len(existing) + len(new) > MAX_ENTRIES:
            raise AllowListFull(f"an agency keeps at most {MAX_ENTRIES} allow-list entries")
        self.store.put_many(INDEX_ALLOWLISTS, [Put(k, docs[k], blind=True) for k in new])
        self.store.refresh(INDEX_ALLOWLISTS)
        self._forget(agency_id)
        return [docs[k] for k in docs]

    def remove(self, agency_id: str, entry: AllowEntry) -> bool:
        """Remove one entry of ``agency_id``; False when it was not there."""
        gone = self.store.delete(INDEX_ALLOWLISTS, _entry_key(agency_id, entry.kind, entry.normal))
        self.store.refresh(INDEX_ALLOWLISTS)
        self._forget(agency_id)
        return gone

    def _forget(self, agency_id: str) -> None:
        self._changes += 1
        self._recent.pop(agency_id, None)

    # ---------------------------------------------------------------- export serials

    def serial(self, agency_id: str, request: str, digest: str, now_s: int) -> int:
        """The SOA serial of an export: unchanged while ``digest`` is, else larger than before.

        A new serial is the current time in seconds (RFC 1982 arithmetic on 32 bits
        holds until 2106) or the previous serial + 1, whichever is larger.
        """
        key = "serial:" + agency_id + ":" + hashlib.sha256(request.encode()).hexdigest()[:32]
        for _ in range(5):
            stored = self.store.get(INDEX_ALLOWLISTS, key)
            if stored is not None and stored.doc.get("digest") == digest:
                return int(stored.doc["serial"])
            previous = int(stored.doc["serial"]) if stored is not None else 0
            serial = max(previous + 1, now_s) % 2**32
            doc = {"id": key, "kind": "serial", "agency_id": agency_id, "digest": digest,
                   "serial": serial}  # fmt: skip
            expected = stored.version if stored is not None else None
            (result,) = self.store.put_many(INDEX_ALLOWLISTS, [Put(key, doc, expected=expected)])
            if result.ok:
                return serial
        return serial
