"""``threatbay rescore --once`` on the embedded store: what an operator runs by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core import names
from core.clock import format_timestamp
from core.ports import Put
from core.settings import Settings
from correlate.merge import summarise
from correlate.score import AgencyProfile, Scorer
from threatbay.bootstrap import build
from threatbay.cli import app


def scored_days_ago(days: float) -> dict[str, Any]:
    """An IP record from one A-rated agency (confidence 90), scored when it was reported."""
    then = datetime.now(UTC) - timedelta(days=days)
    at = format_timestamp(then)
    source = {
        "agency": "hk-govcert", "jurisdiction": "HK", "stix_id": "indicator--1",
        "modified": at, "confidence": 90, "tlp": "green", "valid_until": None,
        "revoked": False, "first_seen": at, "last_seen": at,
    }  # fmt: skip
    rec: dict[str, Any] = {
        "key": "ipv4-addr|value|203.0.113.5", "observable_type": "ipv4-addr", "path": "value",
        "value": "203.0.113.5", "sources": [source], "sightings": [],
    }  # fmt: skip
    summarise(rec)
    Scorer(None).apply(rec, lambda _: AgencyProfile("A"), then, hits=[])
    return rec


def test_rescore_once_lowers_a_ten_day_old_score(tmp_path: Path) -> None:
    services = build(Settings(data_dir=tmp_path))
    services.store.put_many(names.INDEX_INDICATORS, [Put("ipv4-addr|value|203.0.113.5",
                                                         scored_days_ago(10))])  # fmt: skip
    services.close()

    out = CliRunner().invoke(app, ["rescore", "--once", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "re-scored 1 of 1 due records" in out.output
    assert "1 threshold crossings announced" in out.output  # 90 -> 54.8: below 90 … 70

    services = build(Settings(data_dir=tmp_path))
    stored = services.store.get(names.INDEX_INDICATORS, "ipv4-addr|value|203.0.113.5")
    services.close()
    assert stored is not None
    # 90 × (1 − (10/47)^(1/1.65)) = 54.77
    assert stored.doc["score"] == pytest.approx(54.77, abs=0.01)

    again = CliRunner().invoke(app, ["rescore", "--once", "--data-dir", str(tmp_path)])
    assert "re-scored 0 of 0 due records" in again.output
