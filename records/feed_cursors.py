"""Per-feed position and health, kept in the store so a restart resumes where it stopped.

The cursor is written only after ingest accepted the page it covers, so nothing
is fetched twice or skipped. One document per feed, key = feed name,
single writer (the feed runner), so writes are blind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.clock import Clock, format_timestamp
from core.names import INDEX_FEED_CURSORS
from core.ports import Put, Query, Store


@dataclass(frozen=True, slots=True)
class FeedState:
    """Where a feed is (``cursor``, meaning depends on the kind) and how its pulls went."""

    feed: str
    kind: str
    cursor: str | None = None
    updated: str | None = None
    failures: int = 0
    last_error: str | None = None
    last_success: str | None = None
    objects_total: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "kind": self.kind,
            "cursor": self.cursor,
            "updated": self.updated,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "objects_total": self.objects_total,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FeedState:
        return cls(
            feed=doc["feed"],
            kind=doc.get("kind", ""),
            cursor=doc.get("cursor"),
            updated=doc.get("updated"),
            failures=int(doc.get("failures", 0)),
            last_error=doc.get("last_error"),
            last_success=doc.get("last_success"),
            objects_total=int(doc.get("objects_total", 0)),
        )


class FeedCursors:
    """Feed states over the ``Store`` port (index ``threatbay-feed-cursors``)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def load(self, feed: str, kind: str) -> FeedState:
        """The saved state of ``feed``; a fresh one when never pulled or the kind changed."""
        stored = self.store.get(INDEX_FEED_CURSORS, feed)
        if stored is None:
            return FeedState(feed=feed, kind=kind)
        state = FeedState.from_doc(stored.doc)
        if state.kind != kind:  # a cursor of another kind means nothing here
            return FeedState(feed=feed, kind=kind, failures=state.failures)
        return state

    def save(self, state: FeedState) -> FeedState:
        """Durably write ``state`` (stamped with the current time)."""
        state = replace(state, updated=format_timestamp(self.clock.now()))
        self.store.put_many(INDEX_FEED_CURSORS, [Put(state.feed, state.to_doc(), blind=True)])
        return state

    def advance(self, state: FeedState, cursor: str | None, accepted: int) -> FeedState:
        """Record that everything up to ``cursor`` was accepted by ingest."""
        return self.save(
            replace(
                state,
                cursor=cursor if cursor is not None else state.cursor,
                objects_total=state.objects_total + accepted,
            )
        )

    def succeeded(self, state: FeedState) -> FeedState:
        now = format_timestamp(self.clock.now())
        return self.save(replace(state, failures=0, last_error=None, last_success=now))

    def failed(self, state: FeedState, message: str) -> FeedState:
        return self.save(replace(state, failures=state.failures + 1, last_error=message))

    def all(self) -> list[FeedState]:
        page = self.store.search(INDEX_FEED_CURSORS, Query(limit=10_000))
        return [FeedState.from_doc(h.doc) for h in page.hits]
