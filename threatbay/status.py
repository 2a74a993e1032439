"""``threatbay status``: where work stands, as a table (records/health.py assembles it).

Per stage and consumer group: the lag (messages not yet processed), the
processes running it, crashes (and whether it is crash-looping), dead letters
with their last reasons, and the last error with its time; then the messages
on ``intel.dlq``, records, alerts by level and deliveries by state.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from core.services import Services
from records.health import Status, status, when


def current(services: Services, loops: Any = None) -> Status:
    """The status of the deployment ``services`` reach (``loops``: this process's own)."""
    local = loops.snapshot() if loops is not None else None
    process = loops.process if loops is not None else None
    return status(services.bus, services.store, services.clock, local, process=process)


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def render(st: Status, console: Console) -> None:
    """Print ``st`` as the operator reads it."""
    table = Table(title=f"ThreatBay status at {st.at}", title_justify="left")
    for column in ("stage", "group", "lag", "running", "crashes", "dead letters", "last error"):
        table.add_column(column, overflow="fold")
    for s in st.stages:
        if s.processes == 0 and s.group is None:
            continue  # a periodic loop no process runs: nothing to say
        running = f"{s.running}/{s.processes}" + (f" ({s.stale} stale)" if s.stale else "")
        crashes = str(s.crashes) + (" CRASH-LOOPING" if s.crash_looping else "")
        error = f"{when(s.last_error_at)}  {s.last_error}" if s.last_error else "-"
        dead = str(s.dead_letters)
        if s.last_dead_reasons:
            dead += "\n" + "\n".join(f"- {r[:120]}" for r in s.last_dead_reasons[:3])
        table.add_row(s.stage, s.group or "-", _count(s.lag), running, crashes, dead, error[:300])
    console.print(table)
    console.print(
        f"intel.dlq: {_count(st.dlq_total)} messages   records: {_count(st.records)}   "
        f"alerts: {_count(st.alerts)} {dict(sorted(st.alerts_by_level.items()))} "
        f"(open {dict(sorted(st.open_alerts_by_level.items()))})   "
        f"deliveries: {dict(sorted(st.deliveries_by_state.items()))}",
        highlight=False,
        soft_wrap=True,
    )
    for problem in st.problems:
        console.print(f"[bold red]NOT READY[/]: {problem}", highlight=False, soft_wrap=True)
    if not st.problems:
        console.print("ready: bus and store answer, no stage is crash-looping", highlight=False)
