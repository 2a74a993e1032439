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

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.tree.Tree import TerminalNode
from stix2patterns.v21.grammars.STIXPatternLexer import STIXPatternLexer
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as _P

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
from core.errors import InvalidPattern
from core.patterns import Comparison, pattern_error, simple_comparisons

PATTERN_TYPE = "pattern"
_CACHE_SIZE = 65536


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


# --- the ANTLR path -----------------------------------------------------------------


def _parse(pattern: str) -> Any:
    lexer = STIXPatternLexer(InputStream(pattern))
    lexer.removeErrorListeners()
    parser = _P(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    return parser.pattern()


_BINARY = (
    _P.ObservationExpressionsContext,
    _P.ObservationExpressionOrContext,
    _P.ObservationExpressionAndContext,
    _P.ComparisonExpressionContext,
    _P.ComparisonExpressionAndContext,
)
_QUALIFIED = (
    _P.ObservationExpressionStartStopContext,
    _P.ObservationExpressionWithinContext,
    _P.ObservationExpressionRepeatedContext,
)


def _rule_children(node: Any) -> list[Any]:
    return [c for c in (node.children or []) if not isinstance(c, TerminalNode)]


def _descend(node: Any) -> Any:
    """Skip single-child chains and redundant parentheses."""
    while True:
        if isinstance(node, (_P.ObservationExpressionCompoundContext, _P.PropTestParenContext)):
            node = node.children[1]
        elif isinstance(node, (*_BINARY, _P.PatternContext)) and len(_rule_children(node)) == 1:
            node = _rule_children(node)[0]
        else:
            return node


def _binary_op(node: Any) -> str | None:
    if isinstance(node, _BINARY) and len(node.children) == 3:
        return str(node.children[1].getText())
    return None


def _operands(node: Any, op: str) -> list[Any]:
    out: list[Any] = []
    for child in (node.children[0], node.children[2]):
        inner = _descend(child)
        if _binary_op(inner) == op:
            out.extend(_operands(inner, op))
        else:
            out.append(inner)
    return out


def _path(node: Any) -> tuple[str, list[str], str]:
    """(object type, path steps, path as written) of an objectPath context."""
    object_type = node.objectType().getText()
    steps: list[str] = []

    def walk(part: Any) -> None:
        if isinstance(part, TerminalNode):
            return
        if isinstance(part, _P.FirstPathComponentContext):
            steps.append(_step_text(part.children[0]))
        elif isinstance(part, _P.KeyPathStepContext):
            steps.append(_step_text(part.children[1]))
        elif isinstance(part, _P.IndexPathStepContext):
            steps.append(f"[{part.children[1].getText()}]")
        else:
            for child in part.children or []:
                walk(child)

    for child in node.children[2:]:
        walk(child)
    written = "".join(c.getText() for c in node.children[2:])
    return object_type, steps, written


def _step_text(token: Any) -> str:
    text = str(token.getText())
    if text.startswith("'"):
        return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return text


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 1
    while i < len(text) - 1:
        if text[i] == "\\":
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _serialise(node: Any) -> str:
    node = _descend(node)
    op = _binary_op(node)
    if op is not None:
        items = []
        for operand in _operands(node, op):
            text = _serialise(operand)
            items.append(f"({text})" if _binary_op(operand) is not None else text)
        if op in ("AND", "OR"):
            items.sort()
        return f" {op} ".join(items)
    if isinstance(node, _P.ObservationExpressionSimpleContext):
        return "[" + _serialise(node.children[1]) + "]"
    if isinstance(node, _QUALIFIED):
        inner = _descend(node.children[0])
        text = _serialise(inner)
        if _binary_op(inner) is not None:
            text = f"({text})"
        qualifier = " ".join(t.getText() for t in node.children[1].children)
        return f"{text} {qualifier}"
    if isinstance(node, _P.PropTestContext):
        return _serialise_test(node)
    return " ".join(_serialise(c) if not isinstance(c, TerminalNode) else c.getText()
                    for c in node.children or [])  # fmt: skip


_OPERATOR_SPELLING = {"==": "=", "<>": "!="}


def _serialise_test(node: Any) -> str:
    canonicalise = isinstance(node, (_P.PropTestEqualContext, _P.PropTestSetContext))
    object_type, steps = "", list[str]()
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, _P.ObjectPathContext):
            object_type, steps, _ = _path(child)
            if len(steps) >= 2 and steps[-2] == "hashes":
                steps[-1] = hash_algorithm(steps[-1])
            parts.append(f"{object_type}:{render_path(steps)}")
        elif isinstance(child, TerminalNode):
            text = child.getText()
            parts.append(_OPERATOR_SPELLING.get(text, text))
        else:
            parts.append(_literal(child, object_type, render_path(steps), canonicalise))
    return " ".join(parts)


