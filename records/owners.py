"""Owner records of STIX ids (core/ownership.py), in the object-versions index.

One document per canonical (lower-case) id, key ``<id>|#owner``, read by key
(``get_many``: real-time on the embedded store and on Elasticsearch, unlike a
search). Ingest reads them to refuse early; ``claim`` is the authoritative
write, made by the correlator before it stores an object: create-if-absent
under optimistic concurrency (records/rmw.py), so of two agencies' first
pushes of one id exactly one becomes the owner, whatever the timing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.envelope import Accepted
from core.markings import tlp_of_marking_id
from core.names import INDEX_OBJECT_VERSIONS, INDEX_STATUS
from core.ownership import Owner, canonical_id, ownership_error
from core.ports import Put, Store, Stored
from core.settings import WritesSettings
from core.stix import object_version
from records.objects import versions_of
from records.rmw import read_modify_write


def owner_key(stix_id: str) -> str:
    return f"{canonical_id(stix_id)}|#owner"


def owners_of(store: Store, ids: Iterable[str]) -> dict[str, Owner]:
    """Canonical id -> owner record, for the ids that have one (one read by key)."""
    wanted = sorted({canonical_id(i) for i in ids if canonical_id(i)})
    if not wanted:
        return {}
    found = store.get_many(INDEX_OBJECT_VERSIONS, [owner_key(i) for i in wanted])
    return {st.doc["of"]: Owner.from_doc(st.doc) for st in found.values()}


def first_pushers(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """Canonical id -> agency of its earliest stored version, for ids stored before owner
    records existed (their owner is who pushed them first, as for any other)."""
    _, versions = versions_of(store, list(ids))
    found: dict[str, str] = {}
    for stix_id, stored in versions.items():
        if stored:
            first = min(stored.values(), key=lambda st: str(st.doc.get("date_added", "")))
            found[canonical_id(stix_id)] = str(first.doc.get("agency"))
    return found


def _id_of(item: Accepted) -> str:
    obj = item.obj
    if not isinstance(obj, dict) or obj.get("type") == "x-threatbay-withdrawal":
        return ""  # not an object: nothing to own (records/objects.py)
    if tlp_of_marking_id(obj.get("id")) is not None:
        return ""  # the TLP definitions are everyone's
    return canonical_id(obj.get("id"))


@dataclass
class Claimed:
    """Objects whose owner is their pusher (in order), and those refused with the reason."""

    allowed: list[Accepted] = field(default_factory=list)
    refused: list[tuple[Accepted, str]] = field(default_factory=list)


def claim(
    store: Store, accepted: Sequence[Accepted], writes: WritesSettings | None = None
) -> Claimed:
    """Make the first pusher of each new id its owner; refuse what another agency pushed.

    Items are judged in order (the bus keeps one id's versions in order), so the
    first agency to reach the correlator owns a new id; a revocation is noted so a
    later version is refused (core/ownership.py).
    """
    groups: dict[str, list[Accepted]] = {}
    for item in accepted:
        groups.setdefault(_id_of(item), []).append(item)
    verdicts: dict[int, str | None] = {}
    earlier: dict[str, str] = {}  # ids stored before owner records existed -> first pusher

    def change(stix_id: str, stored: Stored | None) -> Put | None:
        owner = Owner.from_doc(stored.doc) if stored is not None else None
        if owner is None and stix_id in earlier:
            owner = Owner(stix_id, earlier[stix_id])
        before = owner
        for item in groups[stix_id]:
            if owner is None:
                owner = Owner(stix_id, item.provenance.agency)
            version = object_version(item.obj)
            error = ownership_error(item.provenance.agency, item.obj, version, owner)
            verdicts[id(item)] = error
            if error is None and item.obj.get("revoked") is True:
                if owner.revoked_version is None or version < owner.revoked_version:
                    owner = Owner(owner.stix_id, owner.agency, version)
        if owner is None or owner == before:
            return None
        return Put(owner_key(stix_id), owner.to_doc(), stored.version if stored else None)

    def read(ids: list[str]) -> dict[str, Stored | None]:
        found = store.get_many(INDEX_OBJECT_VERSIONS, [owner_key(i) for i in ids])
        out = {i: found.get(owner_key(i)) for i in ids}
        unowned = [i for i, st in out.items() if st is None and i not in earlier]
        if unowned:
            earlier.update(first_pushers(store, [_spelled[i] for i in unowned]))
        return out

    _spelled = {k: str(v[0].obj.get("id")) for k, v in groups.items() if k}

    known = [k for k in groups if k]
    if known:
        read_modify_write(store, INDEX_OBJECT_VERSIONS, known, change, read=read, writes=writes)
    out = Claimed()
    for item in accepted:
        reason = verdicts.get(id(item)) if _id_of(item) else None
        if reason is None:
            out.allowed.append(item)
        else:
            out.refused.append((item, reason))
    return out


def mark_failed(
    store: Store, refused: Sequence[tuple[Accepted, str]], writes: WritesSettings | None = None
) -> None:
    """Turn the TAXII status entries of ``refused`` objects from successes into failures."""
    by_request: dict[str, list[tuple[Accepted, str]]] = {}
    for item, reason in refused:
        by_request.setdefault(item.provenance.request_id, []).append((item, reason))

    def change(request_id: str, stored: Stored | None) -> Put | None:
        if stored is None:
            return None
        status: dict[str, Any] = dict(stored.doc["status"])
        successes = list(status.get("successes") or [])
        failures = list(status.get("failures") or [])
        moved = False
        for item, reason in by_request[request_id]:
            entry = {"id": item.obj.get("id"), "version": object_version(item.obj)}
            if entry in successes:
                successes.remove(entry)
                failures.append(entry | {"message": f"refused after acceptance: {reason}"})
                moved = True
        if not moved:
            return None
        status["successes"], status["failures"] = successes, failures
        status["success_count"], status["failure_count"] = len(successes), len(failures)
        if not successes:
            status.pop("successes")
        return Put(request_id, stored.doc | {"status": status}, stored.version)

    if by_request:
        read_modify_write(store, INDEX_STATUS, list(by_request), change, writes=writes)


def close(store: Store, stix_id: str, version: str, writes: WritesSettings | None = None) -> None:
    """No version of ``stix_id`` later than ``version`` is accepted any more (it was deleted)."""

    def change(key: str, stored: Stored | None) -> Put | None:
        if stored is None:
            return None
        owner = Owner.from_doc(stored.doc)
        if owner.revoked_version is not None and owner.revoked_version <= version:
            return None
        closed = Owner(owner.stix_id, owner.agency, version)
        return Put(key, closed.to_doc(), stored.version)

    read_modify_write(store, INDEX_OBJECT_VERSIONS, [owner_key(stix_id)], change, writes=writes)


def reopen(store: Store, stix_id: str, revoked_version: str | None) -> None:
    """After a TAXII DELETE of the latest versions: revoked as the version now last says."""

    def change(key: str, stored: Stored | None) -> Put | None:
        if stored is None:
            return None
        owner = Owner.from_doc(stored.doc)
        if owner.revoked_version == revoked_version:
            return None
        return Put(
            key, Owner(owner.stix_id, owner.agency, revoked_version).to_doc(), stored.version
        )

    read_modify_write(store, INDEX_OBJECT_VERSIONS, [owner_key(stix_id)], change)
