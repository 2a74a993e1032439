"""Alert rules: a validated YAML rule file and its pure evaluation.

DOMAIN.md "Early-warning levels", default rules. The file (shipped as
``threatbay/defaults/alert_rules.yaml``, replaceable by the operator) holds
two kinds of rule:

- ``indicator`` rules: a condition over one indicator record and the kinds
  of change that produced the event; the highest matching level per
  ``family`` wins and the dedup key is ``family|record key``, so an alert
  that climbs from YELLOW to RED stays one alert.
- ``surge`` rules: at least ``threshold`` new indicators sharing one malware
  / campaign / intrusion set within ``window``; one alert per cluster, dedup
  key ``surge|field|value``.

Conditions are a small declarative language, never ``eval``::

    when:
      all:
        - score: {gte: 90}
        - jurisdiction_count: {gte: 2}
        - any: [{sighted: true}, {critical_sector: true}]

A node is ``all: [...]``, ``any: [...]``, ``not: node`` or one comparison
``field: {op: value}`` (``field: value`` means ``eq``). Fields and the
operators they accept are listed in ``FIELDS``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from core.alerts import Level, Trigger, indicator_summary
from core.errors import ConfigurationError
from core.provenance import JURISDICTIONS
from core.stix import FALSE_POSITIVE

FieldKind = Literal["number", "bool", "text", "list"]

FIELDS: dict[str, FieldKind] = {
    "score": "number",
    "base": "number",
    "jurisdiction_count": "number",
    "agency_count": "number",
    "sighting_count": "number",
    "sighted": "bool",
    "critical_sector": "bool",
    "state": "text",
    "observable_type": "text",
    "tlp": "text",
    "kinds": "list",
    "jurisdictions": "list",
    "agencies": "list",
    "sectors": "list",
    "malware": "list",
    "campaigns": "list",
    "intrusion_sets": "list",
    "labels": "list",
}
OPS: dict[FieldKind, frozenset[str]] = {
    "number": frozenset({"eq", "ne", "gt", "gte", "lt", "lte"}),
    "bool": frozenset({"eq", "ne"}),
    "text": frozenset({"eq", "ne", "in"}),
    "list": frozenset({"contains", "contains_any", "empty"}),
}
CHANGE_KINDS = frozenset(
    {
        "new_record",
        "new_agency",
        "new_jurisdiction",
        "score_crossing",
        "new_sighting",
        "revoked",
        "updated",
        "false_positive",
        "false_positive_withdrawn",
    }
)
SURGE_FIELDS = ("malware", "campaigns", "intrusion_sets")
# Critical-information-infrastructure sectors (HK Cap. 653 categories and the
# mainland CII regulation's sectors overlap on these).
CRITICAL_SECTORS = frozenset(
    {
        "energy",
        "information-technology",
        "communications",
        "telecommunications",
        "banking",
        "financial-services",
        "finance",
        "transport",
        "transportation",
        "water",
        "healthcare",
        "health",
        "government",
        "public-services",
        "defense",
        "emergency-services",
        "critical-infrastructure",
    }
)
TITLE_FIELDS = frozenset(
    {
        "value",
        "observable_type",
        "score",
        "jurisdiction_count",
        "agency_count",
        "level",
        "cluster_field",
        "cluster_value",
        "count",
        "window",
    }
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RULE_KEYS = frozenset(
    {
        "name",
        "kind",
        "level",
        "family",
        "category",
        "title",
        "measures",
        "when",
        "notify",
        "group_by",
        "threshold",
        "window",
        "since_field",
        "incident",
    }
)

Facts = Mapping[str, Any]
Condition = Callable[[Facts], bool]


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule (see module docstring)."""

    name: str
    kind: Literal["indicator", "surge"]
    level: Level
    family: str
    category: str
    title: str
    measures: tuple[str, ...]
    when: Condition
    notify: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    threshold: int = 0
    window: timedelta = timedelta(0)
    since_field: str = "first_seen"
    incident: bool | None = None


