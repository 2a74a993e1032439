"""Who may see what (DOMAIN.md "Sharing: TLP and cross-border rules"), as one pure module.

Per source report (an object with its provenance, or one source entry of a
merged record), for a reader agency:

- The source agency always sees its own report.
- RED: only recipients the source named (core/markings.py ``red_recipients``
  and ``Provenance.recipients``), only in the source's jurisdiction (RED never
  crosses a border), and only for ``read`` and ``notify``: RED is never put on
  a machine channel (``stream``, ``taxii_export``) because those are forwarded
  onward automatically ("never forwarded").
- AMBER+STRICT: the source agency only.
- AMBER: participating agencies of the source's jurisdiction; across a border
  only to counterpart agencies named on a matching whitelist rule, with
  consent when the rule requires it (core/crossborder.py).
- GREEN: all participating agencies; across a border only if a whitelist rule
  covers the object and observable types.
- CLEAR: anyone; across a border the whitelist types still apply (a cross-
  border release is a data export whatever its TLP).

Participating agencies: ``SharingPolicy.participating_agencies``; ``None``
means every registered reader participates.

Consent lives in two places, both configured by operators: the whitelist rule
names the counterpart agencies that may receive AMBER (``amber_counterparts``)
and says whether consent is required; ``Reader.crossborder_consent`` holds the
source jurisdictions from which the reader's agency has consent (the bilateral
arrangement in the agency registry).

Roles do not change any of this: ``admin`` does not bypass TLP. Operators who
audit releases read the audit log (what, from whom, to whom, which rule),
which holds no report content; there is no content-bypass role.

Whenever a report leaves its source jurisdiction it is redacted
(core/redaction.py): ``allow_redacted`` lists what was removed (``path:kind``);
a crossing that removed nothing is ``allow`` with rule
``crossborder:<whitelist rule>`` (every crossing is recognisable by that rule
prefix, for the audit log); ``hold`` means the screens found personal data
they cannot cleanly remove, so nothing is sent. Granular TLP markings
stricter than the reader may see are cut out of the view
(``<selector>:granular-tlp``).

Index filtering: ``audience`` gives tags stored with each document and
``reader_tags`` the tags of a reader; for purpose ``read`` a reader is
allowed (or held) by ``decide_*`` exactly when the two intersect; for other
purposes ``decide_*`` only ever allows less.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from core.access import Agency, Principal
from core.crossborder import CrossBorderWhitelist
from core.errors import InvalidPattern
from core.markings import granular_tlps, most_restrictive, normalise_tlp, red_recipients, tlp_of
from core.patterns import PatternLimits, Test, parse_pattern
from core.provenance import JURISDICTIONS, Provenance, Tlp
from core.redaction import Redacted, redact_note, redact_object, redact_source


class Purpose(StrEnum):
    READ = "read"
    NOTIFY = "notify"
    STREAM = "stream"
    TAXII_EXPORT = "taxii_export"


_RED_PURPOSES = frozenset({Purpose.READ, Purpose.NOTIFY})

Outcome = Literal["allow", "allow_redacted", "deny", "hold"]


@dataclass(frozen=True, slots=True)
class Reader:
    """The agency asking; ``crossborder_consent`` = source jurisdictions it has consent from."""

    agency_id: str
    jurisdiction: str
    roles: frozenset[str] = frozenset()
    crossborder_consent: frozenset[str] = frozenset()


def reader_for(agency: Agency, roles: Iterable[str] | None = None) -> Reader:
    """The reader an agency is (its roles unless ``roles`` narrows them: a credential's)."""
    return Reader(
        agency_id=agency.id,
        jurisdiction=agency.jurisdiction,
        roles=frozenset(agency.roles if roles is None else roles),
        crossborder_consent=frozenset(agency.crossborder_consent),
    )


def reader_of(principal: Principal) -> Reader:
    """The reader an authenticated caller is: its agency, with its credential's roles."""
    return reader_for(principal.agency, principal.roles)


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome, the rule that decided it, the view to show (None unless shown)."""

    outcome: Outcome
    rule: str
    view: dict[str, Any] | None
    redactions: tuple[str, ...] = ()
    held: tuple[str, ...] = ()

    @property
    def shown(self) -> bool:
        """True when the view may be sent to the reader."""
        return self.outcome in ("allow", "allow_redacted")


@dataclass(frozen=True, slots=True)
class SharingPolicy:
    """The configured inputs to every sharing decision."""

    whitelist: CrossBorderWhitelist
    participating_agencies: frozenset[str] | None = None
    #: report -> audience tags; the policy is immutable, so an answer never goes stale.
    audience_cache: dict[SourceReport, frozenset[str]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: a record's sharing facts (observable type, per source agency / jurisdiction /
    #: TLP / recipients) -> its audience tags.
    record_audience_cache: dict[tuple[Any, ...], list[str]] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class SourceReport:
    """The sharing facts of one source's report."""

    agency: str
    jurisdiction: str
    tlp: Tlp
    recipients: frozenset[str] = frozenset()
    object_type: str = "indicator"
    observable_types: frozenset[str] = frozenset()
    # Further (object_type, observable_types) that must also be whitelisted, e.g.
    # the ends of a relationship or what a sighting is of.
    also_crossing: tuple[tuple[str, frozenset[str]], ...] = field(default_factory=tuple)


# --- observable types ----------------------------------------------------------

_SCO_TYPES = frozenset(
    {
        "artifact",
        "autonomous-system",
        "directory",
        "domain-name",
        "email-addr",
        "email-message",
        "file",
        "ipv4-addr",
        "ipv6-addr",
        "mac-addr",
        "mutex",
        "network-traffic",
        "process",
        "software",
        "url",
        "user-account",
        "windows-registry-key",
        "x509-certificate",
    }
)
#: A comparison whose type cannot be told (an unparsable pattern) never crosses.
UNPARSED = "pattern:unparsed"
_ADDRESS_PATHS = frozenset({("src_ref", "value"), ("dst_ref", "value")})
_SENDER_PATHS = frozenset({("from_ref", "value"), ("sender_ref", "value")})
_HOST_NAME = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.){0,126}[A-Za-z0-9-]{1,63}\.?"
)


