"""Blocklist formats for firewalls, resolvers and IDS (issue #19): pure rendering, no I/O.

A format renders one ``ExportRow`` at a time (``lines``), so an export streams
whatever its size; ``head`` and ``tail`` are asked for after the rows, because
an RPZ zone's SOA serial and a STIX bundle's id depend on the content and the
Suricata hash-list rules on which lists are non-empty. A value a format cannot
carry safely is never written broken: ``lines`` answers ``Omitted(reason)``
and the caller counts it (``X-ThreatBay-Omitted``).

Sources of each syntax: Suricata rules (docs "Rules format", "Payload
keywords": ``"`` ``;`` ``\\`` escaped in option values, content bytes as
``|XX|``; "File keywords": ``filemd5``/``filesha256`` lists, one hex hash a
line), Snort 2.9 manual (rule headers, ``http_header``/``http_uri``), Zeek
"Intelligence Framework" (tab-separated, ``-`` unset, ``Intel::`` types; URLs
without the scheme), BIND 9 ARM "Response Policy Zones" (``CNAME .`` NXDOMAIN,
``*.name`` subdomains, ``<prefix>.<reversed address>.rpz-ip`` triggers with
``zz`` for the longest run of zero groups in IPv6), STIX 2.1 sections 4.7
(indicator) and 9.3 (patterning).
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from core.alerts import PLATFORM_IDENTITY
from core.clock import parse_timestamp
from core.record_indicators import indicator_id

#: Longest value any format writes (longer: omitted). DNS names are capped at 253 anyway.
MAX_VALUE_CHARS = 2048
#: sids are ``SID_BASE + (SHA-256(key, part) mod SID_SPAN)``: 3,100,000,000..4,099,999,999,
#: above the ranges Snort (< 1,000,000 reserved, 1,000,000+ local) and Emerging Threats
#: (2,000,000..2,999,999 and their Pro ranges) use, below the 32-bit limit of both engines.
SID_BASE = 3_100_000_000
SID_SPAN = 1_000_000_000
#: ``rev`` counts seconds since this instant at the record's latest visible change.
REV_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
ZONE_TTL = 300

TLP1 = {
    "clear": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
_EXPORT_NS = uuid.UUID("c1a7e1f0-5d0e-4f3b-8a8e-19e5b0c7a7d2")
_LDH_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_HEX = re.compile(r"[0-9a-f]+\Z")
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One record as the reader may see it, reduced to what the formats write."""

    key: str
    export_type: str  # ipv4-addr, ipv6-addr, domain-name, url, email-addr, file:sha256, ...
    value: str
    score_now: float
    jurisdictions: tuple[str, ...]
    agencies: tuple[str, ...]
    first_seen: str
    last_seen: str
    changed_at: str
    level: str  # RED / ORANGE / YELLOW / BLUE of the highest open alert, or NONE
    tlp: str
    labels: tuple[str, ...] = ()

    @property
    def rev(self) -> int:
        """Bumped whenever the record (as visible) or its alert level changes."""
        try:
            seconds = (parse_timestamp(self.changed_at) - REV_EPOCH).total_seconds()
        except ValueError:
            return 1
        return max(1, int(seconds))


def export_type(record: Mapping[str, Any]) -> str:
    """``file:sha256`` for a hash record, else the observable type."""
    kind = str(record.get("observable_type", ""))
    path = str(record.get("path", ""))
    if kind == "file" and path.startswith("hashes."):
        return "file:" + path[len("hashes.") :].replace("-", "").lower()
    return kind


def _latest(record: Mapping[str, Any]) -> str:
    stamps = [
        str(s.get("modified") or s.get("last_seen") or "")
        for part in ("sources", "sightings")
        for s in record.get(part) or []
        if isinstance(s, Mapping)
    ]
    stamps.append(str(record.get("last_seen") or ""))
    return max(stamps)


