"""Signed objects next to the object store: the text as received and the verdict at receipt.

DOMAIN.md "Trusted data": a stored signed object is served byte-for-byte as
received. The objects index document of a version that arrived signed (and
verified, ingest/signed.py) carries two more members, neither searchable:

- ``signed``: the object's JSON text exactly as it was in the request body;
  TAXII serves it unchanged to readers allowed the whole object
  (api/taxii/service.py ``envelope``);
- ``signature``: who signed it, with which key and algorithm, and the chain,
  as verified at ThreatBay's receipt time.

A reader for whom the sharing policy cuts or redacts fields gets the view, not
the text, marked with ``x_threatbay_signature`` (``REDACTED_MARK``): the
signatures it still carries cannot verify, and the mark says so instead of
pretending.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from core.names import INDEX_OBJECTS
from core.ports import Store
from core.stix import object_version

SIGNED_TEXT = "signed"
SIGNATURE = "signature"
REDACTED_MARK = "x_threatbay_signature"
REDACTED_NOTE = (
    "redacted for this reader under the sharing policy: the signatures no longer cover "
    "this view; ask the source for the whole object to verify it"
)


def served_form(doc: dict[str, Any], seen: dict[str, Any]) -> Any:
    """What TAXII serves of ``doc`` given the reader's view ``seen``.

    The whole object of a signed version is served as its received text (an
    ``orjson.Fragment``, embedded unchanged); a cut or redacted view of it is marked.
    """
    text = doc.get(SIGNED_TEXT)
    if not isinstance(text, str):
        return seen
    if seen is doc["object"]:
        return orjson.Fragment(text)
    return seen | {REDACTED_MARK: REDACTED_NOTE}


def signatures_of(store: Store, sources: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    """``id|version`` -> the stored verdict, for (STIX id, ``modified``) pairs (by key)."""
    keys: list[str] = []
    for stix_id, modified in sources:
        version = object_version({"modified": modified}) if modified else ""
        keys.append(f"{stix_id}|{version}")
    if not keys:
        return {}
    found = store.get_many(INDEX_OBJECTS, keys)
    return {
        k: st.doc[SIGNATURE] for k, st in found.items() if isinstance(st.doc.get(SIGNATURE), dict)
    }
