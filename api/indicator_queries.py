"""What the analyst API asks of indicator records: plain functions over the Store port.

A reader reads *its view* of each record (core/views.py): the one document per
record whose ``readers`` name it, computed only from the reports it may see.
Every search, sort, filter, count and lookup runs on those documents
(``visible_to``), so nothing a reader gets — a field, a filter result, a
count, a cursor — depends on a report hidden from it. Each document still
leaves through ``core.policy.decide_record`` (``exact``: the view must be
wholly visible under the policy as it is now; cross-border redaction).

Cursors carry the sort values and the record key, never a document key (a
reader's document for a record is ``<key>`` or ``<key>#<hash>`` depending on
what *other* readers see).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import names
from core.cursors import decode_cursor, encode_cursor
from core.lookup import candidate_keys
from core.policy import Decision, Purpose, Reader, SharingPolicy, decide_record, reader_tags
from core.ports import Filter, Query, Range, Sort, Store, Term
from core.scoring import current_score
from core.views import view_for

SORTS = {
    "score": (Sort("score", "desc"), Sort("key")),
    "last_seen": (Sort("last_seen", "desc"), Sort("key")),
    "first_seen": (Sort("first_seen", "desc"), Sort("key")),
    "corroboration": (Sort("agency_count", "desc"), Sort("score", "desc"), Sort("key")),
    # The store's own key order: every page walks the primary key from the cursor on, so
    # reading all of a reader's records stays linear (api/exports.py reads whole views so;
    # ordering by the ``key`` field instead re-sorted every match on each embedded page).
    "key": (),
}
#: After the record key in a store cursor: above every document key of that record
#: (``<key>`` and ``<key>#<hex>``), so "after" means after the record, whichever its document.
_PAST_RECORD = "#~"


@dataclass(frozen=True, slots=True)
class IndicatorFilters:
    observable_type: tuple[str, ...] = ()
    min_score: float | None = None
    max_score: float | None = None
    agency: tuple[str, ...] = ()
    jurisdiction: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    malware: tuple[str, ...] = ()


def visible_to(reader: Reader, purpose: Purpose = Purpose.READ) -> Term:
    """The native filter matching exactly the reader's view of each record (core/views.py)."""
    return Term("readers", tuple(reader_tags(reader, purpose)))


def _filters(f: IndicatorFilters) -> list[Filter]:
    out: list[Filter] = []
    for field, values in (
        ("observable_type", f.observable_type),
        ("agencies", f.agency),
        ("jurisdictions", f.jurisdiction),
        ("state", f.state),
        ("malware", f.malware),
    ):
        if values:
            out.append(Term(field, tuple(values)))
    if f.min_score is not None or f.max_score is not None:
        out.append(Range("score", gte=f.min_score, lte=f.max_score))
    if f.since or f.until:
        out.append(Range("last_seen", gte=f.since, lte=f.until))
    return out


def shown(decision: Decision, now: datetime) -> dict[str, Any] | None:
    """The view the policy allows, with the score decayed to ``now``."""
    if not decision.shown or decision.view is None:
        return None
    view = dict(decision.view)
    view["score_now"] = current_score(view, now)
    view["sharing"] = {"outcome": decision.outcome, "rule": decision.rule,
                       "redactions": list(decision.redactions)}  # fmt: skip
    return view


def _decide(
    policy: SharingPolicy, reader: Reader, doc: dict[str, Any], purpose: Purpose = Purpose.READ
) -> Decision:
    return decide_record(policy, reader, purpose, doc, exact=True)


def search_indicators(
    store: Store,
    policy: SharingPolicy,
    reader: Reader,
    filters: IndicatorFilters,
    *,
    sort: str = "score",
    limit: int = 50,
    cursor: str | None = None,
    now: datetime,
    purpose: Purpose = Purpose.READ,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records the reader may see, and the cursor of the next page.

    ``purpose``: ``READ`` for an analyst; a machine channel (``TAXII_EXPORT``: blocklist
    exports) gets the reader's machine view, which no TLP:RED report of another agency
    is part of (core/policy.py: RED is never forwarded).
    """
    after = None
    if cursor:
        # The cursor holds the sort values, the last being the record key; in key order
        # (no sort fields) just the record key. "After" is past every document of that record.
        values = decode_cursor(cursor, arity=len(SORTS[sort]) or 1)
        after = (*values[: len(SORTS[sort])], f"{values[-1]}{_PAST_RECORD}")
    page = store.search(
        names.INDEX_INDICATORS,
        Query(
            filters=(visible_to(reader, purpose), *_filters(filters)),
            sort=SORTS[sort],
            limit=limit,
            after=after,
        ),
    )
    items = []
    for hit in page.hits:
        view = shown(_decide(policy, reader, hit.doc, purpose), now)
        if view is not None:
            items.append(view)
    next_cursor = None
    if page.more and page.hits:
        last = page.hits[-1]
        values = last.cursor[:-1] if SORTS[sort] else (str(last.doc.get("key") or last.key),)
        next_cursor = encode_cursor(values)
    return items, next_cursor


def _views_of(store: Store, reader: Reader, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The reader's view of each record key, from the record document (read by key: real time).

    The record document holds every view's content (core/views.py), so this is
    one read whichever view the reader has.
    """
    tags = reader_tags(reader, Purpose.READ)
    found = store.get_many(names.INDEX_INDICATORS, keys) if keys else {}
    return {k: view for k, stored in found.items() if (view := view_for(stored.doc, tags))}


def indicator_detail(
    store: Store, policy: SharingPolicy, reader: Reader, key: str, now: datetime
) -> dict[str, Any] | None:
    """The record under ``key`` as the reader may see it, or None."""
    doc = _views_of(store, reader, [key]).get(key)
    if doc is None:
        return None
    return shown(_decide(policy, reader, doc), now)


def lookup(
    store: Store, policy: SharingPolicy, reader: Reader, raw: str, now: datetime
) -> dict[str, Any]:
    """Canonicalise a pasted value and answer with every visible record it names."""
    keys = candidate_keys(raw)
    found = _views_of(store, reader, keys)
    records = []
    for key in keys:
        if key in found:
            view = shown(_decide(policy, reader, found[key]), now)
            if view is not None:
                records.append(view)
    return {"query": raw, "keys": keys, "found": bool(records), "records": records}


def indicator_stats(store: Store, reader: Reader) -> dict[str, Any]:
    """Counts for dashboards over the records the reader may see."""
    visible = (visible_to(reader),)
    index = names.INDEX_INDICATORS
    return {
        "total": store.count(index, visible),
        "by_observable_type": store.count_by(index, "observable_type", visible),
        "by_jurisdiction": store.count_by(index, "jurisdictions", visible),
        "by_state": store.count_by(index, "state", visible),
        "new_by_day": dict(sorted(store.count_by(index, "created_day", visible).items())),
    }
