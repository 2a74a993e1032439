"""Cheap, precise STIX 2.1 object checks (STIX 2.1 sections 3, 4, 6, 7, 8).

``stix2.parse`` costs ~0.7 ms per object (PERFORMANCE.md); these checks are
plain dict look-ups and a few compiled regexes. Patterns are checked
separately (``core.patterns.pattern_error``) by ``ingest.validate``.
Each check returns an error message or ``None``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.clock import format_timestamp, parse_timestamp

# STIX 2.1 section 3.2: type names, 3-250 chars, lower case, digits, '-'.
_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{1,248}[a-z0-9]$")
# Section 2.9 identifier: "<type>--<UUID>" (RFC 4122 textual form).
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID = re.compile(r"^([a-z0-9][a-z0-9-]{1,248}[a-z0-9])--(" + _UUID + r")$")
# Section 3.2 timestamp: RFC 3339, UTC, "Z", optional fractional seconds.
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")

SMO_TYPES = frozenset({"marking-definition", "language-content", "extension-definition"})
SRO_TYPES = frozenset({"relationship", "sighting"})
SDO_TYPES = frozenset(
    {
        "attack-pattern", "campaign", "course-of-action", "grouping", "identity",
        "incident", "indicator", "infrastructure", "intrusion-set", "location",
        "malware", "malware-analysis", "note", "observed-data", "opinion", "report",
        "threat-actor", "tool", "vulnerability",
    }
)  # fmt: skip
SCO_TYPES = frozenset(
    {
        "artifact", "autonomous-system", "directory", "domain-name", "email-addr",
        "email-message", "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex",
        "network-traffic", "process", "software", "url", "user-account",
        "windows-registry-key", "x509-certificate",
    }
)  # fmt: skip

# Section 4 / 5 / 6: required type-specific properties.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "attack-pattern": ("name",),
    "campaign": ("name",),
    "course-of-action": ("name",),
    "grouping": ("context", "object_refs"),
    "identity": ("name",),
    "incident": ("name",),
    "indicator": ("pattern", "pattern_type", "valid_from"),
    "infrastructure": ("name",),
    "intrusion-set": ("name",),
    "malware": ("is_family",),
    "malware-analysis": ("product",),
    "note": ("content", "object_refs"),
    "observed-data": ("first_observed", "last_observed", "number_observed"),
    "opinion": ("opinion", "object_refs"),
    "report": ("name", "published", "object_refs"),
    "threat-actor": ("name",),
    "tool": ("name",),
    "vulnerability": ("name",),
    "relationship": ("relationship_type", "source_ref", "target_ref"),
    "sighting": ("sighting_of_ref",),
    "language-content": ("object_ref", "object_modified", "contents"),
    "extension-definition": ("name", "schema", "version", "extension_types"),
    "domain-name": ("value",),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "url": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "email-addr": ("value",),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "software": ("name",),
    "windows-registry-key": (),
    "file": (),
}

_TIMESTAMP_PROPS = (
    "created", "modified", "valid_from", "valid_until", "first_seen", "last_seen",
    "first_observed", "last_observed", "published", "object_modified",
)  # fmt: skip
_STRING_PROPS = (
    "name", "description", "pattern", "pattern_type", "pattern_version",
    "relationship_type", "lang", "context", "content", "opinion", "product",
)  # fmt: skip
_STRING_LIST_PROPS = ("labels", "aliases", "indicator_types", "malware_types", "roles")
_REF_LIST_PROPS = (
    "object_refs", "object_marking_refs", "where_sighted_refs", "observed_data_refs",
)  # fmt: skip
_REF_PROPS = ("created_by_ref", "source_ref", "target_ref", "sighting_of_ref", "object_ref")
_OPINIONS = frozenset({"strongly-disagree", "disagree", "neutral", "agree", "strongly-agree"})


def id_error(value: Any, expected_type: str | None = None) -> str | None:
    """None when ``value`` is a STIX identifier (section 2.9) of ``expected_type``."""
    if not isinstance(value, str):
        return "must be a string identifier"
    m = _ID.match(value)
    if not m:
        return f"{value!r} is not of the form <type>--<uuid>"
    if expected_type is not None and m.group(1) != expected_type:
        return f"{value!r} does not start with {expected_type}--"
    return None


def timestamp_error(value: Any) -> str | None:
    """None when ``value`` is a STIX timestamp (section 3.2: RFC 3339 UTC with Z)."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return f"{value!r} is not a UTC timestamp like 2026-01-01T00:00:00.000Z"
    try:
        _ts(value)
    except ValueError:
        return f"{value!r} is not a valid date/time"
    return None


