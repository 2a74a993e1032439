"""An agency's allow-list of its own infrastructure (issue #19), as pure values and matching.

Three kinds of entry:

- ``value``: one observable, stored as the canonical keys ``core.lookup`` gives
  for it (so ``hxxp://Portal[.]gov.hk`` and ``portal.gov.hk`` are one entry);
- ``cidr``: an address range; matches addresses and networks inside it, and
  URLs whose host is such an address;
- ``suffix``: a domain and every name under it; matches domains, URLs on such
  a host and e-mail addresses at it.

A hit never changes what another agency sees: lists are read per agency and
only for that agency (records/allowlists.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from core.canonical import refang
from core.lookup import candidate_keys

Kind = Literal["value", "cidr", "suffix"]
KINDS: tuple[Kind, ...] = ("value", "cidr", "suffix")
MAX_ENTRY_CHARS = 2048

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowListError(ValueError):
    """An allow-list entry that cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One entry as stored: its kind, the value as given and its normal form."""

    kind: Kind
    value: str
    normal: tuple[str, ...]
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.value}"


def _domain(text: str) -> str:
    name = text.strip().strip(".").lower()
    if name.startswith("*."):
        name = name[2:]
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise AllowListError(f"{text!r} is not a domain name: {exc}") from None


def allow_entry(kind: str, value: str, note: str = "") -> AllowEntry:
    """Read one entry, normalised; raises ``AllowListError`` with the reason."""
    if kind not in KINDS:
        raise AllowListError(f"kind must be one of {list(KINDS)}, not {kind!r}")
    raw = refang(value.strip())
    if not raw or len(raw) > MAX_ENTRY_CHARS:
        raise AllowListError(f"value must have 1..{MAX_ENTRY_CHARS} characters")
    if kind == "cidr":
        try:
            net = ipaddress.ip_network(raw, strict=False)
        except ValueError as exc:
            raise AllowListError(f"{value!r} is not an address range: {exc}") from None
        return AllowEntry("cidr", value.strip(), (str(net),), note)
    if kind == "suffix":
        name = _domain(raw)
        if not name or "." not in name and len(name) < 2:
            raise AllowListError(f"{value!r} is not a domain suffix")
        return AllowEntry("suffix", value.strip(), (name,), note)
    keys = candidate_keys(raw)
    if not keys:
        raise AllowListError(f"{value!r} names no observable")
    return AllowEntry("value", value.strip(), tuple(keys), note)


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.strip("[]").lower() if host else None


def _address(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowList:
    """One agency's entries, ready to match records."""

    entries: tuple[AllowEntry, ...] = ()
    _keys: dict[str, str] = field(default_factory=dict, repr=False)
    _nets: tuple[tuple[Network, str], ...] = field(default=(), repr=False)
    _suffixes: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, entries: Iterable[AllowEntry]) -> AllowList:
        entries = tuple(entries)
        keys: dict[str, str] = {}
        nets: list[tuple[Network, str]] = []
        suffixes: dict[str, str] = {}
        for e in entries:
            if e.kind == "value":
                keys.update(dict.fromkeys(e.normal, e.label))
            elif e.kind == "cidr":
                nets.append((ipaddress.ip_network(e.normal[0]), e.label))
            else:
                suffixes[e.normal[0]] = e.label
        return cls(entries, keys, tuple(nets), suffixes)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def _in_nets(self, net: Network | None) -> list[str]:
        if net is None:
            return []
        return [
            label
            for allowed, label in self._nets
            if allowed.version == net.version and net.subnet_of(allowed)  # type: ignore[arg-type]
        ]

    def _under(self, name: str | None) -> list[str]:
        if not name:
            return []
        hits = []
        labels = name.strip(".").lower().split(".")
        for i in range(len(labels)):
            found = self._suffixes.get(".".join(labels[i:]))
            if found is not None:
                hits.append(found)
        return hits

    def hits(self, record: Mapping[str, Any]) -> list[str]:
        """The entries (``kind:value``) that cover a record; empty when none."""
        if not self.entries:
            return []
        found: list[str] = []
        key = record.get("key")
        if isinstance(key, str) and key in self._keys:
            found.append(self._keys[key])
        kind = record.get("observable_type")
        value = record.get("value")
        if not isinstance(value, str):
            return found
        if kind in ("ipv4-addr", "ipv6-addr"):
            found += self._in_nets(_address(value))
        elif kind == "domain-name":
            found += self._under(value)
        elif kind == "url":
            host = _host(value)
            found += self._in_nets(_address(host)) if host and _address(host) else self._under(host)
        elif kind == "email-addr":
            found += self._under(value.rpartition("@")[2])
        return sorted(set(found))
