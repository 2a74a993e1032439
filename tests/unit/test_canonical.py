"""Canonical values and refanging (DOMAIN.md "Sameness")."""

from __future__ import annotations

import pytest

from core.canonical import canonical_path, canonical_value, defang, hash_algorithm, refang


@pytest.mark.parametrize(
    ("defanged", "fanged"),
    [
        ("hxxp://evil[.]example[.]com/a", "http://evil.example.com/a"),
        ("hXXps://evil(.)example{.}com", "https://evil.example.com"),
        ("fxp://files[dot]example(dot)org", "ftp://files.example.org"),
        ("hxxp[:]//198[.]51[.]100[.]7", "http://198.51.100.7"),
        ("hxxps[://]evil[.]example", "https://evil.example"),
        ("bad.actor[@]example[.]com", "bad.actor@example.com"),
        ("bad.actor[at]example[dot]com", "bad.actor@example.com"),
        ("evil [.] example [ . ] com", "evil.example.com"),
        ("198.51.100.7[:]8080", "198.51.100.7:8080"),
    ],
)
def test_refang_undoes_common_defanging(defanged: str, fanged: str) -> None:
    assert refang(defanged) == fanged


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox (see [1]). Done.",
        "C:\\Windows\\System32\\a.dll",
        "xhxxp://not-a-scheme",
        "box [x] at 3 o'clock",
        "http://already.example.com/",
        "matrix[i][j] = 0.5",
    ],
)
def test_refang_leaves_ordinary_text_alone(text: str) -> None:
    assert refang(text) == text


def test_defang_round_trip() -> None:
    url = "https://user@evil.example.com/a.b"
    assert defang(url) == "hxxps://user[@]evil[.]example[.]com/a[.]b"
    assert refang(defang(url)) == url


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7/32 ", "198.51.100.7"),
        ("198[.]51[.]100[.]7", "198.51.100.7"),
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("198.51.100.77/24", "198.51.100.0/24"),  # host bits cleared
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8::1/128", "2001:db8::1"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("not an ip", "not an ip"),
    ],
)
def test_ip_addresses(value: str, canonical: str) -> None:
    kind = "ipv6-addr" if ":" in value else "ipv4-addr"
    assert canonical_value(kind, "value", value) == canonical


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("EVIL.Example.COM", "evil.example.com"),
        ("evil.example.com.", "evil.example.com"),
        (" evil.example.com ", "evil.example.com"),
        ("evil[.]example[.]com", "evil.example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え。テスト", "xn--r8jz45g.xn--zckzah"),
        ("_dmarc.Example.com", "_dmarc.example.com"),  # not IDNA-valid: lower case only
        ("*.Example.com", "*.example.com"),
    ],
)
def test_domains(value: str, canonical: str) -> None:
    assert canonical_value("domain-name", "value", value) == canonical


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("HTTP://Evil.Example.COM/Path", "http://evil.example.com/Path"),
        ("http://evil.example.com:80/a", "http://evil.example.com/a"),
        ("https://evil.example.com:443/a", "https://evil.example.com/a"),
        ("https://evil.example.com:8443/a", "https://evil.example.com:8443/a"),
        ("http://evil.example.com", "http://evil.example.com/"),
        ("http://evil.example.com/a#frag", "http://evil.example.com/a"),
        ("http://evil.example.com/%7euser/%2f%3a", "http://evil.example.com/~user/%2F%3A"),
        ("http://evil.example.com/a b", "http://evil.example.com/a%20b"),
        ("http://evil.example.com/ü", "http://evil.example.com/%C3%BC"),
        ("http://evil.example.com/100%", "http://evil.example.com/100%25"),
        ("http://Bücher.example/x", "http://xn--bcher-kva.example/x"),
        ("hxxp://evil[.]example[.]com/a", "http://evil.example.com/a"),
        ("evil.example.com/a", "http://evil.example.com/a"),
        ("http://[2001:DB8::1]:80/", "http://[2001:db8::1]/"),
        ("http://evil.example.com/a?q=%7e&b=C", "http://evil.example.com/a?q=~&b=C"),
        ("mailto:Someone@example.com", "mailto:Someone@example.com"),
    ],
)
def test_urls(value: str, canonical: str) -> None:
    assert canonical_value("url", "value", value) == canonical


def test_url_path_case_is_kept() -> None:
    upper = canonical_value("url", "value", "http://e.example/Admin")
    lower = canonical_value("url", "value", "http://e.example/admin")
    assert upper != lower


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("hashes.'SHA-256'", "hashes.sha-256"),
        ("hashes.SHA256", "hashes.sha-256"),
        ("hashes.sha256", "hashes.sha-256"),
        ("hashes.'SHA-1'", "hashes.sha-1"),
        ("hashes.SHA1", "hashes.sha-1"),
        ("hashes.MD5", "hashes.md5"),
        ("hashes.'SHA-512'", "hashes.sha-512"),
        ("hashes.SSDEEP", "hashes.ssdeep"),
        ("hashes.TLSH", "hashes.tlsh"),
        ("value", "value"),
        ("dst_ref.value", "dst_ref.value"),
        ("to_refs[*].value", "to_refs[*].value"),
    ],
)
def test_paths(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


def test_hash_algorithm_names() -> None:
    assert {hash_algorithm(n) for n in ("SHA256", "'SHA-256'", "sha256", "sha_256")} == {"sha-256"}


def test_hash_values() -> None:
    assert canonical_value("file", "hashes.'SHA-256'", " ABCDEF0123 ") == "abcdef0123"
    ssdeep = "3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C"
    assert canonical_value("file", "hashes.SSDEEP", ssdeep) == ssdeep  # case matters in ssdeep
    assert canonical_value("file", "hashes.TLSH", "t1abc") == "T1ABC"


def test_email_addresses() -> None:
    email = "bad.actor@example.com"
    assert canonical_value("email-addr", "value", " Bad.Actor@Example.COM ") == email
    idn = "x@xn--bcher-kva.example"
    assert canonical_value("email-addr", "value", "x[@]bücher[.]example") == idn


def test_other_values_are_only_trimmed() -> None:
    assert canonical_value("file", "name", "  Invoice.PDF.exe ") == "Invoice.PDF.exe"


@pytest.mark.parametrize("value", ["", " ", "\x00", "[", "http://[::1", "%", "\ud800", "a" * 5000])
@pytest.mark.parametrize("kind", ["ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"])
def test_never_raises(kind: str, value: str) -> None:
    assert isinstance(canonical_value(kind, "value", value), str)