def _classify_comparison(test: Test) -> str:
    """The observable type one parsed comparison is about (for the whitelist).

    ``network-traffic:src_ref.value`` / ``dst_ref.value`` are the address or name
    they compare with; ``email-message:from_ref.value`` / ``sender_ref.value`` are
    the sender's address (attacker infrastructure); every other path of an
    ``email-message`` (``to_refs``, ``cc_refs``, a display name, the body) stays
    ``email-message``, which the default whitelist does not let cross.
    """
    obj_type = test.object_type  # as written: STIX types are lower case, others never cross
    if obj_type == "network-traffic" and test.path in _ADDRESS_PATHS:
        values = test.string_values()
        if not values:
            return obj_type
        kinds = set()
        for value in values:
            try:
                ip = ipaddress.ip_network(value, strict=False)
            except ValueError:
                # only a host name is a domain; anything else (an address, a name) is not
                kinds.add("domain-name" if _HOST_NAME.fullmatch(value) else obj_type)
            else:
                kinds.add("ipv4-addr" if ip.version == 4 else "ipv6-addr")
        return kinds.pop() if len(kinds) == 1 else obj_type
    if obj_type == "email-message":
        return "email-addr" if test.path in _SENDER_PATHS else obj_type
    return obj_type


def observable_types_of_pattern(pattern: str) -> frozenset[str]:
    """Observable types a STIX pattern compares, read from its parse (``pattern:unparsed``
    when the grammar refuses it)."""
    try:
        parsed = parse_pattern(pattern, _READ_LIMITS)
    except InvalidPattern:
        return frozenset({UNPARSED})
    return frozenset(_classify_comparison(t) for t in parsed.tests)


#: Reading a stored pattern for a sharing decision: generous (what ingest accepted
#: under any configured limit), but still bounded.
_READ_LIMITS = PatternLimits(max_chars=4 * 1024 * 1024, max_comparisons=200_000, max_depth=64)


def _type_of_id(ref: Any) -> str | None:
    return ref.split("--", 1)[0] if isinstance(ref, str) and "--" in ref else None