def _literal(node: Any, object_type: str, path: str, canonicalise: bool) -> str:
    if isinstance(node, _P.SetLiteralContext):
        items = sorted(_literal(c, object_type, path, canonicalise) for c in _rule_children(node))
        return "(" + ", ".join(items) + ")"
    text = str(node.getText())
    if canonicalise and text.startswith("'"):
        return _quote(canonical_value(object_type, path, _unescape(text)))
    return text


def _simple_from_tree(tree: Any) -> list[Comparison] | None:
    """Comparisons when the tree is only OR-ed ``=`` string tests, else None."""
    root = _descend(tree)
    observations = _operands(root, "OR") if _binary_op(root) == "OR" else [root]
    found: list[Comparison] = []
    for number, observation in enumerate(observations):
        if not isinstance(observation, _P.ObservationExpressionSimpleContext):
            return None
        inner = _descend(observation.children[1])
        tests = _operands(inner, "OR") if _binary_op(inner) == "OR" else [inner]
        for test in tests:
            if not isinstance(test, _P.PropTestEqualContext) or test.NOT() is not None \
                    or test.NEQ() is not None:  # fmt: skip
                return None
            literal = test.primitiveLiteral().getText()
            if not literal.startswith("'"):
                return None
            object_type, steps, _ = _path(test.objectPath())
            found.append(Comparison(object_type, tuple(steps), _unescape(literal), number))
    return found


def _typed_reference(tree: Any) -> list[Comparison] | None:
    """``[X:R.type = 'T' AND X:R.value = 'V']`` as the one comparison on ``R.value`` (see top)."""
    root = _descend(tree)
    if not isinstance(root, _P.ObservationExpressionSimpleContext):
        return None
    inner = _descend(root.children[1])
    if _binary_op(inner) != "AND":
        return None
    found: list[tuple[str, str, str]] = []
    for test in _operands(inner, "AND"):
        if not isinstance(test, _P.PropTestEqualContext) or test.NOT() is not None \
                or test.NEQ() is not None:  # fmt: skip
            return None
        literal = test.primitiveLiteral().getText()
        if not literal.startswith("'"):
            return None
        object_type, steps, _ = _path(test.objectPath())
        found.append((object_type, canonical_path(render_path(steps)), _unescape(literal)))
    typed = typed_reference(found)
    if typed is None:
        return None
    object_type, path, value = typed
    return [Comparison(object_type, tuple(path_components(path)), value, 0)]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _observables(pattern: str) -> tuple[Observable, ...]:
    simple = simple_comparisons(pattern)
    if simple is not None:
        return _from_comparisons(simple)
    error = pattern_error(pattern)
    if error is not None:
        raise InvalidPattern(None, error)
    tree = _parse(pattern)
    comparisons = _simple_from_tree(tree) or _typed_reference(tree)
    if comparisons is not None:
        return _from_comparisons(comparisons)
    text = _serialise(tree)
    return (_make(PATTERN_TYPE, PATTERN_TYPE, text, PATTERN_TYPE),)


def observables(pattern: str) -> list[Observable]:
    """Observables of a STIX pattern (DOMAIN.md "Sameness"); raises InvalidPattern if invalid."""
    if not isinstance(pattern, str):
        raise InvalidPattern(None, f"pattern must be a string, not {type(pattern).__name__}")
    return list(_observables(pattern))
