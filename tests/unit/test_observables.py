"""Observables and canonical keys from STIX patterns (DOMAIN.md "Sameness")."""

from __future__ import annotations

import pytest

from core.errors import InvalidPattern
from core.observables import Observable, observables

SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"


def keys(pattern: str) -> list[str]:
    return [o.key for o in observables(pattern)]


def test_simple_comparison_gives_one_observable() -> None:
    assert observables("[ipv4-addr:value = '198.51.100.7']") == [
        Observable(
            "ipv4-addr|value|198.51.100.7", "ipv4-addr", "value", "198.51.100.7", "ipv4-addr:value"
        )  # fmt: skip
    ]


def test_or_within_and_across_observations_gives_several() -> None:
    pattern = (
        "[domain-name:value = 'a.example' OR domain-name:value = 'b.example']"
        " OR [url:value = 'http://c.example/x']"
    )
    assert keys(pattern) == [
        "domain-name|value|a.example",
        "domain-name|value|b.example",
        "url|value|http://c.example/x",
    ]


def test_duplicates_inside_one_pattern_collapse() -> None:
    pattern = "[ipv4-addr:value = '198.51.100.7' OR network-traffic:dst_ref.value = '198.51.100.7']"
    assert keys(pattern) == ["ipv4-addr|value|198.51.100.7"]


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value = '198.51.100.7']",
        "[network-traffic:dst_ref.value = '198.51.100.7']",
        "[network-traffic:src_ref.value = '198.51.100.7/32']",
        "[url:value = 'http://198.51.100.7/']",
        "[url:value = 'https://198.51.100.7:443']",
        "[url:value = '198.51.100.7']",
        "[ipv6-addr:value = '::ffff:198.51.100.7']",
    ],
)
def test_one_address_written_every_way_has_one_key(pattern: str) -> None:
    assert keys(pattern) == ["ipv4-addr|value|198.51.100.7"]


def test_source_path_keeps_what_the_producer_wrote() -> None:
    [found] = observables("[network-traffic:dst_ref.value = '198.51.100.7']")
    assert found.source_path == "network-traffic:dst_ref.value"
    assert found.observable_type == "ipv4-addr"


def test_url_with_only_a_host_is_the_domain() -> None:
    assert keys("[url:value = 'HTTP://Evil.Example.com/']") == [
        "domain-name|value|evil.example.com"
    ]
    assert keys("[url:value = 'http://evil.example.com/login']") == [
        "url|value|http://evil.example.com/login"
    ]
    assert keys("[url:value = 'http://evil.example.com:8080/']") == [
        "url|value|http://evil.example.com:8080/"
    ]


def test_network_traffic_naming_a_host_is_the_domain() -> None:
    assert keys("[network-traffic:dst_ref.value = 'C2.Example.com.']") == [
        "domain-name|value|c2.example.com"
    ]


def test_sender_is_an_email_address() -> None:
    assert keys("[email-message:from_ref.value = 'Boss@Example.com']") == [
        "email-addr|value|boss@example.com"
    ]


@pytest.mark.parametrize("path", ["hashes.'SHA-256'", "hashes.SHA256", "hashes.sha256"])
def test_hash_spellings_unify(path: str) -> None:
    assert keys(f"[file:{path} = '{SHA256.upper()}']") == [f"file|hashes.sha-256|{SHA256}"]


@pytest.mark.parametrize(
    "pattern",
    [
        "[a:b = 'x' AND c:d = 'y']",
        "[a:b = 'x'] FOLLOWEDBY [c:d = 'y']",
        "[a:b = 'x'] WITHIN 5 SECONDS",
        "[a:b != 'x']",
        "[a:b LIKE 'x%']",
        "[file:size = 5]",
        "[a:b = 'x'] AND [c:d = 'y']",
        "[a:b = 'x' OR c:d = 'y'] REPEATS 2 TIMES",
    ],
)
def test_complex_patterns_are_kept_whole(pattern: str) -> None:
    [found] = observables(pattern)
    assert found.observable_type == "pattern" and found.path == "pattern"
    assert found.key == f"pattern|pattern|{found.value}"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (
            "[network-traffic:dst_ref.type = 'ipv4-addr'"
            " AND network-traffic:dst_ref.value = '198.51.100.7']",
            "[network-traffic:dst_ref.value='198.51.100.7'"
            " AND network-traffic:dst_ref.type == 'ipv4-addr']",
        ),
        ("[a:b = 'x'] FOLLOWEDBY [c:d = 'y']", " ( [a:b='x'] )\nFOLLOWEDBY\t[c:d  =  'y']"),
        (
            "[file:hashes.MD5 = 'AA' AND file:name = 'a']".replace("'AA'", "'" + "A" * 32 + "'"),
            "[file:name = 'a' AND file:hashes.'md5' = '" + "a" * 32 + "']",
        ),
        (
            "[domain-name:value = 'EVIL.example.' AND a:b = 'x']",
            "[a:b = 'x' AND domain-name:value = 'evil.example']",
        ),
        ("[a:b IN ('x', 'y') AND c:d = 'z']", "[c:d = 'z' AND a:b IN ('y','x')]"),
        ("[a:b != 'x' AND c:d = 'z']", "[a:b <> 'x' AND c:d = 'z']"),
    ],
)
def test_whitespace_quoting_and_order_never_make_a_new_key(one: str, other: str) -> None:
    assert keys(one) == keys(other)


def test_complex_patterns_that_differ_keep_different_keys() -> None:
    assert keys("[a:b = 'x'] FOLLOWEDBY [c:d = 'y']") != keys("[c:d = 'y'] FOLLOWEDBY [a:b = 'x']")
    assert keys("[a:b = 'x' AND c:d = 'y']") != keys("[a:b = 'x' AND c:d = 'z']")
    assert keys("[a:b = 'x'] WITHIN 5 SECONDS") != keys("[a:b = 'x'] WITHIN 6 SECONDS")


def test_parenthesised_or_of_simple_comparisons_is_still_split() -> None:
    assert keys("([a:b = 'x'] OR ([c:d = 'y']))") == ["a|b|x", "c|d|y"]


@pytest.mark.parametrize(
    "pattern", ["", "ipv4-addr:value = '1.2.3.4'", "[a:b = 'x'", "[x:hashes[0] = 'a']", "[]"]
)
def test_invalid_patterns_raise_invalid_pattern(pattern: str) -> None:
    with pytest.raises(InvalidPattern) as caught:
        observables(pattern)
    assert caught.value.reason