def row_of(view: Mapping[str, Any], level: str = "NONE", level_changed: str = "") -> ExportRow:
    """The row of a reader's view of a record (``api.indicator_queries.shown``)."""
    return ExportRow(
        key=str(view.get("key", "")),
        export_type=export_type(view),
        value=str(view.get("value", "")),
        score_now=float(view.get("score_now", view.get("score", 0.0)) or 0.0),
        jurisdictions=tuple(view.get("jurisdictions") or ()),
        agencies=tuple(view.get("agencies") or ()),
        first_seen=str(view.get("first_seen") or ""),
        last_seen=str(view.get("last_seen") or ""),
        changed_at=max(_latest(view), level_changed),
        level=level,
        tlp=str(view.get("tlp") or "amber"),
        labels=tuple(str(x) for x in view.get("labels") or ()),
    )


# ------------------------------------------------------------------ what may be blocked


def never_blocked(export_kind: str, value: str) -> str | None:
    """Why ``value`` must never be put on a blocklist (private, reserved...), or None."""
    host: str | None = value
    if export_kind == "url":
        try:
            host = urlsplit(value).hostname
        except ValueError:
            return "unparsable URL"
    if export_kind in ("ipv4-addr", "ipv6-addr", "url", "domain-name") and host:
        try:
            net = ipaddress.ip_network(host.strip("[]"), strict=False)
        except ValueError:
            net = None
        if net is not None:
            if not net.network_address.is_global or not net.broadcast_address.is_global:
                return "private or reserved address"
            return None
        name = host.lower().rstrip(".")
        if name in ("localhost", "local", "invalid", "test", "example", "onion") or name.endswith(
            (".localhost", ".local", ".invalid", ".test", ".arpa", ".internal", ".lan", ".home")
        ):
            return "reserved name"
    return None


# ------------------------------------------------------------------ escaping helpers


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def rule_content(value: str) -> str:
    """A Suricata/Snort ``content`` string: printable ASCII kept, the rest as ``|XX|`` bytes."""
    out: list[str] = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if 0x20 <= byte < 0x7F and ch not in '";:|\\':
            out.append(ch)
        else:
            out.append(f"|{byte:02X}|")
    return "".join(out).replace("||", " ")


def rule_text(text: str, limit: int = 200) -> str:
    """Text for ``msg``: printable ASCII only (else ``?``), ``\\`` ``"`` ``;`` escaped."""
    clean = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text[:limit])
    for ch in ("\\", '"', ";"):
        clean = clean.replace(ch, "\\" + ch)
    return clean.replace("(", "[").replace(")", "]")


def sid_of(key: str, part: str) -> int:
    """The stable sid of one rule of a record (module constants)."""
    digest = hashlib.sha256(f"{key}\0{part}".encode()).digest()
    return SID_BASE + int.from_bytes(digest[:8], "big") % SID_SPAN


def dns_name(value: str) -> str | None:
    """``value`` as a DNS name fit for a zone or a rule (LDH labels, ASCII), or None."""
    name = value.lower().rstrip(".")
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.split(".")
    if not all(_LDH_LABEL.match(label) for label in labels):
        return None
    return name


def well_formed(kind: str, value: str) -> bool:
    """True when ``value`` is a well-formed observable of export type ``kind``."""
    if kind.startswith("file:"):
        length = _HASH_LENGTHS.get(kind[5:])
        return length == len(value) and bool(_HEX.match(value))
    if kind in ("ipv4-addr", "ipv6-addr"):
        return _address_of(value) is not None
    if kind == "domain-name":
        return dns_name(value) is not None
    return _printable_ascii(value) if kind in ("url", "email-addr") else value.isprintable()


class Omitted(str):
    """Why a row was left out of a format (counted, never written)."""


@dataclass
class Format:
    """A format's name, media type and rendering; one instance per export (some keep state)."""

    name: ClassVar[str]
    media_type: ClassVar[str] = "text/plain; charset=utf-8"
    extension: ClassVar[str] = "txt"
    types: ClassVar[frozenset[str] | None] = None  # None: every observable type
    options: dict[str, str] = field(default_factory=dict)

    def carries(self, kind: str) -> bool:
        return self.types is None or kind in self.types

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        raise NotImplementedError

    def head(self, digest: str, serial: int, generated: datetime) -> str:
        return ""

    def tail(self) -> str:
        return ""