def crossing_observable_types(obj: Mapping[str, Any]) -> frozenset[str]:
    """The observable types a crossing of ``obj`` is decided on (all of its pattern's)."""
    return _crossing_types(obj)[1]


def _crossing_types(obj: Mapping[str, Any]) -> tuple[str, frozenset[str], tuple[Any, ...]]:
    obj_type = str(obj.get("type", ""))
    also: list[tuple[str, frozenset[str]]] = []
    observables: frozenset[str] = frozenset()
    if obj_type == "indicator":
        pattern_type = obj.get("pattern_type", "stix")
        pattern = obj.get("pattern")
        if pattern_type != "stix":
            observables = frozenset({f"pattern:{pattern_type}"})
        elif isinstance(pattern, str):
            observables = observable_types_of_pattern(pattern) or frozenset({UNPARSED})
        else:
            observables = frozenset({UNPARSED})
    elif obj_type in _SCO_TYPES:
        observables = frozenset({obj_type})
    elif obj_type == "observed-data":
        refs = obj.get("object_refs") or []
        types = {_type_of_id(r) for r in refs} if isinstance(refs, list) else set()
        objects = obj.get("objects")
        if isinstance(objects, dict):
            types |= {o.get("type") for o in objects.values() if isinstance(o, dict)}
        observables = frozenset(t for t in types if isinstance(t, str))
    elif obj_type == "relationship":
        for key in ("source_ref", "target_ref"):
            ref_type = _type_of_id(obj.get(key)) or "unknown"
            also.append(
                (ref_type, frozenset({ref_type}) if ref_type in _SCO_TYPES else frozenset())
            )
    elif obj_type == "sighting":
        ref_type = _type_of_id(obj.get("sighting_of_ref")) or "unknown"
        also.append((ref_type, frozenset()))
    return obj_type, observables, tuple(also)


# --- the per-report rule ----------------------------------------------------------


def _participant(policy: SharingPolicy, agency_id: str) -> bool:
    return policy.participating_agencies is None or agency_id in policy.participating_agencies


def _crossborder(policy: SharingPolicy, reader: Reader, report: SourceReport) -> tuple[bool, str]:
    consent = report.jurisdiction in reader.crossborder_consent
    checks = [(report.object_type, report.observable_types), *report.also_crossing]
    first_rule = ""
    for object_type, observables in checks:
        ok, rule = policy.whitelist.allows(
            report.jurisdiction,
            reader.jurisdiction,
            object_type,
            observables,
            report.tlp,
            consent,
            to_agency=reader.agency_id,
        )
        if not ok:
            return False, f"deny:{rule}"
        first_rule = first_rule or rule
    return True, f"crossborder:{first_rule}"


def report_access(
    policy: SharingPolicy, reader: Reader, purpose: Purpose, report: SourceReport
) -> tuple[bool, str]:
    """(may see, rule) for one source report, before redaction (module docstring)."""
    if reader.agency_id == report.agency:
        return True, "source-agency"
    crossing = reader.jurisdiction != report.jurisdiction
    tlp = report.tlp
    if tlp == "red":
        if crossing:
            return False, "deny:tlp:red:never-crosses"
        if reader.agency_id not in report.recipients:
            return False, "deny:tlp:red:not-recipient"
        if purpose not in _RED_PURPOSES:
            return False, f"deny:tlp:red:not-forwarded:{purpose}"
        return True, "tlp:red:recipient"
    if tlp == "amber+strict":
        return False, "deny:tlp:amber+strict:source-only"
    if tlp != "clear" and not _participant(policy, reader.agency_id):
        return False, f"deny:tlp:{tlp}:not-participant"
    if crossing:
        return _crossborder(policy, reader, report)
    return True, f"tlp:{tlp}"


# --- objects -------------------------------------------------------------------------


def source_report_of(obj: Mapping[str, Any], provenance: Provenance) -> SourceReport:
    """Sharing facts of a STIX object: its markings, tightened by the provenance stamp."""
    obj_tlp, obj_defaulted = tlp_of(obj)
    tlp: Tlp = provenance.tlp if obj_defaulted else obj_tlp
    if not provenance.tlp_defaulted:
        tlp = most_restrictive((tlp, provenance.tlp))
    obj_type, observables, also = _crossing_types(obj)
    return SourceReport(
        agency=provenance.agency,
        jurisdiction=provenance.jurisdiction,
        tlp=tlp,
        recipients=frozenset(provenance.recipients) | frozenset(red_recipients(obj)),
        object_type=obj_type,
        observable_types=observables,
        also_crossing=also,
    )


