"""Who sent an object, from where, when: stamped at ingest from the credential.

DOMAIN.md "Parties": a pushing agency's identity comes from its credential,
never from the payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Jurisdiction = Literal["GD", "HK", "MO"]
JURISDICTIONS: tuple[Jurisdiction, ...] = ("GD", "HK", "MO")

SourceKind = Literal["agency", "feed"]

Tlp = Literal["clear", "green", "amber", "amber+strict", "red"]
TLP_ORDER: tuple[Tlp, ...] = ("clear", "green", "amber", "amber+strict", "red")


@dataclass(frozen=True, slots=True)
class Provenance:
    """Stamped on every accepted object; travels as the bus message's metadata."""

    agency: str
    jurisdiction: str
    received_at: str
    request_id: str
    source_kind: SourceKind = "agency"
    tlp: Tlp = "amber"
    tlp_defaulted: bool = False
    recipients: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: this runs for every object on the hot path.
        return {
            "agency": self.agency,
            "jurisdiction": self.jurisdiction,
            "received_at": self.received_at,
            "request_id": self.request_id,
            "source_kind": self.source_kind,
            "tlp": self.tlp,
            "tlp_defaulted": self.tlp_defaulted,
            "recipients": list(self.recipients),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(
            agency=data["agency"],
            jurisdiction=data["jurisdiction"],
            received_at=data["received_at"],
            request_id=data["request_id"],
            source_kind=data.get("source_kind", "agency"),
            tlp=data.get("tlp", "amber"),
            tlp_defaulted=bool(data.get("tlp_defaulted", False)),
            recipients=tuple(data.get("recipients", ())),
        )
