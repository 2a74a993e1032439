"""False-positive lists and special ranges (DOMAIN.md "Score": capped at 20, hit named)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from correlate.warninglists import Warninglists

EMPTY_FILE_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


@dataclass
class FakeList:
    """The shape of a pymispwarninglists WarningList that we read."""

    name: str
    type: str
    list: Sequence[str]
    matching_attributes: Sequence[str] = field(default_factory=tuple)


def small(*lists: FakeList, treat_documentation_ranges_as_benign: bool = False) -> Warninglists:
    return Warninglists(
        misp_lists={wl.name: wl for wl in lists},
        treat_documentation_ranges_as_benign=treat_documentation_ranges_as_benign,
    )


@pytest.fixture(scope="module")
def raw() -> Any:
    from pymispwarninglists.api import WarningLists

    return WarningLists(slow_search=False)


@pytest.fixture(scope="module")
def misp(raw: Any) -> Warninglists:
    return Warninglists(misp_lists=raw)


# --- special ranges (no MISP data needed) -------------------------------------------


@pytest.mark.parametrize(
    ("value", "hit"),
    [
        ("10.1.2.3", "private-range:10.0.0.0/8"),
        ("172.20.0.1", "private-range:172.16.0.0/12"),
        ("192.168.1.1", "private-range:192.168.0.0/16"),
        ("127.0.0.1", "loopback-range:127.0.0.0/8"),
        ("169.254.9.9", "link-local-range:169.254.0.0/16"),
        ("100.64.1.1", "shared-address-range:100.64.0.0/10"),
        ("240.1.1.1", "reserved-range:240.0.0.0/4"),
        ("224.0.0.251", "multicast-range:224.0.0.0/4"),
        ("fe80::1", "link-local-range:fe80::/10"),
        ("fd00::1", "private-range:fc00::/7"),
        ("::1", "loopback-range:::1/128"),
        ("10.0.0.0/16", "private-range:10.0.0.0/8"),
    ],
)
def test_private_and_reserved_addresses_are_named(value: str, hit: str) -> None:
    kind = "ipv6-addr" if ":" in value else "ipv4-addr"
    assert hit in small().hits(kind, value)


def test_broad_cidr_containing_private_space_is_a_hit() -> None:
    assert "private-range:10.0.0.0/8" in small().hits("ipv4-addr", "8.0.0.0/6")


@pytest.mark.parametrize(
    "value", ["192.0.2.5", "198.51.100.7", "203.0.113.9", "203.0.113.0/24", "2001:db8::1"]
)
def test_documentation_ranges_are_not_hits_by_default(value: str) -> None:
    kind = "ipv6-addr" if ":" in value else "ipv4-addr"
    assert small().hits(kind, value) == []
    assert small().hits("url", f"http://{value if kind == 'ipv4-addr' else f'[{value}]'}/x") == []


def test_documentation_ranges_can_be_treated_as_benign() -> None:
    lists = small(treat_documentation_ranges_as_benign=True)
    assert lists.hits("ipv4-addr", "192.0.2.5") == ["documentation-range:192.0.2.0/24"]


def test_public_address_has_no_special_hit() -> None:
    assert small().hits("ipv4-addr", "45.33.32.156") == []


# --- MISP-shaped lists, small -------------------------------------------------------


def test_list_kinds_and_matching_attributes() -> None:
    lists = small(
        FakeList("cdn", "cidr", ["45.33.0.0/16", "2a00:1450::/32"], ["ip-dst"]),
        FakeList("top", "hostname", ["bigsite.example.net", ".cdn.example.org"], ["domain"]),
        FakeList("exact", "string", ["Exact.Example.net"], ["hostname"]),
        FakeList("hashes", "string", [EMPTY_FILE_MD5], ["md5"]),
    )
    assert lists.hits("ipv4-addr", "45.33.32.156") == ["misp:cdn"]
    assert lists.hits("ipv6-addr", "2a00:1450::1") == ["misp:cdn"]
    assert lists.hits("ipv4-addr", "45.34.0.1") == []
    assert lists.hits("file", EMPTY_FILE_MD5, "hashes.md5") == ["misp:hashes"]
    assert lists.hits("file", EMPTY_FILE_MD5) == ["misp:hashes"]  # the key type says hash
    # the hash list applies to hashes only, the cidr list to addresses only
    assert lists.hits("domain-name", EMPTY_FILE_MD5) == []


def test_documentation_domains_are_never_hits_by_default() -> None:
    lists = small(FakeList("rfc6761", "string", ["example.com", "test"], ["domain"]))
    assert lists.hits("domain-name", "example.com") == []
    assert lists.hits("domain-name", "c2.evil.example.com") == []
    assert lists.hits("url", "http://phish.example.org/login") == []
    benign = small(
        FakeList("rfc6761", "string", ["example.com"], ["domain"]),
        treat_documentation_ranges_as_benign=True,
    )
    assert benign.hits("domain-name", "example.com") == ["misp:rfc6761"]


def test_hostname_lists_match_sub_domains() -> None:
    lists = small(FakeList("top", "hostname", ["bigsite.net"], ["domain", "url"]))
    assert lists.hits("domain-name", "www.bigsite.net") == ["misp:top"]
    assert lists.hits("url", "https://cdn.bigsite.net/a.js") == ["misp:top"]
    assert lists.hits("domain-name", "notbigsite.net") == []


def test_excluded_lists_are_not_used() -> None:
    wl = FakeList("top", "string", ["bigsite.net"], ["domain"])
    assert Warninglists(["top"], misp_lists={"top": wl}).hits("domain-name", "bigsite.net") == []


# --- the real MISP data ---------------------------------------------------------------


def test_real_lists_name_well_known_benign_values(misp: Warninglists) -> None:
    assert "misp:List of known google domains" in misp.hits("domain-name", "google.com")
    assert "misp:List of known hashes for empty files" in misp.hits(
        "file", EMPTY_FILE_MD5, "hashes.md5"
    )
    assert "misp:List of RFC 1918 CIDR blocks" in misp.hits("ipv4-addr", "10.1.2.3")
    assert "misp:List of disposable email domains" in misp.hits("email-addr", "x@mailinator.com")


def test_real_lists_leave_demo_attackers_alone(misp: Warninglists) -> None:
    for kind, value in [
        ("ipv4-addr", "198.51.100.7"),
        ("ipv4-addr", "203.0.113.9"),
        ("domain-name", "example.com"),
        ("domain-name", "evil.example.com"),
        ("url", "http://evil.example.com/login"),
        ("domain-name", "zzqq-unlisted-attacker.top"),
    ]:
        assert misp.hits(kind, value) == [], value


def test_real_lists_exclusion_by_name(misp: Warninglists, raw: Any) -> None:
    assert "List of known google domains" in misp.list_names
    trimmed = Warninglists(["List of known google domains"], misp_lists=raw)
    assert "misp:List of known google domains" not in trimmed.hits("domain-name", "google.com")
