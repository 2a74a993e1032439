"""Live stream of alert events: Server-Sent Events at ``GET /api/v1/stream``.

Each event has an ``id:`` line (its alert-event id, which sorts by stream
sequence, then by id); a client reconnecting with ``Last-Event-ID`` resumes
after that id (an id this server never issued is a 400). A reader gets only the
events of *its* version of each alert (records/alerts.py: the alert as the
rules saw the reader's machine-channel view of the records, ``m:<agency>``,
core/views.py), each with its current version of the alert (``Purpose.STREAM``).
Events are selected by the reader's tags in the store, so nothing of another
reader's version — not even how many events it had — reaches the stream. The
stream polls ``threatbay-alert-events`` every ``poll_s`` (~250 ms), which works
on both backends, and sends a heartbeat comment when idle so proxies keep the
connection open.

Writers in other processes may commit an event slightly after a later-numbered
one; the poll therefore re-reads a short ``lag`` window behind the newest
event sent, page after page (a burst can hold more events than one page), and
skips ids it already sent. Events stamped in the same microsecond share a
sequence and are ordered by id.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import READ_ROLES, Books, CurrentPrincipal, Sharing, Svc
from api.errors import ERROR_RESPONSES, ApiError
from core import names, policy
from core.alert_views import alert_view
from core.policy import reader_of
from core.ports import Query as StoreQuery
from core.ports import Range, Sort, Store, Term
from core.redaction import event_for
from records.alerts import AlertBook, stream_seq_of

LAG_US = 5_000_000


def format_sse(event_id: str, kind: str, data: dict[str, Any]) -> bytes:
    """One SSE frame (``id``, ``event``, ``data``) terminated by a blank line."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event_id.encode(),
        kind.encode(),
        orjson.dumps(data),
    )


def unsent_events(
    store: Store,
    after_seq: int,
    is_new: Callable[[dict[str, Any]], bool],
    *,
    tags: tuple[str, ...] | None = None,
    page_size: int = 500,
) -> list[dict[str, Any]]:
    """The reader's alert events from ``after_seq`` on that ``is_new`` accepts, in stream order.

    Pages on past events already sent; stops after the first page that holds
    new ones (the caller polls again for the rest).
    """
    filters: list[Any] = [Range("stream_seq", gte=after_seq)]
    if tags is not None:
        filters.append(Term("readers", tags))
    after: tuple[Any, ...] | None = None
    while True:
        page = store.search(
            names.INDEX_ALERT_EVENTS,
            StoreQuery(
                filters=tuple(filters),
                sort=(Sort("stream_seq"), Sort("id")),
                limit=page_size,
                after=after,
            ),
        )
        fresh = [h.doc for h in page.hits if is_new(h.doc)]
        if fresh or not page.more:
            return fresh
        after = page.hits[-1].cursor


def _position(event: dict[str, Any]) -> tuple[int, str]:
    return int(event["stream_seq"]), str(event["id"])