# ------------------------------------------------------------------ plain, csv


@dataclass
class Plain(Format):
    """One value a line (one observable type per request, ``?type=``)."""

    name: ClassVar[str] = "plain"

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        if len(row.value) > MAX_VALUE_CHARS:
            return Omitted("over-long")
        if not row.value.isprintable() or any(c in row.value for c in "\r\n\t"):
            return Omitted("control characters")
        return [row.value]


CSV_FIELDS = ("value", "type", "score_now", "jurisdictions", "first_seen", "last_seen", "key",
              "level")  # fmt: skip


def _cell(text: str) -> str:
    """A spreadsheet reads ``=``/``+``/``-``/``@`` first as a formula (OWASP CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass
class Csv(Format):
    """RFC 4180 CSV with a header row (Python's ``csv`` module, minimal quoting)."""

    name: ClassVar[str] = "csv"
    media_type: ClassVar[str] = "text/csv; charset=utf-8"
    extension: ClassVar[str] = "csv"

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        if len(row.value) > MAX_VALUE_CHARS:
            return Omitted("over-long")
        if not row.value.isprintable():
            return Omitted("control characters")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [_cell(row.value), row.export_type, f"{row.score_now:.1f}", "|".join(row.jurisdictions),
             row.first_seen, row.last_seen, _cell(row.key), row.level]
        )  # fmt: skip
        return [buf.getvalue().rstrip("\n")]

    def head(self, digest: str, serial: int, generated: datetime) -> str:
        return ",".join(CSV_FIELDS) + "\n"


# ------------------------------------------------------------------ Suricata and Snort

RULE_TYPES = frozenset({"ipv4-addr", "ipv6-addr", "domain-name", "url"})
HASH_LISTS = {"file:md5": "md5", "file:sha1": "sha1", "file:sha256": "sha256"}


