"""``threatbay export`` and ``threatbay allowlist`` on the same code path as the API (issue #19)."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from core.clock import FakeClock
from core.settings import Settings
from tests.e2e.conftest import bundle, indicator
from tests.e2e.test_backends_agree import drain
from tests.e2e.test_status import keys_for
from tests.exports.validators import check_zone
from threatbay.bootstrap import build, correlator_for
from threatbay.cli import app

DOMAINS = ["cli-c2.example.net", "mail.own-agency.example.org", "Bücher-cli.example.org"]


def seed(data_dir: Path, clock: FakeClock) -> str:
    """Push DOMAINS as HK over TAXII and correlate; returns the HTTP plain export."""
    svc = build(Settings(data_dir=data_dir), clock=clock)
    try:
        keys = keys_for(svc)
        with TestClient(create_app(svc)) as client:
            for name in DOMAINS:
                obj = indicator(stix_id=f"indicator--{uuid.uuid4()}",
                                pattern=f"[domain-name:value = '{name}']")  # fmt: skip
                r = client.post(keys["hk"].inbox + "objects/", headers=keys["hk"].post,
                                content=orjson.dumps(bundle(obj)))  # fmt: skip
                assert r.status_code == 202, r.text
            drain(svc, correlator_for(svc))
            r = client.get("/api/v1/exports/plain", params={"type": "domain-name"},
                           headers=keys["hk"].bearer)  # fmt: skip
            assert r.status_code == 200
            return r.text
    finally:
        svc.close()


def test_cli_export_equals_the_api_and_honours_the_allow_list(
    tmp_path: Path, clock: FakeClock
) -> None:
    data = tmp_path / "data"
    over_http = seed(data, clock)
    runner = CliRunner()
    out = tmp_path / "domains.txt"
    done = runner.invoke(app, ["export", "plain", "--type", "domain-name", "--agency",
                               "hk-govcert", "-o", str(out), "--data-dir", str(data),
                               "--no-progress"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert out.read_text() == over_http
    assert "xn--bcher-cli-" in over_http and "cli-c2.example.net" in over_http

    listing = tmp_path / "allow.yaml"
    listing.write_text(
        "suffix:\n  - own-agency.example.org\ncidr:\n  - {value: 192.0.2.0/24, "
        "note: lab}\nvalue:\n  - hxxp://intranet.own-agency[.]example.org/\n"
    )
    done = runner.invoke(app, ["allowlist", "import", str(listing), "--agency", "hk-govcert",
                               "--data-dir", str(data)])  # fmt: skip
    assert done.exit_code == 0 and "imported 3" in done.output, done.output
    done = runner.invoke(app, ["allowlist", "list", "--agency", "hk-govcert", "--data-dir",
                               str(data)])  # fmt: skip
    assert (
        "suffix\town-agency.example.org" in done.output and "cidr\t192.0.2.0/24\tlab" in done.output
    )
    zone = tmp_path / "rpz.zone"
    done = runner.invoke(app, ["export", "rpz", "--agency", "hk-govcert", "-o", str(zone),
                               "--wildcard", "--data-dir", str(data)])  # fmt: skip
    assert done.exit_code == 0, done.output
    text = zone.read_text()
    check_zone(text, tmp_path)
    assert "*.cli-c2.example.net CNAME ." in text and "own-agency" not in text
    done = runner.invoke(app, ["allowlist", "remove", "suffix", "own-agency.example.org",
                               "--agency", "hk-govcert", "--data-dir", str(data)])  # fmt: skip
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["allowlist", "add", "cidr", "not-a-range", "--agency",
                               "hk-govcert", "--data-dir", str(data)])  # fmt: skip
    assert done.exit_code == 2 and "not an address range" in done.output
    # Another agency's list is its own: GD's list is empty.
    done = runner.invoke(app, ["allowlist", "list", "--agency", "gd-cac", "--data-dir", str(data)])
    assert done.exit_code == 0 and done.output.strip() == ""
