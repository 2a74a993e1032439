"""Alert levels, deadlines and lifecycle transitions (DOMAIN.md "Early-warning levels")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.alerts import (
    AlertError,
    Level,
    Trigger,
    acknowledge,
    alert_to_stix,
    comment,
    escalate_overdue,
    expire_if_idle,
    late_jurisdictions,
    most_restrictive_tlp,
    open_or_update,
    reader_view,
    remind_update_due,
    reporting_clocks,
    resolve,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
KEY = "domain-name|value|bad.example.com"


def summary(key: str = KEY, score: float = 88.0, tlp: str = "green") -> dict[str, Any]:
    return {
        "key": key,
        "observable_type": "domain-name",
        "value": key.rsplit("|", 1)[-1],
        "score": score,
        "tlp": tlp,
        "agencies": ["hk-govcert", "gd-cac"],
        "jurisdictions": ["GD", "HK"],
        "sources": [
            {"agency": "hk-govcert", "jurisdiction": "HK", "tlp": tlp, "stix_id": "indicator--1"},
        ],
    }


def trigger(
    level: Level = Level.ORANGE,
    tid: str = "t1",
    at: datetime = T0,
    jurisdictions: tuple[str, ...] = ("GD", "HK"),
    indicators: tuple[dict[str, Any], ...] | None = None,
    incident: bool = False,
) -> Trigger:
    return Trigger(
        rule=f"{level.value.lower()}-rule",
        family="indicator",
        level=level,
        dedup_key=f"indicator|{KEY}",
        category="malicious-infrastructure",
        title=f"{level.value}: bad.example.com",
        trigger_id=tid,
        at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        jurisdictions=jurisdictions,
        agencies=("gd-cac", "hk-govcert"),
        indicators=indicators or (summary(),),
        measures=("Block it.",),
        incident=incident,
    )


def ok(outcome: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert not isinstance(outcome, AlertError), outcome
    alert, events = outcome
    return alert, events


def test_levels_carry_the_domain_table() -> None:
    assert [lv.rank for lv in Level] == [4, 3, 2, 1]
    assert [lv.hk_label for lv in Level] == ["Extremely High", "High", "Medium", "Low"]
    assert [lv.ack_within for lv in Level] == [
        timedelta(minutes=30),
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(hours=24),
    ]
    assert [lv.update_every for lv in Level] == [
        timedelta(hours=2),
        timedelta(hours=6),
        timedelta(hours=24),
        None,
    ]
    assert Level.parse(" red ") is Level.RED
    with pytest.raises(ValueError, match="unknown level"):
        Level.parse("PURPLE")


def test_open_notifies_every_concerned_jurisdiction_with_the_level_deadline() -> None:
    alert, events = open_or_update(None, trigger(Level.RED), T0)
    assert alert["status"] == "open" and alert["level"] == "RED"
    assert [e["type"] for e in events] == ["opened", "notified", "notified"]
    assert alert["jurisdiction_state"]["HK"]["deadline"] == "2026-03-01T08:30:00.000000Z"
    assert alert["pending_jurisdictions"] == ["GD", "HK"]
    assert alert["next_update_due"] == "2026-03-01T10:00:00.000000Z"
    assert alert["indicator_keys"] == [KEY]
    assert alert["tlp"] == "green"


def test_a_replayed_trigger_changes_nothing() -> None:
    alert, _ = open_or_update(None, trigger(), T0)
    again, events = open_or_update(alert, trigger(), T0 + timedelta(minutes=1))
    assert events == [] and again == alert


def test_retrigger_raises_the_level_and_asks_for_acknowledgement_again() -> None:
    alert, _ = open_or_update(None, trigger(Level.YELLOW), T0)
    alert, _ = ok(acknowledge(alert, "hk-govcert", "HK", T0 + timedelta(minutes=5)))
    later = T0 + timedelta(minutes=10)
    raised, events = open_or_update(alert, trigger(Level.RED, tid="t2"), later)
    assert raised["id"] == alert["id"] and raised["level"] == "RED"
    assert [e["type"] for e in events] == ["level_raised", "notified", "notified"]
    assert raised["jurisdiction_state"]["HK"]["status"] == "notified"
    assert raised["jurisdiction_state"]["HK"]["deadline"] == "2026-03-01T08:40:00.000000Z"


def test_a_lower_level_never_lowers_the_alert() -> None:
    alert, _ = open_or_update(None, trigger(Level.RED), T0)
    same, _ = open_or_update(alert, trigger(Level.BLUE, tid="t2"), T0 + timedelta(minutes=1))
    assert same["level"] == "RED"


def test_repeated_updates_are_coalesced_not_flooded() -> None:
    alert, _ = open_or_update(None, trigger(), T0)
    for i in range(50):
        ind = summary(key=f"domain-name|value|x{i}.example.com")
        alert, _ = open_or_update(
            alert,
            trigger(tid=f"u{i}", indicators=(ind,)),
            T0 + timedelta(seconds=i + 1),
        )
    updates = [e for e in alert["timeline"] if e["type"] == "updated"]
    assert len(updates) == 1 and updates[0]["count"] == 50
    assert alert["indicator_total"] == 51
    # After the coalescing window a new update event is written.
    alert, events = open_or_update(
        alert,
        trigger(tid="late", indicators=(summary(key="domain-name|value|y.example.com"),)),
        T0 + timedelta(minutes=10),
    )
    assert [e["type"] for e in events] == ["updated"]


def test_new_jurisdiction_is_notified_on_update() -> None:
    alert, _ = open_or_update(None, trigger(jurisdictions=("HK",)), T0)
    alert, events = open_or_update(
        alert, trigger(tid="t2", jurisdictions=("HK", "MO")), T0 + timedelta(minutes=2)
    )
    assert [(e["type"], e.get("jurisdiction")) for e in events] == [("notified", "MO")]
    assert alert["jurisdictions"] == ["HK", "MO"]


def test_only_a_concerned_jurisdiction_may_acknowledge() -> None:
    alert, _ = open_or_update(None, trigger(), T0)
    refused = acknowledge(alert, "mo-caric", "MO", T0)
    assert isinstance(refused, AlertError) and refused.code == "not_concerned"
    acked, events = ok(acknowledge(alert, "hk-govcert", "HK", T0 + timedelta(minutes=3)))
    assert acked["jurisdiction_state"]["HK"]["acknowledged_by"] == "hk-govcert"
    assert acked["pending_jurisdictions"] == ["GD"]
    twice = acknowledge(acked, "hk-govcert", "HK", T0)
    assert isinstance(twice, AlertError) and twice.code == "already_acknowledged"


def test_overdue_jurisdiction_is_flagged_renotified_once_per_period() -> None:
    alert, _ = open_or_update(None, trigger(), T0)
    alert, _ = ok(acknowledge(alert, "hk-govcert", "HK", T0 + timedelta(minutes=5)))
    same, events = escalate_overdue(alert, T0 + timedelta(minutes=59))
    assert events == []
    late, events = escalate_overdue(alert, T0 + timedelta(minutes=61))
    assert [(e["type"], e["jurisdiction"]) for e in events] == [
        ("overdue", "GD"),
        ("renotified", "GD"),
    ]
    assert [x["jurisdiction"] for x in late_jurisdictions(late)] == ["GD"]
    assert late["overdue_jurisdictions"] == ["GD"]
    again, events = escalate_overdue(late, T0 + timedelta(minutes=90))
    assert events == []
    third, events = escalate_overdue(again, T0 + timedelta(minutes=122))
    assert [e["type"] for e in events] == ["renotified"]
    assert third["jurisdiction_state"]["GD"]["renotified_count"] == 2
    # A late acknowledgement clears the flag and is recorded as late.
    acked, _ = ok(acknowledge(third, "gd-cac", "GD", T0 + timedelta(minutes=130)))
    assert acked["overdue_jurisdictions"] == [] and acked["jurisdiction_state"]["GD"]["late"]


def test_update_due_reminds_once_per_interval_until_the_alert_is_updated() -> None:
    # ORANGE: update every 6 h (DOMAIN.md "Early-warning levels").
    alert, _ = open_or_update(None, trigger(), T0)
    assert alert["next_update_due"] == "2026-03-01T14:00:00.000000Z"
    same, events = remind_update_due(alert, T0 + timedelta(hours=5, minutes=59))
    assert events == [] and same is alert
    reminded, events = remind_update_due(alert, T0 + timedelta(hours=6, minutes=1))
    assert [(e["type"], e["due"]) for e in events] == [
        ("update_due", "2026-03-01T14:00:00.000000Z")
    ]
    assert reminded["next_update_due"] == "2026-03-01T20:00:00.000000Z"
    assert remind_update_due(reminded, T0 + timedelta(hours=7))[1] == []  # once per interval
    assert len(remind_update_due(reminded, T0 + timedelta(hours=12, minutes=1))[1]) == 1
    # An update moves the next reminder to six hours after it.
    changed = trigger(tid="t2", indicators=(summary(score=95.0),))
    updated, _ = open_or_update(reminded, changed, T0 + timedelta(hours=8))
    assert updated["updated"] == "2026-03-01T16:00:00.000000Z"
    assert updated["next_update_due"] == "2026-03-01T22:00:00.000000Z"
    # BLUE has no update interval; a closed alert is never reminded.
    blue, _ = open_or_update(None, trigger(level=Level.BLUE), T0)
    assert blue["next_update_due"] is None
    assert remind_update_due(blue, T0 + timedelta(days=3))[1] == []
    closed, _ = ok(resolve(alert, "hk-govcert", "HK", T0 + timedelta(hours=1), "blocked"))
    assert remind_update_due(closed, T0 + timedelta(days=1))[1] == []


def test_resolve_closes_and_a_later_trigger_opens_a_new_generation() -> None:
    alert, _ = open_or_update(None, trigger(), T0)
    closed, _ = ok(resolve(alert, "hk-govcert", "HK", T0 + timedelta(hours=1), "blocked"))
    assert closed["status"] == "resolved" and closed["pending_jurisdictions"] == []
    assert isinstance(resolve(closed, "hk-govcert", "HK", T0), AlertError)
    stale, events = open_or_update(closed, trigger(tid="old", at=T0), T0 + timedelta(hours=2))
    assert events == [] and stale is closed
    reopened, events = open_or_update(
        closed, trigger(tid="new", at=T0 + timedelta(hours=3)), T0 + timedelta(hours=3)
    )
    assert reopened["id"] != closed["id"] and reopened["generation"] == 1
    assert events[0]["type"] == "opened"


def test_comment_and_idle_expiry() -> None:
    alert, _ = open_or_update(None, trigger(), T0)
    alert, events = ok(comment(alert, "gd-cac", "GD", "  looking into it  ", T0))
    assert events[0]["text"] == "looking into it"
    assert isinstance(comment(alert, "gd-cac", "GD", "   ", T0), AlertError)
    outsider = comment(alert, "mo-caric", "MO", "hello", T0)
    assert isinstance(outsider, AlertError) and outsider.code == "not_concerned"
    kept, events = expire_if_idle(alert, T0 + timedelta(days=6))
    assert events == []
    expired, events = expire_if_idle(alert, T0 + timedelta(days=8))
    assert expired["status"] == "expired" and [e["type"] for e in events] == ["expired"]


def test_incident_alert_shows_statutory_reporting_clocks() -> None:
    alert, _ = open_or_update(None, trigger(incident=True, jurisdictions=("GD", "HK", "MO")), T0)
    clocks = {(c["jurisdiction"], c["within_hours"]) for c in alert["reporting_clocks"]}
    assert clocks == {("GD", 1), ("GD", 2), ("GD", 4), ("HK", 12), ("HK", 48), ("MO", None)}
    [caric] = reporting_clocks(["MO"], T0)
    assert caric["report_to"] == "CARIC" and caric["due"] is None
    plain, _ = open_or_update(None, trigger(), T0)
    assert plain["reporting_clocks"] == []


def test_tlp_is_the_most_restrictive_of_what_is_shown() -> None:
    assert most_restrictive_tlp(["green", "TLP:AMBER", None]) == "amber"
    assert most_restrictive_tlp(["white", "clear"]) == "clear"
    red = summary(key="domain-name|value|r.example.com", tlp="red")
    alert, _ = open_or_update(None, trigger(indicators=(summary(), red)), T0)
    assert alert["tlp"] == "red"
    only_green = reader_view(alert, lambda ind: ind if ind["tlp"] != "red" else None)
    assert only_green is not None
    assert only_green["tlp"] == "green" and only_green["indicators_hidden"] == 1
    assert only_green["indicator_keys"] == [KEY]
    assert reader_view(alert, lambda ind: None) is None


def test_alert_as_stix_report_carries_level_and_references_indicators() -> None:
    alert, _ = open_or_update(None, trigger(Level.RED), T0)
    report = alert_to_stix(alert)
    assert report["type"] == "report" and report["spec_version"] == "2.1"
    assert report["object_refs"] == ["indicator--1"]
    assert report["x_threatbay_alert"]["level"] == "RED"
    assert report["object_marking_refs"] == [
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
    ]
