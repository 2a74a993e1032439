"""Plain functions behind the TAXII views: collection access, pages, status, delete.

Views decode the request, call one of these, and encode (STYLE.md 6).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from api.taxii.collections import Collection, inbox, resolve
from api.taxii.errors import TaxiiError, forbidden, not_found
from api.taxii.media import STIX_21
from api.taxii.pagination import Filters, encode_next
from core.access import Principal
from core.clock import Clock, format_timestamp, parse_timestamp
from core.envelope import Accepted
from core.envelope import encode as encode_envelope
from core.names import INDEX_OBJECTS, INDEX_STATUS, TOPIC_RAW
from core.ownership import canonical_id
from core.ports import Bus, Filter, Hit, Put, Query, Range, Sort, Store, Term
from core.stix import object_version
from ingest.push import PushResult, stamp
from records.objects import delete_versions, versions_of, withdrawal
from records.owners import close, owners_of, reopen

View = Callable[[dict[str, Any]], dict[str, Any] | None]


def collection_for(
    collection_id: str, principal: Principal, agency_ids: Callable[[], list[str]]
) -> Collection:
    """The collection named in the URL; 404 when unknown (section 5.3)."""
    own = inbox(principal.agency.id)
    if own.answers_to(collection_id):
        return own
    found = resolve(collection_id, [])
    if found is None:
        found = resolve(collection_id, agency_ids())
    if found is None:
        raise not_found(f"no collection {collection_id!r} in this API root")
    return found


def require_read(coll: Collection, principal: Principal) -> None:
    """403 when the caller may not read ``coll`` (section 5.3: can_read false)."""
    if coll.is_inbox and coll.owner != principal.agency.id:
        raise forbidden(f"{coll.name} is the inbox of another agency")
    if not coll.can_read(principal):
        raise forbidden(f"your credential may not read {coll.name}")


def require_write(coll: Collection, principal: Principal) -> None:
    """403 when the caller may not write ``coll`` (section 5.4: can_write false)."""
    if not coll.is_inbox:
        raise forbidden(f"{coll.name} is read-only; push to your inbox inbox-<your agency>")
    if coll.owner != principal.agency.id:
        raise forbidden(f"{coll.name} is the inbox of another agency; push to your own")
    if not coll.can_write(principal):
        raise forbidden("your credential lacks the publisher role")


@dataclass
class Selection:
    """One page of object versions: (index doc, what the reader sees) in date_added order."""

    items: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    more: bool = False
    next: str | None = None
    added_after: str | None = None
    """The ``added_after`` the page was selected with (the request's, or its ``next``'s)."""

    def headers(self) -> dict[str, str]:
        """X-TAXII-Date-Added-First / -Last (TAXII 2.1 section 3.3.1).

        A page with objects: the ``date_added`` of its first and last object.
        An empty page: the section defines both headers by "the first / last
        object" of the response and says nothing of a response with none,
        while the endpoints list them among their 200 headers and section 3.4
        has the client resume with ``added_after`` = X-TAXII-Date-Added-Last.
        So an empty page echoes the ``added_after`` it was selected with as
        both: it is the one value that keeps the headers' purpose (resuming
        from it repeats nothing and skips nothing: nothing after it was
        selectable), claims no object, and is the reader's own input, so it
        discloses nothing about reports the reader may not see (DOMAIN.md
        "Noninterference"; the settled watermark or a collection-wide latest
        date_added would). Elastic ti_custom 0.10.x keeps this header as its
        cursor and falls back to re-reading its whole initial interval after
        a 200 without it. With no ``added_after`` there is nothing to echo and
        no header is sent (resuming without one re-reads from the start, which
        is what such a client does anyway).
        """
        if not self.items:
            if self.added_after is None:
                return {}
            return {
                "X-TAXII-Date-Added-First": self.added_after,
                "X-TAXII-Date-Added-Last": self.added_after,
            }
        return {
            "X-TAXII-Date-Added-First": self.items[0][0]["date_added"],
            "X-TAXII-Date-Added-Last": self.items[-1][0]["date_added"],
        }


def _version_filter(filters: Filters, default: str) -> Filter | None:
    wanted = filters.values("version") or (default,)
    if "all" in wanted:
        return None
    tags = tuple(v if v in ("first", "last") else f"v:{v}" for v in wanted)
    return Term("version_tags", tags)


def select(
    store: Store,
    coll: Collection,
    filters: Filters,
    scope: str,
    reader_tags: tuple[str, ...] | None,
    view: View | None,
    *,
    stix_id: str | None = None,
    default_version: str = "last",
    settled: str | None = None,
) -> Selection:
    """A page of ``coll`` under ``filters`` (sections 3.4, 3.5), sorted by date_added.

    ``reader_tags`` restricts to documents whose audience meets them (None: no
    restriction, the owner reading its inbox); ``view`` maps each document to
    what the reader may see, or None to leave it out. ``settled`` is the
    date_added watermark (records/date_added.py): only versions added at or
    before it are served, so a later page or poll never finds one added
    before what it was already given.
    """
    clauses: list[Filter] = [
        Term("collections", (coll.name,)),
        Term("deleted", (False,)),
    ]
    if reader_tags is not None:
        clauses.append(Term("audience", reader_tags))
    if stix_id is not None:
        clauses.append(Term("id", (stix_id,)))
    for name in ("id", "type", "spec_version"):
        values = filters.values(name)
        if values:
            clauses.append(Term(name, values))
    vf = _version_filter(filters, default_version)
    if vf is not None:
        clauses.append(vf)
    if filters.added_after is not None:
        clauses.append(Range("date_added", gt=filters.added_after))
    if filters.after:
        # redundant with the cursor, but gives the store an index range to start from
        clauses.append(Range("date_added", gte=filters.after[0]))
    if settled is not None:
        clauses.append(Range("date_added", lte=settled))
    page = store.search(
        INDEX_OBJECTS,
        Query(
            filters=tuple(clauses),
            sort=(Sort("date_added"),),
            limit=filters.limit + 1,
            after=filters.after,
        ),
    )
    hits, more = page.hits, page.more
    if len(hits) > filters.limit:
        hits, more = _whole_date_added(hits, filters.limit), True
    out = Selection(more=more, added_after=filters.added_after)
    for hit in hits:
        seen = hit.doc["object"] if view is None else view(hit.doc)
        if seen is not None:
            out.items.append((hit.doc, seen))
    if more and hits:
        out.next = encode_next(hits[-1].cursor, scope, filters.match, filters.added_after)
    return out


def _whole_date_added(hits: list[Hit], limit: int) -> list[Hit]:
    """The first ``limit`` of ``hits`` (``limit + 1`` were read), ending between two dates.

    Writers in different processes may stamp the same ``date_added``. A page
    that ended inside such a tie would make X-TAXII-Date-Added-Last a resume
    point that skips the rest of the tie (``added_after`` is strict, section
    3.4), so the page stops before the tie instead; only a tie longer than the
    page is cut, and then ``next`` is the exact way on.
    """
    page = hits[:limit]
    following = hits[limit].doc["date_added"]
    whole = [h for h in page if h.doc["date_added"] != following]
    return whole or page


def envelope(sel: Selection) -> dict[str, Any]:
    """Envelope resource (section 3.7): ``next`` exactly when ``more``; ``objects`` always.

    The section lets an empty ``objects`` be omitted; it is sent as ``[]``
    because consumers index it unconditionally (Elastic ti_custom before PR
    #19303 maps ``body.objects``; OpenCTI's connector in TAXII 2.0 mode reads
    ``len(response["objects"])``).
    """
    doc: dict[str, Any] = {"more": sel.more}
    if sel.more and sel.next:
        doc["next"] = sel.next
    doc["objects"] = [seen for _, seen in sel.items]
    return doc


def manifest(sel: Selection) -> dict[str, Any]:
    """Manifest resource (section 5.3.1); ``objects`` always present, as in ``envelope``."""
    doc: dict[str, Any] = {"more": sel.more}
    if sel.more and sel.next:
        doc["next"] = sel.next
    doc["objects"] = [
        {
            "id": d["id"],
            "date_added": d["date_added"],
            "version": d["version"] or d["date_added"],
            "media_type": STIX_21,
        }
        for d, _ in sel.items
    ]
    return doc


def versions(sel: Selection) -> dict[str, Any]:
    """Versions resource (section 5.8.1); ``versions`` always present, as in ``envelope``."""
    doc: dict[str, Any] = {"more": sel.more}
    if sel.more and sel.next:
        doc["next"] = sel.next
    doc["versions"] = [d["version"] or d["date_added"] for d, _ in sel.items]
    return doc


# ------------------------------------------------------------------ status


def status_resource(result: PushResult) -> dict[str, Any]:
    """Status resource (section 4.3.1): lists match counts, empty lists omitted."""
    doc: dict[str, Any] = {
        "id": result.request_id,
        "status": "complete",
        "request_timestamp": result.request_timestamp,
        "total_count": result.total,
        "success_count": len(result.successes),
        "failure_count": len(result.failures),
        "pending_count": 0,
    }
    if result.successes:
        doc["successes"] = [o.to_dict() for o in result.successes]
    if result.failures:
        doc["failures"] = [o.to_dict() for o in result.failures]
    return doc


def save_status(store: Store, agency_id: str, status: dict[str, Any]) -> None:
    """Keep the status (at least ``status_retention_hours``; survives restarts)."""
    doc = {
        "id": status["id"],
        "agency": agency_id,
        "request_timestamp": status["request_timestamp"],
    }
    store.put_many(INDEX_STATUS, [Put(status["id"], doc | {"status": status}, blind=True)])


def load_status(
    store: Store, status_id: str, principal: Principal, clock: Clock, retention_hours: int
) -> dict[str, Any]:
    """The status of one of the caller's requests; 404 otherwise (section 4.3)."""
    stored = store.get(INDEX_STATUS, status_id)
    if stored is None or (
        stored.doc["agency"] != principal.agency.id and not principal.has("admin")
    ):
        raise not_found(f"no status {status_id!r}")
    at = parse_timestamp(stored.doc["request_timestamp"])
    if clock.now() - at > timedelta(hours=retention_hours):
        raise not_found(f"status {status_id!r} has expired")
    status: dict[str, Any] = stored.doc["status"]
    return status


