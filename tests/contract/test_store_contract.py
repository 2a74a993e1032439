"""One contract for every ``Store`` adapter: embedded SQLite and real Elasticsearch (STYLE.md 3).

What the stages rely on: optimistic concurrency that never loses an update,
filters with the same meaning in both backends, stable sort with cursors
that survive a JSON round trip (TAXII ``next`` tokens, API cursors).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import pytest

from core import names
from core.errors import StoreUnavailable
from core.ports import Missing, Put, Query, Range, Sort, Store, Term, Text
from core.settings import ElasticsearchSettings

IND = names.INDEX_INDICATORS
ALERTS = names.INDEX_ALERTS


def _indicator(n: int, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "key": f"ipv4-addr|value|10.0.0.{n}",
        "observable_type": "ipv4-addr",
        "value": f"10.0.0.{n}",
        "state": "active" if n % 2 == 0 else "expired",
        "score": float(n % 7),
        "agency_count": n % 3,
        "agencies": ["gd-cac", "hk-govcert"] if n % 3 == 0 else ["mo-caric"],
        "last_seen": f"2026-11-{1 + n % 28:02d}T00:00:00.000000Z",
        "sighted": n % 4 == 0,
        "body": {"nested": n},
    }
    doc.update(extra)
    return doc


def _load(store: Store, docs: dict[str, dict[str, Any]], index: str = IND) -> None:
    results = store.put_many(index, [Put(key=k, doc=d) for k, d in docs.items()])
    assert all(r.ok for r in results)
    store.refresh(index)


def _keys(store: Store, query: Query, index: str = IND) -> list[str]:
    return [h.key for h in store.search(index, query).hits]


# ------------------------------------------------------------ versions


def test_create_then_get_returns_the_document_and_version(store: Store) -> None:
    [created] = store.put_many(IND, [Put(key="k1", doc=_indicator(1))])
    assert created.ok and not created.conflict and created.version is not None
    got = store.get(IND, "k1")
    assert got is not None
    assert got.doc == _indicator(1)
    assert got.version == created.version
    assert store.get(IND, "absent") is None


def test_search_hits_carry_their_version_when_asked(store: Store) -> None:
    [v1] = store.put_many(IND, [Put(key="k1", doc=_indicator(1))])
    [v2] = store.put_many(IND, [Put(key="k1", doc=_indicator(1, score=9.5), expected=v1.version)])
    store.refresh(IND)
    [plain] = store.search(IND, Query()).hits
    assert plain.version is None
    [hit] = store.search(IND, Query(versions=True)).hits
    assert hit.version == v2.version and hit.doc["score"] == 9.5
    # A conditional write straight from the hit: accepted, and the hit's version is then stale.
    [v3] = store.put_many(IND, [Put(key="k1", doc=_indicator(1, score=1.0), expected=hit.version)])
    assert v3.ok
    [stale] = store.put_many(IND, [Put(key="k1", doc=_indicator(1), expected=hit.version)])
    assert stale.conflict and not stale.ok


def test_create_of_an_existing_key_is_a_conflict(store: Store) -> None:
    store.put_many(IND, [Put(key="k1", doc=_indicator(1))])
    [again] = store.put_many(IND, [Put(key="k1", doc=_indicator(2))])
    assert again.conflict and not again.ok
    got = store.get(IND, "k1")
    assert got is not None and got.doc["value"] == "10.0.0.1"


def test_update_with_current_version_succeeds_and_stale_version_conflicts(
    store: Store,
) -> None:
    [v1] = store.put_many(IND, [Put(key="k1", doc=_indicator(1))])
    assert v1.version is not None
    [v2] = store.put_many(IND, [Put(key="k1", doc=_indicator(1, score=9.5), expected=v1.version)])
    assert v2.ok and v2.version is not None and v2.version != v1.version
    [stale] = store.put_many(
        IND, [Put(key="k1", doc=_indicator(1, score=0.5), expected=v1.version)]
    )
    assert stale.conflict and not stale.ok
    got = store.get(IND, "k1")
    assert got is not None and got.doc["score"] == 9.5 and got.version == v2.version


def test_update_of_a_missing_key_is_a_conflict(store: Store) -> None:
    [v1] = store.put_many(IND, [Put(key="k1", doc=_indicator(1))])
    assert v1.version is not None
    [res] = store.put_many(IND, [Put(key="other", doc=_indicator(2), expected=v1.version)])
    assert res.conflict
    assert store.get(IND, "other") is None


def test_blind_put_overwrites_whatever_is_there(store: Store) -> None:
    [a] = store.put_many(IND, [Put(key="k1", doc=_indicator(1), blind=True)])
    [b] = store.put_many(IND, [Put(key="k1", doc=_indicator(3), blind=True)])
    assert a.ok and b.ok
    got = store.get(IND, "k1")
    assert got is not None and got.doc["value"] == "10.0.0.3" and got.version == b.version


def test_one_batch_reports_each_put_in_order(store: Store) -> None:
    store.put_many(IND, [Put(key="exists", doc=_indicator(1))])
    results = store.put_many(
        IND,
        [
            Put(key="new-1", doc=_indicator(2)),
            Put(key="exists", doc=_indicator(3)),
            Put(key="new-2", doc=_indicator(4)),
        ],
    )
    assert [(r.key, r.ok, r.conflict) for r in results] == [
        ("new-1", True, False),
        ("exists", False, True),
        ("new-2", True, False),
    ]


def test_concurrent_read_modify_write_loses_no_update(store: Store) -> None:
    store.put_many(IND, [Put(key="counter", doc={"agency_count": 0})])
    errors: list[BaseException] = []

    def increment(times: int) -> None:
        try:
            for _ in range(times):
                while True:
                    cur = store.get(IND, "counter")
                    assert cur is not None
                    doc = {"agency_count": cur.doc["agency_count"] + 1}
                    [res] = store.put_many(IND, [Put(key="counter", doc=doc, expected=cur.version)])
                    if res.ok:
                        break
                    assert res.conflict
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=increment, args=(100,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    final = store.get(IND, "counter")
    assert final is not None and final.doc["agency_count"] == 200


def test_get_many_returns_only_existing_keys(store: Store) -> None:
    _load(store, {f"k{i}": _indicator(i) for i in range(5)})
    got = store.get_many(IND, ["k1", "k3", "nope", "k1"])
    assert sorted(got) == ["k1", "k3"]
    assert got["k3"].doc["value"] == "10.0.0.3"


def test_delete_removes_the_document(store: Store) -> None:
    _load(store, {"k1": _indicator(1), "k2": _indicator(2)})
    assert store.delete(IND, "k1") is True
    assert store.delete(IND, "k1") is False
    store.refresh(IND)
    assert store.get(IND, "k1") is None
    assert _keys(store, Query()) == ["k2"]


# -------------------------------------------------------------- search

DOCS = {f"k{i:02d}": _indicator(i) for i in range(24)}


@pytest.fixture
def loaded(store: Store) -> Store:
    _load(store, DOCS)
    return store


def _expect(pred: Any) -> list[str]:
    return sorted(k for k, d in DOCS.items() if pred(d))


def test_term_on_a_scalar_field(loaded: Store) -> None:
    assert _keys(loaded, Query(filters=(Term("state", ("active",)),))) == _expect(
        lambda d: d["state"] == "active"
    )


def test_term_with_several_values_matches_any(loaded: Store) -> None:
    q = Query(filters=(Term("value", ("10.0.0.3", "10.0.0.5", "10.9.9.9")),))
    assert _keys(loaded, q) == ["k03", "k05"]


def test_term_on_an_array_field_matches_any_element(loaded: Store) -> None:
    q = Query(filters=(Term("agencies", ("hk-govcert",)),))
    assert _keys(loaded, q) == _expect(lambda d: "hk-govcert" in d["agencies"])


def test_term_on_a_boolean_field(loaded: Store) -> None:
    assert _keys(loaded, Query(filters=(Term("sighted", (True,)),))) == _expect(
        lambda d: d["sighted"]
    )
    assert _keys(loaded, Query(filters=(Term("sighted", (False,)),))) == _expect(
        lambda d: not d["sighted"]
    )


def test_range_on_numbers_and_timestamps(loaded: Store) -> None:
    q = Query(filters=(Range("score", gte=2.0, lt=5.0),))
    assert _keys(loaded, q) == _expect(lambda d: 2.0 <= d["score"] < 5.0)
    q = Query(filters=(Range("agency_count", gt=1),))
    assert _keys(loaded, q) == _expect(lambda d: d["agency_count"] > 1)
    q = Query(filters=(Range("last_seen", lte="2026-11-05T00:00:00.000000Z"),))
    assert _keys(loaded, q) == _expect(lambda d: d["last_seen"] <= "2026-11-05T00:00:00.000000Z")


def test_filters_are_anded(loaded: Store) -> None:
    q = Query(filters=(Term("state", ("active",)), Range("score", gte=3.0)))
    assert _keys(loaded, q) == _expect(lambda d: d["state"] == "active" and d["score"] >= 3.0)


def test_missing_matches_absent_and_null_fields(store: Store) -> None:
    _load(
        store,
        {
            "has": _indicator(1, tlp="amber"),
            "absent": _indicator(2),
            "null": _indicator(3, tlp=None),
        },
    )
    assert _keys(store, Query(filters=(Missing("tlp"),))) == ["absent", "null"]


def test_text_is_a_case_insensitive_substring_match(store: Store) -> None:
    _load(
        store,
        {
            "a1": {"title": "Phishing campaign against HK banks", "rule": "multi-agency"},
            "a2": {"title": "C2 beacon seen", "rule": "PHISH-kit"},
            "a3": {"title": "Scanning from 10.0.0.1", "rule": "scan"},
        },
        index=ALERTS,
    )
    q = Query(filters=(Text(("title", "rule"), "phish"),))
    assert _keys(store, q, ALERTS) == ["a1", "a2"]
    q = Query(filters=(Text(("title",), "hk BANK"),))
    assert _keys(store, q, ALERTS) == ["a1"]
    q = Query(filters=(Text(("title",), "10.0.0.1"),))
    assert _keys(store, q, ALERTS) == ["a3"]


def test_sort_ascending_and_descending_with_key_tie_break(loaded: Store) -> None:
    asc = _keys(loaded, Query(sort=(Sort("score"),), limit=100))
    assert asc == sorted(DOCS, key=lambda k: (DOCS[k]["score"], k))
    desc = _keys(loaded, Query(sort=(Sort("score", "desc"),), limit=100))
    assert desc == sorted(DOCS, key=lambda k: (-DOCS[k]["score"], k))


def test_limit_and_more(loaded: Store) -> None:
    page = loaded.search(IND, Query(limit=5))
    assert [h.key for h in page.hits] == sorted(DOCS)[:5] and page.more
    page = loaded.search(IND, Query(limit=len(DOCS)))
    assert len(page.hits) == len(DOCS) and not page.more


@pytest.mark.parametrize(
    "sort",
    [
        (Sort("score", "desc"),),
        (Sort("last_seen", "asc"), Sort("score", "desc")),
        (Sort("state", "desc"), Sort("agency_count", "asc")),
        (),
    ],
    ids=["score-desc", "last_seen-asc,score-desc", "state-desc,agency_count-asc", "key"],
)
def test_cursor_pagination_returns_every_document_once_in_order(
    store: Store, sort: tuple[Sort, ...]
) -> None:
    docs = {f"ind-{i:04d}": _indicator(i) for i in range(230)}
    _load(store, docs)

    # Stable sorts, least significant first: the key, then each sort field.
    expected = sorted(docs)
    for s in reversed(sort):
        values = {k: d[s.field] for k, d in docs.items()}
        expected.sort(key=values.__getitem__, reverse=s.order == "desc")

    seen: list[str] = []
    after: tuple[Any, ...] | None = None
    pages = 0
    while True:
        page = store.search(IND, Query(sort=sort, limit=17, after=after))
        pages += 1
        seen.extend(h.key for h in page.hits)
        if not page.more:
            break
        # Cursors travel inside opaque JSON tokens (TAXII next, API cursors).
        after = tuple(orjson.loads(orjson.dumps(list(page.hits[-1].cursor))))
    assert pages == 14
    assert seen == expected


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("field", ["score", "last_seen"])
def test_documents_missing_the_sort_field_come_first_ascending_last_descending(
    store: Store, field: str, order: Literal["asc", "desc"]
) -> None:
    docs: dict[str, dict[str, Any]] = {
        f"k{i:02d}": ({"score": float(i % 4), "last_seen": f"2026-11-0{i % 3}"} if i % 3 else {})
        for i in range(14)
    }
    _load(store, docs)
    present = sorted((k for k in docs if docs[k]), key=lambda k: (docs[k][field], k))
    if order == "desc":
        present = sorted(present, key=lambda k: docs[k][field], reverse=True)
    absent = sorted(k for k in docs if not docs[k])
    expected = absent + present if order == "asc" else present + absent

    seen: list[str] = []
    after: tuple[Any, ...] | None = None
    while True:
        page = store.search(IND, Query(sort=(Sort(field, order),), limit=3, after=after))
        seen.extend(h.key for h in page.hits)
        if not page.more:
            break
        after = tuple(orjson.loads(orjson.dumps(list(page.hits[-1].cursor))))
    assert seen == expected


def test_cursor_pagination_with_filters(loaded: Store) -> None:
    q = Query(filters=(Term("state", ("active",)),), sort=(Sort("score", "desc"),), limit=4)
    seen: list[str] = []
    while True:
        page = loaded.search(IND, q)
        seen.extend(h.key for h in page.hits)
        if not page.more:
            break
        q = Query(filters=q.filters, sort=q.sort, limit=4, after=page.hits[-1].cursor)
    expected = _expect(lambda d: d["state"] == "active")
    assert seen == sorted(expected, key=lambda k: (-DOCS[k]["score"], k))


def test_hits_carry_the_stored_document(loaded: Store) -> None:
    [hit] = loaded.search(IND, Query(filters=(Term("value", ("10.0.0.7",)),))).hits
    assert hit.key == "k07" and hit.doc == DOCS["k07"]


# ---------------------------------------------------------- aggregates


def test_count_by_counts_each_array_element(loaded: Store) -> None:
    counts = loaded.count_by(IND, "agencies")
    n_pair = len(_expect(lambda d: "hk-govcert" in d["agencies"]))
    assert counts == {"gd-cac": n_pair, "hk-govcert": n_pair, "mo-caric": len(DOCS) - n_pair}


def test_count_by_with_filters(loaded: Store) -> None:
    counts = loaded.count_by(IND, "state", [Range("score", gte=4.0)])
    expected: dict[str, int] = {}
    for d in DOCS.values():
        if d["score"] >= 4.0:
            expected[d["state"]] = expected.get(d["state"], 0) + 1
    assert counts == expected


def test_count_by_on_boolean_and_number_fields(loaded: Store) -> None:
    n_sighted = len(_expect(lambda d: d["sighted"]))
    assert loaded.count_by(IND, "sighted") == {"true": n_sighted, "false": len(DOCS) - n_sighted}
    by_count = loaded.count_by(IND, "agency_count", [Term("state", ("active",))])
    expected: dict[str, int] = {}
    for d in DOCS.values():
        if d["state"] == "active":
            expected[str(d["agency_count"])] = expected.get(str(d["agency_count"]), 0) + 1
    assert by_count == expected


def test_count(loaded: Store) -> None:
    assert loaded.count(IND) == len(DOCS)
    assert loaded.count(IND, [Term("agencies", ("mo-caric",))]) == len(
        _expect(lambda d: d["agencies"] == ["mo-caric"])
    )


def test_indices_are_separate(store: Store) -> None:
    _load(store, {"same-key": {"title": "alert"}}, index=ALERTS)
    assert store.get(IND, "same-key") is None
    assert store.count(IND) == 0 and store.count(ALERTS) == 1


# ------------------------------------------------- embedded: several processes

_INCREMENTER = """
import sys
from backends.embedded_store import EmbeddedStore
from core.ports import Put
store = EmbeddedStore(sys.argv[1])
for _ in range(50):
    while True:
        cur = store.get("threatbay-indicators", "counter")
        doc = {"agency_count": cur.doc["agency_count"] + 1}
        [res] = store.put_many("threatbay-indicators", [Put("counter", doc, cur.version)])
        if res.ok:
            break
