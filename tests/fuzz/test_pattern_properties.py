"""Properties of pattern handling (issue 8 "Bad input"; STIX 2.1 section 9 Patterning).

tests/unit/test_patterns.py checks a fixed corpus (tests/data/patterns/*.jsonl)
against stix2-patterns, and tests/fuzz/test_canonical_properties.py fuzzes
``observables`` with free-form pattern-ish text. Here hypothesis *builds*
comparison-shaped strings aimed at the edges of the exact fast path
(``core.patterns.simple_comparisons``): keywords as names, quoted path steps and
escapes, hash literals of right and wrong length, blanks the fast path does not
skip, ``or`` spelled in other cases, trailing text, several observations. On
each one the fast path must never accept what stix2-patterns refuses, the final
verdict must equal stix2-patterns', and what the fast path reads must equal what
the grammar reads. ``pattern_error`` and ``observables`` never raise on any input.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from core.errors import InvalidPattern
from core.observables import observables
from core.patterns import grammar_parse, pattern_error, simple_comparisons

FUZZ = settings(
    max_examples=int(os.environ.get("THREATBAY_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def reference_valid(pattern: str) -> bool:
    """stix2-patterns' verdict; a crash inside it counts as invalid (as in core.patterns)."""
    try:
        return not run_validator(pattern, stix_version="2.1")
    except Exception:
        return False


# ---------------------------------------------------------------- comparison-shaped text


def mostly(common: list[str], edges: list[str]) -> st.SearchStrategy[str]:
    """One of ``common`` about three times in four, else one of the edge cases."""
    return st.one_of(*[st.sampled_from(common)] * 3, st.sampled_from(edges))


