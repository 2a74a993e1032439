"""Three agencies, one set of observables, many spellings (DOMAIN.md "Sameness", traps).

Each entry names the real-world observable it is about; the test asserts that
keys group exactly like the truth: same observable -> one key, look-alikes apart.
"""

from __future__ import annotations

from collections import defaultdict

from core.observables import observables

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5 = "098f6bcd4621d373cade4e832627b4f6"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"

# (agency, pattern, truth) -- truth names the observable a human analyst would see
CORPUS: list[tuple[str, str, str]] = [
    # one IPv4 address, five spellings across three producers
    ("GD", "[ipv4-addr:value = '198.51.100.7']", "ip 198.51.100.7"),
    ("HK", "[network-traffic:dst_ref.value = '198.51.100.7']", "ip 198.51.100.7"),
    ("MO", "[url:value = 'http://198.51.100.7/']", "ip 198.51.100.7"),
    ("MO", "[ipv4-addr:value = '198[.]51[.]100[.]7 ']", "ip 198.51.100.7"),
    ("HK", "[ipv4-addr:value = '198.51.100.7/32']", "ip 198.51.100.7"),
    ("GD", "[network-traffic:src_ref.value='198.51.100.7']", "ip 198.51.100.7"),
    # look-alike addresses and networks
    ("GD", "[ipv4-addr:value = '10.0.0.1']", "ip 10.0.0.1"),
    ("HK", "[ipv4-addr:value = '10.0.0.10']", "ip 10.0.0.10"),
    ("MO", "[ipv4-addr:value = '203.0.113.0/24']", "net 203.0.113.0/24"),
    ("GD", "[ipv4-addr:value = '203.0.113.77/24']", "net 203.0.113.0/24"),  # host bits
    ("HK", "[ipv4-addr:value = '203.0.113.0']", "ip 203.0.113.0"),
    ("MO", "[ipv4-addr:value = '203.0.113.0/25']", "net 203.0.113.0/25"),
    # IPv6
    ("GD", "[ipv6-addr:value = '2001:db8::1']", "ip 2001:db8::1"),
    ("HK", "[ipv6-addr:value = '2001:0DB8:0000:0000:0000:0000:0000:0001/128']", "ip 2001:db8::1"),
    ("MO", "[url:value = 'http://[2001:db8::1]:80/']", "ip 2001:db8::1"),
    ("MO", "[ipv6-addr:value = '2001:db8::10']", "ip 2001:db8::10"),
    # one SHA-256, three key spellings, two cases
    ("GD", f"[file:hashes.'SHA-256' = '{SHA256}']", "sha256"),
    ("HK", f"[file:hashes.SHA256 = '{SHA256.upper()}']", "sha256"),
    ("MO", f"[file:hashes.sha256 = '{SHA256[:20].upper() + SHA256[20:]}']", "sha256"),
    ("GD", f"[file:hashes.MD5 = '{MD5.upper()}']", "md5"),
    ("HK", f"[file:hashes.'MD5' = '{MD5}']", "md5"),
    ("MO", f"[file:hashes.'SHA-1' = '{SHA1}' OR file:hashes.MD5 = '{MD5}']", "sha1 + md5"),
    ("GD", f"[file:hashes.SHA1 = '{SHA1.upper()}']", "sha1"),
    # one domain: case, trailing dot, blanks, defanged, via network-traffic, via bare URL
    ("GD", "[domain-name:value = 'EVIL.Example.COM']", "domain evil.example.com"),
    ("HK", "[domain-name:value = 'evil.example.com.']", "domain evil.example.com"),
    ("MO", "[domain-name:value = ' evil[.]example[.]com ']", "domain evil.example.com"),
    ("HK", "[network-traffic:dst_ref.value = 'evil.example.com']", "domain evil.example.com"),
    ("MO", "[url:value = 'hxxp://evil[.]example[.]com']", "domain evil.example.com"),
    ("GD", "[domain-name:value = 'cdn.evil.example.com']", "domain cdn.evil.example.com"),
    ("HK", "[domain-name:value = 'evil.example.co']", "domain evil.example.co"),
    # IDN
    ("GD", "[domain-name:value = 'bücher.example']", "domain bücher.example"),
    ("HK", "[domain-name:value = 'xn--bcher-kva.example']", "domain bücher.example"),
    ("MO", "[domain-name:value = 'BÜCHER.EXAMPLE.']", "domain bücher.example"),
    ("MO", "[domain-name:value = 'bucher.example']", "domain bucher.example"),
    # one URL: default port, fragment, case of scheme/host, escapes, defanged
    ("GD", "[url:value = 'http://evil.example.com:80/Login?id=1#top']", "url /Login?id=1"),
    ("HK", "[url:value = 'HTTP://EVIL.EXAMPLE.COM/Login?id=%31']", "url /Login?id=1"),
    ("MO", "[url:value = 'hxxp://evil[.]example[.]com/Login?id=1']", "url /Login?id=1"),
    ("GD", "[url:value = 'evil.example.com/Login?id=1']", "url /Login?id=1"),
    ("HK", "[url:value = 'http://evil.example.com/login?id=1']", "url /login?id=1"),
    ("MO", "[url:value = 'http://evil.example.com/%7Eadmin/a%2fb']", "url /~admin/a%2Fb"),
    ("GD", "[url:value = 'http://evil.example.com/~admin/a%2Fb']", "url /~admin/a%2Fb"),
    ("HK", "[url:value = 'http://evil.example.com/~admin/a/b']", "url /~admin/a/b"),
    ("MO", "[url:value = 'https://evil.example.com/Login?id=1']", "url https /Login?id=1"),
    ("GD", "[url:value = 'http://evil.example.com:8080/']", "url :8080"),
    # e-mail sender
    ("GD", "[email-addr:value = 'Boss@Evil.Example.com']", "email boss@evil.example.com"),
    (
        "HK",
        "[email-message:from_ref.value = 'boss@evil.example.com ']",
        "email boss@evil.example.com",
    ),
    ("MO", "[email-addr:value = 'boss[@]evil[.]example[.]com']", "email boss@evil.example.com"),
    ("MO", "[email-addr:value = 'boss2@evil.example.com']", "email boss2@evil.example.com"),
]

