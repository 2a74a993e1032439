"""Joint incident cases: the case document and its pure transitions.

DOMAIN.md "Joint incident cases".

A case is a plain JSON-ready dict stored as is in ``threatbay-cases``
(records/cases.py). Every transition here is a pure function of the case, the
acting agency, its input and an explicit ``now``; it returns the new case and
the timeline entries it appended, or a ``CaseError`` value. No I/O.

Header (visible to every participant): title, incident type, status
(``proposed`` -> ``open`` -> ``closed``, or ``declined``), lead agency (each
transfer recorded), participants, severity (the warning levels), the OASIS
``determination`` and ``investigation_status``, criticality, sectors.
Items (each with its own TLP 1.0/2.0 marking, RED recipients and audience;
respond/sharing.py decides who sees which): linked alerts and records, tasks,
notes, impacts, requests, affected entities (whose awareness time starts the
statutory clocks). A marking is fixed when the item is written: there is no
"create, then restrict" window.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.alerts import Level
from core.clock import format_timestamp, parse_timestamp
from core.markings import normalise_tlp
from respond.clocks import ClockRules, new_clock

Case = dict[str, Any]
Entry = dict[str, Any]
Item = dict[str, Any]
Transition = tuple[Case, list[Entry]]

CASE_NS = uuid.UUID("a7c1e0f4-2b3d-4e5f-8a9b-0c1d2e3f4a5b")

PROPOSED, OPEN, CLOSED, DECLINED = "proposed", "open", "closed", "declined"
SEVERITIES = tuple(level.value for level in Level)
# OASIS Incident Core Extension (incident-core 2.0 prose): determination is an enum whose
# prose and JSON schema disagree; these are the values both accept plus the prose's.
DETERMINATIONS = ("suspected", "confirmed", "blocked", "failed-attempt", "false-positive")
INVESTIGATION_STATUSES = ("new", "open", "closed")
# OASIS task extension: task-outcome-enum.
TASK_OUTCOMES = ("successful", "failed", "cancelled", "ongoing", "pending", "unknown")
TASK_STATUSES = ("pending", "accepted", "declined", "in_progress", "done", "cancelled")
_TASK_MOVES = {
    "accept": ({"pending"}, "accepted"),
    "decline": ({"pending"}, "declined"),
    "start": ({"accepted", "pending"}, "in_progress"),
    "done": ({"accepted", "in_progress"}, "done"),
    "cancel": ({"pending", "accepted", "in_progress"}, "cancelled"),
}
_OPEN_TASK = frozenset({"pending", "accepted", "in_progress"})
REQUEST_TYPES = ("information", "assistance", "takedown", "blocking")
# OASIS impact extension categories (each also names the category extension it carries).
IMPACT_CATEGORIES = (
    "availability",
    "confidentiality",
    "external",
    "integrity",
    "monetary",
    "physical",
    "traceability",
)
ITEM_KINDS = ("alert", "record", "task", "note", "impact", "request", "entity")
#: Markings a case header may carry: every participant must be able to read it.
HEADER_TLPS = ("clear", "green", "amber")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an agency of a jurisdiction (the platform acts as ``threatbay``)."""

    agency: str
    jurisdiction: str


PLATFORM = Actor("threatbay", "")


@dataclass(frozen=True, slots=True)
class CaseError:
    """A refused transition, as a value (``code`` is stable; ``status`` the HTTP answer)."""

    code: str
    message: str
    status: int = 422


@dataclass(frozen=True, slots=True)
class Marking:
    """An item's own releasability: TLP (1.0 or 2.0), RED recipients, audience."""

    tlp: str = "amber"
    tlp_version: str = "2.0"
    recipients: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {
            "tlp": self.tlp,
            "tlp_version": self.tlp_version,
            "recipients": sorted(set(self.recipients)),
            "audience": sorted(set(self.audience)),
        }


def marking_of(
    tlp: str | None,
    tlp_version: str | None = None,
    recipients: Iterable[str] = (),
    audience: Iterable[str] = (),
) -> Marking | CaseError:
    """A checked marking; an unknown TLP fails closed (DOMAIN.md: unknown markings fail closed)."""
    try:
        level = normalise_tlp(tlp or "amber")
    except ValueError as exc:
        return CaseError("bad_marking", str(exc))
    version = tlp_version or "2.0"
    if version not in ("1.0", "2.0"):
        return CaseError("bad_marking", "tlp_version must be '1.0' or '2.0'")
    if version == "1.0" and level == "amber+strict":
        return CaseError("bad_marking", "TLP 1.0 has no AMBER+STRICT; use tlp_version 2.0")
    return Marking(level, version, tuple(recipients), tuple(audience))


