"""The collections ThreatBay offers (TAXII 2.1 section 5.2 "Collection Resource").

- ``inbox-<agency>``: the one write collection of each agency; only that
  agency may write to it or read it (it reads back what it pushed).
- ``shared-all``: everything the reader may see under DOMAIN.md "Sharing".
- ``shared-gd`` / ``shared-hk`` / ``shared-mo``: the same, limited to objects
  from that jurisdiction.
- ``records``: the consumer collection, one STIX indicator per deduplicated record
  in the reader's view (api/taxii/records.py, core/record_indicators.py).

Collection ids are stable UUIDs derived from the name and shaped as version 4
(the 122 name-derived bits of uuid5(namespace, name) with the version nibble 4
and the RFC 4122 variant): Microsoft Sentinel's TAXII connector refuses a
collection id that is not a "uuidv4" (Azure-Sentinel issue 11202; its exact
check is not published, so ids pass the strictest reading). The uuid5 ids used
before (issue 18) stay valid in URLs, and so does the name (``alias``). A
collection asked for by its former id answers with that id, because
taxii2-client's ``Collection(url)`` (MISP push, misp-modules) refuses a
collection whose ``id`` is not in the URL it was given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from api.taxii.media import STIX_21
from core.access import Principal
from core.provenance import JURISDICTIONS

NAMESPACE = uuid.UUID("6f0c1f3e-8a51-4f4e-9a63-5c1b9b0e7d21")
READ_ROLES = ("publisher", "analyst", "admin")
WRITE_ROLES = ("publisher",)

_JURISDICTION_NAMES = {"GD": "Guangdong", "HK": "Hong Kong", "MO": "Macao"}


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    title: str
    description: str
    owner: str | None = None  # agency id for inboxes

    @property
    def id(self) -> str:
        """The collection's id: a version-4-shaped UUID derived from its name."""
        return str(uuid.UUID(bytes=uuid.uuid5(NAMESPACE, self.name).bytes, version=4))

    @property
    def former_id(self) -> str:
        """The id served before issue 18 (uuid5 of the name), still accepted in URLs."""
        return str(uuid.uuid5(NAMESPACE, self.name))

    def answers_to(self, text: str) -> bool:
        """True when ``text`` (from a URL) names this collection: its id, former id or name."""
        return text in (self.id, self.former_id, self.name)

    @property
    def is_inbox(self) -> bool:
        return self.owner is not None

    def can_read(self, principal: Principal) -> bool:
        if self.owner is not None and self.owner != principal.agency.id:
            return False
        return principal.has(*READ_ROLES)

    def can_write(self, principal: Principal) -> bool:
        return self.owner == principal.agency.id and principal.has(*WRITE_ROLES)

    def resource(self, principal: Principal, asked_as: str | None = None) -> dict[str, Any]:
        """The collection resource as this principal sees it (section 5.2.1).

        ``asked_as``: the id the URL named it by; the former id is answered as
        itself (module docstring), anything else as the current id.
        """
        return {
            "id": self.former_id if asked_as == self.former_id else self.id,
            "title": self.title,
            "description": self.description,
            "alias": self.name,
            "can_read": self.can_read(principal),
            "can_write": self.can_write(principal),
            "media_types": [STIX_21],
        }


def shared_collections() -> list[Collection]:
    out = [
        Collection(
            "shared-all",
            "Shared with me",
            "Every object the sharing rules let you see, from all jurisdictions.",
        )
    ]
    for j in JURISDICTIONS:
        out.append(
            Collection(
                f"shared-{j.lower()}",
                f"Shared from {_JURISDICTION_NAMES[j]} ({j})",
                f"Objects pushed by agencies in {j} that the sharing rules let you see.",
            )
        )
    return out


def inbox(agency_id: str) -> Collection:
    return Collection(
        f"inbox-{agency_id}",
        f"Inbox of {agency_id}",
        f"Write collection of agency {agency_id}; only it may push here or read it back.",
        owner=agency_id,
    )


RECORDS = "records"


def records_collection() -> Collection:
    """The consumer collection (issue 18): ThreatBay's deduplicated, scored, expiring view."""
    return Collection(
        RECORDS,
        "Records: deduplicated, scored, expiring indicators",
        "One STIX indicator per record you may see: merged across agencies, confidence = "
        "ThreatBay's score, valid_until when it decays away, revoked when every source "
        "you see revoked. Point a SIEM here.",
    )


_SHARED = {c.name: c for c in [*shared_collections(), records_collection()]}
_SHARED_BY_ID = {i: c for c in _SHARED.values() for i in (c.id, c.former_id)}


def visible_collections(principal: Principal) -> list[Collection]:
    """What ``/collections/`` lists: the shared ones and the caller's own inbox."""
    return [*_SHARED.values(), inbox(principal.agency.id)]


def resolve(collection_id: str, agency_ids: list[str]) -> Collection | None:
    """The collection with this id (current or former) or alias name, or None."""
    if collection_id in _SHARED_BY_ID:
        return _SHARED_BY_ID[collection_id]
    if collection_id in _SHARED:
        return _SHARED[collection_id]
    for agency_id in agency_ids:
        box = inbox(agency_id)
        if box.answers_to(collection_id):
            return box
    return None