blank = mostly(["", " "], ["  ", "\t", "\n", "\r\n", "\v", "\f", "\u00a0", "\u2028", "/* c */"])
ident = st.one_of(
    mostly(["value", "name", "hashes", "dst_ref", "src_ref", "x_custom", "_x", "a1"],
           ["AND", "OR", "LIKE", "true", "false", "IN", "WITHIN", "9x", "a-b", ""]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
)  # fmt: skip
quoted_step = st.sampled_from(["'SHA-256'", "'SHA256'", "'x y'", "'a\\'b'", "'\\\\'", "''",
                               "'MD5'", "'SHA-1'", "'SSDEEP'", "'TLSH'", "'MD6'"])  # fmt: skip
step = st.one_of(
    mostly([".value", ".name", ".dst_ref", "[*]", "[0]", ".'x y'"], [".", ".9", "[ * ]"]),
    ident.map(lambda s: "." + s),
    quoted_step.map(lambda s: "." + s),
    st.sampled_from(["[*]", "[0]", "[1]", "[-1]", "[ * ]", "[]"]),
)
object_type = st.one_of(
    mostly(["ipv4-addr", "ipv6-addr", "domain-name", "url", "file", "email-addr"],
           ["network-traffic", "x-custom", "a-", "-a", "_t", "AND", "OR", "t1", ""]),
    st.from_regex(r"[a-z_][a-z0-9_-]{0,8}", fullmatch=True),
)  # fmt: skip
hex_chars = st.sampled_from("0123456789abcdefABCDEFg")
hash_literal = st.integers(0, 130).flatmap(
    lambda n: st.lists(hex_chars, min_size=n, max_size=n).map("".join)
)
value_text = st.one_of(
    st.from_regex(r"[a-z0-9.:/@-]{0,15}", fullmatch=True),
    st.text(max_size=12),
    hash_literal,
    st.sampled_from(["198.51.100.7", "evil.example.com", "http://a.b/c", "a@b.c", "\\n", "\\'"]),
)


@st.composite
def literal(draw: st.DrawFn) -> str:
    text = draw(value_text)
    style = draw(mostly(["escaped"], ["raw", "double", "other"]))
    if style == "escaped":
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if style == "raw":  # unescaped quotes and backslashes: usually invalid
        return "'" + text + "'"
    if style == "double":
        return '"' + text + '"'
    return draw(st.sampled_from(["5", "-1", "1.5", "true", "t'2020-01-01T00:00:00Z'", "h'ab'"]))


@st.composite
def comparison(draw: st.DrawFn) -> str:
    path = draw(ident) + "".join(draw(st.lists(step, max_size=3)))
    op = draw(mostly(["=", " = "], ["==", "!=", "<", "LIKE", "MATCHES", "IN"]))
    return f"{draw(object_type)}:{path}{draw(blank)}{op}{draw(blank)}{draw(literal())}"


@st.composite
def comparison_shaped(draw: st.DrawFn) -> str:
    """``[c OR c] OR [c]``-like text, mostly valid, with one edge varied at a time."""
    observations = []
    for _ in range(draw(st.integers(1, 3))):
        comparisons = draw(st.lists(comparison(), min_size=1, max_size=3))
        inner = draw(mostly([" OR "], [" or ", " Or ", "OR ", " OR", " AND ", "\tOR\n"]))
        observations.append("[" + draw(blank) + inner.join(comparisons) + draw(blank) + "]")
    between = draw(mostly([" OR "], ["OR", " AND ", " FOLLOWEDBY ", " or ", " OR  "]))
    text = between.join(observations)
    prefix = draw(mostly(["", " "], ["\n", "(", "x"]))
    suffix = draw(mostly(["", " "], ["\n", ")", " OR", " WITHIN 5 SECONDS", "]"]))
    return prefix + text + suffix


def hash_pattern(algorithm: str, digest: str) -> str:
    return f"[file:hashes.{algorithm} = '{digest}']"


@FUZZ
@given(comparison_shaped())
@example("[ipv4-addr:value = '198.51.100.7']")
@example("[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdf']")
@example("[x:AND = 'a']")
@example("[ipv4-addr:value = '1.2.3.4']\u00a0")
@example("[a:b = 'x'] or [c:d = 'y']")
def test_fast_path_never_disagrees_with_stix2_patterns(pattern: str) -> None:
    fast = simple_comparisons(pattern)
    valid = reference_valid(pattern)
    if fast is not None:
        assert valid, f"fast path accepted a pattern stix2-patterns refuses: {pattern!r}"
        assert list(fast) == grammar_comparisons(pattern), pattern
    assert (pattern_error(pattern) is None) == valid, pattern


@FUZZ
@given(
    st.sampled_from(["MD5", "'SHA-1'", "SHA1", "'SHA-256'", "SHA256", "'SHA-512'", "SHA512",
                     "'SHA3-256'", "SSDEEP", "TLSH", "sha256", "'sha-256'"]),
    hash_literal,
)  # fmt: skip
def test_hash_literals_get_the_reference_verdict(algorithm: str, digest: str) -> None:
    pattern = hash_pattern(algorithm, digest)
    if simple_comparisons(pattern) is not None:
        assert reference_valid(pattern), pattern
    assert (pattern_error(pattern) is None) == reference_valid(pattern), pattern


@FUZZ
@given(st.one_of(st.text(), comparison_shaped(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_pattern_error_and_observables_never_raise_on_any_string(pattern: str) -> None:
    verdict = pattern_error(pattern)
    assert verdict is None or (isinstance(verdict, str) and verdict)
    try:
        found = observables(pattern)
    except InvalidPattern as error:
        assert verdict is not None, f"observables refused a pattern judged valid: {pattern!r}"
        assert error.reason
    else:
        assert verdict is None, f"observables read a pattern judged invalid: {pattern!r}"
        assert found


@FUZZ
@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(allow_nan=True),
        st.binary(max_size=20),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    )
)
def test_non_string_patterns_are_refused_not_crashed(value: Any) -> None:
    verdict = pattern_error(value)
    assert isinstance(verdict, str) and "string" in verdict
    try:
        observables(value)
    except InvalidPattern as error:
        assert "string" in error.reason
    else:
        raise AssertionError(f"observables accepted {value!r}")


def grammar_comparisons(pattern: str) -> list[object] | None:
    """The comparisons the grammar itself reads (no fast path), None when it reads others."""
    parsed = grammar_parse(pattern)
    assert parsed is not None, pattern
    return None if parsed.simple is None else list(parsed.simple)
