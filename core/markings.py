"""TLP markings read from STIX objects (DOMAIN.md "Sharing: TLP and cross-border rules").

Markings are read by id only, from plain dicts: stix2 rejects TLP 2.0
marking-definition objects, so it is never used here.

- TLP 1.0 ids (built into STIX 2.1) and TLP 2.0 ids (OASIS
  cti-stix-common-objects) map to one scale; TLP:WHITE is TLP:CLEAR.
- Unmarked objects (no TLP id in ``object_marking_refs``) are AMBER, flagged
  ``defaulted``. Non-TLP marking ids (statements, other schemes) are ignored
  for the TLP level.
- Several TLP ids on one object: the most restrictive wins
  (RED > AMBER+STRICT > AMBER > GREEN > CLEAR).

TLP:RED named recipients (the mechanism ThreatBay defines and documents):
the source lists the *agency ids* of the recipients in either

1. the top-level custom property ``x_threatbay_recipients: ["hk-govcert", ...]``, or
2. a property extension on the object,
   ``extensions[THREATBAY_SHARING_EXTENSION] = {"extension_type":
   "property-extension", "recipients": [...]}``.

Both are read and their union is returned. Marking statements are free text
and are not parsed for recipients. Recipients outside the source's
jurisdiction never receive a RED report (RED never crosses a border).

Unknown or custom marking definitions fail closed (DOMAIN.md), by refusing the
object at ingest (``marking_error``) rather than guessing its level: the pusher
learns at once, in the TAXII status, instead of its object silently reaching
fewer (or more) readers than it meant. Known markings are the TLP 1.0 and 2.0
ids, and ``statement`` marking definitions (copyright, terms of use: they
restrict no one) pushed in the same envelope or before. A ``marking-definition``
object defining a TLP level (``definition_type: tlp``, or the TLP 2.0
extension) under any other id is itself refused: TLP has exactly the ids
above. Marking ids and recipients are compared in lower case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.provenance import TLP_ORDER, Tlp

TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP1_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TLP1_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
TLP2_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP2_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TLP2_AMBER_STRICT = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
TLP2_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"

TLP_BY_MARKING_ID: dict[str, Tlp] = {
    TLP1_WHITE: "clear",
    TLP1_GREEN: "green",
    TLP1_AMBER: "amber",
    TLP1_RED: "red",
    TLP2_CLEAR: "clear",
    TLP2_GREEN: "green",
    TLP2_AMBER: "amber",
    TLP2_AMBER_STRICT: "amber+strict",
    TLP2_RED: "red",
}

# The TLP 2.0 id to write when ThreatBay marks something itself.
MARKING_ID_BY_TLP: dict[Tlp, str] = {
    "clear": TLP2_CLEAR,
    "green": TLP2_GREEN,
    "amber": TLP2_AMBER,
    "amber+strict": TLP2_AMBER_STRICT,
    "red": TLP2_RED,
}

THREATBAY_SHARING_EXTENSION = "extension-definition--4f5c6a38-2d0e-4c55-9b8e-7a1d3c9e5b21"
RECIPIENTS_PROPERTY = "x_threatbay_recipients"

DEFAULT_TLP: Tlp = "amber"

_RANK: dict[str, int] = {tlp: i for i, tlp in enumerate(TLP_ORDER)}


def tlp_rank(tlp: Tlp) -> int:
    """Position on the scale CLEAR=0 ... RED=4 (DOMAIN.md order)."""
    return _RANK[tlp]


def normalise_tlp(value: str) -> Tlp:
    """Accept 'TLP:AMBER+STRICT', 'white', 'Amber' ... and return the canonical Tlp."""
    text = value.strip().lower().removeprefix("tlp:").strip()
    if text == "white":
        return "clear"
    for tlp in TLP_ORDER:
        if text == tlp:
            return tlp
    raise ValueError(f"not a TLP level: {value!r}")


def most_restrictive(tlps: Iterable[Tlp]) -> Tlp:
    """RED > AMBER+STRICT > AMBER > GREEN > CLEAR (DOMAIN.md); empty input is an error."""
    best: Tlp | None = None
    for tlp in tlps:
        if best is None or _RANK[tlp] > _RANK[best]:
            best = tlp
    if best is None:
        raise ValueError("most_restrictive() of no TLP levels")
    return best


def tlp_of_marking_id(ref: Any) -> Tlp | None:
    """The TLP level of one marking id (compared in lower case), None when not a TLP id."""
    return TLP_BY_MARKING_ID.get(ref.lower()) if isinstance(ref, str) else None


def tlp_of_marking_refs(refs: Iterable[Any]) -> Tlp | None:
    """Most restrictive TLP among marking ids, or None when none of them is a TLP id."""
    found = [tlp for tlp in map(tlp_of_marking_id, refs) if tlp is not None]
    return most_restrictive(found) if found else None


def tlp_of(obj: Mapping[str, Any]) -> tuple[Tlp, bool]:
    """(tlp, defaulted) from ``object_marking_refs``; unmarked is ('amber', True) (DOMAIN.md)."""
    refs = obj.get("object_marking_refs")
    if isinstance(refs, list):
        tlp = tlp_of_marking_refs(refs)
        if tlp is not None:
            return tlp, False
    return DEFAULT_TLP, True


def red_recipients(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """Agency ids named as TLP:RED recipients (module docstring: property or extension)."""
    names: list[str] = []
    direct = obj.get(RECIPIENTS_PROPERTY)
    if isinstance(direct, list):
        names.extend(x for x in direct if isinstance(x, str))
    extensions = obj.get("extensions")
    if isinstance(extensions, dict):
        ext = extensions.get(THREATBAY_SHARING_EXTENSION)
        if isinstance(ext, dict) and isinstance(ext.get("recipients"), list):
            names.extend(x for x in ext["recipients"] if isinstance(x, str))
    return tuple(sorted({n.strip().lower() for n in names if n.strip()}))


def granular_tlps(obj: Mapping[str, Any]) -> dict[str, Tlp]:
    """Selector -> most restrictive TLP from ``granular_markings`` (STIX 2.1 §7.2.3)."""
    result: dict[str, Tlp] = {}
    markings = obj.get("granular_markings")
    if not isinstance(markings, list):
        return result
    for marking in markings:
        if not isinstance(marking, dict):
            continue
        tlp = tlp_of_marking_id(marking.get("marking_ref"))
        selectors = marking.get("selectors")
        if tlp is None or not isinstance(selectors, list):
            continue
        for selector in selectors:
            if not isinstance(selector, str):
                continue
            prior = result.get(selector)
            result[selector] = tlp if prior is None else most_restrictive((prior, tlp))
    return result


def marking_refs(obj: Mapping[str, Any]) -> list[str]:
    """Every marking id ``obj`` names (object and granular markings), as written."""
    direct = obj.get("object_marking_refs")
    refs = [r for r in direct if isinstance(r, str)] if isinstance(direct, list) else []
    granular = obj.get("granular_markings")
    for marking in granular if isinstance(granular, list) else []:
        if isinstance(marking, dict) and isinstance(marking.get("marking_ref"), str):
            refs.append(marking["marking_ref"])
    return refs


def is_statement_definition(obj: Mapping[str, Any]) -> bool:
    """A ``marking-definition`` that only states terms (restricts no reader)."""
    definition = obj.get("definition")
    return (
        obj.get("type") == "marking-definition"
        and obj.get("definition_type") == "statement"
        and isinstance(definition, dict)
        and set(definition) == {"statement"}
        and not obj.get("extensions")
    )


def marking_error(obj: Mapping[str, Any], statements: frozenset[str] = frozenset()) -> str | None:
    """Why ``obj``'s markings cannot be honoured (module docstring), or None.

    ``statements``: canonical ids of statement markings known to the platform.
    """
    if obj.get("type") == "marking-definition":
        own = obj.get("id")
        defines_tlp = obj.get("definition_type") == "tlp" or (
            isinstance(obj.get("extensions"), dict) and TLP2_EXTENSION in obj["extensions"]
        )
        if tlp_of_marking_id(own) is None and (defines_tlp or not is_statement_definition(obj)):
            return (
                f"{own} defines a marking this platform cannot honour: TLP levels have "
                "exactly the TLP 1.0 / 2.0 ids, and other custom markings fail closed"
            )
    for ref in marking_refs(obj):
        if tlp_of_marking_id(ref) is None and ref.lower() not in statements:
            return (
                f"marking {ref} is not a TLP 1.0 / 2.0 marking nor a statement marking pushed "
                "before; unknown markings fail closed (mark with a TLP id)"
            )
    return None
