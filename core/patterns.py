"""STIX 2.1 pattern validation with an exact fast path (STIX 2.1 section 9, Patterning).

``pattern_error`` is the one verdict the platform uses. The reference validator
(stix2-patterns, ANTLR) costs ~300 µs per pattern; most real patterns are one
observation made of ``=`` comparisons against string literals, OR-ed. For that
subset a small scanner decides validity exactly, replicating every check the
reference validator makes on it (grammar, keywords, the hash-value check in
``stix2patterns.v21.object_validator``). The scanner only ever *accepts*; anything
it is not certain about goes to ANTLR, whose verdicts are cached by pattern string.
tests/unit/test_patterns.py checks on a corpus that both paths always agree.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from stix2patterns.v21.object_validator import HASHES_REGEX
from stix2patterns.validator import run_validator

_CACHE_SIZE = 65536

#: Lexer keywords of the STIX 2.1 grammar; an identifier spelled like one is not an identifier.
_KEYWORDS = frozenset(
    {
        "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET",
        "EXISTS", "LAST", "IN", "START", "STOP", "SECONDS", "true", "false", "WITHIN",
        "REPEATS", "TIMES",
    }
)  # fmt: skip

# Only ASCII blanks: the grammar also skips U+0085, U+00A0, U+2028, U+2029, \v, \f and
# comments; patterns using those simply take the ANTLR path.
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
_UNESCAPE = re.compile(r"\\(['\\])")

#: Path component standing for ``[*]``.
INDEX_STAR = "[*]"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One ``type:path = 'value'`` comparison; ``value`` and quoted path steps unescaped."""

    object_type: str
    path: tuple[str, ...]
    value: str
    observation: int


def _unescape(literal: str) -> str:
    """The text of a STIX string literal (quotes removed, ``\\'`` and ``\\\\`` resolved)."""
    if "\\" not in literal:
        return literal[1:-1]
    return _UNESCAPE.sub(r"\1", literal[1:-1])


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
            parts.append(_unescape(string))
        else:
            parts.append(INDEX_STAR)
    return tuple(parts)


def _hash_value_ok(path: tuple[str, ...], raw_literal: str) -> bool:
    """Replicate stix2patterns' object_validator hash check; False means 'ask ANTLR'."""
    if "hashes" not in path or path[-1] == INDEX_STAR:
        return True
    hash_type = path[-1].upper().replace("-", "").replace("'", "")
    if hash_type == "MD6":  # its reference regex is malformed; let the reference decide
        return False
    if hash_type not in HASHES_REGEX:
        return True
    return re.match(HASHES_REGEX[hash_type][0], raw_literal.replace("'", "")) is not None


def simple_comparisons(pattern: str) -> tuple[Comparison, ...] | None:
    """The comparisons of a pattern certainly valid and made only of OR-ed ``=`` string tests.

    Accepts ``[a:b = 'x' OR c:d = 'y'] OR [e:f = 'z']``; returns None for anything
    else (including valid patterns it does not handle), never a false acceptance.
    """
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
        found.append(Comparison(object_type, path, _unescape(raw_value), observation))
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


@functools.lru_cache(maxsize=_CACHE_SIZE)
def antlr_pattern_error(pattern: str) -> str | None:
    """Verdict of the reference ANTLR validator (stix2-patterns), cached; None when valid."""
    try:
        errors = run_validator(pattern, stix_version="2.1")
    except Exception as exc:  # stix2-patterns crashes on e.g. `x:hashes[0]`; that is invalid
        return f"pattern could not be checked ({type(exc).__name__}: {exc})"
    if not errors:
        return None
    return "; ".join(str(error).removeprefix("FAIL: ") for error in errors)


def pattern_error(pattern: str) -> str | None:
    """None if ``pattern`` is valid STIX 2.1 patterning (STIX 2.1 section 9), else why not."""
    if not isinstance(pattern, str):
        return f"pattern must be a string, not {type(pattern).__name__}"
    if simple_comparisons(pattern) is not None:
        return None
    if not pattern.strip():
        return "pattern is empty"
    return antlr_pattern_error(pattern)