@functools.lru_cache(maxsize=65536)
def _ts(value: str) -> datetime:
    # Timestamps repeat a lot within a feed (created == modified == valid_from), hence
    # the cache; datetime.fromisoformat takes at most 6 fractional digits.
    return parse_timestamp(value[:26] + "Z" if len(value) > 27 else value)


def _check_common(obj: dict[str, Any], otype: str) -> str | None:
    is_sco = otype in SCO_TYPES
    if not is_sco:
        if "spec_version" not in obj:
            return "spec_version is required"
        if obj["spec_version"] != "2.1":
            return f"spec_version must be '2.1', not {obj['spec_version']!r}"
        if "created" not in obj:
            return "created is required"
        if otype != "marking-definition" and "modified" not in obj:
            return "modified is required"
    elif "spec_version" in obj and obj["spec_version"] != "2.1":
        return f"spec_version must be '2.1', not {obj['spec_version']!r}"
    for prop in _TIMESTAMP_PROPS:
        if prop in obj:
            err = timestamp_error(obj[prop])
            if err:
                return f"{prop}: {err}"
    if "created" in obj and "modified" in obj and _ts(obj["modified"]) < _ts(obj["created"]):
        return "modified must not be earlier than created"
    for prop in _STRING_PROPS:
        if prop in obj and not isinstance(obj[prop], str):
            return f"{prop} must be a string"
    for prop in _STRING_LIST_PROPS:
        if prop in obj:
            value = obj[prop]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"{prop} must be a list of strings"
    for prop in _REF_PROPS:
        if prop in obj:
            err = id_error(obj[prop])
            if err:
                return f"{prop}: {err}"
    if "created_by_ref" in obj:
        err = id_error(obj["created_by_ref"], "identity")
        if err:
            return f"created_by_ref: {err}"
    for prop in _REF_LIST_PROPS:
        if prop in obj:
            value = obj[prop]
            if not isinstance(value, list):
                return f"{prop} must be a list of identifiers"
            for ref in value:
                err = id_error(ref)
                if err:
                    return f"{prop}: {err}"
    if "object_marking_refs" in obj:
        for ref in obj["object_marking_refs"]:
            if not ref.startswith("marking-definition--"):
                return f"object_marking_refs: {ref!r} is not a marking-definition id"
    if "confidence" in obj:
        c = obj["confidence"]
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 100:
            return "confidence must be an integer 0..100"
    for prop in ("revoked", "defanged"):
        if prop in obj and not isinstance(obj[prop], bool):
            return f"{prop} must be a boolean"
    if "external_references" in obj:
        refs = obj["external_references"]
        if not isinstance(refs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("source_name"), str) for r in refs
        ):
            return "external_references must be a list of objects with source_name"
    if "granular_markings" in obj and not isinstance(obj["granular_markings"], list):
        return "granular_markings must be a list"
    if "extensions" in obj and not isinstance(obj["extensions"], dict):
        return "extensions must be an object"
    return None


def _check_indicator(obj: dict[str, Any]) -> str | None:
    if "valid_until" in obj and _ts(obj["valid_until"]) <= _ts(obj["valid_from"]):
        return "valid_until must be later than valid_from"
    return None


