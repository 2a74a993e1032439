"""STIX 2.1 patterns, parsed with the reference grammar (STIX 2.1 section 9, Patterning).

Every decision that looks inside a pattern (is it valid, which observables and
observable types it compares, which values it names) reads ``parse_pattern``:
the stix2-patterns ANTLR lexer and parser (the grammar OASIS publishes), never
a regular expression over the text. DOMAIN.md "Sharing": "Decisions that look
inside a pattern parse it with the STIX patterning grammar".

- **The verdict** is exactly stix2-patterns' ``run_validator``: the same lexer,
  parser, error listener, ``InspectionListener`` + ``object_validator`` (hash
  values) and qualifier check, and the same bracket check. Only the tree walk
  differs: ``run_validator`` walks recursively (``ParseTreeWalker``), which fails
  with RecursionError on ~1,000 AND-ed comparisons because the grammar's
  left-recursive rules give a left-deep tree; here the walk is iterative (an
  explicit stack), so any pattern within the limits below is read. ANTLR's
  parser itself turns left recursion into loops and recurses only per
  parenthesis level, which ``PatternLimits.max_depth`` bounds before parsing.
  A RecursionError or a crash inside the reference code is still caught and is
  a verdict ("could not be checked"), never an exception.
- **Limits** (``PatternLimits``, from core/settings.py ``limits``): length in
  characters, comparisons, parenthesis/bracket nesting. Checked before the
  parser runs (length first, then one linear pass of the lexer), so an
  oversized pattern costs at most one lexing pass.
- **The fast path**: most real patterns are OR-ed ``=`` comparisons with string
  literals. For that subset ``simple_comparisons`` (a linear scanner) decides
  validity and reads the comparisons exactly as the grammar does; it only ever
  *accepts*, anything else goes to the parser. tests/unit/test_patterns.py (a
  corpus of 5,000 patterns) and tests/fuzz/test_pattern_properties.py (hypothesis)
  check that both agree with the grammar, verdict and comparisons alike.
- **Cache**: results are cached per pattern string, in proportion to their
  size (many small patterns, few big ones), so a flood of distinct big patterns
  cannot fill memory.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.tree.Tree import ErrorNode, TerminalNode
from stix2patterns.exceptions import STIXPatternErrorListener
from stix2patterns.helpers import brackets_check
from stix2patterns.v21 import object_validator
from stix2patterns.v21.grammars.STIXPatternLexer import STIXPatternLexer
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as _P
from stix2patterns.v21.inspector import InspectionListener
from stix2patterns.v21.object_validator import HASHES_REGEX
from stix2patterns.v21.validator import DuplicateQualifierTypeError, ValidationListener

from core.errors import InvalidPattern

#: Path component standing for ``[*]``.
INDEX_STAR = "[*]"


@dataclass(frozen=True, slots=True)
class PatternLimits:
    """What one pattern may cost (DOMAIN.md "Bounded cost per push"; core/settings.py)."""

    max_chars: int = 65_536
    max_comparisons: int = 1_000
    max_depth: int = 32


DEFAULT_LIMITS = PatternLimits()


# --- the parsed form ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """One ``type:path = 'value'`` comparison; ``value`` and quoted path steps unescaped."""

    object_type: str
    path: tuple[str, ...]
    value: str
    observation: int


@dataclass(frozen=True, slots=True)
class Test:
    """One comparison of any kind (the grammar's ``propTest``).

    ``operator`` as written (``=``, ``==``, ``!=``, ``<>``, ``<``, ``IN``, ``LIKE``,
    ``MATCHES``, ``ISSUBSET``, ``ISSUPERSET``, ``EXISTS``); ``literals`` the literal
    tokens as written (several for ``IN``, none for ``EXISTS``); ``path`` steps with
    quoted steps unquoted, index steps as ``[n]`` / ``[*]``.
    """

    kind: str
    object_type: str
    path: tuple[str, ...]
    negated: bool
    operator: str
    literals: tuple[str, ...]

    def string_values(self) -> tuple[str, ...]:
        """The text of every string literal this test compares with."""
        return tuple(unescape(t) for t in self.literals if t.startswith("'"))


@dataclass(frozen=True, slots=True)
class Junction:
    """``AND`` / ``OR`` / ``FOLLOWEDBY`` over two or more operands (same-operator chains
    and redundant parentheses flattened)."""

    op: str
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Observation:
    """``[ comparison expression ]``."""

    inner: Expr


@dataclass(frozen=True, slots=True)
class Qualified:
    """An observation expression with a qualifier (``WITHIN 5 SECONDS`` ...), tokens as written."""

    inner: Expr
    qualifier: tuple[str, ...]


Expr = Test | Junction | Observation | Qualified


@dataclass(frozen=True, slots=True)
class ParsedPattern:
    """A valid pattern as the grammar reads it."""

    root: Expr
    tests: tuple[Test, ...]
    #: the comparisons when the pattern is only OR-ed ``=`` string tests, else None
    simple: tuple[Comparison, ...] | None


def unescape(literal: str) -> str:
    """The text of a STIX string literal: quotes removed, ``\\'`` and ``\\\\`` resolved."""
    body = literal[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out)


# --- the fast path --------------------------------------------------------------------

#: Lexer keywords of the STIX 2.1 grammar; an identifier spelled like one is not an identifier.
_KEYWORDS = frozenset(
    {
        "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET",
        "EXISTS", "LAST", "IN", "START", "STOP", "SECONDS", "true", "false", "WITHIN",
        "REPEATS", "TIMES",
    }
)  # fmt: skip

# Only ASCII blanks: the grammar also skips U+0085, U+00A0, U+2028, U+2029, \v, \f and
# comments; patterns using those simply take the parser. Every piece below is
# unambiguous (no two quantifiers can share a character), so matching is linear.
_WS = r"[ \t\r\n]*"
_STRING = r"'(?:[^'\\]|\\['\\])*'"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TYPE = r"[A-Za-z_][A-Za-z0-9_-]*"
_STEP = rf"(?:\.(?:{_IDENT}|{_STRING})|\[\*\])"
_COMPARISON = re.compile(
    rf"{_WS}(?P<type>{_TYPE}):(?P<path>(?:{_IDENT}|{_STRING}){_STEP}*){_WS}={_WS}"
    rf"(?P<value>{_STRING}){_WS}"
)
_PATH_PART = re.compile(rf"\.?(?:(?P<ident>{_IDENT})|(?P<string>{_STRING})|(?P<star>\[\*\]))")
_OPEN = re.compile(rf"{_WS}\[")
_OR_IN_OBSERVATION = re.compile(r"OR[ \t\r\n]+")
_OR_BETWEEN_OBSERVATIONS = re.compile(rf"{_WS}OR{_WS}\[")
_TRAILER = re.compile(rf"{_WS}\Z")


def _path_parts(path: str) -> tuple[str, ...] | None:
    """Split a scanned object path into components; None when a keyword is used as a name."""
    if "'" not in path and "[" not in path:
        plain = tuple(path.split("."))
        return None if any(part in _KEYWORDS for part in plain) else plain
    parts: list[str] = []
    for match in _PATH_PART.finditer(path):
        ident, string = match.group("ident"), match.group("string")
        if ident is not None:
            if ident in _KEYWORDS:
                return None
            parts.append(ident)
        elif string is not None:
            parts.append(unescape(string))
        else:
            parts.append(INDEX_STAR)
    return tuple(parts)


def _hash_value_ok(path: tuple[str, ...], raw_literal: str) -> bool:
    """Replicate stix2patterns' object_validator hash check; False means 'ask the parser'."""
    if "hashes" not in path or path[-1] == INDEX_STAR:
        return True
    hash_type = path[-1].upper().replace("-", "").replace("'", "")
    if hash_type == "MD6":  # its reference regex is malformed; let the reference decide
        return False
    if hash_type not in HASHES_REGEX:
        return True
    return re.match(HASHES_REGEX[hash_type][0], raw_literal.replace("'", "")) is not None


def _fast(pattern: str) -> tuple[Comparison, ...] | None:
    found: list[Comparison] = []
    opened = _OPEN.match(pattern)
    if opened is None:
        return None
    pos = opened.end()
    observation = 0
    while True:
        match = _COMPARISON.match(pattern, pos)
        if match is None:
            return None
        object_type = match.group("type")
        path = _path_parts(match.group("path"))
        raw_value = match.group("value")
        if object_type in _KEYWORDS or path is None or not _hash_value_ok(path, raw_value):
            return None
        found.append(Comparison(object_type, path, unescape(raw_value), observation))
        pos = match.end()
        or_match = _OR_IN_OBSERVATION.match(pattern, pos)
        if or_match is not None:
            pos = or_match.end()
            continue
        if not pattern.startswith("]", pos):
            return None
        pos += 1
        if _TRAILER.match(pattern, pos):
            return tuple(found)
        next_observation = _OR_BETWEEN_OBSERVATIONS.match(pattern, pos)
        if next_observation is None:
            return None
        pos = next_observation.end()
        observation += 1


def simple_comparisons(pattern: str) -> tuple[Comparison, ...] | None:
    """The comparisons of a pattern certainly valid and made only of OR-ed ``=`` string tests.

    Accepts ``[a:b = 'x' OR c:d = 'y'] OR [e:f = 'z']``; returns None for anything
    else (including valid patterns it does not handle), never a false acceptance.
    """
    return _fast(pattern) if isinstance(pattern, str) else None


# --- a cache in proportion to size ------------------------------------------------------

V = TypeVar("V")


class SizedCache(Generic[V]):
    """LRU keyed by string, bounded by the total length of its keys (values are in proportion)."""

    def __init__(self, max_chars: int, weight: int = 1) -> None:
        self.max_chars = max_chars
        self.weight = weight  # memory per key character the value costs, roughly
        self._items: OrderedDict[str, V] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get_or(self, key: str, compute: Callable[[str], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute(key)
        cost = self._cost(key)
        if cost * 4 > self.max_chars:
            return value  # too big to keep: computing it again is cheaper than the memory
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._chars += cost
                while self._chars > self.max_chars and self._items:
                    old, _ = self._items.popitem(last=False)
                    self._chars -= self._cost(old)
        return value

    def _cost(self, key: str) -> int:
        return len(key) * self.weight + 256

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0


# --- limits: one pass of the lexer ----------------------------------------------------

_COMPARATORS = frozenset(
    {
        STIXPatternLexer.EQ, STIXPatternLexer.NEQ, STIXPatternLexer.LT, STIXPatternLexer.LE,
        STIXPatternLexer.GT, STIXPatternLexer.GE, STIXPatternLexer.LIKE,
        STIXPatternLexer.MATCHES, STIXPatternLexer.ISSUBSET, STIXPatternLexer.ISSUPERSET,
        STIXPatternLexer.IN, STIXPatternLexer.EXISTS,
    }
)  # fmt: skip
_OPENERS = frozenset({STIXPatternLexer.LPAREN, STIXPatternLexer.LBRACK})
_CLOSERS = frozenset({STIXPatternLexer.RPAREN, STIXPatternLexer.RBRACK})


@dataclass(frozen=True, slots=True)
class Shape:
    """What the limits look at: comparisons and the deepest parenthesis/bracket nesting."""

    comparisons: int
    depth: int


def _lexer(pattern: str) -> STIXPatternLexer:
    lexer = STIXPatternLexer(InputStream(pattern))
    lexer.removeErrorListeners()  # as run_validator: lexer errors are silent
    return lexer


def _shape(pattern: str) -> Shape:
    comparisons = depth = deepest = 0
    lexer = _lexer(pattern)
    while True:
        token = lexer.nextToken()
        kind = token.type
        if kind == Token.EOF:
            return Shape(comparisons, deepest)
        if kind in _COMPARATORS:
            comparisons += 1
        elif kind in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif kind in _CLOSERS:
            depth = max(0, depth - 1)


@dataclass(frozen=True, slots=True)
class _Analysis:
    shape: Shape
    fast: ParsedPattern | None


def _analyse(pattern: str) -> _Analysis:
    fast = _fast(pattern)
    if fast is not None:
        return _Analysis(Shape(len(fast), 1), _from_comparisons(fast))
    return _Analysis(_shape(pattern), None)


_ANALYSES: SizedCache[_Analysis] = SizedCache(128 * 1024 * 1024, weight=16)


def shape_of(pattern: str) -> Shape:
    """Comparisons and nesting depth of ``pattern`` (cached)."""
    return _ANALYSES.get_or(pattern, _analyse).shape


def limit_error(pattern: str, limits: PatternLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``pattern`` exceeds ``limits`` (a precise message), or None."""
    if len(pattern) > limits.max_chars:
        return (
            f"pattern is {len(pattern):,} characters long; the limit is "
            f"{limits.max_chars:,} (limits.pattern_max_chars)"
        )
    shape = shape_of(pattern)
    if shape.comparisons > limits.max_comparisons:
        return (
            f"pattern has {shape.comparisons:,} comparisons; the limit is "
            f"{limits.max_comparisons:,} (limits.pattern_max_comparisons)"
        )
    if shape.depth > limits.max_depth:
        return (
            f"pattern nests parentheses/brackets {shape.depth} deep; the limit is "
            f"{limits.max_depth} (limits.pattern_max_depth)"
        )
    return None


# --- the reference parse, walked without recursion ---------------------------------------


def _walk(listener: Any, tree: Any) -> None:
    """``ParseTreeWalker.walk`` with an explicit stack: the same enter/exit/visit events."""
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if done:
            node.exitRule(listener)
            listener.exitEveryRule(node)
            continue
        if isinstance(node, ErrorNode):
            listener.visitErrorNode(node)
            continue
        if isinstance(node, TerminalNode):
            listener.visitTerminal(node)
            continue
        listener.enterEveryRule(node)
        node.enterRule(listener)
        stack.append((node, True))
        for child in reversed(node.children or []):
            stack.append((child, False))


def _post_order(tree: Any) -> Iterator[Any]:
    """Rule contexts of ``tree``, children before parents (no recursion)."""
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if done:
            yield node
            continue
        if isinstance(node, TerminalNode):
            continue
        stack.append((node, True))
        for child in reversed(node.children or []):
            stack.append((child, False))


@dataclass(frozen=True, slots=True)
class _Verdict:
    error: str | None
    parsed: ParsedPattern | None


def _reference(pattern: str) -> _Verdict:
    """stix2-patterns' ``run_validator`` verdict (same steps, iterative walk) and the tree."""
    try:
        errors = STIXPatternErrorListener()
        parser = _P(CommonTokenStream(_lexer(pattern)))
        parser.removeErrorListeners()
        parser.addErrorListener(errors)
        tree = parser.pattern()
        messages: list[str] = list(errors.err_strings)
        if not messages:
            inspection = InspectionListener()
            _walk(inspection, tree)
            messages.extend(object_validator.verify_object(inspection.pattern_data()))
            try:
                _walk(ValidationListener(), tree)
            except DuplicateQualifierTypeError as exc:
                messages.insert(0, "FAIL: " + exc.args[0])
        if not brackets_check(pattern):
            messages.insert(0, "FAIL: Error found at line 1:0. input is missing square brackets")
        if messages:
            return _Verdict("; ".join(m.removeprefix("FAIL: ") for m in messages), None)
        return _Verdict(None, _from_tree(tree))
    except RecursionError:
        return _Verdict("pattern could not be checked (nested too deeply to parse)", None)
    except Exception as exc:  # the reference code crashes on e.g. `x:hashes[0]`: invalid
        return _Verdict(f"pattern could not be checked ({type(exc).__name__}: {exc})", None)


_VERDICTS: SizedCache[_Verdict] = SizedCache(256 * 1024 * 1024, weight=40)


def antlr_pattern_error(pattern: str) -> str | None:
    """The reference grammar's verdict alone (no limits, no fast path); cached."""
    return _VERDICTS.get_or(pattern, _reference).error


def grammar_parse(pattern: str) -> ParsedPattern | None:
    """The grammar's reading alone (no limits, no fast path), None when invalid: for the
    tests that prove the fast path equivalent."""
    return _VERDICTS.get_or(pattern, _reference).parsed


def clear_caches() -> None:
    """Forget every cached verdict (benchmarks measure cold runs)."""
    _VERDICTS.clear()
    _ANALYSES.clear()


def pattern_error(pattern: Any, limits: PatternLimits = DEFAULT_LIMITS) -> str | None:
    """None if ``pattern`` is valid STIX 2.1 patterning within ``limits``, else why not."""
    if not isinstance(pattern, str):
        return f"pattern must be a string, not {type(pattern).__name__}"
    too_big = limit_error(pattern, limits)
    if too_big is not None:
        return too_big
    if _ANALYSES.get_or(pattern, _analyse).fast is not None:
        return None
    if not pattern.strip():
        return "pattern is empty"
    return antlr_pattern_error(pattern)


def parse_pattern(pattern: Any, limits: PatternLimits = DEFAULT_LIMITS) -> ParsedPattern:
    """The pattern as the grammar reads it; ``InvalidPattern`` (with the reason) otherwise."""
    error = pattern_error(pattern, limits)
    if error is not None:
        raise InvalidPattern(None, error)
    fast = _ANALYSES.get_or(pattern, _analyse).fast
    if fast is not None:
        return fast
    parsed = _VERDICTS.get_or(pattern, _reference).parsed
    assert parsed is not None  # pattern_error said valid
    return parsed


def _from_comparisons(found: tuple[Comparison, ...]) -> ParsedPattern:
    tests = tuple(
        Test("equal", c.object_type, c.path, False, "=", ("'" + _escape(c.value) + "'",))
        for c in found
    )
    groups: dict[int, list[Test]] = {}
    for test, comparison in zip(tests, found, strict=True):
        groups.setdefault(comparison.observation, []).append(test)
    observations: list[Expr] = []
    for members in groups.values():
        inner: Expr = members[0] if len(members) == 1 else Junction("OR", tuple(members))
        observations.append(Observation(inner))
    root = observations[0] if len(observations) == 1 else Junction("OR", tuple(observations))
    return ParsedPattern(root, tests, found)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


# --- the ANTLR tree as plain values (iteratively) -----------------------------------------

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
_TEST_KINDS: dict[type, str] = {
    _P.PropTestEqualContext: "equal",
    _P.PropTestOrderContext: "order",
    _P.PropTestSetContext: "set",
    _P.PropTestLikeContext: "like",
    _P.PropTestRegexContext: "regex",
    _P.PropTestIsSubsetContext: "subset",
    _P.PropTestIsSupersetContext: "superset",
    _P.PropTestExistsContext: "exists",
}


def _rule_children(node: Any) -> list[Any]:
    return [c for c in (node.children or []) if not isinstance(c, TerminalNode)]


def _step_text(token: Any) -> str:
    text = str(token.getText())
    if text.startswith("'"):
        return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return text


def _path_of(node: Any) -> tuple[str, tuple[str, ...]]:
    """(object type, steps) of an objectPath context; path steps read without recursion."""
    object_type = str(node.objectType().getText())
    steps: list[str] = []
    for part in _pre_order(node.children[2:]):
        if isinstance(part, _P.FirstPathComponentContext):
            steps.append(_step_text(part.children[0]))
        elif isinstance(part, _P.KeyPathStepContext):
            steps.append(_step_text(part.children[1]))
        elif isinstance(part, _P.IndexPathStepContext):
            steps.append(f"[{part.children[1].getText()}]")
    return object_type, tuple(steps)


def _pre_order(nodes: list[Any]) -> Iterator[Any]:
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, TerminalNode):
            continue
        yield node
        stack.extend(reversed(node.children or []))


def _test_of(node: Any) -> Test:
    kind = _TEST_KINDS[type(node)]
    object_type, negated, operator = "", False, ""
    steps: tuple[str, ...] = ()
    literals: list[str] = []
    for child in node.children:
        if isinstance(child, _P.ObjectPathContext):
            object_type, steps = _path_of(child)
        elif isinstance(child, TerminalNode):
            text = str(child.getText())
            if text == "NOT":
                negated = True
            elif text.startswith("'"):
                literals.append(text)  # LIKE / MATCHES / ISSUBSET / ISSUPERSET operand
            else:
                operator = text
        elif isinstance(child, _P.SetLiteralContext):
            literals.extend(str(c.getText()) for c in _rule_children(child))
        else:
            literals.append(str(child.getText()))
    return Test(kind, object_type, steps, negated, operator, tuple(literals))


def _junction(op: str, left: Expr, right: Expr) -> Junction:
    operands: list[Expr] = []
    for side in (left, right):
        if isinstance(side, Junction) and side.op == op:
            operands.extend(side.operands)
        else:
            operands.append(side)
    return Junction(op, tuple(operands))


def _from_tree(tree: Any) -> ParsedPattern:
    done: dict[int, Expr] = {}
    tests: list[Test] = []
    for node in _post_order(tree):
        value: Expr | None
        children = _rule_children(node)
        if type(node) in _TEST_KINDS:
            value = _test_of(node)
            tests.append(value)
        elif isinstance(node, _BINARY):
            if len(node.children) == 3:
                value = _junction(
                    str(node.children[1].getText()),
                    done[id(node.children[0])],
                    done[id(node.children[2])],
                )
            else:
                value = done[id(children[0])]
        elif isinstance(node, (_P.ObservationExpressionCompoundContext, _P.PropTestParenContext)):
            value = done[id(node.children[1])]
        elif isinstance(node, _P.ObservationExpressionSimpleContext):
            value = Observation(done[id(node.children[1])])
        elif isinstance(node, _QUALIFIED):
            qualifier = tuple(str(t.getText()) for t in node.children[1].children)
            value = Qualified(done[id(node.children[0])], qualifier)
        elif isinstance(node, _P.PatternContext):
            value = done[id(children[0])]
        else:
            value = None  # paths and literals are read by their test
        if value is not None:
            done[id(node)] = value
    root = done[id(tree)]
    return ParsedPattern(root, tuple(tests), _simple_of(root))


def _simple_of(root: Expr) -> tuple[Comparison, ...] | None:
    """Comparisons when the tree is only OR-ed ``=`` string tests, else None."""
    observations = root.operands if isinstance(root, Junction) and root.op == "OR" else (root,)
    found: list[Comparison] = []
    for number, observation in enumerate(observations):
        if not isinstance(observation, Observation):
            return None
        inner = observation.inner
        tests = inner.operands if isinstance(inner, Junction) and inner.op == "OR" else (inner,)
        for test in tests:
            if not isinstance(test, Test) or test.kind != "equal" or test.negated:
                return None
            if test.operator not in ("=", "==") or not test.literals[0].startswith("'"):
                return None
            found.append(Comparison(test.object_type, test.path, unescape(test.literals[0]),
                                    number))  # fmt: skip
    return tuple(found)


def walk_exprs(root: Expr) -> Iterator[Expr]:
    """Every node under ``root``, parents before children (no recursion)."""
    stack: list[Expr] = [root]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Junction):
            stack.extend(reversed(node.operands))
        elif isinstance(node, (Observation, Qualified)):
            stack.append(node.inner)
