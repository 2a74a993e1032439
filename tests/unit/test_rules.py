"""The alert rule file: validation with clear errors, and the DOMAIN.md default rules."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ConfigurationError
from correlate.rules import evaluate, load_ruleset, ruleset_from_yaml

RULES = load_ruleset()


def record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "key": "domain-name|value|bad.example.com",
        "observable_type": "domain-name",
        "value": "bad.example.com",
        "score": 0.0,
        "state": "active",
        "agencies": ["hk-govcert"],
        "jurisdictions": ["HK"],
        "agency_count": 1,
        "jurisdiction_count": 1,
        "sighted": False,
        "sightings": [],
        "sources": [{"agency": "hk-govcert", "jurisdiction": "HK", "tlp": "green"}],
        "malware": [],
        "campaigns": [],
        "intrusion_sets": [],
        "sectors": [],
        "tlp": "green",
    }
    base.update(over)
    return base


def levels(rec: dict[str, Any], kinds: list[str] | None = None) -> list[tuple[str, str]]:
    triggers = evaluate(
        RULES, rec, kinds or ["updated"], {}, trigger_id="t", at="2026-03-01T00:00:00Z"
    )
    return [(t.level.value, t.rule) for t in triggers]


RED, ORANGE = ("RED", "red-corroborated-critical"), ("ORANGE", "orange-cross-border")
YELLOW, BLUE = ("YELLOW", "yellow-corroborated"), ("BLUE", "blue-second-agency")
TWO_A: dict[str, Any] = {"agencies": ["a", "b"], "agency_count": 2}
TWO_J = {"agencies": ["hk-govcert", "gd-cac"], "jurisdictions": ["GD", "HK"], "agency_count": 2,
         "jurisdiction_count": 2}  # fmt: skip


@pytest.mark.parametrize(
    ("over", "kinds", "expected"),
    [
        ({"score": 95.0, **TWO_J, "sighted": True}, None, [RED]),
        ({"score": 95.0, **TWO_J, "sectors": ["Energy"]}, None, [RED]),
        ({"score": 95.0, **TWO_J}, None, [ORANGE]),
        ({"score": 86.0, "sighted": True}, None, [("ORANGE", "orange-sighted")]),
        ({"score": 84.0, "sighted": True}, None, []),
        ({"score": 75.0, **TWO_A}, None, [YELLOW]),
        ({"score": 20.0, "agencies": ["a", "b", "c"], "agency_count": 3}, None, [YELLOW]),
        ({"score": 60.0, **TWO_A}, ["new_agency"], [BLUE]),
        ({"score": 60.0, **TWO_A}, ["updated"], []),
        ({"score": 99.0}, None, []),
        ({"score": 99.0, **TWO_J, "sighted": True, "state": "revoked"}, None, []),
    ],
)  # fmt: skip
def test_default_rules_follow_domain_md(
    over: dict[str, Any], kinds: list[str] | None, expected: list[tuple[str, str]]
) -> None:
    assert levels(record(**over), kinds) == expected


def test_highest_level_wins_and_dedup_key_is_family_and_record() -> None:
    [t] = evaluate(
        RULES, record(score=95.0, sighted=True, **TWO_J), ["new_jurisdiction"], {},
        trigger_id="t", at="2026-03-01T00:00:00Z",
    )  # fmt: skip
    assert t.level.value == "RED"
    assert t.dedup_key == "indicator|domain-name|value|bad.example.com"
    assert t.incident is True  # sighted: the alert shows statutory clocks
    assert t.jurisdictions == ("GD", "HK")
    assert "bad.example.com" in t.title


def test_surge_gives_one_trigger_per_cluster_over_threshold() -> None:
    rec = record(score=30.0, malware=["malware--emotet"], campaigns=["campaign--x"])
    queries = RULES.surge_queries(rec, ["new_record"])
    assert {(q.field, q.value) for q in queries} == {
        ("malware", "malware--emotet"),
        ("campaigns", "campaign--x"),
    }
    assert RULES.surge_queries(rec, ["updated"]) == []
    hood = {("malware", "malware--emotet"): 25, ("campaigns", "campaign--x"): 3}
    triggers = evaluate(RULES, rec, ["new_record"], hood, trigger_id="t", at="2026-03-01T00:00:00Z")
    assert [(t.family, t.dedup_key) for t in triggers] == [
        ("surge", "surge|malware|malware--emotet")
    ]
    assert triggers[0].cluster is not None and triggers[0].cluster["count"] == 25


H = "version: 1\nrules:\n - "
BAD = [
    ("version: 2\nrules: []", "field 'version'"),
    ("version: 1\nrules: []", "field 'rules': must be a non-empty list"),
    (H + "name: Bad Name\n   level: RED\n   when: {score: 1}", "field 'name'"),
    (H + "name: r1\n   level: PURPLE\n   when: {score: 1}",
     "rule 'r1', field 'level': unknown level 'PURPLE'"),
    (H + "name: r1\n   level: RED\n   when: {scroe: {gte: 1}}",
     "rule 'r1', field 'when': unknown field 'scroe'"),
    (H + "name: r1\n   level: RED\n   when: {score: {gte: high}}",
     "rule 'r1', field 'when.score.gte': expected a number"),
    (H + "name: r1\n   level: RED\n   when: {sighted: {gte: 1}}",
     "operator 'gte' does not apply to bool field 'sighted'"),
    (H + "name: r1\n   level: RED\n   when: {kinds: {contains: nwe_record}}",
     "unknown change kind"),
    (H + "name: r1\n   level: RED\n   when: {all: []}", "non-empty list"),
    (H + "name: r1\n   level: RED", "an indicator rule needs a condition"),
    (H + "name: s\n   kind: surge\n   level: RED\n   threshold: 1\n   window: 1h",
     "rule 's', field 'threshold'"),
    (H + "name: s\n   kind: surge\n   level: RED\n   threshold: 5\n   window: soon",
     "rule 's', field 'window'"),
    (H + "name: r1\n   level: RED\n   when: {score: 1}\n   title: '{value.__class__}'",
     "field 'title'"),
    (H + "{name: r1, level: RED, when: {score: 1}}\n - {name: r1, level: RED, when: {score: 2}}",
     "rule 'r1', field 'name': duplicate"),
    (H + "{name: r1, level: RED, when: {score: 1}, colour: red}",
     "field 'colour': unknown key"),
    ("rules: [", "not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD)
def test_invalid_rule_files_are_refused_with_a_precise_message(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        ruleset_from_yaml(text, "ops/rules.yaml")
    assert "ops/rules.yaml" in str(err.value)
    assert message in str(err.value)


def test_conditions_compose_with_all_any_not() -> None:
    rules = ruleset_from_yaml(
        """
version: 1
rules:
  - name: not-cn
    level: BLUE
    when:
      all:
        - observable_type: {in: [domain-name, url]}
        - not: {jurisdictions: {contains: MO}}
        - any: [{score: {gt: 50}}, {labels: {contains: apt}}]
"""
    )
    match = evaluate(rules, record(score=60.0), ["updated"], {}, trigger_id="t", at="x")
    assert [t.rule for t in match] == ["not-cn"]
    macao = record(score=60.0, jurisdictions=["MO"])
    assert evaluate(rules, macao, ["updated"], {}, trigger_id="t", at="x") == []
