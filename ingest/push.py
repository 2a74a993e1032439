"""The push path: validate, stamp provenance, publish to ``intel.stix.raw``.

ARCHITECTURE.md "Guarantees": an object is a success only once the bus
durably acknowledged it; a failed publish makes every object of that publish a
per-object failure (never a silent 202) and says so in ``unavailable``. One bad
object never fails its neighbours.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import envelope
from core.access import Principal
from core.clock import Clock, format_timestamp
from core.envelope import Accepted
from core.errors import BusUnavailable
from core.markings import (
    is_statement_definition,
    marking_error,
    marking_refs,
    red_recipients,
    tlp_of,
    tlp_of_marking_id,
)
from core.names import TOPIC_RAW
from core.ownership import Owner, canonical_id, identity_error, ownership_error
from core.patterns import DEFAULT_LIMITS, PatternLimits
from core.ports import Bus, Store
from core.provenance import Provenance, SourceKind
from core.services import Services
from core.settings import LimitsSettings
from core.stix import object_id, object_version
from ingest.validate import validation_error
from records.books import records_of
from records.objects import statement_markings, stored_versions
from records.owners import owners_of


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


@dataclass(frozen=True)
class Admission:
    """What decides, per object, whether a push is accepted (besides STIX validity).

    ``identity_owners``: canonical identity id -> agency (core/ownership.py);
    ``owners_of``: canonical STIX ids -> their owner records (records/owners.py, read
    by key), None to skip the ownership check (tests of other rules); the limits of
    core/settings.py ``limits``.
    """

    identity_owners: Mapping[str, str]
    owners_of: Callable[[Sequence[str]], Mapping[str, Owner]] | None = None
    pattern_limits: PatternLimits = DEFAULT_LIMITS
    object_max_depth: int = 32
    #: canonical ids of statement markings stored before (records/objects.py)
    statements_of: Callable[[Sequence[str]], frozenset[str]] | None = None
    #: (STIX id, version) -> that version as stored, for the ids another agency owns
    stored_of: Callable[[Sequence[tuple[str, str]]], Mapping[tuple[str, str], Any]] | None = None


def admission_of(
    store: Store, identity_owners: Mapping[str, str], limits: LimitsSettings
) -> Admission:
    """The admission rules of a process: owners read from ``store``, limits from settings."""
    return Admission(
        identity_owners={canonical_id(k): v for k, v in identity_owners.items()},
        owners_of=lambda ids: owners_of(store, ids),
        stored_of=lambda pairs: stored_versions(store, pairs),
        statements_of=lambda ids: statement_markings(store, ids),
        pattern_limits=PatternLimits(
            limits.pattern_max_chars, limits.pattern_max_comparisons, limits.pattern_max_depth
        ),
        object_max_depth=limits.object_max_depth,
    )


def admission_for(services: Services) -> Admission:
    """``admission_of`` this process's store, agency registry and limits."""
    identities = records_of(services).agencies.identity_owners()
    return admission_of(services.store, identities, services.settings.limits)


def _admission(rules: Admission | Mapping[str, str]) -> Admission:
    if isinstance(rules, Admission):
        return rules
    return Admission({canonical_id(k): v for k, v in rules.items()})


def admission_error(
    principal: Principal,
    obj: Any,
    rules: Admission | Mapping[str, str],
    owners: Mapping[str, Owner] | None = None,
    statements: frozenset[str] = frozenset(),
) -> str | None:
    """Why ``obj`` may not be accepted from ``principal``; None when it may."""
    admission = _admission(rules)
    try:
        depth = nesting_depth(obj, admission.object_max_depth)
        if depth > admission.object_max_depth:
            return (
                f"object nests more than {admission.object_max_depth} levels deep "
                "(limits.object_max_depth)"
            )
        err = validation_error(obj, admission.pattern_limits)
        if err is not None:
            return err
        agency = principal.agency.id
        err = identity_error(agency, obj, admission.identity_owners)
        if err is not None:
            return err
        err = marking_error(obj, statements)
        if err is not None:
            return err
        if owners is not None:
            owner = owners.get(canonical_id(obj.get("id")))
            return ownership_error(agency, obj, object_version(obj), owner)
    except RecursionError:
        return "object could not be checked: nested too deeply"
    return None


def _copies(
    principal: Principal,
    objects: Sequence[Any],
    admission: Admission,
    owners: Mapping[str, Owner] | None,
) -> set[int]:
    """``id()`` of the objects that are exact copies of a stored version another agency owns.

    Only exact copies: a re-share changes nothing, so it may be answered as a
    success; any difference (a version, a property, a marking) stays refused by
    ownership (core/ownership.py). Read by key only for ids another agency owns.
    """
    if owners is None or admission.stored_of is None:
        return set()
    theirs = [
        o
        for o in objects
        if isinstance(o, dict)
        and (owner := owners.get(canonical_id(o.get("id")))) is not None
        and owner.agency != principal.agency.id
        and owner.revoked_version is None
    ]
    if not theirs:
        return set()
    stored = admission.stored_of([(str(o["id"]), object_version(o)) for o in theirs])
    return {id(o) for o in theirs if stored.get((str(o["id"]), object_version(o))) == o}


def _statements(objects: Sequence[Any], admission: Admission) -> frozenset[str]:
    """Statement markings the envelope defines or names that were stored before."""
    dicts = [o for o in objects if isinstance(o, dict)]
    defined = {canonical_id(o.get("id")) for o in dicts if is_statement_definition(o)}
    wanted = {
        canonical_id(ref)
        for o in dicts
        for ref in marking_refs(o)
        if tlp_of_marking_id(ref) is None and canonical_id(ref) not in defined
    }
    if wanted and admission.statements_of is not None:
        defined |= admission.statements_of(sorted(wanted))
    return frozenset(defined)


def nesting_depth(value: Any, stop: int) -> int:
    """JSON nesting depth of ``value`` (without recursion), counting up to ``stop + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > stop:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def push_objects(
    principal: Principal,
    objects: Sequence[Any],
    bus: Bus,
    clock: Clock,
    rules: Admission | Mapping[str, str],
    request_id: str | None = None,
    source_kind: SourceKind = "agency",
) -> PushResult:
    """Validate every object, publish the accepted ones in one ``bus.publish``.

    ``rules``: an ``Admission`` (or, for callers that check nothing else, the map
    of identity ids to agencies). Blocks until the bus acknowledges (call it from
    a thread in async code).
    """
    admission = _admission(rules)
    request_id = request_id or str(uuid.uuid4())
    received_at = format_timestamp(clock.now())
    result = PushResult(request_id=request_id, request_timestamp=received_at)
    owners: Mapping[str, Owner] | None = None
    if admission.owners_of is not None:
        owners = admission.owners_of(
            [o["id"] for o in objects if isinstance(o, dict) and isinstance(o.get("id"), str)]
        )
    statements = _statements(objects, admission)
    copies = _copies(principal, objects, admission, owners)
    accepted: list[Accepted] = []
    for obj in objects:
        err = admission_error(principal, obj, admission, owners, statements)
        if err is not None and id(obj) in copies:
            # An identical copy of a version another agency pushed (a re-shared producer
            # identity, an extension definition): nothing new to store, so a success.
            result.successes.append(Outcome(object_id(obj), object_version(obj)))
            continue
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
