"""CSV and text IOC lists: refanged, typed values become one valid indicator each."""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds.config import FeedConfig
from feeds.csv_feed import classify, indicator_for, indicator_id, parse_list, stix_pattern
from ingest.validate import validation_error

DATA = Path(__file__).parents[1] / "data" / "feeds"


def _csv_feed() -> FeedConfig:
    return FeedConfig.model_validate(
        {
            "name": "blocklist",
            "kind": "csv",
            "url": "http://127.0.0.1/blocklist.csv",
            "jurisdiction": "GD",
            "csv": {
                "columns": {"ip": "ipv4", "host": "domain", "link": "url"},
                "description_column": "reason",
            },
        }
    )


def test_csv_values_are_refanged_typed_and_bad_ones_reported_by_line() -> None:
    iocs, invalid = parse_list(_csv_feed(), (DATA / "blocklist.csv").read_text())
    values = [(i.ioc_type, i.value) for i in iocs]
    assert ("ipv4", "198.51.100.23") in values
    assert ("domain", "evil-cdn.example.com") in values
    assert ("url", "http://evil-cdn.example.com/payload.bin") in values
    assert ("domain", "phish.example.org") in values
    assert ("url", "https://phish.example.org/login") in values
    assert next(i for i in iocs if i.value == "203.0.113.9").description == "phishing kit"
    assert len(invalid) == 3
    assert any("line 5" in m and "not a valid ipv4" in m for m in invalid)
    assert any("not a valid domain" in m for m in invalid)


def test_text_lists_recognise_types_and_skip_comments() -> None:
    feed = FeedConfig.model_validate(
        {"name": "t", "kind": "text", "url": "http://127.0.0.1/x", "jurisdiction": "MO"}
    )
    iocs, invalid = parse_list(feed, (DATA / "iocs.txt").read_text())
    assert [(i.ioc_type, i.value) for i in iocs] == [
        ("url", "http://drop.example.net/a.exe"),
        ("ipv4", "192.0.2.77"),
        ("email", "user@phish.example.com"),
        ("md5", "44d88612fea8a8f36de82e1278abb02f"),
    ]
    assert invalid == ["line 7: not a recognisable IOC: '???'"]


@pytest.mark.parametrize(
    ("ioc_type", "raw", "expected"),
    [
        ("ipv4", "198.51.100[.]1", ("ipv4", "198.51.100.1")),
        ("ip", "2001:db8::1", ("ipv6", "2001:db8::1")),
        ("ipv4", "2001:db8::1", None),
        ("domain", "Example[.]COM.", ("domain", "example.com")),
        ("sha256", "A" * 64, ("sha256", "a" * 64)),
        ("sha1", "abc", None),
        ("auto", "hxxps://x[.]example/p?q=1", ("url", "https://x.example/p?q=1")),
    ],
)
def test_classify(ioc_type: str, raw: str, expected: tuple[str, str] | None) -> None:
    result = classify(ioc_type, raw)
    if expected is None:
        assert isinstance(result, str) and "not a valid" in result
    else:
        assert result == expected


def test_generated_indicators_are_valid_stix_with_deterministic_ids() -> None:
    feed = _csv_feed()
    iocs, _ = parse_list(feed, (DATA / "blocklist.csv").read_text())
    now = "2026-03-01T08:00:00.000000Z"
    for ioc in iocs:
        indicator = indicator_for(feed, ioc, now)
        assert validation_error(indicator) is None, indicator
    assert indicator_id("a", "ipv4", "198.51.100.1") == indicator_id("a", "ipv4", "198.51.100.1")
    assert indicator_id("a", "ipv4", "198.51.100.1") != indicator_id("b", "ipv4", "198.51.100.1")
    assert stix_pattern("url", "http://x.example/it's") == "[url:value = 'http://x.example/it\\'s']"
    assert stix_pattern("sha1", "ab" * 20) == f"[file:hashes.'SHA-1' = '{'ab' * 20}']"
