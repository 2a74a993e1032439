"""The plain functions behind the case routes, the CLI and the stages (STYLE.md 6).

``Responder`` reads what a decision needs (the case, its linked alerts and
records, the agency registry), calls a pure transition (respond/cases.py)
through ``CaseBook.transact`` (records/cases.py: optimistic concurrency and
the outbox), and answers with the caller's view (respond/sharing.py). Every
action is written to the audit log without content (who, what, which case
and item).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core import names
from core.access import Principal
from core.errors import UnknownAgency
from core.policy import Purpose, Reader, SharingPolicy, reader_of
from core.ports import Term
from core.settings import CasesSettings
from records.books import Records
from respond import cases as model
from respond.cases import Actor, Case, CaseError, Marking
from respond.clocks import ClockRules, load_clock_rules
from respond.sharing import Lookups, case_view, linked_alert_ids, linked_record_keys, timeline_view
from respond.templates import Template, load_templates


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.agency.id, principal.agency.jurisdiction)


@dataclass
class Responder:
    """Cases over one process's record books (module docstring)."""

    books: Records
    sharing: SharingPolicy
    settings: CasesSettings = field(default_factory=CasesSettings)
    rules: ClockRules | None = None
    templates: dict[str, Template] | None = None

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = load_clock_rules(self.settings.clock_rules_file)
        if self.templates is None:
            self.templates = load_templates(self.settings.templates_dir)

    @property
    def clock_rules(self) -> ClockRules:
        assert self.rules is not None
        return self.rules

    @property
    def now(self) -> datetime:
        return self.books.cases.clock.now()

    # ------------------------------------------------------------- reading

    def lookups(self, cases: Iterable[Case]) -> Lookups:
        """The linked alerts and records of ``cases`` as stored now (read by key: real-time)."""
        cases = list(cases)
        alert_ids = sorted(
            {a for c in cases for a in linked_alert_ids(c)}
            | {c["proposal"]["alert_id"] for c in cases if c.get("proposal")}
        )
        keys = sorted({k for c in cases for k in linked_record_keys(c)})
        store = self.books.cases.store
        alerts = store.get_many(names.INDEX_ALERTS, alert_ids) if alert_ids else {}
        records = store.get_many(names.INDEX_INDICATORS, keys) if keys else {}
        return Lookups(
            sharing=self.sharing,
            alerts={k: v.doc for k, v in alerts.items()},
            records={k: v.doc for k, v in records.items()},
            caps=dict(self.settings.max_tlp),
            alert_version=self.books.alerts.version_for,
        )

    def case(self, case_id: str) -> Case | None:
        stored = self.books.cases.get(case_id)
        return stored.doc if stored else None

    def view(
        self, case_id: str, reader: Reader, purpose: Purpose = Purpose.READ
    ) -> tuple[Case, dict[str, Any], Lookups] | None:
        """(case, the reader's view, lookups) or None when the reader may not see it."""
        case = self.case(case_id)
        if case is None:
            return None
        lookups = self.lookups([case])
        view = case_view(case, reader, purpose, lookups)
        return (case, view, lookups) if view is not None else None

    def timeline(
        self, case: Case, reader: Reader, lookups: Lookups, purpose: Purpose = Purpose.READ
    ) -> list[dict[str, Any]]:
        return timeline_view(case, reader, purpose, lookups)

    def list_for(
        self, reader: Reader, status: str | None, limit: int, after: tuple[Any, ...] | None
    ) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None, bool]:
        """Cases the reader takes part in or is invited to, newest created first."""
        filters: list[Any] = []
        if status:
            filters.append(Term("status", (status,)))
        out: list[dict[str, Any]] = []
        more = True
        for _ in range(10):
            participant, last_p, more_p = self.books.cases.search(
                [*filters, Term("participant_ids", (reader.agency_id,))], limit=limit, after=after
            )
            docs = participant
            last, more = last_p, more_p
            if after is None and len(out) == 0:
                invited, _, _ = self.books.cases.search(
                    [*filters, Term("proposed_jurisdictions", (reader.jurisdiction,))], limit=50
                )
                seen = {d["id"] for d in docs}
                docs = [*[d for d in invited if d["id"] not in seen], *docs]
            lookups = self.lookups(docs)
            for doc in docs:
                view = case_view(doc, reader, Purpose.READ, lookups)
                if view is not None:
                    out.append(summary(view))
            after = last
            if len(out) >= limit or not more:
                break
        return out[:limit], after, more

    # ------------------------------------------------------------- writing

    def act(
        self,
        principal: Principal,
        case_id: str,
        action: str,
        change: Callable[[Case], Any],
        *,
        item: str | None = None,
    ) -> Any:
        """Apply ``change`` to a case the caller may see; audited; the transition's outcome."""
        reader = reader_of(principal)
        found = self.view(case_id, reader)
        if found is None:
            return CaseError("not_found", f"no case {case_id} visible to you", 404)

        def apply(case: Case | None) -> Any:
            if case is None:
                return CaseError("not_found", f"no case {case_id}", 404)
            return change(case)

        outcome = self.books.cases.transact(case_id, apply)
        if isinstance(outcome, tuple):
            self.books.audit.record(f"incidents.{action}", principal, case_id, item=item)
        return outcome

    def agency_jurisdiction(self, agency_id: str) -> str | CaseError:
        try:
            return self.books.agencies.get(agency_id).jurisdiction
        except UnknownAgency:
            return CaseError("unknown_agency", f"no agency {agency_id!r}", 422)

    def open_case(
        self,
        principal: Principal,
        *,
        title: str,
        incident_type: str = "",
        severity: str | None = None,
        determination: str | None = None,
        criticality: int | None = None,
        sectors: Sequence[Mapping[str, Any]] | None = None,
        description: str = "",
        header_tlp: str = "amber",
        participants: Sequence[str] = (),
        alert_ids: Sequence[str] = (),
        record_keys: Sequence[str] = (),
        template: str | None = None,
    ) -> tuple[Case, list[str]] | CaseError:
        """An analyst opens a case (from alerts, with a template); (case, unassigned tasks)."""
        reader = reader_of(principal)
        actor = actor_of(principal)
        preset = None
        if template:
            preset = (self.templates or {}).get(template)
            if preset is None:
                return CaseError("unknown_template", f"no template {template!r}", 422)
        members: dict[str, str] = {}
        for agency in participants:
            j = self.agency_jurisdiction(agency)
            if isinstance(j, CaseError):
                return j
            members[agency] = j
        check = self._check_links(reader, alert_ids, record_keys)
        if check is not None:
            return check
        now = self.now
        types = preset.incident_types if preset else ()
        preset_sectors = (
            [{"sector": s, "critical_infrastructure": c} for s, c in preset.sectors]
            if preset
            else []
        )
        opened = model.open_case(
            actor,
            now,
            title=title,
            incident_type=incident_type or (types[0] if types else ""),
            severity=severity or (preset.severity if preset else "ORANGE"),
            determination=determination or (preset.determination if preset else "suspected"),
            criticality=criticality if criticality is not None else (
                preset.criticality if preset else 50),
            sectors=sectors if sectors is not None else preset_sectors,
            description=description,
            header_tlp=header_tlp,
            participants_of=members,
            template=template,
        )  # fmt: skip
        if isinstance(opened, CaseError):
            return opened
        case, entries = opened
        if preset and preset.incident_types:
            case["incident_types"] = list(preset.incident_types)
        unassigned: list[str] = []
        steps: list[tuple[Case, list[model.Entry]] | CaseError] = []
        for target in alert_ids:
            steps.append(model.link(case, actor, now, "alert", target, Marking("amber")))
            case, entries = _chain(steps[-1], case, entries)
        for target in record_keys:
            steps.append(model.link(case, actor, now, "record", target, Marking("amber")))
            case, entries = _chain(steps[-1], case, entries)
        for task in preset.tasks if preset else ():
            assignee = _assignee(case, task.jurisdiction)
            if assignee is None:
                unassigned.append(f"{task.jurisdiction}: {task.title}")
                continue
            steps.append(
                model.add_task(
                    case, actor, now, title=task.title, description=task.description,
                    assignee=assignee, due=now + task.due_in if task.due_in else None,
                    task_types=task.task_types, marking=Marking("amber"),
                )
            )  # fmt: skip
            case, entries = _chain(steps[-1], case, entries)
        errors = [s for s in steps if isinstance(s, CaseError)]
        if errors:
            return errors[0]
        # Every entry of a new case is new (chained copies: take them from the final case).
        final, final_entries = case, list(case["timeline"])
        outcome = self.books.cases.transact(
            case["id"],
            lambda stored: (final, final_entries) if stored is None else CaseError(
                "exists", "case id taken", 409),
        )  # fmt: skip
        if isinstance(outcome, CaseError):
            return outcome
        self.books.audit.record("incidents.open", principal, case["id"], template=template)
        return final, unassigned

    def _check_links(
        self, reader: Reader, alert_ids: Sequence[str], record_keys: Sequence[str]
    ) -> CaseError | None:
        from core.alert_views import alert_view

        store = self.books.cases.store
        alerts = store.get_many(names.INDEX_ALERTS, list(alert_ids)) if alert_ids else {}
        records = store.get_many(names.INDEX_INDICATORS, list(record_keys)) if record_keys else {}
        lookups = Lookups(
            sharing=self.sharing,
            alerts={k: v.doc for k, v in alerts.items()},
            records={k: v.doc for k, v in records.items()},
            alert_version=self.books.alerts.version_for,
        )
        for alert_id in alert_ids:
            alert = lookups.alert_for(alert_id, reader, Purpose.READ)
            if alert is None or alert_view(self.sharing, reader, Purpose.READ, alert) is None:
                return CaseError("not_found", f"no alert {alert_id} visible to you", 404)
        for key in record_keys:
            decision = lookups.decide_record(key, reader, Purpose.READ)
            if decision is None or not decision.shown:
                return CaseError("not_found", f"no record {key} visible to you", 404)
        return None

    def link(
        self, principal: Principal, case_id: str, kind: str, target: str, marking: Marking
    ) -> Any:
        problem = self._check_links(
            reader_of(principal),
            [target] if kind == "alert" else [],
            [target] if kind == "record" else [],
        )
        if problem is not None:
            return problem
        actor = actor_of(principal)
        return self.act(
            principal, case_id, f"link_{kind}",
            lambda c: model.link(c, actor, self.now, kind, target, marking),
        )  # fmt: skip

    def request(
        self,
        principal: Principal,
        case_id: str,
        *,
        request_type: str,
        addressee: str,
        text: str,
        deadline: datetime | None,
        record_keys: Sequence[str],
        marking: Marking,
    ) -> Any:
        problem = self._check_links(reader_of(principal), [], record_keys)
        if problem is not None:
            return problem
        actor = actor_of(principal)
        return self.act(
            principal, case_id, "request",
            lambda c: model.add_request(
                c, actor, self.now, request_type=request_type, addressee=addressee, text=text,
                deadline=deadline, record_keys=record_keys, marking=marking),
        )  # fmt: skip

    def add_participant(self, principal: Principal, case_id: str, agency: str) -> Any:
        j = self.agency_jurisdiction(agency)
        if isinstance(j, CaseError):
            return j
        actor = actor_of(principal)
        return self.act(
            principal, case_id, "add_participant",
            lambda c: model.add_participant(c, actor, self.now, agency, j),
        )  # fmt: skip

    def report_entity(self, principal: Principal, case_id: str, **facts: Any) -> Any:
        actor = actor_of(principal)
        return self.act(
            principal, case_id, "report_entity",
            lambda c: model.report_entity(c, actor, self.now, self.clock_rules, **facts),
        )  # fmt: skip

    # ------------------------------------------------------------- the tick

    def tick(self, now: datetime | None = None) -> int:
        """Escalate overdue tasks and requests, remind and breach clocks; the events written."""
        now = now or self.now
        renotify = timedelta(seconds=self.settings.task_renotify_s)
        written = 0
        for case_id in self.books.cases.due(model._ts(now)):
            outcome = self.books.cases.transact(
                case_id, lambda c: model.tick(c, now, renotify) if c else None
            )
            if isinstance(outcome, tuple):
                written += len(outcome[1])
        return written


