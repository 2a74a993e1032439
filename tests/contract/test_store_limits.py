"""The Store contract at Elasticsearch's limits, on both adapters (issue #17: no poison pill).

Keys of any length are accepted and read back by key, in searches and by
``get_many``; keyword values of any length are stored and found by exact
match; a document the store can never accept (a value its declared field
type cannot hold, a document over the size limit) is a ``refused`` result
with the reason while every other document of the same ``put_many`` lands;
and a bulk body over Elasticsearch's ``http.max_content_length`` is split,
not refused. Before the fix Elasticsearch answered the whole bulk with 400
(``_id`` over 512 bytes) or 413 (body over 100 MB) and the adapter raised, or
returned ``ok=False`` with no reason for an immense keyword term.
"""

from __future__ import annotations

import hashlib

import pytest

from core import names
from core.ports import Put, Query, Sort, Store, Term

#: core.ports.MAX_DOCUMENT_BYTES: Elasticsearch's default http.max_content_length.
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024
IND = names.INDEX_INDICATORS
OBJ = names.INDEX_OBJECTS

#: A 3-hash + name compound key as real producers write them (572 bytes in the real corpus).
COMPOUND = (
    "pattern|pattern|[file:hashes.'sha-1' = '" + "a" * 40 + "' AND file:hashes.'sha-256' = '"
    + "b" * 64 + "' AND file:hashes.md5 = '" + "c" * 32 + "' AND file:name = '"
    + "invoice-" * 40 + ".exe']"
)  # fmt: skip
LONG_URL = "http://long.example/" + "p/" * 20_000  # a 40 KB URL: a keyword term over 32,766 bytes
KEYS = [
    "short|key",
    COMPOUND,
    "url|value|" + LONG_URL,
    "url|value|" + LONG_URL + "x",  # shares its first 40 KB with the one before
    "~tb-sha256:" + hashlib.sha256(COMPOUND.encode()).hexdigest(),  # looks like a digest id
    "non-bmp|" + "\U0001f600\u05d0" * 200,  # 1,200 bytes of emoji and Hebrew
]


def test_keys_of_any_length_are_written_read_and_deleted_by_key(store: Store) -> None:
    assert len(COMPOUND.encode()) > 512
    results = store.put_many(IND, [Put(key=k, doc={"n": i}) for i, k in enumerate(KEYS)])
    assert [r.ok for r in results] == [True] * len(KEYS), results
    for i, key in enumerate(KEYS):
        got = store.get(IND, key)
        assert got is not None and got.key == key and got.doc == {"n": i}
    found = store.get_many(IND, [*KEYS, "absent"])
    assert sorted(found) == sorted(KEYS)
    assert all(found[k].doc == {"n": i} for i, k in enumerate(KEYS))
    # A conditional update of a long key uses its version like any other.
    [update] = store.put_many(
        IND, [Put(key=KEYS[2], doc={"n": 99}, expected=found[KEYS[2]].version)]
    )
    assert update.ok
    [stale] = store.put_many(IND, [Put(key=KEYS[2], doc={"n": 0}, expected=found[KEYS[2]].version)])
    assert stale.conflict
    store.refresh(IND)
    hits = store.search(IND, Query(limit=100)).hits
    assert sorted(h.key for h in hits) == sorted(KEYS)
    assert all("_tb" not in str(h.doc) for h in hits)
    assert store.delete(IND, KEYS[1]) and store.get(IND, KEYS[1]) is None
    assert not store.delete(IND, KEYS[1])


def test_long_keys_page_in_key_order_with_cursors(store: Store) -> None:
    keys = [f"k{i:02d}|" + "v" * (600 + i) for i in range(30)] + [f"k{i:02d}" for i in range(30)]
    assert all(r.ok for r in store.put_many(IND, [Put(key=k, doc={"state": "x"}) for k in keys]))
    store.refresh(IND)
    seen: list[str] = []
    after = None
    while True:
        page = store.search(IND, Query(sort=(Sort("state"),), limit=7, after=after))
        seen += [h.key for h in page.hits]
        if not page.more:
            break
        after = page.hits[-1].cursor
    assert seen == sorted(keys)


def test_long_keyword_values_are_stored_and_found_by_exact_match(store: Store) -> None:
    long_value = LONG_URL
    near = LONG_URL + "x"
    docs = {
        "a": {"value": long_value, "agencies": ["gd-cac", near]},
        "b": {"value": near, "agencies": ["hk-govcert"]},
        "c": {"value": "short", "agencies": [long_value]},
    }
    results = store.put_many(IND, [Put(key=k, doc=d) for k, d in docs.items()])
    assert all(r.ok for r in results), results
    store.refresh(IND)

    def keys(*filters: Term) -> list[str]:
        return [h.key for h in store.search(IND, Query(filters=filters)).hits]

    assert keys(Term("value", (long_value,))) == ["a"]
    assert keys(Term("value", (near, "short"))) == ["b", "c"]
    assert keys(Term("agencies", (long_value,))) == ["c"]
    assert keys(Term("agencies", (near, "hk-govcert"))) == ["a", "b"]
    got = store.get(IND, "a")
    assert got is not None and got.doc == docs["a"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("value", {"an": "object"}), ("score", "not a number"), ("sighted", "yes"),
     ("agency_count", [1, {"x": 2}])],
)  # fmt: skip
def test_a_value_its_declared_type_cannot_hold_is_refused_and_the_rest_lands(
    store: Store, field: str, value: object
) -> None:
    results = store.put_many(
        IND,
        [Put("before", {"value": "1"}), Put("bad", {field: value}), Put("after", {"value": "2"})],
    )
    assert [r.ok for r in results] == [True, False, True]
    refused = results[1]
    assert not refused.conflict and refused.refused is not None and field in refused.refused
    assert store.get(IND, "bad") is None
    assert store.get(IND, "after") is not None


def test_custom_properties_of_every_json_type_never_conflict(store: Store) -> None:
    """Undeclared fields are kept as they are, whatever their types across documents."""
    shapes: list[object] = [1, 1.5, "s", True, None, [1, "a"], {"deep": {"er": [1]}}, 2**62]
    puts = [
        Put(f"k{i}", {f"x_custom_{j}": shapes[(i + j) % len(shapes)] for j in range(1200)})
        for i in range(len(shapes))
    ]
    results = store.put_many(OBJ, puts)
    assert all(r.ok for r in results), results[:2]
    got = store.get(OBJ, "k3")
    assert got is not None and got.doc == puts[3].doc


def test_a_document_over_the_size_limit_is_refused_and_the_rest_lands(store: Store) -> None:
    huge = {"value": "big", "blob": "x" * (MAX_DOCUMENT_BYTES + 1024)}
    results = store.put_many(IND, [Put("small", {"value": "s"}), Put("huge", huge)])
    assert results[0].ok
    assert not results[1].ok and results[1].refused and "bytes" in results[1].refused
    assert store.get(IND, "huge") is None and store.get(IND, "small") is not None


def test_a_bulk_body_over_the_request_limit_is_split_not_refused(store: Store) -> None:
    """Twelve 9.5 MB documents: 114 MB together, over Elasticsearch's 100 MB default."""
    blob = "y" * 9_500_000
    puts = [Put(f"big-{i}", {"value": f"v{i}", "blob": blob}) for i in range(12)]
    results = store.put_many(OBJ, puts)
    assert all(r.ok for r in results), [r.refused for r in results]
    found = store.get_many(OBJ, [p.key for p in puts])
    assert len(found) == 12 and found["big-7"].doc["value"] == "v7"