def _address_of(value: str) -> str | None:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _url_parts(value: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    uri = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, uri


@dataclass
class Suricata(Format):
    """Suricata 6/7 rules; file hashes through ``filemd5``/``filesha1``/``filesha256`` lists.

    The lists are served as formats ``filemd5``, ``filesha1``, ``filesha256``
    (install them next to the rules as ``threatbay-<alg>.list``); one rule per
    non-empty list refers to it.
    """

    name: ClassVar[str] = "suricata"
    extension: ClassVar[str] = "rules"
    types: ClassVar[frozenset[str] | None] = RULE_TYPES | frozenset(HASH_LISTS)
    hash_lists: set[str] = field(default_factory=set)
    #: sids written so far: two keys whose hashes meet (about 1 in 2,000 at 1M rules) must
    #: not share a sid, so the later one in the export probes ``part#1``, ``part#2``...
    #: (~60 bytes a rule: the only per-row memory of any format).
    used_sids: set[int] = field(default_factory=set)

    def sid(self, key: str, part: str) -> int:
        sid, n = sid_of(key, part), 0
        while sid in self.used_sids:
            n += 1
            sid = sid_of(key, f"{part}#{n}")
        self.used_sids.add(sid)
        return sid

    def msg(self, row: ExportRow, what: str) -> str:
        return rule_text(f"ThreatBay {row.level} {what} {row.key}")

    def rule(self, proto: str, head: str, row: ExportRow, part: str, body: str) -> str:
        return (
            f'alert {proto} {head} (msg:"{self.msg(row, part)}"; {body}'
            f"sid:{self.sid(row.key, part)}; rev:{row.rev}; classtype:trojan-activity;)"
        )

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        if len(row.value) > MAX_VALUE_CHARS:
            return Omitted("over-long")
        kind = row.export_type
        if kind in HASH_LISTS:
            if not well_formed(kind, row.value):
                return Omitted("not a hex hash")
            self.hash_lists.add(HASH_LISTS[kind])
            return []  # in the list file, matched by one rule per list (tail)
        if kind in ("ipv4-addr", "ipv6-addr"):
            addr = _address_of(row.value)
            if addr is None:
                return Omitted("not an address")
            return [self.rule("ip", f"any any <> [{addr}] any", row, "ip", "")]
        if kind == "domain-name":
            name = dns_name(row.value)
            if name is None:
                return Omitted("not a DNS name")
            return self.domain_rules(row, name)
        if kind == "url":
            parts = _url_parts(row.value)
            if parts is None or not _printable_ascii(row.value):
                return Omitted("not an ASCII URL")
            return self.url_rules(row, *parts)
        return Omitted("type not carried")

    def domain_rules(self, row: ExportRow, name: str) -> list[str]:
        content = rule_content("." + name)
        return [
            self.rule("dns", "any any -> any any", row, "dns",
                      f'dns.query; dotprefix; content:"{content}"; nocase; endswith; '),
            self.rule("tls", "any any -> any any", row, "tls-sni",
                      f'tls.sni; dotprefix; content:"{content}"; nocase; endswith; '),
        ]  # fmt: skip

    def url_rules(self, row: ExportRow, host: str, uri: str) -> list[str]:
        return [
            self.rule(
                "http", "any any -> any any", row, "http",
                f'flow:established,to_server; http.host; content:"{rule_content(host)}"; '
                f'nocase; bsize:{len(host)}; http.uri; content:"{rule_content(uri)}"; '
                f"startswith; ",
            )
        ]  # fmt: skip

    def tail(self) -> str:
        out = []
        for alg in sorted(self.hash_lists):
            part = f"file{alg}"
            out.append(
                f'alert http any any -> any any (msg:"ThreatBay file {alg.upper()} on '
                f'threatbay-{alg}.list"; {part}:threatbay-{alg}.list; '
                f"sid:{self.sid('threatbay:hash-list', alg)}; rev:1; classtype:trojan-activity;)"
            )
        return "".join(line + "\n" for line in out)

    def head(self, digest: str, serial: int, generated: datetime) -> str:
        return (
            f"# ThreatBay {self.name} rules, content {digest[:16]}\n"
            f"# sids {SID_BASE}..{SID_BASE + SID_SPAN - 1}, stable per record key; "
            "rev bumped on change\n"
        )


def _dns_wire(name: str) -> str:
    """A DNS name as it appears in a query (length-prefixed labels), for Snort ``content``."""
    out = []
    for label in name.split("."):
        out.append(f"|{len(label):02X}|{rule_content(label)}")
    return "".join(out) + "|00|"


@dataclass
class Snort(Suricata):
    """Snort 2.9 rules (no sticky buffers: DNS wire labels, ``http_header``/``http_uri``).

    Snort 2 has no file-hash list keyword: hash records are not carried (use
    ``zeek``, ``csv`` or the Suricata lists).
    """

    name: ClassVar[str] = "snort"
    types: ClassVar[frozenset[str] | None] = RULE_TYPES

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        if row.export_type in HASH_LISTS:
            return Omitted("type not carried")
        return super().lines(row)

    def domain_rules(self, row: ExportRow, name: str) -> list[str]:
        return [
            self.rule("udp", "$HOME_NET any -> any 53", row, "dns",
                      f'content:"{_dns_wire(name)}"; nocase; fast_pattern; '),
            self.rule("tcp", "$HOME_NET any -> any 443", row, "tls-sni",
                      'flow:established,to_server; content:"|16 03|"; depth:2; '
                      f'content:"{rule_content(name)}"; nocase; distance:0; '),
        ]  # fmt: skip

    def url_rules(self, row: ExportRow, host: str, uri: str) -> list[str]:
        return [
            self.rule(
                "tcp", "$HOME_NET any -> any $HTTP_PORTS", row, "http",
                f'flow:established,to_server; content:"Host|3A| {rule_content(host)}"; '
                f'http_header; nocase; content:"{rule_content(uri)}"; http_uri; ',
            )
        ]  # fmt: skip

    def tail(self) -> str:
        return ""


@dataclass
class HashList(Format):
    """A Suricata hash list file: one lower-case hex hash a line."""

    name: ClassVar[str] = "filesha256"
    algorithm: ClassVar[str] = "sha256"

    def carries(self, kind: str) -> bool:
        return kind == f"file:{self.algorithm}"

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        value = row.value.lower()
        if len(value) != _HASH_LENGTHS[self.algorithm] or not _HEX.match(value):
            return Omitted("not a hex hash")
        return [value]


@dataclass
class HashListMd5(HashList):
    name: ClassVar[str] = "filemd5"
    algorithm: ClassVar[str] = "md5"


@dataclass
class HashListSha1(HashList):
    name: ClassVar[str] = "filesha1"
    algorithm: ClassVar[str] = "sha1"


# ------------------------------------------------------------------ Zeek Intel

ZEEK_FIELDS = "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url"
ZEEK_TYPES = {
    "ipv4-addr": "Intel::ADDR",
    "ipv6-addr": "Intel::ADDR",
    "domain-name": "Intel::DOMAIN",
    "url": "Intel::URL",
    "email-addr": "Intel::EMAIL",
    "file:md5": "Intel::FILE_HASH",
    "file:sha1": "Intel::FILE_HASH",
    "file:sha256": "Intel::FILE_HASH",
    "file:sha512": "Intel::FILE_HASH",
}


def _zeek_field(text: str) -> str | None:
    """A field value: no TAB/newline/control (Zeek has no escape for them), never ``-``."""
    if not text:
        return "(empty)"
    if not text.isprintable() or text in ("-", "(empty)"):
        return None
    return text


@dataclass
class Zeek(Format):
    """A Zeek Intel framework file (``Intel::read_files``)."""

    name: ClassVar[str] = "zeek"
    extension: ClassVar[str] = "intel"
    types: ClassVar[frozenset[str] | None] = frozenset(ZEEK_TYPES)

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        if len(row.value) > MAX_VALUE_CHARS:
            return Omitted("over-long")
        kind = ZEEK_TYPES.get(row.export_type)
        if kind is None:
            return Omitted("type not carried")
        if not well_formed(row.export_type, row.value):
            return Omitted("malformed value")
        value = row.value
        if row.export_type == "url":
            value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value)  # "without the prefix http://"
        elif row.export_type == "ipv4-addr" or row.export_type == "ipv6-addr":
            addr = _address_of(value)
            if addr is None:
                return Omitted("not an address")
            if "/" in addr:
                kind = "Intel::SUBNET"
            value = addr
        indicator = _zeek_field(value)
        desc = _zeek_field(f"{row.level} {row.key} score {row.score_now:.0f}"[:400])
        if indicator is None or desc is None or value == "(empty)":
            return Omitted("control characters")
        return ["\t".join([indicator, kind, "ThreatBay", desc, "-"])]

    def head(self, digest: str, serial: int, generated: datetime) -> str:
        return f"{ZEEK_FIELDS}\n"


