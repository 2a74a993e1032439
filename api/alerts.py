"""Alerts API under ``/api/v1/alerts`` (DOMAIN.md "Early-warning levels").

List with filters and an opaque cursor, detail with timeline, acknowledge,
resolve, comment. Every route is authenticated (``api/auth.py``),
role-checked, filtered per reader by the sharing policy (an alert shows only
the indicators the reader may see and is hidden when none is;
core/alert_views.py), and written to the audit log. Alerts are also rendered
as STIX 2.1 ``report`` objects (``alert_to_stix``) with the level in the
``x_threatbay_alert`` property.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import READ_ROLES, Books, Cases, CurrentPrincipal, Sharing
from api.errors import ERROR_RESPONSES, ApiError, FastJSON, not_found
from api.incidents import linked_cases
from core import names, policy
from core.access import Principal
from core.alert_views import alert_view
from core.alerts import (
    Alert,
    AlertError,
    acknowledge,
    alert_to_stix,
    comment,
    resolve,
)
from core.cursors import decode_cursor, encode_cursor
from core.policy import reader_of
from core.ports import Filter, Page, Range, Sort, Store, Term, Text
from core.ports import Query as StoreQuery

ACT_ROLES = ("analyst", "admin")


# ------------------------------------------------------------------ views


class DecisionMemo:
    """``decide_record`` answers for alert indicator summaries, keyed by their exact content.

    The decision is a pure function of (policy, reader, purpose, indicator) and
    a dashboard asks it again for the same indicators on every poll of the
    alert list (50 alerts, 1-3 indicators each). The key holds the indicator's
    whole serialised content, so an answer is only ever reused for identical
    input and cannot go stale; the policy object is compared by identity.
    Views handed out are shared between requests and must not be mutated.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[
            tuple[int, policy.Reader, str, bytes], tuple[policy.SharingPolicy, policy.Decision]
        ] = {}

    def decide(
        self,
        sharing: policy.SharingPolicy,
        reader: policy.Reader,
        purpose: policy.Purpose,
        indicator: dict[str, Any],
    ) -> policy.Decision:
        """``policy.decide_record(sharing, reader, purpose, indicator)``, memoised."""
        try:
            content = orjson.dumps(indicator, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # not plain JSON (never from the store): no memo
            return policy.decide_record(sharing, reader, purpose, indicator, exact=True)
        key = (id(sharing), reader, str(purpose), content)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is sharing:
            return hit[1]
        decision = policy.decide_record(sharing, reader, purpose, indicator, exact=True)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (sharing, decision)
        return decision


_MEMO = DecisionMemo()


class ListViewMemo:
    """Alert-list views of one stored alert document for one reader, by document identity.

    ``AlertPages`` hands out the very same page (and document objects) for
    ``ttl_s``; within that time each reader's view of each alert is computed
    once. Entries hold the document itself and are used only for that same
    object, so a page read again from the store is a miss. Documents and
    views are never mutated after this point.
    """

    def __init__(self, max_entries: int = 5_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[
            tuple[int, int, policy.Reader],
            tuple[Alert, policy.SharingPolicy, Alert | None],
        ] = {}

    def view(
        self, sharing: policy.SharingPolicy, reader: policy.Reader, doc: Alert
    ) -> Alert | None:
        """``alert_view`` for the list (``read``, no timeline), memoised by document identity."""
        key = (id(doc), id(sharing), reader)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is doc and hit[1] is sharing:
            return hit[2]
        view = list_view(sharing, reader, doc)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (doc, sharing, view)
        return view


_LIST_VIEWS = ListViewMemo()


def list_view(sharing: policy.SharingPolicy, reader: policy.Reader, doc: Alert) -> Alert | None:
    """An alert as the list shows it to ``reader``: ``alert_view`` without the timeline."""
    view = alert_view(sharing, reader, policy.Purpose.READ, doc, _MEMO.decide)
    if view is not None:
        view.pop("timeline", None)
    return view


#: Longest time a page of the alerts index is reused on a near-real-time store (``AlertPages``).
ALERT_PAGE_TTL_S = 0.5


class AlertPages:
    """Pages of the alerts index as last read, reused for ``ttl_s`` by every reader.

    The list query carries no reader filter (each alert is filtered per reader
    afterwards, ``alert_view``), so every dashboard polling the list asks the
    store the same question; concurrent misses of one page share one read.
    Acknowledge, resolve and comment through this API call ``changed()``, so
    a caller's own change is never hidden by the cache; alerts written by
    another process or the correlator appear within ``ttl_s`` on top of the
    index refresh interval. Pages handed out are shared between requests and
    must not be mutated. ``ttl_s=0`` reads the store every time.
    """

    def __init__(
        self,
        ttl_s: float = ALERT_PAGE_TTL_S,
        max_entries: int = 128,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._generation = 0
        self._entries: dict[StoreQuery, tuple[Page, int, float]] = {}
        self._reading: dict[StoreQuery, Future[Page]] = {}
        self._lock = threading.Lock()

    def changed(self) -> None:
        """An alert was written in this process: forget every page."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def search(self, store: Store, query: StoreQuery) -> Page:
        """``store.search(INDEX_ALERTS, query)``, or the same answer read under ``ttl_s`` ago."""
        if self.ttl_s <= 0:
            return store.search(names.INDEX_ALERTS, query)
        with self._lock:
            hit = self._entries.get(query)
            if (
                hit is not None
                and hit[1] == self._generation
                and self._monotonic() - hit[2] < self.ttl_s
            ):
                return hit[0]
            reading = self._reading.get(query)
            if reading is None:
                leader = self._reading[query] = Future()
                # Taken before the read: a change landing during it voids the page.
                gen, read_at = self._generation, self._monotonic()
        if reading is not None:
            return reading.result()
        try:
            page = store.search(names.INDEX_ALERTS, query)
        except BaseException as exc:
            with self._lock:
                self._reading.pop(query, None)
            leader.set_exception(exc)
            raise
        with self._lock:
            self._reading.pop(query, None)
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[query] = (page, gen, read_at)
        leader.set_result(page)
        return page


# ------------------------------------------------------------------ router


class AckIn(BaseModel):
    note: str | None = Field(None, max_length=2000)


class ResolveIn(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class CommentIn(BaseModel):
    text: str = Field(..., min_length=1, max_length=4000)


def _require(principal: Principal, roles: tuple[str, ...]) -> None:
    if not principal.has(*roles):
        raise ApiError(403, "Forbidden", f"this needs one of the roles {list(roles)}")


LevelName = Literal["RED", "ORANGE", "YELLOW", "BLUE"]
StatusName = Literal["open", "resolved", "expired"]
#: Sort of the alert list, and so the shape of its cursors (values, then the alert id:
#: never a document key, which depends on other readers' versions).
_LIST_SORT = (Sort("level_rank", "desc"), Sort("updated", "desc"), Sort("id"))
#: After the alert id in a store cursor: above every document key of that alert's versions.
_PAST_ALERT = "#~"


def mine(doc: Alert, tags: list[str]) -> bool:
    """``doc`` is a version the reader reads: its own token is among the exact readers."""
    return tags[0] in (doc.get("reader_tokens") or ())


def _error_status(err: AlertError) -> int:
    return {"not_concerned": 403, "already_acknowledged": 409, "not_open": 409}.get(err.code, 422)


def alerts_router() -> APIRouter:
    """``/api/v1/alerts``: list, detail, acknowledge, resolve, comment."""
    router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)

    @router.get("")
    def list_alerts(
        request: Request,
        principal: CurrentPrincipal,
        books: Books,
        sharing: Sharing,
        level: Annotated[list[LevelName] | None, Query()] = None,
        status: Annotated[list[StatusName] | None, Query()] = None,
        jurisdiction: Annotated[list[str] | None, Query()] = None,
        agency: Annotated[list[str] | None, Query()] = None,
        rule: Annotated[list[str] | None, Query()] = None,
        since: str | None = None,
        until: str | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> JSONResponse:
        """Alerts visible to the caller, most severe then newest first."""
        _require(principal, READ_ROLES)
        filters: list[Filter] = []
        for fld, values in (
            ("level", level),
            ("status", status),
            ("jurisdictions", jurisdiction),
            ("agencies", agency),
            ("rules", rule),
        ):
            if values:
                filters.append(Term(fld if fld != "rules" else "rule", tuple(values)))
        if since or until:
            filters.append(Range("updated", gte=since, lte=until))
        if q:
            filters.append(Text(("title",), q))
        reader = reader_of(principal)
        tags = policy.reader_tags(reader, policy.Purpose.READ)
        filters.append(Term("readers", tuple(tags)))
        after: tuple[Any, ...] | None = None
        if cursor:
            sort_values = decode_cursor(cursor, arity=len(_LIST_SORT))
            after = (*sort_values, f"{sort_values[-1]}{_PAST_ALERT}")
        items: list[dict[str, Any]] = []
        more = True
        pages: AlertPages = request.app.state.alert_pages
        # Hidden alerts are skipped; keep reading pages until the caller's page is full.
        for _round in range(10):
            page = pages.search(
                books.alerts.store,
                StoreQuery(
                    filters=tuple(filters),
                    sort=_LIST_SORT,
                    limit=limit - len(items),
                    after=after,
                ),
            )
            for hit in page.hits:
                if not mine(hit.doc, tags):
                    continue  # a version listed under a tag that no longer covers the reader
                if pages.ttl_s > 0:  # the same page object comes back: reuse its views
                    view = _LIST_VIEWS.view(sharing, reader, hit.doc)
                else:
                    view = list_view(sharing, reader, hit.doc)
                # The store matched ``agency`` on every agency of the alert; an agency hidden
                # from this reader must not select it (that would reveal its involvement).
                if view is not None and (not agency or set(agency) & set(view["agencies"])):
                    items.append(view)
            more = page.more
            if page.hits:
                after = page.hits[-1].cursor
            if len(items) >= limit or not more:
                break
        books.audit.record("alerts.list", principal, None, purpose="read", count=len(items))
        return FastJSON(
            {
                "items": items,
                "next_cursor": encode_cursor(after[:-1]) if more and after is not None else None,
            }
        )

    @router.get("/{alert_id}")
    def get_alert(
        alert_id: str,
        principal: CurrentPrincipal,
        books: Books,
        sharing: Sharing,
        cases: Cases,
        format: Literal["json", "stix"] = "json",
    ) -> JSONResponse:
        """One alert with its timeline (``format=stix`` gives the STIX ``report``)."""
        _require(principal, READ_ROLES)
        reader = reader_of(principal)
        doc = books.alerts.version_for(alert_id, policy.reader_tags(reader, policy.Purpose.READ))
        view = alert_view(sharing, reader, policy.Purpose.READ, doc) if doc else None
        if view is None:
            raise not_found(f"no alert {alert_id} visible to you")
        books.audit.record("alerts.read", principal, alert_id, purpose="read")
        if format == "stix":
            return FastJSON(alert_to_stix(view))
        # The joint incident cases linking it that the caller may see (respond/).
        view["incidents"] = linked_cases(cases, reader_of(principal), alert_id)
        return FastJSON(view)

    def _act(
        request: Request,
        alert_id: str,
        principal: Principal,
        books: Books,
        sharing: Sharing,
        action: str,
        change: Any,
        status_code: int = 200,
    ) -> JSONResponse:
        _require(principal, ACT_ROLES)
        reader = reader_of(principal)
        book = books.alerts
        tags = policy.reader_tags(reader, policy.Purpose.READ)
        doc = book.version_for(alert_id, tags)
        if doc is None or alert_view(sharing, reader, policy.Purpose.READ, doc) is None:
            raise not_found(f"no alert {alert_id} visible to you")
        outcome = book.transact(alert_id, change, tags)
        pages: AlertPages = request.app.state.alert_pages
        pages.changed()
        if outcome is None:
            raise not_found(f"no alert {alert_id}")
        if isinstance(outcome, AlertError):
            return JSONResponse(
                {"detail": outcome.message, "code": outcome.code},
                status_code=_error_status(outcome),
            )
        books.audit.record(action, principal, alert_id)
        view = alert_view(sharing, reader, policy.Purpose.READ, outcome[0])
        return JSONResponse(view, status_code=status_code)

    @router.post("/{alert_id}/acknowledge")
    def acknowledge_alert(
        request: Request,
        alert_id: str,
        principal: CurrentPrincipal,
        books: Books,
        sharing: Sharing,
        body: AckIn | None = None,
    ) -> JSONResponse:
        """Acknowledge for the caller's jurisdiction (analyst/admin of a concerned one)."""
        agency = principal.agency
        note = body.note if body else None
        return _act(
            request,
            alert_id,
            principal,
            books,
            sharing,
            "alerts.acknowledge",
            lambda a: acknowledge(
                a, agency.id, agency.jurisdiction, books.alerts.clock.now(), note
            ),
        )

    @router.post("/{alert_id}/resolve")
    def resolve_alert(
        request: Request,
        alert_id: str,
        principal: CurrentPrincipal,
        books: Books,
        sharing: Sharing,
        body: ResolveIn | None = None,
    ) -> JSONResponse:
        """Resolve the alert (analyst/admin of a concerned jurisdiction)."""
        agency = principal.agency
        reason = body.reason if body else None
        return _act(
            request,
            alert_id,
            principal,
            books,
            sharing,
            "alerts.resolve",
            lambda a: resolve(a, agency.id, agency.jurisdiction, books.alerts.clock.now(), reason),
        )

    @router.post("/{alert_id}/comments", status_code=201)
    def comment_alert(
        request: Request,
        alert_id: str,
        body: CommentIn,
        principal: CurrentPrincipal,
        books: Books,
        sharing: Sharing,
    ) -> JSONResponse:
        """Add a comment to the timeline."""
        agency = principal.agency
        return _act(
            request,
            alert_id,
            principal,
            books,
            sharing,
            "alerts.comment",
            lambda a: comment(
                a, agency.id, agency.jurisdiction, body.text, books.alerts.clock.now()
            ),
            status_code=201,
        )

    return router
