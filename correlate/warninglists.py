"""False-positive lists: MISP warninglists and special-purpose address ranges (DOMAIN.md "Score").

Loaded once at start (``Warninglists()`` reads pymispwarninglists' bundled data,
~2.5 M entries, a few seconds) into hash indexes so a lookup is a handful of dict
probes, never a scan:

- ``string`` lists: exact match (lower case);
- ``hostname`` lists: the value and each parent domain (``a.b.c`` -> ``b.c`` -> ``c``);
- ``cidr`` lists and special ranges: one dict per prefix length present, probed with
  the masked address;
- ``substring`` lists: the 4,941-entry disposable-e-mail list is matched on the
  e-mail's domain and its parents (what it is for); the two small ones (37 entries)
  are scanned; ``regex`` lists (phone numbers, contact addresses) are not used.

A list is only consulted for the observable types its ``matching_attributes`` name.

Documentation values are our demo and test "attackers": 192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20 and the RFC 2606/6761
example names (``example.com/.net/.org`` and anything under ``.example``, ``.test``,
``.invalid``). Unless ``treat_documentation_ranges_as_benign`` is set, such a value
gets no hit at all -- neither a documentation-range hit nor a MISP hit (several MISP
lists, e.g. the Tranco and Umbrella top sites, contain ``example.com``). Callers may
also switch off whole MISP lists by name with ``exclude_lists``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from core.canonical import canonical_domain, ip_or_none

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: IANA special-purpose ranges (RFC 6890 and successors) -> hit category.
SPECIAL_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "reserved-range"),
    ("10.0.0.0/8", "private-range"),
    ("100.64.0.0/10", "shared-address-range"),
    ("127.0.0.0/8", "loopback-range"),
    ("169.254.0.0/16", "link-local-range"),
    ("172.16.0.0/12", "private-range"),
    ("192.0.0.0/24", "reserved-range"),
    ("192.0.2.0/24", "documentation-range"),
    ("192.88.99.0/24", "reserved-range"),
    ("192.168.0.0/16", "private-range"),
    ("198.18.0.0/15", "benchmarking-range"),
    ("198.51.100.0/24", "documentation-range"),
    ("203.0.113.0/24", "documentation-range"),
    ("224.0.0.0/4", "multicast-range"),
    ("240.0.0.0/4", "reserved-range"),
    ("255.255.255.255/32", "broadcast-address"),
    ("::/128", "unspecified-address"),
    ("::1/128", "loopback-range"),
    ("::ffff:0:0/96", "ipv4-mapped-range"),
    ("100::/64", "discard-range"),
    ("2001:db8::/32", "documentation-range"),
    ("3fff::/20", "documentation-range"),
    ("fc00::/7", "private-range"),
    ("fe80::/10", "link-local-range"),
    ("ff00::/8", "multicast-range"),
)
DOCUMENTATION_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(net) for net, kind in SPECIAL_RANGES if kind == "documentation-range"
)
DOCUMENTATION_DOMAINS = ("example.com", "example.net", "example.org")
DOCUMENTATION_TLDS = ("example", "test", "invalid")

#: Our observable groups -> MISP attribute types a list must name to apply.
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "ip": frozenset({"ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"}),
    "domain": frozenset({"domain", "hostname", "domain|ip", "hostname|port"}),
    "url": frozenset({"url", "uri", "link"}),
    "email": frozenset(
        "email email-src email-dst target-email whois-registrant-email dns-soa-email".split()
    ),
    "hash": frozenset(
        "md5 sha1 sha224 sha256 sha384 sha512 ssdeep filename|md5 filename|sha1 filename|sha256"
        " filename|sha512 filename|sha224 x509-fingerprint-md5 x509-fingerprint-sha1"
        " x509-fingerprint-sha256".split()
    ),
}
_EMAIL_DOMAIN_SUBSTRING_MIN = 1000  # a substring list this big is a list of e-mail domains


def _parents(host: str) -> Iterable[str]:
    """``a.b.c`` -> ``a.b.c``, ``b.c``, ``c``."""
    while host:
        yield host
        _, _, host = host.partition(".")


def is_documentation_domain(domain: str) -> bool:
    """True for RFC 2606 / RFC 6761 example names (``example.com``, ``*.test``...)."""
    host = domain.rstrip(".").lower()
    tld = host.rpartition(".")[2]
    return tld in DOCUMENTATION_TLDS or any(
        host == d or host.endswith("." + d) for d in DOCUMENTATION_DOMAINS
    )


def _url_host(url: str) -> str:
    rest = url.partition("://")[2] or url
    authority = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


class _CidrIndex:
    """Network membership without scans: one dict per (version, prefix length) present."""

    def __init__(self) -> None:
        self._tables: dict[int, list[tuple[int, int, dict[int, tuple[str, ...]]]]] = {4: [], 6: []}
        self._by_prefix: dict[tuple[int, int], dict[int, tuple[str, ...]]] = {}

    def add(self, version: int, address: int, prefixlen: int, label: str) -> None:
        shift = (32 if version == 4 else 128) - prefixlen
        table = self._by_prefix.get((version, prefixlen))
        if table is None:
            table = self._by_prefix[(version, prefixlen)] = {}
            self._tables[version].append((prefixlen, shift, table))
            self._tables[version].sort(key=lambda row: row[0])
        key = address >> shift
        labels = table.get(key, ())
        if label not in labels:
            table[key] = (*labels, label)

    def hits(self, version: int, address: int, prefixlen: int) -> list[str]:
        """Labels of every indexed network containing ``address/prefixlen``."""
        out: list[str] = []
        for table_prefixlen, shift, table in self._tables[version]:
            if table_prefixlen > prefixlen:
                break
            labels = table.get(address >> shift)
            if labels:
                out.extend(label for label in labels if label not in out)
        return out


class Warninglists:
    """False-positive lookups for canonical observables; build once, share."""

    def __init__(
        self,
        exclude_lists: Iterable[str] = (),
        *,
        treat_documentation_ranges_as_benign: bool = False,
        misp_lists: Any = None,
    ) -> None:
        """Load MISP warninglists (or use ``misp_lists``, a ``WarningLists``) and index them."""
        if misp_lists is None:
            import pymispwarninglists.api

            misp_lists = pymispwarninglists.api.WarningLists(slow_search=False)
        self.treat_documentation_ranges_as_benign = treat_documentation_ranges_as_benign
        self.excluded = frozenset(exclude_lists)
        # entry -> list id (int) or ids (tuple); a list id's label and groups are below
        self._exact: dict[str, int | tuple[int, ...]] = {}
        self._suffix: dict[str, int | tuple[int, ...]] = {}
        self._substring: list[tuple[str, int]] = []
        self._labels: list[str] = []
        self._groups: list[frozenset[str]] = []
        self._misp_cidr = _CidrIndex()
        self._special = _CidrIndex()
        for net, kind in SPECIAL_RANGES:
            parsed = parse_network(net)
            assert parsed is not None
            self._special.add(*parsed, f"{kind}:{net}")
        self._documentation = [
            (doc.version, int(doc.network_address), int(doc.broadcast_address))
            for doc in DOCUMENTATION_NETWORKS
        ]
        self._special_spans = [
            (net.version, int(net.network_address), int(net.broadcast_address), f"{kind}:{text}")
            for text, kind in SPECIAL_RANGES
            for net in (ipaddress.ip_network(text),)
        ]
        for name, warninglist in misp_lists.items():
            if name not in self.excluded:
                self._index(name, warninglist)

    @property
    def list_names(self) -> list[str]:
        """MISP lists in use (``misp:`` prefix removed)."""
        return [label.removeprefix("misp:") for label in self._labels]

    @staticmethod
    def _add(index: dict[str, int | tuple[int, ...]], entry: str, list_id: int) -> None:
        current = index.get(entry)
        if current is None:
            index[entry] = list_id
        elif isinstance(current, int):
            if current != list_id:
                index[entry] = (current, list_id)
        elif list_id not in current:
            index[entry] = (*current, list_id)

    def _index(self, name: str, warninglist: Any) -> None:
        attributes = set(getattr(warninglist, "matching_attributes", ()) or ())
        groups = frozenset(
            g for g, attrs in _ATTRIBUTES.items() if not attributes or attributes & attrs
        )
        if not groups:
            return
        list_id = len(self._labels)
        self._labels.append(f"misp:{name}")
        self._groups.append(groups)
        kind = warninglist.type
        if kind == "cidr":
            label = f"misp:{name}"
            for entry in warninglist.list:
                parsed = parse_network(entry.strip())
                if parsed is None:
                    self._add(self._exact, _lower(entry), list_id)
                else:
                    self._misp_cidr.add(*parsed, label)
        elif kind in ("string", "hostname"):
            index = self._exact if kind == "string" else self._suffix
            get, add = index.get, self._add
            for entry in warninglist.list:
                key = _lower(entry) if kind == "string" else _lower(entry).strip(".")
                if get(key) is None:
                    index[key] = list_id
                else:
                    add(index, key, list_id)
        elif kind == "substring":
            if "email" in groups and len(warninglist.list) >= _EMAIL_DOMAIN_SUBSTRING_MIN:
                # a big substring list for e-mail attributes is a list of e-mail domains
                self._groups[list_id] = frozenset({"email"})
                for entry in warninglist.list:
                    self._add(self._suffix, _lower(entry).strip(".@"), list_id)
            else:
                self._substring.extend((_lower(e), list_id) for e in warninglist.list)
        # "regex" lists are not used (module docstring).

    def _labels_of(self, ids: int | tuple[int, ...] | None, group: str, out: list[str]) -> None:
        if ids is None:
            return
        for list_id in (ids,) if isinstance(ids, int) else ids:
            if group in self._groups[list_id]:
                label = self._labels[list_id]
                if label not in out:
                    out.append(label)

    # --- lookups --------------------------------------------------------------------

    def hits(self, observable_type: str, value: str, path: str = "value") -> list[str]:
        """Names of every false-positive list or special range ``value`` falls in.

        ``value`` is canonical (core.canonical). A ``file``/``artifact`` key is a hash
        key, so its value is looked up in the hash lists whatever ``path`` says.
        """
        if "hashes" in path or observable_type in ("file", "artifact"):
            return self._lookup("hash", value.lower())
        if observable_type in ("ipv4-addr", "ipv6-addr"):
            return self._ip_hits(value)
        if observable_type == "domain-name":
            return self._domain_hits("domain", canonical_domain(value))
        if observable_type == "url":
            return self._url_hits(value)
        if observable_type == "email-addr":
            domain = value.rpartition("@")[2].lower()
            if not self.treat_documentation_ranges_as_benign and is_documentation_domain(domain):
                return []
            found = self._lookup("email", value.lower())
            found += [n for n in self._suffix_hits("email", domain) if n not in found]
            return found
        return []

    def _lookup(self, group: str, value: str) -> list[str]:
        found: list[str] = []
        self._labels_of(self._exact.get(value), group, found)
        for entry, list_id in self._substring:
            if entry in value:
                self._labels_of(list_id, group, found)
        return found

    def _suffix_hits(self, group: str, host: str) -> list[str]:
        found: list[str] = []
        for parent in _parents(host):
            self._labels_of(self._suffix.get(parent), group, found)
        return found

    def _domain_hits(self, group: str, host: str) -> list[str]:
        if not self.treat_documentation_ranges_as_benign and is_documentation_domain(host):
            return []
        found = self._lookup(group, host)
        found += [n for n in self._suffix_hits(group, host) if n not in found]
        return found

    def _ip_hits(self, value: str) -> list[str]:
        parsed = parse_network(value)
        if parsed is None:
            return []
        version, first, prefixlen = parsed
        last = first | ((1 << ((32 if version == 4 else 128) - prefixlen)) - 1)
        if not self.treat_documentation_ranges_as_benign:
            for doc_version, doc_first, doc_last in self._documentation:
                if version == doc_version and doc_first <= first and last <= doc_last:
                    return []
        found = self._special.hits(version, first, prefixlen)
        found += [n for n in self._misp_cidr.hits(version, first, prefixlen) if n not in found]
        if last != first:  # a CIDR value also hits the special ranges inside it
            for doc_version, special_first, special_last, label in self._special_spans:
                if version == doc_version and first <= special_first and special_last <= last:
                    if label not in found:
                        found.append(label)
        self._labels_of(self._exact.get(value), "ip", found)
        return found

    def _url_hits(self, url: str) -> list[str]:
        host = _url_host(url)
        if ip_or_none(host) is not None:
            found = self._ip_hits(host)
        else:
            if not self.treat_documentation_ranges_as_benign and is_documentation_domain(host):
                return []
            found = self._lookup("url", host)
            found += [n for n in self._suffix_hits("url", host) if n not in found]
        found += [n for n in self._lookup("url", url.lower()) if n not in found]
        return found


def _lower(entry: str) -> str:
    """Lower-cased entry, reusing the original string when it already is."""
    entry = entry.strip()
    low = entry.lower()
    return entry if low == entry else low


_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:/(\d{1,2}))?\Z")


def parse_network(text: str) -> tuple[int, int, int] | None:
    """(version, network address as int, prefix length) of an address or CIDR, else None.

    IPv4 in canonical spelling is parsed by hand (5x faster than ``ipaddress``);
    everything else goes through ``ipaddress.ip_network(strict=False)``.
    """
    match = _IPV4.match(text)
    if match is not None and not any(len(o) > 1 and o[0] == "0" for o in match.groups()[:4]):
        a, b, c, d = (int(o) for o in match.groups()[:4])
        prefixlen = int(match.group(5)) if match.group(5) is not None else 32
        if a < 256 and b < 256 and c < 256 and d < 256 and prefixlen <= 32:
            address = (a << 24) | (b << 16) | (c << 8) | d
            mask = ((1 << prefixlen) - 1) << (32 - prefixlen)
            return 4, address & mask, prefixlen
    text = ip_or_none(text) or ""
    if not text:
        return None
    network = ipaddress.ip_network(text, strict=False)
    return network.version, int(network.network_address), network.prefixlen
