"""Lookup of a raw value an analyst pastes (``1.2.3.4``, ``hxxp://evil[.]com/x``, a hash).

The value is refanged, its observable type guessed, and it is turned into the
same canonical key a pattern would give, by going through the very function
that reads patterns (``core.observables``): one definition of sameness.
"""

from __future__ import annotations

import ipaddress
import re

from core.canonical import refang
from core.errors import InvalidPattern
from core.observables import observables

_HASH_BY_LENGTH = {32: "MD5", 40: "SHA-1", 64: "SHA-256", 128: "SHA-512"}
_HEX = re.compile(r"[0-9A-Fa-f]+\Z")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def candidate_patterns(raw: str) -> list[str]:
    """STIX patterns a raw value most likely stands for, best guess first."""
    value = refang(raw.strip()).strip()
    if not value:
        return []
    try:
        network = ipaddress.ip_network(value, strict=False)
        kind = "ipv4-addr" if network.version == 4 else "ipv6-addr"
        return [f"[{kind}:value = {_quote(value)}]"]
    except ValueError:
        pass
    if _HEX.match(value) and len(value) in _HASH_BY_LENGTH:
        return [f"[file:hashes.'{_HASH_BY_LENGTH[len(value)]}' = {_quote(value)}]"]
    if "://" in value:
        return [f"[url:value = {_quote(value)}]"]
    if "@" in value and " " not in value:
        return [f"[email-addr:value = {_quote(value)}]"]
    if "/" in value:
        return [f"[url:value = {_quote('http://' + value)}]", f"[url:value = {_quote(value)}]"]
    return [f"[domain-name:value = {_quote(value)}]"]


def candidate_keys(raw: str) -> list[str]:
    """Canonical keys to look up for ``raw``, without duplicates, best guess first."""
    keys: list[str] = []
    for pattern in candidate_patterns(raw):
        try:
            found = observables(pattern)
        except InvalidPattern:
            continue
        keys.extend(o.key for o in found if o.key not in keys)
    return keys
