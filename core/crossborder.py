"""The cross-border whitelist (DOMAIN.md "Sharing: TLP and cross-border rules").

Configured per (from jurisdiction -> to jurisdiction): which STIX object types
and which observable types may cross. A rule matches an object when its
``object_type`` is listed and *every* observable type the object carries is
listed (one rule must cover all of them). By TLP:

- CLEAR, GREEN: cross when a rule matches.
- AMBER: crosses only to *counterpart agencies* named on the matching rule
  (``amber_counterparts``), and, when ``amber_requires_consent`` is true (the
  default), only if the receiving agency holds consent for the source
  jurisdiction (``Reader.crossborder_consent`` in core/policy.py; the policy
  passes it in as ``consent``). No counterparts listed -> AMBER never crosses.
- AMBER+STRICT, RED: never cross.

The file form (threatbay/defaults/crossborder.yaml)::

    version: 1
    rules:
      - name: gd-to-hk-attacker-infrastructure
        from: GD
        to: HK
        object_types: [indicator, malware, ...]
        observable_types: [ipv4-addr, domain-name, ...]
        amber_requires_consent: true
        amber_counterparts: []
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from core.errors import ConfigurationError
from core.provenance import JURISDICTIONS, Tlp

_TYPE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
_RULE_KEYS = frozenset(
    {
        "name",
        "from",
        "to",
        "object_types",
        "observable_types",
        "amber_requires_consent",
        "amber_counterparts",
    }
)
_REQUIRED_RULE_KEYS = ("name", "from", "to", "object_types")
_TOP_KEYS = frozenset({"version", "rules"})


@dataclass(frozen=True, slots=True)
class CrossBorderRule:
    """One whitelisted (from -> to) flow of object and observable types."""

    name: str
    from_j: str
    to_j: str
    object_types: frozenset[str]
    observable_types: frozenset[str] = frozenset()
    amber_requires_consent: bool = True
    amber_counterparts: frozenset[str] = frozenset()

    def covers(self, object_type: str, observable_types: frozenset[str]) -> bool:
        """True when the object type and every observable type are listed."""
        return object_type in self.object_types and observable_types <= self.observable_types


@dataclass(frozen=True, slots=True)
class CrossBorderWhitelist:
    """All rules; ``allows`` answers one crossing question."""

    rules: tuple[CrossBorderRule, ...] = ()

    def rules_for(self, from_j: str, to_j: str) -> tuple[CrossBorderRule, ...]:
        """Rules for one (from -> to) pair, in file order."""
        return tuple(r for r in self.rules if r.from_j == from_j and r.to_j == to_j)

    def allows(
        self,
        from_j: str,
        to_j: str,
        object_type: str,
        observable_type: str | frozenset[str] | None,
        tlp: Tlp,
        consent: bool,
        to_agency: str | None = None,
    ) -> tuple[bool, str]:
        """(allowed, rule name or reason) for one crossing (module docstring has the rules)."""
        if from_j == to_j:
            return True, "same-jurisdiction"
        if tlp in ("red", "amber+strict"):
            return False, f"tlp:{tlp}:never-crosses"
        if observable_type is None:
            observables: frozenset[str] = frozenset()
        elif isinstance(observable_type, str):
            observables = frozenset({observable_type})
        else:
            observables = observable_type
        matching = [r for r in self.rules_for(from_j, to_j) if r.covers(object_type, observables)]
        if not matching:
            return False, f"crossborder:{from_j}->{to_j}:not-whitelisted"
        if tlp in ("clear", "green"):
            return True, matching[0].name
        for rule in matching:  # AMBER
            if to_agency is None or to_agency not in rule.amber_counterparts:
                continue
            if rule.amber_requires_consent and not consent:
                continue
            return True, rule.name
        return False, f"crossborder:{from_j}->{to_j}:amber-not-counterpart-or-no-consent"


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"cross-border whitelist: {where}: {message}")


def _type_set(where: str, key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        raise _fail(where, f"'{key}' must be a list of STIX type names, got {type(value).__name__}")
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not _TYPE_NAME.match(item):
            raise _fail(where, f"'{key}' entry {item!r} is not a STIX type name")
        out.add(item)
    return frozenset(out)


def _jurisdiction(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in JURISDICTIONS:
        raise _fail(
            where,
            f"unknown jurisdiction {value!r} in '{key}' "
            f"(expected one of {', '.join(JURISDICTIONS)})",
        )
    return value


def _rule_from_dict(index: int, data: Any) -> CrossBorderRule:
    where = f"rules[{index}]"
    if not isinstance(data, Mapping):
        raise _fail(where, f"must be a mapping, got {type(data).__name__}")
    if isinstance(data.get("name"), str):
        where = f"rules[{index}] ({data['name']!r})"
    unknown = sorted(str(k) for k in data if k not in _RULE_KEYS)
    if unknown:
        raise _fail(
            where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_RULE_KEYS))})"
        )
    for key in _REQUIRED_RULE_KEYS:
        if key not in data:
            raise _fail(where, f"missing required key '{key}'")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "'name' must be a non-empty string")
    from_j = _jurisdiction(where, "from", data["from"])
    to_j = _jurisdiction(where, "to", data["to"])
    if from_j == to_j:
        raise _fail(where, f"'from' and 'to' are both {from_j}; a rule must cross a border")
    object_types = _type_set(where, "object_types", data["object_types"])
    observable_types = _type_set(where, "observable_types", data.get("observable_types", []))
    consent = data.get("amber_requires_consent", True)
    if not isinstance(consent, bool):
        raise _fail(where, f"'amber_requires_consent' must be true or false, got {consent!r}")
    counterparts_raw = data.get("amber_counterparts", [])
    if not isinstance(counterparts_raw, list) or not all(
        isinstance(x, str) and x.strip() for x in counterparts_raw
    ):
        raise _fail(where, "'amber_counterparts' must be a list of agency ids (strings)")
    return CrossBorderRule(
        name=name.strip(),
        from_j=from_j,
        to_j=to_j,
        object_types=object_types,
        observable_types=observable_types,
        amber_requires_consent=consent,
        amber_counterparts=frozenset(counterparts_raw),
    )


def whitelist_from_dict(data: Any) -> CrossBorderWhitelist:
    """Validate and build the whitelist; ConfigurationError says exactly what is wrong."""
    if not isinstance(data, Mapping):
        raise _fail("top level", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise _fail("top level", f"unknown key(s) {', '.join(unknown)} (allowed: rules, version)")
    version = data.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise _fail("top level", f"unsupported version {version!r} (expected 1)")
    rules_raw = data.get("rules", [])
    if not isinstance(rules_raw, list):
        raise _fail("top level", f"'rules' must be a list, got {type(rules_raw).__name__}")
    rules = tuple(_rule_from_dict(i, r) for i, r in enumerate(rules_raw))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise _fail(f"rules[{i}] ({rule.name!r})", "duplicate rule name")
        seen.add(rule.name)
    return CrossBorderWhitelist(rules=rules)


def whitelist_from_yaml_text(text: str) -> CrossBorderWhitelist:
    """Parse the operator-editable YAML form (file I/O is done by threatbay/)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"cross-border whitelist: not valid YAML: {exc}") from exc
    return whitelist_from_dict(data if data is not None else {})