# ------------------------------------------------------------------ helpers


def _ts(when: datetime) -> str:
    return format_timestamp(when)


def case_id_for_alert(alert_id: str) -> str:
    """The proposal an alert gives is always the same case (replays change nothing)."""
    return f"incident--{uuid.uuid5(CASE_NS, 'proposal|' + alert_id)}"


def new_case_id() -> str:
    return f"incident--{uuid.uuid4()}"


def new_item_id() -> str:
    return str(uuid.uuid4())


def _entry(
    case: Case,
    now: datetime,
    kind: str,
    actor: Actor,
    item: str | None = None,
    notify: Sequence[str] = (),
    **fields: Any,
) -> Entry:
    entry: Entry = {
        "at": _ts(now),
        "type": kind,
        "by": actor.agency,
        "jurisdiction": actor.jurisdiction,
    }
    if item is not None:
        entry["item"] = item
    if notify:
        entry["notify"] = sorted(set(notify))
    entry.update(fields)
    case["timeline"].append(entry)
    return entry


def participants(case: Case) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = case["participants"]
    return found


def is_participant(case: Case, agency: str) -> bool:
    return agency in case["participants"]


def _lead(case: Case) -> str:
    return str(case["lead"]["agency"]) if case.get("lead") else ""


def _refresh(case: Case, now: datetime) -> None:
    """Recompute the searchable fields derived from the case body."""
    case["participant_ids"] = sorted(case["participants"])
    proposal = case.get("proposal")
    case["proposed_jurisdictions"] = (
        sorted(j for j in proposal["jurisdictions"] if j not in proposal["decisions"])
        if proposal and case["status"] in (PROPOSED, OPEN)
        else []
    )
    items = case["items"].values()
    case["alert_ids"] = sorted(
        i["alert_id"] for i in items if i["kind"] == "alert" and not i.get("removed")
    )
    case["record_keys"] = sorted(
        i["record_key"] for i in items if i["kind"] == "record" and not i.get("removed")
    )
    case["next_deadline"] = next_deadline(case) if case["status"] == OPEN else None
    case["updated"] = _ts(now)


def next_deadline(case: Case) -> str | None:
    """The earliest moment the respond tick has something to do for this case."""
    times: list[str] = []
    for item in case["items"].values():
        if item["kind"] == "task" and item["status"] in _OPEN_TASK and item.get("due"):
            times.append(item["next_escalation"] if item.get("overdue") else item["due"])
        elif item["kind"] == "request" and item["status"] == "open" and item.get("deadline"):
            times.append(item["next_escalation"] if item.get("overdue") else item["deadline"])
    for clock in case["clocks"].values():
        if clock["status"] != "running" or not clock["due"]:
            continue
        due = parse_timestamp(clock["due"])
        if not clock["reminded"]:
            times.append(_ts(due - timedelta(seconds=clock["remind_before_s"])))
        else:
            times.append(clock["due"])
    return min(times) if times else None


def _item(case: Case, item_id: str, kind: str) -> Item | CaseError:
    item = case["items"].get(item_id)
    if item is None or item["kind"] != kind or item.get("removed"):
        return CaseError("not_found", f"no {kind} {item_id} in this case", 404)
    found: Item = item
    return found


def _text(
    value: str | None, what: str, limit: int = 8000, required: bool = False
) -> str | CaseError:
    text = (value or "").strip()
    if required and not text:
        return CaseError("empty", f"{what} is empty")
    if len(text) > limit:
        return CaseError("too_long", f"{what} is longer than {limit} characters")
    return text


def _need_open(case: Case) -> CaseError | None:
    if case["status"] != OPEN:
        return CaseError("not_open", f"the case is {case['status']}", 409)
    return None


def _need_participant(case: Case, actor: Actor) -> CaseError | None:
    if not is_participant(case, actor.agency):
        return CaseError("not_participant", f"{actor.agency} does not take part in this case", 403)
    return None


def _need_lead(case: Case, actor: Actor) -> CaseError | None:
    if _lead(case) != actor.agency:
        return CaseError("not_lead", f"only the lead agency ({_lead(case)}) may do this", 403)
    return None


def _check_header(
    severity: str | None,
    determination: str | None,
    investigation_status: str | None,
    criticality: int | None,
) -> CaseError | None:
    if severity is not None and severity not in SEVERITIES:
        return CaseError("bad_severity", f"severity must be one of {list(SEVERITIES)}")
    if determination is not None and determination not in DETERMINATIONS:
        return CaseError(
            "bad_determination", f"determination must be one of {list(DETERMINATIONS)}"
        )
    if investigation_status is not None and investigation_status not in INVESTIGATION_STATUSES:
        return CaseError(
            "bad_investigation_status",
            f"investigation_status must be one of {list(INVESTIGATION_STATUSES)}",
        )
    if criticality is not None and not 0 <= criticality <= 100:
        return CaseError("bad_criticality", "criticality must be 0..100")
    return None


