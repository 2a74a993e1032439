"""Building and re-building the per-audience views of records (core/views.py has the rule).

The correlator, the re-score and the re-view job all come here: a view's
content is the record's identity, its visible parts, the fields
``merge.summarise`` derives from them and the score ``Scorer.apply`` gives
them, in that (fixed) order, so a view is byte for byte the same whichever
document holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from core.indicators import RecordChange, record_change
from core.record_indicators import stamp as stamp_version
from core.record_indicators import stamp_for
from core.views import (
    AudienceSet,
    Change,
    Content,
    Plan,
    Visible,
    plan_views,
    rescore_due,
    stored_views,
)
from correlate import merge
from correlate.score import SCORE_THRESHOLDS, AgencyProfile, Scorer

IDENTITY = ("key", "observable_type", "path", "value")


def builder(
    record: Mapping[str, Any],
    scorer: Scorer,
    profile: Callable[[str], AgencyProfile],
    now: datetime,
    hits: list[str],
    stamp: str | None = None,
) -> Callable[[Visible], Content]:
    """``build(visible)`` for the views of ``record`` at ``now`` (module docstring).

    ``stamp``: the view's version stamp ``changed_at`` (core/record_indicators.py),
    taken under a date_added floor by the writer; every view built here is new content.
    """
    identity = {k: record.get(k) for k in IDENTITY}

    def build(visible: Visible) -> Content:
        view: Content = {
            **identity,
            "sources": list(visible.sources),
            "sightings": list(visible.sightings),
            "links": list(visible.links),
            "malware": [],
            "campaigns": [],
            "intrusion_sets": [],
        }
        merge.summarise(view)
        scorer.apply(view, profile, now, hits)
        if stamp is not None:
            stamp_version(view, stamp)
        return view

    return build


def snapshot(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What planning needs of a stored record before it is merged into in place.

    Merging replaces or appends entries of ``sources`` / ``sightings`` /
    ``links`` (never edits an entry), so copying those lists is enough.
    """
    out = dict(doc)
    for name in ("sources", "sightings", "links"):
        if isinstance(doc.get(name), list):
            out[name] = list(doc[name])
    return out


def assemble(plan: Plan, audiences: AudienceSet, rev: int) -> dict[str, Any]:
    """The record document: its own view's content, then the views bookkeeping."""
    views = stored_views(plan, audiences)
    doc = dict(plan.full)
    doc["readers"] = audiences.compress(plan.full_tokens)
    doc["views"] = views
    doc["basis"] = plan.full_basis
    doc["rev"] = rev
    doc["rescore_due"] = rescore_due(plan.full, views)
    return doc


def announced(
    key: str, plan_changes: list[Change], at: str, cause: str | None = None
) -> list[RecordChange]:
    """The record changes of a plan, one per group of tokens whose view changed alike."""
    out: list[RecordChange] = []
    for change in plan_changes:
        kinds = merge.change_kinds(change.before, change.after, SCORE_THRESHOLDS)
        out.append(
            record_change(
                key,
                kinds,
                at,
                change.after,
                cause,
                readers=sorted(change.tokens),
                view=change.doc_key,
            )  # fmt: skip
        )
    return out


def plan_record(
    record: dict[str, Any],
    old: Mapping[str, Any] | None,
    audiences: AudienceSet,
    scorer: Scorer,
    profile: Callable[[str], AgencyProfile],
    now: datetime,
    *,
    force_full: bool = False,
    stamp: str | None = None,
) -> Plan:
    """Plan the views of ``record`` (merged now) against its stored form ``old``.

    ``stamp``: the batch's version stamp; the views rebuilt take the record's place in
    it (core/record_indicators.py ``stamp_for``).
    """
    hits = record.get("warninglist_hits")
    if hits is None:
        hits = scorer.hits(record)
    if stamp is not None:
        stamp = stamp_for(stamp, str(record["key"]))
    build = builder(record, scorer, profile, now, list(hits), stamp)
    return plan_views(record, audiences, build, old=old, force_full=force_full)


__all__ = ["announced", "assemble", "builder", "plan_record", "snapshot"]
