"""Upgrade STIX 2.0 objects to STIX 2.1 on the way in (most public producer feeds are 2.0).

The stix2 library reads both versions but converts neither way, and
stix2-elevator only elevates STIX 1.x, so this is a small explicit converter
following the STIX 2.1 specification's changes from 2.0 (STIX 2.1 section 1.5
and Appendix C of the 2.1 spec):

- every SDO/SRO/marking carries ``spec_version: "2.1"``;
- identifiers and references are lower-cased (2.1 section 2.9: RFC 4122 form),
  keeping the same UUID so versions and relationships still line up;
- ``labels`` that were the required type vocabulary in 2.0 move to the
  2.1 ``*_types`` property (indicator, malware, tool, threat-actor, report);
- indicators get ``pattern_type: "stix"``; malware gets ``is_family: true``
  (2.0 malware described families);
- observed-data keeps its embedded ``objects`` (deprecated but valid in 2.1).
"""

from __future__ import annotations

import re
from typing import Any

from core.stix import SCO_TYPES

# 2.0 required ``labels`` from these vocabularies; 2.1 has a dedicated property.
_LABELS_TO_TYPES = {
    "indicator": "indicator_types",
    "malware": "malware_types",
    "tool": "tool_types",
    "threat-actor": "threat_actor_types",
    "report": "report_types",
}
_REF_KEYS = re.compile(r"(_ref|_refs)$")
_ID_SHAPE = re.compile(r"^[a-z0-9-]+--[0-9a-fA-F-]{36}$")


def is_stix20(obj: dict[str, Any]) -> bool:
    """True for a 2.0 object: an SDO/SRO/marking without ``spec_version``, or one saying "2.0"."""
    version = obj.get("spec_version")
    if version == "2.0":
        return True
    return version is None and obj.get("type") not in SCO_TYPES


def _lower_id(value: Any) -> Any:
    if isinstance(value, str) and _ID_SHAPE.match(value):
        return value.lower()
    return value


def _lower_refs(obj: dict[str, Any]) -> None:
    for key, value in list(obj.items()):
        if key == "id" or _REF_KEYS.search(key):
            if isinstance(value, list):
                obj[key] = [_lower_id(v) for v in value]
            else:
                obj[key] = _lower_id(value)
    markings = obj.get("granular_markings")
    if isinstance(markings, list):
        for marking in markings:
            if isinstance(marking, dict) and "marking_ref" in marking:
                marking["marking_ref"] = _lower_id(marking["marking_ref"])


def upgrade_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A 2.1 copy of a 2.0 object; 2.1 objects are returned unchanged."""
    if not isinstance(obj, dict) or not is_stix20(obj):
        return obj
    new = dict(obj)
    new["spec_version"] = "2.1"
    _lower_refs(new)
    otype = new.get("type")
    types_key = _LABELS_TO_TYPES.get(otype if isinstance(otype, str) else "")
    if types_key and isinstance(new.get("labels"), list) and types_key not in new:
        new[types_key] = new.pop("labels")
    if otype == "indicator":
        new.setdefault("pattern_type", "stix")
        new.setdefault("valid_from", new.get("created"))
    elif otype == "malware":
        new.setdefault("is_family", True)
    return new


def upgrade_objects(objects: list[Any]) -> tuple[list[Any], int]:
    """Upgrade every 2.0 object in ``objects``; returns (objects, number upgraded)."""
    out: list[Any] = []
    upgraded = 0
    for obj in objects:
        new = upgrade_object(obj) if isinstance(obj, dict) else obj
        upgraded += new is not obj
        out.append(new)
    return out, upgraded


def bundle_objects(bundle: Any) -> list[Any]:
    """The ``objects`` of a 2.0 or 2.1 bundle (or TAXII 2.1 envelope); ValueError otherwise."""
    if not isinstance(bundle, dict):
        raise ValueError("not a JSON object")
    if bundle.get("type") not in (None, "bundle"):
        raise ValueError(f"expected a bundle, got type {bundle.get('type')!r}")
    objects = bundle.get("objects", [])
    if not isinstance(objects, list):
        raise ValueError("'objects' is not a list")
    return objects