async def alert_stream(
    request: Request,
    store: Store,
    sharing: policy.SharingPolicy,
    reader: policy.Reader,
    resumed: tuple[int, str] | None,
    last_event_id: str | None,
    *,
    book: AlertBook | None = None,
    poll_s: float = 0.25,
    heartbeat_s: float = 15.0,
    max_events: int | None = None,
    max_seconds: float | None = None,
) -> AsyncIterator[bytes]:
    """The SSE byte stream for one reader, after position ``resumed`` (module docstring)."""
    tags = tuple(policy.reader_tags(reader, policy.Purpose.STREAM))
    # A fresh connection starts after the newest event; a resumed one after its id.
    floor = resumed if resumed is not None else await asyncio.to_thread(_latest, store, tags)
    high = floor[0]
    sent: OrderedDict[str, int] = OrderedDict()  # id -> stream_seq, in the order sent

    def is_new(event: dict[str, Any]) -> bool:
        return event["id"] not in sent and event["id"] != last_event_id and _position(event) > floor

    idle = 0.0
    emitted = 0
    yield b": connected\nretry: 2000\n\n"
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + max_seconds if max_seconds is not None else None
    while not await request.is_disconnected():
        since = max(high - LAG_US, floor[0])
        fresh = await asyncio.to_thread(unsent_events, store, since, is_new, tags=tags)
        versions = await asyncio.to_thread(_versions_of, store, book, fresh, list(tags))
        for event in fresh:
            sent[event["id"]] = int(event["stream_seq"])
            high = max(high, int(event["stream_seq"]))
            doc = versions.get(event["alert_id"])
            view = alert_view(sharing, reader, policy.Purpose.STREAM, doc) if doc else None
            if view is None:
                continue
            view.pop("timeline", None)
            yield format_sse(
                event["id"],
                event["type"],
                {
                    "event": event_for(reader.jurisdiction, event["event"]),
                    "alert_id": event["alert_id"],
                    "alert": view,
                },
            )
            emitted += 1
            idle = 0.0
            if max_events is not None and emitted >= max_events:
                return
        # Ids at or below the window are never read again: forget them.
        while sent and next(iter(sent.values())) < high - LAG_US:
            sent.popitem(last=False)
        if stop_at is not None and loop.time() >= stop_at:
            return  # (checked after a poll: a stream always polls at least once)
        if not fresh:
            idle += poll_s
            if idle >= heartbeat_s:
                idle = 0.0
                yield b": heartbeat\n\n"
        await asyncio.sleep(poll_s)


def _versions_of(
    store: Store, book: AlertBook | None, events: list[dict[str, Any]], tags: list[str]
) -> dict[str, dict[str, Any]]:
    """The reader's current version of each alert the events name (by key: real time)."""
    if not events:
        return {}
    wanted = {e["alert_id"]: str(e.get("version") or e["alert_id"]) for e in events}
    found = store.get_many(names.INDEX_ALERTS, sorted(set(wanted.values())))
    out: dict[str, dict[str, Any]] = {}
    for alert_id, key in wanted.items():
        stored = found.get(key)
        if stored is not None and tags[0] in (stored.doc.get("reader_tokens") or ()):
            out[alert_id] = stored.doc
        elif book is not None:  # the reader's version forked off since this event
            doc = book.version_for(alert_id, tags)
            if doc is not None:
                out[alert_id] = doc
    return out


def _latest(store: Store, tags: tuple[str, ...]) -> tuple[int, str]:
    page = store.search(
        names.INDEX_ALERT_EVENTS,
        StoreQuery(
            filters=(Term("readers", tags),),
            sort=(Sort("stream_seq", "desc"), Sort("id", "desc")),
            limit=1,
        ),
    )
    return _position(page.hits[0].doc) if page.hits else (0, "")


def stream_router() -> APIRouter:
    """``GET /api/v1/stream``: SSE of alert events (analyst, dashboard, admin)."""
    router = APIRouter(prefix="/api/v1", tags=["stream"], responses=ERROR_RESPONSES)

    @router.get("/stream", response_class=StreamingResponse)
    async def stream(
        request: Request,
        principal: CurrentPrincipal,
        svc: Svc,
        books: Books,
        sharing: Sharing,
        max_events: Annotated[int | None, Query(ge=1)] = None,
        max_seconds: Annotated[float | None, Query(gt=0, le=3600)] = None,
    ) -> StreamingResponse:
        """Server-Sent Events; resume with ``Last-Event-ID`` (or ``?last_event_id=``)."""
        if not principal.has(*READ_ROLES):
            raise ApiError(403, "Forbidden", f"this needs one of the roles {list(READ_ROLES)}")
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        resumed = (stream_seq_of(last), last.strip()) if last else None
        books.audit.record("stream.open", principal, None, purpose="stream", resume_from=last)
        body = alert_stream(
            request,
            svc.store,
            sharing,
            reader_of(principal),
            resumed,
            last,
            book=books.alerts,
            poll_s=svc.settings.api.stream_poll_s,
            heartbeat_s=svc.settings.api.stream_heartbeat_s,
            max_events=max_events,
            max_seconds=max_seconds,
        )
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
