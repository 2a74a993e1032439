"""Blocklist exports: ``GET /api/v1/exports/{format}`` and the code ``threatbay export`` runs.

What an export holds is exactly the reader's view: records come from
``reader_records`` — the one seam, a generator over the very function
``GET /api/v1/indicators`` answers with (``api.indicator_queries.search_indicators``,
i.e. ``core.policy.decide_record`` for ``Purpose.READ``) — and levels from
``core.alert_views.alert_view`` (as ``GET /api/v1/alerts/{id}``). Then values
on warning lists, in private or reserved ranges, or on the reader agency's
allow-list are dropped, the
remaining filters applied to the *view* (never to fields of reports the
reader may not see), and each row rendered by ``exports.formats``.

Streaming with an ETag: the body is rendered page by page into a spooled
temporary file (memory stays at one page of records plus a 1 MiB buffer, the
rest goes to disk) while it is hashed; the response then carries ``ETag``,
the counts (``X-ThreatBay-Count``, ``-Omitted``, ``-Excluded``) and the RPZ
serial in its headers and streams the file. ``If-None-Match`` with the same
ETag is answered 304 without a body.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.deps import Books, ReaderRole, Sharing, Svc
from api.errors import ERROR_RESPONSES, ApiError
from api.indicator_queries import IndicatorFilters, search_indicators
from core import names
from core.alert_views import alert_view
from core.alerts import Level
from core.allowlist import AllowList
from core.policy import Purpose, Reader, SharingPolicy, reader_of
from core.ports import Query as StoreQuery
from core.ports import Store, Term
from exports.formats import (
    FORMATS,
    Format,
    Omitted,
    export_type,
    format_named,
    never_blocked,
    row_of,
)

PAGE = 500
SPOOL_BYTES = 1024 * 1024
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """The filters of one export (every format takes them all)."""

    format: str
    types: tuple[str, ...] = ()
    min_score: float | None = None
    state: tuple[str, ...] = ("active",)
    jurisdiction: tuple[str, ...] = ()
    min_agencies: int | None = None
    since: str | None = None
    level: str | None = None
    limit: int | None = None
    options: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """A stable text of the request (the RPZ serial is kept per reader and request)."""
        return repr(self)


@dataclass
class ExportResult:
    """Counts and identity of a rendered export."""

    etag: str
    digest: str
    serial: int
    count: int = 0
    omitted: int = 0
    excluded: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def headers(self, fmt: Format) -> dict[str, str]:
        out = {
            "ETag": self.etag,
            "X-ThreatBay-Count": str(self.count),
            "X-ThreatBay-Omitted": str(self.omitted),
            "X-ThreatBay-Excluded": str(self.excluded),
            "Cache-Control": "private, no-cache",
            "Content-Disposition": f'attachment; filename="threatbay.{fmt.extension}"',
        }
        if fmt.name == "rpz":
            out["X-ThreatBay-Serial"] = str(self.serial)
        return out


# ---------------------------------------------------------------- the seam


def reader_records(
    store: Store,
    policy: SharingPolicy,
    reader: Reader,
    filters: IndicatorFilters,
    now: datetime,
    page: int = PAGE,
) -> Iterator[dict[str, Any]]:
    """Every record the reader may see on a machine channel, page by page.

    The one place exports read records: ``GET /api/v1/indicators``'s search on the
    reader's machine view (``Purpose.TAXII_EXPORT``): a blocklist is forwarded to
    firewalls and resolvers automatically, so no other agency's TLP:RED report is in it
    (core/policy.py), even for a named recipient, who reads it on ``/api/v1``.
    """
    cursor: str | None = None
    while True:
        items, cursor = search_indicators(
            store, policy, reader, filters, sort="key", limit=page, cursor=cursor, now=now,
            purpose=Purpose.TAXII_EXPORT,
        )  # fmt: skip
        yield from items
        if cursor is None:
            return


def alert_levels(store: Store, policy: SharingPolicy, reader: Reader) -> dict[str, tuple[str, str]]:
    """Record key -> (highest level, alert updated) over the open alerts the reader may see."""
    levels: dict[str, tuple[str, str]] = {}
    after: tuple[Any, ...] | None = None
    while True:
        page = store.search(
            names.INDEX_ALERTS,
            StoreQuery(filters=(Term("status", ("open",)),), limit=PAGE, after=after),
        )
        for hit in page.hits:
            view = alert_view(policy, reader, Purpose.READ, hit.doc)
            if view is None:
                continue
            level = Level(view["level"])
            for key in view.get("indicator_keys") or []:
                known = levels.get(key)
                if known is None or Level(known[0]).rank < level.rank:
                    levels[key] = (level.value, str(view.get("updated") or ""))
        if not page.more or not page.hits:
            return levels
        after = page.hits[-1].cursor


def _store_filters(request: ExportRequest) -> IndicatorFilters:
    types = tuple(sorted({t.split(":", 1)[0] for t in request.types}))
    return IndicatorFilters(
        observable_type=types,
        min_score=request.min_score,  # the stored score is never below the score now
        jurisdiction=request.jurisdiction,
        state=request.state,
        since=request.since,
    )


def rows(
    store: Store,
    policy: SharingPolicy,
    reader: Reader,
    allow: AllowList,
    request: ExportRequest,
    now: datetime,
    result: ExportResult,
    page: int = PAGE,
) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(view, level, level changed) of every record to export, the counts kept in ``result``."""
    levels = alert_levels(store, policy, reader)
    min_rank = Level.parse(request.level).rank if request.level else 0
    wanted = set(request.types)
    for view in reader_records(store, policy, reader, _store_filters(request), now, page):
        level, changed = levels.get(view["key"], ("NONE", ""))
        if min_rank and (level == "NONE" or Level(level).rank < min_rank):
            continue
        kind = export_type(view)
        if wanted and kind not in wanted:
            continue
        if request.min_score is not None and float(view.get("score_now", 0)) < request.min_score:
            continue
        if request.jurisdiction and not set(request.jurisdiction) & set(view["jurisdictions"]):
            continue
        if request.min_agencies and len(view.get("agencies") or []) < request.min_agencies:
            continue
        reason = None
        if view.get("false_positives"):
            reason = "false positive"  # README "False-positive feedback"
        elif view.get("warninglist_hits"):
            reason = "warning list"
        elif allow.hits(view):
            reason = "allow-list"
        else:
            reason = never_blocked(kind, str(view.get("value", "")))
        if reason is not None:
            result.excluded += 1
            result.reasons[reason] = result.reasons.get(reason, 0) + 1
            continue
        yield view, level, changed


