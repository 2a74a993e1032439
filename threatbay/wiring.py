"""Small pieces of wiring shared by ``serve`` and the single-stage entry points."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from api.registry import AgencyRegistry
from core.errors import UnknownAgency
from correlate.score import AgencyProfile
from correlate.warninglists import Warninglists
from threatbay.bootstrap import Services

PROFILE_TTL_S = 30.0


def agency_profiles(services: Services) -> Callable[[str], AgencyProfile]:
    """Reliability and default confidence of an agency, cached for ``PROFILE_TTL_S``."""
    registry = AgencyRegistry(services.store, services.clock)
    cache: dict[str, tuple[float, AgencyProfile]] = {}
    lock = threading.Lock()

    def profile(agency_id: str) -> AgencyProfile:
        now = time.monotonic()
        with lock:
            hit = cache.get(agency_id)
        if hit and now - hit[0] < PROFILE_TTL_S:
            return hit[1]
        try:
            agency = registry.get(agency_id)
            found = AgencyProfile(agency.reliability, agency.default_confidence)
        except UnknownAgency:
            found = AgencyProfile()
        with lock:
            cache[agency_id] = (now, found)
        return found

    return profile


@functools.cache
def shared_warninglists() -> Warninglists:
    """The MISP warninglists, loaded once per process (~10 s: pymispwarninglists parses JSON)."""
    return Warninglists()


def start_alert_loops(services: Services, loops: Any) -> None:
    """Alert engine, escalation tick, notifier and webhook deliverer as background loops."""
    from api.webhooks import Deliverer, Notifier
    from correlate.alerter import AlertBook, AlertEngine, run_escalation
    from correlate.rules import load_ruleset

    rules = load_ruleset(services.settings.alert_rules_file)  # validated: fails at start-up
    book = AlertBook(services.store, services.bus, services.clock, services.sharing)
    engine = AlertEngine(book, rules)
    notifier = Notifier(services.store, services.bus, services.clock, services.sharing)
    deliverer = Deliverer(services.store, services.clock)
    loops.start("alerter", engine.run)
    loops.start("escalation", lambda stop: run_escalation(book, stop, 15.0, rules.idle_expiry))
    loops.start("notifier", notifier.run)
    loops.start("deliverer", deliverer.run)
