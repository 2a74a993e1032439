"""Per-reader views of records (core/views.py), pure: who reads which document, and why.

The HTTP-level property is tests/security/test_noninterference_property.py;
this one checks the planning itself on thousands of small records in a few
seconds: whatever hidden parts are merged into a record, the view every token
that may not see them reads is exactly the view it would read without them.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.access import Agency
from core.crossborder import whitelist_from_yaml_text
from core.policy import SharingPolicy, reader_for
from core.views import AudienceSet, Plan, audiences_of, content_of, parts_of
from correlate import merge
from correlate.score import AgencyProfile, Scorer
from correlate.views import assemble, plan_record

WHITELIST = """
version: 1
rules:
  - {name: gd-hk, from: GD, to: HK, object_types: [indicator, sighting, relationship],
     observable_types: [ipv4-addr], amber_counterparts: [hk-a]}
  - {name: hk-gd, from: HK, to: GD, object_types: [indicator, sighting, relationship],
     observable_types: [ipv4-addr], amber_requires_consent: false, amber_counterparts: [gd-b]}
  - {name: hk-mo, from: HK, to: MO, object_types: [indicator, sighting, relationship],
     observable_types: [ipv4-addr]}
"""
AGENCIES = [
    Agency("gd-a", "GD A", "GD", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'a')}", "B"),
    Agency("gd-b", "GD B", "GD", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'b')}", "C"),
    Agency("hk-a", "HK A", "HK", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'c')}", "A",
           crossborder_consent=("GD",)),
    Agency("mo-a", "MO A", "MO", f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'd')}", "B"),
]  # fmt: skip
POLICY = SharingPolicy(whitelist_from_yaml_text(WHITELIST))
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SCORER = Scorer(None)
KEY = "ipv4-addr|value|198.51.100.9"


def audiences() -> AudienceSet:
    return audiences_of(POLICY, [reader_for(a) for a in AGENCIES])


def profile(agency: str) -> AgencyProfile:
    return AgencyProfile({"gd-a": "B", "gd-b": "C", "hk-a": "A", "mo-a": "B"}.get(agency, "C"))


def source(agency: str, tlp: str, n: int, **extra: Any) -> dict[str, Any]:
    j = agency[:2].upper()
    at = (T0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    return {
        "agency": agency, "jurisdiction": j, "source_kind": "agency",
        "stix_id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'{agency}{n}')}",
        "modified": at, "confidence": 50 + n, "tlp": tlp, "tlp_defaulted": False,
        "recipients": [], "valid_from": None, "valid_until": None, "revoked": False,
        "labels": [f"l{n}"], "kill_chain_phases": [], "first_seen": at, "last_seen": at,
        "source_path": "value", "pattern": "[ipv4-addr:value = '198.51.100.9']",
        "description": f"d{n}", "name": None, "observable_types": ["ipv4-addr"], **extra,
    }  # fmt: skip


def new_record() -> dict[str, Any]:
    return {"key": KEY, "observable_type": "ipv4-addr", "path": "value", "value": "198.51.100.9",
            "sources": [], "sightings": [], "links": [], "malware": [], "campaigns": [],
            "intrusion_sets": [], "warninglist_hits": []}  # fmt: skip


def write(
    stored: dict[str, Any] | None, reports: list[dict[str, Any]], when: datetime
) -> tuple[dict[str, Any], Plan]:
    """The correlator's write of ``reports`` into ``stored`` at ``when`` (no I/O)."""
    aud = audiences()
    record = merge.upgrade(dict(stored)) if stored is not None else new_record()
    record["sources"] = list(record["sources"])
    for report in reports:
        merge.apply_report(record, report)
    plan = plan_record(record, stored, aud, SCORER, profile, when)
    return assemble(plan, aud, int((stored or {}).get("rev", 0)) + 1), plan


def view_of(doc: dict[str, Any], token: str) -> dict[str, Any] | None:
    """The content ``token`` reads of a stored record (core/views.py readers)."""
    aud = audiences()
    if token in aud.expand(doc.get("readers") or []):
        return content_of(doc)
    for view in doc.get("views") or []:
        if token in aud.expand(view["readers"]):
            found: dict[str, Any] = view["view"]
            return found
    return None


