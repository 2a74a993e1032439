"""``Services``: what every stage of one process works with, built once (threatbay/bootstrap.py).

The ports (bus, store), the clock, the settings and the sharing policy. The
record books over them (agencies, alerts, audit, outbox...) are built once per
``Services`` by ``records.books.records_of``. Tests build their own, with a
fake clock and the backends they choose (STYLE.md 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.clock import Clock, SystemClock
from core.crossborder import default_whitelist
from core.policy import SharingPolicy
from core.ports import Bus, Store
from core.settings import Settings
from core.trust import TrustStore


def default_sharing() -> SharingPolicy:
    """The sharing policy with the default cross-border whitelist (core/crossborder.py)."""
    return SharingPolicy(default_whitelist())


@dataclass(eq=False)
class Services:
    """The ports and policies of one process (compared by identity)."""

    settings: Settings
    bus: Bus
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    sharing: SharingPolicy = field(default_factory=default_sharing)
    #: the verified trust lists signatures are checked against (None: none configured)
    trust: TrustStore | None = None

    def close(self) -> None:
        self.bus.close()
        self.store.close()
