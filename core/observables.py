"""Observables and canonical keys read from STIX patterns (DOMAIN.md "Sameness").

A simple comparison ``[type:path = 'value']`` gives one observable; comparisons
OR-ed inside one observation or across ``[..] OR [..]`` give one each. Anything
else (AND, FOLLOWEDBY, qualifiers, operators other than ``=``, non-string literals,
NOT) is kept whole as ONE observable of type ``pattern`` whose value is the pattern
re-serialised from its parse tree: tokens single-spaced, ``==``/``<>`` spelled
``=``/``!=``, redundant parentheses removed, AND/OR operands and IN-sets sorted,
paths and string values canonicalised as for simple comparisons.

Cross-type rules (DOMAIN.md "Known real-world traps"), decided here:

- ``ipv4-addr:value``, ``ipv6-addr:value``, ``network-traffic:dst_ref.value`` /
  ``src_ref.value`` holding an address, and a ``url:value`` that is only an address
  (``1.2.3.4``, ``http://1.2.3.4/``, any scheme, no userinfo, default port, path
  ``/``, no query) all key as ``ipv4-addr|value|1.2.3.4`` (or ``ipv6-addr``). The
  *version* of the address decides the type, not the type written.
- ``network-traffic:*_ref.value`` holding a name keys as ``domain-name|value|…``.
- ``url:value`` that is only a host name (``evil.com``, ``http://evil.com/``) keys
  as ``domain-name|value|evil.com``: a URL naming a whole site is the site. A URL
  with a path, query, userinfo or non-default port stays a URL.
- ``email-message:from_ref.value`` / ``sender_ref.value`` key as
  ``email-addr|value|…``.
- ``domain-name:value`` holding an IP literal keys as the address
  (``ipv4-addr|value|188.93.127.34``): a lookup of the address finds it.
- A ``url:value`` whose host is an IP literal and that names more than the host
  (``http://1.2.3.4/x.exe``) gives two observables: the URL and the address
  (``core.canonical.url_address``), so a lookup of the address finds the URL's
  reports too, and one producer's URL corroborates another's address.
- ``[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '1.2.3.4']``
  (MISP-STIX ip-dst / ip-src; likewise ``src_ref``, ``ipv6-addr``, and
  ``domain-name`` with a name) is the single comparison on ``dst_ref.value``:
  keyed ``ipv4-addr|value|1.2.3.4``. A type that disagrees with the value, or any
  further comparison (a port), keeps the pattern whole
  (``core.canonical.typed_reference``).
- Hash algorithm spellings unify in the path (``hashes.sha-256``).
``source_path`` keeps what the producer wrote (``network-traffic:dst_ref.value``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.canonical import (
    ADDRESS_PATHS,
    address_type,
    canonical_domain,
    canonical_path,
    canonical_url,
    canonical_value,
    hash_algorithm,
    ip_or_none,
    path_components,
    render_path,
    typed_reference,
    url_address,
)
from core.patterns import (
    DEFAULT_LIMITS,
    Comparison,
    Expr,
    Junction,
    Observation,
    ParsedPattern,
    PatternLimits,
    SizedCache,
    Test,
    parse_pattern,
    unescape,
    walk_exprs,
)

PATTERN_TYPE = "pattern"


@dataclass(frozen=True)
class Observable:
    """One observable: canonical ``key`` = ``type|path|value``; ``source_path`` as written."""

    key: str
    observable_type: str
    path: str
    value: str
    source_path: str


def canonical_key(observable_type: str, path: str, value: str) -> str:
    """The canonical key ``type|path|value`` (DOMAIN.md "Sameness")."""
    return f"{observable_type}|{path}|{value}"


def _make(observable_type: str, path: str, value: str, source_path: str) -> Observable:
    return Observable(canonical_key(observable_type, path, value), observable_type, path, value,
                      source_path)  # fmt: skip


def _address(value: str) -> tuple[str, str] | None:
    address = ip_or_none(value)
    if address is None:
        return None
    return ("ipv6-addr" if ":" in address else "ipv4-addr"), address


def _bare_url_host(url: str) -> str | None:
    """The host of a canonical URL that names nothing but a host, else None."""
    scheme_end = url.find("://")
    if scheme_end == -1:
        return None
    rest = url[scheme_end + 3 :]
    if not rest.endswith("/") or rest.count("/") != 1 or "@" in rest or "?" in rest:
        return None
    host = rest[:-1]
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    if ":" in host or not host:
        return None
    return host


def observable_of(observable_type: str, path: str, value: str) -> Observable:
    """The observable of one ``type:path = 'value'`` comparison, cross-type rules applied."""
    source_path = f"{observable_type}:{path}"
    kind = observable_type.strip().lower()
    key_path = canonical_path(path)
    if (kind, key_path) in ADDRESS_PATHS:
        address = _address(canonical_domain(value) if kind == "domain-name" else value)
        if address is not None:
            return _make(address[0], "value", address[1], source_path)
        if kind == "network-traffic":
            return _make("domain-name", "value", canonical_value("domain-name", "value", value),
                         source_path)  # fmt: skip
    if kind == "url" and key_path == "value":
        url = canonical_url(value)
        host = _bare_url_host(url)
        if host is not None:
            address = _address(host)
            if address is not None:
                return _make(address[0], "value", address[1], source_path)
            return _make("domain-name", "value", host, source_path)
        return _make("url", "value", url, source_path)
    if kind == "email-message" and key_path in ("from_ref.value", "sender_ref.value"):
        return _make("email-addr", "value", canonical_value("email-addr", "value", value),
                     source_path)  # fmt: skip
    return _make(kind, key_path, canonical_value(kind, path, value), source_path)


def _dedupe(found: list[Observable]) -> tuple[Observable, ...]:
    seen: set[str] = set()
    out: list[Observable] = []
    for item in found:
        if item.key not in seen:
            seen.add(item.key)
            out.append(item)
    return tuple(out)


def _from_comparisons(comparisons: Sequence[Comparison]) -> tuple[Observable, ...]:
    found: list[Observable] = []
    for c in comparisons:
        observable = observable_of(c.object_type, render_path(c.path), c.value)
        found.append(observable)
        if observable.observable_type == "url" and (address := url_address(observable.value)):
            found.append(_make(address_type(address), "value", address, observable.source_path))
    return _dedupe(found)


# --- patterns that are not only OR-ed comparisons -----------------------------------


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_OPERATOR_SPELLING = {"==": "=", "<>": "!="}


def _serialise_test(test: Test) -> str:
    canonicalise = test.kind in ("equal", "set")
    steps = list(test.path)
    if len(steps) >= 2 and steps[-2] == "hashes":
        steps[-1] = hash_algorithm(steps[-1])
    path = render_path(steps)
    parts = [f"{test.object_type}:{path}"]
    if test.kind == "exists":
        return f"EXISTS {parts[0]}"
    if test.negated:
        parts.append("NOT")
    parts.append(_OPERATOR_SPELLING.get(test.operator, test.operator))
    literals = [_literal(t, test.object_type, path, canonicalise) for t in test.literals]
    if test.kind == "set":
        parts.append("(" + ", ".join(sorted(literals)) + ")")
    else:
        parts.extend(literals)
    return " ".join(parts)


def _literal(text: str, object_type: str, path: str, canonicalise: bool) -> str:
    if canonicalise and text.startswith("'"):
        return _quote(canonical_value(object_type, path, unescape(text)))
    return text


def serialise(root: Expr) -> str:
    """The canonical text of a parsed pattern (module docstring), built without recursion."""
    text: dict[int, str] = {}
    order = list(walk_exprs(root))
    for node in reversed(order):  # children before parents
        if isinstance(node, Test):
            text[id(node)] = _serialise_test(node)
        elif isinstance(node, Junction):
            items = [
                f"({text[id(o)]})" if isinstance(o, Junction) else text[id(o)]
                for o in node.operands
            ]
            if node.op in ("AND", "OR"):
                items.sort()
            text[id(node)] = f" {node.op} ".join(items)
        elif isinstance(node, Observation):
            text[id(node)] = "[" + text[id(node.inner)] + "]"
        else:
            inner = text[id(node.inner)]
            if isinstance(node.inner, Junction):
                inner = f"({inner})"
            text[id(node)] = f"{inner} {' '.join(node.qualifier)}"
    return text[id(root)]


def _typed_reference(root: Expr) -> list[Comparison] | None:
    """``[X:R.type = 'T' AND X:R.value = 'V']`` as the one comparison on ``R.value`` (see top)."""
    if not isinstance(root, Observation):
        return None
    inner = root.inner
    if not isinstance(inner, Junction) or inner.op != "AND":
        return None
    found: list[tuple[str, str, str]] = []
    for test in inner.operands:
        if not isinstance(test, Test) or test.kind != "equal" or test.negated:
            return None
        if test.operator not in ("=", "==") or len(test.literals) != 1:
            return None
        literal = test.literals[0]
        if not literal.startswith("'"):
            return None
        found.append((test.object_type, canonical_path(render_path(test.path)), unescape(literal)))
    typed = typed_reference(found)
    if typed is None:
        return None
    object_type, path, value = typed
    return [Comparison(object_type, tuple(path_components(path)), value, 0)]


def _observables(parsed: ParsedPattern) -> tuple[Observable, ...]:
    if parsed.simple is not None:
        return _from_comparisons(parsed.simple)
    typed = _typed_reference(parsed.root)
    if typed is not None:
        return _from_comparisons(typed)
    text = serialise(parsed.root)
    return (_make(PATTERN_TYPE, PATTERN_TYPE, text, PATTERN_TYPE),)


_CACHE: SizedCache[tuple[Observable, ...]] = SizedCache(128 * 1024 * 1024, weight=8)


def observables(pattern: Any, limits: PatternLimits = DEFAULT_LIMITS) -> list[Observable]:
    """Observables of a STIX pattern (DOMAIN.md "Sameness"); raises InvalidPattern if invalid
    or beyond ``limits``."""
    parsed = parse_pattern(pattern, limits)
    return list(_CACHE.get_or(pattern, lambda _: _observables(parsed)))