# Attacker-side objects and infrastructure; no identity, report, note, incident,
# observed-data, user-account, email-message or threat-actor (may name persons).
DEFAULT_OBJECT_TYPES = frozenset(
    {
        "indicator",
        "sighting",
        "malware",
        "attack-pattern",
        "infrastructure",
        "intrusion-set",
        "campaign",
        "tool",
        "vulnerability",
        "relationship",
        "ipv4-addr",
        "ipv6-addr",
        "domain-name",
        "url",
        "file",
    }
)
# email-addr appears in patterns only as phishing sender (email-addr:value or
# email-message:from_ref / sender_ref); a standalone email-addr object is not
# in DEFAULT_OBJECT_TYPES because it may be a victim's address.
DEFAULT_OBSERVABLE_TYPES = frozenset(
    {"ipv4-addr", "ipv6-addr", "domain-name", "url", "file", "email-addr"}
)


def default_whitelist() -> CrossBorderWhitelist:
    """Conservative default: attacker infrastructure crosses at CLEAR/GREEN; no AMBER."""
    rules = tuple(
        CrossBorderRule(
            name=f"{f.lower()}-to-{t.lower()}-attacker-infrastructure",
            from_j=f,
            to_j=t,
            object_types=DEFAULT_OBJECT_TYPES,
            observable_types=DEFAULT_OBSERVABLE_TYPES,
            amber_requires_consent=True,
            amber_counterparts=frozenset(),
        )
        for f in JURISDICTIONS
        for t in JURISDICTIONS
        if f != t
    )
    return CrossBorderWhitelist(rules=rules)
