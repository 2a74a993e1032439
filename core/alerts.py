"""Early-warning alerts: levels, deadlines and pure lifecycle transitions.

DOMAIN.md "Early-warning levels". An alert is a plain JSON-ready dict (it is
stored as is in ``threatbay-alerts``); every transition here is a pure
function of the alert, its input and an explicit ``now`` and returns the new
alert plus the timeline entries it appended. Nothing here does I/O.

Lifecycle per jurisdiction: ``notified`` -> ``acknowledged`` (by an agency of
that jurisdiction); an unacknowledged jurisdiction past its deadline is
flagged ``overdue`` and re-notified (a new deadline of the same length); the
alert as a whole is ``open`` -> ``resolved`` | ``expired``. Re-triggers
update the open alert, may raise its level (which asks every jurisdiction to
acknowledge again), never open a duplicate, and are coalesced so they never
flood the timeline.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypedDict

from core.clock import format_timestamp, parse_timestamp
from core.markings import DEFAULT_TLP, MARKING_ID_BY_TLP, most_restrictive, normalise_tlp
from core.provenance import Tlp

Alert = dict[str, Any]
Event = dict[str, Any]


class AlertEvent(TypedDict):
    """One timeline entry as stored in ``threatbay-alert-events`` and published on
    ``intel.alerts`` (records/alerts.py ``event_doc``)."""

    id: str
    stream_seq: int
    alert_id: str
    type: str
    at: str
    level: str
    status: str
    title: str
    jurisdictions: list[str]
    event: dict[str, Any]


_ALERT_NS = uuid.UUID("5b0f3f0e-3c8e-4d7b-9a57-7a1e2b6c9d10")
ALERT_REPORT_NS = uuid.UUID("0b6f7f55-6f0e-4a4d-8d5e-0f2c1a9b7e31")
PLATFORM_IDENTITY = "identity--6a1f2a4e-9a3b-5c1d-8e7f-0a1b2c3d4e5f"


class Level(Enum):
    """The national plan's four colours (I highest) with HK display labels."""

    RED = "RED"
    ORANGE = "ORANGE"
    YELLOW = "YELLOW"
    BLUE = "BLUE"

    @property
    def rank(self) -> int:
        """Severity: RED 4 > ORANGE 3 > YELLOW 2 > BLUE 1 (sorts descending)."""
        return _RANK[self]

    @property
    def roman(self) -> str:
        return _ROMAN[self]

    @property
    def hk_label(self) -> str:
        return _HK_LABEL[self]

    @property
    def ack_within(self) -> timedelta:
        """Acknowledgement deadline after notification (DOMAIN.md table)."""
        return _ACK[self]

    @property
    def update_every(self) -> timedelta | None:
        """Update interval for the issuing side; BLUE has none."""
        return _UPDATE[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            known = [lv.value for lv in cls]
            raise ValueError(f"unknown level {text!r}; use one of {known}") from None


_RANK = {Level.RED: 4, Level.ORANGE: 3, Level.YELLOW: 2, Level.BLUE: 1}
_ROMAN = {Level.RED: "I", Level.ORANGE: "II", Level.YELLOW: "III", Level.BLUE: "IV"}
_HK_LABEL = {
    Level.RED: "Extremely High",
    Level.ORANGE: "High",
    Level.YELLOW: "Medium",
    Level.BLUE: "Low",
}
_ACK = {
    Level.RED: timedelta(minutes=30),
    Level.ORANGE: timedelta(hours=1),
    Level.YELLOW: timedelta(hours=4),
    Level.BLUE: timedelta(hours=24),
}
_UPDATE: dict[Level, timedelta | None] = {
    Level.RED: timedelta(hours=2),
    Level.ORANGE: timedelta(hours=6),
    Level.YELLOW: timedelta(hours=24),
    Level.BLUE: None,
}

OPEN, RESOLVED, EXPIRED = "open", "resolved", "expired"
NOTIFIED, ACKNOWLEDGED = "notified", "acknowledged"
# Timeline event types (every event an alert can have).
EVENT_TYPES = (
    "opened",
    "updated",
    "level_raised",
    "notified",
    "acknowledged",
    "overdue",
    "renotified",
    "resolved",
    "comment",
    "expired",
    "update_due",
)
# Events that ask a jurisdiction's agencies for attention (webhooks are sent for these).
NOTIFYING = frozenset({"opened", "level_raised", "notified", "renotified", "resolved", "expired"})

DEFAULT_COALESCE = timedelta(minutes=5)
DEFAULT_IDLE_EXPIRY = timedelta(days=7)
MAX_INDICATORS = 500
MAX_SEEN_TRIGGERS = 200

ISSUING_AUTHORITY = "ThreatBay GBA joint early-warning platform"


def most_restrictive_tlp(tlps: Iterable[str | None]) -> Tlp:
    """The alert's TLP: most restrictive of what it shows; unmarked counts as AMBER."""
    levels: list[Tlp] = []
    for tlp in tlps:
        try:
            levels.append(normalise_tlp(tlp) if tlp else DEFAULT_TLP)
        except ValueError:
            levels.append(DEFAULT_TLP)
    return most_restrictive(levels) if levels else "clear"


# ------------------------------------------------------------------ trigger


@dataclass(frozen=True, slots=True)
class Trigger:
    """One rule match: what an alert should say after this change.

    ``trigger_id`` identifies the causing change event so a replay of the same
    event is recognised (idempotence); ``at`` is when the change happened.
    ``indicators`` are minimal records ({key, observable_type, value, score,
    tlp, sources: [{agency, jurisdiction, tlp, recipients}]}) so a reader's
    view of the alert can be decided by the sharing policy.
    """

    rule: str
    family: str
    level: Level
    dedup_key: str
    category: str
    title: str
    trigger_id: str
    at: str
    jurisdictions: tuple[str, ...]
    agencies: tuple[str, ...]
    indicators: tuple[dict[str, Any], ...]
    measures: tuple[str, ...] = ()
    incident: bool = False
    cluster: dict[str, Any] | None = None
    extra_jurisdictions: tuple[str, ...] = ()
    sectors: tuple[str, ...] = field(default_factory=tuple)
    #: True when the change behind it is only the periodic re-score (a score decaying):
    #: it may refresh an open alert but never opens or re-opens one.
    decay_only: bool = False


@dataclass(frozen=True, slots=True)
class AlertError:
    """A refused transition, as a value (``code`` is stable, ``message`` for humans)."""

    code: str
    message: str


Transition = tuple[Alert, list[Event]]


def alert_id_for(dedup_key: str, generation: int) -> str:
    """Deterministic alert id, so a replayed trigger addresses the same document."""
    return f"alert--{uuid.uuid5(_ALERT_NS, f'{dedup_key}#{generation}')}"


def _ts(when: datetime) -> str:
    return format_timestamp(when)


def _fingerprint(trigger: Trigger) -> str:
    """What the trigger would change; identical fingerprints coalesce."""
    payload = "|".join(
        [
            trigger.level.value,
            ",".join(sorted(trigger.jurisdictions)),
            ",".join(sorted(trigger.agencies)),
            ",".join(
                sorted(
                    f"{i['key']}={round(float(i.get('score', 0)), 1)}" for i in trigger.indicators
                )
            ),
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _append(
    alert: Alert, now: datetime, kind: str, trigger_id: str | None = None, **fields: Any
) -> Event:
    seq = len(alert["timeline"]) + 1
    event: Event = {"seq": seq, "at": _ts(now), "type": kind, **fields}
    if trigger_id is not None:
        event["trigger"] = trigger_id
    alert["timeline"].append(event)
    return event


def _notify(
    alert: Alert,
    jurisdiction: str,
    level: Level,
    now: datetime,
    trigger_id: str,
    renotified_count: int | None = None,
) -> Event:
    """(Re)start ``jurisdiction``'s acknowledgement at ``level`` and note it on the timeline."""
    state = _jurisdiction_state(level, now)
    if renotified_count is not None:
        state["renotified_count"] = renotified_count
    alert["jurisdiction_state"][jurisdiction] = state
    return _append(
        alert, now, "notified", trigger_id, jurisdiction=jurisdiction, deadline=state["deadline"]
    )


def _jurisdiction_state(level: Level, now: datetime) -> dict[str, Any]:
    return {
        "status": NOTIFIED,
        "notified_at": _ts(now),
        "deadline": _ts(now + level.ack_within),
        "acknowledged_by": None,
        "acknowledged_at": None,
        "overdue": False,
        "renotified_count": 0,
    }


def _merge_indicators(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    by_key = {i["key"]: i for i in old}
    for ind in new:
        by_key[ind["key"]] = ind
    merged = sorted(by_key.values(), key=lambda i: (-float(i.get("score", 0)), i["key"]))
    return merged[:MAX_INDICATORS]


def _refresh_derived(alert: Alert) -> None:
    """Recompute the searchable fields derived from the alert body."""
    level = Level(alert["level"])
    alert["level_rank"] = level.rank
    alert["level_roman"] = level.roman
    alert["hk_label"] = level.hk_label
    alert["indicator_keys"] = [i["key"] for i in alert["indicators"]]
    alert["tlp"] = most_restrictive_tlp(i.get("tlp") for i in alert["indicators"])
    states = alert["jurisdiction_state"]
    alert["jurisdictions"] = sorted(states)
    alert["pending_jurisdictions"] = sorted(
        j for j, s in states.items() if s["status"] == NOTIFIED and alert["status"] == OPEN
    )
    alert["overdue_jurisdictions"] = sorted(
        j
        for j, s in states.items()
        if s["overdue"] and s["status"] == NOTIFIED and alert["status"] == OPEN
    )
    deadlines = [states[j]["deadline"] for j in alert["pending_jurisdictions"]]
    alert["next_deadline"] = min(deadlines) if deadlines else None
    every = level.update_every
    if every is None or alert["status"] != OPEN:
        alert["next_update_due"] = None
    else:
        due = parse_timestamp(alert["updated"]) + every
        reminded = alert.get("update_reminded")
        if reminded and parse_timestamp(reminded) >= due:
            due = parse_timestamp(reminded) + every  # reminded already: the next one
        alert["next_update_due"] = _ts(due)


def open_alert(trigger: Trigger, now: datetime, generation: int = 0) -> Transition:
    """A new open alert for ``trigger``: every concerned jurisdiction is notified."""
    jurisdictions = sorted(set(trigger.jurisdictions) | set(trigger.extra_jurisdictions))
    alert: Alert = {
        "id": alert_id_for(trigger.dedup_key, generation),
        "generation": generation,
        "dedup_key": trigger.dedup_key,
        "rule": trigger.rule,
        "rules": [trigger.rule],
        "family": trigger.family,
        "level": trigger.level.value,
        "title": trigger.title,
        "category": trigger.category,
        "status": OPEN,
        "created": _ts(now),
        "start_time": trigger.at,
        "updated": _ts(now),
        "created_day": _ts(now)[:10],
        "closed_at": None,
        "agencies": sorted(set(trigger.agencies)),
        "indicators": _merge_indicators([], trigger.indicators),
        "indicator_total": len(trigger.indicators),
        "measures": list(trigger.measures),
        "issuing_authority": ISSUING_AUTHORITY,
        "sectors": sorted(set(trigger.sectors)),
        "cluster": trigger.cluster,
        "incident": trigger.incident,
        "jurisdiction_state": {j: _jurisdiction_state(trigger.level, now) for j in jurisdictions},
        "timeline": [],
        "seen_triggers": [trigger.trigger_id],
        "last_fingerprint": _fingerprint(trigger),
        "comments": 0,
    }
    alert["reporting_clocks"] = reporting_clocks(jurisdictions, now) if trigger.incident else []
    events = [
        _append(
            alert,
            now,
            "opened",
            trigger.trigger_id,
            level=trigger.level.value,
            rule=trigger.rule,
            jurisdictions=jurisdictions,
        )
    ]
    events += [
        _append(
            alert,
            now,
            "notified",
            trigger.trigger_id,
            jurisdiction=j,
            deadline=alert["jurisdiction_state"][j]["deadline"],
        )
        for j in jurisdictions
    ]
    _refresh_derived(alert)
    return alert, events


def open_or_update(
    existing: Alert | None, trigger: Trigger, now: datetime, coalesce: timedelta = DEFAULT_COALESCE
) -> Transition:
    """Apply ``trigger`` to the open alert of its dedup key, or open one.

    - a trigger already applied (same ``trigger_id``) changes nothing (replay);
    - a closed alert is reopened as the next generation, unless the trigger
      happened before it was closed (a stale replay);
    - a higher level raises the alert and asks every jurisdiction to
      acknowledge again; a lower one never lowers it;
    - new jurisdictions are notified; other changes produce one ``updated``
      event, folded into the previous one when that is younger than
      ``coalesce`` (no flooding).
    """
    if existing is None:
        return open_alert(trigger, now)
    if trigger.trigger_id in existing.get("seen_triggers", []):
        return existing, []
    if existing["status"] != OPEN:
        closed_at = existing.get("closed_at")
        if closed_at is not None and trigger.at <= closed_at:
            return existing, []
        return open_alert(trigger, now, generation=int(existing.get("generation", 0)) + 1)

    alert = copy.deepcopy(existing)
    alert["seen_triggers"] = (alert["seen_triggers"] + [trigger.trigger_id])[-MAX_SEEN_TRIGGERS:]
    events: list[Event] = []
    tid = trigger.trigger_id
    old_level = Level(alert["level"])
    if trigger.level.rank > old_level.rank:
        alert["level"] = trigger.level.value
        alert["rule"] = trigger.rule
        alert["title"] = trigger.title
        alert["measures"] = list(trigger.measures)
        events.append(
            _append(
                alert,
                now,
                "level_raised",
                tid,
                level=trigger.level.value,
                previous=old_level.value,
                rule=trigger.rule,
            )
        )
        for j, state in sorted(alert["jurisdiction_state"].items()):
            events.append(_notify(alert, j, trigger.level, now, tid, state["renotified_count"]))
    if trigger.rule not in alert["rules"]:
        alert["rules"].append(trigger.rule)
    level = Level(alert["level"])
    new_js = sorted(
        (set(trigger.jurisdictions) | set(trigger.extra_jurisdictions))
        - set(alert["jurisdiction_state"])
    )
    for j in new_js:
        events.append(_notify(alert, j, level, now, tid))
    if trigger.incident and not alert["incident"]:
        alert["incident"] = True
    if alert["incident"]:
        known = {c["jurisdiction"] for c in alert["reporting_clocks"]}
        missing = [j for j in alert["jurisdiction_state"] if j not in known]
        alert["reporting_clocks"] += reporting_clocks(missing, now)
    new_agencies = sorted(set(trigger.agencies) - set(alert["agencies"]))
    alert["agencies"] = sorted(set(alert["agencies"]) | set(trigger.agencies))
    alert["sectors"] = sorted(set(alert["sectors"]) | set(trigger.sectors))
    before = {i["key"] for i in alert["indicators"]}
    alert["indicators"] = _merge_indicators(alert["indicators"], trigger.indicators)
    added = [i["key"] for i in trigger.indicators if i["key"] not in before]
    alert["indicator_total"] = int(alert.get("indicator_total", 0)) + len(added)
    if trigger.cluster is not None:
        alert["cluster"] = trigger.cluster
    fingerprint = _fingerprint(trigger)
    changed = bool(events) or fingerprint != alert["last_fingerprint"]
    alert["last_fingerprint"] = fingerprint
    if changed and not events:
        last = alert["timeline"][-1] if alert["timeline"] else None
        if (
            last is not None
            and last["type"] == "updated"
            and now - parse_timestamp(last["at"]) < coalesce
        ):
            # Fold into the previous update: no new event, no new notification.
            last["count"] = int(last.get("count", 1)) + 1
            last["added_indicators"] = (last.get("added_indicators", []) + added)[:50]
            last["new_agencies"] = sorted(set(last.get("new_agencies", [])) | set(new_agencies))
        else:
            events.append(
                _append(
                    alert,
                    now,
                    "updated",
                    tid,
                    count=1,
                    added_indicators=added[:50],
                    new_agencies=new_agencies,
                )
            )
    alert["updated"] = _ts(now) if changed else alert["updated"]
    _refresh_derived(alert)
    return alert, events


def acknowledge(
    alert: Alert, agency: str, jurisdiction: str, now: datetime, note: str | None = None
) -> Transition | AlertError:
    """An agency acknowledges for its own jurisdiction (only one the alert concerns)."""
    if alert["status"] != OPEN:
        return AlertError("not_open", f"alert is {alert['status']}; nothing to acknowledge")
    state = alert["jurisdiction_state"].get(jurisdiction)
    if state is None:
        return AlertError(
            "not_concerned",
            f"jurisdiction {jurisdiction} is not concerned by this alert "
            f"(concerned: {sorted(alert['jurisdiction_state'])})",
        )
    if state["status"] == ACKNOWLEDGED:
        return AlertError(
            "already_acknowledged",
            f"{jurisdiction} already acknowledged by {state['acknowledged_by']} "
            f"at {state['acknowledged_at']}",
        )
    out = copy.deepcopy(alert)
    late = bool(state["overdue"]) or now > parse_timestamp(state["deadline"])
    out["jurisdiction_state"][jurisdiction] = {
        **state,
        "status": ACKNOWLEDGED,
        "acknowledged_by": agency,
        "acknowledged_at": _ts(now),
        "late": late,
    }
    fields: dict[str, Any] = {"jurisdiction": jurisdiction, "by": agency, "late": late}
    if note:
        fields["text"] = note
    events = [_append(out, now, "acknowledged", **fields)]
    out["updated"] = _ts(now)
    _refresh_derived(out)
    return out, events


def resolve(
    alert: Alert, agency: str, jurisdiction: str, now: datetime, reason: str | None = None
) -> Transition | AlertError:
    """Close the alert as resolved (by an agency of a concerned jurisdiction)."""
    if alert["status"] != OPEN:
        return AlertError("not_open", f"alert is already {alert['status']}")
    if jurisdiction not in alert["jurisdiction_state"]:
        return AlertError("not_concerned", f"jurisdiction {jurisdiction} is not concerned")
    out = copy.deepcopy(alert)
    out["status"] = RESOLVED
    out["closed_at"] = _ts(now)
    out["updated"] = _ts(now)
    fields: dict[str, Any] = {"by": agency, "jurisdiction": jurisdiction}
    if reason:
        fields["text"] = reason
    events = [_append(out, now, "resolved", **fields)]
    _refresh_derived(out)
    return out, events


#: ``resolution`` of an alert closed because its readers were told its indicator is benign.
FALSE_POSITIVE_RESOLUTION = "false_positive"


def resolve_false_positive(
    alert: Alert, now: datetime, reason: str, trigger_id: str
) -> Transition | None:
    """Close an open alert whose trigger no longer holds after a false-positive sighting.

    Issue #19: the readers of this version were told the indicator is a false
    positive (MISP sighting type 1) and no rule of the alert's family fires on
    their capped view any more. ``resolved`` notifies like any resolution; a
    later trigger (the mark withdrawn) opens the next generation.
    """
    if alert["status"] != OPEN or trigger_id in alert.get("seen_triggers", []):
        return None
    out = copy.deepcopy(alert)
    out["status"] = RESOLVED
    out["resolution"] = FALSE_POSITIVE_RESOLUTION
    out["closed_at"] = _ts(now)
    out["updated"] = _ts(now)
    out["seen_triggers"] = (out["seen_triggers"] + [trigger_id])[-MAX_SEEN_TRIGGERS:]
    events = [_append(out, now, "resolved", trigger_id, resolution=FALSE_POSITIVE_RESOLUTION,
                      by="threatbay", text=f"false positive: {reason}")]  # fmt: skip
    _refresh_derived(out)
    return out, events


def comment(
    alert: Alert, agency: str, jurisdiction: str, text: str, now: datetime
) -> Transition | AlertError:
    """Add an analyst comment to the timeline (an agency of a concerned jurisdiction)."""
    if jurisdiction not in alert["jurisdiction_state"]:
        return AlertError("not_concerned", f"jurisdiction {jurisdiction} is not concerned")
    text = text.strip()
    if not text:
        return AlertError("empty_comment", "comment text is empty")
    if len(text) > 4000:
        return AlertError("comment_too_long", "comment text is longer than 4000 characters")
    out = copy.deepcopy(alert)
    events = [_append(out, now, "comment", by=agency, jurisdiction=jurisdiction, text=text)]
    out["comments"] = int(out.get("comments", 0)) + 1
    _refresh_derived(out)
    return out, events


def escalate_overdue(alert: Alert, now: datetime) -> Transition:
    """Flag and re-notify every jurisdiction whose acknowledgement deadline has passed.

    Each re-notification sets a new deadline of the level's length, so a
    jurisdiction that stays silent is re-notified once per period, not on
    every tick.
    """
    if alert["status"] != OPEN:
        return alert, []
    level = Level(alert["level"])
    late = [
        j
        for j, s in sorted(alert["jurisdiction_state"].items())
        if s["status"] == NOTIFIED and now >= parse_timestamp(s["deadline"])
    ]
    if not late:
        return alert, []
    out = copy.deepcopy(alert)
    events: list[Event] = []
    for j in late:
        state = out["jurisdiction_state"][j]
        if not state["overdue"]:
            events.append(_append(out, now, "overdue", jurisdiction=j, deadline=state["deadline"]))
        state["overdue"] = True
        state["renotified_count"] += 1
        state["deadline"] = _ts(now + level.ack_within)
        events.append(
            _append(
                out,
                now,
                "renotified",
                jurisdiction=j,
                count=state["renotified_count"],
                deadline=state["deadline"],
            )
        )
    _refresh_derived(out)
    return out, events


def remind_update_due(alert: Alert, now: datetime) -> Transition:
    """DOMAIN.md "update every": an open alert not updated within its level's interval gets
    an ``update_due`` event (on the stream and the timeline, for the issuing side), once
    per interval until it is updated. Not sent to agencies' webhooks: it asks the
    issuer, not the notified jurisdictions, to act.
    """
    due = alert.get("next_update_due")
    if alert["status"] != OPEN or not due or now < parse_timestamp(due):
        return alert, []
    out = copy.deepcopy(alert)
    out["update_reminded"] = due
    late_by = now - parse_timestamp(out["updated"])
    events = [_append(out, now, "update_due", due=due, since_update=str(late_by))]
    _refresh_derived(out)
    return out, events


def expire_if_idle(
    alert: Alert, now: datetime, idle: timedelta = DEFAULT_IDLE_EXPIRY
) -> Transition:
    """An open alert with no trigger or action for ``idle`` expires."""
    if alert["status"] != OPEN or now - parse_timestamp(alert["updated"]) < idle:
        return alert, []
    out = copy.deepcopy(alert)
    out["status"] = EXPIRED
    out["closed_at"] = _ts(now)
    out["updated"] = _ts(now)
    events = [_append(out, now, "expired", idle_for=str(idle))]
    _refresh_derived(out)
    return out, events


def late_jurisdictions(alert: Alert) -> list[dict[str, Any]]:
    """Who is late: overdue, unacknowledged jurisdictions with their deadlines."""
    return [
        {"jurisdiction": j, "deadline": s["deadline"], "renotified_count": s["renotified_count"]}
        for j, s in sorted(alert["jurisdiction_state"].items())
        if s["overdue"] and s["status"] == NOTIFIED
    ]


# ------------------------------------------------------- statutory clocks

# DOMAIN.md "Statutory reporting clocks": shown and reminded, never filed by us.
_STATUTORY: dict[str, tuple[tuple[str, timedelta | None, str, str], ...]] = {
    "GD": (
        (
            "critical-information-infrastructure operators",
            timedelta(hours=1),
            "provincial cyberspace office",
            "National cybersecurity incident reporting measures",
        ),
        (
            "central and state organs",
            timedelta(hours=2),
            "provincial cyberspace office",
            "National cybersecurity incident reporting measures",
        ),
        (
            "other operators",
            timedelta(hours=4),
            "provincial cyberspace office",
            "National cybersecurity incident reporting measures",
        ),
    ),
    "HK": (
        (
            "serious incidents",
            timedelta(hours=12),
            "Commissioner's office (Cap. 653)",
            "Protection of Critical Infrastructures (Computer Systems) Ordinance, Cap. 653",
        ),
        (
            "other incidents",
            timedelta(hours=48),
            "Commissioner's office (Cap. 653)",
            "Protection of Critical Infrastructures (Computer Systems) Ordinance, Cap. 653",
        ),
    ),
    "MO": (("operators", None, "CARIC", "Cybersecurity Law 13/2019 (no fixed hour limit)"),),
}


def reporting_clocks(jurisdictions: Iterable[str], start: datetime) -> list[dict[str, Any]]:
    """Statutory reporting deadlines an incident alert shows per jurisdiction."""
    clocks: list[dict[str, Any]] = []
    for j in sorted(set(jurisdictions)):
        for who, within, to, law in _STATUTORY.get(j, ()):
            clocks.append(
                {
                    "jurisdiction": j,
                    "applies_to": who,
                    "report_to": to,
                    "law": law,
                    "within_hours": within.total_seconds() / 3600 if within else None,
                    "due": _ts(start + within) if within else None,
                }
            )
    return clocks


# ---------------------------------------------------------------- versions
#
# DOMAIN.md "Noninterference": an alert is seen by each reader as the rules
# evaluated on *its* view of the records (core/views.py). Readers whose
# triggers have always been the same share one version of the alert (one
# document listing them); a trigger that reaches only some readers of a
# version forks it: they go on in a copy, the others keep the version as it
# was. A reader's alert is thus exactly the fold of its own triggers and of
# the actions taken on the alert (acknowledgements, comments, resolution,
# which apply to every version of the alert id), never of a trigger computed
# from a report it may not see.


@dataclass
class Version:
    """One version of an alert: its document key, its exact readers, the alert."""

    key: str
    readers: frozenset[str]
    alert: Alert


#: ``step(alert or None, tokens)``: the transition for those readers, or None to skip.
Step = Callable[[Alert | None, frozenset[str]], Transition | None]


def version_key(versions: Sequence[Version], alert_id: str, tokens: Iterable[str]) -> str:
    """Document key of a new version: the alert id if free, else ``<id>#<hash of readers>``."""
    taken = {v.key for v in versions}
    if alert_id not in taken:
        return alert_id
    digest = hashlib.sha256(",".join(sorted(tokens)).encode()).hexdigest()
    n = 12
    while f"{alert_id}#{digest[:n]}" in taken and n < len(digest):
        n += 4
    return f"{alert_id}#{digest[:n]}"


def current_versions(versions: Sequence[Version], tokens: Iterable[str]) -> dict[str, Version]:
    """Each token's current version: the latest generation it reads (absent: none yet)."""
    out: dict[str, Version] = {}
    wanted = set(tokens)
    for version in versions:
        for token in version.readers & wanted:
            held = out.get(token)
            if held is None or int(version.alert.get("generation", 0)) > int(
                held.alert.get("generation", 0)
            ):
                out[token] = version
    return out


#: A version written, the readers it had when its events were made, and those events.
Emission = tuple[Version, frozenset[str], list[Event]]


def route(versions: list[Version], tokens: frozenset[str], step: Step) -> list[Emission]:
    """Apply ``step`` for ``tokens`` to their versions, forking where needed (in place).

    Returns every version written, with its readers then and the events it gained
    (``step`` must stamp them: a later fork copies them with their ids).
    """
    current = current_versions(versions, tokens)
    groups: dict[str, tuple[Version | None, set[str]]] = {}
    for token in sorted(tokens):
        version = current.get(token)
        slot = version.key if version is not None else ""
        groups.setdefault(slot, (version, set()))[1].add(token)
    touched: list[Emission] = []
    for version, group in groups.values():
        readers = frozenset(group)
        outcome = step(version.alert if version is not None else None, readers)
        if outcome is None:
            continue
        alert, events = outcome
        if version is not None and alert is version.alert:
            continue
        if version is None or alert["id"] != version.alert["id"]:
            fresh = Version(version_key(versions, alert["id"], readers), readers, alert)
            versions.append(fresh)
            touched.append((fresh, readers, events))
        elif readers == version.readers:
            version.alert = alert
            touched.append((version, readers, events))
        else:
            version.readers = version.readers - readers
            fork = Version(version_key(versions, alert["id"], readers), readers, alert)
            versions.append(fork)
            touched.append((fork, readers, events))
    return touched


# ---------------------------------------------------------------- views


def reader_view(
    alert: Alert, allow: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> Alert | None:
    """The alert as one reader may see it, or None when nothing in it is visible.

    ``allow`` is the sharing policy for this reader and purpose: it receives
    one indicator summary and returns the view it may see (possibly redacted)
    or None. Only visible indicators are shown, the TLP is recomputed over
    them, and internal bookkeeping is dropped.
    """
    visible = []
    for ind in alert.get("indicators", []):
        view = allow(ind)
        if view is not None:
            visible.append(view)
    if not visible:
        return None
    out = {k: v for k, v in alert.items() if k not in _INTERNAL}
    out["indicators"] = [
        {
            **{k: v for k, v in ind.items() if k not in ("sources", "sightings")},
            "stix_ids": sorted(
                {
                    s["stix_id"]
                    for s in ind.get("sources") or []
                    if isinstance(s.get("stix_id"), str)
                }
            ),
        }
        for ind in visible
    ]
    out["indicator_keys"] = [i["key"] for i in visible]
    out["indicators_hidden"] = len(alert.get("indicators", [])) - len(visible)
    out["tlp"] = most_restrictive_tlp(i.get("tlp") for i in visible)
    out["late"] = late_jurisdictions(alert)
    return out


_INTERNAL = frozenset(
    {"seen_triggers", "last_fingerprint", "audience", "readers", "reader_tokens", "rev"}
)


def indicator_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an indicator record an alert keeps (enough for the sharing policy)."""
    return {
        "key": record["key"],
        "observable_type": record.get("observable_type"),
        "value": record.get("value"),
        "score": round(float(record.get("score", 0.0)), 2),
        "state": record.get("state", "active"),
        "tlp": record.get("tlp"),
        "agencies": list(record.get("agencies", [])),
        "jurisdictions": list(record.get("jurisdictions", [])),
        "sources": [
            {k: v for k, v in s.items() if k not in _BULKY} for s in record.get("sources", [])
        ],
        "sightings": [
            {k: v for k, v in s.items() if k not in _BULKY} for s in record.get("sightings", [])
        ],
        "malware": list(record.get("malware", [])),
    }


_BULKY = frozenset({"description", "source_path", "kill_chain_phases"})


def concerned_agencies(alert: Alert) -> list[str]:
    return list(alert.get("agencies", []))


# ------------------------------------------------------------------ STIX


def alert_to_stix(alert: Alert, report_id: str | None = None) -> dict[str, Any]:
    """The alert as a STIX 2.1 ``report`` (section 4.14) referencing its indicators.

    ``report_types`` is ``["threat-report"]``; ``labels`` carry
    ``warning-level:<red|orange|yellow|blue>`` and the category; ``object_refs``
    are the STIX ids of the indicator reports behind it (those the audience may
    see); the marking is the TLP 2.0 id of the most restrictive TLP shown.
    The warning itself travels in the custom property ``x_threatbay_alert``
    (STIX 2.1 section 11.1, custom properties)::

        {"alert_id": "alert--…", "level": "RED|ORANGE|YELLOW|BLUE",
         "level_roman": "I|II|III|IV", "status": "open|resolved|expired",
         "rule": "<rule name>", "jurisdictions": ["GD", "HK"],
         "indicators": [{"key": "<canonical key>", "score": 0-100}],
         "issuing_authority": "<text>"}
    """
    refs = sorted(
        {
            sid
            for i in alert["indicators"]
            for sid in [
                *(i.get("stix_ids") or []),
                *(s.get("stix_id") for s in i.get("sources") or []),
            ]
            if isinstance(sid, str)
        }
    )
    marking = MARKING_ID_BY_TLP.get(most_restrictive_tlp(i.get("tlp") for i in alert["indicators"]))
    report: dict[str, Any] = {
        "type": "report",
        "spec_version": "2.1",
        "id": report_id or f"report--{uuid.uuid5(ALERT_REPORT_NS, alert['id'])}",
        "created": alert["created"],
        "modified": alert["updated"],
        "published": alert["created"],
        "created_by_ref": PLATFORM_IDENTITY,
        "name": alert["title"],
        "description": "; ".join(alert.get("measures") or []) or alert["title"],
        "report_types": ["threat-report"],
        "labels": [f"warning-level:{alert['level'].lower()}", alert["category"]],
        "object_refs": refs or [PLATFORM_IDENTITY],
        "x_threatbay_alert": {
            "alert_id": alert["id"],
            "level": alert["level"],
            "level_roman": alert.get("level_roman"),
            "status": alert["status"],
            "rule": alert["rule"],
            "jurisdictions": alert["jurisdictions"],
            "indicators": [{"key": i["key"], "score": i.get("score")} for i in alert["indicators"]],
            "issuing_authority": alert.get("issuing_authority"),
        },
    }
    if marking:
        report["object_marking_refs"] = [marking]
    return report


def jurisdiction_reports(
    alert: Alert, allow_for: Callable[[str], Callable[[dict[str, Any]], dict[str, Any] | None]]
) -> list[tuple[str, dict[str, Any]]]:
    """One STIX report per concerned jurisdiction, showing only what all of it may see.

    ``allow_for(jurisdiction)`` is the sharing policy for a reader that is any
    agency of that jurisdiction (no named-recipient rights), so TLP:RED
    indicators never enter a jurisdiction's collection.
    """
    out = []
    for j in alert["jurisdictions"]:
        view = reader_view(alert, allow_for(j))
        if view is None:
            continue
        report_id = f"report--{uuid.uuid5(ALERT_REPORT_NS, alert['id'] + '|' + j)}"
        out.append((j, alert_to_stix(view, report_id)))
    return out