def _check_sighting(obj: dict[str, Any]) -> str | None:
    ref = obj["sighting_of_ref"]
    kind = ref.split("--", 1)[0]
    if kind in SCO_TYPES or kind in SRO_TYPES or kind in SMO_TYPES:
        return "sighting_of_ref must name an SDO"
    if "count" in obj:
        c = obj["count"]
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 999_999_999:
            return "count must be an integer 0..999999999"
    if "first_seen" in obj and "last_seen" in obj:
        if _ts(obj["last_seen"]) < _ts(obj["first_seen"]):
            return "last_seen must not be earlier than first_seen"
    return None


def _check_malware(obj: dict[str, Any]) -> str | None:
    if not isinstance(obj["is_family"], bool):
        return "is_family must be a boolean"
    if obj["is_family"] and "name" not in obj:
        return "name is required when is_family is true"
    return None


def _check_observed(obj: dict[str, Any]) -> str | None:
    n = obj["number_observed"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 999_999_999:
        return "number_observed must be an integer 1..999999999"
    if _ts(obj["last_observed"]) < _ts(obj["first_observed"]):
        return "last_observed must not be earlier than first_observed"
    if "objects" not in obj and "object_refs" not in obj:
        return "one of objects or object_refs is required"
    return None


def _check_opinion(obj: dict[str, Any]) -> str | None:
    if obj["opinion"] not in _OPINIONS:
        return f"opinion must be one of {sorted(_OPINIONS)}"
    return None


def _check_location(obj: dict[str, Any]) -> str | None:
    if not any(k in obj for k in ("region", "country", "latitude")):
        return "one of region, country or latitude/longitude is required"
    if ("latitude" in obj) != ("longitude" in obj):
        return "latitude and longitude must be given together"
    return None


def _check_marking(obj: dict[str, Any]) -> str | None:
    if "definition_type" in obj or "definition" in obj:
        if not isinstance(obj.get("definition_type"), str):
            return "definition_type must be a string"
        if not isinstance(obj.get("definition"), dict):
            return "definition must be an object"
    elif "extensions" not in obj:
        return "definition_type/definition or extensions is required"
    return None


_SPECIFIC: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "indicator": _check_indicator,
    "sighting": _check_sighting,
    "malware": _check_malware,
    "observed-data": _check_observed,
    "opinion": _check_opinion,
    "location": _check_location,
    "marking-definition": _check_marking,
}


def object_error(obj: Any) -> str | None:
    """None when ``obj`` is a structurally valid STIX 2.1 object, else the first problem.

    Patterns are not checked here (see ``core.patterns``); unknown but well-formed
    types are accepted with the common-property checks (section 11, custom objects).
    """
    if not isinstance(obj, dict):
        return "an object must be a JSON object"
    otype = obj.get("type")
    if not isinstance(otype, str):
        return "type is required and must be a string"
    if not _TYPE.match(otype):
        return f"type {otype!r} is not a valid STIX type name"
    if "id" not in obj:
        return "id is required"
    err = id_error(obj["id"], otype)
    if err:
        return f"id: {err}"
    err = _check_common(obj, otype)
    if err:
        return err
    for prop in _REQUIRED.get(otype, ()):
        if prop not in obj:
            return f"{prop} is required for {otype}"
    check = _SPECIFIC.get(otype)
    return check(obj) if check else None


def normalise_timestamp(value: str) -> str:
    """A STIX timestamp in the fixed microsecond form, so equal instants compare equal."""
    return format_timestamp(_ts(value))


def object_version(obj: Any) -> str:
    """TAXII version of an object: ``modified``, else ``created``, in microsecond form; else ''."""
    if not isinstance(obj, dict):
        return ""
    version = obj.get("modified") or obj.get("created") or ""
    if not isinstance(version, str) or timestamp_error(version) is not None:
        return ""
    return normalise_timestamp(version)


def object_id(obj: Any) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("id"), str):
        return str(obj["id"])
    return ""


#: STIX custom property saying what a sighting reports (README "False-positive feedback").
#: Absent: the value was seen (MISP sighting type 0); ``false-positive``: MISP type 1.
SIGHTING_TYPE = "x_threatbay_sighting_type"
FALSE_POSITIVE = "false-positive"
