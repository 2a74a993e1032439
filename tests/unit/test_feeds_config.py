"""The feed registry file: what a valid one gives, and how an invalid one is explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from feeds.config import BasicAuth, load_registry, parse_duration, parse_registry

GOOD = """
defaults:
  jurisdiction: HK
  interval: 15m
  tlp: green
feeds:
  - name: oasis-demo
    kind: taxii21
    url: https://taxii.example.org/api1/
    collection: 91a7b528-80eb-42ed-a74d-c6fbd5a26116
    reliability: B
    auth: {type: basic, username: u, password_env: DEMO_FEED_PASSWORD}
  - name: blocklist
    kind: csv
    url: https://lists.example.org/block.csv
    tlp: TLP:CLEAR
    interval: 1h
    csv:
      columns: {ip: ipv4, domain: domain}
  - name: urlhaus-text
    kind: text
    url: https://lists.example.org/urls.txt
    ioc_type: url
    auth: {type: bearer, token: abc}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text)
    return path


def test_a_valid_registry_gives_each_feed_its_settings_and_source_agency(tmp_path: Path) -> None:
    registry = load_registry(_write(tmp_path, GOOD))
    taxii, blocklist, text = registry.feeds
    assert taxii.interval_s == 900 and taxii.tlp == "green" and taxii.reliability == "B"
    assert blocklist.interval_s == 3600 and blocklist.tlp == "clear"
    assert text.ioc_type == "url" and text.jurisdiction == "HK"
    agency = taxii.agency()
    assert agency.id == "feed-oasis-demo"
    assert agency.reliability == "B" and agency.jurisdiction == "HK"
    assert agency.identity_id == load_registry(_write(tmp_path, GOOD)).feeds[0].agency().identity_id
    assert registry.get("blocklist") is blocklist


def test_a_password_from_the_environment_is_read_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = load_registry(_write(tmp_path, GOOD)).feeds[0].auth
    assert isinstance(auth, BasicAuth)
    monkeypatch.delenv("DEMO_FEED_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match="DEMO_FEED_PASSWORD"):
        auth.secret()
    monkeypatch.setenv("DEMO_FEED_PASSWORD", "s3cret")
    assert auth.secret() == "s3cret"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: Bad_Name, kind: csv, url: 'http://x/', csv: {columns: {a: ipv4}}}", "feed name"),
        ("{name: t, kind: taxii21, url: 'http://x/'}", "needs 'collection'"),
        ("{name: t, kind: csv, url: 'http://x/'}", "a csv feed needs"),
        ("{name: t, kind: text, url: 'ftp://x/'}", "must start with http"),
        ("{name: t, kind: text, url: 'http://x/', tlp: purple}", "not a TLP level"),
        ("{name: t, kind: text, url: 'http://x/', reliability: Z}", "reliability"),
        ("{name: t, kind: rss, url: 'http://x/'}", "kind"),
        ("{name: t, kind: text, url: 'http://x/', interval: soon}", "not a duration"),
        ("{name: t, kind: text, url: 'http://x/', colour: red}", "colour"),
        (
            "{name: t, kind: text, url: 'http://x/', auth: {type: basic, username: u}}",
            "exactly one of 'password'",
        ),
    ],
)
def test_an_invalid_entry_is_named_with_the_reason(entry: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_registry_text(f"defaults: {{jurisdiction: GD}}\nfeeds:\n  - {entry}\n")
    text = str(info.value)
    assert "feeds[0]" in text
    assert message in text


def parse_registry_text(text: str) -> object:
    import yaml

    return parse_registry(yaml.safe_load(text), "test.yaml")


def test_duplicate_names_missing_jurisdiction_and_bad_files_are_refused(tmp_path: Path) -> None:
    entry = "  - {name: a, kind: text, url: 'http://x/', jurisdiction: MO}\n"
    with pytest.raises(ConfigurationError, match="duplicate feed names"):
        parse_registry_text("feeds:\n" + entry + entry)
    with pytest.raises(ConfigurationError, match="jurisdiction"):
        parse_registry_text("feeds:\n  - {name: a, kind: text, url: 'http://x/'}\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_registry(_write(tmp_path, "feeds: [\n"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_registry(tmp_path / "missing.yaml")
    with pytest.raises(ConfigurationError, match="no feed named 'nope'"):
        load_registry(_write(tmp_path, GOOD)).get("nope")


def test_durations_accept_plain_seconds_and_units() -> None:
    assert parse_duration(90) == 90
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    with pytest.raises(ValueError):
        parse_duration("0")


def test_the_shipped_example_registry_is_valid() -> None:
    path = Path(__file__).parents[2] / "threatbay" / "defaults" / "feeds.example.yaml"
    registry = load_registry(path)
    assert {f.kind for f in registry.feeds} == {"taxii21", "taxii20", "misp", "csv", "text"}