def _cut_selector(view: dict[str, Any], selector: str) -> bool:
    parts = re.findall(r"\[(\d+)\]|([^.\[\]]+)", selector)
    node: Any = view
    steps: list[str | int] = [int(i) if i else k for i, k in parts]
    for step in steps[:-1]:
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            node = node[step]
        elif isinstance(step, str) and isinstance(node, dict) and step in node:
            node = node[step]
        else:
            return False
    last = steps[-1] if steps else None
    if isinstance(last, str) and isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(last, int) and isinstance(node, list) and last < len(node):
        node[last] = "[REDACTED:granular-tlp]"
        return True
    return False


def decide_object(
    policy: SharingPolicy,
    reader: Reader,
    purpose: Purpose,
    obj: dict[str, Any],
    provenance: Provenance,
) -> Decision:
    """May ``reader`` receive ``obj`` for ``purpose``, and in which form (DOMAIN.md Sharing)."""
    report = source_report_of(obj, provenance)
    ok, rule = report_access(policy, reader, purpose, report)
    if not ok:
        return Decision("deny", rule, None)
    own = reader.agency_id == report.agency
    crossing = not own and reader.jurisdiction != report.jurisdiction
    redacted = redact_object(obj) if crossing else Redacted(obj)
    if redacted.held:
        return Decision("hold", f"hold:{rule}", None, redacted.removed, redacted.held)
    view: dict[str, Any] = redacted.value
    removed = list(redacted.removed)
    if not own:
        granular = granular_tlps(obj)
        for selector, tlp in sorted(granular.items()):
            if report_access(policy, reader, purpose, replace(report, tlp=tlp))[0]:
                continue
            if view is obj:
                view = copy.deepcopy(obj)
            if _cut_selector(view, selector):
                removed.append(f"{selector}:granular-tlp")
    if removed:
        return Decision("allow_redacted", rule, view, tuple(removed))
    return Decision("allow", rule, view)


# --- merged records -----------------------------------------------------------------


def _record_tlp(value: Any) -> Tlp:
    if value is None:
        return "amber"
    try:
        return normalise_tlp(str(value))
    except ValueError:
        return "red"  # an unreadable marking is treated as the strictest


def record_source_report(record: Mapping[str, Any], source: Mapping[str, Any]) -> SourceReport:
    """Sharing facts of one source entry of a merged record."""
    obs = record.get("observable_type")
    crossing = source.get("observable_types")
    if isinstance(crossing, list):  # every observable type of the report's pattern
        types = frozenset(str(t) for t in crossing)
    else:  # stored before sources carried them: the record's own type
        types = frozenset({obs}) if isinstance(obs, str) else frozenset()
    return SourceReport(
        agency=str(source.get("agency", "")),
        jurisdiction=str(source.get("jurisdiction", "")),
        tlp=_record_tlp(source.get("tlp")),
        recipients=frozenset(source.get("recipients") or ()),
        object_type="indicator",
        observable_types=types,
    )


def record_sighting_report(record: Mapping[str, Any], sighting: Mapping[str, Any]) -> SourceReport:
    """Sharing facts of one sighting attached to a merged record."""
    return SourceReport(
        agency=str(sighting.get("agency", "")),
        jurisdiction=str(sighting.get("jurisdiction", "")),
        tlp=_record_tlp(sighting.get("tlp")),
        recipients=frozenset(sighting.get("recipients") or ()),
        object_type="sighting",
        also_crossing=(("indicator", record_source_report(record, {}).observable_types),),
    )


