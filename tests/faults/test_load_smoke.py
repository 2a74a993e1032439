"""CI-sized run of benches/load/load.py: 10 s of mixed load on the embedded backends."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

LOAD = Path(__file__).resolve().parents[2] / "benches" / "load" / "load.py"

pytestmark = pytest.mark.timeout(240)


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("threatbay_load_bench", LOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_ten_seconds_of_pushes_queries_and_streams_give_no_server_error() -> None:
    load = load_module()
    result = load.run_load(
        load.parse(
            [
                "--duration",
                "10",
                "--agencies",
                "3",
                "--analysts",
                "2",
                "--dashboards",
                "2",
                "--warmup",
                "1",
            ]
        )
    )
    assert result["server_errors"] == 0, result
    assert result["client_errors"] == 0, result
    assert result["accepted"] > 0, "no object was accepted by TAXII push"
    assert result["ok"] > 0
