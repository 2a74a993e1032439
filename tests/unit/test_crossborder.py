"""Cross-border whitelist: allows(), validation messages, the shipped default file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.crossborder import default_whitelist, whitelist_from_dict, whitelist_from_yaml_text
from core.errors import ConfigurationError

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "threatbay/defaults/crossborder.yaml"


def _rule(**over: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": "gd-hk",
        "from": "GD",
        "to": "HK",
        "object_types": ["indicator"],
        "observable_types": ["ipv4-addr"],
    }
    rule.update(over)
    return rule


def test_shipped_yaml_is_the_default_whitelist() -> None:
    assert whitelist_from_yaml_text(DEFAULT_FILE.read_text()) == default_whitelist()


def test_default_lets_attacker_infrastructure_cross_at_green_only_not_amber_or_red() -> None:
    wl = default_whitelist()
    assert wl.allows("GD", "HK", "indicator", "ipv4-addr", "green", False)[0]
    assert wl.allows("MO", "GD", "malware", None, "clear", False)[0]
    assert not wl.allows("GD", "HK", "indicator", "ipv4-addr", "amber", True, "hk-govcert")[0]
    assert not wl.allows("GD", "HK", "indicator", "ipv4-addr", "red", True, "hk-govcert")[0]
    assert not wl.allows("GD", "HK", "indicator", "ipv4-addr", "amber+strict", True)[0]


def test_default_keeps_victim_side_types_home() -> None:
    wl = default_whitelist()
    for obj_type, obs in [
        ("identity", None),
        ("user-account", "user-account"),
        ("email-addr", "email-addr"),  # standalone address may be a victim's
        ("observed-data", None),
        ("indicator", "user-account"),
        ("indicator", frozenset({"ipv4-addr", "user-account"})),
    ]:
        assert not wl.allows("HK", "MO", obj_type, obs, "clear", False)[0], obj_type


def test_phishing_sender_in_a_pattern_crosses_by_default() -> None:
    assert default_whitelist().allows("HK", "GD", "indicator", "email-addr", "green", False)[0]


def test_amber_needs_counterpart_and_consent_when_rule_says_so() -> None:
    wl = whitelist_from_dict(
        {
            "rules": [
                _rule(amber_counterparts=["hk-govcert"]),
                _rule(
                    name="hk-mo",
                    **{"from": "HK", "to": "MO"},
                    amber_requires_consent=False,
                    amber_counterparts=["mo-caric"],
                ),
            ]
        }
    )
    assert wl.allows("GD", "HK", "indicator", "ipv4-addr", "amber", True, "hk-govcert") == (
        True,
        "gd-hk",
    )
    assert not wl.allows("GD", "HK", "indicator", "ipv4-addr", "amber", False, "hk-govcert")[0]
    assert not wl.allows("GD", "HK", "indicator", "ipv4-addr", "amber", True, "hk-hkcert")[0]
    assert wl.allows("HK", "MO", "indicator", "ipv4-addr", "amber", False, "mo-caric")[0]
    assert not wl.allows("MO", "HK", "indicator", "ipv4-addr", "green", False)[0]  # one-way


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [_rule(**{"from": "TW"})]}, "unknown jurisdiction 'TW' in 'from'"),
        ({"rules": [_rule(to="gd")]}, "unknown jurisdiction 'gd' in 'to'"),
        ({"rules": [_rule(to="GD")]}, "'from' and 'to' are both GD"),
        ({"rules": [_rule(objects=["indicator"])]}, "unknown key(s) objects"),
        ({"rule": []}, "unknown key(s) rule"),
        ({"rules": [_rule(object_types="indicator")]}, "'object_types' must be a list"),
        ({"rules": [_rule(observable_types=["IPv4"])]}, "'IPv4' is not a STIX type name"),
        ({"rules": [_rule(amber_requires_consent="yes")]}, "must be true or false"),
        ({"rules": [_rule(amber_counterparts="hk-govcert")]}, "list of agency ids"),
        ({"rules": [_rule(), _rule()]}, "duplicate rule name"),
        (
            {"rules": [{"name": "x", "from": "GD", "to": "HK"}]},
            "missing required key 'object_types'",
        ),
        ({"rules": {"a": 1}}, "'rules' must be a list"),
        ({"version": 2}, "unsupported version 2"),
        ([], "must be a mapping"),
    ],
)
def test_invalid_whitelist_names_the_problem(data: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        whitelist_from_dict(data)
    assert message in str(err.value)


def test_error_names_the_rule() -> None:
    with pytest.raises(ConfigurationError, match=r"rules\[1\] \('second'\)"):
        whitelist_from_dict({"rules": [_rule(), _rule(name="second", to="XX")]})


def test_bad_yaml_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        whitelist_from_yaml_text("rules: [\n")
    assert whitelist_from_yaml_text("").rules == ()
