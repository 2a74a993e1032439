"""What the analyst API asks of indicator records: plain functions over the Store port.

Every record leaves through ``core.policy.decide_record`` (one policy module,
applied the same way everywhere); list queries first narrow by the audience
tags the correlator stored, so pages are full and never exceed ``limit``.
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

SORTS = {
    "score": (Sort("score", "desc"),),
    "last_seen": (Sort("last_seen", "desc"),),
    "first_seen": (Sort("first_seen", "desc"),),
    "corroboration": (Sort("agency_count", "desc"), Sort("score", "desc")),
    # Key order only: the store's primary key, so paging through everything stays linear
    # (api/exports.py reads whole views this way).
    "key": (),
}


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


def visible_to(reader: Reader) -> Term:
    """The native filter matching the audience tags ``core.policy`` stored for records."""
    return Term("audience", tuple(reader_tags(reader)))


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
    view.pop("audience", None)
    return view


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
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records the reader may see, and the cursor of the next page."""
    after = decode_cursor(cursor, arity=len(SORTS[sort]) + 1) if cursor else None
    page = store.search(
        names.INDEX_INDICATORS,
        Query(
            filters=(visible_to(reader), *_filters(filters)),
            sort=SORTS[sort],
            limit=limit,
            after=after,
        ),
    )
    items = []
    for hit in page.hits:
        view = shown(decide_record(policy, reader, Purpose.READ, hit.doc), now)
        if view is not None:
            items.append(view)
    next_cursor = encode_cursor(page.hits[-1].cursor) if page.more and page.hits else None
    return items, next_cursor


def indicator_detail(
    store: Store, policy: SharingPolicy, reader: Reader, key: str, now: datetime
) -> dict[str, Any] | None:
    """The record under ``key`` as the reader may see it, or None."""
    stored = store.get(names.INDEX_INDICATORS, key)
    if stored is None:
        return None
    return shown(decide_record(policy, reader, Purpose.READ, stored.doc), now)


def lookup(
    store: Store, policy: SharingPolicy, reader: Reader, raw: str, now: datetime
) -> dict[str, Any]:
    """Canonicalise a pasted value and answer with every visible record it names."""
    keys = candidate_keys(raw)
    found = store.get_many(names.INDEX_INDICATORS, keys) if keys else {}
    records = []
    for key in keys:
        if key in found:
            view = shown(decide_record(policy, reader, Purpose.READ, found[key].doc), now)
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