def _chain(
    step: tuple[Case, list[model.Entry]] | CaseError, case: Case, entries: list[model.Entry]
) -> tuple[Case, list[model.Entry]]:
    if isinstance(step, CaseError):
        return case, entries
    new_case, new_entries = step
    return new_case, [*entries, *new_entries]


def _assignee(case: Case, jurisdiction: str) -> str | None:
    if jurisdiction == "ANY":
        return str(case["lead"]["agency"])
    members = sorted(
        a for a, p in case["participants"].items() if p["jurisdiction"] == jurisdiction
    )
    lead = case["lead"]["agency"]
    if lead in members:
        return str(lead)
    return members[0] if members else None


def summary(view: Mapping[str, Any]) -> dict[str, Any]:
    """A case view for lists: the header, counts and clocks, no item bodies."""
    keep = (
        "id", "status", "title", "incident_type", "severity", "determination",
        "investigation_status", "criticality", "lead", "participants", "created", "updated",
        "tlp", "role", "counts", "clocks", "proposal", "source_alert",
    )  # fmt: skip
    return {k: view.get(k) for k in keep}


# ------------------------------------------------------------------ STIX pushes

_OUTCOME_MOVES = {
    "successful": "done",
    "failed": "done",
    "unknown": "done",
    "cancelled": "cancel",
    "ongoing": "start",
    "pending": "accept",
}


