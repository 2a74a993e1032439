"""What one participant may see of a case, for one purpose (DOMAIN.md "Joint incident cases",
"Sharing", "Noninterference").

Every item of a case (linked alert or record, task, note, impact, request,
affected entity) carries its own TLP, RED recipients and audience. For a
reader, an item is shown when:

- the reader takes part in the case (its agency is a participant), or wrote
  the item;
- the item's audience (agency ids and/or jurisdictions; empty: every
  participant) names the reader's agency or jurisdiction; a task's assignee
  and a request's addressee are always in it;
- the configured cap of the reader's jurisdiction (``cases.max_tlp``) is not
  below the item's TLP;
- the TLP allows it under ``core.policy.report_access``, with the case as the
  arrangement that lets its participants receive each other's items: AMBER
  reaches participants in every jurisdiction, GREEN likewise, CLEAR anyone
  taking part, AMBER+STRICT only its author, RED only the named recipients of
  the author's own jurisdiction and never on a machine channel (stream,
  TAXII): the rules of the sharing policy, written once there;
- a linked alert is also visible to the reader (``alert_view``) and a linked
  record too (``decide_record``), under the platform-wide rules;
- free text crossing a border passes the victim-data screens
  (``core.redaction.screen_text``); text the screens must hold hides the item
  from that reader.

Everything a reader observes — header, counts, lists, timeline, stream,
exports, STIX form, report, its ``updated`` time and its TLP — is computed
from the visible items and timeline entries only, so adding items a reader
may not see changes nothing it observes (tests/property/test_case_noninterference.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import policy
from core.alert_views import alert_view
from core.crossborder import CrossBorderRule, CrossBorderWhitelist
from core.markings import most_restrictive, normalise_tlp, tlp_rank
from core.policy import Purpose, Reader, SharingPolicy, SourceReport, report_access
from core.provenance import JURISDICTIONS, Tlp
from core.redaction import screen_text
from core.views import view_for
from respond.cases import PLATFORM, Case, Entry, Item

CASE_ITEM = "x-threatbay-case-item"
#: Free-text fields screened when an item crosses a border, per kind.
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "note": ("text",),
    "task": ("title", "description", "reason"),
    "request": ("text",),
    "impact": ("description",),
    "entity": ("description",),
}
_ENTRY_TEXT = ("reason", "reference")
_INTERNAL_ENTRY = frozenset({"notify", "stream_seq"})
_INTERNAL_ITEM = frozenset({"next_escalation"})


@dataclass(frozen=True)
class Lookups:
    """What a view needs besides the case: the linked alerts and records as stored, the
    platform's sharing policy and the per-jurisdiction TLP caps."""

    sharing: SharingPolicy
    alerts: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    records: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    caps: Mapping[str, str] = field(default_factory=dict)
    #: The reader's own version of an alert (records/alerts.py ``AlertBook.version_for``)
    #: when the stored one is another reader's.
    alert_version: Callable[[str, Sequence[str]], dict[str, Any] | None] | None = None

    def alert_for(self, alert_id: str, reader: Reader, purpose: Purpose) -> dict[str, Any] | None:
        """The reader's version of a linked alert (DOMAIN.md "Noninterference"): never a
        version built from triggers the reader did not get."""
        tags = policy.reader_tags(reader, purpose)
        stored = self.alerts.get(alert_id)
        if stored is not None and tags[0] in (stored.get("reader_tokens") or ()):
            return stored
        return self.alert_version(alert_id, tags) if self.alert_version else None

    def record_for(self, key: str, reader: Reader, purpose: Purpose) -> dict[str, Any] | None:
        """The reader's view of a linked record (core/views.py), never the record as stored."""
        stored = self.records.get(key)
        return view_for(stored, policy.reader_tags(reader, purpose)) if stored else None

    def decide_record(self, key: str, reader: Reader, purpose: Purpose) -> policy.Decision | None:
        """The reader's view of a linked record as the policy shows it (None: no view)."""
        view = self.record_for(key, reader, purpose)
        if view is None:
            return None
        return policy.decide_record(self.sharing, reader, purpose, view, exact=True)


