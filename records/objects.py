"""STIX objects as shared, for TAXII out (ARCHITECTURE.md index ``threatbay-objects``).

One document per object version, key ``<id>|<version>`` (version = ``modified``,
else ``created``, normalised to microseconds; '' for objects with neither,
e.g. SCOs, which then have one version). ``date_added`` is assigned when a
version is first stored (TAXII 2.1 section 3.2 "date_added"), under a floor
registered first and released once the write is acknowledged
(records/date_added.py), so a poller resuming from X-TAXII-Date-Added-Last
never skips a version, however many writers and whatever the refresh
interval; re-storing a version changes nothing, so a bus replay leaves the
index as it was. ``is_first`` / ``is_latest`` and
``version_tags`` are recomputed over the live (not deleted) versions of an id
and written under optimistic concurrency, retried on conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from core.clock import Clock
from core.crossborder import default_whitelist
from core.envelope import Accepted
from core.errors import Refused, WriteContention
from core.markings import is_statement_definition
from core.names import INDEX_OBJECT_VERSIONS, INDEX_OBJECTS
from core.ownership import canonical_id
from core.policy import SharingPolicy, audience
from core.ports import Put, Store, Stored
from core.provenance import Provenance
from core.settings import WritesSettings
from core.stix import object_version
from records.date_added import Hold, book_of
from records.object_signatures import SIGNATURE, SIGNED_TEXT
from records.rmw import read_modify_write

_REF_FIELDS = ("sighting_of_ref", "source_ref", "target_ref", "relationship_type")
#: Rounds of stamping again after writes outlived their floor's lease (records/date_added.py).
MAX_RESTAMPS = 5


def version_of(obj: dict[str, Any]) -> str:
    return object_version(obj)


def object_key(stix_id: str, version: str) -> str:
    return f"{stix_id}|{version}"


def collections_of(provenance: Provenance) -> list[str]:
    """The owner's inbox, everything shared, and the source jurisdiction's collection."""
    return [
        f"inbox-{provenance.agency}",
        "shared-all",
        f"shared-{provenance.jurisdiction.lower()}",
    ]


def default_sharing() -> SharingPolicy:
    """The policy with the default cross-border whitelist (core/crossborder.py)."""
    return SharingPolicy(whitelist=default_whitelist())


def new_document(item: Accepted, date_added: str, sharing: SharingPolicy) -> dict[str, Any]:
    """The index document of a version first seen now."""
    obj, prov = item.obj, item.provenance
    doc: dict[str, Any] = {
        "id": obj["id"],
        "type": obj["type"],
        "spec_version": obj.get("spec_version", "2.1"),
        "version": version_of(obj),
        "date_added": date_added,
        "collections": collections_of(prov),
        "agency": prov.agency,
        "jurisdiction": prov.jurisdiction,
        "tlp": prov.tlp,
        "audience": audience(sharing, obj, prov),
        "is_latest": False,
        "is_first": False,
        "deleted": False,
        "version_tags": [],
        "object": obj,
        "provenance": prov.to_dict(),
    }
    for name in _REF_FIELDS:
        if isinstance(obj.get(name), str):
            doc[name] = obj[name]
    if item.signed is not None:
        # records/object_signatures.py: the text as received, served unchanged
        doc[SIGNED_TEXT] = item.signed
        doc[SIGNATURE] = item.signature
    return doc


def _flagged(doc: dict[str, Any], first: bool, latest: bool) -> dict[str, Any]:
    tags = [f"v:{doc['version']}"]
    if first:
        tags.append("first")
    if latest:
        tags.append("last")
    return doc | {"is_first": first, "is_latest": latest, "version_tags": tags}


def reflag(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every version of one id with first/latest recomputed over the live ones."""
    live = sorted(
        (k for k, d in docs.items() if not d.get("deleted")),
        key=lambda k: (docs[k]["version"], docs[k]["date_added"]),
    )
    out: dict[str, dict[str, Any]] = {}
    for key, doc in docs.items():
        if doc.get("deleted"):
            out[key] = doc | {"is_first": False, "is_latest": False, "version_tags": []}
        else:
            out[key] = _flagged(doc, key == live[0], key == live[-1])
    return out


def head_key(stix_id: str) -> str:
    """Key of the document listing every version key of ``stix_id`` (own index, so
    pages over the objects index never scan these).

    Read with ``get_many`` (real-time in every backend, unlike search, which
    Elasticsearch only shows after a refresh), so a version stored a moment
    ago is never missed when the next one arrives.
    """
    return f"{stix_id}|#versions"


