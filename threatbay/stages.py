"""Build and run the stages on the backends the settings name.

``serve_all`` runs everything in one process (the embedded default);
``serve_api`` / ``run_correlator`` / ``run_rescorer`` / ``run_alerter`` run one stage each for
the production stack (deploy/compose.yaml).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from core.settings import Settings
from correlate.rescore import Rescorer
from correlate.worker import Correlator
from threatbay.bootstrap import Services, build

log = logging.getLogger("threatbay")


@dataclass
class Loops:
    """Background loops of one process, stopped together."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def guarded() -> None:
            while not self.stop.is_set():
                try:
                    target(self.stop)
                    return
                except Exception:  # a loop must never die silently; log and restart it
                    log.exception("loop %s crashed; restarting in 1 s", name)
                    self.stop.wait(1.0)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)


def correlator_for(services: Services) -> Correlator:
    """The correlation worker wired to this process's services."""
    from correlate.score import Scorer
    from threatbay.wiring import agency_profiles, shared_warninglists

    return Correlator(
        services.bus,
        services.store,
        services.clock,
        agency_profiles(services),
        Scorer(shared_warninglists()),
        services.sharing,
    )


def start_correlator(services: Services, loops: Loops, *, from_beginning: bool = False) -> None:
    correlator = correlator_for(services)
    loops.start("correlator", lambda stop: correlator.run(stop, from_beginning=from_beginning))


class _WarninglistsOnDemand:
    """The shared warninglists, loaded (~10 s) only if a record lacks its stored hits."""

    def hits(self, observable_type: str, value: str, path: str = "value") -> list[str]:
        from threatbay.wiring import shared_warninglists

        return shared_warninglists().hits(observable_type, value, path)


def rescorer_for(services: Services) -> Rescorer:
    """The periodic re-score wired to this process's services (issue 4)."""
    from correlate.score import Scorer
    from threatbay.wiring import agency_profiles

    return Rescorer(
        services.store,
        services.bus,
        services.clock,
        Scorer(_WarninglistsOnDemand()),
        agency_profiles(services),
        max_rate=services.settings.rescore_max_rate or None,
    )


def start_rescorer(services: Services, loops: Loops) -> None:
    rescorer = rescorer_for(services)
    interval = services.settings.rescore_interval_s
    loops.start("rescore", lambda stop: rescorer.run(stop, interval))


def start_alerter(services: Services, loops: Loops) -> None:
    from threatbay.wiring import start_alert_loops

    start_alert_loops(services, loops)


def _uvicorn(services: Services, host: str, port: int, loops: Loops) -> None:
    import uvicorn

    from api.app import create_app

    app = create_app(services)
    print(f"ThreatBay listening on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    print(f"  bus:   {services.settings.bus_url}\n  store: {services.settings.store_url}")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        loops.shutdown()
        services.close()


def first_run_hint(services: Services) -> str | None:
    """What a new user should do next when no agency is registered yet."""
    from api.registry import AgencyRegistry

    if AgencyRegistry(services.store, services.clock).list():
        return None
    return (
        "No agency is registered yet. To see the whole mechanism with three simulated agencies\n"
        "(GD, HK, MO) in one minute, stop this and run:   threatbay demo\n"
        "To register a real agency:   threatbay agency add --help"
    )


def serve_all(settings: Settings, host: str, port: int) -> None:
    """API + correlator + re-score + alert engine + notifier in one process."""
    services = build(settings)
    hint = first_run_hint(services)
    if hint:
        print(hint)
    loops = Loops()
    start_correlator(services, loops)
    start_rescorer(services, loops)
    start_alerter(services, loops)
    _uvicorn(services, host, port, loops)


def serve_api(settings: Settings, host: str, port: int) -> None:
    services = build(settings)
    _uvicorn(services, host, port, Loops())


def _run_until_signal(services: Services, loops: Loops) -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    loops.shutdown()
    services.close()


def run_correlator(settings: Settings, *, from_beginning: bool = False) -> None:
    services = build(settings)
    loops = Loops()
    start_correlator(services, loops, from_beginning=from_beginning)
    print(f"correlator consuming {settings.bus_url} -> {settings.store_url}")
    _run_until_signal(services, loops)


def run_rescorer(settings: Settings) -> None:
    """Only the periodic re-score (run one per deployment; more only add conflicts)."""
    services = build(settings)
    loops = Loops()
    start_rescorer(services, loops)
    print(f"re-score every {settings.rescore_interval_s:g}s on {settings.store_url}")
    _run_until_signal(services, loops)


def rescore_once(settings: Settings) -> str:
    """One re-score pass now; a line saying what it did (``threatbay rescore --once``)."""
    services = build(settings)
    try:
        r = rescorer_for(services).run_pass()
    finally:
        services.close()
    return (
        f"re-scored {r.written} of {r.due} due records ({r.full} fully, {r.conflicts} "
        f"conflicts skipped), {r.crossings} threshold crossings announced"
    )


def run_alerter(settings: Settings) -> None:
    services = build(settings)
    loops = Loops()
    start_alerter(services, loops)
    print(f"alert engine consuming {settings.bus_url} -> {settings.store_url}")
    _run_until_signal(services, loops)