def apply_pushed(
    responder: Responder, principal: Principal, case_id: str, objects: Sequence[Any]
) -> list[tuple[str, str | None]]:
    """Case updates pushed as STIX into a case's collection: (object id, error or None) each.

    A ``task`` (an existing task of the case, pushed by its assignee) reports
    its outcome; a ``note`` whose ``object_refs`` name the incident and an
    ``impact`` (checked against ThreatBay's impact schema) are added as the
    pusher's own items, under the markings they carry. As for any push, the
    pusher's identity comes from its credential: a ``created_by_ref`` naming
    another identity is refused, and unknown markings fail closed.
    """
    from respond import stix

    actor = actor_of(principal)
    out: list[tuple[str, str | None]] = []
    for obj in objects:
        oid = str(obj.get("id", "")) if isinstance(obj, dict) else ""
        if not isinstance(obj, dict) or not oid:
            out.append((oid or "<no id>", "not a STIX object with an id"))
            continue
        by = obj.get("created_by_ref")
        if by is not None and str(by).lower() != principal.agency.identity_id.lower():
            out.append((oid, "created_by_ref names another identity than your agency's"))
            continue
        marking = stix.pushed_marking(obj)
        if isinstance(marking, str):
            out.append((oid, marking))
            continue
        mark = Marking(marking.tlp, marking.tlp_version, marking.recipients,
                       tuple(obj.get("x_threatbay_audience") or ()))  # fmt: skip
        kind = obj.get("type")
        outcome: Any
        if kind == "task":
            errors = stix.schema_errors({**obj, "extensions": obj.get("extensions") or {
                stix.TASK_EXT: {"extension_type": "new-sdo"}}})  # fmt: skip
            if errors:
                out.append((oid, "; ".join(errors[:3])))
                continue
            item_id = oid.split("--", 1)[1]
            move = _OUTCOME_MOVES[obj["outcome"]]

            def change(c: Case, item_id: str = item_id, move: str = move, o: Any = obj) -> Any:
                task = c["items"].get(item_id)
                if task is None or task["kind"] != "task":
                    return CaseError("not_found", "no such task in this case", 404)
                if move == "done" and task["status"] == "pending":
                    accepted = model.move_task(c, actor, responder.now, item_id, "accept")
                    if isinstance(accepted, CaseError):
                        return accepted
                    c2, e1 = accepted
                    done = model.move_task(
                        c2,
                        actor,
                        responder.now,
                        item_id,
                        "done",
                        outcome=o["outcome"],
                        reason=o.get("description"),
                    )
                    if isinstance(done, CaseError):
                        return done
                    return done[0], done[0]["timeline"][-(len(e1) + len(done[1])) :]
                return model.move_task(
                    c,
                    actor,
                    responder.now,
                    item_id,
                    move,
                    outcome=o["outcome"] if move == "done" else None,
                    reason=o.get("description") if move != "accept" else None,
                )

            outcome = responder.act(principal, case_id, "push_task", change, item=item_id)
        elif kind == "note":
            refs = obj.get("object_refs")
            if not isinstance(refs, list) or case_id not in refs:
                out.append((oid, f"a note pushed here must list {case_id} in object_refs"))
                continue
            content = obj.get("content")
            if not isinstance(content, str) or not content.strip():
                out.append((oid, "a note needs content"))
                continue
            item_id = oid.split("--", 1)[1]

            def add(
                c: Case, item_id: str = item_id, text: str = content, mark: Marking = mark
            ) -> Any:
                if item_id in c["items"]:
                    return CaseError("exists", "this note is already in the case", 409)
                result = model.add_note(c, actor, responder.now, text, mark)
                if isinstance(result, CaseError):
                    return result
                c2, entries = result
                old = entries[0]["item"]
                c2["items"][item_id] = {**c2["items"].pop(old), "id": item_id}
                entries[0]["item"] = item_id
                return c2, entries

            outcome = responder.act(principal, case_id, "push_note", add, item=item_id)
        elif kind == "impact":
            errors = stix.schema_errors(obj)
            if errors:
                out.append((oid, "; ".join(errors[:3])))
                continue
            category = obj["impact_category"]
            item_id = oid.split("--", 1)[1]

            def impact(
                c: Case, item_id: str = item_id, o: Any = obj, cat: str = category,
                mark: Marking = mark,
            ) -> Any:  # fmt: skip
                if item_id in c["items"]:
                    return CaseError("exists", "this impact is already in the case", 409)
                return model.add_impact(
                    c, actor, responder.now, category=cat, description=o.get("description", ""),
                    criticality=o.get("criticality"), details=o["extensions"][cat], marking=mark,
                    stix_id=o["id"],
                )  # fmt: skip

            outcome = responder.act(principal, case_id, "push_impact", impact, item=item_id)
        else:
            out.append((oid, f"a case collection takes task, note and impact objects, not {kind}"))
            continue
        if isinstance(outcome, CaseError):
            out.append((oid, outcome.message))
        else:
            out.append((oid, None))
    return out
