"""What every puller does to objects before ingest: upgrade 2.0, mark the unmarked.

DOMAIN.md "Sharing": unmarked objects would be treated as AMBER; a feed's
registry entry says what its unmarked objects really are, so they get that
TLP (as the TLP 2.0 marking id) before ingest sees them.
"""

from __future__ import annotations

from typing import Any

from core.markings import MARKING_ID_BY_TLP, tlp_of_marking_refs
from core.provenance import Tlp
from feeds.stix20 import upgrade_object

_UNMARKABLE = frozenset({"marking-definition", "extension-definition"})


def with_default_tlp(obj: dict[str, Any], tlp: Tlp) -> dict[str, Any]:
    """``obj`` with the feed's default TLP added when it carries no TLP marking."""
    if obj.get("type") in _UNMARKABLE:
        return obj
    refs = obj.get("object_marking_refs")
    if isinstance(refs, list) and tlp_of_marking_refs(refs) is not None:
        return obj
    marked = dict(obj)
    kept = refs if isinstance(refs, list) else []
    marked["object_marking_refs"] = [*kept, MARKING_ID_BY_TLP[tlp]]
    return marked


def prepare_objects(objects: list[Any], default_tlp: Tlp) -> list[Any]:
    """Upgrade STIX 2.0 objects to 2.1 and mark unmarked ones; non-objects pass through."""
    out: list[Any] = []
    for obj in objects:
        if isinstance(obj, dict):
            obj = with_default_tlp(upgrade_object(obj), default_tlp)
        out.append(obj)
    return out
