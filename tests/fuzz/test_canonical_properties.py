"""Properties of canonical values, refanging and observables (DOMAIN.md "Sameness")."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core.canonical import canonical_path, canonical_value, defang, refang
from core.errors import InvalidPattern
from core.observables import observables

# THREATBAY_FUZZ_EXAMPLES=5000 for a longer hunt
FUZZ = settings(
    max_examples=int(os.environ.get("THREATBAY_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

octet = st.integers(0, 255)
ipv4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", octet, octet, octet, octet)
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda groups: ":".join(f"{g:x}" if g % 2 else f"{g:04X}" for g in groups)
)
prefix = st.one_of(st.just(""), st.integers(0, 128).map(lambda n: f"/{n}"))
ip_text = st.one_of(
    st.builds(lambda ip, p: ip + p, ipv4, prefix),
    st.builds(lambda ip, p: ip + p, ipv6, prefix),
    st.builds(lambda ip: ip.replace(".", "[.]"), ipv4),
    st.text(max_size=30),
)
label = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True),
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x3000), min_size=1, max_size=6),
    st.sampled_from(["xn--bcher-kva", "xn--zz", "_dmarc", "*", "EXAMPLE", "ß", "例え"]),
)
domain = st.builds(
    lambda labels, dot, pad: pad + ".".join(labels) + dot + pad,
    st.lists(label, min_size=1, max_size=4),
    st.sampled_from(["", ".", "。"]),
    st.sampled_from(["", " "]),
)
path_char = st.sampled_from(list("aZ09-._~/%?=&#:@!$'()*+,; ü") + ["%7e", "%2F", "%zz", "%41"])
url = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "HTTPS://", "hxxp://", "ftp://", "", "mailto:", "wss://"]),
    st.one_of(domain, ipv4, ipv6.map(lambda h: f"[{h}]"), st.just("user:pw@Host.example")),
    st.sampled_from(["", ":80", ":443", ":8080", ":", ":0080", ":x"]),
    st.lists(path_char, max_size=15).map("".join),
)
email = st.builds(
    lambda local, d: f"{local}@{d}", st.from_regex(r"[A-Za-z0-9.+_-]{1,10}", fullmatch=True), domain
)
hash_text = st.one_of(st.text("0123456789abcdefABCDEF", max_size=70), st.text(max_size=20))


def idempotent(kind: str, path: str, value: str) -> None:
    once = canonical_value(kind, path, value)
    assert canonical_value(kind, path, once) == once, (value, once)


@FUZZ
@given(ip_text)
def test_ip_canonical_is_idempotent(value: str) -> None:
    idempotent("ipv4-addr", "value", value)
    idempotent("network-traffic", "dst_ref.value", value)


@FUZZ
@given(st.one_of(domain, st.text(max_size=30)))
def test_domain_canonical_is_idempotent(value: str) -> None:
    idempotent("domain-name", "value", value)


@FUZZ
@given(st.one_of(url, st.text(max_size=40)))
def test_url_canonical_is_idempotent(value: str) -> None:
    idempotent("url", "value", value)


@FUZZ
@given(st.one_of(email, st.text(max_size=30)))
def test_email_canonical_is_idempotent(value: str) -> None:
    idempotent("email-addr", "value", value)


@FUZZ
@given(
    hash_text, st.sampled_from(["hashes.'SHA-256'", "hashes.MD5", "hashes.SSDEEP", "hashes.TLSH"])
)
def test_hash_canonical_is_idempotent(value: str, path: str) -> None:
    idempotent("file", path, value)
    assert canonical_path(canonical_path(path)) == canonical_path(path)


@FUZZ
@given(st.text(max_size=60))
def test_refang_never_raises(text: str) -> None:
    assert isinstance(refang(text), str)


fanged_alphabet = st.sampled_from(list("abchtpfsx0123456789.-_/:@[](){}%?=&#~"))


@FUZZ
@given(st.one_of(url.map(str.lower), email.map(str.lower), st.lists(fanged_alphabet).map("".join)))
def test_refang_undoes_defang(value: str) -> None:
    assume(" " not in value and refang(value) == value)
    assert refang(defang(value)) == value


type_part = st.sampled_from(["ipv4-addr", "url", "file", "domain-name", "x", "true", "a-", ""])
path_part = st.sampled_from(
    ["value", "hashes.MD5", "hashes.'SHA-256'", "dst_ref.value", "a[0]", "a[*]", "x.LAST", ""]
)
op_part = st.sampled_from(["=", "==", "!=", "LIKE", "IN", ">", ""])
value_part = st.one_of(
    st.text(max_size=20), st.sampled_from(["'1.2.3.4'", "('a','b')", "5", "'\\'"])
)
join_part = st.sampled_from([" OR ", " AND ", "] OR [", "] FOLLOWEDBY [", "] WITHIN 5 SECONDS", ""])


@st.composite
def pattern_like(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        value = draw(value_part)
        literal = value if value[:1] in "'(5" else "'" + value.replace("'", "\\'") + "'"
        parts.append(f"{draw(type_part)}:{draw(path_part)} {draw(op_part)} {literal}")
    text = "[" + draw(join_part).join(parts) + "]"
    return draw(st.sampled_from(["", " ", "("])) + text + draw(st.sampled_from(["", ")", " OR"]))


@FUZZ
@given(st.one_of(pattern_like(), st.text(max_size=40)))
def test_observables_raise_only_invalid_pattern(pattern: str) -> None:
    try:
        found = observables(pattern)
    except InvalidPattern as error:
        assert error.reason
    else:
        assert found and all(o.key == f"{o.observable_type}|{o.path}|{o.value}" for o in found)
