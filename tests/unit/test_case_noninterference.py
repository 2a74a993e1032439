"""Noninterference for joint incident cases (DOMAIN.md "Noninterference", issue 23), as a property.

For any case built by the real transitions from random actions of agencies in
GD, HK and MO — notes, tasks, impacts, requests, affected entities with their
clocks — each under a random TLP (1.0 or 2.0 scale, RED with recipients),
audience and per-jurisdiction cap, every answer a participant gets about the
case (its view and counts, the merged timeline, each stream and notification
event, the STIX form, the report) is identical whether or not the case also
holds the items that participant may not see.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.policy import Purpose, Reader
from core.services import default_sharing
from respond import cases as model
from respond import report, stix
from respond.cases import Actor, Marking
from respond.clocks import load_clock_rules
from respond.sharing import Lookups, case_view, entry_view, item_view, timeline_view

AGENCIES = {"gd-cac": "GD", "gd-cncert": "GD", "hk-govcert": "HK", "mo-caric": "MO"}
ACTORS = [Actor(a, j) for a, j in AGENCIES.items()]
RULES = load_clock_rules()
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
TEXTS = [
    "Blocked the C2 at the perimeter",
    "Victim: Chan Tai-man, Tel 9123 4567",  # personal data: screened or held across a border
    "受害人陈大文报案",  # held across a border
    "Contact analyst on +852 2345 6789",
    "Routine update",
]

markings = st.builds(
    lambda tlp, version, recipients, audience: Marking(
        tlp, "2.0" if tlp == "amber+strict" else version, tuple(recipients), tuple(audience)
    ),
    st.sampled_from(["clear", "green", "amber", "amber+strict", "red"]),
    st.sampled_from(["1.0", "2.0"]),
    st.lists(st.sampled_from(sorted(AGENCIES)), max_size=2),
    st.lists(st.sampled_from([*sorted(AGENCIES), "GD", "HK", "MO"]), max_size=2),
)
actions = st.lists(
    st.tuples(
        st.sampled_from(["note", "task", "impact", "request", "entity", "move", "answer"]),
        st.sampled_from(ACTORS),
        markings,
        st.sampled_from(sorted(AGENCIES)),
        st.sampled_from(TEXTS),
        st.integers(0, 10),
    ),
    min_size=1,
    max_size=14,
)


NS = uuid.UUID("0d9b3c52-6a71-4f0e-9a1d-2b3c4d5e6f70")


def stamp(case: dict[str, Any], step: int) -> dict[str, Any]:
    """Event ids as records/cases.py gives them, here derived from what the entry is (so the
    same entry has the same id in both runs), in place."""
    for entry in case["timeline"]:
        if "id" not in entry:
            what = f"{step}|{entry['type']}|{entry.get('item')}|{entry.get('clock')}"
            entry["stream_seq"] = step
            entry["id"] = f"{step:017d}.c{uuid.uuid5(NS, what).hex[:12]}"
    return case


def build(steps: list[tuple[Any, ...]], skip: frozenset[int] = frozenset()) -> dict[str, Any]:
    """The case the steps make (item ids derive from the step that made them); ``skip``
    leaves those steps out, as if they never happened."""
    lead = Actor("gd-cac", "GD")
    opened = model.open_case(
        lead,
        T0,
        title="Joint response",
        participants_of=dict(AGENCIES),
        header_tlp="amber",
        case_id="incident--6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
    )
    assert not isinstance(opened, model.CaseError)
    case = stamp(opened[0], 0)
    for i, (kind, actor, marking, other, text, n) in enumerate(steps, start=1):
        now = T0 + timedelta(minutes=7 * i)
        result: Any = None
        target = str(uuid.uuid5(NS, f"item{n % i}"))
        if i not in skip:
            model.new_item_id = lambda i=i: str(uuid.uuid5(NS, f"item{i}"))  # type: ignore[misc]
            result = act(case, kind, actor, marking, other, text, n, now, target)
        if result is not None and not isinstance(result, model.CaseError):
            case = stamp(result[0], i)
        if n % 3 == 0:  # the respond tick runs now and then
            ticked = model.tick(case, now + timedelta(minutes=n * 9), timedelta(hours=1))[0]
            case = stamp(ticked, i)
    return case


def act(case: dict[str, Any], kind: str, actor: Actor, marking: Marking, other: str, text: str,
        n: int, now: datetime, target: str) -> Any:  # fmt: skip
    if kind == "note":
        return model.add_note(case, actor, now, text, marking)
    if kind == "task":
        return model.add_task(case, actor, now, title=text, assignee=other,
                              due=now + timedelta(minutes=30), marking=marking)  # fmt: skip
    if kind == "impact":
        return model.add_impact(case, actor, now, category="availability", description=text,
                                details={"availability_impact": n * 10},
                                marking=marking)  # fmt: skip
    if kind == "request":
        return model.add_request(case, actor, now, request_type="takedown", addressee=other,
                                 text=text, deadline=now + timedelta(hours=1),
                                 marking=marking)  # fmt: skip
    if kind == "entity":
        return model.report_entity(
            case, actor, now, RULES, aware_at=now - timedelta(minutes=n),
            operator_type=["cii", "state-organ", "other", "ci-operator"][n % 4],
            serious=n % 2 == 0, critical_infrastructure=n % 3 == 0, sector="energy",
            description=text, marking=marking,
        )  # fmt: skip
    item = case["items"].get(target)
    if kind == "move" and item and item["kind"] == "task":
        move = ["accept", "start", "done", "decline", "cancel"][n % 5]
        who = Actor(item["assignee"], AGENCIES[item["assignee"]])
        return model.move_task(case, who, now, target, move, reason=text)
    if kind == "answer" and item and item["kind"] == "request":
        who = Actor(item["addressee"], AGENCIES[item["addressee"]])
        return model.answer_request(case, who, now, target, text)
    return None


def hidden_steps(
    steps: list[tuple[Any, ...]], case: dict[str, Any], reader: Reader, lookups: Lookups
) -> frozenset[int]:
    """Steps that made, or acted on, an item the reader may not see."""
    hidden = {
        item_id
        for item_id, item in case["items"].items()
        if item_view(case, item, reader, Purpose.READ, lookups) is None
    }
    out = set()
    for i, (_kind, *_rest, n) in enumerate(steps, start=1):
        made = str(uuid.uuid5(NS, f"item{i}"))
        target = str(uuid.uuid5(NS, f"item{n % i}"))
        if made in hidden or (_kind in ("move", "answer") and target in hidden):
            out.add(i)
    return frozenset(out)


def observe(case: dict[str, Any], reader: Reader, lookups: Lookups) -> dict[str, Any]:
    """Every answer the reader gets about the case."""
    view = case_view(case, reader, Purpose.READ, lookups)
    assert view is not None
    timeline = timeline_view(case, reader, Purpose.READ, lookups)
    parties = {a: stix.Party(f"identity--{i:08d}-0000-4000-8000-000000000000", a)
               for i, a in enumerate(sorted(AGENCIES))}  # fmt: skip
    return {
        "view": view,
        "notify": case_view(case, reader, Purpose.NOTIFY, lookups),
        "timeline": timeline,
        "stream": [entry_view(case, e, reader, Purpose.STREAM, lookups) for e in case["timeline"]
                   if entry_view(case, e, reader, Purpose.STREAM, lookups) is not None],
        "taxii": stix.case_objects(
            case_view(case, reader, Purpose.TAXII_EXPORT, lookups) or {},
            timeline_view(case, reader, Purpose.TAXII_EXPORT, lookups), parties),
        "stix": stix.case_objects(view, timeline, parties),
        "report": report.report_json(view, timeline, {"agency": reader.agency_id}),
        "html": report.report_html(view, timeline, {"agency": reader.agency_id}),
    }  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=actions,
    reader_agency=st.sampled_from(sorted(AGENCIES)),
    caps=st.sampled_from([{}, {"MO": "green"}, {"HK": "amber"}, {"GD": "clear"}]),
)
def test_a_participants_answers_do_not_depend_on_items_it_may_not_see(
    steps: list[tuple[Any, ...]], reader_agency: str, caps: dict[str, str]
) -> None:
    original = model.new_item_id
    try:
        case = build(steps)
        reader = Reader(reader_agency, AGENCIES[reader_agency])
        lookups = Lookups(sharing=default_sharing(), caps=caps)
        skip = hidden_steps(steps, case, reader, lookups)
        without = build(steps, skip)
    finally:
        model.new_item_id = original  # type: ignore[misc]
    assert observe(case, reader, lookups) == observe(without, reader, lookups)


def test_the_comparison_sees_a_leak() -> None:
    """A view that showed the stored update time would differ between the two runs."""
    steps = [("note", Actor("hk-govcert", "HK"), Marking("red", recipients=("hk-govcert",)),
              "gd-cac", "secret", 1)]  # fmt: skip
    reader = Reader("gd-cac", "GD")
    lookups = Lookups(sharing=default_sharing())
    original = model.new_item_id
    try:
        case = build(steps)
        without = build(steps, hidden_steps(steps, case, reader, lookups))
    finally:
        model.new_item_id = original  # type: ignore[misc]
    assert hidden_steps(steps, case, reader, lookups) == {1}
    assert observe(case, reader, lookups) == observe(without, reader, lookups)
    assert case["updated"] != without["updated"]  # what a leaky view would have shown


def test_a_linked_record_is_shown_as_the_readers_view_of_it() -> None:
    """A case shows a linked record as the reader's view (core/views.py), never the record as
    stored: its score and jurisdictions must not count a GD TLP:RED report HK may not see."""
    key = "ipv4-addr|value|203.0.113.9"

    def source(agency: str, jurisdiction: str, tlp: str, n: int) -> dict[str, Any]:
        return {"agency": agency, "jurisdiction": jurisdiction, "tlp": tlp,
                "recipients": ["gd-cncert"] if tlp == "red" else [],
                "stix_id": f"indicator--{uuid.uuid5(NS, str(n))}",
                "observable_types": ["ipv4-addr"]}  # fmt: skip

    def content(sources: list[dict[str, Any]], score: float) -> dict[str, Any]:
        return {"key": key, "value": "203.0.113.9", "observable_type": "ipv4-addr",
                "sources": sources, "score": score, "tlp": "green", "state": "active",
                "jurisdictions": sorted({s["jurisdiction"] for s in sources})}  # fmt: skip

    red, green = source("gd-cac", "GD", "red", 1), source("hk-govcert", "HK", "green", 2)
    # Stored as core/views.py stores it: the record document is the view that sees every
    # part (GD's recipients); HK's view of the same record is listed under ``views``.
    record = content([red, green], 92.0) | {
        "readers": ["r:gd-cac", "r:gd-cncert"],
        "views": [{"key": f"{key}#1", "readers": ["jur:HK", "jur:MO", "m:gd-cac"],
                   "view": content([green], 45.0)}],
    }  # fmt: skip
    lead = Actor("hk-govcert", "HK")
    case_id = f"incident--{uuid.uuid5(NS, 'c')}"
    opened = model.open_case(lead, T0, title="C2", participants_of=dict(AGENCIES),
                             header_tlp="green", case_id=case_id)  # fmt: skip
    assert not isinstance(opened, model.CaseError)
    linked = model.link(opened[0], lead, T0, "record", key, Marking("green"))
    assert not isinstance(linked, model.CaseError)
    lookups = Lookups(sharing=default_sharing(), records={key: record})
    item = next(i for i in linked[0]["items"].values() if i["kind"] == "record")
    view = item_view(linked[0], item, Reader("hk-govcert", "HK"), Purpose.READ, lookups)
    assert view is not None
    assert view["record"]["score"] == 45.0, "the score counted a report HK may not see"
    assert view["record"]["jurisdictions"] == ["HK"]
    assert view["record"]["stix_ids"] == [green["stix_id"]]
