"""date_added floors and the settled watermark (records/date_added.py), embedded and on real
Elasticsearch with a 30 s refresh interval (only the watermark's own refresh shows writes).

Each writer is its own ``DateAddedBook`` (a separate wrapper object over the one store),
as separate correlator processes are; the reader is the TAXII route through the ASGI app.
``tests/e2e/test_date_added_many_correlators.py`` proves the same with real processes.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.clock import FakeClock, parse_timestamp
from core.envelope import Accepted
from core.errors import StoreUnavailable
from core.names import INDEX_OBJECT_VERSIONS, INDEX_OBJECTS
from core.ports import Put, PutResult, Store
from core.provenance import Provenance
from core.settings import TaxiiSettings
from records.agencies import AgencyRegistry
from records.date_added import KEY, book_of
from records.objects import object_key, store_objects, version_of
from tests.e2e.conftest import AGENCIES, TAXII, embedded_or_real, indicator
from threatbay.bootstrap import Services

SHARED = "/taxii2/api/collections/shared-all/objects/"


class Writer:
    """The real store as one more writer process sees it: objects writes may wait or fail."""

    def __init__(self, store: Store, delay_s: float = 0.0, seed: int = 0) -> None:
        self._store = store
        self.delay_s = delay_s
        self.fail = False
        self._rng = random.Random(seed)

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        if index == INDEX_OBJECTS and puts:
            if self.fail:
                raise StoreUnavailable("objects index down")
            time.sleep(self._rng.uniform(0.0, self.delay_s))
        return self._store.put_many(index, puts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "floors", refresh_interval="30s") as svc:
        yield svc


@pytest.fixture
def reader(backends: Services) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The TAXII route for HK; it settles the watermark on every request (no reuse), so what
    it serves depends only on the floors, not on when it last settled."""
    backends.settings.taxii.settle_interval_s = 0.0
    registry = AgencyRegistry(backends.store, backends.clock)
    for agency in (AGENCIES["gd"], AGENCIES["hk"]):
        registry.add_agency(agency)
    cred, secret = registry.add_credential(AGENCIES["hk"].id)
    import base64

    token = base64.b64encode(f"{cred.key_id}:{secret}".encode()).decode()
    with TestClient(create_app(backends)) as client:
        yield client, {"Authorization": f"Basic {token}", "Accept": TAXII}


def accepted(start: int, n: int) -> list[Accepted]:
    prov = Provenance("gd-cac", "GD", "2026-03-01T08:00:00.000Z", "req", tlp="green")
    return [
        Accepted(indicator(start + i, stix_id=f"indicator--{uuid.uuid4()}"), prov) for i in range(n)
    ]


def poll(client: TestClient, h: dict[str, str], cursor: str | None) -> tuple[list[str], str | None]:
    params = {"limit": "7"} | ({"added_after": cursor} if cursor else {})
    resp = client.get(SHARED, params=params, headers=h)
    assert resp.status_code == 200, resp.text
    return [o["id"] for o in resp.json()["objects"]], resp.headers.get(
        "x-taxii-date-added-last", cursor
    )


def test_a_poller_resuming_from_the_last_header_misses_nothing_under_delayed_writers(
    backends: Services, reader: tuple[TestClient, dict[str, str]]
) -> None:
    client, h = reader
    writers = [Writer(backends.store, delay_s=0.15, seed=n) for n in range(3)]
    batches = [[accepted(1000 * w + 10 * b, 4) for b in range(8)] for w in range(3)]
    want = {a.obj["id"] for w in batches for b in w for a in b}
    got: Counter[str] = Counter()
    cursor: str | None = None
    done = threading.Event()

    def write(w: int) -> None:
        for batch in batches[w]:
            store_objects(writers[w], batch, backends.clock)  # type: ignore[arg-type]

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    threading.Thread(target=lambda: ([t.join() for t in threads], done.set())).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        finished = done.is_set()
        ids, cursor = poll(client, h, cursor)
        got.update(ids)
        if finished and not ids and set(got) >= want:
            break
    assert set(got) == want, f"{len(want - set(got))} never served"
    assert all(n == 1 for n in got.values()), "served twice"