@dataclass(frozen=True, slots=True)
class SurgeQuery:
    """A neighbourhood count the alerter must compute: new records sharing ``field=value``."""

    field: str
    value: str
    window: timedelta
    since_field: str


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    coalesce: timedelta = timedelta(minutes=5)
    idle_expiry: timedelta = timedelta(days=7)
    source: str = "<rules>"
    names: tuple[str, ...] = field(default=())

    def surge_queries(self, record: Mapping[str, Any], kinds: Sequence[str]) -> list[SurgeQuery]:
        """Counts the surge rules need for this change (only new records count)."""
        if "new_record" not in kinds:
            return []
        out: dict[tuple[str, str, timedelta, str], SurgeQuery] = {}
        for rule in self.rules:
            if rule.kind != "surge":
                continue
            for fld in rule.group_by:
                for value in record.get(fld) or []:
                    key = (fld, str(value), rule.window, rule.since_field)
                    out[key] = SurgeQuery(fld, str(value), rule.window, rule.since_field)
        return list(out.values())


# ------------------------------------------------------------- validation


class _Where:
    def __init__(self, source: str, rule: str | None = None) -> None:
        self.source, self.rule = source, rule

    def fail(self, fld: str, message: str) -> ConfigurationError:
        rule = f", rule {self.rule!r}" if self.rule else ""
        return ConfigurationError(f"alert rules {self.source}{rule}, field '{fld}': {message}")


def parse_duration(text: Any) -> timedelta:
    """'30s', '5m', '1h', '7d' -> timedelta; ValueError otherwise."""
    if not isinstance(text, str) or not (m := _DURATION.match(text.strip())):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 7d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _compile(node: Any, where: _Where, path: str) -> Condition:
    if not isinstance(node, Mapping) or len(node) != 1:
        raise where.fail(path, f"a condition is a mapping with exactly one key, got {node!r}")
    ((key, arg),) = node.items()
    if key in ("all", "any"):
        if not isinstance(arg, list) or not arg:
            raise where.fail(f"{path}.{key}", "must be a non-empty list of conditions")
        parts = [_compile(n, where, f"{path}.{key}[{i}]") for i, n in enumerate(arg)]
        if key == "all":
            return lambda facts: all(p(facts) for p in parts)
        return lambda facts: any(p(facts) for p in parts)
    if key == "not":
        inner = _compile(arg, where, f"{path}.not")
        return lambda facts: not inner(facts)
    if key not in FIELDS:
        raise where.fail(
            path, f"unknown field {key!r} (known: {', '.join(sorted(FIELDS))}; or all/any/not)"
        )
    kind = FIELDS[key]
    ops = arg if isinstance(arg, Mapping) else {"eq": arg}
    if not ops:
        raise where.fail(f"{path}.{key}", "empty comparison")
    checks = [
        _comparison(str(key), kind, str(op), val, where, f"{path}.{key}.{op}")
        for op, val in ops.items()
    ]
    return lambda facts: all(c(facts) for c in checks)


def _comparison(
    fld: str, kind: FieldKind, op: str, val: Any, where: _Where, path: str
) -> Condition:
    if op not in OPS[kind]:
        raise where.fail(
            path,
            f"operator {op!r} does not apply to {kind} field {fld!r} "
            f"(allowed: {', '.join(sorted(OPS[kind]))})",
        )
    if kind == "number":
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise where.fail(path, f"expected a number, got {val!r}")
        num = float(val)
        cmp: dict[str, Callable[[float], bool]] = {
            "eq": lambda x: x == num,
            "ne": lambda x: x != num,
            "gt": lambda x: x > num,
            "gte": lambda x: x >= num,
            "lt": lambda x: x < num,
            "lte": lambda x: x <= num,
        }
        fn = cmp[op]
        return lambda facts: fn(float(facts.get(fld) or 0))
    if kind == "bool":
        if not isinstance(val, bool):
            raise where.fail(path, f"expected true or false, got {val!r}")
        want = val if op == "eq" else not val
        return lambda facts: bool(facts.get(fld)) is want
    if kind == "text":
        if op == "in":
            if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                raise where.fail(path, "expected a list of strings")
            allowed = frozenset(val)
            return lambda facts: facts.get(fld) in allowed
        if not isinstance(val, str):
            raise where.fail(path, f"expected a string, got {val!r}")
        return (
            (lambda facts: facts.get(fld) == val)
            if op == "eq"
            else (lambda facts: facts.get(fld) != val)
        )
    # list
    if op == "empty":
        if not isinstance(val, bool):
            raise where.fail(path, "expected true or false")
        return lambda facts: (not facts.get(fld)) is val
    wanted = [val] if op == "contains" else val
    if not isinstance(wanted, list) or not all(isinstance(v, str) for v in wanted):
        raise where.fail(path, "expected a string (contains) or a list of strings (contains_any)")
    if fld == "kinds":
        bad = [v for v in wanted if v not in CHANGE_KINDS]
        if bad:
            raise where.fail(
                path, f"unknown change kind(s) {bad} (known: {', '.join(sorted(CHANGE_KINDS))})"
            )
    targets = frozenset(wanted)
    return lambda facts: bool(targets.intersection(facts.get(fld) or ()))