store.close()
"""


def test_embedded_store_loses_no_update_across_processes(tmp_path: Path) -> None:
    from backends.embedded_store import EmbeddedStore

    path = str(tmp_path / "store.sqlite3")
    store = EmbeddedStore(path)
    store.put_many(IND, [Put(key="counter", doc={"agency_count": 0})])
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", _INCREMENTER, path], cwd=root) for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    final = store.get(IND, "counter")
    store.close()
    assert final is not None and final.doc["agency_count"] == 150


@pytest.mark.parametrize("backend", ["embedded", "elasticsearch"])
def test_an_unreachable_store_raises_store_unavailable(backend: str, tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        if backend == "embedded":
            from backends.embedded_store import EmbeddedStore

            blocker = tmp_path / "not-a-directory"
            blocker.write_text("")
            store: Store = EmbeddedStore(str(blocker / "store.sqlite3"))
        else:
            from backends.elasticsearch_store import ElasticsearchStore

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            store = ElasticsearchStore(
                f"http://127.0.0.1:{port}", ElasticsearchSettings(request_timeout_s=3)
            )
        store.put_many(IND, [Put(key="k1", doc=_indicator(1))])


def test_drop_indices_drops_what_another_process_created_under_the_prefix(es_url: str) -> None:
    """A bench's correlator children write indices its parent never touched (ES only)."""
    from backends.elasticsearch_store import ElasticsearchStore

    prefix = f"tb-drop-{uuid.uuid4().hex[:10]}-"
    parent = ElasticsearchStore(es_url, ElasticsearchSettings(), prefix=prefix)
    child = ElasticsearchStore(es_url, ElasticsearchSettings(), prefix=prefix)
    [written] = child.put_many(names.INDEX_OBJECT_VERSIONS, [Put("k", {"kind": "versions"})])
    assert written.ok
    child.close()
    parent.drop_indices()
    left = httpx.get(f"{es_url}/_cat/indices/{prefix}*?format=json", timeout=10).json()
    parent.close()
    assert left == []
