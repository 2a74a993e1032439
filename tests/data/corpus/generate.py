#!/usr/bin/env python3
"""Deterministic generator of ThreatBay's CI corpus: real producers' shapes, synthetic values.

Written for issue #17 from a survey of ~37,000 real published STIX indicators
(nine public producer repositories, surveyed locally and NOT copied here:
Cisco Talos "IOCs", Palo Alto Networks Unit 42 "playbook_viewer" and "iocs",
Echap "stalkerware-indicators", Amnesty Tech "investigations", the MVT
project's "mvt-indicators", SEKOIA.IO "Community", and the MISP events of ESET
"malware-ioc" and Citizen Lab "malware-indicators" converted with misp-stix).
Nothing fetched from them is in this file: only the *shapes* they showed, with
the weights below (``WEIGHTS``) taken from their frequencies:

- simple equality by type (domain 31 %, file SHA-256 37 %, URL 10 %, ...),
  hash algorithm spellings (``'SHA-256'``, ``SHA256``, ``sha256``, ``MD5`` ...),
  patterns without blanks (``[domain-name:value='x']``, the NGOs'), upper-case
  hashes and domains, trailing dots, defanging;
- MISP-STIX ``network-traffic:dst_ref.type AND dst_ref.value`` compounds (4,818
  real: now keyed as the address), ``src_ref`` ones, ``dst_port`` triples,
  file hash + name compounds (3 hashes + a name: keys over 512 bytes),
  ``resolves_to_refs``, x509 and registry compounds;
- IP literals as URL hosts (725 real) and as ``domain-name:value`` (8 real);
- a few OR / FOLLOWEDBY / LIKE / MATCHES / qualifier patterns and yara;
- producer property sets (MISP-STIX kill chains and indicator_types, Unit 42
  names and descriptions, NGO pattern_version, vendor ``x_ic_*`` custom
  properties, external references).

Adversarial shapes are added (``adversarial``): compound patterns with dozens of
hashes, 40 KB URLs (keyword terms over 32,766 bytes), 1,000-comparison OR
patterns, non-BMP and right-to-left characters, IP literals written as domains
and URLs, custom properties of every JSON type (conflicting types across
objects, 1,200 distinct names), property extensions, a 20 KB description.

Values are synthetic: domains under reserved names (``.example``, ``.test``,
``example.com/net/org``), addresses from documentation / benchmarking ranges
(192.0.2/24, 198.51.100/24, 203.0.113/24, 198.18/15, 2001:db8::/32), random
hashes. Three agency streams (GD, HK, MO) with deliberate overlap: a share of
values is re-reported by one or two other agencies with new STIX ids and that
agency's spelling; spelling never changes the canonical observable.

Alongside the objects the generator computes the expected distinct canonical
observables from its OWN oracle (it knows the value it meant and applies
DOMAIN.md "Sameness" and the cross-type rules stated in core/observables.py),
not from ThreatBay, so a test can assert ``records == expected observables``.
``--check`` cross-checks that oracle against this checkout's ``core.observables``.

    python tests/data/corpus/generate.py --out /tmp/corpus [--seed 7] [--base 2400] [--check]

Output: GD.jsonl, HK.jsonl, MO.jsonl (one STIX object a line) and
expected.json. Tests import ``generate`` directly (tests/e2e/test_backends_agree.py).
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import random
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import idna

AGENCIES = ("GD", "HK", "MO")
TLP2_CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
ES_ID_LIMIT = 512

# ---------------------------------------------------------------------------- oracle
# Canonical forms per DOMAIN.md "Sameness" (as documented in core/canonical.py).

HASH_CANON = {
    "md5": "md5",
    "sha1": "sha-1",
    "sha224": "sha-224",
    "sha256": "sha-256",
    "sha384": "sha-384",
    "sha512": "sha-512",
    "sha3256": "sha3-256",
    "sha3512": "sha3-512",
    "ripemd160": "ripemd-160",
    "whirlpool": "whirlpool",
    "ssdeep": "ssdeep",
    "tlsh": "tlsh",
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
URL_ALLOWED = "-._~:/?#[]@!$&'()*+,;="  # RFC 3986 unreserved + reserved (alnum implicit)
HOST_ALLOWED = "-._~[]!$&'()*+,;="


def canon_alg(name: str) -> str:
    key = re.sub(r"[-_'\s]", "", name).lower()
    return HASH_CANON.get(key, name.strip().strip("'").lower())


def canon_domain(host: str) -> str:
    host = host.rstrip(".")
    if host.isascii():
        return host.lower()
    out = []
    for label in host.split("."):
        if label.isascii():
            out.append(label.lower())
            continue
        try:
            out.append(idna.encode(label, uts46=True).decode("ascii"))
        except (idna.IDNAError, UnicodeError, ValueError):
            out.append(label.lower())
    return ".".join(out)


def ip_canon(text: str) -> str | None:
    if not text or not (text[0].isdigit() or text[0] in ":abcdefABCDEF"):
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if net.prefixlen == net.max_prefixlen:
        a = net.network_address
        if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
            return str(a.ipv4_mapped)
        return str(a)
    return str(net)


@dataclass
class Url:
    """A URL as the generator means it: canonical pieces."""

    scheme: str  # lower
    host: str  # as meant (may be unicode / IP / [v6])
    port: str = ""  # non-default only
    path: str = "/"  # may hold non-ASCII; no '%' except canonical upper-case escapes
    query: str = ""

    def canonical(self) -> str:
        h = self.host
        if h.startswith("["):
            host = "[" + str(ipaddress.IPv6Address(h[1:-1])) + "]"
        elif ip_canon(h) is not None and "/" not in ip_canon(h) and h[:1].isdigit():
            host = ip_canon(h)
        else:
            host = quote(canon_domain(h), safe=HOST_ALLOWED).lower()
        s = f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")
        s += quote(self.path, safe=URL_ALLOWED + "%") or "/"
        if self.query:
            s += "?" + quote(self.query, safe=URL_ALLOWED + "%")
        return s

    def bare_host(self) -> str | None:
        if self.path == "/" and not self.query and not self.port:
            return self.host
        return None


def key(otype: str, path: str, value: str) -> str:
    return f"{otype}|{path}|{value}"


@dataclass
class Cmp:
    """One comparison as meant: type, path steps (canonical), operator, value."""

    otype: str
    steps: list[str]
    value: Any  # str for string literals; bool/int for others; Url for url:value
    op: str = "="
    raw_literal: str | None = None  # for LIKE / MATCHES / IN: literal text kept verbatim

    @property
    def is_hash(self) -> bool:
        return len(self.steps) >= 2 and self.steps[-2] == "hashes"

    def canon_value(self) -> str:
        v = self.value
        t, p = self.otype, ".".join(self.steps)
        if isinstance(v, Url):
            return v.canonical()
        assert isinstance(v, str)
        if self.is_hash:
            alg = self.steps[-1]
            if alg == "tlsh":
                return v.strip().upper()
            return v.strip().lower() if re.fullmatch(r"[0-9a-fA-F]*", v.strip()) else v.strip()
        if t in ("ipv4-addr", "ipv6-addr"):
            return ip_canon(v) or v.strip().lower()
        if t == "domain-name":
            return canon_domain(v)
        if t == "email-addr" or (t == "email-message" and p.endswith(".value")):
            local, _, dom = v.rpartition("@")
            return local.lower() + "@" + canon_domain(dom)
        if t == "network-traffic" and p.endswith("_ref.value"):
            return ip_canon(v) or canon_domain(v)
        return v.strip()

    def simple_key(self) -> str:
        """Key of this comparison when it stands alone (cross-type rules applied)."""
        t, p = self.otype, ".".join(self.steps)
        if t == "domain-name" and p == "value":
            a = ip_canon(canon_domain(self.value))
            if a is not None:  # an address written as a domain is the address
                return key("ipv6-addr" if ":" in a else "ipv4-addr", "value", a)
        if (t in ("ipv4-addr", "ipv6-addr") and p == "value") or (
            t == "network-traffic" and p in ("dst_ref.value", "src_ref.value")
        ):
            a = ip_canon(self.value)
            if a is not None:
                return key("ipv6-addr" if ":" in a else "ipv4-addr", "value", a)
            if t == "network-traffic":
                return key("domain-name", "value", canon_domain(self.value))
        if t == "url" and p == "value":
            u: Url = self.value
            bh = u.bare_host()
            if bh is not None:
                inner = bh[1:-1] if bh.startswith("[") else bh
                a = ip_canon(inner)
                if a is not None:
                    return key("ipv6-addr" if ":" in a else "ipv4-addr", "value", a)
                return key("domain-name", "value", canon_domain(bh))
            return key("url", "value", u.canonical())
        if t == "email-message" and p in ("from_ref.value", "sender_ref.value"):
            return key("email-addr", "value", self.canon_value())
        return key(t, p, self.canon_value())

    def address_of_url_host(self) -> list[str]:
        """A URL naming more than its address host also names the address (core/observables.py)."""
        if (
            self.otype != "url"
            or not isinstance(self.value, Url)
            or self.value.bare_host() is not None
        ):
            return []
        h = self.value.host
        inner = h[1:-1] if h.startswith("[") else h
        a = ip_canon(inner) if inner[:1].isdigit() or h.startswith("[") else None
        if a is None or "/" in a:
            return []
        return [key("ipv6-addr" if ":" in a else "ipv4-addr", "value", a)]

    def path_text(self) -> str:
        out = ""
        for s in self.steps:
            if s.startswith("["):
                out += s
            else:
                st = (
                    s
                    if _IDENT.match(s)
                    else "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
                )
                out += st if not out else "." + st
        return out

    def canon_text(self) -> str:
        if self.raw_literal is not None:
            lit = self.raw_literal
        elif isinstance(self.value, bool):
            lit = "true" if self.value else "false"
        elif isinstance(self.value, int):
            lit = str(self.value)
        else:
            lit = "'" + self.canon_value().replace("\\", "\\\\").replace("'", "\\'") + "'"
        return f"{self.otype}:{self.path_text()} {self.op} {lit}"


@dataclass
class Obs:
    cmps: list[Cmp]
    join: str = "AND"  # inside the observation
    qualifier: str = ""  # e.g. "WITHIN 300 SECONDS"


@dataclass
class Spec:
    """A pattern as meant."""

    obs: list[Obs]
    join: str = "OR"  # between observations: OR / AND / FOLLOWEDBY
    group_qualifier: str = ""  # qualifier on the parenthesised whole

    def all_simple(self) -> bool:
        if self.group_qualifier or any(o.qualifier for o in self.obs):
            return False
        if len(self.obs) > 1 and self.join != "OR":
            return False
        for o in self.obs:
            if len(o.cmps) > 1 and o.join != "OR":
                return False
            for c in o.cmps:
                if c.op != "=" or not isinstance(c.value, (str, Url)) or c.raw_literal is not None:
                    return False
        return True

    def typed_reference(self) -> Cmp | None:
        """``[X:R.type = 'T' AND X:R.value = 'V']`` with T agreeing with V: the value comparison."""
        if len(self.obs) != 1 or self.group_qualifier or self.obs[0].qualifier:
            return None
        o = self.obs[0]
        if (
            o.join != "AND"
            or len(o.cmps) != 2
            or any(c.op != "=" or not isinstance(c.value, str) or c.raw_literal for c in o.cmps)
        ):
            return None
        typ, val = sorted(o.cmps, key=lambda c: c.steps[-1])
        if (
            typ.otype != val.otype
            or typ.steps[:-1] != val.steps[:-1]
            or (typ.steps[-1], val.steps[-1]) != ("type", "value")
        ):
            return None
        a = ip_canon(val.value)
        want = ("ipv6-addr" if ":" in a else "ipv4-addr") if a is not None else "domain-name"
        return val if typ.value.strip().lower() == want else None

    def expected_keys(self) -> list[str]:
        typed = self.typed_reference()
        if typed is not None:
            return [typed.simple_key()]
        if self.all_simple():
            seen: list[str] = []
            for o in self.obs:
                for c in o.cmps:
                    for k in (c.simple_key(), *c.address_of_url_host()):
                        if k not in seen:
                            seen.append(k)
            return seen
        return [key("pattern", "pattern", self.canon_text())]

    def canon_text(self) -> str:
        def obs_text(o: Obs) -> str:
            items = [c.canon_text() for c in o.cmps]
            if o.join in ("AND", "OR"):
                items.sort()
            t = "[" + f" {o.join} ".join(items) + "]"
            return f"{t} {o.qualifier}" if o.qualifier else t

        items = [obs_text(o) for o in self.obs]
        if len(items) == 1:
            text = items[0]
        else:
            if self.join in ("AND", "OR"):
                items.sort()
            text = f" {self.join} ".join(items)
        if self.group_qualifier:
            text = f"({text}) {self.group_qualifier}"
        return text


# ---------------------------------------------------------------------------- spelling


@dataclass
class Style:
    """How one producer / agency writes patterns."""

    name: str
    hash_names: dict[str, str]  # canonical alg -> path step as written
    spaces: bool = True
    hash_upper: bool = False
    domain_upper: bool = False
    trailing_dot: float = 0.0
    defang: float = 0.0
    url_upper_host: bool = False


PRODUCER_STYLES = {
    "misp": Style(
        "misp",
        {
            "md5": "MD5",
            "sha-1": "SHA1",
            "sha-256": "SHA256",
            "sha-512": "SHA512",
            "ssdeep": "SSDEEP",
            "tlsh": "TLSH",
        },
    ),
    "unit42": Style(
        "unit42", {"md5": "MD5", "sha-1": "'SHA-1'", "sha-256": "'SHA-256'", "sha-512": "'SHA-512'"}
    ),
    "ngo": Style(
        "ngo",
        {"md5": "md5", "sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512"},
        spaces=False,
    ),
    "vendor": Style("vendor", {"md5": "MD5", "sha-1": "'SHA-1'", "sha-256": "'SHA-256'"}),
}
AGENCY_STYLES = {
    "GD": Style(
        "GD", {"md5": "MD5", "sha-1": "'SHA-1'", "sha-256": "'SHA-256'", "sha-512": "'SHA-512'"}
    ),
    "HK": Style(
        "HK",
        {"md5": "MD5", "sha-1": "SHA1", "sha-256": "SHA256", "sha-512": "SHA512"},
        hash_upper=True,
        domain_upper=True,
        trailing_dot=0.5,
        url_upper_host=True,
    ),
    "MO": Style(
        "MO",
        {"md5": "md5", "sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512"},
        spaces=False,
        defang=1.0,
    ),
}
DEFAULT_HASH_STEP = {
    "md5": "MD5",
    "sha-1": "'SHA-1'",
    "sha-224": "'SHA-224'",
    "sha-256": "'SHA-256'",
    "sha-384": "'SHA-384'",
    "sha-512": "'SHA-512'",
    "sha3-256": "'SHA3-256'",
    "sha3-512": "'SHA3-512'",
    "ripemd-160": "'RIPEMD-160'",
    "whirlpool": "WHIRLPOOL",
    "ssdeep": "SSDEEP",
    "tlsh": "TLSH",
}


def esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("'", "\\'")


def defang_host(h: str) -> str:
    return h.replace(".", "[.]")


def write_url(u: Url, st: Style, rng: random.Random) -> str:
    scheme, host = u.scheme, u.host
    port = f":{u.port}" if u.port else ""
    if not port and rng.random() < 0.05:
        port = {"http": ":80", "https": ":443"}.get(scheme, "")  # default port written out
    path = u.path
    query = ("?" + u.query) if u.query else ""
    if st.defang and rng.random() < st.defang:
        scheme = {"http": "hxxp", "https": "hxxps", "ftp": "fxp"}.get(scheme, scheme)
        host = defang_host(host)
    elif st.url_upper_host and host.isascii():
        scheme, host = scheme.upper(), host.upper()
    return f"{scheme}://{host}{port}{path}{query}"


def write_value(c: Cmp, st: Style, rng: random.Random) -> str:
    v = c.value
    if isinstance(v, Url):
        return write_url(v, st, rng)
    if c.is_hash:
        return v.upper() if st.hash_upper and c.steps[-1] not in ("ssdeep",) else v
    t, p = c.otype, ".".join(c.steps)
    is_dom = (t == "domain-name" and p in ("value", "resolves_to_refs[*].value")) or (
        t == "network-traffic" and p.endswith("_ref.value") and ip_canon(v) is None
    )
    if is_dom and v.isascii():
        if st.defang and rng.random() < st.defang:
            return defang_host(v)
        out = v.upper() if st.domain_upper else v
        if st.trailing_dot and rng.random() < st.trailing_dot:
            out += "."
        return out
    if (t in ("ipv4-addr",) or (t == "network-traffic" and p.endswith("_ref.value"))) and ip_canon(
        v
    ):
        if st.defang and rng.random() < st.defang and "." in v:
            return defang_host(v)
        return v
    if t == "email-addr" and st.defang and rng.random() < st.defang:
        return v.replace("@", "[@]").replace(".", "[.]")
    return v


def write_cmp(c: Cmp, st: Style, rng: random.Random) -> str:
    steps = list(c.steps)
    if c.is_hash:
        steps[-1] = st.hash_names.get(steps[-1]) or DEFAULT_HASH_STEP.get(steps[-1], steps[-1])
    path = ""
    for s in steps:
        if s.startswith("[") or s.startswith("'"):
            path += s if s.startswith("[") or not path else "." + s
            continue
        stp = s if _IDENT.match(s) else "'" + esc(s) + "'"
        path += stp if not path else "." + stp
    if c.raw_literal is not None:
        lit = c.raw_literal
    elif isinstance(c.value, bool):
        lit = "true" if c.value else "false"
    elif isinstance(c.value, int):
        lit = str(c.value)
    else:
        lit = "'" + esc(write_value(c, st, rng)) + "'"
    sp = " " if st.spaces or c.op != "=" else ""
    return f"{c.otype}:{path}{sp}{c.op}{sp}{lit}"


def render(spec: Spec, st: Style, rng: random.Random) -> str:
    def obs_text(o: Obs) -> str:
        t = "[" + f" {o.join} ".join(write_cmp(c, st, rng) for c in o.cmps) + "]"
        return f"{t} {o.qualifier}" if o.qualifier else t

    text = f" {spec.join} ".join(obs_text(o) for o in spec.obs)
    if spec.group_qualifier:
        text = f"({text}) {spec.group_qualifier}"
    return text


# ---------------------------------------------------------------------------- values


class Values:
    WORDS = (
        "update",
        "cdn",
        "secure",
        "login",
        "mail",
        "static",
        "api",
        "cloud",
        "sync",
        "portal",
        "news",
        "track",
        "dl",
        "files",
        "weather",
        "check",
        "auth",
        "service",
        "img",
        "host",
    )
    ZONES = ("example", "test", "example.com", "example.net", "example.org", "invalid")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        v4 = [f"{a}.{i}" for a in ("192.0.2", "198.51.100", "203.0.113") for i in range(1, 255)]
        rng.shuffle(v4)
        self.v4 = v4
        self.bench = 0

    def unique(self, make) -> str:
        for _ in range(1000):
            v = make()
            if v not in self.used:
                self.used.add(v)
                return v
        raise RuntimeError("value space exhausted")

    def domain(self) -> str:
        r = self.rng

        def make() -> str:
            w = r.choice(self.WORDS) + (str(r.randint(1, 999)) if r.random() < 0.6 else "")
            if r.random() < 0.3:
                w = f"{r.choice(self.WORDS)}-{w}"
            if r.random() < 0.35:
                w = f"{r.choice(self.WORDS)}.{w}"
            return f"{w}.{r.choice(self.ZONES)}"

        return self.unique(make)

    def ipv4(self) -> str:
        if self.v4:
            v = self.v4.pop()
        else:  # 198.18.0.0/15 benchmarking range
            self.bench += 1
            v = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.0.0")) + self.bench))
        self.used.add(v)
        return v

    def ipv6(self) -> str:
        return self.unique(
            lambda: str(ipaddress.IPv6Address((0x20010DB8 << 96) | self.rng.getrandbits(64)))
        )

    def hexh(self, nbytes: int) -> str:
        return self.unique(lambda: f"{self.rng.getrandbits(nbytes * 8):0{nbytes * 2}x}")

    def ssdeep(self) -> str:
        a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        r = self.rng
        return self.unique(
            lambda: (
                f"{r.choice((96, 192, 384, 768, 1536, 3072, 6144))}:"
                + "".join(r.choice(a) for _ in range(r.randint(20, 64)))
                + ":"
                + "".join(r.choice(a) for _ in range(r.randint(10, 40)))
            )
        )

    def tlsh(self) -> str:
        return self.unique(lambda: "T1" + f"{self.rng.getrandbits(280):070X}")

    def filename(self) -> str:
        r = self.rng
        return self.unique(
            lambda: (
                r.choice(
                    (
                        "invoice",
                        "update",
                        "setup",
                        "payload",
                        "report",
                        "doc",
                        "svchost",
                        "chrome_update",
                        "readme",
                    )
                )
                + (str(r.randint(1, 9999)) if r.random() < 0.7 else "")
                + r.choice((".exe", ".dll", ".zip", ".js", ".docm", ".lnk", ".apk", ".ps1"))
            )
        )

    def url(self, host: str | None = None) -> Url:
        r = self.rng
        segs = [
            r.choice(("wp-content", "admin", "gate", "api", "v1", "dl", "files", "images", "s"))
            for _ in range(r.randint(0, 4))
        ]
        leaf = r.choice(
            ("index.php", "gate.php", "payload.bin", "x", "update.exe", "login.html", "")
        )
        path = "/" + "/".join(segs + [leaf]) if (segs or leaf) else "/" + f"{r.getrandbits(32):08x}"
        if path == "/":
            path = f"/{r.getrandbits(24):06x}"
        query = ""
        if r.random() < 0.25:
            query = "&".join(
                f"{r.choice('abcdefghijk')}{i}={r.getrandbits(20):x}"
                for i in range(r.randint(1, 4))
            )
        if r.random() < 0.05:
            path += "/a%2Fb"  # escaped reserved char: canonical keeps upper-case %2F
        return Url(r.choice(("http", "https", "http")), host or self.domain(), "", path, query)


# ---------------------------------------------------------------------------- objects


def new_id(rng: random.Random, otype: str) -> str:
    return f"{otype}--{uuid.UUID(int=rng.getrandbits(128), version=4)}"


BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def ts(t: datetime, style: str) -> str:
    if style == "ngo":
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == "unit42":
        return t.strftime("%Y-%m-%dT%H:%M:%S.001Z")
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


PRODUCER_IDENTITY = {
    p: f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, 'threatbay-corpus-producer:' + p)}"
    for p in PRODUCER_STYLES
}
AGENCY_IDENTITY = {
    a: f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, 'threatbay-corpus-agency:' + a)}"
    for a in AGENCIES
}
EXT_PROP = (
    f"extension-definition--{uuid.uuid5(uuid.NAMESPACE_URL, 'threatbay-corpus-ext:property')}"
)
EXT_TOP = f"extension-definition--{uuid.uuid5(uuid.NAMESPACE_URL, 'threatbay-corpus-ext:toplevel')}"

MISP_TYPES = {
    "sha-256": "sha256",
    "md5": "md5",
    "sha-1": "sha1",
    "domain-name": "domain",
    "url": "url",
    "ipv4-addr": "ip-dst",
    "network-traffic": "ip-dst",
    "file": "filename",
    "email-addr": "email-src",
}
PHASES = (
    "reconnaissance",
    "weaponization",
    "delivery",
    "exploitation",
    "installation",
    "command-and-control",
    "actions-on-objectives",
)


def indicator(
    rng: random.Random,
    spec: Spec,
    producer: str,
    when: datetime,
    extra: dict | None = None,
    hint: str = "",
) -> dict[str, Any]:
    st = PRODUCER_STYLES[producer]
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": new_id(rng, "indicator"),
        "created": ts(when, producer),
        "modified": ts(when, producer),
    }
    pattern = render(spec, st, rng)
    if producer == "misp":
        obj["created_by_ref"] = PRODUCER_IDENTITY["misp"]
        cat = (
            "Network activity"
            if hint in ("network-traffic", "domain-name", "url", "ipv4-addr")
            else "Payload delivery"
        )
        obj["kill_chain_phases"] = [{"kill_chain_name": "misp-category", "phase_name": cat}]
        obj["indicator_types"] = [
            f'misp:type="{MISP_TYPES.get(hint, "other")}"',
            f'misp:category="{cat}"',
            'misp:to_ids="True"',
        ]
        obj["valid_from"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    elif producer == "unit42":
        first = spec.obs[0].cmps[0].value  # real Unit 42 names are the file name or the IOC value
        first = first.canonical() if isinstance(first, Url) else first
        obj["name"] = first[:100] if isinstance(first, str) and first else "indicator"
        obj["indicator_types"] = ["malicious-activity"]
        obj["valid_from"] = ts(when - timedelta(hours=rng.randint(1, 900)), producer)
        if rng.random() < 0.4:
            obj["description"] = rng.choice(
                (
                    "Zip archive used for infection.",
                    "C2 server.",
                    "64-bit Windows executable (.exe) file.",
                    "Phishing domain spoofing a bank.",
                )
            )
        if rng.random() < 0.02:
            obj["kill_chain_phases"] = [
                {
                    "kill_chain_name": "lockheed-martin-cyber-kill-chain",
                    "phase_name": rng.choice(PHASES),
                }
            ]
    elif producer == "ngo":
        obj["indicator_types"] = ["malicious-activity"]
        obj["pattern_version"] = "2.1"
        obj["valid_from"] = obj["created"]
    else:  # vendor, x_ic_* style (SEKOIA-like)
        obj["created_by_ref"] = PRODUCER_IDENTITY["vendor"]
        obj["valid_from"] = ts(when, producer)
        obj["valid_until"] = ts(when + timedelta(days=rng.randint(30, 400)), producer)
        obj["revoked"] = False
        obj["lang"] = "en"
        obj["confidence"] = rng.choice((50, 70, 80, 100))
        obj["x_ic_deprecated"] = False
        obj["x_ic_is_in_flint"] = rng.random() < 0.5
        obj["x_ic_impacted_sectors"] = [new_id(rng, "identity") for _ in range(rng.randint(0, 8))]
        obj["x_ic_impacted_locations"] = [new_id(rng, "location") for _ in range(rng.randint(0, 3))]
        obj["x_inthreat_sources_refs"] = [new_id(rng, "identity")]
        obj["kill_chain_phases"] = [
            {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": p}
            for p in rng.sample(PHASES, 2)
        ] + [{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}]
        obj["external_references"] = [
            {
                "source_name": "Vendor report",
                "url": "https://example.com/report/1",
                "description": "synthetic",
            }
        ]
        if rng.random() < 0.3:
            obj["x_ic_external_refs"] = [new_id(rng, "external-reference")]
    obj["pattern"] = pattern
    obj["pattern_type"] = "stix"
    obj["object_marking_refs"] = [TLP2_CLEAR]
    if extra:
        obj.update(extra)
    return obj


# ---------------------------------------------------------------------------- shapes


def C(t: str, path: str, v: Any, op: str = "=", raw: str | None = None) -> Cmp:
    steps = []
    for part in re.findall(r"'[^']*'|\[[^\]]*\]|[^.\[]+", path):
        steps.append(part.strip("'") if part.startswith("'") else part)
    if len(steps) >= 2 and steps[-2] == "hashes":
        steps[-1] = canon_alg(steps[-1])
    return Cmp(t, steps, v, op, raw)


def S(*cmps: Cmp, join: str = "AND") -> Spec:
    return Spec([Obs(list(cmps), join)])


class Shapes:
    """Each method returns (spec, producer, hint). Weights from shapes_real.md."""

    def __init__(self, rng: random.Random, vals: Values) -> None:
        self.r, self.v = rng, vals

    def producer(self, *choices: str) -> str:
        return self.r.choice(choices)

    # --- simple equality
    def domain(self):
        return (
            S(C("domain-name", "value", self.v.domain())),
            self.producer("ngo", "ngo", "misp", "unit42"),
            "domain-name",
        )

    def sha256(self):
        return (
            S(C("file", "hashes.sha256", self.v.hexh(32))),
            self.producer("unit42", "misp", "ngo"),
            "sha-256",
        )

    def url(self):
        r = self.r
        host = None
        if r.random() < 0.19:
            host = self.v.ipv4()  # address host + path (725 of 3908 real URLs)
        u = self.v.url(host)
        if r.random() < 0.04:
            u = Url(u.scheme, self.v.domain())  # bare host URL -> domain-name key
        elif r.random() < 0.012:
            u = Url("http", self.v.ipv4())  # bare address URL -> ipv4-addr key
        return S(C("url", "value", u)), self.producer("unit42", "misp", "misp", "ngo"), "url"

    def ipv4(self):
        return (
            S(C("ipv4-addr", "value", self.v.ipv4())),
            self.producer("unit42", "ngo", "vendor"),
            "ipv4-addr",
        )

    def app_id(self):
        r = self.r
        return (
            S(
                C(
                    "app",
                    "id",
                    f"com.{r.choice(Values.WORDS)}.{r.choice(Values.WORDS)}{r.randint(1, 99)}",
                )
            ),
            "ngo",
            "app",
        )

    def cmdline(self):
        r = self.r
        n = r.choice((60, 120, 300, 700, 900)) if r.random() < 0.1 else r.randint(20, 200)
        body = "powershell.exe -nop -w hidden -enc " + "".join(
            r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
            for _ in range(n)
        )
        return S(C("process", "command_line", body)), "unit42", "process"

    def filename(self):
        return S(C("file", "name", self.v.filename())), self.producer("unit42", "misp"), "file"

    def md5(self):
        return S(C("file", "hashes.md5", self.v.hexh(16))), self.producer("misp", "unit42"), "md5"

    def sha1(self):
        return (
            S(C("file", "hashes.sha1", self.v.hexh(20))),
            self.producer("unit42", "misp"),
            "sha-1",
        )

    def regkey(self):
        r = self.r
        return (
            S(
                C(
                    "windows-registry-key",
                    "key",
                    "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\"
                    f"{r.choice(Values.WORDS)}{r.randint(1, 99)}",
                )
            ),
            "unit42",
            "windows-registry-key",
        )

    def email(self):
        return (
            S(
                C(
                    "email-addr",
                    "value",
                    f"{self.r.choice(Values.WORDS)}{self.r.randint(1, 999)}@{self.v.domain()}",
                )
            ),
            self.producer("misp", "unit42"),
            "email-addr",
        )

    def email_from(self):
        return (
            S(
                C(
                    "email-message",
                    "from_ref.value",
                    f"Sender{self.r.randint(1, 99)}@{self.v.domain()}",
                )
            ),
            "misp",
            "email-addr",
        )

    def app_cert(self):
        return S(C("app", "cert.sha1", self.v.hexh(20).upper())), "ngo", "app"

    def process_name(self):
        return S(C("process", "name", self.v.filename())), "unit42", "process"

    def file_path(self):
        return S(C("file", "path", f"/private/var/tmp/{self.v.filename()}")), "ngo", "file"

    def directory(self):
        return (
            S(
                C(
                    "directory",
                    "path",
                    f"/private/var/db/{self.r.choice(Values.WORDS)}{self.r.randint(1, 999)}",
                )
            ),
            "ngo",
            "directory",
        )

    def nt_simple(self):
        return (
            S(C("network-traffic", "dst_ref.value", self.v.domain())),
            "unit42",
            "network-traffic",
        )

    def dst_port(self):  # non-string literal -> pattern key
        return (
            S(C("network-traffic", "dst_port", self.r.choice((443, 8080, 4444, 8443)))),
            "unit42",
            "network-traffic",
        )

    def mutex(self):
        return S(C("mutex", "name", f"Global\\{self.v.hexh(8)}")), "misp", "mutex"

    # --- compounds
    def nt_dst(self):
        ip = self.v.ipv4()
        return (
            S(
                C("network-traffic", "dst_ref.type", "ipv4-addr"),
                C("network-traffic", "dst_ref.value", ip),
            ),
            "misp",
            "network-traffic",
        )

    def nt_src(self):
        ip = self.v.ipv4()
        return (
            S(
                C("network-traffic", "src_ref.type", "ipv4-addr"),
                C("network-traffic", "src_ref.value", ip),
            ),
            "misp",
            "network-traffic",
        )

    def nt_dst_port(self):
        return (
            S(
                C("network-traffic", "dst_port", self.r.choice((80, 443, 8080))),
                C("network-traffic", "dst_ref.type", "ipv4-addr"),
                C("network-traffic", "dst_ref.value", self.v.ipv4()),
            ),
            "misp",
            "network-traffic",
        )

    def sha1_name(self):
        return (
            S(C("file", "hashes.sha1", self.v.hexh(20)), C("file", "name", self.v.filename())),
            "unit42",
            "file",
        )

    def three_hashes(self):
        return (
            S(
                C("file", "hashes.md5", self.v.hexh(16)),
                C("file", "hashes.sha1", self.v.hexh(20)),
                C("file", "hashes.sha256", self.v.hexh(32)),
            ),
            "unit42",
            "file",
        )

    def sha256_name(self):
        return (
            S(C("file", "hashes.sha256", self.v.hexh(32)), C("file", "name", self.v.filename())),
            "unit42",
            "file",
        )

    def resolves_to(self):
        return (
            S(
                C("domain-name", "value", self.v.domain()),
                C("domain-name", "resolves_to_refs[*].value", self.v.ipv4()),
            ),
            "misp",
            "domain-name",
        )

    def x509(self):
        return (
            S(
                C("x509-certificate", "issuer", "CN=Synthetic CA, O=Example"),
                C("x509-certificate", "serial_number", self.v.hexh(8)),
                C("x509-certificate", "is_self_signed", True),
                C(
                    "x509-certificate",
                    "validity_not_before",
                    "2024-01-01T00:00:00Z",
                    raw="t'2024-01-01T00:00:00Z'",
                ),
            ),
            "misp",
            "x509-certificate",
        )

    def registry_values(self):
        return (
            S(
                C("windows-registry-key", "key", "HKEY_LOCAL_MACHINE\\SOFTWARE\\Synthetic"),
                C(
                    "windows-registry-key",
                    "values[*].data",
                    f"C:\\Users\\Public\\{self.v.filename()}",
                ),
            ),
            "unit42",
            "windows-registry-key",
        )

    # --- other / OR
    def or_domains(self):
        n = self.r.choice((4, 6))
        return (
            S(*[C("domain-name", "value", self.v.domain()) for _ in range(n)], join="OR"),
            "vendor",
            "domain-name",
        )

    def or_observations(self):
        return (
            Spec(
                [
                    Obs([C("file", "hashes.sha256", self.v.hexh(32))]),
                    Obs([C("url", "value", self.v.url())]),
                ],
                "OR",
            ),
            "vendor",
            "file",
        )

    def mixed_and_or(self):
        return (
            Spec(
                [
                    Obs(
                        [
                            C("file", "name", self.v.filename()),
                            C("file", "hashes.sha256", self.v.hexh(32)),
                        ]
                    ),
                    Obs([C("domain-name", "value", self.v.domain())]),
                ],
                "OR",
            ),
            "unit42",
            "file",
        )

    def like(self):
        d = self.v.domain()
        return S(C("url", "value", None, "LIKE", f"'%{d}%'")), "unit42", "url"

    def followedby(self):
        return (
            Spec(
                [
                    Obs([C("file", "name", self.v.filename())]),
                    Obs([C("domain-name", "value", self.v.domain())]),
                ],
                "FOLLOWEDBY",
                "WITHIN 300 SECONDS",
            ),
            "unit42",
            "file",
        )

    def matches(self):
        return (
            S(C("process", "command_line", None, "MATCHES", "'^cmd\\\\.exe /c .*'")),
            "unit42",
            "process",
        )

    def yara(self):
        return None, "unit42", "yara"


# (method, weight per 10,000 base indicators) -- from shapes_real.md, floors for rare shapes
WEIGHTS = [
    ("domain", 3090),
    ("sha256", 3710),
    ("url", 1050),
    ("ipv4", 205),
    ("app_id", 160),
    ("cmdline", 64),
    ("filename", 58),
    ("md5", 40),
    ("sha1", 40),
    ("regkey", 32),
    ("email", 22),
    ("email_from", 8),
    ("app_cert", 27),
    ("process_name", 22),
    ("file_path", 16),
    ("directory", 14),
    ("nt_simple", 8),
    ("dst_port", 8),
    ("mutex", 8),
    ("nt_dst", 1235),
    ("nt_src", 63),
    ("nt_dst_port", 10),
    ("sha1_name", 34),
    ("three_hashes", 32),
    ("sha256_name", 25),
    ("resolves_to", 22),
    ("x509", 8),
    ("registry_values", 8),
    ("or_domains", 8),
    ("or_observations", 8),
    ("mixed_and_or", 8),
    ("like", 8),
    ("followedby", 8),
    ("matches", 8),
    ("yara", 8),
]


# ---------------------------------------------------------------------------- adversarial

RTL = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
NON_BMP = "\U0001f4a3\U0001d55c\U00020000"  # bomb, double-struck k, CJK ext B


# Valid STIX that ThreatBay rejects today (observed with --check): the reference ANTLR validator
# recurses once per comparison and raises RecursionError past ~977 comparisons at Python's default
# recursion limit; core.patterns reports that as "pattern could not be checked". Pure '='-OR
# patterns take the scanner path and are accepted at any size.
# Valid STIX that ThreatBay's validator rejected when the corpus was made, by shape name.
# Empty since the pattern parser stopped recursing (issue #15): the 1,000-comparison OR
# with one LIKE, once refused with a RecursionError, is accepted and correlated.
REJECTED_TODAY: dict[str, str] = {}


def adversarial(rng: random.Random, vals: Values) -> list[tuple[str, Spec | None, str, dict]]:
    out: list[tuple[str, Spec | None, str, dict]] = []
    # 1. dozens of hashes
    algs = [
        "md5",
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "sha3256",
        "sha3512",
        "ripemd160",
        "whirlpool",
        "ssdeep",
        "tlsh",
    ]
    sizes = {
        "md5": 16,
        "sha1": 20,
        "sha224": 28,
        "sha256": 32,
        "sha384": 48,
        "sha512": 64,
        "sha3256": 32,
        "sha3512": 64,
        "ripemd160": 20,
        "whirlpool": 64,
    }

    def hv(a: str) -> str:
        return (
            vals.ssdeep() if a == "ssdeep" else vals.tlsh() if a == "tlsh" else vals.hexh(sizes[a])
        )

    out.append(
        (
            "all-hash-algorithms-one-file",
            S(
                *[C("file", f"hashes.{a}", hv(a)) for a in algs],
                C("file", "name", vals.filename()),
                C("file", "size", rng.randint(1000, 10**7)),
            ),
            "misp",
            {},
        )
    )
    out.append(
        (
            "48-sha256-in-one-observation",
            S(*[C("file", "hashes.sha256", vals.hexh(32)) for _ in range(48)]),
            "unit42",
            {},
        )
    )
    out.append(
        (
            "36-observations-AND",
            Spec([Obs([C("file", "hashes.sha256", vals.hexh(32))]) for _ in range(36)], "AND"),
            "unit42",
            {},
        )
    )
    # 2. 40 KB URLs
    big = "/" + "/".join(f"{rng.getrandbits(64):016x}" for _ in range(2400))  # ~40.8 KB path
    out.append(
        (
            "40KB-url",
            S(C("url", "value", Url("https", vals.domain(), "", big[:40960]))),
            "unit42",
            {},
        )
    )
    q = "&".join(f"p{i}={rng.getrandbits(40):010x}" for i in range(2900))
    out.append(
        (
            "40KB-url-query-ip-host",
            S(C("url", "value", Url("http", vals.ipv4(), "8080", "/gate.php", q[:40960]))),
            "misp",
            {},
        )
    )
    # 3. 1,000-comparison ORs
    out.append(
        (
            "1000-OR-domains-one-observation",
            S(*[C("domain-name", "value", vals.domain()) for _ in range(1000)], join="OR"),
            "vendor",
            {},
        )
    )
    out.append(
        (
            "1000-OR-observations-ipv4",
            Spec([Obs([C("ipv4-addr", "value", vals.ipv4())]) for _ in range(1000)], "OR"),
            "vendor",
            {},
        )
    )
    out.append(
        (
            "1000-OR-with-one-LIKE (kept whole)",
            S(
                *[C("domain-name", "value", vals.domain()) for _ in range(999)],
                C("url", "value", None, "LIKE", "'%.example/%'"),
                join="OR",
            ),
            "vendor",
            {},
        )
    )
    # 4. non-BMP and RTL
    rtl_desc = {
        "description": f'تقرير {NON_BMP} דו"ח {RTL}gpj.exe — synthetic RTL / non-BMP text',
        "name": f"{NON_BMP} {RTL}fdp.scr",
    }
    out.append(
        ("rtl-override-file-name", S(C("file", "name", f"invoice{RTL}fdp.exe")), "unit42", rtl_desc)
    )
    out.append(
        ("non-bmp-file-name", S(C("file", "name", f"{NON_BMP}payload.exe")), "unit42", rtl_desc)
    )
    out.append(("arabic-idn-domain", S(C("domain-name", "value", "مثال.example")), "ngo", rtl_desc))
    out.append(("hebrew-idn-domain", S(C("domain-name", "value", "דוגמה.test")), "ngo", {}))
    out.append(
        (
            "emoji-domain (not valid IDNA2008)",
            S(C("domain-name", "value", f"\U0001f4a3{rng.randint(1, 99)}.example")),
            "ngo",
            {},
        )
    )
    out.append(
        (
            "non-bmp-url-path",
            S(C("url", "value", Url("https", vals.domain(), "", f"/{NON_BMP}/ملف.apk"))),
            "unit42",
            {},
        )
    )
    out.append(
        (
            "arabic-command-line",
            S(C("process", "command_line", f"cmd.exe /c echo مرحبا {NON_BMP} {RTL}")),
            "unit42",
            rtl_desc,
        )
    )
    # 5. IP literals written as domains / URLs
    ip_dom = vals.ipv4()
    out.append(("ipv4-as-domain-name", S(C("domain-name", "value", ip_dom)), "ngo", {}))
    out.append(("same-ipv4-as-ipv4-addr", S(C("ipv4-addr", "value", ip_dom)), "unit42", {}))
    out.append(("ipv6-as-domain-name", S(C("domain-name", "value", vals.ipv6())), "ngo", {}))
    out.append(("bare-ipv4-url", S(C("url", "value", Url("http", vals.ipv4()))), "misp", {}))
    out.append(
        ("https-ipv4-url-default-port", S(C("url", "value", Url("https", vals.ipv4()))), "misp", {})
    )
    out.append(
        (
            "ipv4-url-with-port-and-path",
            S(C("url", "value", Url("http", vals.ipv4(), "8080", "/gate.php"))),
            "misp",
            {},
        )
    )
    out.append(
        ("bare-ipv6-url", S(C("url", "value", Url("http", "[" + vals.ipv6() + "]"))), "misp", {})
    )
    out.append(
        (
            "ipv6-url-with-path",
            S(C("url", "value", Url("http", "[" + vals.ipv6() + "]", "", "/x.bin"))),
            "misp",
            {},
        )
    )
    out.append(("cidr-ipv4", S(C("ipv4-addr", "value", "198.51.100.0/24")), "vendor", {}))
    out.append(
        ("nt-dst-ref-domain", S(C("network-traffic", "dst_ref.value", vals.domain())), "unit42", {})
    )
    # 6. poison-pill command line (real: 861 B)
    out.append(
        (
            "2KB-command-line",
            S(
                C(
                    "process",
                    "command_line",
                    "cmd /c " + " & ".join(f"echo {rng.getrandbits(64):x}" for _ in range(90)),
                )
            ),
            "unit42",
            {},
        )
    )
    # 7. custom properties of every JSON type + extensions
    every = {
        "x_tb_null": None,
        "x_tb_bool": True,
        "x_tb_int": 42,
        "x_tb_negative": -7,
        "x_tb_bigint": 2**64 + 1,
        "x_tb_negbigint": -(2**70),
        "x_tb_float": 3.141592653589793,
        "x_tb_huge_float": 1.7976931348623157e308,
        "x_tb_tiny_float": 5e-324,
        "x_tb_string": f"text {NON_BMP} {RTL}",
        "x_tb_empty_string": "",
        "x_tb_object": {"a": {"b": {"c": [1, {"d": None}]}}, "e": "f"},
        "x_tb_array": [1, "two", None, True, 3.5, {"k": [2**65]}, [], {}],
        "x_tb_empty_array": [],
        "x_tb_empty_object": {},
    }
    out.append(
        (
            "custom-properties-every-json-type",
            S(C("domain-name", "value", vals.domain())),
            "vendor",
            every,
        )
    )
    conflict = {
        "x_tb_bool": "not a bool",
        "x_tb_int": "forty-two",
        "x_tb_object": [1, 2],
        "x_tb_array": {"a": 1},
        "x_tb_null": 0,
        "x_tb_string": {"nested": True},
    }
    out.append(
        (
            "custom-properties-conflicting-types",
            S(C("domain-name", "value", vals.domain())),
            "vendor",
            conflict,
        )
    )
    ext = {
        "extensions": {
            EXT_PROP: {
                "extension_type": "property-extension",
                "rank": 5,
                "score": 0.93,
                "tags": ["a", "b"],
                "nested": {"x": [1, None, "y"]},
                "big": 2**64,
            },
            EXT_TOP: {"extension_type": "toplevel-property-extension"},
        },
        "toplevel_score": 17,
        "toplevel_note": f"added by a toplevel-property-extension {NON_BMP}",
    }
    out.append(("property-extensions", S(C("file", "hashes.sha256", vals.hexh(32))), "vendor", ext))
    many = {
        f"x_tb_field_{i:04d}": (i if i % 3 == 0 else f"v{i}" if i % 3 == 1 else [i, str(i)])
        for i in range(1200)
    }
    out.append(
        (
            "1200-distinct-custom-properties",
            S(C("domain-name", "value", vals.domain())),
            "vendor",
            many,
        )
    )
    out.append(
        (
            "20KB-description",
            S(C("domain-name", "value", vals.domain())),
            "unit42",
            {"description": ("Synthetic description " + NON_BMP + " ") * 800},
        )
    )
    return out


def extension_definitions() -> list[dict]:
    base = {
        "spec_version": "2.1",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "created_by_ref": PRODUCER_IDENTITY["vendor"],
        "version": "1.0",
        "object_marking_refs": [TLP2_CLEAR],
    }
    return [
        dict(
            base,
            type="extension-definition",
            id=EXT_PROP,
            name="corpus property extension",
            schema="https://example.com/schema/property.json",
            extension_types=["property-extension"],
        ),
        dict(
            base,
            type="extension-definition",
            id=EXT_TOP,
            name="corpus toplevel extension",
            schema="https://example.com/schema/toplevel.json",
            extension_types=["toplevel-property-extension"],
            extension_properties=["toplevel_score", "toplevel_note"],
        ),
    ]


def identities() -> list[dict]:
    out = []
    for name, ident in list(PRODUCER_IDENTITY.items()) + list(AGENCY_IDENTITY.items()):
        out.append(
            {
                "type": "identity",
                "spec_version": "2.1",
                "id": ident,
                "created": "2024-01-01T00:00:00.000Z",
                "modified": "2024-01-01T00:00:00.000Z",
                "name": f"{name} (synthetic)",
                "identity_class": "organization",
                "object_marking_refs": [TLP2_CLEAR],
            }
        )
    return out


# ---------------------------------------------------------------------------- main


def generate(
    seed: int, base: int, p2: float, p3: float
) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    rng = random.Random(seed)
    vals = Values(rng)
    shapes = Shapes(rng, vals)
    total_w = sum(w for _, w in WEIGHTS)
    plan: list[str] = []
    for name, w in WEIGHTS:
        plan += [name] * max(2, round(base * w / total_w))
    rng.shuffle(plan)

    streams: dict[str, list[dict]] = {a: [] for a in AGENCIES}
    for o in identities() + extension_definitions():
        for a in AGENCIES:
            streams[a].append(o)
    expected: dict[str, set[str]] = collections.defaultdict(set)  # key -> agencies
    shape_counts = collections.Counter()
    adv_report = []
    rejected_today: list[dict] = []
    items: list[tuple[str, Spec | None, str, str, dict]] = []
    for name in plan:
        spec, producer, hint = getattr(shapes, name)()
        items.append((name, spec, producer, hint, {}))
    for name, spec, producer, extra in adversarial(rng, vals):
        items.append(("ADV:" + name, spec, producer, "", extra))

    for i, (name, spec, producer, hint, extra) in enumerate(items):
        agency = AGENCIES[i % 3] if not name.startswith("ADV:") else AGENCIES[len(adv_report) % 3]
        when = BASE_TIME + timedelta(minutes=rng.randint(0, 60 * 24 * 600))
        if spec is None:  # non-STIX pattern type: no observables
            obj = indicator(rng, S(C("file", "name", "x")), producer, when, hint=hint)
            obj["pattern_type"] = "yara"
            obj["pattern"] = 'rule synthetic { strings: $a = "synthetic" condition: $a }'
            obj.pop("pattern_version", None)
            streams[agency].append(obj)
            shape_counts[name] += 1
            continue
        obj = indicator(rng, spec, producer, when, extra, hint)
        keys = spec.expected_keys()
        streams[agency].append(obj)
        if name[4:] in REJECTED_TODAY:
            # valid STIX, but ThreatBay's validator rejects it today: kept out of expected_keys
            rejected_today.append(
                {
                    "id": obj["id"],
                    "agency": agency,
                    "shape": name[4:],
                    "reason": REJECTED_TODAY[name[4:]],
                    "keys_if_accepted": [k[:200] + "…" if len(k) > 200 else k for k in keys],
                }
            )
            adv_report.append(
                {
                    "shape": name[4:],
                    "id": obj["id"],
                    "agencies": [agency],
                    "pattern_chars": len(obj["pattern"]),
                    "expected_observables": 0,
                    "max_key_bytes": max(len(k.encode()) for k in keys),
                    "rejected_today": True,
                }
            )
            shape_counts[name] += 1
            continue
        for k in keys:
            expected[k].add(agency)
        shape_counts[name] += 1
        reporters = [agency]
        if (
            not name.startswith("ADV:")
            or name.startswith("ADV:ipv4-as")
            or name.startswith("ADV:arabic-idn")
        ):
            h = rng.random()
            others = [a for a in AGENCIES if a != agency]
            extra_agencies = others if h < p3 else [rng.choice(others)] if h < p3 + p2 else []
            for b in extra_agencies:
                dup = dict(obj)
                dup["id"] = new_id(rng, "indicator")
                t2 = when + timedelta(minutes=rng.randint(30, 60 * 24 * 45))
                dup["created"] = dup["modified"] = ts(t2, "misp")
                dup["created_by_ref"] = AGENCY_IDENTITY[b]
                dup["pattern"] = render(spec, AGENCY_STYLES[b], rng)
                streams[b].append(dup)
                reporters.append(b)
                for k in keys:
                    expected[k].add(b)
        if name.startswith("ADV:"):
            adv_report.append(
                {
                    "shape": name[4:],
                    "id": obj["id"],
                    "agencies": reporters,
                    "pattern_chars": len(obj["pattern"]),
                    "expected_observables": len(keys),
                    "max_key_bytes": max(len(k.encode()) for k in keys),
                }
            )

    for a in AGENCIES:  # TAXII-like order after the identities / extension definitions
        head = [o for o in streams[a] if o["type"] != "indicator"]
        rest = sorted(
            (o for o in streams[a] if o["type"] == "indicator"),
            key=lambda o: (o["modified"], o["id"]),
        )
        streams[a] = head + rest

    keys_sorted = sorted(expected)
    over = [k for k in keys_sorted if len(k.encode("utf-8")) > ES_ID_LIMIT]
    manifest = {
        "generator": "shapes_generator.py",
        "seed": seed,
        "base": base,
        "p2": p2,
        "p3": p3,
        "objects": {a: len(s) for a, s in streams.items()},
        "indicators": {
            a: sum(1 for o in s if o["type"] == "indicator") for a, s in streams.items()
        },
        "objects_total": sum(len(s) for s in streams.values()),
        "shape_counts": dict(shape_counts.most_common()),
        "distinct_observables": len(keys_sorted),
        "distinct_observables_by_type": dict(
            collections.Counter(k.split("|", 1)[0] for k in keys_sorted)
        ),
        "per_agency_distinct": {
            a: sum(1 for k in keys_sorted if a in expected[k]) for a in AGENCIES
        },
        "multi_agency": {
            "in_2": sum(1 for k in keys_sorted if len(expected[k]) == 2),
            "in_3": sum(1 for k in keys_sorted if len(expected[k]) == 3),
        },
        "keys_over_512_bytes": len(over),
        "max_key_bytes": max(len(k.encode()) for k in keys_sorted),
        "adversarial": adv_report,
        "rejected_today": rejected_today,
        "expected_keys": [{"key": k, "agencies": sorted(expected[k])} for k in keys_sorted],
    }
    return streams, manifest


def check(streams: dict[str, list[dict]], manifest: dict[str, Any]) -> dict[str, Any]:
    """Cross-check the oracle and validity against ThreatBay (this checkout)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from core.errors import InvalidPattern
    from core.observables import observables
    from ingest.validate import validation_error

    got: dict[str, set[str]] = collections.defaultdict(set)
    invalid, crashes = [], []
    known = {r["id"] for r in manifest.get("rejected_today", [])}
    still_rejected = []
    for a, objs in streams.items():
        for o in objs:
            err = validation_error(o)
            if err and o["id"] in known:
                still_rejected.append(o["id"])
                continue
            if err:
                invalid.append({"agency": a, "id": o["id"], "error": err[:300]})
                continue
            if o["type"] != "indicator" or o["pattern_type"] != "stix":
                continue
            try:
                for ob in observables(o["pattern"]):
                    got[ob.key].add(a)
            except (InvalidPattern, RecursionError, Exception) as exc:  # noqa: BLE001
                crashes.append({"id": o["id"], "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
    exp = {e["key"]: set(e["agencies"]) for e in manifest["expected_keys"]}
    only_oracle = sorted(set(exp) - set(got))
    only_tb = sorted(set(got) - set(exp))
    agency_diff = [k for k in exp if k in got and exp[k] != got[k]]
    if len(still_rejected) != len(
        known
    ):  # ThreatBay now accepts them: move them back into expected
        invalid.append(
            {
                "note": "rejected_today objects now accepted",
                "ids": sorted(known - set(still_rejected)),
            }
        )
    return {
        "validation_errors": invalid,
        "observables_crashes": crashes,
        "expected_not_produced": [k[:300] for k in only_oracle],
        "produced_not_expected": [k[:300] for k in only_tb],
        "agency_mismatches": [k[:300] for k in agency_diff],
        "agree": not (invalid or crashes or only_oracle or only_tb or agency_diff),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gen_out")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--base", type=int, default=2400, help="base (producer) indicators before overlap copies"
    )
    ap.add_argument("--p2", type=float, default=0.12)
    ap.add_argument("--p3", type=float, default=0.05)
    ap.add_argument("--check", action="store_true", help="cross-check against this checkout")
    args = ap.parse_args()
    streams, manifest = generate(args.seed, args.base, args.p2, args.p3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for a, objs in streams.items():
        with (out / f"{a}.jsonl").open("w", encoding="utf-8") as f:
            for o in objs:
                f.write(json.dumps(o, ensure_ascii=False) + "\n")
    (out / "expected.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    summary = {k: v for k, v in manifest.items() if k not in ("expected_keys", "shape_counts")}
    print(json.dumps(summary, ensure_ascii=False, indent=1))
    if args.check:
        result = check(streams, manifest)
        (out / "check.json").write_text(
            json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        print(json.dumps({k: (v if isinstance(v, bool) else len(v)) for k, v in result.items()}))
        for k in (
            "validation_errors",
            "observables_crashes",
            "expected_not_produced",
            "produced_not_expected",
            "agency_mismatches",
        ):
            for item in result[k][:6]:
                print(k, "::", str(item)[:400])
        return 0 if result["agree"] else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