def render(
    store: Store,
    policy: SharingPolicy,
    reader: Reader,
    allow: AllowList,
    request: ExportRequest,
    now: datetime,
    serial_for: Callable[[str], int],
    out: IO[bytes],
    progress: Callable[[int], None] | None = None,
    released: Callable[[list[dict[str, Any]]], None] | None = None,
    page: int = PAGE,
) -> tuple[Format, ExportResult]:
    """Render the export into ``out`` (head first), hashing it; returns the format and counts.

    The body is rendered into a spooled file first, because the head (RPZ SOA
    serial, STIX bundle id) depends on the content.
    """
    fmt = format_named(request.format, dict(request.options))
    result = ExportResult(etag="", digest="", serial=0)
    digest = hashlib.sha256()
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
        buffer: list[str] = []
        shown: list[dict[str, Any]] = []
        for view, level, changed in rows(store, policy, reader, allow, request, now, result, page):
            row = row_of(view, level, changed)
            if not fmt.carries(row.export_type):
                continue
            lines = fmt.lines(row)
            if isinstance(lines, Omitted):
                result.omitted += 1
                result.reasons[str(lines)] = result.reasons.get(str(lines), 0) + 1
                continue
            result.count += 1
            buffer.extend(lines)
            if released is not None:
                shown.append(view)
                if len(shown) >= PAGE:
                    released(shown)
                    shown = []
            if len(buffer) >= PAGE:
                chunk = ("\n".join(buffer) + "\n").encode()
                digest.update(chunk)
                body.write(chunk)
                buffer.clear()
            if progress is not None:
                progress(1)
            if request.limit is not None and result.count >= request.limit:
                break
        if shown and released is not None:
            released(shown)
        if buffer:
            chunk = ("\n".join(buffer) + "\n").encode()
            digest.update(chunk)
            body.write(chunk)
        tail = fmt.tail().encode()
        digest.update(tail)
        body.write(tail)
        result.digest = digest.hexdigest()
        result.serial = serial_for(result.digest) if fmt.name == "rpz" else 0
        head = fmt.head(result.digest, result.serial, now).encode()
        whole = hashlib.sha256(head)
        whole.update(result.digest.encode())
        result.etag = f'"{whole.hexdigest()[:32]}"'
        out.write(head)
        body.seek(0)
        while chunk := body.read(CHUNK):
            out.write(chunk)
    return fmt, result


