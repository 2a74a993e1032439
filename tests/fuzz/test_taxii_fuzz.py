"""Fuzzed TAXII 2.1 requests against the app (issue 8 "Bad input").

Bodies (random JSON, random bytes, deep nesting, wrong types, STIX-ish
objects), headers (Accept, Content-Type, Authorization) and query strings
(limit, next, added_after, match[...]) on every TAXII route, through the ASGI
app. Whatever comes in: never a 5xx, always the TAXII media type, and every
error is the TAXII error resource (TAXII 2.1 section 3.6.1): a JSON object with
a ``title`` and, when ``http_status`` is present, the real status.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from httpx import Response
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.auth import FailureLimiter
from tests.e2e.conftest import TAXII
from tests.fuzz.conftest import FuzzTarget

FUZZ = settings(
    max_examples=int(os.environ.get("THREATBAY_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

ROOT = "/taxii2/api/"


def check_taxii(response: Response, what: Any) -> None:
    """The TAXII answer contract for any request under /taxii2/."""
    status = response.status_code
    assert status < 500, (what, status, response.text[:500])
    ctype = response.headers.get("content-type", "")
    assert ctype.replace(" ", "").startswith("application/taxii+json;version=2.1"), (what, ctype)
    if status == 200 and not response.content:  # DELETE answers an empty 200
        return
    if 300 <= status < 400:  # trailing-slash redirects: no body, but somewhere to go
        assert response.headers.get("location"), (what, status)
        return
    body = orjson.loads(response.content)
    if status >= 400:
        assert isinstance(body, dict), (what, body)
        assert isinstance(body.get("title"), str) and body["title"], (what, body)
        if "http_status" in body:
            assert body["http_status"] == str(status), (what, status, body)


def latin1(value: str) -> bytes:
    """Header bytes as a client may send them (httpx only encodes str headers as ASCII)."""
    return value.encode("latin-1")


# ------------------------------------------------------------------ strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)

STIX_TYPES = [
    "indicator",
    "malware",
    "identity",
    "sighting",
    "relationship",
    "report",
    "marking-definition",
    "bundle",
    "x-custom",
    "attack-pattern",
    "",
    "INDICATOR",
]
id_like = st.one_of(
    st.builds(lambda t, u: f"{t}--{u}", st.sampled_from(STIX_TYPES), st.uuids()),
    st.text(max_size=40),
    json_values,
)
timestamp_like = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z", "2026-13-45T99:99:99Z",
                     "0000-00-00T00:00:00Z", "9999-12-31T23:59:59.999999Z", "yesterday", ""]),
    st.datetimes().map(lambda d: d.isoformat()),
    json_values,
)  # fmt: skip
pattern_like = st.one_of(
    st.sampled_from(["[ipv4-addr:value = '198.51.100.9']", "[", "[x:y = 'z'", "",
                     "[file:hashes.MD5 = 'zz']", "[domain-name:value = 'é.example']"]),
    st.text(max_size=60),
    json_values,
)  # fmt: skip


@st.composite
def stix_ish(draw: st.DrawFn) -> dict[str, Any]:
    """A dict that looks like a STIX object, with any field missing, mistyped or odd."""
    obj: dict[str, Any] = {
        "type": draw(st.one_of(st.sampled_from(STIX_TYPES), json_values)),
        "spec_version": draw(st.one_of(st.sampled_from(["2.1", "2.0", "3", ""]), json_values)),
        "id": draw(id_like),
        "created": draw(timestamp_like),
        "modified": draw(timestamp_like),
        "pattern": draw(pattern_like),
        "pattern_type": draw(st.one_of(st.sampled_from(["stix", "snort", "yara"]), json_values)),
        "valid_from": draw(timestamp_like),
        "object_marking_refs": draw(
            st.one_of(
                st.just(["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]),
                st.lists(id_like, max_size=3),
                json_values,
            )
        ),
        "created_by_ref": draw(id_like),
        "confidence": draw(st.one_of(st.integers(-10, 200), json_values)),
        "labels": draw(json_values),
        "granular_markings": draw(json_values),
        "external_references": draw(json_values),
        "x_threatbay_recipients": draw(json_values),
        "revoked": draw(json_values),
        "valid_until": draw(timestamp_like),
        "count": draw(json_values),
        "sighting_of_ref": draw(id_like),
    }
    drop = draw(st.sets(st.sampled_from(sorted(obj)), max_size=len(obj)))
    return {k: v for k, v in obj.items() if k not in drop}


envelopes = st.one_of(
    json_values,
    st.builds(lambda objs: {"objects": objs}, st.lists(stix_ish(), max_size=4)),
    st.builds(lambda objs, more: {"objects": objs, "more": more, "next": "x"},
              st.lists(st.one_of(stix_ish(), json_values), max_size=4), json_values),
    st.builds(lambda v: {"objects": v}, json_values),
)  # fmt: skip


def deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "dict":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"objects":[' + b'{"x":' * depth + b"1" + b"}" * depth + b"]}"


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.builds(deep, st.integers(1, 20_000), st.sampled_from(["list", "dict", "objects"])),
    st.sampled_from([b"", b"null", b"{", b'{"objects": [', b"\xff\xfe{}", b"NaN",
                     b'{"objects": [1e999]}', b'{"objects": "' + b"A" * 5000 + b'"}']),
)  # fmt: skip

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=60,
)
MEDIA_BITS = [
    "application/taxii+json",
    "application/stix+json",
    "application/json",
    "*/*",
    "application/*",
    "text/html",
    ";version=2.1",
    ";version=2.0",
    ";version=",
    ";q=0",
    ";q=abc",
    ";q=0.5",
    ",",
    ";",
    " ",
    "version=2.1",
    '"2.1"',
    ";charset=utf-8",
]
media_like = st.one_of(
    header_text,
    st.lists(st.sampled_from(MEDIA_BITS), max_size=6).map("".join),
)

QUERY_KEYS = [
    "limit",
    "next",
    "added_after",
    "match[id]",
    "match[type]",
    "match[version]",
    "match[spec_version]",
    "match[]",
    "match[foo]",
    "match",
    "limit[]",
    "LIMIT",
]
query_values = st.one_of(
    st.text(max_size=30),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "-1", "1", "1e9", "NaN", "first", "last", "all", "2026-01-01T00:00:00Z",
                     "2026-02-30T00:00:00Z", "not-a-date", "indicator", "indicator,malware",
                     "2.1", "2.0", "%00", "../../etc/passwd", "\u202e"]),
)  # fmt: skip
queries = st.lists(st.tuples(st.sampled_from(QUERY_KEYS), query_values), max_size=6)


def read_urls(target: FuzzTarget) -> list[str]:
    inbox = f"{ROOT}collections/inbox-{target.keys['gd'].agency.id}/"
    shared = f"{ROOT}collections/shared-all/"
    out = [f"{c}{suffix}" for c in (inbox, shared) for suffix in ("objects/", "manifest/")]
    for oid in target.object_ids[:2]:
        out += [f"{shared}objects/{oid}/", f"{shared}objects/{oid}/versions/"]
    return out


# ------------------------------------------------------------------ tests


@FUZZ
@given(body=envelopes)
@example(body={"objects": [{"type": "indicator", "id": None}]})
@example(body={"objects": [[], 1, "x", None]})
@example(body=[{"objects": []}])
@example(body={"objects": [{"type": "indicator", "granular_markings": 1}]})
def test_fuzzed_json_envelopes_never_crash_the_push(target: FuzzTarget, body: Any) -> None:
    gd = target.keys["gd"]
    r = target.client.post(gd.inbox + "objects/", headers=gd.post, content=orjson.dumps(body))
    check_taxii(r, body)
    if r.status_code == 202:
        status = r.json()
        assert status["status"] in ("complete", "pending") and isinstance(status["id"], str)
        total = status["success_count"] + status["failure_count"] + status["pending_count"]
        assert total == status["total_count"] == len(body.get("objects", [])), (body, status)


@FUZZ
@given(raw=raw_bodies)
def test_fuzzed_raw_bodies_never_crash_the_push(target: FuzzTarget, raw: bytes) -> None:
    gd = target.keys["gd"]
    r = target.client.post(gd.inbox + "objects/", headers=gd.post, content=raw)
    check_taxii(r, raw[:200])


@FUZZ
@given(accept=st.one_of(st.none(), media_like), content_type=st.one_of(st.none(), media_like))
@example(accept="application/taxii+json;version=2.1;q=abc", content_type=None)
@example(accept="", content_type="application/taxii+json;version=")
def test_fuzzed_media_headers_on_every_route_kind(
    target: FuzzTarget, accept: str | None, content_type: str | None
) -> None:
    gd = target.keys["gd"]
    base: dict[str, str | bytes] = {"Authorization": gd.basic["Authorization"]}
    headers = base | ({"Accept": latin1(accept)} if accept is not None else {})
    for url in (
        "/taxii2/",
        ROOT,
        f"{ROOT}collections/",
        f"{ROOT}collections/shared-all/objects/",
    ):
        check_taxii(target.client.get(url, headers=headers), (url, accept))
    post_headers = headers | (
        {"Content-Type": latin1(content_type)} if content_type is not None else {}
    )
    r = target.client.post(gd.inbox + "objects/", headers=post_headers, content=b'{"objects": []}')
    check_taxii(r, (accept, content_type))


ascii_header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
)


# Non-ASCII Basic credentials have their own test below.
@FUZZ
@given(
    authorization=st.one_of(
        ascii_header_text,
        st.builds(
            lambda s, v: f"{s} {v}",
            st.sampled_from(["Basic", "Bearer", "basic", "BEARER", "Digest", ""]),
            ascii_header_text,
        ),
    )
)
@example(authorization="Basic Og==")  # ":" -> empty key id and secret
@example(authorization="Bearer tb_0123456789abcdef.")
@example(authorization="Bearer tb_.x")
def test_fuzzed_authorization_headers_give_401_never_500(
    target: FuzzTarget, authorization: str
) -> None:
    r = target.client.get(
        f"{ROOT}collections/", headers={"Authorization": latin1(authorization), "Accept": TAXII}
    )
    check_taxii(r, authorization)
    assert r.status_code in (401, 429), (authorization, r.status_code)
    target.app.state.auth_limiter = FailureLimiter()  # keep later examples off the rate limit


@pytest.mark.parametrize("value", [b"Basic \x80", b"Basic \xe9t\xe9", b"basic \xff\xfe"])
def test_non_ascii_basic_credentials_give_401(target: FuzzTarget, value: bytes) -> None:
    r = target.client.get(f"{ROOT}collections/", headers={"Authorization": value, "Accept": TAXII})
    check_taxii(r, value)
    assert r.status_code == 401


@FUZZ
@given(query=queries, which=st.integers(0, 5))
@example(query=[("limit", "0")], which=1)
@example(query=[("next", "AAAA")], which=1)
@example(query=[("added_after", "2026-02-30T00:00:00Z")], which=0)
@example(query=[("match[version]", "2026-01-01T00:00:00.000Z,first")], which=0)
def test_fuzzed_query_strings_on_reads(
    target: FuzzTarget, query: list[tuple[str, str]], which: int
) -> None:
    urls = read_urls(target)
    url = urls[which % len(urls)]
    r = target.client.get(url, params=query, headers=target.keys["gd"].basic)
    check_taxii(r, (url, query))
    if r.status_code == 200:
        body = r.json()
        assert isinstance(body, dict)
        if "more" in body:
            assert isinstance(body["more"], bool)


segment = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", max_size=20),
    st.sampled_from(["api", "collections", "objects", "manifest", "versions", "status", "..",
                     "shared-all", "inbox-gd-cac", "inbox-hk-govcert", "%2e%2e", "%00"]),
)  # fmt: skip


@FUZZ
@given(
    segments=st.lists(segment, max_size=6),
    slash=st.booleans(),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
)
def test_fuzzed_paths_and_methods_under_taxii2(
    target: FuzzTarget, segments: list[str], slash: bool, method: str
) -> None:
    url = "/taxii2/" + "/".join(segments) + ("/" if slash and segments else "")
    gd = target.keys["gd"]
    r = target.client.request(
        method, url, headers=gd.post, content=b'{"objects": []}', follow_redirects=False
    )
    assert r.status_code < 500, (method, url, r.status_code)
    if not r.request.url.path.startswith("/taxii2/"):  # httpx resolved dot segments away
        return
    if method == "HEAD":  # no body on HEAD; the media type still holds
        assert r.headers.get("content-type", "").startswith("application/taxii+json")
        return
    check_taxii(r, (method, url))


def test_oversized_bodies_get_413_declared_or_chunked(target: FuzzTarget) -> None:
    gd = target.keys["gd"]
    limit = target.services.settings.taxii.max_content_length
    filler = b'{"objects": [], "pad": "' + b"A" * limit + b'"}'
    declared = target.client.post(gd.inbox + "objects/", headers=gd.post, content=filler)
    check_taxii(declared, "declared")
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(filler), 1 << 20):
            yield filler[start : start + (1 << 20)]

    chunked = target.client.post(gd.inbox + "objects/", headers=gd.post, content=chunks())
    check_taxii(chunked, "chunked")
    assert chunked.status_code == 413
