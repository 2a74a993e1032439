"""A case as STIX 2.1 for one reader, and case updates pushed back as STIX.

DOMAIN.md "Joint incident cases": the STIX form follows the OASIS Incident
Core Extension and its task, event and impact extensions
(oasis-open/cti-stix-common-objects, extension-definition-specifications/
incident-core, prose "Incident Extension Suite" 2.0). Built only from the
reader's view (respond/sharing.py), so it holds nothing the reader may not see:

- ``incident`` (id = the case id) with the property extension
  ``extension-definition--ef765651-…`` (determination, investigation_status,
  criticality, incident_types, ``tasks``/``events`` entries, ``impact_refs``);
  case facts ThreatBay keeps beyond the extension travel in
  ``x_threatbay_case`` (severity, lead, participants, sectors, clocks);
- one ``task`` (new SDO ``extension-definition--2074a052-…``) per visible task,
  with its own TLP marking (1.0 or 2.0 ids, as the item was marked) and
  ``x_threatbay_recipients`` for RED; an ``identity`` → ``task`` ``assigned``
  relationship for its assignee;
- one ``impact`` (``extension-definition--7cc33dd6-…``, category extension by
  its plain name) per visible impact; one ``note`` per visible note;
- one ``event`` (``extension-definition--4ca6de00-…``) per visible timeline
  entry of the case;
- the linked indicators the reader may receive (redacted like any TAXII
  export), each ``related-to`` the incident.

Every object emitted is checked against ThreatBay's own JSON Schemas of these
objects (``respond/schemas/``, written from the prose; nothing fetched is
shipped) by ``validate``; tests also parse the bundle with the ``stix2``
library.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from core.markings import (
    MARKING_ID_BY_TLP,
    RECIPIENTS_PROPERTY,
    TLP1_AMBER,
    TLP1_GREEN,
    TLP1_RED,
    TLP1_WHITE,
    TLP_BY_MARKING_ID,
    red_recipients,
    tlp_of_marking_refs,
)
from core.provenance import Tlp

INCIDENT_EXT = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
EVENT_EXT = "extension-definition--4ca6de00-5b0d-45ef-a1dc-ea7279ea910e"
TASK_EXT = "extension-definition--2074a052-8be4-4932-849e-f5e7798e0030"
IMPACT_EXT = "extension-definition--7cc33dd6-f6a1-489b-98ea-522d351d71b9"
PLATFORM_IDENTITY = "identity--6a1f2a4e-9a3b-5c1d-8e7f-0a1b2c3d4e5f"
STIX_NS = uuid.UUID("c0a5e7d1-4f2b-4c3d-9e8f-1a2b3c4d5e6f")

_TLP1: dict[str, str] = {
    "clear": TLP1_WHITE,
    "green": TLP1_GREEN,
    "amber": TLP1_AMBER,
    "red": TLP1_RED,
}
SCHEMA_TYPES = ("incident", "task", "event", "impact")


def marking_id(tlp: str, version: str = "2.0") -> str:
    """The TLP marking-definition id an item was marked with (TLP 1.0 or 2.0)."""
    if version == "1.0" and tlp in _TLP1:
        return _TLP1[tlp]
    return MARKING_ID_BY_TLP[tlp]  # type: ignore[index]


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(STIX_NS, "|".join(parts)))


def task_id(item_id: str) -> str:
    return f"task--{item_id}"


def note_id(item_id: str) -> str:
    return f"note--{item_id}"


def impact_id(item_id: str) -> str:
    return f"impact--{item_id}"


def _marked(obj: dict[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
    obj["object_marking_refs"] = [marking_id(item["tlp"], item.get("tlp_version", "2.0"))]
    if item["tlp"] == "red" and item.get("recipients"):
        obj[RECIPIENTS_PROPERTY] = list(item["recipients"])
    return obj


@dataclass(frozen=True, slots=True)
class Party:
    """A participating agency as STIX: its identity id and name."""

    identity_id: str
    name: str


def _identity(party: Party, created: str) -> dict[str, Any]:
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": party.identity_id,
        "created": created,
        "modified": created,
        "name": party.name,
        "identity_class": "organization",
    }


def case_objects(
    view: Mapping[str, Any],
    timeline: Sequence[Mapping[str, Any]],
    parties: Mapping[str, Party],
    indicators: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The reader's view of a case as STIX objects (module docstring)."""
    created = view["created"]
    case_id = view["id"]

    def ref(agency: str) -> str:
        party = parties.get(agency)
        return party.identity_id if party else PLATFORM_IDENTITY

    objects: list[dict[str, Any]] = []
    used = {p["agency"] for p in view["participants"]}
    for agency in sorted(used):
        if agency in parties:
            objects.append(_identity(parties[agency], created))
    tasks, impacts, events = [], [], []
    for task in view["tasks"]:
        obj = _marked(
            {
                "type": "task",
                "spec_version": "2.1",
                "id": task_id(task["id"]),
                "created": task["at"],
                "modified": max(task["updated_at"], task["at"]),
                "created_by_ref": ref(task["by"]),
                "name": task["title"],
                "outcome": task["outcome"],
                "extensions": {TASK_EXT: {"extension_type": "new-sdo"}},
                "x_threatbay_task": {
                    "status": task["status"],
                    "assignee": task["assignee"],
                    "analyst": task.get("analyst"),
                    "due": task.get("due"),
                    "overdue": bool(task.get("overdue")),
                    "reason": task.get("reason"),
                },
            },
            task,
        )
        if task.get("description"):
            obj["description"] = task["description"]
        if task.get("task_types"):
            obj["task_types"] = list(task["task_types"])
        if task.get("priority") is not None:
            obj["priority"] = task["priority"]
        if task.get("started_at"):
            obj["start_time"] = task["started_at"]
        if task.get("ended_at"):
            obj["end_time"] = task["ended_at"]
        objects.append(obj)
        tasks.append({"task_ref": obj["id"]})
        if task["assignee"] in parties:
            objects.append(
                _marked(
                    {
                        "type": "relationship",
                        "spec_version": "2.1",
                        "id": f"relationship--{_uuid(task['id'], 'assigned')}",
                        "created": task["at"],
                        "modified": task["at"],
                        "relationship_type": "assigned",
                        "source_ref": parties[task["assignee"]].identity_id,
                        "target_ref": obj["id"],
                    },
                    task,
                )
            )
    for impact in view["impacts"]:
        category = impact["category"]
        obj = _marked(
            {
                "type": "impact",
                "spec_version": "2.1",
                "id": impact_id(impact["id"]),
                "created": impact["at"],
                "modified": impact["updated_at"],
                "created_by_ref": ref(impact["by"]),
                "impact_category": category,
                "extensions": {
                    IMPACT_EXT: {"extension_type": "new-sdo"},
                    category: dict(impact.get("details") or {}),
                },
                "x_threatbay_jurisdiction": impact["jurisdiction"],
            },
            impact,
        )
        if impact.get("description"):
            obj["description"] = impact["description"]
        if impact.get("criticality") is not None:
            obj["criticality"] = impact["criticality"]
        objects.append(obj)
        impacts.append(obj["id"])
    for note in view["notes"]:
        objects.append(
            _marked(
                {
                    "type": "note",
                    "spec_version": "2.1",
                    "id": note_id(note["id"]),
                    "created": note["at"],
                    "modified": note["updated_at"],
                    "created_by_ref": ref(note["by"]),
                    "content": note["text"],
                    "object_refs": [case_id],
                },
                note,
            )
        )
    for entry in timeline:
        if entry.get("source") != "case":
            continue
        obj = {
            "type": "event",
            "spec_version": "2.1",
            "id": f"event--{_uuid(case_id, entry['id'])}",
            "created": entry["at"],
            "modified": entry["at"],
            "status": "occurred",
            "name": entry["type"],
            "start_time": entry["at"],
            "extensions": {EVENT_EXT: {"extension_type": "new-sdo"}},
            "x_threatbay_event": {
                k: entry[k] for k in ("type", "by", "jurisdiction", "item") if entry.get(k)
            },
        }
        if entry.get("by") in parties:
            obj["created_by_ref"] = parties[entry["by"]].identity_id
        objects.append(obj)
        events.append({"event_ref": obj["id"]})
    for indicator in indicators:
        objects.append(indicator)
        objects.append(
            {
                "type": "relationship",
                "spec_version": "2.1",
                "id": f"relationship--{_uuid(case_id, indicator['id'])}",
                "created": created,
                "modified": created,
                "relationship_type": "related-to",
                "source_ref": indicator["id"],
                "target_ref": case_id,
                "object_marking_refs": list(
                    indicator.get("object_marking_refs") or [MARKING_ID_BY_TLP["amber"]]
                ),
            }
        )
    extension: dict[str, Any] = {
        "extension_type": "property-extension",
        "determination": view["determination"],
        "investigation_status": view["investigation_status"],
        "criticality": view["criticality"],
    }
    if view.get("incident_types"):
        extension["incident_types"] = list(view["incident_types"])
    if tasks:
        extension["tasks"] = tasks
    if events:
        extension["events"] = events
    if impacts:
        extension["impact_refs"] = impacts
    incident: dict[str, Any] = {
        "type": "incident",
        "spec_version": "2.1",
        "id": case_id,
        "created": created,
        "modified": max(view["updated"], created),
        "created_by_ref": ref(view["created_by"]),
        "name": view["title"],
        "object_marking_refs": [MARKING_ID_BY_TLP[view["tlp"]]],
        "extensions": {INCIDENT_EXT: extension},
        "x_threatbay_case": {
            "status": view["status"],
            "severity": view["severity"],
            "lead": view["lead"],
            "participants": view["participants"],
            "sectors": view["sectors"],
            "clocks": [
                {k: c[k] for k in ("id", "jurisdiction", "stage", "due", "status", "met")}
                for c in view["clocks"]
            ],
        },
    }
    if view.get("description"):
        incident["description"] = view["description"]
    return [incident, *objects]