def linked_alert_ids(case: Case) -> list[str]:
    return sorted({i["alert_id"] for i in case["items"].values() if i["kind"] == "alert"})


def linked_record_keys(case: Case) -> list[str]:
    keys = {i["record_key"] for i in case["items"].values() if i["kind"] == "record"}
    keys |= {k for i in case["items"].values() if i["kind"] == "request" for k in i["record_keys"]}
    return sorted(keys)


def case_policy(case: Case) -> SharingPolicy:
    """The sharing policy inside one case: its participants are each other's counterparts."""
    by_j: dict[str, set[str]] = {}
    for agency, p in case["participants"].items():
        by_j.setdefault(p["jurisdiction"], set()).add(agency)
    rules = tuple(
        CrossBorderRule(
            name=f"case:{case['id']}:{a}->{b}",
            from_j=a,
            to_j=b,
            object_types=frozenset({CASE_ITEM}),
            amber_requires_consent=False,
            amber_counterparts=frozenset(by_j.get(b, set())),
        )
        for a in JURISDICTIONS
        for b in JURISDICTIONS
        if a != b
    )
    return SharingPolicy(CrossBorderWhitelist(rules), frozenset(case["participants"]))


def role_of(case: Case, reader: Reader, lookups: Lookups) -> str | None:
    """``participant``, ``invited`` (a proposed jurisdiction that has not decided and may see
    the alert behind the proposal) or None."""
    if reader.agency_id in case["participants"]:
        return "participant"
    proposal = case.get("proposal")
    if (
        proposal
        and case["status"] in ("proposed", "open")
        and reader.jurisdiction in proposal["jurisdictions"]
        and reader.jurisdiction not in proposal["decisions"]
    ):
        alert = lookups.alert_for(proposal["alert_id"], reader, Purpose.READ)
        if alert is not None and alert_view(lookups.sharing, reader, Purpose.READ, alert):
            return "invited"
    return None


def _screen(value: Any, removed: list[str], held: list[str], path: str) -> Any:
    if isinstance(value, str):
        text, kinds, holds = screen_text(value)
        removed.extend(f"{path}:{k}" for k in kinds)
        held.extend(f"{path}:{h}" for h in holds)
        return text
    return value


def item_view(
    case: Case,
    item: Item,
    reader: Reader,
    purpose: Purpose,
    lookups: Lookups,
    *,
    role: str | None = None,
    case_sharing: SharingPolicy | None = None,
) -> Item | None:
    """The item as ``reader`` may see it for ``purpose`` (module docstring), or None."""
    role = role if role is not None else role_of(case, reader, lookups)
    own = reader.agency_id == item["by"]
    platform = item["by"] == PLATFORM.agency
    if not own:
        if role != "participant" and not (role == "invited" and platform):
            return None
        implicit = {str(v) for v in (item.get("assignee"), item.get("addressee")) if v}
        audience = set(item["audience"])
        if audience and not (
            reader.agency_id in audience
            or reader.jurisdiction in audience
            or reader.agency_id in implicit
        ):
            return None
        cap = lookups.caps.get(reader.jurisdiction)
        if cap and tlp_rank(normalise_tlp(item["tlp"])) > tlp_rank(normalise_tlp(cap)):
            return None
        if not platform:
            report = SourceReport(
                agency=item["by"],
                jurisdiction=item["jurisdiction"],
                tlp=normalise_tlp(item["tlp"]),
                recipients=frozenset(item["recipients"]) | frozenset(implicit),
                object_type=CASE_ITEM,
            )
            ok, _rule = report_access(case_sharing or case_policy(case), reader, purpose, report)
            if not ok:
                return None
    view = {k: v for k, v in item.items() if k not in _INTERNAL_ITEM}
    if item["kind"] == "alert":
        alert = lookups.alert_for(item["alert_id"], reader, purpose)
        seen = alert_view(lookups.sharing, reader, purpose, alert) if alert else None
        if seen is None:
            return None
        view["alert"] = {
            k: seen.get(k)
            for k in ("id", "level", "title", "status", "jurisdictions", "tlp", "created")
        }
    elif item["kind"] == "record":
        decision = lookups.decide_record(item["record_key"], reader, purpose)
        if decision is None or not decision.shown or decision.view is None:
            return None
        rv = decision.view
        view["record"] = {
            k: rv.get(k)
            for k in ("key", "observable_type", "value", "score", "tlp", "jurisdictions", "state")
        }
        view["record"]["stix_ids"] = sorted(
            {s["stix_id"] for s in rv.get("sources") or [] if isinstance(s.get("stix_id"), str)}
        )
    if not own and reader.jurisdiction != item["jurisdiction"]:
        removed: list[str] = []
        held: list[str] = []
        for name in _TEXT_FIELDS.get(item["kind"], ()):
            if name in view:
                view[name] = _screen(view[name], removed, held, name)
        if item["kind"] == "request" and view.get("answer"):
            answer = dict(view["answer"])
            if answer["by"] != reader.agency_id:
                answer["text"] = _screen(answer["text"], removed, held, "answer.text")
            view["answer"] = answer
        if held:
            return None
        if removed:
            view["redactions"] = removed
    return view


