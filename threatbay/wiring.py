"""Small pieces of wiring shared by ``serve`` and the single-stage entry points."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

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
