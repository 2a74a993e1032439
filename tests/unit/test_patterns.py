"""pattern_error: the fast path never disagrees with stix2-patterns (DOMAIN.md "Sameness")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stix2patterns.validator import run_validator

from core.patterns import grammar_parse, pattern_error, simple_comparisons

CORPUS = Path(__file__).parent.parent / "data" / "patterns"
GENERATED = [json.loads(line) for line in (CORPUS / "generated.jsonl").open(encoding="utf-8")]
HANDWRITTEN = [json.loads(line) for line in (CORPUS / "handwritten.jsonl").open(encoding="utf-8")]
SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"


def reference_valid(pattern: str) -> bool:
    """stix2-patterns' own verdict; a crash inside it counts as invalid."""
    try:
        return not run_validator(pattern, stix_version="2.1")
    except Exception:
        return False


def test_corpus_is_big_and_mixed() -> None:
    fast = [r for r in GENERATED if simple_comparisons(r["pattern"]) is not None]
    valid = [r for r in GENERATED if r["antlr_valid"]]
    assert len(GENERATED) >= 5000
    assert len(valid) >= 1000 and len(GENERATED) - len(valid) >= 1000
    assert len(fast) >= 500


def test_generated_corpus_verdicts_match_stix2_patterns() -> None:
    disagreements = [
        r["pattern"] for r in GENERATED if (pattern_error(r["pattern"]) is None) != r["antlr_valid"]
    ]
    assert disagreements == []


def test_fast_path_accepts_only_what_stix2_patterns_accepts() -> None:
    wrongly_accepted = [
        r["pattern"]
        for r in GENERATED + HANDWRITTEN
        if simple_comparisons(r["pattern"]) is not None and not reference_valid(r["pattern"])
    ]
    assert wrongly_accepted == []


def test_fast_path_reads_the_same_comparisons_as_the_grammar() -> None:
    for row in GENERATED + HANDWRITTEN:
        fast = simple_comparisons(row["pattern"])
        if fast is not None:
            assert list(fast) == grammar_comparisons(row["pattern"]), row["pattern"]


@pytest.mark.parametrize("row", HANDWRITTEN, ids=[r["note"] for r in HANDWRITTEN])
def test_handwritten_patterns(row: dict[str, object]) -> None:
    pattern = str(row["pattern"])
    assert (pattern_error(pattern) is None) is row["valid"]
    assert reference_valid(pattern) is row["valid"]


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value = '198.51.100.7']",
        f"[file:hashes.'SHA-256' = '{SHA256}']",
        f"[file:hashes.SHA256 = '{SHA256.upper()}']",
        "[network-traffic:dst_ref.value = '198.51.100.7']",
        "[url:value = 'http://evil.example.com/a?b=1' OR domain-name:value = 'evil.example.com']",
        "[ipv4-addr:value = '1.2.3.4'] OR [ipv4-addr:value = '5.6.7.8']",
        "[file:name = 'it\\'s \\\\ here.exe']",
        "[email-message:to_refs[*].value = 'x@example.org']",
    ],
)
def test_common_producer_styles_take_the_fast_path(pattern: str) -> None:
    assert simple_comparisons(pattern) is not None
    assert pattern_error(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("[file:hashes.MD5 = 'xyz']", "'xyz' is not a valid MD5 hash"),
        ("[ipv4-addr:value = '1.2.3.4'", "missing ']'"),
        ("ipv4-addr:value = '1.2.3.4'", "missing square brackets"),
        ("[a:b = 'x'] WITHIN 5 SECONDS WITHIN 6 SECONDS", "Duplicate qualifier type"),
        ("[x:hashes[0] = 'a']", "could not be checked"),
        ("", "pattern is empty"),
    ],
)
def test_errors_say_what_is_wrong(pattern: str, fragment: str) -> None:
    error = pattern_error(pattern)
    assert error is not None and fragment in error


def test_escapes_are_resolved_in_values() -> None:
    found = simple_comparisons("[file:name = 'it\\'s \\\\ x' OR file:hashes.'x\\'y' = 'a']")
    assert found is not None
    assert [c.value for c in found] == ["it's \\ x", "a"]
    assert found[1].path == ("hashes", "x'y")


def grammar_comparisons(pattern: str) -> list[object] | None:
    """The comparisons the grammar itself reads (no fast path), None when it reads others."""
    parsed = grammar_parse(pattern)
    assert parsed is not None, pattern
    return None if parsed.simple is None else list(parsed.simple)
