"""The collections ThreatBay offers (TAXII 2.1 section 5.2 "Collection Resource").

- ``inbox-<agency>``: the one write collection of each agency; only that
  agency may write to it or read it (it reads back what it pushed).
- ``shared-all``: everything the reader may see under DOMAIN.md "Sharing".
- ``shared-gd`` / ``shared-hk`` / ``shared-mo``: the same, limited to objects
  from that jurisdiction.

Collection ids are stable UUIDs (uuid5 of the name); the name is accepted in
URLs as an alias.
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
        return str(uuid.uuid5(NAMESPACE, self.name))

    @property
    def is_inbox(self) -> bool:
        return self.owner is not None

    def can_read(self, principal: Principal) -> bool:
        if self.owner is not None and self.owner != principal.agency.id:
            return False
        return principal.has(*READ_ROLES)

    def can_write(self, principal: Principal) -> bool:
        return self.owner == principal.agency.id and principal.has(*WRITE_ROLES)

    def resource(self, principal: Principal) -> dict[str, Any]:
        """The collection resource as this principal sees it (section 5.2.1)."""
        return {
            "id": self.id,
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


_SHARED = {c.name: c for c in shared_collections()}
_SHARED_BY_ID = {c.id: c for c in _SHARED.values()}


def visible_collections(principal: Principal) -> list[Collection]:
    """What ``/collections/`` lists: the shared ones and the caller's own inbox."""
    return [*_SHARED.values(), inbox(principal.agency.id)]


def resolve(collection_id: str, agency_ids: list[str]) -> Collection | None:
    """The collection with this id (or alias name), or None when there is none."""
    if collection_id in _SHARED_BY_ID:
        return _SHARED_BY_ID[collection_id]
    if collection_id in _SHARED:
        return _SHARED[collection_id]
    for agency_id in agency_ids:
        box = inbox(agency_id)
        if collection_id in (box.id, box.name):
            return box
    return None
