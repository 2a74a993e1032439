"""Case templates per incident type, shipped as files (``threatbay/defaults/case_templates``).

A template presets a case's incident types, severity, determination,
criticality and sectors, and tasks per jurisdiction (``ANY``: the lead), each
with a due time counted from the opening. An operator adds a template by
adding a file (``THREATBAY_CASES__TEMPLATES_DIR``); files are checked at
start-up and a mistake names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigurationError
from core.provenance import JURISDICTIONS
from respond.cases import DETERMINATIONS, SEVERITIES
from respond.clocks import parse_duration

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "threatbay/defaults/case_templates"
_KEYS = frozenset(
    {
        "name",
        "title",
        "incident_types",
        "severity",
        "determination",
        "criticality",
        "sectors",
        "tasks",
    }
)
_TASK_KEYS = frozenset({"jurisdiction", "title", "description", "task_types", "due_in"})


@dataclass(frozen=True, slots=True)
class TemplateTask:
    jurisdiction: str  # GD / HK / MO, or ANY (the lead)
    title: str
    description: str
    task_types: tuple[str, ...]
    due_in: timedelta | None


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    title: str
    incident_types: tuple[str, ...]
    severity: str
    determination: str
    criticality: int
    sectors: tuple[tuple[str, bool], ...]
    tasks: tuple[TemplateTask, ...]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "incident_types": list(self.incident_types),
            "severity": self.severity,
            "determination": self.determination,
            "criticality": self.criticality,
            "sectors": [{"sector": s, "critical_infrastructure": c} for s, c in self.sectors],
            "tasks": [
                {
                    "jurisdiction": t.jurisdiction,
                    "title": t.title,
                    "task_types": list(t.task_types),
                    "due_in_s": t.due_in.total_seconds() if t.due_in else None,
                }
                for t in self.tasks
            ],
        }


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"case template {where}: {message}")


def template_from_dict(data: Any, where: str) -> Template:
    if not isinstance(data, dict):
        raise _fail(where, "must be a mapping")
    extra = set(data) - _KEYS
    if extra:
        raise _fail(where, f"unknown keys {sorted(extra)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(where, "'name' is required")
    severity = str(data.get("severity", "ORANGE"))
    if severity not in SEVERITIES:
        raise _fail(where, f"severity must be one of {list(SEVERITIES)}")
    determination = str(data.get("determination", "suspected"))
    if determination not in DETERMINATIONS:
        raise _fail(where, f"determination must be one of {list(DETERMINATIONS)}")
    criticality = data.get("criticality", 50)
    if not isinstance(criticality, int) or not 0 <= criticality <= 100:
        raise _fail(where, "criticality must be an integer 0..100")
    sectors = []
    for s in data.get("sectors") or []:
        if not isinstance(s, dict) or not isinstance(s.get("sector"), str):
            raise _fail(where, "each sector needs a 'sector' name")
        sectors.append((s["sector"], bool(s.get("critical_infrastructure", False))))
    tasks = []
    for i, t in enumerate(data.get("tasks") or []):
        at = f"{where} task {i + 1}"
        if not isinstance(t, dict) or set(t) - _TASK_KEYS:
            raise _fail(at, f"must be a mapping of {sorted(_TASK_KEYS)}")
        j = t.get("jurisdiction", "ANY")
        if j != "ANY" and j not in JURISDICTIONS:
            raise _fail(at, f"jurisdiction must be ANY or one of {list(JURISDICTIONS)}")
        if not isinstance(t.get("title"), str) or not t["title"].strip():
            raise _fail(at, "'title' is required")
        try:
            due = parse_duration(t["due_in"]) if t.get("due_in") is not None else None
        except ValueError as exc:
            raise _fail(at, str(exc)) from None
        tasks.append(
            TemplateTask(j, t["title"].strip(), str(t.get("description", "")),
                         tuple(t.get("task_types") or ()), due)
        )  # fmt: skip
    return Template(
        name=name,
        title=str(data.get("title", name)),
        incident_types=tuple(data.get("incident_types") or ()),
        severity=severity,
        determination=determination,
        criticality=criticality,
        sectors=tuple(sectors),
        tasks=tuple(tasks),
    )


def load_templates(directory: Path | None = None) -> dict[str, Template]:
    """Every ``*.yaml`` template of ``directory`` (default: the shipped ones), by name."""
    directory = directory or DEFAULT_TEMPLATES_DIR
    out: dict[str, Template] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise _fail(str(path), f"cannot read: {exc}") from None
        template = template_from_dict(data, str(path))
        if template.name in out:
            raise _fail(str(path), f"template name {template.name!r} is used twice")
        out[template.name] = template
    return out