# ------------------------------------------------------------------ delete


def delete_object(
    store: Store,
    bus: Bus,
    clock: Clock,
    coll: Collection,
    principal: Principal,
    stix_id: str,
    filters: Filters,
) -> int:
    """Delete the matching versions of one of the caller's objects (section 5.7).

    Only the id's owner may (core/ownership.py). Records must keep agreeing with
    TAXII's last version: when every version of an indicator goes, the correlator is
    told its report is withdrawn (its source counts as revoked, and no later version
    is accepted); when the latest goes and older ones stay, the version now last
    replaces it in the records (and decides whether the id counts as revoked).
    """
    owner = owners_of(store, [stix_id]).get(canonical_id(stix_id))
    if owner is not None and owner.agency != principal.agency.id:
        # as for any id not in the caller's inbox: its existence is not disclosed
        raise not_found(f"no object {stix_id!r} matching these filters in {coll.name}")
    clauses: list[Filter] = [
        Term("collections", (coll.name,)),
        Term("deleted", (False,)),
        Term("id", (stix_id,)),
    ]
    spec = filters.values("spec_version")
    if spec:
        clauses.append(Term("spec_version", spec))
    vf = _version_filter(filters, "all")
    if vf is not None:
        clauses.append(vf)
    page = store.search(INDEX_OBJECTS, Query(filters=tuple(clauses), limit=5000))
    if not page.hits:
        raise not_found(f"no object {stix_id!r} matching these filters in {coll.name}")
    if any(h.doc["agency"] != principal.agency.id for h in page.hits):
        raise TaxiiError(403, "Forbidden", "only the agency that pushed an object may delete it")
    doomed = {h.key for h in page.hits}
    _, stored = versions_of(store, [stix_id])
    live = {k: st.doc for k, st in stored.get(stix_id, {}).items() if not st.doc.get("deleted")}
    indicator = any(h.doc["type"] == "indicator" for h in page.hits)
    remaining = set(live) - doomed

    def latest(keys: set[str]) -> str:
        return max(keys, key=lambda k: (live[k]["version"], live[k]["date_added"]))

    if indicator and (not remaining or latest(set(live)) in doomed):
        # Told first: if the delete then fails, the client's retry tells again (idempotent).
        now = format_timestamp(clock.now())
        last = live[latest(remaining)]["object"] if remaining else None
        notice = withdrawal(stix_id, now, last)
        provenance = stamp(principal, notice, now, str(uuid.uuid4()))
        bus.publish(TOPIC_RAW, encode_envelope([Accepted(notice, provenance)]))
        if last is None:
            close(store, stix_id, max(str(d["version"]) for d in live.values()))
        else:
            revoked = last.get("revoked") is True
            reopen(store, stix_id, object_version(last) if revoked else None)
    return delete_versions(store, stix_id, doomed)


def now_text(clock: Clock) -> str:
    return format_timestamp(clock.now())
