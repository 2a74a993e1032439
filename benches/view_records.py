"""Indicator records written as the correlator writes them, for the benches that need many.

Shared by ``bench_exports.py`` and ``bench_api_scale.py``. Record ``i`` is the
observable ``observable(i)`` (60 % public IPv4, 30 % domains, 10 % SHA-256), so a
bench finds a loaded record's value again from its index alone. Each has one to
three sources from GD/HK/MO (some AMBER) and is written as the correlator writes
it: merged, its per-reader views planned and scored (``correlate/views.py``
``plan_record``), the record document assembled with those views and the
partial view documents materialised (``records/views.py``). Readers only match
records through views, so a record written any other way is found by nobody.
The agencies must be registered (``register``) before ``Loader`` is built: the
views are planned for the audiences of the registry at that moment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core import names
from core.access import Agency
from core.ports import Put
from core.views import Plan
from correlate.views import assemble, plan_record
from records.agencies import AgencyExists
from records.books import records_of
from records.views import Materialise, materialise
from threatbay.bootstrap import Services, correlator_for

T0 = datetime(2026, 10, 1, tzinfo=UTC)
SOURCES = (("hk-govcert", "HK"), ("gd-cac", "GD"), ("mo-caric", "MO"), ("hk-police", "HK"))
READER = Agency("hk-govcert", "GovCERT.HK", "HK",
                "identity--6d1c1f27-3c77-5b63-9d4f-6c2a3e0f1d11", "A")  # fmt: skip


def ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def observable(i: int) -> tuple[str, str, str]:
    """(observable type, path, value) of record ``i``: 60 % IPv4, 30 % domains, 10 % SHA-256."""
    r = i % 10
    if r < 6:
        return "ipv4-addr", "value", f"45.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    if r < 9:
        return "domain-name", "value", f"h{i}.scale.example.net"
    return "file", "hashes.sha-256", f"{i:064x}"


def record(i: int) -> dict[str, Any]:
    """Record ``i`` as ``correlate.merge`` leaves it, before its views are planned."""
    kind, path, value = observable(i)
    stix_path = "hashes.'SHA-256'" if kind == "file" else path
    at = T0 + timedelta(seconds=i)
    sources = []
    for s in range(1 + (i % 3 == 0) + (i % 7 == 0)):
        agency, jurisdiction = SOURCES[(i + s) % len(SOURCES)]
        sources.append({
            "agency": agency, "jurisdiction": jurisdiction, "source_kind": "agency",
            "stix_id": f"indicator--{i:08x}-0000-4000-8000-{s:012x}", "modified": ts(at),
            "confidence": 80, "tlp": "amber" if (i + s) % 5 == 0 else "green",
            "tlp_defaulted": False, "recipients": [], "valid_from": ts(at), "valid_until": None,
            "revoked": False, "labels": [], "kill_chain_phases": [], "first_seen": ts(at),
            "last_seen": ts(at), "source_path": f"{kind}:{path}",
            "pattern": f"[{kind}:{stix_path} = '{value}']", "description": None, "name": None,
        })  # fmt: skip
    return {"key": f"{kind}|{path}|{value}", "observable_type": kind, "path": path,
            "value": value, "sources": sources, "sightings": [], "malware": [],
            "campaigns": [], "intrusion_sets": []}  # fmt: skip


class Loader:
    """Builds and writes records ``lo``..``hi`` as the correlator does (module docstring).

    ``batch`` (CPU: the view planning) and ``write`` (I/O) are separate so a bench can
    keep writes in flight on other threads while it plans the next batch.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._worker = correlator_for(services)
        self._audiences = self._worker.audiences.current()
        self._now = services.clock.now()
        self._stamp = ts(self._now)

    def plan(self, i: int) -> Plan:
        """Record ``i``'s views planned and scored as the correlator plans them."""
        worker = self._worker
        return plan_record(record(i), None, self._audiences, worker.scorer,
                           worker.agency_profile, self._now, stamp=self._stamp)  # fmt: skip

    def document(self, plan: Plan) -> tuple[dict[str, Any], Materialise | None]:
        """The record document of a planned record and its partial views to materialise."""
        doc = assemble(plan, self._audiences, 1)
        partial = Materialise(doc["key"], 1, tuple(doc["views"]), ()) if doc["views"] else None
        return doc, partial

    def batch(self, lo: int, hi: int) -> tuple[list[Put], list[Materialise]]:
        puts: list[Put] = []
        partials: list[Materialise] = []
        for i in range(lo, hi):
            doc, partial = self.document(self.plan(i))
            puts.append(Put(doc["key"], doc, blind=True))
            if partial is not None:
                partials.append(partial)
        return puts, partials

    def write(self, puts: list[Put], partials: list[Materialise]) -> int:
        """Blind puts of the record documents, then their partial views; records written."""
        store = self.services.store
        written = sum(1 for r in store.put_many(names.INDEX_INDICATORS, puts) if r.ok)
        materialise(store, partials)
        return written


def load(services: Services, lo: int, hi: int, loader: Loader | None = None) -> None:
    """Records ``lo``..``hi`` written as the correlator writes them, then a refresh."""
    loader = loader or Loader(services)
    for start in range(lo, hi, 2000):
        loader.write(*loader.batch(start, min(hi, start + 2000)))
    services.store.refresh(names.INDEX_INDICATORS)


def register(services: Services) -> None:
    """The reporting agencies and the reader, so the views know their audiences (idempotent)."""
    registry = records_of(services).agencies
    for agency_id, jurisdiction in SOURCES:
        agency = READER
        if agency_id != READER.id:
            identity = f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}"
            agency = Agency(agency_id, agency_id, jurisdiction, identity)
        try:
            registry.add_agency(agency)
        except AgencyExists:
            pass  # a reused namespace
