"""ingest/signed.py ``received_objects``: each object's exact text is found in the body.

Property: for any envelope of JSON objects written with any whitespace, key
order and escaping, the located texts parse to what orjson parsed, in order,
and are substrings of the body; bodies without the signature extension are
not parsed again.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from core.object_signatures import TRUSTED_DATA_EXTENSION
from ingest.signed import received_objects

EXT = {TRUSTED_DATA_EXTENSION: {"extension_type": "property-extension", "signatures": []}}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(objects, max_size=4),
    st.sampled_from([None, 0, 2]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_each_object_text_is_located_and_parses_as_orjson_did(
    objs: list[dict[str, Any]], indent: int | None, ascii_only: bool, before: bool, signed: bool
) -> None:
    objs = [dict(o, extensions=EXT) if signed else o for o in objs]
    envelope: dict[str, Any] = {"more": False, "objects": objs} if before else {"objects": objs}
    if not before:
        envelope["next"] = "x"
    body = json.dumps(envelope, indent=indent, ensure_ascii=ascii_only).encode()
    parsed = orjson.loads(body)["objects"]
    found = received_objects(body, parsed)
    if not signed or not objs:
        assert found is None
        return
    assert found is not None and len(found) == len(parsed)
    for item, obj in zip(found, parsed, strict=True):
        assert item is not None
        assert item.text.encode() in body
        assert item.parsed == obj


def test_a_duplicate_member_is_seen_on_the_raw_text() -> None:
    body = ('{"objects": [{"a": 1, "extensions": ' + json.dumps(EXT) + ', "a": 2}]}').encode()
    [item] = received_objects(body, orjson.loads(body)["objects"]) or [None]
    assert item is not None and item.parsed.duplicates == ["a"]
    assert item.text.startswith('{"a": 1') and item.text.endswith('"a": 2}')