def _screen_reasons(view: dict[str, Any], reader: Reader, removed: list[str]) -> None:
    """Screen the false-positive reasons written in another jurisdiction (in place).

    A reason is a human note (DOMAIN.md "Redaction ... every human-written note that
    crosses"): it shows in ``false_positives``, in its sighting and in the explanation.
    """
    screened: dict[str, str] = {}
    for mark in view.get("false_positives") or []:
        reason = mark.get("reason")
        if not isinstance(reason, str) or not reason:
            continue
        if (
            mark.get("agency") == reader.agency_id
            or mark.get("jurisdiction") == reader.jurisdiction
        ):
            continue
        text, kinds = redact_note(reason)
        if kinds:
            screened[reason] = text
            removed.extend(f"false_positives[{mark.get('stix_id', '?')}].reason:{k}" for k in kinds)
    if not screened:
        return
    view["false_positives"] = [
        {**m, "reason": screened.get(m.get("reason"), m.get("reason"))}
        for m in view["false_positives"]
    ]
    view["sightings"] = [
        {**s, "reason": screened[s["reason"]]} if s.get("reason") in screened else s
        for s in view.get("sightings") or []
    ]
    components = view.get("components")
    if isinstance(components, dict) and isinstance(components.get("explanation"), list):
        lines = []
        for line in components["explanation"]:
            for before, after in screened.items():
                line = str(line).replace(before, after)
            lines.append(line)
        view["components"] = {**components, "explanation": lines}


def _strip_agencies(value: Any, hidden: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip_agencies(v, hidden) for k, v in value.items() if k not in hidden}
    if isinstance(value, list):
        return [
            _strip_agencies(v, hidden) for v in value if not (isinstance(v, str) and v in hidden)
        ]
    return value


#: Fields of a stored record that are bookkeeping, never shown to a reader (core/views.py).
INTERNAL_FIELDS = ("readers", "views", "basis", "rev", "rescore_due", "view_of", "audience")
#: Fields of a source entry that are bookkeeping (the granular markings it was cut by).
_INTERNAL_SOURCE_FIELDS = ("granular",)


def record_link_report(record: Mapping[str, Any], link: Mapping[str, Any]) -> SourceReport:
    """Sharing facts of an ``indicates`` relationship attached to a merged record."""
    target = str(link.get("ref", "")).split("--", 1)[0] or "unknown"
    return SourceReport(
        agency=str(link.get("agency", "")),
        jurisdiction=str(link.get("jurisdiction", "")),
        tlp=_record_tlp(link.get("tlp")),
        recipients=frozenset(link.get("recipients") or ()),
        object_type="relationship",
        observable_types=frozenset(),
        also_crossing=(("indicator", frozenset()), (target, frozenset())),
    )


def _granular_ok(
    policy: SharingPolicy, reader: Reader, purpose: Purpose, report: SourceReport,
    source: Mapping[str, Any],
) -> bool:  # fmt: skip
    """Every field of ``source`` still present is one its granular markings let ``reader`` see."""
    for selector, level in (source.get("granular") or {}).items():
        root = str(selector).split(".", 1)[0]
        field_name = "labels" if root == "indicator_types" else root
        if field_name != "pattern" and field_name not in source:
            continue  # cut from this view already
        if not report_access(policy, reader, purpose, replace(report, tlp=_record_tlp(level)))[0]:
            return False
    return True


def _shown_source(source: dict[str, Any]) -> dict[str, Any]:
    if any(k in source for k in _INTERNAL_SOURCE_FIELDS):
        return {k: v for k, v in source.items() if k not in _INTERNAL_SOURCE_FIELDS}
    return source