# ------------------------------------------------------------------ RPZ


def rpz_ip(value: str) -> str | None:
    """The ``rpz-ip`` owner of an address or network (BIND ARM), or None."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    if net.version == 4:
        octets = str(net.network_address).split(".")
        return f"{net.prefixlen}.{'.'.join(reversed(octets))}.rpz-ip"
    groups = [f"{int(g, 16):x}" for g in net.network_address.exploded.split(":")]
    best, start = (0, -1), -1
    for i, g in enumerate([*groups, "x"]):
        if g == "0" and start < 0:
            start = i
        elif g != "0" and start >= 0:
            if i - start > best[0]:
                best = (i - start, start)
            start = -1
    if best[0] >= 2:
        length, at = best
        groups = [*groups[:at], "zz", *groups[at + length :]]
    return f"{net.prefixlen}.{'.'.join(reversed(groups))}.rpz-ip"


@dataclass
class Rpz(Format):
    """A BIND Response Policy Zone: ``CNAME .`` (NXDOMAIN) per name; ``?wildcard=true`` adds
    ``*.name`` for every subdomain; addresses as ``rpz-ip`` response triggers."""

    name: ClassVar[str] = "rpz"
    extension: ClassVar[str] = "zone"
    types: ClassVar[frozenset[str] | None] = frozenset({"domain-name", "ipv4-addr", "ipv6-addr"})

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        comment = rule_text(f"{row.level} {row.key}", 120).replace("\\", "")
        if row.export_type == "domain-name":
            name = dns_name(row.value)
            if name is None or len(name) + len(self.origin) + 3 > 253:
                return Omitted("not a DNS name")
            out = [f"{name} CNAME . ; {comment}"]
            if self.options.get("wildcard") == "true":
                out.append(f"*.{name} CNAME .")
            return out
        owner = rpz_ip(row.value)
        if owner is None:
            return Omitted("not an address")
        return [f"{owner} CNAME . ; {comment}"]

    @property
    def origin(self) -> str:
        return self.options.get("zone", "rpz.threatbay")

    def head(self, digest: str, serial: int, generated: datetime) -> str:
        return (
            f"; ThreatBay response policy zone {self.origin}, content {digest[:16]}\n"
            f"$TTL {ZONE_TTL}\n"
            f"@ IN SOA localhost. hostmaster.localhost. ( {serial} 3600 600 86400 {ZONE_TTL} )\n"
            "@ IN NS localhost.\n"
        )


# ------------------------------------------------------------------ STIX 2.1 bundle


def stix_pattern(row: ExportRow) -> str | None:
    """The simple comparison of a row as a STIX pattern (9.3: ``\\`` and ``'`` escaped)."""
    quoted = "'" + row.value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if row.export_type.startswith("file:"):
        alg = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}.get(
            row.export_type[5:]
        )
        return f"[file:hashes.'{alg}' = {quoted}]" if alg else None
    if row.export_type in ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"):
        return f"[{row.export_type}:value = {quoted}]"
    return None


