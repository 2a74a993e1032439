"""Webhook delivery jobs (index ``threatbay-deliveries``): created once, claimed, logged.

A job is one alert event for one agency endpoint, id ``<event id>|<agency>``,
created with a create-only write so a replayed event adds nothing. The
deliverer claims due jobs under optimistic concurrency (their next attempt
moves a lease ahead), so two deliverers never send one job at once; a
deliverer killed mid-send leaves the job due again when the lease runs out
(at-least-once; receivers dedupe on the delivery id).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

from core import names
from core.clock import Clock, format_timestamp
from core.cursors import decode_cursor, encode_cursor
from core.errors import StoreUnavailable
from core.ports import Filter, Put, PutResult, Query, Range, Sort, Store, Stored, Term, Version

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
DeliveryState = Literal["pending", "delivered", "dead"]


class DeliveryJob(TypedDict, total=False):
    id: str
    state: str
    agency: str
    jurisdiction: str
    url: str
    alert_id: str
    case_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: str
    created: str
    updated: str
    delivered_at: str
    log: list[dict[str, Any]]


_LIST_SORT = (Sort("created", "desc"),)


class Deliveries:
    """Delivery jobs over the Store port (module docstring)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def create(self, jobs: Sequence[DeliveryJob]) -> list[bool]:
        """Create each job unless it exists; True where this call created it."""
        if not jobs:
            return []
        results = self.store.put_many(
            names.INDEX_DELIVERIES,
            [Put(key=j["id"], doc=dict(j), expected=None) for j in jobs],
        )
        if any(not r.ok and not r.conflict for r in results):
            raise StoreUnavailable("store refused delivery jobs")
        return [r.ok for r in results]

    def due(self, now: datetime, limit: int) -> list[Stored]:
        """Pending jobs whose next attempt is due at ``now``, as stored now (read by key)."""
        stamp = format_timestamp(now)
        page = self.store.search(
            names.INDEX_DELIVERIES,
            Query(
                filters=(Term("state", (PENDING,)), Range("next_attempt_at", lte=stamp)),
                sort=(Sort("next_attempt_at"),),
                limit=limit,
            ),
        )
        current = self.store.get_many(names.INDEX_DELIVERIES, [h.key for h in page.hits])
        return [
            st
            for st in current.values()
            if st.doc["state"] == PENDING and st.doc["next_attempt_at"] <= stamp
        ]

    def claim(
        self, due: Sequence[Stored], lease_until: datetime
    ) -> list[tuple[DeliveryJob, Version]]:
        """Move each due job's next attempt to ``lease_until``; the jobs this caller now holds."""
        until = format_timestamp(lease_until)
        claims = self.store.put_many(
            names.INDEX_DELIVERIES,
            [Put(st.key, {**st.doc, "next_attempt_at": until}, st.version) for st in due],
        )
        return [
            (dict(st.doc), claim.version)  # type: ignore[misc]
            for st, claim in zip(due, claims, strict=True)
            if claim.ok and claim.version is not None
        ]

    def record_attempts(self, held: Sequence[tuple[DeliveryJob, Version]]) -> list[PutResult]:
        """Write the jobs held by ``claim`` back with their attempt logged."""
        return self.store.put_many(
            names.INDEX_DELIVERIES,
            [Put(key=job["id"], doc=dict(job), expected=version) for job, version in held],
        )

    def get(self, job_id: str) -> Stored | None:
        return self.store.get(names.INDEX_DELIVERIES, job_id)

    def page(
        self,
        *,
        agency: str | None,
        state: str | None,
        alert_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs newest first, without their payloads, and the next page's cursor."""
        filters: list[Filter] = []
        if agency:
            filters.append(Term("agency", (agency,)))
        if state:
            filters.append(Term("state", (state,)))
        if alert_id:
            filters.append(Term("alert_id", (alert_id,)))
        after = decode_cursor(cursor, arity=len(_LIST_SORT) + 1) if cursor else None
        page = self.store.search(
            names.INDEX_DELIVERIES,
            Query(filters=tuple(filters), sort=_LIST_SORT, limit=limit, after=after),
        )
        items = [{k: v for k, v in h.doc.items() if k != "payload"} for h in page.hits]
        nxt = encode_cursor(page.hits[-1].cursor) if page.more and page.hits else None
        return items, nxt

    def requeue(self, stored: Stored) -> DeliveryJob | None:
        """Put a dead job back in the queue; None when it changed meanwhile."""
        now = format_timestamp(self.clock.now())
        doc: dict[str, Any] = {
            **stored.doc,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "updated": now,
        }
        [res] = self.store.put_many(
            names.INDEX_DELIVERIES, [Put(key=stored.key, doc=doc, expected=stored.version)]
        )
        if res.conflict:
            return None
        if not res.ok:
            raise StoreUnavailable(f"store refused delivery {stored.key}")
        return doc  # type: ignore[return-value]
