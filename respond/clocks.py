"""Statutory reporting clocks as data.

DOMAIN.md "Statutory reporting clocks" and "Joint incident cases".

The rules file (``threatbay/defaults/clock_rules.yaml``; an operator points
``THREATBAY_CASES__CLOCK_RULES_FILE`` at their own) says, per jurisdiction,
which facts of an affected entity (operator type, seriousness, critical
infrastructure, sector) start which reporting stages with which limit,
counted from the awareness time the reporting agency set. Pure: parsing and
computing; the case transitions (respond/cases.py) keep each clock's state.

Defaults encode: mainland measures (CII operators 1 h, central and state
organs 2 h, other operators 4 h), Hong Kong Cap. 653 (serious 12 h, others
48 h), Macao Law 13/2019 (notify CARIC, no fixed hour limit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from core.clock import format_timestamp
from core.errors import ConfigurationError
from core.provenance import JURISDICTIONS

DEFAULT_CLOCK_RULES = Path(__file__).resolve().parent.parent / "threatbay/defaults/clock_rules.yaml"

OPERATOR_TYPES = ("cii", "state-organ", "ci-operator", "other")
_FACTS = frozenset({"operator_type", "serious", "critical_infrastructure", "sector"})
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_STAGE_KEYS = frozenset({"name", "when", "within", "remind_before", "report_to", "law"})
_JURISDICTION_KEYS = frozenset({"law", "report_to", "stages"})
_TOP_KEYS = frozenset({"version", "remind_before", "jurisdictions"})


def parse_duration(text: Any) -> timedelta:
    """'30s', '15m', '1h', '3d' -> timedelta; ValueError otherwise."""
    m = _DURATION.match(str(text)) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h or 3d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


@dataclass(frozen=True, slots=True)
class Stage:
    """One reporting stage of one jurisdiction's law."""

    jurisdiction: str
    name: str
    law: str
    report_to: str
    within: timedelta | None
    remind_before: timedelta
    when: Mapping[str, Any] = field(default_factory=dict)

    def applies(self, facts: Mapping[str, Any]) -> bool:
        """True when every condition of ``when`` holds for the entity ``facts``."""
        for key, wanted in self.when.items():
            have = facts.get(key)
            if isinstance(wanted, list):
                if have not in wanted:
                    return False
            elif have != wanted:
                return False
        return True


@dataclass(frozen=True, slots=True)
class ClockRules:
    """Every stage of every jurisdiction, in file order."""

    stages: tuple[Stage, ...]
    source: str = "<built-in>"

    def for_entity(self, jurisdiction: str, facts: Mapping[str, Any]) -> list[Stage]:
        return [s for s in self.stages if s.jurisdiction == jurisdiction and s.applies(facts)]


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"clock rules {where}: {message}")


def _duration(where: str, value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _fail(where, str(exc)) from None


def _when(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, "'when' must be a mapping of facts")
    out: dict[str, Any] = {}
    for key, wanted in value.items():
        if key not in _FACTS:
            raise _fail(where, f"unknown fact {key!r} in 'when' (known: {sorted(_FACTS)})")
        if key in ("serious", "critical_infrastructure"):
            if not isinstance(wanted, bool):
                raise _fail(where, f"'{key}' must be true or false")
        elif key == "operator_type":
            values = wanted if isinstance(wanted, list) else [wanted]
            bad = [v for v in values if v not in OPERATOR_TYPES]
            if bad:
                raise _fail(where, f"operator_type {bad} unknown (known: {list(OPERATOR_TYPES)})")
        elif not (isinstance(wanted, str) or isinstance(wanted, list)):
            raise _fail(where, f"'{key}' must be a name or a list of names")
        out[key] = wanted
    return out


def rules_from_yaml_text(text: str, source: str = "<text>") -> ClockRules:
    """Parse and check a clock rules file; ``ConfigurationError`` names what is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(source, f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(source, "the file must be a mapping with 'version' and 'jurisdictions'")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, f"unknown keys {sorted(unknown)}")
    if data.get("version") != 1:
        raise _fail(source, "version must be 1")
    default_remind = _duration(f"{source} remind_before", data.get("remind_before", "15m"))
    jurisdictions = data.get("jurisdictions")
    if not isinstance(jurisdictions, dict) or not jurisdictions:
        raise _fail(source, "'jurisdictions' must map GD / HK / MO to their stages")
    stages: list[Stage] = []
    for j, body in jurisdictions.items():
        where = f"{source} {j}"
        if j not in JURISDICTIONS:
            raise _fail(where, f"unknown jurisdiction (known: {list(JURISDICTIONS)})")
        if not isinstance(body, dict) or set(body) - _JURISDICTION_KEYS:
            raise _fail(where, f"must be a mapping of {sorted(_JURISDICTION_KEYS)}")
        law, report_to = str(body.get("law", "")), str(body.get("report_to", ""))
        raw_stages = body.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise _fail(where, "'stages' must be a non-empty list")
        names: set[str] = set()
        for i, raw in enumerate(raw_stages):
            at = f"{where} stage {i + 1}"
            if not isinstance(raw, dict):
                raise _fail(at, "must be a mapping")
            extra = set(raw) - _STAGE_KEYS
            if extra:
                raise _fail(at, f"unknown keys {sorted(extra)}")
            name = raw.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
                raise _fail(at, "'name' must be lower-case letters, digits and '-'")
            if name in names:
                raise _fail(at, f"stage name {name!r} is used twice")
            names.add(name)
            if "within" not in raw:
                raise _fail(at, "'within' is required (a duration, or null for no fixed limit)")
            within = None if raw["within"] is None else _duration(at, raw["within"])
            remind = (
                _duration(at, raw["remind_before"]) if "remind_before" in raw else default_remind
            )
            stages.append(
                Stage(
                    jurisdiction=j,
                    name=name,
                    law=str(raw.get("law", law)),
                    report_to=str(raw.get("report_to", report_to)),
                    within=within,
                    remind_before=remind,
                    when=_when(at, raw.get("when")),
                )
            )
    return ClockRules(tuple(stages), source)


def load_clock_rules(path: Path | None = None) -> ClockRules:
    """The operator's rules file, or the shipped default; checked (start-up fails on a mistake)."""
    path = path or DEFAULT_CLOCK_RULES
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(str(path), f"cannot read: {exc}") from None
    return rules_from_yaml_text(text, str(path))


def clock_id(entity_id: str, stage: Stage) -> str:
    return f"{entity_id}:{stage.name}"


def new_clock(entity: Mapping[str, Any], stage: Stage, aware_at: datetime) -> dict[str, Any]:
    """The state of one clock started by ``entity`` (an affected-entity item) for ``stage``."""
    due = aware_at + stage.within if stage.within is not None else None
    return {
        "id": clock_id(entity["id"], stage),
        "entity": entity["id"],
        "jurisdiction": stage.jurisdiction,
        "stage": stage.name,
        "law": stage.law,
        "report_to": stage.report_to,
        "within_s": stage.within.total_seconds() if stage.within is not None else None,
        "remind_before_s": stage.remind_before.total_seconds(),
        "started_at": format_timestamp(aware_at),
        "due": format_timestamp(due) if due is not None else None,
        "status": "running",
        "met": None,
        "breached_at": None,
        "reminded": False,
    }
