"""Cross-type keying completed (issue #17; DOMAIN.md "Known real-world traps").

Real producers write an address as ``domain-name:value`` (8 in the surveyed
corpus), as the host of a URL with a path (725), and MISP-STIX writes it as
``network-traffic:dst_ref.type = 'ipv4-addr' AND ...dst_ref.value = '…'``
(4,818). Each must key as the address, so a lookup of the address finds it
and it correlates with ``[ipv4-addr:value = '…']`` from another producer.
"""

from __future__ import annotations

import pytest

from core.lookup import candidate_keys
from core.observables import observables


def keys(pattern: str) -> list[str]:
    return [o.key for o in observables(pattern)]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[domain-name:value = '188.93.127.34']", ["ipv4-addr|value|188.93.127.34"]),
        ("[domain-name:value = '2001:DB8::0:1']", ["ipv6-addr|value|2001:db8::1"]),
        ("[domain-name:value='188.93.127.34.']", ["ipv4-addr|value|188.93.127.34"]),
        (
            "[network-traffic:dst_ref.type = 'ipv4-addr' AND "
            "network-traffic:dst_ref.value = '109.248.150.13']",
            ["ipv4-addr|value|109.248.150.13"],
        ),
        (
            "[network-traffic:src_ref.value = '2001:db8::7' AND "
            "network-traffic:src_ref.type = 'ipv6-addr']",
            ["ipv6-addr|value|2001:db8::7"],
        ),
        (
            "[network-traffic:dst_ref.type = 'domain-name' AND "
            "network-traffic:dst_ref.value = 'C2.Example.']",
            ["domain-name|value|c2.example"],
        ),
        (
            "[url:value = 'http://198.51.100.7:8080/payload.exe']",
            ["url|value|http://198.51.100.7:8080/payload.exe", "ipv4-addr|value|198.51.100.7"],
        ),
        (
            "[url:value = 'https://[2001:db8::5]/a?b=1']",
            ["url|value|https://[2001:db8::5]/a?b=1", "ipv6-addr|value|2001:db8::5"],
        ),
        ("[url:value = 'http://evil.example/x']", ["url|value|http://evil.example/x"]),
    ],
)
def test_an_address_written_as_another_type_keys_as_the_address(
    pattern: str, expected: list[str]
) -> None:
    assert keys(pattern) == expected


@pytest.mark.parametrize(
    "pattern",
    [
        # the type disagrees with the value: not the same claim, kept whole
        "[network-traffic:dst_ref.type = 'ipv6-addr' AND "
        "network-traffic:dst_ref.value = '1.2.3.4']",
        "[network-traffic:dst_ref.type = 'domain-name' AND "
        "network-traffic:dst_ref.value = '1.2.3.4']",
        # a port says more than the address
        "[network-traffic:dst_port = 443 AND network-traffic:dst_ref.type = 'ipv4-addr' AND "
        "network-traffic:dst_ref.value = '1.2.3.4']",
        # two different references
        "[network-traffic:src_ref.type = 'ipv4-addr' AND "
        "network-traffic:dst_ref.value = '1.2.3.4']",
    ],
)
def test_anything_more_than_a_typed_reference_stays_whole(pattern: str) -> None:
    [key] = keys(pattern)
    assert key.startswith("pattern|pattern|")


def test_a_lookup_of_the_address_finds_every_spelling() -> None:
    [wanted] = candidate_keys("188.93.127.34")
    for pattern in (
        "[domain-name:value = '188.93.127.34']",
        "[network-traffic:dst_ref.type = 'ipv4-addr' AND "
        "network-traffic:dst_ref.value = '188.93.127.34']",
        "[url:value = 'http://188.93.127.34/gate.php']",
        "[ipv4-addr:value = '188.93.127.34/32']",
    ):
        assert wanted in keys(pattern), pattern
