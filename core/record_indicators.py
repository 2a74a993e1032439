"""One reader's view of a record as a STIX 2.1 indicator: the ``records`` TAXII collection.

Issue 18 "a consumer collection": a SIEM polling ``records`` gets ThreatBay's
deduplicated, corroborated, scored and expiring value, one indicator per record
the reader may see, rendered here from *that reader's view* of the record
(core/views.py), never from the record as stored, so every property below is
computed only from the reports the reader may see (DOMAIN.md "Noninterference"):

- ``id``: ``indicator--uuid5(RECORDS_NAMESPACE, canonical key)``, the same for
  every reader and every version (the namespace is fixed and documented);
- ``pattern``: ``[type:path = 'value']`` from the canonical key; a key of type
  ``pattern`` (AND, sequences, qualifiers) is the canonical pattern itself;
- ``confidence``: the view's score (0-100) when the version was made;
- ``valid_from``: the view's first seen; ``valid_until``: when the decayed score
  falls below ``taxii.records_expire_below`` (or the last live report ends, or
  the view expired), computed from the view's stored score components;
- ``revoked``: every source the reader sees revoked (the view's state);
- ``labels``, ``indicator_types``, ``external_references`` (one per visible
  source report, by its STIX id), the TLP marking the most restrictive of what
  the view shows, ``created_by_ref`` the platform identity;
- ``modified``: the view's change stamp ``changed_at``. A view is rebuilt (and
  stamped) exactly when what its readers see changes: a new source, a score
  step of the periodic re-score, a report ending, a revocation. The same
  stamp is the version's ``date_added`` (stamped under a date_added floor,
  records/date_added.py), so an ``added_after`` poll brings every new version.
  Across processes with different clocks, a version a reader was served lies at or
  below the settled watermark and every later stamp above a floor registered after
  that watermark was published or held it back, so a reader only ever sees a
  record's ``modified`` grow. A written batch reserves ``STAMP_SPAN`` microseconds
  and each record takes its place in them from its own key (``stamp_for``): a
  stamp never depends on the other records of the batch, visible or not.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core.alerts import PLATFORM_IDENTITY
from core.canonical import path_components, render_path
from core.clock import format_timestamp, parse_timestamp
from core.markings import MARKING_ID_BY_TLP, normalise_tlp
from core.scoring import WARNINGLIST_CAP

#: uuid5 namespace of record indicator ids (documented in the README; never change it:
#: SIEMs key their blocklists by these ids).
RECORDS_NAMESPACE = uuid.UUID("0c6f4b7e-3d8a-5f21-9b4e-7a2c1d9e8f30")

#: STIX 2.1 indicator-type-ov (section 10.11).
INDICATOR_TYPES = frozenset({
    "anomalous-activity", "anonymization", "benign", "compromised",
    "malicious-activity", "attribution", "unknown",
})  # fmt: skip

#: A record's view is served in ``records`` once it carries these (written by the correlator).
CHANGE_STAMP = "changed_at"

TICK = timedelta(microseconds=1)


def indicator_id(key: str) -> str:
    """The deterministic STIX id of the record with canonical ``key``."""
    return f"indicator--{uuid.uuid5(RECORDS_NAMESPACE, key)}"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern_of(view: Mapping[str, Any]) -> str:
    """The STIX pattern of a record's canonical key (a compound key is its own pattern)."""
    kind, path, value = str(view["observable_type"]), str(view["path"]), str(view["value"])
    if kind == "pattern":
        return value
    steps = list(path_components(path))
    if len(steps) >= 2 and steps[-2] == "hashes":
        steps[-1] = steps[-1].upper()  # the hash vocabulary's spelling ('SHA-256', 'MD5')
    return f"[{kind}:{render_path(steps)} = {_quote(value)}]"