def test_a_write_that_outlives_its_lease_is_stamped_again_and_still_served(
    backends: Services, reader: tuple[TestClient, dict[str, str]], clock: FakeClock
) -> None:
    client, h = reader
    slow, other = Writer(backends.store), Writer(backends.store)
    book = book_of(slow, clock, TaxiiSettings(date_added_lease_s=10, clock_skew_s=2))  # type: ignore[arg-type]
    first = accepted(0, 2)
    store_objects(slow, first, clock)  # type: ignore[arg-type]
    ids, cursor = poll(client, h, None)
    assert sorted(ids) == sorted(a.obj["id"] for a in first)

    late, meanwhile = accepted(100, 3), accepted(200, 1)
    stamped_at: list[str] = []
    real_put = slow.put_many

    def put_after_lease(index: str, puts: Sequence[Put]) -> list[PutResult]:
        if index == INDEX_OBJECTS and not stamped_at:
            stamped_at.extend(p.doc["date_added"] for p in puts)
            clock.advance(timedelta(seconds=11))  # the floor's lease ran out: taken for dead
            store_objects(other, meanwhile, clock)  # type: ignore[arg-type]
            ids, moved = poll(client, h, cursor)
            assert ids == [meanwhile[0].obj["id"]]
            assert moved is not None and moved > max(stamped_at)  # the poller is past them
            cursors.append(moved)
        return real_put(index, puts)

    cursors: list[str] = []
    slow.put_many = put_after_lease  # type: ignore[method-assign]
    store_objects(slow, late, clock)  # type: ignore[arg-type]
    ids, _ = poll(client, h, cursors[0])
    assert sorted(ids) == sorted(a.obj["id"] for a in late)  # served after all
    keys = [object_key(a.obj["id"], version_of(a.obj)) for a in late]
    final = [d.doc["date_added"] for d in backends.store.get_many(INDEX_OBJECTS, keys).values()]
    assert len(final) == 3 and min(final) > cursors[0]  # stamped again under a new floor
    floors = backends.store.get(INDEX_OBJECT_VERSIONS, KEY)
    assert floors is not None and book.writer_id not in floors.doc["writers"]


def test_a_failed_write_keeps_its_floor_until_the_lease_runs_out(
    backends: Services, reader: tuple[TestClient, dict[str, str]], clock: FakeClock
) -> None:
    client, h = reader
    broken = Writer(backends.store)
    book_of(broken, clock, TaxiiSettings(date_added_lease_s=30, clock_skew_s=5))  # type: ignore[arg-type]
    broken.fail = True
    with pytest.raises(StoreUnavailable):
        store_objects(broken, accepted(0, 2), clock)  # type: ignore[arg-type]
    doc = backends.store.get(INDEX_OBJECT_VERSIONS, KEY)
    assert doc is not None
    (entry,) = doc.doc["writers"].values()
    other = Writer(backends.store)
    store_objects(other, accepted(10, 2), clock)  # type: ignore[arg-type]
    ids, _ = poll(client, h, None)
    assert ids == []  # held below the failed writer's floor (the store may still apply it)
    clock.advance(timedelta(seconds=31))
    ids, _ = poll(client, h, None)
    assert len(ids) == 2  # the lease ran out: the watermark moves on
    assert parse_timestamp(entry["expires"]) < clock.now()


def test_a_page_never_ends_inside_a_run_of_equal_date_added(
    backends: Services, reader: tuple[TestClient, dict[str, str]], clock: FakeClock
) -> None:
    """Two writers (processes) may stamp the same date_added; a poller resuming from
    X-TAXII-Date-Added-Last after a page that ended inside the tie would skip the rest."""
    client, h = reader
    one, two = Writer(backends.store), Writer(backends.store)
    objs = accepted(0, 4)
    store_objects(one, objs[:2], clock)  # type: ignore[arg-type]
    store_objects(two, objs[2:], clock)  # type: ignore[arg-type]  # same frozen clock: ties
    manifest = client.get(SHARED.replace("objects/", "manifest/"), headers=h).json()["objects"]
    dates = [m["date_added"] for m in manifest]
    assert len(set(dates)) == 2 and len(dates) == 4  # two ties of two
    got: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"limit": "3"} | ({"added_after": cursor} if cursor else {})
        resp = client.get(SHARED, params=params, headers=h)
        got += [o["id"] for o in resp.json()["objects"]]
        if not resp.json()["objects"]:
            break
        cursor = resp.headers["x-taxii-date-added-last"]
    assert sorted(got) == sorted(a.obj["id"] for a in objs)
    first = client.get(SHARED, params={"limit": "3"}, headers=h).json()
    assert len(first["objects"]) == 2 and first["more"] is True  # stopped before the tie
    whole_tie = client.get(SHARED, params={"limit": "1"}, headers=h).json()
    assert len(whole_tie["objects"]) == 1  # a tie longer than the page is cut: next goes on
