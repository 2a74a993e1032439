"""Joint incident cases under ``/api/v1/incidents`` (DOMAIN.md "Joint incident cases").

Routes decode, call ``respond.service.Responder`` (or a pure transition of
respond/cases.py through it), and answer with the caller's own view of the
case (respond/sharing.py): every answer — the case, lists, counts, the
timeline, the report, the STIX form, the live stream — is computed only from
the items the caller may see. Reading needs the analyst, dashboard or admin
role; acting needs analyst or admin. Every action is audited.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from api.deps import ACT_ROLES, READ_ROLES, Books, Cases, CurrentPrincipal
from api.errors import ERROR_RESPONSES, ApiError, FastJSON, not_found
from core import names
from core.access import Principal
from core.clock import parse_timestamp
from core.cursors import decode_cursor, decode_token, encode_cursor, encode_token
from core.errors import BadCursor
from core.policy import Purpose, Reader, reader_of
from records.cases import case_stream_seq_of
from respond import cases as model
from respond import report as reports
from respond import stix
from respond.cases import CaseError, Marking
from respond.service import Responder, actor_of, summary
from respond.sharing import case_view, entry_view

STREAM_LAG_US = 5_000_000


class MarkingIn(BaseModel):
    """An item's own marking: TLP (1.0 or 2.0 scale), RED recipients, audience."""

    tlp: str = Field("amber", description="clear|white|green|amber|amber+strict|red")
    tlp_version: Literal["1.0", "2.0"] = "2.0"
    recipients: list[str] = Field(default_factory=list, description="agency ids (TLP:RED)")
    audience: list[str] = Field(
        default_factory=list, description="agency ids and/or GD/HK/MO; empty: every participant"
    )


class SectorIn(BaseModel):
    sector: str = Field(..., max_length=100)
    critical_infrastructure: bool = False


class OpenIn(BaseModel):
    title: str = Field(..., min_length=1, max_length=300)
    incident_type: str = Field("", max_length=100)
    template: str | None = None
    severity: Literal["RED", "ORANGE", "YELLOW", "BLUE"] | None = None
    determination: str | None = None
    criticality: int | None = Field(None, ge=0, le=100)
    sectors: list[SectorIn] | None = None
    description: str = Field("", max_length=8000)
    tlp: Literal["clear", "green", "amber"] = "amber"
    participants: list[str] = Field(default_factory=list)
    alert_ids: list[str] = Field(default_factory=list)
    record_keys: list[str] = Field(default_factory=list)


class HeaderIn(BaseModel):
    title: str | None = Field(None, max_length=300)
    severity: Literal["RED", "ORANGE", "YELLOW", "BLUE"] | None = None
    determination: str | None = None
    investigation_status: str | None = None
    criticality: int | None = Field(None, ge=0, le=100)
    sectors: list[SectorIn] | None = None
    status: Literal["open", "closed"] | None = None