def decide_record(
    policy: SharingPolicy,
    reader: Reader,
    purpose: Purpose,
    record: dict[str, Any],
    *,
    exact: bool = False,
) -> Decision:
    """The part of a merged record ``reader`` may see; deny when no source is visible.

    ``exact``: ``record`` is a view built for this reader (core/views.py), whose
    derived values were computed from exactly its parts; if the policy now hides
    any part of it from ``reader`` (a consent withdrawn since), it is denied as
    a whole rather than filtered, because its score, counts and labels would
    still reflect the hidden part. Cross-border redaction applies either way.
    """
    keep = [record["value"]] if isinstance(record.get("value"), str) else []
    rules: set[str] = set()
    removed: list[str] = []
    held: list[str] = []
    sources: list[dict[str, Any]] = []
    for source in record.get("sources") or []:
        report = record_source_report(record, source)
        ok, rule = report_access(policy, reader, purpose, report)
        if ok and exact and not _granular_ok(policy, reader, purpose, report, source):
            ok = False
        if not ok:
            if exact:
                return Decision("deny", "deny:view-not-exact", None)
            continue
        rules.add(rule)
        if reader.agency_id != report.agency and reader.jurisdiction != report.jurisdiction:
            red = redact_source(_shown_source(source), keep)
            tag = f"sources[{source.get('stix_id', '?')}]"
            removed.extend(f"{tag}.{r}" for r in red.removed)
            held.extend(f"{tag}.{h}" for h in red.held)
            sources.append(red.value)
        else:
            sources.append(_shown_source(source))
    if not sources:
        return Decision("deny", "deny:no-visible-source", None)
    rule = ";".join(sorted(rules))
    if held:
        return Decision("hold", f"hold:{rule}", None, tuple(removed), tuple(held))
    sightings = []
    for s in record.get("sightings") or []:
        if report_access(policy, reader, purpose, record_sighting_report(record, s))[0]:
            sightings.append(s)
        elif exact:
            return Decision("deny", "deny:view-not-exact", None)
    if exact:
        for link in record.get("links") or []:
            if (
                link.get("agency")
                and not report_access(policy, reader, purpose, record_link_report(record, link))[0]
            ):
                return Decision("deny", "deny:view-not-exact", None)
    visible_agencies = {str(s.get("agency")) for s in [*sources, *sightings]}
    all_agencies = {
        str(s.get("agency"))
        for s in [*(record.get("sources") or []), *(record.get("sightings") or [])]
    } | set(record.get("agencies") or [])
    hidden = frozenset(all_agencies - visible_agencies)
    view = {k: v for k, v in record.items() if k not in ("sources", "sightings", *INTERNAL_FIELDS)}
    if hidden and "components" in view:
        view["components"] = _strip_agencies(view["components"], hidden)
    view["sources"] = sources
    view["sightings"] = sightings
    view["agencies"] = sorted(visible_agencies)
    view["jurisdictions"] = sorted({str(s.get("jurisdiction")) for s in [*sources, *sightings]})
    view["tlp"] = most_restrictive(_record_tlp(s.get("tlp")) for s in [*sources, *sightings])
    if view.get("false_positives"):
        _screen_reasons(view, reader, removed)
    if removed:
        # Record-level labels are the union of the live sources' labels, now redacted.
        view["labels"] = sorted(
            {lb for s in sources if not s.get("revoked") for lb in s.get("labels") or ()}
        )
        return Decision("allow_redacted", rule, view, tuple(removed))
    return Decision("allow", rule, view)


# --- index tags ------------------------------------------------------------------------


def reader_tags(reader: Reader, purpose: Purpose | None = None) -> list[str]:
    """Tags a reader matches in an index filter.

    Without ``purpose``: the object index's audience tags (see ``audience``).
    With one: the view tokens of records and alerts (core/views.py) — the
    reader's own token for that channel (``r:`` read/notify, ``m:`` stream,
    ``j:`` the jurisdiction reader of TAXII reports) and ``jur:<J>``, the
    compressed tag of "every reader of J".
    """
    if purpose is not None:
        if not reader.agency_id:
            own = f"j:{reader.jurisdiction}"
        elif purpose in _RED_PURPOSES:
            own = f"r:{reader.agency_id}"
        else:
            own = f"m:{reader.agency_id}"
        return [own, f"jur:{reader.jurisdiction}"]
    tags = [
        f"agency:{reader.agency_id}",
        f"jurisdiction:{reader.jurisdiction}",
        f"member:{reader.agency_id}@{reader.jurisdiction}",
    ]
    tags += [
        f"consent:{j}:{reader.agency_id}@{reader.jurisdiction}"
        for j in sorted(reader.crossborder_consent)
    ]
    return tags


def _participant_tags(policy: SharingPolicy, jurisdiction: str) -> list[str]:
    if policy.participating_agencies is None:
        return [f"jurisdiction:{jurisdiction}"]
    return [f"member:{a}@{jurisdiction}" for a in sorted(policy.participating_agencies)]


