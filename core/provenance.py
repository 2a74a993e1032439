"""Who sent an object, from where, when: stamped at ingest from the credential.

DOMAIN.md "Parties": a pushing agency's identity comes from its credential,
never from the payload.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Jurisdiction = Literal["GD", "HK", "MO"]
JURISDICTIONS: tuple[Jurisdiction, ...] = ("GD", "HK", "MO")

Tlp = Literal["clear", "green", "amber", "amber+strict", "red"]
TLP_ORDER: tuple[Tlp, ...] = ("clear", "green", "amber", "amber+strict", "red")


@dataclass(frozen=True, slots=True)
class Provenance:
    """Stamped on every accepted object; travels as the bus message's metadata."""

    agency: str
    jurisdiction: str
    received_at: str
    request_id: str
    source_kind: Literal["agency", "feed"] = "agency"
    tlp: Tlp = "amber"
    tlp_defaulted: bool = False
    recipients: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        return data

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
