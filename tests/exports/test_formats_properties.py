"""Adversarial values never break an export: every format still parses (hypothesis).

Quotes, semicolons, pipes, backslashes, unicode and IDN, control characters
and huge values go through each renderer; the output is read back by the real
tools (tests/exports/validators.py). A value that cannot be carried is counted
as omitted, never written broken.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports.formats import ExportRow, Omitted, Suricata, format_named, rpz_ip, sid_of
from tests.exports.validators import check_zone, csv_rows, rules_of, stix_bundle, zeek_intel

NOW = datetime(2026, 3, 1, tzinfo=UTC)
NASTY = st.text(
    alphabet=st.sampled_from(list("abc.-_';\"|\\:/?&=%() \t\r\n\x00\x7fé中ß.") + ["〇"]),
    min_size=1,
    max_size=80,
)
VALUES = st.one_of(
    NASTY,
    NASTY.map(lambda s: "http://evil.example/" + s),
    NASTY.map(lambda s: s + ".example"),
    st.just("a" * 5000),
    st.just("x" * 64 + ".example"),
    NASTY.map(lambda s: "xn--" + s),
    st.ip_addresses().map(str),
)
KINDS = st.sampled_from(["domain-name", "url", "ipv4-addr", "ipv6-addr", "file:sha256",
                         "file:md5", "email-addr"])  # fmt: skip


def row(kind: str, value: str, n: int) -> ExportRow:
    return ExportRow(
        key=f"{kind}|value|{value}", export_type=kind, value=value, score_now=77.0,
        jurisdictions=("HK",), agencies=("hk-govcert",), first_seen="2026-01-01T00:00:00.000000Z",
        last_seen="2026-02-01T00:00:00.000000Z", changed_at=f"2026-02-0{n % 9 + 1}T00:00:00Z",
        level="RED", tlp="green",
    )  # fmt: skip


def render(name: str, rows: list[ExportRow], **options: str) -> tuple[str, int]:
    fmt = format_named(name, options)
    body, omitted = [], 0
    for r in rows:
        if not fmt.carries(r.export_type):
            continue
        lines = fmt.lines(r)
        if isinstance(lines, Omitted):
            omitted += 1
            continue
        body.extend(lines)
    text = "".join(line + "\n" for line in body) + fmt.tail()
    return fmt.head("d" * 64, 2026030101, NOW) + text, omitted


PAIRS = st.lists(st.tuples(KINDS, VALUES), min_size=1, max_size=25, unique_by=lambda p: p)


@settings(max_examples=60, deadline=None)
@given(PAIRS)
def test_rules_always_parse(pairs: list[tuple[str, str]]) -> None:
    rows = [row(k, v, i) for i, (k, v) in enumerate(pairs)]
    for name in ("suricata", "snort"):
        text, _ = render(name, rows)
        rules_of(text)


@settings(max_examples=60, deadline=None)
@given(PAIRS)
def test_zeek_csv_stix_always_parse(pairs: list[tuple[str, str]]) -> None:
    rows = [row(k, v, i) for i, (k, v) in enumerate(pairs)]
    zeek_intel(render("zeek", rows)[0])
    parsed = csv_rows(render("csv", rows)[0])
    for r in parsed:
        value = r["value"]
        guarded = value[:1] == "'" and value[1:2] in ("=", "+", "-", "@", "\t", "\r")
        assert (value[1:] if guarded else value) in {x.value for x in rows}
    stix_bundle(render("stix", rows)[0])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(PAIRS)
def test_rpz_always_loads_in_bind(tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
    rows = [row(k, v, i) for i, (k, v) in enumerate(pairs)]
    text, _ = render("rpz", rows, wildcard="true")
    check_zone(text, tmp_path)


def test_plain_leaves_out_what_would_break_a_line() -> None:
    text, omitted = render("plain", [row("url", "http://a.example/x\ny", 1),
                                     row("url", "http://b.example/ok", 2)])  # fmt: skip
    assert text == "http://b.example/ok\n" and omitted == 1


def test_sids_are_stable_in_range_and_rev_follows_change() -> None:
    assert sid_of("domain-name|value|evil.example", "dns") == sid_of(
        "domain-name|value|evil.example", "dns"
    )
    assert 3_100_000_000 <= sid_of("k", "dns") < 4_100_000_000
    assert row("url", "http://x", 1).rev < row("url", "http://x", 2).rev


def test_rpz_ip_owners() -> None:
    assert rpz_ip("1.2.3.4") == "32.4.3.2.1.rpz-ip"
    assert rpz_ip("1.2.3.0/24") == "24.0.3.2.1.rpz-ip"
    assert rpz_ip("2001:db8::/32") == "32.zz.db8.2001.rpz-ip"
    assert rpz_ip("2001:db8::1") == "128.1.zz.db8.2001.rpz-ip"


def test_colliding_sids_are_made_unique() -> None:
    fmt = format_named("suricata")
    assert isinstance(fmt, Suricata)
    fmt.used_sids.add(sid_of("ipv4-addr|value|5.188.206.14", "ip"))  # as if another key had it
    [rule] = fmt.lines(row("ipv4-addr", "5.188.206.14", 1))  # type: ignore[misc]
    assert f"sid:{sid_of('ipv4-addr|value|5.188.206.14', 'ip#1')};" in rule
