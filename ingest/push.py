"""The push path: validate, stamp provenance, publish to ``intel.stix.raw``.

ARCHITECTURE.md "Guarantees": an object is a success only once the bus
durably acknowledged it; a failed publish makes every object of that publish a
per-object failure (never a silent 202) and says so in ``unavailable``. One bad
object never fails its neighbours.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import envelope
from core.access import Principal
from core.clock import Clock, format_timestamp
from core.envelope import Accepted
from core.errors import BusUnavailable
from core.markings import red_recipients, tlp_of
from core.names import TOPIC_RAW
from core.ports import Bus
from core.provenance import Provenance, SourceKind
from core.stix import object_id, object_version
from ingest.validate import validation_error


@dataclass(frozen=True, slots=True)
class Outcome:
    """One object's answer, as a TAXII status-details entry (TAXII 2.1 section 4.3.1)."""

    id: str
    version: str
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "version": self.version}
        if self.message:
            doc["message"] = self.message
        return doc


@dataclass
class PushResult:
    request_id: str
    request_timestamp: str
    successes: list[Outcome] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    #: why the bus did not acknowledge the publish (every accepted object then failed)
    unavailable: str | None = None

    @property
    def total(self) -> int:
        return len(self.successes) + len(self.failures)


def stamp(
    principal: Principal,
    obj: dict[str, Any],
    received_at: str,
    request_id: str,
    source_kind: SourceKind = "agency",
) -> Provenance:
    """Provenance from the credential, never from the payload (DOMAIN.md "Parties")."""
    tlp, defaulted = tlp_of(obj)
    return Provenance(
        agency=principal.agency.id,
        source_kind=source_kind,
        jurisdiction=principal.agency.jurisdiction,
        received_at=received_at,
        request_id=request_id,
        tlp=tlp,
        tlp_defaulted=defaulted,
        recipients=red_recipients(obj) if tlp == "red" else (),
    )


def admission_error(
    principal: Principal, obj: Any, identity_owners: Mapping[str, str]
) -> str | None:
    """Why ``obj`` may not be accepted from ``principal``; None when it may."""
    err = validation_error(obj)
    if err is not None:
        return err
    creator = obj.get("created_by_ref")
    if creator is not None:
        owner = identity_owners.get(creator)
        if owner is not None and owner != principal.agency.id:
            return f"created_by_ref {creator} is the identity of agency {owner}, not yours"
    return None


def push_objects(
    principal: Principal,
    objects: Sequence[Any],
    bus: Bus,
    clock: Clock,
    identity_owners: Mapping[str, str],
    request_id: str | None = None,
    source_kind: SourceKind = "agency",
) -> PushResult:
    """Validate every object, publish the accepted ones in one ``bus.publish``.

    Blocks until the bus acknowledges (call it from a thread in async code).
    """
    request_id = request_id or str(uuid.uuid4())
    received_at = format_timestamp(clock.now())
    result = PushResult(request_id=request_id, request_timestamp=received_at)
    accepted: list[Accepted] = []
    for obj in objects:
        err = admission_error(principal, obj, identity_owners)
        if err is not None:
            result.failures.append(Outcome(object_id(obj), object_version(obj), err))
            continue
        accepted.append(Accepted(obj, stamp(principal, obj, received_at, request_id, source_kind)))
    if not accepted:
        return result
    try:
        bus.publish(TOPIC_RAW, envelope.encode(accepted))
    except BusUnavailable as exc:
        message = f"not accepted: the bus did not acknowledge ({exc}); retry"
        result.unavailable = str(exc)
        result.failures.extend(
            Outcome(a.obj["id"], object_version(a.obj), message) for a in accepted
        )
        return result
    result.successes.extend(Outcome(a.obj["id"], object_version(a.obj)) for a in accepted)
    return result