def test_a_record_everyone_sees_alike_is_one_document_with_compressed_readers() -> None:
    doc, plan = write(None, [source("gd-a", "green", 1), source("gd-b", "green", 2)], T0)
    assert plan.partials == []
    assert doc["readers"] == ["jur:GD", "jur:HK"]  # GD's green ipv4 crosses to HK, not MO
    assert view_of(doc, "r:mo-a") is None
    # MO sees HK's report but not GD's: its own view, built from HK's report alone.
    doc, plan = write(doc, [source("hk-a", "green", 3)], T0)
    [mo] = plan.partials
    assert mo.tokens == {"r:mo-a", "m:mo-a", "j:MO"}
    assert mo.content["agencies"] == ["hk-a"] and mo.key.startswith(KEY + "#")


def test_a_hidden_red_report_moves_other_readers_to_a_view_without_it_unchanged() -> None:
    doc, _ = write(None, [source("hk-a", "green", 1)], T0)  # HK -> MO: ipv4 crosses
    before = view_of(doc, "r:mo-a")
    red = source("hk-a", "red", 2, recipients=[])  # HK's own RED: HK alone reads it
    later, plan = write(doc, [red], T0 + timedelta(hours=3))
    assert view_of(later, "r:mo-a") == before  # byte for byte, scored_at included
    assert len(plan.partials) == 1 and "r:mo-a" in plan.partials[0].tokens
    assert all("r:mo-a" not in c.tokens for c in plan.changes)  # nothing announced to MO
    own = view_of(later, "r:hk-a")
    assert own is not None and own["agency_count"] == 1 and len(own["sources"]) == 2


def test_a_granular_marking_cuts_the_field_for_the_readers_it_excludes() -> None:
    marked = source("hk-a", "green", 1, granular={"description": "red", "labels": "amber"})
    doc, _ = write(None, [marked], T0)
    gd = view_of(doc, "r:gd-a")
    assert gd is not None and "description" not in gd["sources"][0]
    assert "labels" not in gd["sources"][0] and gd["labels"] == []
    hk = view_of(doc, "r:hk-a")
    assert hk is not None and hk["sources"][0]["description"] == "d1"


# --------------------------------------------------------------------- property

TLPS = ("clear", "green", "amber", "amber+strict", "red")
#: Histories checked per run: 3000 in CI (~40 s), 300 on a developer machine.
EXAMPLES = (
    3000
    if os.environ.get("CI", "").lower() == "true"
    or os.environ.get("THREATBAY_REQUIRE_SERVICES") == "1"
    else 300
)


@st.composite
def reports(draw: st.DrawFn, n: int) -> dict[str, Any]:
    agency = draw(st.sampled_from([a.id for a in AGENCIES]))
    extra: dict[str, Any] = {}
    tlp = draw(st.sampled_from(TLPS))
    if tlp == "red":
        extra["recipients"] = draw(st.lists(st.sampled_from([a.id for a in AGENCIES]),
                                            max_size=2, unique=True))  # fmt: skip
    if draw(st.booleans()):
        extra["granular"] = {draw(st.sampled_from(["labels", "description", "confidence"])):
                             draw(st.sampled_from(TLPS))}  # fmt: skip
    return source(agency, tlp, n, **extra)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_no_reader_reads_anything_of_a_part_hidden_from_it(data: st.DataObject) -> None:
    """Every step merges visible reports; a twin history also merges hidden ones between."""
    aud = audiences()
    tokens = sorted(aud.tokens)
    reader = data.draw(st.sampled_from(tokens))
    plain: dict[str, Any] | None = None
    more: dict[str, Any] | None = None
    for step in range(data.draw(st.integers(1, 4))):
        when = T0 + timedelta(hours=step)
        visible = [data.draw(reports(10 * step + i)) for i in range(data.draw(st.integers(1, 2)))]
        plain, _ = write(plain, visible, when)
        more, plan = write(more, visible, when)
        if data.draw(st.booleans()):
            candidate = data.draw(reports(10 * step + 5))
            alone = parts_of({**new_record(), "sources": [candidate]}, aud)
            hidden = [candidate] if reader not in alone.sources[0] else []
            if hidden:
                more, plan = write(more, hidden, when + timedelta(minutes=30))
                assert all(reader not in c.tokens for c in plan.changes)
        assert view_of(plain, reader) == view_of(more, reader)
