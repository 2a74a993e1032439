"""Who owns a STIX id (DOMAIN.md "Parties"), as pure rules over plain values.

- A STIX id belongs to the agency that first pushed it: only that agency may
  push new versions of it, revoke it or delete it (TAXII 2.1 section 5.7).
- An ``identity`` object may not take a member agency's identity id.
- Ids are compared in canonical form, lower case (``canonical_id``): STIX
  identifiers end in a UUID, which RFC 4122 reads case-insensitively, so
  ``indicator--ABC...`` and ``indicator--abc...`` are one id for every decision
  (ownership, ``created_by_ref``, identities, markings). Objects are stored as
  pushed.
- A revoked object stays revoked (STIX 2.1 section 3.6: "revocation is
  permanent"): its owner may re-send that version or older ones (a replay), never a
  later one.

Where it is checked: at ingest, from the owner records read by key
(``records/owners.py``: real-time on both backends), so a refusal is a
per-object failure in the TAXII status; and again, authoritatively, where the
correlator first writes an object (two agencies' first pushes of one id racing
past ingest): the later one is dead-lettered with the reason and its TAXII
status entry turned into a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def canonical_id(value: Any) -> str:
    """The form every id comparison uses: lower case (non-strings: empty)."""
    return value.lower() if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Owner:
    """The owner record of one STIX id."""

    stix_id: str
    agency: str
    revoked_version: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": "owner",
            "of": self.stix_id,
            "agency": self.agency,
            "revoked_version": self.revoked_version,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Owner:
        return cls(str(doc["of"]), str(doc["agency"]), doc.get("revoked_version"))


def ownership_error(
    agency_id: str, obj: Mapping[str, Any], version: str, owner: Owner | None
) -> str | None:
    """Why ``agency_id`` may not push this version of ``obj`` given its ``owner``; or None."""
    if owner is None:
        return None
    stix_id = obj.get("id")
    if owner.agency != agency_id:
        # The owner is not named: the id may be a report the pusher may not even see.
        return (
            f"{stix_id} belongs to another agency, which pushed it first; only that agency may "
            "push versions of it, revoke it or delete it"
        )
    if owner.revoked_version is not None and version > owner.revoked_version:
        return (
            f"{stix_id} was revoked (version {owner.revoked_version}); revocation is permanent "
            "(STIX 2.1 section 3.6), so no later version is accepted"
        )
    return None


def identity_error(
    agency_id: str, obj: Mapping[str, Any], identity_owners: Mapping[str, str]
) -> str | None:
    """Why ``obj`` (from ``agency_id``) may not use the identity ids it names; or None.

    ``identity_owners`` maps canonical identity ids to agencies. An ``identity``
    object may not take another member agency's identity id, and ``created_by_ref``
    may not name another agency's identity.
    """
    if obj.get("type") == "identity":
        owner = identity_owners.get(canonical_id(obj.get("id")))
        if owner is not None and owner != agency_id:
            return f"{obj.get('id')} is the identity of agency {owner}; it is not yours to push"
    creator = obj.get("created_by_ref")
    if creator is not None:
        owner = identity_owners.get(canonical_id(creator))
        if owner is not None and owner != agency_id:
            return f"created_by_ref {creator} is the identity of agency {owner}, not yours"
    return None