def bundle(objects: Sequence[dict[str, Any]], case_id: str, reader: str) -> dict[str, Any]:
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": list(objects),
    }


# ------------------------------------------------------------------ schemas


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    folder = resources.files("respond").joinpath("schemas")
    docs = {
        name: json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
        for name in ("common", *SCHEMA_TYPES)
    }
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs.values()
    )
    return {name: Draft202012Validator(docs[name], registry=registry) for name in SCHEMA_TYPES}


def schema_errors(obj: Mapping[str, Any]) -> list[str]:
    """Why ``obj`` does not match ThreatBay's schema of its type (empty: it does, or no schema)."""
    validator = _validators().get(str(obj.get("type")))
    if validator is None:
        return []
    return sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '<object>'}: {e.message}"
        for e in validator.iter_errors(dict(obj))
    )


def validate(objects: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Schema errors by object id, for every object that has some."""
    found = {str(o.get("id")): schema_errors(o) for o in objects}
    return {k: v for k, v in found.items() if v}


# ------------------------------------------------------------------- pushes


@dataclass(frozen=True, slots=True)
class PushedMarking:
    tlp: Tlp
    tlp_version: str
    recipients: tuple[str, ...]


def pushed_marking(obj: Mapping[str, Any]) -> PushedMarking | str:
    """The TLP of a pushed object; unknown marking definitions fail closed (an error text)."""
    refs = obj.get("object_marking_refs") or []
    if not isinstance(refs, list):
        return "object_marking_refs must be a list"
    unknown = [r for r in refs if r not in TLP_BY_MARKING_ID]
    if unknown:
        return f"unknown marking definitions {unknown[:3]} (only TLP 1.0 / 2.0 are understood)"
    tlp = tlp_of_marking_refs(refs) or "amber"
    version = "1.0" if refs and all(r in _TLP1.values() for r in refs) else "2.0"
    return PushedMarking(tlp, version, red_recipients(obj))
