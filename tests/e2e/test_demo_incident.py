"""``threatbay demo incident`` walks a joint case end to end (issue 23) on the embedded default."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from core.settings import Settings
from tests.e2e.conftest import free_port
from threatbay.demo import run_incident_demo


def test_demo_incident_walks_a_joint_case(tmp_path: Path) -> None:
    buffer = io.StringIO()
    _alerts, case = run_incident_demo(
        Settings(data_dir=tmp_path),
        port=free_port(),
        console=Console(file=buffer, width=200, color_system=None),
    )
    text = buffer.getvalue()
    assert case.case_id.startswith("incident--")
    assert case.lead_history == ["gd-cncert", "hk-hkcert"]
    assert case.tasks["hk-hkcert"]["status"] == "done"
    assert case.tasks["mo-caric"]["overdue"]
    assert case.request["status"] == "answered"
    clocks = {c["jurisdiction"]: c["status"] for c in case.clocks}
    assert clocks == {"GD": "breached", "HK": "running"}
    assert case.red_note_seen_by == {"gd-cncert": False, "hk-hkcert": True, "mo-caric": False}
    assert "mo-caric:task_overdue" in case.deliveries
    assert case.stix_types["incident"] == 1 and case.stix_types["task"] == 2
    assert "/ui/incidents.html" in text and "Joint incident case" in text