TRUTH_OF_COMBINED = {"sha1 + md5": ("sha1", "md5")}


def key_groups() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """truth -> keys, and key -> agencies."""
    keys_of: dict[str, set[str]] = defaultdict(set)
    agencies_of: dict[str, set[str]] = defaultdict(set)
    for agency, pattern, truth in CORPUS:
        found = [o.key for o in observables(pattern)]
        truths = TRUTH_OF_COMBINED.get(truth, (truth,))
        assert len(found) == len(truths), pattern
        for one_truth, key in zip(
            truths, sorted(found, key=lambda k: "sha-1" not in k), strict=True
        ):
            keys_of[one_truth].add(key)
            agencies_of[key].add(agency)
    return keys_of, agencies_of


def test_every_observable_has_exactly_one_key() -> None:
    keys_of, _ = key_groups()
    split = {truth: keys for truth, keys in keys_of.items() if len(keys) != 1}
    assert split == {}


def test_distinct_observables_never_share_a_key() -> None:
    keys_of, agencies_of = key_groups()
    assert len(agencies_of) == len(keys_of)  # number of distinct keys == distinct observables


def test_specific_groupings() -> None:
    keys_of, agencies_of = key_groups()
    assert keys_of["ip 198.51.100.7"] == {"ipv4-addr|value|198.51.100.7"}
    assert agencies_of["ipv4-addr|value|198.51.100.7"] == {"GD", "HK", "MO"}
    assert keys_of["ip 2001:db8::1"] == {"ipv6-addr|value|2001:db8::1"}
    assert keys_of["net 203.0.113.0/24"] == {"ipv4-addr|value|203.0.113.0/24"}
    assert keys_of["sha256"] == {f"file|hashes.sha-256|{SHA256}"}
    assert agencies_of[f"file|hashes.sha-256|{SHA256}"] == {"GD", "HK", "MO"}
    assert keys_of["md5"] == {f"file|hashes.md5|{MD5}"}
    assert agencies_of[f"file|hashes.md5|{MD5}"] == {"GD", "HK", "MO"}
    assert keys_of["sha1"] == {f"file|hashes.sha-1|{SHA1}"}
    assert keys_of["domain evil.example.com"] == {"domain-name|value|evil.example.com"}
    assert keys_of["domain bücher.example"] == {"domain-name|value|xn--bcher-kva.example"}
    assert keys_of["url /Login?id=1"] == {"url|value|http://evil.example.com/Login?id=1"}
    assert keys_of["url /~admin/a%2Fb"] == {"url|value|http://evil.example.com/~admin/a%2Fb"}
    assert keys_of["email boss@evil.example.com"] == {"email-addr|value|boss@evil.example.com"}


def test_source_paths_are_kept_per_report() -> None:
    paths = {
        observables(pattern)[0].source_path
        for _, pattern, truth in CORPUS
        if truth == "ip 198.51.100.7"
    }
    assert paths == {
        "ipv4-addr:value",
        "network-traffic:dst_ref.value",
        "network-traffic:src_ref.value",
        "url:value",
    }
