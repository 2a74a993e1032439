"""Regenerate generated.jsonl: random STIX patterns near the fast path's edges.

Run: .venv/bin/python tests/data/patterns/generate.py  (deterministic, seed 2026).
Each line: {"pattern": ..., "antlr_valid": bool} with the verdict of stix2-patterns.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from stix2patterns.validator import run_validator

HERE = Path(__file__).parent
SEED = 2026
COUNT = 5000

HEX = "0123456789abcdef"
TYPES = [
    "ipv4-addr",
    "ipv6-addr",
    "domain-name",
    "url",
    "file",
    "email-addr",
    "network-traffic",
    "email-message",
    "x-custom-thing",
    "artifact",
    "mac-addr",
    "windows-registry-key",
    "process",
    "IPV4-ADDR",
    "_x",
    "a-",
    "True",
    "TRUE",
]
BAD_TYPES = ["true", "AND", "IN", "LAST", "1abc", "ipv4 addr", "", "x.y", "ipv4-addr'"]
PATHS = [
    "value",
    "hashes.MD5",
    "hashes.'MD5'",
    "hashes.md5",
    "hashes.'SHA-256'",
    "hashes.SHA256",
    "hashes.sha256",
    "hashes.'SHA-1'",
    "hashes.SHA1",
    "hashes.'SHA-512'",
    "hashes.SSDEEP",
    "hashes.TLSH",
    "hashes.'SHA3-256'",
    "dst_ref.value",
    "src_ref.value",
    "from_ref.value",
    "to_refs[*].value",
    "name",
    "'quoted path'",
    "x.True",
    "extensions.'windows-pebinary-ext'.sections[*].hashes.MD5",
    "parent_ref.name",
    "hashes.'md-5'",
    "hashes.RIPEMD160",
    "hashes.WHIRLPOOL",
    "key",
    "resolves_to_refs[*].value",
]
BAD_PATHS = [
    "x.true",
    "x.LAST",
    "bad-hyphen",
    "hashes[0]",
    "a[-1]",
    "a.b-c",
    "hashes.MD6",
    "a..b",
    ".a",
    "a[1]",
    "a[ * ]",
    "a .b",
    "'unterminated",
    "a.'b",
]
HASH_LEN = {
    "MD5": 32,
    "SHA1": 40,
    "SHA256": 64,
    "SHA512": 128,
    "SHA3256": 64,
    "RIPEMD160": 40,
    "WHIRLPOOL": 128,
    "MD6": 32,
}


def rand_hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(HEX) for _ in range(n))


def value_for(rng: random.Random, path: str) -> str:
    key = path.rsplit(".", 1)[-1].strip("'").upper().replace("-", "")
    roll = rng.random()
    if key in HASH_LEN:
        n = HASH_LEN[key]
        if roll < 0.6:
            v = rand_hex(rng, n)
            return v.upper() if rng.random() < 0.3 else v
        if roll < 0.8:
            return rand_hex(rng, n + rng.choice([-1, 1, 8]))
        return rand_hex(rng, n - 1) + rng.choice("gz' \\")
    if key == "SSDEEP":
        return rng.choice(
            [
                "3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C",
                "96:" + "A" * rng.choice([10, 130]) + ":b",
                "3:a b:c",
            ]
        )
    choices = [
        "198.51.100.7",
        "10.0.0.1",
        "2001:DB8::1",
        "evil.example.com",
        "EVIL.EXAMPLE.COM.",
        "hxxp://evil[.]example[.]com/a",
        "http://evil.example.com:80/x?y=%7e#f",
        "user@example.com",
        "it\\'s",
        "back\\\\slash",
        "bad\\escape",
        "tab\there",
        "line\nbreak",
        "",
        " ",
        "ünïcödé.例え.jp",
        "quote'inside",
        "a" * 300,
        "\u00a0nbsp",
        "C:\\\\Windows\\\\evil.exe",
        "%s",
        "\\",
        "x\\'",
        "emoji 🐍",
        "\x00nul",
        "'",
    ]
    if roll < 0.7:
        return rng.choice(choices[:8] + ["1.2.3.4", "8.8.8.8", "a.b", "http://x.y/Z?q=1"])
    return rng.choice(choices)


def ws(rng: random.Random) -> str:
    if rng.random() < 0.9:
        return rng.choice(["", " ", " ", " ", "  ", "\t", "\n", " \r\n "])
    return rng.choice(["\u00a0", " /* c */ ", "\u2028", "\x0b", "// c\n"])


def comparison(rng: random.Random) -> str:
    t = rng.choice(TYPES) if rng.random() > 0.03 else rng.choice(BAD_TYPES)
    p = rng.choice(PATHS) if rng.random() > 0.04 else rng.choice(BAD_PATHS)
    v = value_for(rng, p)
    roll = rng.random()
    if roll < 0.8:
        op, lit = "=", f"'{v}'"
    elif roll < 0.85:
        op, lit = rng.choice(["==", "!=", "<>", "LIKE", "MATCHES", "NOT ="]), f"'{v}'"
    elif roll < 0.9:
        op, lit = "IN", "(" + ", ".join(f"'{rng.choice(['a', 'b', v])}'" for _ in range(2)) + ")"
    elif roll < 0.95:
        op, lit = (
            rng.choice(["=", ">", "<="]),
            rng.choice(["443", "-1", "1.5", "true", "h'ab'", "b'YWJj'", "t'2020-01-01T00:00:00Z'"]),
        )
    else:
        op, lit = "=", rng.choice([f'"{v}"', v, f"'{v}", f"{v}'"])
    return f"{t}:{p}{ws(rng)}{op}{ws(rng)}{lit}"


def observation(rng: random.Random) -> str:
    n = rng.choice([1, 1, 1, 2, 2, 3])
    joins = [rng.choice(["OR", "OR", "OR", "AND", "or", "||"]) for _ in range(n - 1)]
    body = comparison(rng)
    for j in joins:
        body += (
            f"{rng.choice([' ', ' ', '', chr(10)])}{j}{rng.choice([' ', ' ', ''])}"
            + comparison(rng)
        )
    text = f"[{ws(rng)}{body}{ws(rng)}]"
    if rng.random() < 0.05:
        text = f"({text})"
    return text


def pattern(rng: random.Random) -> str:
    n = rng.choice([1, 1, 1, 1, 2, 3])
    text = observation(rng)
    for _ in range(n - 1):
        text += f"{ws(rng)}{rng.choice(['OR', 'OR', 'AND', 'FOLLOWEDBY'])}{ws(rng)}" + observation(
            rng
        )
    roll = rng.random()
    if roll < 0.05:
        text += rng.choice(
            [
                " WITHIN 5 SECONDS",
                " REPEATS 2 TIMES",
                " WITHIN 5 SECONDS WITHIN 6 SECONDS",
                " START t'2020-01-01T00:00:00Z' STOP t'2020-01-02T00:00:00Z'",
            ]
        )
    elif roll < 0.12:  # damage
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(["", "]", "[", "'", "\\", "x", " OR"]) + text[i + 1 :]
    return ws(rng) + text + ws(rng)


def near_simple(rng: random.Random) -> str:
    """Mostly fast-path shaped patterns with one risky detail, to probe its edges."""
    parts = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        t = rng.choice(TYPES + BAD_TYPES[:4])
        p = rng.choice(PATHS + BAD_PATHS[:6])
        v = value_for(rng, p)
        parts.append(f"{t}:{p}{rng.choice(['', ' '])}={rng.choice(['', ' ', '  '])}'{v}'")
    sep = rng.choice([" OR ", " OR ", "] OR [", " OR\n", "OR ", " AND "])
    text = "[" + sep.join(parts) + "]"
    return rng.choice(["", " ", "\n"]) + text + rng.choice(["", " ", "\n", " OR", "]"])


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    lines: list[str] = []
    while len(lines) < COUNT:
        p = pattern(rng) if rng.random() < 0.5 else near_simple(rng)
        if p in seen:
            continue
        seen.add(p)
        try:
            valid = not run_validator(p, stix_version="2.1")
        except Exception:
            valid = False
        lines.append(json.dumps({"pattern": p, "antlr_valid": valid}, ensure_ascii=False))
    (HERE / "generated.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