def _sectors(sectors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = {
        str(s["sector"]).strip().lower(): bool(s.get("critical_infrastructure", False))
        for s in sectors
        if str(s.get("sector", "")).strip()
    }
    return [{"sector": k, "critical_infrastructure": v} for k, v in sorted(out.items())]


# --------------------------------------------------------------------- open


def _blank(
    case_id: str,
    now: datetime,
    title: str,
    incident_type: str,
    severity: str,
    header_tlp: str,
) -> Case:
    return {
        "id": case_id,
        "status": OPEN,
        "title": title,
        "incident_type": incident_type,
        "incident_types": [incident_type] if incident_type else [],
        "template": None,
        "description": "",
        "created": _ts(now),
        "created_by": "",
        "created_jurisdiction": "",
        "updated": _ts(now),
        "lead": None,
        "participants": {},
        "proposal": None,
        "source_alert": None,
        "severity": severity,
        "determination": "suspected",
        "investigation_status": "new",
        "criticality": 50,
        "sectors": [],
        "tlp": header_tlp,
        "items": {},
        "clocks": {},
        "timeline": [],
    }


def open_case(
    actor: Actor,
    now: datetime,
    *,
    title: str,
    incident_type: str = "",
    severity: str = "ORANGE",
    determination: str = "suspected",
    investigation_status: str = "open",
    criticality: int = 50,
    sectors: Iterable[Mapping[str, Any]] = (),
    description: str = "",
    header_tlp: str = "amber",
    participants_of: Mapping[str, str] | None = None,
    template: str | None = None,
    case_id: str | None = None,
) -> Transition | CaseError:
    """An analyst opens a case and leads it; ``participants_of`` maps agency -> jurisdiction."""
    text = _text(title, "title", 300, required=True)
    if isinstance(text, CaseError):
        return text
    desc = _text(description, "description", 8000)
    if isinstance(desc, CaseError):
        return desc
    problem = _check_header(severity, determination, investigation_status, criticality)
    if problem:
        return problem
    if header_tlp not in HEADER_TLPS:
        return CaseError("bad_marking", f"the case header's TLP must be one of {list(HEADER_TLPS)}")
    case = _blank(case_id or new_case_id(), now, text, incident_type, severity, header_tlp)
    case.update(
        determination=determination,
        investigation_status=investigation_status,
        criticality=criticality,
        sectors=_sectors(sectors),
        description=desc,
        template=template,
        created_by=actor.agency,
        created_jurisdiction=actor.jurisdiction,
        lead={"agency": actor.agency, "jurisdiction": actor.jurisdiction, "since": _ts(now)},
    )
    case["participants"][actor.agency] = {"jurisdiction": actor.jurisdiction, "joined_at": _ts(now)}
    others = {a: j for a, j in (participants_of or {}).items() if a != actor.agency}
    for agency, jurisdiction in sorted(others.items()):
        case["participants"][agency] = {"jurisdiction": jurisdiction, "joined_at": _ts(now)}
    entries = [
        _entry(case, now, "opened", actor, notify=sorted(others), lead=actor.agency,
               participants=sorted(case["participants"]))
    ]  # fmt: skip
    _refresh(case, now)
    return case, entries


def propose_from_alert(alert: Mapping[str, Any], now: datetime) -> Transition:
    """A proposal for an alert at ORANGE or above concerning several jurisdictions.

    Each concerned jurisdiction accepts or declines; the first acceptance opens
    the case with the accepting agency as lead (``decide_proposal``).
    """
    level = str(alert.get("level", "ORANGE"))
    case = _blank(
        case_id_for_alert(str(alert["id"])),
        now,
        f"Joint response: {alert.get('title', alert['id'])}"[:300],
        "",
        level if level in SEVERITIES else "ORANGE",
        "amber",
    )
    case["status"] = PROPOSED
    case["created_by"] = PLATFORM.agency
    case["source_alert"] = alert["id"]
    case["proposal"] = {
        "alert_id": alert["id"],
        "jurisdictions": sorted(alert.get("jurisdictions") or []),
        "decisions": {},
    }
    case["items"] = {}
    link = _link_item("alert", str(alert["id"]), PLATFORM, now, Marking("amber"))
    case["items"][link["id"]] = link
    entries = [
        _entry(
            case,
            now,
            "proposed",
            PLATFORM,
            alert_id=alert["id"],
            level=level,
            jurisdictions=case["proposal"]["jurisdictions"],
        )
    ]
    _refresh(case, now)
    return case, entries


def decide_proposal(
    case: Case, actor: Actor, now: datetime, accept: bool, reason: str | None = None
) -> Transition | CaseError:
    """A proposed jurisdiction accepts (joins; the first opens the case and leads) or declines."""
    proposal = case.get("proposal")
    if not proposal or actor.jurisdiction not in proposal["jurisdictions"]:
        return CaseError("not_proposed", "this case was not proposed to your jurisdiction", 403)
    if actor.jurisdiction in proposal["decisions"]:
        done = proposal["decisions"][actor.jurisdiction]
        return CaseError(
            "already_decided", f"{actor.jurisdiction} already {done['decision']} it", 409
        )
    if case["status"] not in (PROPOSED, OPEN):
        return CaseError("not_open", f"the case is {case['status']}", 409)
    why = _text(reason, "reason", 2000)
    if isinstance(why, CaseError):
        return why
    out = copy.deepcopy(case)
    p = out["proposal"]
    p["decisions"][actor.jurisdiction] = {
        "decision": "accepted" if accept else "declined",
        "by": actor.agency,
        "at": _ts(now),
        "reason": why or None,
    }
    entries: list[Entry] = []
    if accept:
        out["participants"][actor.agency] = {
            "jurisdiction": actor.jurisdiction,
            "joined_at": _ts(now),
        }
        if out["status"] == PROPOSED:
            out["status"] = OPEN
            out["investigation_status"] = "open"
            out["lead"] = {
                "agency": actor.agency,
                "jurisdiction": actor.jurisdiction,
                "since": _ts(now),
            }
            out["created_jurisdiction"] = actor.jurisdiction
        entries.append(_entry(out, now, "proposal_accepted", actor, lead=out["lead"]["agency"]))
    else:
        entries.append(_entry(out, now, "proposal_declined", actor, reason=why or None))
        if out["status"] == PROPOSED and set(p["decisions"]) >= set(p["jurisdictions"]):
            out["status"] = DECLINED
    _refresh(out, now)
    return out, entries


# ------------------------------------------------------------ header, lead


def add_participant(
    case: Case, actor: Actor, now: datetime, agency: str, jurisdiction: str
) -> Transition | CaseError:
    """The lead adds an agency (of any jurisdiction) to the case."""
    problem = _need_open(case) or _need_lead(case, actor)
    if problem:
        return problem
    if is_participant(case, agency):
        return CaseError("already_participant", f"{agency} already takes part", 409)
    out = copy.deepcopy(case)
    out["participants"][agency] = {"jurisdiction": jurisdiction, "joined_at": _ts(now)}
    entries = [_entry(out, now, "participant_added", actor, notify=[agency], agency=agency,
                      agency_jurisdiction=jurisdiction)]  # fmt: skip
    _refresh(out, now)
    return out, entries


def transfer_lead(
    case: Case, actor: Actor, now: datetime, to_agency: str
) -> Transition | CaseError:
    """The lead hands the lead to another participant; the transfer is recorded."""
    problem = _need_open(case) or _need_lead(case, actor)
    if problem:
        return problem
    if not is_participant(case, to_agency):
        return CaseError("not_participant", f"{to_agency} does not take part in this case", 422)
    if to_agency == actor.agency:
        return CaseError("same_lead", "you already lead this case", 409)
    out = copy.deepcopy(case)
    previous = out["lead"]
    to_j = out["participants"][to_agency]["jurisdiction"]
    out["lead"] = {"agency": to_agency, "jurisdiction": to_j, "since": _ts(now)}
    entries = [
        _entry(out, now, "lead_changed", actor, notify=sorted(out["participants"]),
               previous=previous["agency"], lead=to_agency, lead_jurisdiction=to_j)
    ]  # fmt: skip
    _refresh(out, now)
    return out, entries


def update_header(
    case: Case,
    actor: Actor,
    now: datetime,
    changes: Mapping[str, Any],
) -> Transition | CaseError:
    """The lead changes severity, determination, investigation status, criticality, sectors,
    title or status (``closed`` / ``open``)."""
    problem = _need_lead(case, actor)
    if problem:
        return problem
    problem = _check_header(
        changes.get("severity"),
        changes.get("determination"),
        changes.get("investigation_status"),
        changes.get("criticality"),
    )
    if problem:
        return problem
    out = copy.deepcopy(case)
    changed: dict[str, Any] = {}
    for key in ("severity", "determination", "investigation_status", "criticality", "title"):
        if key in changes and changes[key] is not None and changes[key] != out.get(key):
            if key == "title":
                text = _text(changes[key], "title", 300, required=True)
                if isinstance(text, CaseError):
                    return text
                changes = {**changes, key: text}
            changed[key] = {"from": out.get(key), "to": changes[key]}
            out[key] = changes[key]
    if changes.get("sectors") is not None:
        sectors = _sectors(changes["sectors"])
        if sectors != out["sectors"]:
            changed["sectors"] = {"from": out["sectors"], "to": sectors}
            out["sectors"] = sectors
    status = changes.get("status")
    if status is not None and status != out["status"]:
        if status not in (OPEN, CLOSED) or out["status"] not in (OPEN, CLOSED):
            return CaseError("bad_status", f"a {out['status']} case cannot become {status}", 409)
        changed["status"] = {"from": out["status"], "to": status}
        out["status"] = status
        if status == CLOSED:
            out["investigation_status"] = "closed"
    if not changed:
        return case, []
    entries = [_entry(out, now, "updated", actor, changes=changed)]
    _refresh(out, now)
    return out, entries


# -------------------------------------------------------------------- items


def _base_item(kind: str, actor: Actor, now: datetime, marking: Marking) -> Item:
    return {
        "id": new_item_id(),
        "kind": kind,
        "at": _ts(now),
        "updated_at": _ts(now),
        "by": actor.agency,
        "jurisdiction": actor.jurisdiction,
        **marking.fields(),
    }


def _link_item(kind: str, target: str, actor: Actor, now: datetime, marking: Marking) -> Item:
    item = _base_item(kind, actor, now, marking)
    item["alert_id" if kind == "alert" else "record_key"] = target
    return item


def link(
    case: Case, actor: Actor, now: datetime, kind: str, target: str, marking: Marking
) -> Transition | CaseError:
    """Link an alert or an indicator record (the caller checked it may see it)."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    field_name = "alert_id" if kind == "alert" else "record_key"
    for item in case["items"].values():
        if item["kind"] == kind and item[field_name] == target and not item.get("removed"):
            return CaseError("already_linked", f"{target} is already linked", 409)
    out = copy.deepcopy(case)
    item = _link_item(kind, target, actor, now, marking)
    out["items"][item["id"]] = item
    entries = [_entry(out, now, f"{kind}_linked", actor, item=item["id"], target=target)]
    _refresh(out, now)
    return out, entries


def unlink(case: Case, actor: Actor, now: datetime, item_id: str) -> Transition | CaseError:
    """Remove a link (its author or the lead); the timeline keeps that it was linked."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    item = case["items"].get(item_id)
    if item is None or item["kind"] not in ("alert", "record") or item.get("removed"):
        return CaseError("not_found", f"no linked alert or record {item_id}", 404)
    if actor.agency not in (item["by"], _lead(case)):
        return CaseError("not_author", "only who linked it or the lead may unlink it", 403)
    out = copy.deepcopy(case)
    out["items"][item_id]["removed"] = {"by": actor.agency, "at": _ts(now)}
    kind = item["kind"]
    target = item["alert_id" if kind == "alert" else "record_key"]
    entries = [_entry(out, now, f"{kind}_unlinked", actor, item=item_id, target=target)]
    _refresh(out, now)
    return out, entries


def add_note(
    case: Case, actor: Actor, now: datetime, text: str, marking: Marking
) -> Transition | CaseError:
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    body = _text(text, "note", 8000, required=True)
    if isinstance(body, CaseError):
        return body
    out = copy.deepcopy(case)
    item = _base_item("note", actor, now, marking)
    item["text"] = body
    out["items"][item["id"]] = item
    entries = [_entry(out, now, "note_added", actor, item=item["id"])]
    _refresh(out, now)
    return out, entries


def add_task(
    case: Case,
    actor: Actor,
    now: datetime,
    *,
    title: str,
    assignee: str,
    description: str = "",
    analyst: str | None = None,
    due: datetime | None = None,
    task_types: Sequence[str] = (),
    priority: int | None = None,
    marking: Marking,
) -> Transition | CaseError:
    """A participant assigns a task to a participating agency (optionally a named analyst)."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    if not is_participant(case, assignee):
        return CaseError("not_participant", f"assignee {assignee} does not take part", 422)
    name = _text(title, "title", 300, required=True)
    desc = _text(description, "description", 8000)
    for value in (name, desc):
        if isinstance(value, CaseError):
            return value
    if priority is not None and not 0 <= priority <= 100:
        return CaseError("bad_priority", "priority must be 0..100")
    out = copy.deepcopy(case)
    item = _base_item("task", actor, now, marking)
    item.update(
        title=name,
        description=desc,
        assignee=assignee,
        assignee_jurisdiction=out["participants"][assignee]["jurisdiction"],
        analyst=(analyst or "").strip()[:200] or None,
        due=_ts(due) if due else None,
        task_types=list(task_types),
        priority=priority,
        status="pending",
        outcome="pending",
        reason=None,
        overdue=False,
        escalations=0,
        next_escalation=None,
        started_at=None,
        ended_at=None,
    )
    out["items"][item["id"]] = item
    entries = [
        _entry(out, now, "task_created", actor, item=item["id"], notify=[assignee],
               assignee=assignee, due=item["due"])
    ]  # fmt: skip
    _refresh(out, now)
    return out, entries


def move_task(
    case: Case,
    actor: Actor,
    now: datetime,
    item_id: str,
    move: str,
    *,
    reason: str | None = None,
    outcome: str | None = None,
) -> Transition | CaseError:
    """accept / decline (with a reason) / start / done (with an OASIS outcome) / cancel."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    found = _item(case, item_id, "task")
    if isinstance(found, CaseError):
        return found
    if move not in _TASK_MOVES:
        return CaseError("bad_move", f"unknown task action {move!r}")
    allowed_from, status = _TASK_MOVES[move]
    if move == "cancel":
        if actor.agency not in (found["by"], _lead(case), found["assignee"]):
            return CaseError("not_allowed", "only the task's author, assignee or the lead", 403)
    elif actor.agency != found["assignee"]:
        return CaseError("not_assignee", f"only the assignee {found['assignee']} may do this", 403)
    if found["status"] not in allowed_from:
        return CaseError("bad_transition", f"a {found['status']} task cannot be {move}ed", 409)
    why = _text(reason, "reason", 2000, required=(move == "decline"))
    if isinstance(why, CaseError):
        return why
    if outcome is not None and outcome not in TASK_OUTCOMES:
        return CaseError("bad_outcome", f"outcome must be one of {list(TASK_OUTCOMES)}")
    out = copy.deepcopy(case)
    task = out["items"][item_id]
    task["status"] = status
    task["updated_at"] = _ts(now)
    if why:
        task["reason"] = why
    task["outcome"] = {
        "accepted": "pending",
        "declined": "cancelled",
        "in_progress": "ongoing",
        "done": outcome or "successful",
        "cancelled": "cancelled",
    }[status]
    if status == "in_progress" and not task["started_at"]:
        task["started_at"] = _ts(now)
    if status in ("done", "cancelled", "declined"):
        task["ended_at"] = _ts(now)
    notify = [task["by"], _lead(out)] if status in ("declined", "done", "cancelled") else []
    entries = [
        _entry(out, now, f"task_{status}", actor, item=item_id,
               notify=[a for a in notify if a != actor.agency], outcome=task["outcome"],
               reason=why or None)
    ]  # fmt: skip
    _refresh(out, now)
    return out, entries


def add_impact(
    case: Case,
    actor: Actor,
    now: datetime,
    *,
    category: str,
    description: str = "",
    criticality: int | None = None,
    details: Mapping[str, Any] | None = None,
    marking: Marking,
    stix_id: str | None = None,
) -> Transition | CaseError:
    """An impact in the actor's jurisdiction (impacts are kept per jurisdiction)."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    if category not in IMPACT_CATEGORIES:
        return CaseError(
            "bad_category", f"impact category must be one of {list(IMPACT_CATEGORIES)}"
        )
    if criticality is not None and not 0 <= criticality <= 100:
        return CaseError("bad_criticality", "criticality must be 0..100")
    desc = _text(description, "description", 8000)
    if isinstance(desc, CaseError):
        return desc
    out = copy.deepcopy(case)
    item = _base_item("impact", actor, now, marking)
    if stix_id:
        item["id"] = stix_id.split("--", 1)[1]
    item.update(category=category, description=desc, criticality=criticality,
                details=dict(details or {}))  # fmt: skip
    out["items"][item["id"]] = item
    entries = [_entry(out, now, "impact_added", actor, item=item["id"], category=category)]
    _refresh(out, now)
    return out, entries


def add_request(
    case: Case,
    actor: Actor,
    now: datetime,
    *,
    request_type: str,
    addressee: str,
    text: str,
    deadline: datetime | None,
    record_keys: Sequence[str] = (),
    marking: Marking,
) -> Transition | CaseError:
    """A request between jurisdictions: information, assistance, takedown or blocking."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    if request_type not in REQUEST_TYPES:
        return CaseError("bad_request_type", f"request type must be one of {list(REQUEST_TYPES)}")
    if not is_participant(case, addressee) or addressee == actor.agency:
        return CaseError("bad_addressee", "the addressee must be another participating agency")
    body = _text(text, "request text", 8000, required=True)
    if isinstance(body, CaseError):
        return body
    out = copy.deepcopy(case)
    item = _base_item("request", actor, now, marking)
    item.update(
        request_type=request_type,
        addressee=addressee,
        addressee_jurisdiction=out["participants"][addressee]["jurisdiction"],
        text=body,
        deadline=_ts(deadline) if deadline else None,
        record_keys=sorted(set(record_keys)),
        status="open",
        answer=None,
        overdue=False,
        escalations=0,
        next_escalation=None,
    )
    out["items"][item["id"]] = item
    entries = [
        _entry(out, now, "request_sent", actor, item=item["id"], notify=[addressee],
               request_type=request_type, addressee=addressee, deadline=item["deadline"])
    ]  # fmt: skip
    _refresh(out, now)
    return out, entries


def answer_request(
    case: Case, actor: Actor, now: datetime, item_id: str, text: str, done: bool = True
) -> Transition | CaseError:
    """The addressee answers (``done``: carried out / answered; else refused)."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    found = _item(case, item_id, "request")
    if isinstance(found, CaseError):
        return found
    if actor.agency != found["addressee"]:
        return CaseError(
            "not_addressee", f"only the addressee {found['addressee']} may answer", 403
        )
    if found["status"] != "open":
        return CaseError("already_answered", "the request was already answered", 409)
    body = _text(text, "answer", 8000, required=True)
    if isinstance(body, CaseError):
        return body
    out = copy.deepcopy(case)
    req = out["items"][item_id]
    req["status"] = "answered" if done else "refused"
    req["answer"] = {"text": body, "by": actor.agency, "at": _ts(now), "done": done}
    req["updated_at"] = _ts(now)
    entries = [
        _entry(out, now, "request_answered", actor, item=item_id, notify=[req["by"]],
               status=req["status"])
    ]  # fmt: skip
    _refresh(out, now)
    return out, entries


# ------------------------------------------------------- entities and clocks


def report_entity(
    case: Case,
    actor: Actor,
    now: datetime,
    rules: ClockRules,
    *,
    aware_at: datetime,
    operator_type: str,
    serious: bool,
    critical_infrastructure: bool,
    sector: str | None,
    description: str,
    marking: Marking,
) -> Transition | CaseError:
    """An agency reports an affected entity of its own jurisdiction and when it became aware.

    The awareness time (never in the future) starts every clock whose rule
    matches the entity's facts (respond/clocks.py).
    """
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    if aware_at > now:
        return CaseError("future_awareness", "the awareness time cannot be in the future")
    desc = _text(description, "description", 4000)
    if isinstance(desc, CaseError):
        return desc
    out = copy.deepcopy(case)
    item = _base_item("entity", actor, now, marking)
    item.update(
        operator_type=operator_type,
        serious=serious,
        critical_infrastructure=critical_infrastructure,
        sector=(sector or "").strip().lower() or None,
        description=desc,
        aware_at=_ts(aware_at),
        awareness_history=[{"at": _ts(aware_at), "set_by": actor.agency, "set_at": _ts(now)}],
    )
    out["items"][item["id"]] = item
    entries = [
        _entry(out, now, "entity_reported", actor, item=item["id"], aware_at=item["aware_at"])
    ]
    for stage in rules.for_entity(actor.jurisdiction, _facts(item)):
        clock = new_clock(item, stage, aware_at)
        out["clocks"][clock["id"]] = clock
        entries.append(
            _entry(out, now, "clock_started", actor, item=item["id"], clock=clock["id"],
                   stage=stage.name, due=clock["due"])
        )  # fmt: skip
    _refresh(out, now)
    return out, entries


def _facts(entity: Item) -> dict[str, Any]:
    return {
        "operator_type": entity["operator_type"],
        "serious": entity["serious"],
        "critical_infrastructure": entity["critical_infrastructure"],
        "sector": entity["sector"],
    }


def set_awareness(
    case: Case, actor: Actor, now: datetime, item_id: str, aware_at: datetime
) -> Transition | CaseError:
    """The reporting jurisdiction corrects the awareness time; running clocks move with it."""
    problem = _need_open(case) or _need_participant(case, actor)
    if problem:
        return problem
    found = _item(case, item_id, "entity")
    if isinstance(found, CaseError):
        return found
    if actor.jurisdiction != found["jurisdiction"]:
        return CaseError("not_reporter", "only the entity's jurisdiction sets its awareness", 403)
    if aware_at > now:
        return CaseError("future_awareness", "the awareness time cannot be in the future")
    out = copy.deepcopy(case)
    entity = out["items"][item_id]
    previous = entity["aware_at"]
    entity["aware_at"] = _ts(aware_at)
    entity["awareness_history"].append(
        {"at": _ts(aware_at), "set_by": actor.agency, "set_at": _ts(now)}
    )
    for clock in out["clocks"].values():
        if clock["entity"] == item_id and clock["within_s"] is not None:
            clock["started_at"] = _ts(aware_at)
            clock["due"] = _ts(aware_at + timedelta(seconds=clock["within_s"]))
            if clock["status"] == "running":
                clock["reminded"] = False
    entries = [
        _entry(out, now, "awareness_changed", actor, item=item_id, previous=previous,
               aware_at=entity["aware_at"])
    ]  # fmt: skip
    _refresh(out, now)
    return out, entries


def mark_reported(
    case: Case, actor: Actor, now: datetime, clock_key: str, reference: str
) -> Transition | CaseError:
    """The clock's jurisdiction marks the statutory report made (who, when, reference)."""
    problem = _need_participant(case, actor)
    if problem:
        return problem
    clock = case["clocks"].get(clock_key)
    if clock is None:
        return CaseError("not_found", f"no clock {clock_key}", 404)
    if actor.jurisdiction != clock["jurisdiction"]:
        return CaseError("not_jurisdiction", "only the clock's jurisdiction may mark it", 403)
    if clock["met"]:
        return CaseError("already_met", "this report was already marked made", 409)
    ref = _text(reference, "reference", 500, required=True)
    if isinstance(ref, CaseError):
        return ref
    out = copy.deepcopy(case)
    c = out["clocks"][clock_key]
    late = c["status"] == "breached"
    c["met"] = {"by": actor.agency, "at": _ts(now), "reference": ref, "late": late}
    c["status"] = "met"
    entries = [_entry(out, now, "clock_met", actor, item=c["entity"], clock=clock_key, late=late)]
    _refresh(out, now)
    return out, entries


# --------------------------------------------------------------------- tick


def tick(case: Case, now: datetime, renotify: timedelta) -> Transition:
    """Overdue tasks and requests are escalated and re-notified once per ``renotify``;
    clocks coming due are reminded once and breach at their due time."""
    if case["status"] != OPEN:
        return case, []
    out = copy.deepcopy(case)
    entries: list[Entry] = []
    lead = _lead(out)
    stamp = _ts(now)
    for item in sorted(out["items"].values(), key=lambda i: i["at"]):
        if item["kind"] == "task" and item["status"] in _OPEN_TASK and item.get("due"):
            due_field, who = "due", [item["assignee"], lead]
        elif item["kind"] == "request" and item["status"] == "open" and item.get("deadline"):
            due_field, who = "deadline", [item["addressee"], item["by"]]
        else:
            continue
        kind = item["kind"]
        if not item["overdue"] and item[due_field] <= stamp:
            item["overdue"] = True
            item["escalations"] = 1
            item["next_escalation"] = _ts(now + renotify)
            entries.append(
                _entry(out, now, f"{kind}_overdue", PLATFORM, item=item["id"], notify=who,
                       due=item[due_field], escalated_to=lead)
            )  # fmt: skip
        elif item["overdue"] and item["next_escalation"] and item["next_escalation"] <= stamp:
            item["escalations"] += 1
            item["next_escalation"] = _ts(now + renotify)
            entries.append(
                _entry(out, now, f"{kind}_renotified", PLATFORM, item=item["id"], notify=who,
                       count=item["escalations"])
            )  # fmt: skip
    for clock in sorted(out["clocks"].values(), key=lambda c: c["id"]):
        if clock["status"] != "running" or not clock["due"]:
            continue
        who = [
            a for a, p in out["participants"].items() if p["jurisdiction"] == clock["jurisdiction"]
        ]
        if clock["due"] <= stamp:
            clock["status"] = "breached"
            clock["breached_at"] = stamp
            entries.append(
                _entry(out, now, "clock_breached", PLATFORM, item=clock["entity"],
                       notify=[*who, lead], clock=clock["id"], due=clock["due"])
            )  # fmt: skip
        elif (
            not clock["reminded"]
            and _ts(parse_timestamp(clock["due"]) - timedelta(seconds=clock["remind_before_s"]))
            <= stamp
        ):
            clock["reminded"] = True
            entries.append(
                _entry(out, now, "clock_due_soon", PLATFORM, item=clock["entity"], notify=who,
                       clock=clock["id"], due=clock["due"])
            )  # fmt: skip
    if not entries:
        return case, []
    _refresh(out, now)
    return out, entries