class DecisionIn(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class AgencyIn(BaseModel):
    agency: str = Field(..., min_length=1, max_length=64)


class LinkIn(BaseModel):
    alert_id: str | None = None
    record_key: str | None = None
    marking: MarkingIn = MarkingIn(tlp="amber")


class TaskIn(BaseModel):
    title: str = Field(..., min_length=1, max_length=300)
    assignee: str
    description: str = Field("", max_length=8000)
    analyst: str | None = Field(None, max_length=200)
    due: str | None = None
    task_types: list[str] = Field(default_factory=list)
    priority: int | None = Field(None, ge=0, le=100)
    marking: MarkingIn = MarkingIn(tlp="amber")


class TaskMoveIn(BaseModel):
    reason: str | None = Field(None, max_length=2000)
    outcome: str | None = None


class NoteIn(BaseModel):
    text: str = Field(..., min_length=1, max_length=8000)
    marking: MarkingIn = MarkingIn(tlp="amber")


class ImpactIn(BaseModel):
    category: str
    description: str = Field("", max_length=8000)
    criticality: int | None = Field(None, ge=0, le=100)
    details: dict[str, Any] = Field(default_factory=dict)
    marking: MarkingIn = MarkingIn(tlp="amber")


class RequestIn(BaseModel):
    request_type: Literal["information", "assistance", "takedown", "blocking"]
    addressee: str
    text: str = Field(..., min_length=1, max_length=8000)
    deadline: str | None = None
    record_keys: list[str] = Field(default_factory=list)
    marking: MarkingIn = MarkingIn(tlp="amber")


class AnswerIn(BaseModel):
    text: str = Field(..., min_length=1, max_length=8000)
    done: bool = True


class EntityIn(BaseModel):
    aware_at: str
    operator_type: Literal["cii", "state-organ", "ci-operator", "other"] = "other"
    serious: bool = False
    critical_infrastructure: bool = False
    sector: str | None = Field(None, max_length=100)
    description: str = Field("", max_length=4000)
    marking: MarkingIn = MarkingIn(tlp="amber")


class AwarenessIn(BaseModel):
    aware_at: str


class ReportedIn(BaseModel):
    reference: str = Field(..., min_length=1, max_length=500)


# ------------------------------------------------------------------ helpers


def _require(principal: Principal, roles: tuple[str, ...]) -> None:
    if not principal.has(*roles):
        raise ApiError(403, "Forbidden", f"this needs one of the roles {list(roles)}")


def _time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ApiError(
            422, "Unprocessable Entity", f"{what} is not an RFC 3339 timestamp"
        ) from None


def _marking(body: MarkingIn) -> Marking:
    found = model.marking_of(body.tlp, body.tlp_version, body.recipients, body.audience)
    if isinstance(found, CaseError):
        raise ApiError(422, "Unprocessable Entity", found.message)
    return found


def _fail(error: CaseError) -> ApiError:
    return ApiError(error.status, "Case error", f"{error.message} ({error.code})")


def _answer(
    responder: Responder, principal: Principal, case_id: str, outcome: Any, status: int = 200
) -> JSONResponse:
    if isinstance(outcome, CaseError):
        raise _fail(outcome)
    if outcome is None:
        raise not_found(f"no case {case_id} visible to you")
    found = responder.view(case_id, reader_of(principal))
    if found is None:
        raise not_found(f"no case {case_id} visible to you")
    return FastJSON(found[1], status_code=status)


def _view(responder: Responder, principal: Principal, case_id: str) -> tuple[Any, Any, Any]:
    _require(principal, READ_ROLES)
    found = responder.view(case_id, reader_of(principal))
    if found is None:
        raise not_found(f"no case {case_id} visible to you")
    return found


def linked_cases(responder: Responder, reader: Reader, alert_id: str) -> list[dict[str, Any]]:
    """The cases linking ``alert_id`` that ``reader`` may see, with that link visible to it
    (the small field of an alert's detail)."""
    ids = responder.books.cases.ids_linking("alert_ids", alert_id)
    out = []
    for case_id in ids:
        found = responder.view(case_id, reader)
        if found is None:
            continue
        view = found[1]
        if any(a["alert_id"] == alert_id for a in view["alerts"]):
            out.append({k: view[k] for k in ("id", "title", "status", "severity")})
    return out


# ------------------------------------------------------------------ stream


async def case_stream(
    request: Request,
    responder: Responder,
    reader: Reader,
    case_id: str | None,
    resumed: int | None,
    *,
    poll_s: float,
    heartbeat_s: float,
    max_events: int | None,
    max_seconds: float | None,
) -> AsyncIterator[bytes]:
    """SSE of case events the reader may see (``Purpose.STREAM``), one case or all of its cases.

    Polls ``threatbay-case-events`` by stream sequence like the alert stream,
    re-reading a short window for late commits; each event is shown only as
    the reader's view of its entry in the case as stored (so an event whose
    item the reader may not see, or that the stored case does not hold, is
    never sent).
    """
    book = responder.books.cases
    floor = resumed if resumed is not None else await asyncio.to_thread(book.latest_seq)
    high = floor
    sent: OrderedDict[str, int] = OrderedDict()
    emitted, idle = 0, 0.0
    yield b": connected\nretry: 2000\n\n"
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + max_seconds if max_seconds is not None else None
    while not await request.is_disconnected():
        if stop_at is not None and loop.time() >= stop_at:
            return
        since = max(high - STREAM_LAG_US, floor)
        page = await asyncio.to_thread(book.events_after, since, [case_id] if case_id else None)
        fresh = [doc for doc, _ in page if doc["id"] not in sent]
        cases = (
            await asyncio.to_thread(book.get_many, sorted({d["case_id"] for d in fresh}))
            if fresh
            else {}
        )
        lookups = responder.lookups([c.doc for c in cases.values()]) if fresh else None
        for doc in fresh:
            sent[doc["id"]] = int(doc["stream_seq"])
            high = max(high, int(doc["stream_seq"]))
            stored = cases.get(doc["case_id"])
            if stored is None or lookups is None:
                continue
            case = stored.doc
            entry = next((e for e in case["timeline"] if e.get("id") == doc["id"]), None)
            if entry is None:
                continue
            seen = entry_view(case, entry, reader, Purpose.STREAM, lookups)
            if seen is None:
                continue
            yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                doc["id"].encode(),
                entry["type"].encode(),
                orjson.dumps({"case_id": case["id"], "event": seen}),
            )
            emitted += 1
            idle = 0.0
            if max_events is not None and emitted >= max_events:
                return
        while sent and next(iter(sent.values())) <= high - STREAM_LAG_US:
            sent.popitem(last=False)
        if not fresh:
            idle += poll_s
            if idle >= heartbeat_s:
                idle = 0.0
                yield b": heartbeat\n\n"
        await asyncio.sleep(poll_s)


