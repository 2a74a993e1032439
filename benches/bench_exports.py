"""Export time and memory on the embedded backends (issue #19): ``plain`` and ``rpz``.

Loads N indicator records (written as the correlator writes them: merged, their
per-reader views planned, scored and assembled by ``correlate/views.py``; 60 % public
IPv4, 30 % domains, 10 % SHA-256; one to three sources from GD/HK/MO, some
AMBER) straight into a fresh embedded store, then exports as ``hk-govcert``
through ``api.exports.render`` — the code the route and the CLI run — into a
sink that only counts bytes. For each size it prints wall time, rows/s and the
peak of Python allocations during the export (tracemalloc, in a second run so
the timing is not slowed by tracing). Memory must stay flat as N grows (pages
of 500 records, a 1 MiB spool; the rest of the body goes to a temporary file).

    .venv/bin/python benches/bench_exports.py [--sizes 10000,100000] [--million]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.exports import export_request, render
from core import names
from core.access import Agency
from core.allowlist import AllowList
from core.clock import FakeClock
from core.policy import reader_for
from core.ports import Put
from core.settings import Settings
from correlate.views import assemble, plan_record
from records.books import records_of
from records.views import Materialise, materialise
from threatbay.bootstrap import Services, build, correlator_for

T0 = datetime(2026, 10, 1, tzinfo=UTC)
SOURCES = (("hk-govcert", "HK"), ("gd-cac", "GD"), ("mo-caric", "MO"), ("hk-police", "HK"))
READER = Agency("hk-govcert", "GovCERT.HK", "HK",
                "identity--6d1c1f27-3c77-5b63-9d4f-6c2a3e0f1d11", "A")  # fmt: skip


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(
    i: int, audience: dict[tuple[Any, ...], list[str]], services: Services
) -> dict[str, Any]:
    r = i % 10
    if r < 6:
        kind, path, value = "ipv4-addr", "value", f"45.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    elif r < 9:
        kind, path, value = "domain-name", "value", f"h{i}.scale.example.net"
    else:
        kind, path, value = "file", "hashes.sha-256", f"{i:064x}"
    stix_path = "hashes.'SHA-256'" if kind == "file" else path
    at = T0 + timedelta(seconds=i)
    sources = []
    for s in range(1 + (i % 3 == 0) + (i % 7 == 0)):
        agency, jurisdiction = SOURCES[(i + s) % len(SOURCES)]
        sources.append({
            "agency": agency, "jurisdiction": jurisdiction, "source_kind": "agency",
            "stix_id": f"indicator--{i:08x}-0000-4000-8000-{s:012x}", "modified": _ts(at),
            "confidence": 80, "tlp": "amber" if (i + s) % 5 == 0 else "green",
            "tlp_defaulted": False, "recipients": [], "valid_from": _ts(at), "valid_until": None,
            "revoked": False, "labels": [], "kill_chain_phases": [], "first_seen": _ts(at),
            "last_seen": _ts(at), "source_path": f"{kind}:{path}",
            "pattern": f"[{kind}:{stix_path} = '{value}']", "description": None, "name": None,
        })  # fmt: skip
    rec: dict[str, Any] = {"key": f"{kind}|{path}|{value}", "observable_type": kind, "path": path,
                           "value": value, "sources": sources, "sightings": [], "malware": [],
                           "campaigns": [], "intrusion_sets": []}  # fmt: skip
    return rec


def load(services: Services, lo: int, hi: int, audience: dict[tuple[Any, ...], list[str]]) -> None:
    """Records ``lo``..``hi`` written as the correlator writes them: merged, their per-reader
    views planned and scored (correlate/views.py), the record document and its partial views."""
    worker = correlator_for(services)
    audiences = worker.audiences.current()
    now = services.clock.now()
    for start in range(lo, hi, 2000):
        puts: list[Put] = []
        partials: list[Materialise] = []
        for i in range(start, min(hi, start + 2000)):
            rec = record(i, audience, services)
            plan = plan_record(rec, None, audiences, worker.scorer, worker.agency_profile, now,
                               stamp=_ts(now))  # fmt: skip
            doc = assemble(plan, audiences, 1)
            puts.append(Put(doc["key"], doc, blind=True))
            if doc["views"]:
                partials.append(Materialise(doc["key"], 1, tuple(doc["views"]), ()))
        services.store.put_many(names.INDEX_INDICATORS, puts)
        materialise(services.store, partials)
    services.store.refresh(names.INDEX_INDICATORS)


def register(services: Services) -> None:
    """The reporting agencies and the reader, so the views know their audiences."""
    registry = records_of(services).agencies
    for agency_id, jurisdiction in SOURCES:
        if agency_id != READER.id:
            identity = f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, agency_id)}"
            registry.add_agency(Agency(agency_id, agency_id, jurisdiction, identity))
    registry.add_agency(READER)


class Sink:
    """A binary file that only counts what is written."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def export_once(services: Services, fmt: str, trace: bool) -> tuple[float, float, int, int, int]:
    """(wall s, CPU s, rows, bytes, peak traced bytes) of one export as the reader.

    CPU seconds (this process: the export and the embedded store's SQLite run in it)
    are the figure to compare while other work shares the machine.
    """
    types = ("domain-name",) if fmt == "plain" else ()
    req = export_request(fmt, types=types)
    sink = Sink()
    if trace:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    _, result = render(services.store, services.sharing, reader_for(READER), AllowList.of(()), req,
                       services.clock.now(), lambda digest: 1, sink)  # type: ignore[arg-type]  # fmt: skip
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return seconds, cpu, result.count, sink.bytes, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 records")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.million else [])
    print(f"machine: {platform.node()} {platform.machine()} Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        services = build(Settings(data_dir=Path(tmp)), clock=FakeClock(T0 + timedelta(days=1)))
        audience: dict[tuple[Any, ...], list[str]] = {}
        register(services)
        loaded = 0
        try:
            print(f"{'records':>9} {'format':>6} {'rows':>8} {'MB out':>7} {'wall s':>7} "
                  f"{'CPU s':>7} {'rows/CPU s':>10} {'peak MiB':>8}")  # fmt: skip
            for size in sorted(sizes):
                t = time.perf_counter()
                load(services, loaded, size, audience)
                print(f"  (loaded {size - loaded} records in {time.perf_counter() - t:.1f}s)")
                loaded = size
                for fmt in ("plain", "rpz"):
                    seconds, cpu, rows, out, _ = export_once(services, fmt, trace=False)
                    peak = export_once(services, fmt, trace=True)[4]
                    print(f"{size:>9} {fmt:>6} {rows:>8} {out / 1e6:>7.1f} {seconds:>7.1f} "
                          f"{cpu:>7.1f} {rows / cpu:>10,.0f} {peak / 2**20:>8.1f}",
                          flush=True)  # fmt: skip
        finally:
            services.close()


if __name__ == "__main__":
    main()
