"""The ``records`` collection: pages of the reader's record views as STIX indicators (issue 18).

TAXII 2.1 sections 5.3 (manifest), 5.4 (objects), 5.6 (an object) and 5.8
(versions) over the indicators index, through the same seam as
``/api/v1/indicators`` (api/indicator_queries.py): the native filter
``visible_to(reader)`` matches exactly one document per record, the reader's
view (core/views.py), and each leaves through ``decide_record(exact=True)``;
core/record_indicators.py renders it. So a page is computed only from the
reports the reader may see (DOMAIN.md "Noninterference").

Versions are rendered on read, not materialised (README "The records
collection"): a view document *is* the latest version of its readers' indicator,
``changed_at`` its ``modified`` and ``date_added``, stamped under a date_added
floor by whichever process rebuilt the view, and only versions at or below the
settled watermark are served (records/date_added.py). Earlier versions are not
kept: ``versions/`` lists the latest, ``match[version]`` of an earlier one
matches nothing (TAXII 2.1 section 3.4.1 lets a server keep only some versions).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.indicator_queries import shown, visible_to
from api.taxii.pagination import Filters, encode_next
from api.taxii.service import Selection
from core import names
from core.policy import Purpose, Reader, SharingPolicy, decide_record
from core.ports import Filter, Hit, Query, Range, Sort, Store, Term
from core.record_indicators import CHANGE_STAMP, RECORDS_NAMESPACE, indicator_id, render

#: After the record key in a store cursor: past every document of that record (``<key>``
#: and ``<key>#<hex>``), so a view moving between documents is neither repeated nor skipped.
_PAST_RECORD = "#~"
_VERSION_WORDS = ("all", "first", "last")


def _none_match(filters: Filters) -> bool:
    types = filters.values("type")
    specs = filters.values("spec_version")
    return bool(types and "indicator" not in types) or bool(specs and "2.1" not in specs)


def select_records(
    store: Store,
    policy: SharingPolicy,
    reader: Reader,
    filters: Filters,
    scope: str,
    *,
    settled: str,
    expire_below: float,
    now: datetime,
    stix_id: str | None = None,
) -> tuple[Selection, list[dict[str, Any]]]:
    """One page of the reader's record indicators, and the record views shown (for audit)."""
    out = Selection(added_after=filters.added_after)
    if _none_match(filters):
        return out, []
    clauses: list[Filter] = [visible_to(reader), Range(CHANGE_STAMP, lte=settled)]
    ids = tuple(filter(None, [stix_id, *(filters.values("id") or ())]))
    if ids:
        clauses.append(Term("indicator_id", tuple(i.lower() for i in ids)))
    versions = filters.values("version") or ()
    if versions and not any(v in _VERSION_WORDS for v in versions):
        clauses.append(Term(CHANGE_STAMP, versions))
    if filters.added_after is not None:
        clauses.append(Range(CHANGE_STAMP, gt=filters.added_after))
    after = None
    if filters.after:
        stamp, key = filters.after[0], filters.after[1]
        clauses.append(Range(CHANGE_STAMP, gte=stamp))
        after = (stamp, key, f"{key}{_PAST_RECORD}")
    page = store.search(
        names.INDEX_INDICATORS,
        Query(
            filters=tuple(clauses),
            sort=(Sort(CHANGE_STAMP), Sort("key")),
            limit=filters.limit + 1,
            after=after,
        ),
    )
    hits, more = page.hits, page.more
    if len(hits) > filters.limit:
        hits, more = _whole_stamps(hits, filters.limit), True
    out.more = more
    views: list[dict[str, Any]] = []
    for hit in hits:
        decision = decide_record(policy, reader, Purpose.READ, hit.doc, exact=True)
        view = shown(decision, now)
        if view is None:
            continue
        obj = render(view, expire_below)
        meta = {"id": obj["id"], "date_added": obj["modified"], "version": obj["modified"]}
        out.items.append((meta, obj))
        views.append(view)
    if more and hits:
        last = hits[-1].cursor
        out.next = encode_next((last[0], last[1]), scope, filters.match, filters.added_after)
    return out, views


def _whole_stamps(hits: list[Hit], limit: int) -> list[Hit]:
    """The first ``limit`` hits, ending between two stamps (api/taxii/service.py explains)."""
    page = hits[:limit]
    following = hits[limit].doc[CHANGE_STAMP]
    whole = [h for h in page if h.doc[CHANGE_STAMP] != following]
    return whole or page


__all__ = ["RECORDS_NAMESPACE", "indicator_id", "select_records"]