# ------------------------------------------------------------------ router


def incidents_router() -> APIRouter:
    """``/api/v1/incidents``: cases, items, clocks, timeline, stream, report, STIX."""
    router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], responses=ERROR_RESPONSES)

    @router.get("")
    def list_incidents(
        principal: CurrentPrincipal,
        responder: Cases,
        status: Literal["proposed", "open", "closed", "declined"] | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> JSONResponse:
        """Cases the caller takes part in, or is invited to (proposals), newest first."""
        _require(principal, READ_ROLES)
        after = decode_cursor(cursor, arity=2) if cursor else None
        items, last, more = responder.list_for(reader_of(principal), status, limit, after)
        return FastJSON(
            {"items": items, "next_cursor": encode_cursor(last) if more and last else None}
        )

    @router.post("", status_code=201)
    def open_incident(body: OpenIn, principal: CurrentPrincipal, responder: Cases) -> JSONResponse:
        """Open a case (the caller's agency leads it), from alerts and with a template."""
        _require(principal, ACT_ROLES)
        outcome = responder.open_case(
            principal,
            title=body.title,
            incident_type=body.incident_type,
            severity=body.severity,
            determination=body.determination,
            criticality=body.criticality,
            sectors=[s.model_dump() for s in body.sectors] if body.sectors is not None else None,
            description=body.description,
            header_tlp=body.tlp,
            participants=body.participants,
            alert_ids=body.alert_ids,
            record_keys=body.record_keys,
            template=body.template,
        )
        if isinstance(outcome, CaseError):
            raise _fail(outcome)
        case, unassigned = outcome
        found = responder.view(case["id"], reader_of(principal))
        assert found is not None
        return FastJSON({**found[1], "unassigned_template_tasks": unassigned}, status_code=201)

    @router.get("/templates")
    def templates(principal: CurrentPrincipal, responder: Cases) -> JSONResponse:
        """The case templates an operator shipped, per incident type."""
        _require(principal, READ_ROLES)
        return FastJSON({"items": [t.summary() for t in (responder.templates or {}).values()]})

    @router.get("/clock-rules")
    def clock_rules(principal: CurrentPrincipal, responder: Cases) -> JSONResponse:
        """The statutory reporting clock rules in force (from the operator's rules file)."""
        _require(principal, READ_ROLES)
        return FastJSON(
            {
                "source": responder.clock_rules.source,
                "stages": [
                    {
                        "jurisdiction": s.jurisdiction,
                        "name": s.name,
                        "law": s.law,
                        "report_to": s.report_to,
                        "within_s": s.within.total_seconds() if s.within else None,
                        "when": dict(s.when),
                    }
                    for s in responder.clock_rules.stages
                ],
            }
        )

    @router.get("/stream", response_class=StreamingResponse)
    async def stream_all(
        request: Request,
        principal: CurrentPrincipal,
        responder: Cases,
        books: Books,
        max_events: Annotated[int | None, Query(ge=1)] = None,
        max_seconds: Annotated[float | None, Query(gt=0, le=3600)] = None,
    ) -> StreamingResponse:
        """Server-Sent Events of every case the caller sees; resume with ``Last-Event-ID``."""
        return _stream(request, principal, responder, books, None, max_events, max_seconds)

    def _stream(
        request: Request,
        principal: Principal,
        responder: Responder,
        books: Books,
        case_id: str | None,
        max_events: int | None,
        max_seconds: float | None,
    ) -> StreamingResponse:
        _require(principal, READ_ROLES)
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        resumed = case_stream_seq_of(last) if last else None
        books.audit.record("incidents.stream", principal, case_id, purpose="stream")
        api = responder.books.cases.store  # noqa: F841 - the store the stream polls
        settings = request.app.state.services.settings.api
        body = case_stream(
            request, responder, reader_of(principal), case_id, resumed,
            poll_s=settings.stream_poll_s, heartbeat_s=settings.stream_heartbeat_s,
            max_events=max_events, max_seconds=max_seconds,
        )  # fmt: skip
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/{case_id}")
    def get_incident(case_id: str, principal: CurrentPrincipal, responder: Cases) -> JSONResponse:
        """One case as the caller may see it (header, items, clocks, counts)."""
        _case, view, _ = _view(responder, principal, case_id)
        responder.books.audit.record("incidents.read", principal, case_id, purpose="read")
        return FastJSON(view)

    @router.patch("/{case_id}")
    def update_incident(
        case_id: str, body: HeaderIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """The lead changes severity, determination, status, criticality, sectors, title."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        changes = body.model_dump(exclude_none=True)
        if body.sectors is not None:
            changes["sectors"] = [s.model_dump() for s in body.sectors]
        outcome = responder.act(
            principal, case_id, "update",
            lambda c: model.update_header(c, actor, responder.now, changes),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    def _decide(case_id: str, principal: Principal, responder: Responder, accept: bool,
                reason: str | None) -> JSONResponse:  # fmt: skip
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        outcome = responder.act(
            principal, case_id, "accept" if accept else "decline",
            lambda c: model.decide_proposal(c, actor, responder.now, accept, reason),
        )  # fmt: skip
        if isinstance(outcome, CaseError):
            raise _fail(outcome)
        found = responder.view(case_id, reader_of(principal))
        return FastJSON(found[1] if found else {"id": case_id, "declined": True})

    @router.post("/{case_id}/accept")
    def accept(
        case_id: str, principal: CurrentPrincipal, responder: Cases, body: DecisionIn | None = None
    ) -> JSONResponse:
        """A proposed jurisdiction joins (the first to accept opens the case and leads it)."""
        return _decide(case_id, principal, responder, True, body.reason if body else None)

    @router.post("/{case_id}/decline")
    def decline(
        case_id: str, principal: CurrentPrincipal, responder: Cases, body: DecisionIn | None = None
    ) -> JSONResponse:
        """A proposed jurisdiction declines, with a reason."""
        return _decide(case_id, principal, responder, False, body.reason if body else None)

    @router.post("/{case_id}/participants", status_code=201)
    def add_participant(
        case_id: str, body: AgencyIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """The lead adds an agency."""
        _require(principal, ACT_ROLES)
        outcome = responder.add_participant(principal, case_id, body.agency)
        return _answer(responder, principal, case_id, outcome, 201)

    @router.post("/{case_id}/lead")
    def transfer_lead(
        case_id: str, body: AgencyIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """The lead hands the lead to another participant (recorded on the timeline)."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        outcome = responder.act(
            principal, case_id, "lead",
            lambda c: model.transfer_lead(c, actor, responder.now, body.agency),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    @router.post("/{case_id}/links", status_code=201)
    def link(
        case_id: str, body: LinkIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """Link an alert (``alert_id``) or an indicator record (``record_key``) you may see."""
        _require(principal, ACT_ROLES)
        if bool(body.alert_id) == bool(body.record_key):
            raise ApiError(422, "Unprocessable Entity", "give exactly one of alert_id, record_key")
        kind, target = ("alert", body.alert_id) if body.alert_id else ("record", body.record_key)
        assert target is not None
        outcome = responder.link(principal, case_id, kind, target, _marking(body.marking))
        return _answer(responder, principal, case_id, outcome, 201)

    @router.delete("/{case_id}/links/{item_id}")
    def unlink(
        case_id: str, item_id: str, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """Unlink an alert or record (who linked it, or the lead)."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        outcome = responder.act(
            principal, case_id, "unlink", lambda c: model.unlink(c, actor, responder.now, item_id),
            item=item_id,
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    @router.post("/{case_id}/tasks", status_code=201)
    def add_task(
        case_id: str, body: TaskIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """Assign a task to a participating agency (optionally a named analyst), with a due time."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        due = _time(body.due, "due")
        marking = _marking(body.marking)
        outcome = responder.act(
            principal, case_id, "task",
            lambda c: model.add_task(
                c, actor, responder.now, title=body.title, assignee=body.assignee,
                description=body.description, analyst=body.analyst, due=due,
                task_types=body.task_types, priority=body.priority, marking=marking),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome, 201)

    @router.post("/{case_id}/tasks/{item_id}/{move}")
    def move_task(
        case_id: str,
        item_id: str,
        move: Literal["accept", "decline", "start", "done", "cancel"],
        principal: CurrentPrincipal,
        responder: Cases,
        body: TaskMoveIn | None = None,
    ) -> JSONResponse:
        """The assignee accepts, declines (with a reason), starts or completes (with an OASIS
        outcome); the author, assignee or lead cancels."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        reason = body.reason if body else None
        outcome_value = body.outcome if body else None
        outcome = responder.act(
            principal, case_id, f"task_{move}",
            lambda c: model.move_task(c, actor, responder.now, item_id, move, reason=reason,
                                      outcome=outcome_value),
            item=item_id,
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    @router.post("/{case_id}/notes", status_code=201)
    def add_note(
        case_id: str, body: NoteIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """A note under its own marking."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        marking = _marking(body.marking)
        outcome = responder.act(
            principal, case_id, "note",
            lambda c: model.add_note(c, actor, responder.now, body.text, marking),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome, 201)

    @router.post("/{case_id}/impacts", status_code=201)
    def add_impact(
        case_id: str, body: ImpactIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """An impact in the caller's jurisdiction; ``details`` are the OASIS category properties."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        marking = _marking(body.marking)
        probe = {
            "type": "impact", "spec_version": "2.1",
            "id": "impact--00000000-0000-4000-8000-000000000000",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "impact_category": body.category,
            "extensions": {stix.IMPACT_EXT: {"extension_type": "new-sdo"},
                           body.category: body.details},
        }  # fmt: skip
        errors = stix.schema_errors(probe)
        if errors:
            raise ApiError(422, "Unprocessable Entity", "impact: " + "; ".join(errors[:3]))
        outcome = responder.act(
            principal, case_id, "impact",
            lambda c: model.add_impact(
                c, actor, responder.now, category=body.category, description=body.description,
                criticality=body.criticality, details=body.details, marking=marking),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome, 201)

    @router.post("/{case_id}/requests", status_code=201)
    def add_request(
        case_id: str, body: RequestIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """A request to another jurisdiction's agency (information, assistance, takedown,
        blocking with the records to block), with a deadline."""
        _require(principal, ACT_ROLES)
        outcome = responder.request(
            principal, case_id, request_type=body.request_type, addressee=body.addressee,
            text=body.text, deadline=_time(body.deadline, "deadline"),
            record_keys=body.record_keys, marking=_marking(body.marking),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome, 201)

    @router.post("/{case_id}/requests/{item_id}/answer")
    def answer_request(
        case_id: str, item_id: str, body: AnswerIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """The addressee answers (``done: false`` refuses)."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        outcome = responder.act(
            principal, case_id, "answer",
            lambda c: model.answer_request(c, actor, responder.now, item_id, body.text, body.done),
            item=item_id,
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    @router.get("/{case_id}/requests/{item_id}/blocklist")
    def request_blocklist(
        case_id: str, item_id: str, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """The attached records of a takedown / blocking request the caller may see, by type."""
        case, view, lookups = _view(responder, principal, case_id)
        req = next((r for r in view["requests"] if r["id"] == item_id), None)
        if req is None:
            raise not_found(f"no request {item_id} visible to you")
        reader = reader_of(principal)
        values: dict[str, list[str]] = {}
        for key in req["record_keys"]:
            decision = lookups.decide_record(key, reader, Purpose.READ)
            if decision is not None and decision.shown and decision.view is not None:
                kind = str(decision.view.get("observable_type"))
                values.setdefault(kind, []).append(str(decision.view.get("value")))
        return FastJSON({"request": item_id, "values": {k: sorted(v) for k, v in values.items()}})

    @router.post("/{case_id}/entities", status_code=201)
    def report_entity(
        case_id: str, body: EntityIn, principal: CurrentPrincipal, responder: Cases
    ) -> JSONResponse:
        """An affected entity of the caller's jurisdiction and when it became aware: starts the
        statutory clocks its facts call for."""
        _require(principal, ACT_ROLES)
        aware = _time(body.aware_at, "aware_at")
        assert aware is not None
        outcome = responder.report_entity(
            principal, case_id, aware_at=aware, operator_type=body.operator_type,
            serious=body.serious, critical_infrastructure=body.critical_infrastructure,
            sector=body.sector, description=body.description, marking=_marking(body.marking),
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome, 201)

    @router.put("/{case_id}/entities/{item_id}/awareness")
    def set_awareness(
        case_id: str, item_id: str, body: AwarenessIn, principal: CurrentPrincipal,
        responder: Cases,
    ) -> JSONResponse:  # fmt: skip
        """The reporting jurisdiction corrects the awareness time (audited; clocks move)."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        aware = _time(body.aware_at, "aware_at")
        assert aware is not None
        outcome = responder.act(
            principal, case_id, "awareness",
            lambda c: model.set_awareness(c, actor, responder.now, item_id, aware), item=item_id,
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    @router.post("/{case_id}/clocks/{clock_id}/reported")
    def mark_reported(
        case_id: str, clock_id: str, body: ReportedIn, principal: CurrentPrincipal,
        responder: Cases,
    ) -> JSONResponse:  # fmt: skip
        """Mark a statutory report made (who, when, reference): the clock is met."""
        _require(principal, ACT_ROLES)
        actor = actor_of(principal)
        outcome = responder.act(
            principal, case_id, "clock_reported",
            lambda c: model.mark_reported(c, actor, responder.now, clock_id, body.reference),
            item=clock_id,
        )  # fmt: skip
        return _answer(responder, principal, case_id, outcome)

    @router.get("/{case_id}/timeline")
    def timeline(
        case_id: str,
        principal: CurrentPrincipal,
        responder: Cases,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: str | None = None,
    ) -> JSONResponse:
        """The merged timeline (case entries and linked alerts' events), oldest first, paged."""
        case, _view_, lookups = _view(responder, principal, case_id)
        entries = responder.timeline(case, reader_of(principal), lookups)
        if cursor:
            after = decode_token(cursor)
            if not (isinstance(after, list) and len(after) == 2 and all(
                    isinstance(v, str) for v in after)):  # fmt: skip
                raise BadCursor("cursor is not valid")
            entries = [e for e in entries if (e["at"], e["id"]) > (after[0], after[1])]
        page = entries[:limit]
        more = len(entries) > limit
        return FastJSON(
            {
                "items": page,
                "next_cursor": encode_token([page[-1]["at"], page[-1]["id"]]) if more else None,
            }
        )

    @router.get("/{case_id}/audit")
    def audit(case_id: str, principal: CurrentPrincipal, responder: Cases) -> JSONResponse:
        """The case's audit trail as the caller may see it: every action, who, when."""
        case, _v, lookups = _view(responder, principal, case_id)
        return FastJSON(
            {"items": reports.audit_trail(responder.timeline(case, reader_of(principal), lookups))}
        )

    @router.get("/{case_id}/report")
    def report(
        case_id: str,
        principal: CurrentPrincipal,
        responder: Cases,
        format: Literal["json", "html", "pdf"] = "json",
    ) -> Response:
        """The case report for the caller (exactly what it may see), JSON, HTML or PDF."""
        case, view, lookups = _view(responder, principal, case_id)
        entries = responder.timeline(case, reader_of(principal), lookups)
        who = {"agency": principal.agency.id, "jurisdiction": principal.agency.jurisdiction}
        responder.books.audit.record("incidents.report", principal, case_id, purpose="read")
        if format == "html":
            return Response(reports.report_html(view, entries, who),
                            media_type="text/html; charset=utf-8")  # fmt: skip
        if format == "pdf":
            return Response(reports.report_pdf(view, entries, who), media_type="application/pdf")
        return FastJSON(reports.report_json(view, entries, who))

    @router.get("/{case_id}/stix")
    def stix_form(case_id: str, principal: CurrentPrincipal, responder: Cases) -> JSONResponse:
        """The case as a STIX 2.1 bundle for the caller (see also its TAXII collection)."""
        _require(principal, READ_ROLES)
        objects = stix_objects(responder, principal, case_id, Purpose.READ)
        return FastJSON(stix.bundle(objects, case_id, principal.agency.id))

    @router.get("/{case_id}/stream", response_class=StreamingResponse)
    async def stream_case(
        case_id: str,
        request: Request,
        principal: CurrentPrincipal,
        responder: Cases,
        books: Books,
        max_events: Annotated[int | None, Query(ge=1)] = None,
        max_seconds: Annotated[float | None, Query(gt=0, le=3600)] = None,
    ) -> StreamingResponse:
        """Server-Sent Events of one case, per reader; resume with ``Last-Event-ID``."""
        _require(principal, READ_ROLES)
        found = await asyncio.to_thread(responder.view, case_id, reader_of(principal))
        if found is None:
            raise not_found(f"no case {case_id} visible to you")
        return _stream(request, principal, responder, books, case_id, max_events, max_seconds)

    return router


def stix_objects(
    responder: Responder, principal: Principal, case_id: str, purpose: Purpose
) -> list[dict[str, Any]]:
    """The caller's STIX form of a case (respond/stix.py), with the linked indicators it may
    receive for ``purpose``; 404 when it may not see the case."""
    from api.taxii.sharing import view_of
    from core.ports import Query as StoreQuery
    from core.ports import Term

    reader = reader_of(principal)
    found = responder.view(case_id, reader, purpose)
    if found is None:
        raise not_found(f"no case {case_id} visible to you")
    case, view, lookups = found
    entries = responder.timeline(case, reader, lookups, purpose)
    parties = {}
    for p in view["participants"]:
        try:
            agency = responder.books.agencies.get(p["agency"])
        except Exception:  # noqa: BLE001 - an agency removed since: no identity object
            continue
        parties[agency.id] = stix.Party(agency.identity_id, agency.name)
    ids = sorted({sid for r in view["records"] for sid in r["record"].get("stix_ids", [])})
    indicators: list[dict[str, Any]] = []
    if ids:
        page = responder.books.cases.store.search(
            names.INDEX_OBJECTS,
            StoreQuery(filters=(Term("id", tuple(ids)), Term("is_latest", (True,))), limit=500),
        )
        sharing = responder.sharing
        seen: set[str] = set()
        for hit in page.hits:
            obj = view_of(sharing, reader, hit.doc)
            if obj is not None and obj["id"] not in seen:
                seen.add(obj["id"])
                indicators.append(obj)
    return stix.case_objects(view, entries, parties, indicators)


__all__ = ["incidents_router", "linked_cases", "stix_objects", "summary", "case_view"]
