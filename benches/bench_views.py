"""Per-reader views (core/views.py) on a realistic mix: documents per record, cost, lookups.

Twelve agencies (four per jurisdiction, consent varying, two AMBER
counterparts on the whitelist) report N indicators over a pool of values
(~30 % reported by more than one agency) with a realistic marking mix: GREEN
60 %, AMBER 20 % (some unmarked), CLEAR 8 %, RED with one or two named
recipients 7 %, AMBER+STRICT 5 %; 5 % of the reports carry a granular marking
on their description; some sightings. The real correlator (one process,
embedded backends) merges them; the bench prints indicators/s, how many
documents the indicators index holds per record (the record itself plus one
per other view), how records split by number of views, and the latency of
``GET /api/v1/lookup`` and ``/api/v1/indicators`` (through the app with
FastAPI's TestClient, which adds a few ms of its own) for three readers.

    .venv/bin/python benches/bench_views.py --n 20000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from core import envelope, names
from core import markings as m
from core.access import Agency, bearer_token
from core.clock import SystemClock, format_timestamp
from core.crossborder import default_whitelist
from core.envelope import Accepted
from core.policy import SharingPolicy
from core.ports import Missing, Query
from core.provenance import Provenance
from core.settings import Settings
from records.agencies import AgencyRegistry
from threatbay.bootstrap import build, correlator_for

JURISDICTIONS = ("GD", "HK", "MO")


def agencies() -> list[Agency]:
    out = []
    for j in JURISDICTIONS:
        for n in range(4):
            others = tuple(x for x in JURISDICTIONS if x != j)[: n % 3]
            out.append(
                Agency(
                    f"{j.lower()}-{n}",
                    f"{j} agency {n}",
                    j,
                    f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, f'{j}{n}')}",
                    "ABC"[n % 3],
                    crossborder_consent=others,
                )  # fmt: skip
            )
    return out


def policy() -> SharingPolicy:
    """The shipped whitelist with two AMBER counterparts per flow (consent required)."""
    base = default_whitelist()
    rules = tuple(
        type(r)(
            r.name,
            r.from_j,
            r.to_j,
            r.object_types,
            r.observable_types,
            True,
            frozenset({f"{r.to_j.lower()}-1", f"{r.to_j.lower()}-2"}),
        )  # fmt: skip
        for r in base.rules
    )
    return SharingPolicy(type(base)(rules))


def marking(rng: random.Random, ids: list[str]) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.60:
        return {"object_marking_refs": [m.TLP2_GREEN]}
    if roll < 0.72:
        return {"object_marking_refs": [m.TLP2_AMBER]}
    if roll < 0.80:
        return {}  # unmarked: AMBER
    if roll < 0.88:
        return {"object_marking_refs": [m.TLP2_CLEAR]}
    if roll < 0.95:
        return {"object_marking_refs": [m.TLP2_RED],
                "x_threatbay_recipients": rng.sample(ids, rng.randint(1, 2))}  # fmt: skip
    return {"object_marking_refs": [m.TLP2_AMBER_STRICT]}


def value(i: int) -> str:
    kind = i % 3
    if kind == 0:
        return f"[ipv4-addr:value = '10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}']"
    if kind == 1:
        return f"[domain-name:value = 'host{i}.views.example']"
    return f"[url:value = 'http://host{i}.views.example/p']"


def workload(n: int, regs: list[Agency], seed: int = 11) -> tuple[list[Accepted], list[str]]:
    rng = random.Random(seed)
    ids = [a.id for a in regs]
    distinct = int(n * 0.7)
    now = format_timestamp(SystemClock().now())
    items: list[Accepted] = []
    indicators: list[tuple[str, Agency]] = []
    for i in range(n):
        agency = regs[rng.randrange(len(regs))]
        v = i if i < distinct else rng.randrange(distinct)
        if indicators and rng.random() < 0.05:
            target, _ = indicators[rng.randrange(len(indicators))]
            obj: dict[str, Any] = {
                "type": "sighting", "spec_version": "2.1", "created": now, "modified": now,
                "id": f"sighting--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                "sighting_of_ref": target, "count": 1, **marking(rng, ids),
            }  # fmt: skip
        else:
            obj = {
                "type": "indicator", "spec_version": "2.1", "created": now, "modified": now,
                "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                "valid_from": now, "pattern": value(v), "pattern_type": "stix",
                "confidence": 40 + rng.randrange(60), "description": "seen in the wild",
                **marking(rng, ids),
            }  # fmt: skip
            if rng.random() < 0.05:
                obj["granular_markings"] = [
                    {"marking_ref": m.TLP2_AMBER_STRICT, "selectors": ["description"]}
                ]
            indicators.append((obj["id"], agency))
        tlp, defaulted = m.tlp_of(obj)
        prov = Provenance(agency.id, agency.jurisdiction, now, "bench", tlp=tlp,
                          tlp_defaulted=defaulted,
                          recipients=m.red_recipients(obj) if tlp == "red" else ())  # fmt: skip
        items.append(Accepted(obj, prov))
    return items, [value(i) for i in range(distinct)]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=300)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="tb-views-"))
    built = build(Settings(data_dir=data_dir))
    import dataclasses

    services = dataclasses.replace(built, sharing=policy())
    registry = AgencyRegistry(services.store, services.clock)
    regs = agencies()
    keys = {}
    for agency in regs:
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[agency.id] = bearer_token(cred.key_id, secret)
    items, patterns = workload(args.n, regs)
    for start in range(0, len(items), 1000):
        services.bus.publish(names.TOPIC_RAW, envelope.encode(items[start : start + 1000]))
    worker = correlator_for(services)  # warninglists load before the clock starts
    consumer = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
    t0, cpu0 = time.perf_counter(), time.process_time()
    done = 0
    while done < args.n:
        batch = consumer.poll(max_records=200, timeout_s=0.5)
        if not batch:
            break
        done += worker.process(batch).objects
        consumer.commit()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    store = services.store
    total = store.count(names.INDEX_INDICATORS)
    records = store.count(names.INDEX_INDICATORS, [Missing("view_of")])
    views: Counter[int] = Counter()
    after = None
    while True:
        page = store.search(
            names.INDEX_INDICATORS,
            Query(filters=(Missing("view_of"),), limit=1000, after=after),
        )
        for hit in page.hits:
            views[(1 if hit.doc.get("readers") else 0) + len(hit.doc.get("views") or [])] += 1
        if not page.more or not page.hits:
            break
        after = page.hits[-1].cursor
    print(f"correlated {done} objects in {elapsed:.2f}s -> {done / elapsed:,.0f}/s "
          f"({cpu / done * 1e6:,.0f} us CPU each), 1 process, embedded")  # fmt: skip
    print(f"indicators index: {total} documents for {records} records = "
          f"{total / records:.3f} documents per record")  # fmt: skip
    print(
        "records by number of views: "
        + ", ".join(f"{k}: {v} ({v / records:.1%})" for k, v in sorted(views.items()))
    )

    from fastapi.testclient import TestClient

    from api.app import create_app

    client = TestClient(create_app(services))
    rng = random.Random(3)
    for reader in ("gd-0", "hk-1", "mo-2"):
        headers = {"Authorization": f"Bearer {keys[reader]}"}
        client.get("/api/v1/me", headers=headers)
        lat: list[float] = []
        for _ in range(args.lookups):
            raw = patterns[rng.randrange(len(patterns))].split("'")[1]
            t = time.perf_counter()
            r = client.get("/api/v1/lookup", params={"value": raw}, headers=headers)
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        pages: list[float] = []
        for _ in range(30):
            t = time.perf_counter()
            r = client.get("/api/v1/indicators", params={"limit": 50}, headers=headers)
            pages.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        p50, p99 = statistics.median(pages), percentile(pages, 0.99)
        print(f"{reader}: lookup p50 {statistics.median(lat):.1f} ms p99 "
              f"{percentile(lat, 0.99):.1f} ms; indicators page (50) p50 "
              f"{p50:.1f} ms p99 {p99:.1f} ms")  # fmt: skip
    client.close()
    services.close()


if __name__ == "__main__":
    main()
