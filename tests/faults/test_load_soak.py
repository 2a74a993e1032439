"""CI-sized soak of the embedded default (issue #17): two minutes of benches/load/load.py.

Three agencies push, four analysts query, two dashboards stream for 120 s on
the embedded backends: no error that is not the client's fault and no client
timeout (before: TAXII pushes past the client's 30 s timeout, the audit
flusher's ever larger writes holding the store's writer lock). The server's
growth after the first minute is printed, not asserted: the < 100 MiB target
is not met yet (README "Reliability" has the 10-minute figures and what is
left).
"""

from __future__ import annotations

import pytest

from tests.faults.test_load_smoke import load_module

pytestmark = pytest.mark.timeout(420)


def test_two_minutes_of_load_on_the_embedded_default_hold() -> None:
    load = load_module()
    result = load.run_load(load.parse(["--duration", "120", "--warmup", "10"]))
    assert result["server_errors"] == 0, result
    assert result["timeouts"] == 0, result
    assert result["accepted"] > 0
    print("growth after the first minute (KiB):", result["growth_after_first_minute_kib"])