def export_request(
    fmt: str,
    *,
    types: tuple[str, ...] = (),
    min_score: float | None = None,
    state: tuple[str, ...] = ("active",),
    jurisdiction: tuple[str, ...] = (),
    min_agencies: int | None = None,
    since: str | None = None,
    level: str | None = None,
    limit: int | None = None,
    wildcard: bool = False,
    zone: str | None = None,
) -> ExportRequest:
    """A checked request; raises ``ValueError`` with the reason."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {sorted(FORMATS)}")
    if fmt == "plain" and len(types) != 1:
        raise ValueError("plain exports one observable type per request: give ?type=")
    if level is not None:
        Level.parse(level)
    options = [("wildcard", "true" if wildcard else "false")]
    if zone is not None:
        from exports.formats import dns_name

        if dns_name(zone) is None:
            raise ValueError(f"zone {zone!r} is not a DNS name")
        options.append(("zone", zone))
    return ExportRequest(fmt, tuple(sorted(set(types))), min_score, tuple(sorted(set(state))),
                         tuple(sorted(set(jurisdiction))), min_agencies, since,
                         level.upper() if level else None, limit, tuple(options))  # fmt: skip


# ---------------------------------------------------------------- route


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v for raw in values or [] for v in raw.split(",") if v)


CSV = Annotated[list[str] | None, Query()]


def exports_router() -> APIRouter:
    """``GET /api/v1/exports/{format}``."""
    r = APIRouter(prefix="/api/v1", tags=["exports"], responses=ERROR_RESPONSES)

    @r.get(
        "/exports/{format}",
        summary="Blocklist export of the records you may see",
        response_class=Response,
    )
    def export(
        request: Request,
        format: str,
        principal: ReaderRole,
        svc: Svc,
        books: Books,
        sharing: Sharing,
        type: CSV = None,
        min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
        state: CSV = None,
        jurisdiction: CSV = None,
        min_agencies: Annotated[int | None, Query(ge=1, le=1000)] = None,
        since: str | None = None,
        level: str | None = None,
        limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
        wildcard: bool = False,
        zone: str | None = None,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        try:
            req = export_request(
                format, types=_split(type), min_score=min_score,
                state=_split(state) or ("active",), jurisdiction=_split(jurisdiction),
                min_agencies=min_agencies, since=since, level=level, limit=limit,
                wildcard=wildcard, zone=zone or svc.settings.exports.rpz_zone,
            )  # fmt: skip
        except ValueError as exc:
            status = 404 if format not in FORMATS else 400
            raise ApiError(
                status, "Not Found" if status == 404 else "Bad Request", str(exc)
            ) from None
        reader = reader_of(principal)
        now = svc.clock.now()
        allow = books.allowlists.allow_list(reader.agency_id)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        try:
            fmt, result = render(
                svc.store, sharing, reader, allow, req, now,
                lambda digest: books.allowlists.serial(
                    reader.agency_id, req.describe(), digest, int(now.timestamp())
                ),
                spool, released=lambda views: books.audit.record_access(
                    principal, "exports.read", views, purpose="read"),
                page=svc.settings.exports.page_size,
            )  # fmt: skip
        except BaseException:
            spool.close()
            raise
        headers = result.headers(fmt)
        if if_none_match is not None and result.etag in {
            t.strip() for t in if_none_match.split(",")
        }:
            spool.close()
            return Response(status_code=304, headers={"ETag": result.etag})
        spool.seek(0)

        def chunks() -> Iterator[bytes]:
            try:
                while chunk := spool.read(CHUNK):
                    yield chunk
            finally:
                spool.close()

        return StreamingResponse(chunks(), media_type=fmt.media_type, headers=headers)

    return r