def _text(raw: Mapping[str, Any], key: str, where: _Where, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise where.fail(key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _title(raw: Mapping[str, Any], where: _Where, default: str) -> str:
    title = _text(raw, "title", where, default)
    try:
        for _, name, spec, conv in string.Formatter().parse(title):
            if name is None:
                continue
            if name not in TITLE_FIELDS or conv:
                raise where.fail(
                    "title",
                    f"placeholder {{{name}}} is not one of {', '.join(sorted(TITLE_FIELDS))}",
                )
            del spec
    except ValueError as exc:
        raise where.fail("title", f"bad template: {exc}") from exc
    return title


def _rule(raw: Any, index: int, source: str) -> Rule:
    where = _Where(source, f"#{index + 1}")
    if not isinstance(raw, Mapping):
        raise where.fail("rules", f"each rule is a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise where.fail("name", f"{name!r} must be lower-case letters, digits, '-' or '_'")
    where = _Where(source, name)
    unknown = sorted(str(k) for k in raw if k not in _RULE_KEYS)
    if unknown:
        raise where.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    kind = raw.get("kind", "indicator")
    if kind not in ("indicator", "surge"):
        raise where.fail("kind", f"{kind!r} must be 'indicator' or 'surge'")
    try:
        level = Level.parse(str(raw.get("level", "")))
    except ValueError as exc:
        raise where.fail("level", str(exc)) from exc
    measures = raw.get("measures", [])
    if not isinstance(measures, list) or not all(isinstance(m, str) for m in measures):
        raise where.fail("measures", "must be a list of strings")
    notify = raw.get("notify", [])
    if not isinstance(notify, list) or any(j not in JURISDICTIONS for j in notify):
        raise where.fail("notify", f"must be a list of jurisdictions from {JURISDICTIONS}")
    incident = raw.get("incident")
    if incident is not None and not isinstance(incident, bool):
        raise where.fail("incident", "must be true or false")
    when: Condition = (
        _compile(raw["when"], where, "when") if "when" in raw else (lambda facts: True)
    )
    if kind == "indicator" and "when" not in raw:
        raise where.fail("when", "an indicator rule needs a condition")
    common: dict[str, Any] = {
        "name": name,
        "level": level,
        "measures": tuple(measures),
        "when": when,
        "notify": tuple(notify),
        "incident": incident,
        "category": _text(
            raw, "category", where, "malicious-activity" if kind == "surge" else "indicator"
        ),
    }
    if kind == "indicator":
        family = _text(raw, "family", where, "indicator")
        if family == "surge":
            raise where.fail("family", "'surge' is reserved for surge rules")
        for key in ("group_by", "threshold", "window", "since_field"):
            if key in raw:
                raise where.fail(key, "only surge rules take this key")
        return Rule(
            kind="indicator",
            family=family,
            title=_title(raw, where, "{observable_type} {value}"),
            **common,
        )
    group_by = raw.get("group_by", list(SURGE_FIELDS))
    if (
        not isinstance(group_by, list)
        or not group_by
        or any(g not in SURGE_FIELDS for g in group_by)
    ):
        raise where.fail("group_by", f"must be a non-empty list from {list(SURGE_FIELDS)}")
    threshold = raw.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 2:
        raise where.fail("threshold", f"must be an integer >= 2, got {threshold!r}")
    try:
        window = parse_duration(raw.get("window"))
    except ValueError as exc:
        raise where.fail("window", str(exc)) from exc
    since_field = raw.get("since_field", "first_seen")
    if not isinstance(since_field, str) or not since_field:
        raise where.fail("since_field", "must be a field name")
    return Rule(
        kind="surge",
        family="surge",
        group_by=tuple(group_by),
        threshold=threshold,
        window=window,
        since_field=since_field,
        title=_title(raw, where, "Surge: {count} new indicators of {cluster_value}"),
        **common,
    )


def ruleset_from_dict(data: Any, source: str = "<rules>") -> RuleSet:
    """Validate a parsed rule file; ConfigurationError names file, rule, field and problem."""
    where = _Where(source)
    if not isinstance(data, Mapping):
        raise where.fail("(top level)", "the file must be a mapping with 'version' and 'rules'")
    unknown = sorted(str(k) for k in data if k not in ("version", "rules", "settings"))
    if unknown:
        raise where.fail(unknown[0], "unknown top-level key (allowed: version, rules, settings)")
    if data.get("version") != 1:
        raise where.fail("version", f"unsupported version {data.get('version')!r} (expected 1)")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise where.fail("rules", "must be a non-empty list")
    rules = tuple(_rule(r, i, source) for i, r in enumerate(raw_rules))
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise _Where(source, rule.name).fail("name", "duplicate rule name")
        seen.add(rule.name)
    settings = data.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise where.fail("settings", "must be a mapping")
    extra = sorted(str(k) for k in settings if k not in ("coalesce", "idle_expiry"))
    if extra:
        raise where.fail(f"settings.{extra[0]}", "unknown key (allowed: coalesce, idle_expiry)")
    try:
        coalesce = parse_duration(settings.get("coalesce", "5m"))
        idle = parse_duration(settings.get("idle_expiry", "7d"))
    except ValueError as exc:
        raise where.fail("settings", str(exc)) from exc
    return RuleSet(
        rules=rules,
        coalesce=coalesce,
        idle_expiry=idle,
        source=source,
        names=tuple(r.name for r in rules),
    )


def ruleset_from_yaml(text: str, source: str = "<rules>") -> RuleSet:
    """Parse and validate the YAML form."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"alert rules {source}: not valid YAML: {exc}") from exc
    return ruleset_from_dict(data, source)


DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "threatbay/defaults/alert_rules.yaml"


def load_ruleset(path: Path | None = None) -> RuleSet:
    """Read and validate a rule file (the shipped defaults when ``path`` is None)."""
    path = path or DEFAULT_RULES_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"alert rules {path}: cannot read: {exc}") from exc
    return ruleset_from_yaml(text, str(path))


# ------------------------------------------------------------- evaluation


def facts_of(record: Mapping[str, Any], kinds: Sequence[str]) -> dict[str, Any]:
    """The values conditions compare, read from an indicator record."""
    sectors = [str(s).lower() for s in record.get("sectors") or []]
    return {
        "score": float(record.get("score") or 0.0),
        "base": float((record.get("components") or {}).get("base") or 0.0),
        "jurisdiction_count": int(
            record.get("jurisdiction_count") or len(record.get("jurisdictions") or [])
        ),
        "agency_count": int(record.get("agency_count") or len(record.get("agencies") or [])),
        "sighting_count": sum(int(s.get("count") or 1) for s in _positive_sightings(record)),
        "sighted": bool(record.get("sighted")),
        "critical_sector": any(s in CRITICAL_SECTORS for s in sectors),
        "state": record.get("state", "active"),
        "observable_type": record.get("observable_type"),
        "tlp": record.get("tlp"),
        "kinds": list(kinds),
        "jurisdictions": list(record.get("jurisdictions") or []),
        "agencies": list(record.get("agencies") or []),
        "sectors": sectors,
        "malware": list(record.get("malware") or []),
        "campaigns": list(record.get("campaigns") or []),
        "intrusion_sets": list(record.get("intrusion_sets") or []),
        "labels": sorted({lb for s in record.get("sources") or [] for lb in s.get("labels") or []}),
    }


def _format(template: str, values: Mapping[str, Any]) -> str:
    return template.format_map({k: values.get(k, "") for k in TITLE_FIELDS})


def _positive_sightings(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Sightings that say the value was seen (not the false-positive ones)."""
    return [s for s in record.get("sightings") or [] if s.get("sighting_type") != FALSE_POSITIVE]


def _sighting_jurisdictions(record: Mapping[str, Any]) -> set[str]:
    return {s["jurisdiction"] for s in _positive_sightings(record) if s.get("jurisdiction")}


def _sighting_agencies(record: Mapping[str, Any]) -> set[str]:
    return {s["agency"] for s in _positive_sightings(record) if s.get("agency")}


def evaluate(
    ruleset: RuleSet,
    record: Mapping[str, Any],
    kinds: Sequence[str],
    neighbourhood: Mapping[tuple[str, str], int],
    *,
    trigger_id: str,
    at: str,
) -> list[Trigger]:
    """Rule matches for one change: at most one per indicator family, one per surge cluster.

    Only active records raise alerts (a revoked or expired record is never a
    reason to warn). ``neighbourhood`` maps (field, value) to the number of
    new records sharing it within the surge rule's window, this one included.
    """
    if record.get("state", "active") != "active":
        return []
    facts = facts_of(record, kinds)
    summary = indicator_summary(record)
    jurisdictions = tuple(sorted(set(facts["jurisdictions"]) | _sighting_jurisdictions(record)))
    agencies = tuple(sorted(set(facts["agencies"]) | _sighting_agencies(record)))
    values = {**facts, "value": record.get("value"), "score": round(facts["score"], 1)}
    best: dict[str, Rule] = {}
    surge: dict[tuple[str, str], tuple[Rule, int]] = {}
    for rule in ruleset.rules:
        if not rule.when(facts):
            continue
        if rule.kind == "indicator":
            held = best.get(rule.family)
            if held is None or rule.level.rank > held.level.rank:
                best[rule.family] = rule
            continue
        for fld in rule.group_by:
            for value in facts.get(fld) or []:
                count = neighbourhood.get((fld, str(value)), 0)
                held_s = surge.get((fld, str(value)))
                if count >= rule.threshold and (
                    held_s is None or rule.level.rank > held_s[0].level.rank
                ):
                    surge[(fld, str(value))] = (rule, count)
    triggers = []
    for family, rule in best.items():
        incident = facts["sighted"] if rule.incident is None else rule.incident
        triggers.append(
            Trigger(
                rule=rule.name,
                family=family,
                level=rule.level,
                dedup_key=f"{family}|{record['key']}",
                category=rule.category,
                title=_format(rule.title, {**values, "level": rule.level.value}),
                trigger_id=trigger_id,
                at=at,
                jurisdictions=jurisdictions,
                agencies=agencies,
                indicators=(summary,),
                measures=rule.measures,
                incident=bool(incident),
                extra_jurisdictions=rule.notify,
                sectors=tuple(facts["sectors"]),
            )
        )
    for (fld, value), (rule, count) in sorted(surge.items()):
        cluster = {
            "field": fld,
            "value": value,
            "count": count,
            "window": str(rule.window),
            "window_s": rule.window.total_seconds(),
            "since_field": rule.since_field,
        }
        triggers.append(
            Trigger(
                rule=rule.name,
                family="surge",
                level=rule.level,
                dedup_key=f"surge|{fld}|{value}",
                category=rule.category,
                title=_format(
                    rule.title,
                    {
                        **values,
                        "level": rule.level.value,
                        "cluster_field": fld,
                        "cluster_value": value,
                        "count": count,
                        "window": str(rule.window),
                    },
                ),
                trigger_id=trigger_id,
                at=at,
                jurisdictions=jurisdictions,
                agencies=agencies,
                indicators=(summary,),
                measures=rule.measures,
                incident=bool(rule.incident),
                cluster=cluster,
                extra_jurisdictions=rule.notify,
                sectors=tuple(facts["sectors"]),
            )
        )
    return triggers
