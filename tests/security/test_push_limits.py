"""Issue 15 class 5: no single push can stall or flood the platform.

Per object: a pattern beyond the limits (length, comparisons, nesting) or an
object nested too deep is that object's failure, with the limit named, and its
neighbours are accepted; a valid 1,000-comparison AND / LIKE pattern is read
(it used to fail with RecursionError). Per agency: past its objects-per-minute
budget a push is answered 429 with Retry-After, and other agencies push on.
Storage: a record keeps a bounded view of each report, so a big OR-pattern
costs storage in proportion to its size, not its size squared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from core.clock import FakeClock
from core.settings import LimitsSettings, Settings
from tests.security.trust import (  # noqa: F401
    BACKENDS,
    Platform,
    embedded,
    indicator,
    platform_of,
)


def _and(n: int, op: str = "=") -> str:
    value = "'10.9.%d.%d'" if op == "=" else "'10.9.%d.%d%%'"
    return (
        "["
        + " AND ".join(f"ipv4-addr:value {op} {value % (i // 250, i % 250)}" for i in range(n))
        + "]"
    )


def test_a_pattern_beyond_the_limits_fails_alone_with_the_limit_named(
    embedded: Platform,  # noqa: F811
) -> None:
    huge = indicator(_and(20_000))
    many = indicator("[" + " AND ".join(f"a:b = '{i}'" for i in range(1_500)) + "]")
    deep = indicator("[" + "(" * 40 + "ipv4-addr:value = '10.0.0.1'" + ")" * 40 + "]")
    nested: dict[str, object] = {"x": "leaf"}
    for _ in range(40):
        nested = {"x": nested}
    bushy = indicator("[ipv4-addr:value = '10.0.0.2']", x_nested=nested)
    fine = indicator("[ipv4-addr:value = '10.0.0.3']")
    status = embedded.push("hk", [huge, many, deep, bushy, fine])
    assert status["success_count"] == 1, status
    assert status["successes"][0]["id"] == fine["id"]
    why = {f["id"]: f["message"] for f in status["failures"]}
    assert "limits.pattern_max_chars" in why[huge["id"]]
    assert "limits.pattern_max_comparisons" in why[many["id"]]
    assert "limits.pattern_max_depth" in why[deep["id"]]
    assert "limits.object_max_depth" in why[bushy["id"]]


@pytest.mark.parametrize("op", ["=", "LIKE"])
def test_a_valid_thousand_comparison_and_pattern_is_read(embedded: Platform, op: str) -> None:  # noqa: F811
    obj = indicator(_and(1_000, op))
    status = embedded.push("hk", [obj])
    assert status["success_count"] == 1, status.get("failures")
    embedded.correlate()
    items = embedded.get("hk", "/api/v1/indicators", type="pattern").json()["items"]
    assert [i["observable_type"] for i in items] == ["pattern"]


@pytest.fixture(params=BACKENDS)
def limited(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Platform]:
    settings = Settings(
        data_dir=tmp_path,
        limits=LimitsSettings(
            agency_objects_per_minute=50, pattern_max_comparisons=5_000,
            pattern_max_chars=400_000,
        ),
    )  # fmt: skip
    yield from platform_of(request, tmp_path, clock, settings)


def test_an_agency_past_its_minute_gets_429_and_the_others_push_on(limited: Platform) -> None:
    p = limited
    first = [indicator(f"[ipv4-addr:value = '10.1.0.{i}']") for i in range(40)]
    assert p.push("hk", first)["success_count"] == 40
    key = p.keys["hk"]
    more = [indicator(f"[ipv4-addr:value = '10.1.1.{i}']") for i in range(20)]
    refused = p.client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": more})
    )
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "limits.agency_objects_per_minute" in refused.json()["description"]
    assert p.push("gd", more)["success_count"] == 20  # another agency is not held up


def test_complex_patterns_have_a_parsing_budget(limited: Platform) -> None:
    """The grammar costs ~40 µs a character: an agency's minute of it is bounded too."""
    p = limited
    key = p.keys["mo"]
    heavy = [indicator(_and(600)) for _ in range(25)]  # ~20k characters each, all parsed
    first = p.client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": heavy[:20]})
    )
    assert first.status_code == 202, first.text
    again = p.client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": heavy[20:]})
    )
    assert again.status_code == 429, again.text
    assert "limits.agency_grammar_chars_per_minute" in again.json()["description"]


def test_an_or_pattern_costs_storage_in_proportion(limited: Platform) -> None:
    """4,000 OR-ed addresses: each record stays small (the pattern is stored once)."""
    p = limited
    pattern = " OR ".join(f"[ipv4-addr:value = '10.7.{i // 250}.{i % 250}']" for i in range(4000))
    assert len(pattern) > 140_000
    assert p.push("hk", [indicator(pattern)])["success_count"] == 1
    p.correlate()
    record = p.get("hk", "/api/v1/indicators/ipv4-addr|value|10.7.3.17")
    assert record.status_code == 200, record.text
    assert len(record.content) < 8_000, len(record.content)