def entry_view(
    case: Case,
    entry: Entry,
    reader: Reader,
    purpose: Purpose,
    lookups: Lookups,
    *,
    role: str | None = None,
    case_sharing: SharingPolicy | None = None,
) -> Entry | None:
    """One timeline entry as ``reader`` may see it: case-level entries go to everyone taking
    part; an item's entries only to who may see that item."""
    role = role if role is not None else role_of(case, reader, lookups)
    if role is None:
        return None
    item_id = entry.get("item")
    if item_id is not None:
        item = case["items"].get(item_id)
        if item is None:
            return None
        shown = item_view(
            case, item, reader, purpose, lookups, role=role, case_sharing=case_sharing
        )
        if shown is None:
            return None
    elif role != "participant" and entry["type"] not in ("proposed", "proposal_accepted",
                                                         "proposal_declined"):  # fmt: skip
        return None
    view = {k: v for k, v in entry.items() if k not in _INTERNAL_ENTRY}
    if entry.get("jurisdiction") and entry["jurisdiction"] != reader.jurisdiction:
        removed: list[str] = []
        held: list[str] = []
        for name in _ENTRY_TEXT:
            if isinstance(view.get(name), str):
                view[name] = _screen(view[name], removed, held, name)
        if held:
            for name in _ENTRY_TEXT:
                view.pop(name, None)
    view["source"] = "case"
    return view


def timeline_view(case: Case, reader: Reader, purpose: Purpose, lookups: Lookups) -> list[Entry]:
    """The merged timeline: the case's entries and its visible linked alerts' events, by time."""
    role = role_of(case, reader, lookups)
    if role is None:
        return []
    sharing = case_policy(case)
    out = [
        v
        for e in case["timeline"]
        if (v := entry_view(case, e, reader, purpose, lookups, role=role, case_sharing=sharing))
    ]
    for item in case["items"].values():
        if item["kind"] != "alert":
            continue
        if item_view(case, item, reader, purpose, lookups, role=role, case_sharing=sharing) is None:
            continue
        alert = lookups.alert_for(item["alert_id"], reader, purpose)
        if alert is None:
            continue
        seen = alert_view(lookups.sharing, reader, purpose, alert)
        for e in (seen or {}).get("timeline", []):
            out.append(
                {
                    "id": e.get("event_id") or f"{alert['id']}#{e.get('seq')}",
                    "at": e["at"],
                    "type": f"alert_{e['type']}",
                    "by": e.get("by"),
                    "jurisdiction": e.get("jurisdiction"),
                    "alert_id": alert["id"],
                    "source": "alert",
                    **{k: e[k] for k in ("level", "deadline", "text", "count") if k in e},
                }
            )
    unique = {e["id"]: e for e in out}
    return sorted(unique.values(), key=lambda e: (e["at"], e["id"]))