def _covers_all(policy: SharingPolicy, report: SourceReport, to_j: str, tlp: Tlp) -> bool:
    checks = [(report.object_type, report.observable_types), *report.also_crossing]
    return all(
        policy.whitelist.allows(report.jurisdiction, to_j, t, o, tlp, consent=False)[0]
        for t, o in checks
    )


_AUDIENCE_CACHE_SIZE = 4096


def report_audience(policy: SharingPolicy, report: SourceReport) -> frozenset[str]:
    """Index tags of the readers allowed to read one source report (memoised per policy).

    A correlator asks this for every source of every record it writes; the
    distinct reports are few (agency x TLP x observable type x recipients).
    """
    cache = policy.audience_cache
    tags = cache.get(report)
    if tags is None:
        if len(cache) >= _AUDIENCE_CACHE_SIZE:
            cache.clear()
        tags = cache[report] = frozenset(_report_audience(policy, report))
    return tags


def _report_audience(policy: SharingPolicy, report: SourceReport) -> set[str]:
    src_j = report.jurisdiction
    tags = {f"agency:{report.agency}"}
    others = [j for j in JURISDICTIONS if j != src_j]
    if report.tlp == "red":
        tags |= {f"member:{r}@{src_j}" for r in report.recipients}
    elif report.tlp == "clear":
        tags.add(f"jurisdiction:{src_j}")
        tags |= {f"jurisdiction:{j}" for j in others if _covers_all(policy, report, j, "clear")}
    elif report.tlp == "green":
        tags.update(_participant_tags(policy, src_j))
        for j in others:
            if _covers_all(policy, report, j, "green"):
                tags.update(_participant_tags(policy, j))
    elif report.tlp == "amber":
        tags.update(_participant_tags(policy, src_j))
        for j in others:
            if not _covers_all(policy, report, j, "green"):
                continue
            checks = [(report.object_type, report.observable_types), *report.also_crossing]
            for agency in _amber_counterparts(policy, report, j, checks):
                tags.add(agency)
    return tags


def _amber_counterparts(
    policy: SharingPolicy,
    report: SourceReport,
    to_j: str,
    checks: Iterable[tuple[str, frozenset[str]]],
) -> set[str]:
    """Tags of counterpart agencies that receive this AMBER report in ``to_j``."""
    candidates: set[str] | None = None
    for object_type, observables in checks:
        tags: set[str] = set()
        for rule in policy.whitelist.rules_for(report.jurisdiction, to_j):
            if not rule.covers(object_type, observables):
                continue
            for agency in rule.amber_counterparts:
                if not _participant(policy, agency):
                    continue
                if rule.amber_requires_consent:
                    tags.add(f"consent:{report.jurisdiction}:{agency}@{to_j}")
                else:
                    tags.add(f"member:{agency}@{to_j}")
                    tags.add(f"consent:{report.jurisdiction}:{agency}@{to_j}")
        candidates = tags if candidates is None else candidates & tags
    return candidates or set()


def audience(
    policy: SharingPolicy,
    obj_or_record: Mapping[str, Any],
    provenance: Provenance | None = None,
) -> list[str]:
    """Tags stored with a document: an object (with its provenance) or a merged record."""
    if provenance is not None:
        return sorted(report_audience(policy, source_report_of(obj_or_record, provenance)))
    return record_audience(policy, obj_or_record)


def record_audience(policy: SharingPolicy, record: Mapping[str, Any]) -> list[str]:
    """Union over the record's sources (sightings alone never make a record visible).

    Memoised per policy on exactly what ``record_source_report`` reads of the record and
    its sources (a correlator asks this for every record it writes).
    """
    sources = record.get("sources") or []
    key = (
        record.get("observable_type"),
        tuple(
            (
                s.get("agency"),
                s.get("jurisdiction"),
                s.get("tlp"),
                tuple(s.get("recipients") or ()),
                tuple(s.get("observable_types") or ()),
            )
            for s in sources
        ),
    )
    cache = policy.record_audience_cache
    found = cache.get(key)
    if found is None:
        tags: set[str] = set()
        for source in sources:
            tags |= report_audience(policy, record_source_report(record, source))
        if len(cache) >= _AUDIENCE_CACHE_SIZE:
            cache.clear()
        found = cache[key] = sorted(tags)
    return list(found)