@dataclass
class Stix(Format):
    """A STIX 2.1 bundle of one indicator per record, with the ``records`` collection's ids."""

    name: ClassVar[str] = "stix"
    media_type: ClassVar[str] = "application/stix+json;version=2.1"
    extension: ClassVar[str] = "json"
    first: bool = True

    def lines(self, row: ExportRow) -> list[str] | Omitted:
        if len(row.value) > MAX_VALUE_CHARS:
            return Omitted("over-long")
        pattern = stix_pattern(row)
        if pattern is None:
            return Omitted("type not carried")
        if not well_formed(row.export_type, row.value):
            return Omitted("malformed value")
        created = row.first_seen or row.changed_at
        modified = max(row.changed_at, created)
        tlp = row.tlp if row.tlp in TLP1 else "red"  # AMBER+STRICT has no TLP 1.0 id: stricter
        obj = {
            "type": "indicator",
            "spec_version": "2.1",
            # The id of the record's indicator in the TAXII ``records`` collection, so a
            # SIEM that takes both sees one indicator per record.
            "id": indicator_id(row.key),
            "created_by_ref": PLATFORM_IDENTITY,
            "created": created,
            "modified": modified,
            "name": f"{row.export_type} {row.value[:200]}",
            "indicator_types": ["malicious-activity"],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": created,
            "confidence": max(0, min(100, round(row.score_now))),
            "labels": [f"threatbay-level:{row.level.lower()}"],
            "object_marking_refs": [TLP1[tlp]],
            "external_references": [{"source_name": "threatbay", "external_id": row.key}],
        }
        text = orjson.dumps(obj).decode()
        sep = "" if self.first else ","
        self.first = False
        return [sep + text]

    def head(self, digest: str, serial: int, generated: datetime) -> str:
        return f'{{"type":"bundle","id":"bundle--{uuid.uuid5(_EXPORT_NS, digest)}","objects":[\n'

    def tail(self) -> str:
        return "]}\n"


FORMATS: dict[str, type[Format]] = {
    f.name: f
    for f in (
        Plain,
        Csv,
        Suricata,
        Snort,
        Zeek,
        Rpz,
        Stix,
        HashListMd5,
        HashListSha1,
        HashList,
    )  # fmt: skip
}


def format_named(name: str, options: Mapping[str, str] | None = None) -> Format:
    """A fresh renderer of format ``name``; raises KeyError for an unknown format."""
    return FORMATS[name](options=dict(options or {}))


def timestamp_ok(text: str) -> bool:
    """True when ``text`` reads as a timestamp (for filters)."""
    try:
        parse_timestamp(text)
    except ValueError:
        return False
    return True