def versions_of(
    store: Store, ids: Sequence[str]
) -> tuple[dict[str, Stored | None], dict[str, dict[str, Stored]]]:
    """(head document of each id, id -> key -> stored version)."""
    heads = store.get_many(INDEX_OBJECT_VERSIONS, [head_key(i) for i in ids])
    head_of = {i: heads.get(head_key(i)) for i in ids}
    keys = [k for h in head_of.values() if h is not None for k in h.doc["keys"]]
    stored = store.get_many(INDEX_OBJECTS, keys) if keys else {}
    found: dict[str, dict[str, Stored]] = {i: {} for i in ids}
    for key, st in stored.items():
        found[st.doc["id"]][key] = st
    return head_of, found


def stored_versions(
    store: Store, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The stored STIX object of each (id, version) there is (read by key, both backends)."""
    keys = {object_key(stix_id, version): (stix_id, version) for stix_id, version in pairs}
    found = store.get_many(INDEX_OBJECTS, list(keys))
    return {
        keys[key]: stored.doc["object"]
        for key, stored in found.items()
        if stored is not None and isinstance(stored.doc.get("object"), dict)
    }


def statement_markings(store: Store, ids: Sequence[str]) -> frozenset[str]:
    """Canonical ids among ``ids`` of statement marking definitions stored before."""
    _, found = versions_of(store, list(ids))
    return frozenset(
        canonical_id(stix_id)
        for stix_id, stored in found.items()
        if any(is_statement_definition(v.doc.get("object") or {}) for v in stored.values())
    )


def _changes(current: dict[str, Stored], wanted: dict[str, dict[str, Any]]) -> list[Put]:
    puts: list[Put] = []
    for key, doc in wanted.items():
        old = current.get(key)
        if old is None:
            puts.append(Put(key, doc, expected=None))
        elif old.doc != doc:
            puts.append(Put(key, doc, expected=old.version))
    return puts


Change = Callable[[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]


def _apply(
    store: Store, ids: Iterable[str], change: Change, writes: WritesSettings | None = None
) -> int:
    """Read all versions of ``ids``, let ``change(id, docs)`` edit them, write them.

    The head document of an id is written first under optimistic concurrency
    (records/rmw.py); only the writer that updated it goes on to write that
    id's versions, so two writers of one id never interleave. A version write
    that still conflicts means a writer this one could not see: the batch is
    retried as a whole (``WriteContention``).
    """
    versions: dict[str, dict[str, Stored]] = {}
    version_puts: dict[str, list[Put]] = {}

    def read(pending: list[str]) -> dict[str, Stored | None]:
        heads, current = versions_of(store, pending)
        versions.update(current)
        return heads

    def head_change(stix_id: str, head: Stored | None) -> Put | None:
        current = versions[stix_id]
        wanted = change(stix_id, {k: st.doc for k, st in current.items()})
        puts = version_puts[stix_id] = _changes(current, wanted)
        if not puts:
            return None
        known = set(head.doc["keys"]) if head is not None else set()
        doc = {"kind": "versions", "of": stix_id, "keys": sorted(known | set(wanted))}
        return Put(head_key(stix_id), doc, expected=head.version if head is not None else None)

    heads = read_modify_write(
        store, INDEX_OBJECT_VERSIONS, ids, head_change, read=read, writes=writes
    )
    puts = [p for stix_id in heads for p in version_puts[stix_id]]
    results = store.put_many(INDEX_OBJECTS, puts) if puts else []
    refused = {r.key: f"{INDEX_OBJECTS}: {r.refused}" for r in results if r.refused}
    if refused:
        raise Refused(refused)
    conflicting = [r.key for r in results if not r.ok]
    if conflicting:
        raise WriteContention(f"objects index: versions written concurrently: {conflicting[:5]}")
    return len(results)


def store_objects(
    store: Store,
    accepted: Sequence[Accepted],
    clock: Clock,
    sharing: SharingPolicy | None = None,
    writes: WritesSettings | None = None,
) -> int:
    """Write accepted objects into the objects index; idempotent; returns documents written.

    ``audience`` tags come from ``sharing`` (default: the default whitelist).
    New versions are stamped under a ``date_added`` floor held until the store
    acknowledged them; if that took longer than the floor's lease, they are
    stamped again under a new one (records/date_added.py, writer 1-4).
    """
    sharing = sharing or default_sharing()
    groups: dict[str, list[Accepted]] = {}
    for item in accepted:
        groups.setdefault(item.obj["id"], []).append(item)
    book = book_of(store, clock)
    # Requests keep their order (by receipt, then as the bus gave them); the objects of one
    # request are stamped in id order, not in the order their partitions were fetched
    # (other agencies' traffic decides that), so it never reorders what a reader sees
    # (DOMAIN.md "Noninterference").
    requests: dict[str, int] = {}
    for item in accepted:
        requests.setdefault(item.provenance.request_id, len(requests))
    stamp_order = sorted(
        groups,
        key=lambda i: (
            groups[i][0].provenance.received_at,
            requests[groups[i][0].provenance.request_id],
            i,
        ),
    )

    def stamping(hold: Hold, previous: dict[str, str], fresh: dict[str, str]) -> Change:
        """Stamp new versions, and those still carrying a stamp of ``previous`` (an overrun)."""

        def change(stix_id: str, docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            merged = dict(docs)
            for item in groups[stix_id]:
                key = object_key(stix_id, version_of(item.obj))
                current = merged.get(key)
                if current is not None and current["date_added"] != previous.get(key):
                    continue  # this version is stored already: keep its date_added
                if key not in fresh:
                    fresh[key] = hold.stamp()
                if current is None:
                    merged[key] = new_document(item, fresh[key], sharing)
                else:
                    merged[key] = current | {"date_added": fresh[key]}
            return reflag(merged)

        return change

    written = 0
    previous: dict[str, str] = {}
    for _round in range(MAX_RESTAMPS):
        fresh: dict[str, str] = {}
        with book.hold() as hold:
            written += _apply(store, stamp_order, stamping(hold, previous, fresh), writes)
            if not hold.overran():
                return written
        previous = fresh
    raise WriteContention(
        f"objects index: writes outlived the date_added lease {MAX_RESTAMPS} times in a row"
    )


#: The bus message a TAXII DELETE of every version of an indicator sends to the correlator,
#: so the records holding that report follow (its source counts as revoked from then on).
#: Never stored as an object.
WITHDRAWAL_TYPE = "x-threatbay-withdrawal"


def withdrawal(stix_id: str, at: str, restated: dict[str, Any] | None = None) -> dict[str, Any]:
    """The withdrawal of the deleted versions of ``stix_id``, for the correlator; ``restated``
    is the version TAXII now has last (None when every version went)."""
    notice: dict[str, Any] = {
        "type": WITHDRAWAL_TYPE,
        "spec_version": "2.1",
        "id": f"{WITHDRAWAL_TYPE}--{uuid.uuid4()}",
        "created": at,
        "modified": at,
        "withdrawn_ref": stix_id,
    }
    if restated is not None:
        notice["restated"] = restated
    return notice


def withdrawal_of(obj: Any) -> str | None:
    """The id a withdrawal withdraws, or None when ``obj`` is not a withdrawal."""
    if isinstance(obj, dict) and obj.get("type") == WITHDRAWAL_TYPE:
        ref = obj.get("withdrawn_ref")
        return ref if isinstance(ref, str) else None
    return None


def delete_versions(store: Store, stix_id: str, keys: Iterable[str]) -> int:
    """Mark the versions ``keys`` of ``stix_id`` deleted (TAXII 2.1 section 5.7)."""
    doomed = set(keys)

    def change(_: str, docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return reflag({k: d | {"deleted": True} if k in doomed else d for k, d in docs.items()})

    written = _apply(store, [stix_id], change)
    store.refresh(INDEX_OBJECTS)
    return written


def refs_key(indicator_id: str) -> str:
    """Key of the document holding the sightings / relationships that name ``indicator_id``."""
    return f"{indicator_id}|#refs"


def note_references(
    store: Store,
    refs: dict[str, dict[str, dict[str, Any]]],
    writes: WritesSettings | None = None,
) -> int:
    """Record, per indicator id, the objects (with provenance) that refer to it.

    ``refs`` maps an indicator id to {object key: {"object", "provenance"}}. The
    document is read by key (real-time), so an indicator arriving after its
    sighting finds it however recently it was written — a search would miss it
    for one refresh interval. Idempotent. Returns the documents written.
    """

    def change(indicator_id: str, stored: Stored | None) -> Put | None:
        items = dict(stored.doc["items"]) if stored is not None else {}
        merged = items | refs[indicator_id]
        if stored is not None and merged == stored.doc["items"]:
            return None
        doc = {"kind": "refs", "of": indicator_id, "items": merged}
        return Put(refs_key(indicator_id), doc, stored.version if stored is not None else None)

    def read(ids: list[str]) -> dict[str, Stored | None]:
        found = store.get_many(INDEX_OBJECT_VERSIONS, [refs_key(i) for i in ids])
        return {i: found.get(refs_key(i)) for i in ids}

    return len(
        read_modify_write(store, INDEX_OBJECT_VERSIONS, refs, change, read=read, writes=writes)
    )


def references_to(
    store: Store, indicator_ids: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Indicator id -> {object key: referring object} noted by ``note_references`` (real-time)."""
    found = store.get_many(INDEX_OBJECT_VERSIONS, [refs_key(i) for i in indicator_ids])
    return {st.doc["of"]: dict(sorted(st.doc["items"].items())) for st in found.values()}