def expires_at(view: Mapping[str, Any], below: float) -> datetime | None:
    """When the view's decayed score falls below ``below`` (None: it never decays).

    DOMAIN.md "Score": ``base × (1 − (t/τ)^(1/δ))`` reaches v at ``t = τ(1 − v/base)^δ``
    after the anchor; a warninglist cap at or under ``below`` expires it at once; the
    last live report's ``valid_until`` ends it too.
    """
    components = view.get("components") or {}
    scored_at = parse_timestamp(str(view["scored_at"])) if view.get("scored_at") else None
    ends: list[datetime] = []
    live_until = components.get("live_until")
    if live_until:
        ends.append(parse_timestamp(str(live_until)))
    if view.get("state") != "active":
        if scored_at is not None:
            ends.append(scored_at)
        return min(ends) if ends else None
    base = float(components.get("base") or 0.0)
    anchor = components.get("anchor")
    tau = float(components.get("tau_days") or 0.0)
    delta = float(components.get("delta") or 0.0)
    cap = components.get("cap")
    if cap is None and components.get("capped_by"):
        cap = WARNINGLIST_CAP
    capped = cap is not None and float(cap) < below  # a warning list or a false positive
    if capped or base < below:
        ends.append(scored_at or parse_timestamp(str(view["first_seen"])))
    elif anchor and tau > 0 and delta > 0:
        days = tau * (1.0 - below / base) ** delta
        ends.append(parse_timestamp(str(anchor)) + timedelta(days=days))
    return min(ends) if ends else None


def _marking(view: Mapping[str, Any]) -> str:
    try:
        tlp = normalise_tlp(str(view.get("tlp")))
    except ValueError:
        tlp = "red"
    return MARKING_ID_BY_TLP[tlp]


#: Microseconds over which one written batch spreads its records' versions (``stamp_for``).
STAMP_SPAN = 1000


def stamp_for(base: str, key: str) -> str:
    """The version stamp of record ``key`` in a batch stamped ``base`` (``STAMP_SPAN`` reserved).

    One stamp for a whole batch would make it one run of equal ``date_added``,
    which a page may have to cut (api/taxii/service.py ``_whole_date_added``),
    leaving a client that resumes from X-TAXII-Date-Added-Last (rather than
    ``next``) past the rest of the run. A stamp per record in batch order would
    depend on the other records of the batch, hidden ones included. So each
    record takes an offset from a digest of its own key: runs are a few
    records long, and nothing else of the batch shows.
    """
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return format_timestamp(parse_timestamp(base) + (digest % STAMP_SPAN) * TICK)


def stamp(content: dict[str, Any], at: str) -> None:
    """Make ``content`` (a record view just rebuilt) the version ``at`` of its indicator."""
    content[CHANGE_STAMP] = at
    if isinstance(content.get("key"), str):
        content["indicator_id"] = indicator_id(content["key"])


def stamp_of(view: Mapping[str, Any]) -> str | None:
    """The view's version stamp (its ``modified`` and ``date_added``), None if not stamped."""
    found = view.get(CHANGE_STAMP)
    return str(found) if isinstance(found, str) else None


def render(view: Mapping[str, Any], expire_below: float) -> dict[str, Any]:
    """The STIX 2.1 indicator for one reader's ``view`` of a record (module docstring)."""
    modified = str(view[CHANGE_STAMP])
    first_seen = str(view.get("first_seen") or modified)
    created = min(first_seen, modified)
    labels = sorted({str(label) for label in view.get("labels") or ()})
    sources = sorted(
        (str(s.get("agency")), str(s["stix_id"]))
        for s in view.get("sources") or ()
        if isinstance(s, Mapping) and isinstance(s.get("stix_id"), str)
    )
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": indicator_id(str(view["key"])),
        "created_by_ref": PLATFORM_IDENTITY,
        "created": created,
        "modified": modified,
        "name": str(view.get("value") or view["key"])[:256],
        "indicator_types": sorted(INDICATOR_TYPES & set(labels)) or ["malicious-activity"],
        "pattern": pattern_of(view),
        "pattern_type": "stix",
        "valid_from": first_seen,
        "confidence": max(0, min(100, round(float(view.get("score") or 0.0)))),
    }
    ends = expires_at(view, expire_below)
    if ends is not None:
        floor = parse_timestamp(first_seen) + TICK
        obj["valid_until"] = format_timestamp(max(ends, floor))
    if labels:
        obj["labels"] = labels
    if view.get("state") == "revoked":
        obj["revoked"] = True
    if sources:
        obj["external_references"] = [
            {"source_name": f"threatbay:{agency}", "external_id": stix_id}
            for agency, stix_id in sources
        ]
    obj["object_marking_refs"] = [_marking(view)]
    return obj
