"""The one place that wires stages and backends (cosmicpython ``bootstrap.py``).

Nothing is built at import time; tests pass their own clock and backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock, SystemClock
from core.crossborder import default_whitelist, whitelist_from_yaml_text
from core.policy import SharingPolicy
from core.ports import Bus, Store
from core.settings import Settings


@dataclass
class Services:
    """Everything a stage needs, built once per process."""

    settings: Settings
    bus: Bus
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    sharing: SharingPolicy = field(default_factory=lambda: SharingPolicy(default_whitelist()))
    audit: Any = None

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        self.bus.close()
        self.store.close()


def bus_from_url(url: str, settings: Settings) -> Bus:
    """Pick the bus adapter by URL scheme (faust ``by_url``)."""
    if url.startswith("sqlite:"):
        from backends.embedded_bus import EmbeddedBus

        return EmbeddedBus(url.removeprefix("sqlite://"))
    if url.startswith("kafka:"):
        from backends.kafka_bus import KafkaBus

        return KafkaBus(url.removeprefix("kafka://"), settings.kafka, prefix=settings.namespace)
    raise ValueError(f"unknown bus URL scheme: {url!r} (use kafka:// or sqlite:///)")


def store_from_url(url: str, settings: Settings) -> Store:
    """Pick the store adapter by URL scheme."""
    if url.startswith("sqlite:"):
        from backends.embedded_store import EmbeddedStore

        return EmbeddedStore(url.removeprefix("sqlite://"))
    if url.startswith(("http:", "https:")):
        from backends.elasticsearch_store import ElasticsearchStore

        return ElasticsearchStore(url, settings.elasticsearch, prefix=settings.namespace)
    raise ValueError(f"unknown store URL scheme: {url!r} (use http(s):// or sqlite:///)")


def sharing_policy(settings: Settings) -> SharingPolicy:
    """The sharing policy with the operator's cross-border whitelist, validated at start-up."""
    if settings.crossborder_file is None:
        return SharingPolicy(default_whitelist())
    text = settings.crossborder_file.read_text(encoding="utf-8")
    return SharingPolicy(whitelist_from_yaml_text(text))


def build(settings: Settings | None = None, clock: Clock | None = None) -> Services:
    """Build the services named by ``settings`` (embedded SQLite by default)."""
    settings = settings or Settings()
    settings.check_production()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Services(
        settings=settings,
        bus=bus_from_url(settings.bus_url, settings),
        store=store_from_url(settings.store_url, settings),
        clock=clock or SystemClock(),
        sharing=sharing_policy(settings),
    )