def _screen_header(case: Case, reader: Reader) -> dict[str, Any]:
    header = {
        k: case.get(k)
        for k in (
            "id", "status", "title", "description", "incident_type", "incident_types",
            "template", "created", "created_by", "severity", "determination",
            "investigation_status", "criticality", "sectors", "lead", "source_alert",
        )
    }  # fmt: skip
    if reader.jurisdiction != case.get("created_jurisdiction"):
        removed: list[str] = []
        held: list[str] = []
        for name in ("title", "description"):
            header[name] = _screen(header[name], removed, held, name)
        if held:
            header["title"] = "[REDACTED:held]"
            header["description"] = ""
    header["participants"] = [
        {"agency": a, "jurisdiction": p["jurisdiction"], "joined_at": p["joined_at"]}
        for a, p in sorted(case["participants"].items())
    ]
    proposal = case.get("proposal")
    if proposal:
        header["proposal"] = {
            "alert_id": proposal["alert_id"],
            "jurisdictions": proposal["jurisdictions"],
            "decisions": {
                j: {k: v for k, v in d.items() if k != "reason"} | {"reason": d.get("reason")}
                for j, d in proposal["decisions"].items()
            },
        }
    return header


def clock_view(clock: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in clock.items() if k != "reminded"} | {"reminded": clock["reminded"]}


def case_view(
    case: Case, reader: Reader, purpose: Purpose, lookups: Lookups
) -> dict[str, Any] | None:
    """The case as ``reader`` may see it for ``purpose``; None when it may not see it at all."""
    role = role_of(case, reader, lookups)
    if role is None:
        return None
    sharing = case_policy(case)
    visible: dict[str, Item] = {}
    for item_id, item in case["items"].items():
        v = item_view(case, item, reader, purpose, lookups, role=role, case_sharing=sharing)
        if v is not None:
            visible[item_id] = v
    entries = [
        v
        for e in case["timeline"]
        if (v := entry_view(case, e, reader, purpose, lookups, role=role, case_sharing=sharing))
    ]
    current = {k: v for k, v in visible.items() if not v.get("removed")}
    view = _screen_header(case, reader)
    view["role"] = role
    view["updated"] = max([case["created"], *(e["at"] for e in entries)])
    tlps: list[Tlp] = [normalise_tlp(case.get("tlp", "amber"))]
    tlps += [normalise_tlp(i["tlp"]) for i in current.values() if i["by"] != PLATFORM.agency]
    view["tlp"] = most_restrictive(tlps)

    def of(kind: str) -> list[Item]:
        return sorted((i for i in current.values() if i["kind"] == kind), key=lambda i: i["at"])

    view["alerts"] = of("alert")
    view["records"] = of("record")
    view["tasks"] = of("task")
    view["notes"] = of("note")
    view["impacts"] = of("impact")
    view["requests"] = of("request")
    view["entities"] = of("entity")
    entity_ids = {i["id"] for i in view["entities"]}
    view["clocks"] = sorted(
        (clock_view(c) for c in case["clocks"].values() if c["entity"] in entity_ids),
        key=lambda c: (c["jurisdiction"], c["due"] or "~", c["id"]),
    )
    tasks_by_status: dict[str, int] = {}
    for t in view["tasks"]:
        tasks_by_status[t["status"]] = tasks_by_status.get(t["status"], 0) + 1
    view["counts"] = {
        "tasks": len(view["tasks"]),
        "tasks_by_status": dict(sorted(tasks_by_status.items())),
        "tasks_overdue": sum(1 for t in view["tasks"] if t.get("overdue")),
        "notes": len(view["notes"]),
        "impacts": len(view["impacts"]),
        "requests": len(view["requests"]),
        "alerts": len(view["alerts"]),
        "records": len(view["records"]),
        "clocks": len(view["clocks"]),
        "clocks_breached": sum(1 for c in view["clocks"] if c["status"] == "breached"),
        "timeline": len(entries),
    }
    return view
