"""One platform for the issue-15 attack tests: the real app over embedded or Kafka + ES.

``platform`` (a fixture, parametrised over both backends by the tests that ask
for ``params``) registers the agencies of every jurisdiction, an admin per
jurisdiction, and gives helpers that go through HTTP only: push through TAXII,
correlate with the real worker, read every route as a given agency.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from core import names
from core.access import Agency
from core.clock import FakeClock
from core.settings import Settings
from records.agencies import AgencyRegistry
from tests.e2e.conftest import ROOT, Key, embedded_or_real
from tests.security.conftest import full_app
from threatbay.bootstrap import Services, correlator_for

TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
TLP_CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"


def identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'trust:' + name)}"


PARTIES = {
    "gd": Agency("gd-cac", "Guangdong CAC", "GD", identity("gd"), "B"),
    "gd2": Agency("gd-cncert", "CNCERT Guangdong", "GD", identity("gd2"), "B"),
    "hk": Agency("hk-govcert", "GovCERT.HK", "HK", identity("hk"), "A"),
    "hk2": Agency("hk-hkcert", "HKCERT", "HK", identity("hk2"), "B"),
    "mo": Agency("mo-caric", "CARIC", "MO", identity("mo"), "B"),
    "gdadmin": Agency("gd-ops", "GD operators", "GD", identity("gdadmin"), roles=("admin",)),
    "hkadmin": Agency("hk-ops", "HK operators", "HK", identity("hkadmin"), roles=("admin",)),
}


def indicator(
    pattern: str, *, tlp: str | None = TLP_GREEN, stix_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id or f"indicator--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-02-01T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    if tlp:
        obj["object_marking_refs"] = [tlp]
    obj.update(extra)
    return obj


@dataclass
class Platform:
    services: Services
    client: TestClient
    keys: dict[str, Key] = field(default_factory=dict)
    consumers: dict[str, Any] = field(default_factory=dict)
    patience: int = 6

    def consumer(self, topic: str, group: str) -> Any:
        """One consumer per group for the platform's life, joined before it is needed."""
        if group not in self.consumers:
            consumer = self.services.bus.consumer(topic, group)
            member = getattr(consumer, "_consumer", None)
            deadline = time.monotonic() + 60
            while member is not None and time.monotonic() < deadline:
                # kafka-python: assignment() is the only sign that a join has completed
                consumer.poll(timeout_s=0.5)
                if member.assignment():
                    self.patience = 15
                    break
            self.consumers[group] = consumer
        return self.consumers[group]

    def join(self) -> None:
        """Join every stage's group now, while the topics are still empty (real Kafka)."""
        self.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
        self.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)
        self.consumer(names.TOPIC_ALERTS, names.GROUP_NOTIFIER)

    def push(self, who: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
        """POST an envelope to ``who``'s inbox; the TAXII status resource (202 asserted)."""
        key = self.keys[who]
        response = self.client.post(
            key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
        )
        assert response.status_code == 202, response.text
        status: dict[str, Any] = response.json()
        return status

    def correlate(self) -> int:
        worker = correlator_for(self.services)
        consumer = self.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
        total = int(worker.drain(consumer, idle_polls=self.patience))
        for index in (names.INDEX_INDICATORS, names.INDEX_OBJECTS):
            self.services.store.refresh(index)
        return total

    def raise_alerts(self) -> None:
        """The alert engine, then the notifier, over everything announced so far."""
        from threatbay.bootstrap import alert_engine_for, notifier_for

        svc = self.services
        for stage, topic, group in (
            (alert_engine_for(svc), names.TOPIC_CHANGES, names.GROUP_ALERTER),
            (notifier_for(svc), names.TOPIC_ALERTS, names.GROUP_NOTIFIER),
        ):
            stage.drain(self.consumer(topic, group), idle_polls=self.patience)
            for index in (names.INDEX_ALERTS, names.INDEX_ALERT_EVENTS, names.INDEX_DELIVERIES):
                svc.store.refresh(index)

    def post(self, who: str, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers=self.keys[who].bearer)

    def get(self, who: str, path: str, **params: Any) -> Any:
        key = self.keys[who]
        headers = key.basic if path.startswith("/taxii2") else key.bearer
        return self.client.get(path, params=params, headers=headers)

    def everything(self, who: str) -> str:
        """Every read route's answer for ``who``, as one text (what it can observe)."""
        parts = []
        for path in (
            "/api/v1/indicators",
            f"{ROOT}collections/shared-all/objects/",
            f"{ROOT}collections/shared-gd/objects/",
            f"{ROOT}collections/shared-hk/objects/",
            f"{ROOT}collections/shared-mo/objects/",
        ):
            response = self.get(who, path, limit=500) if "api/v1" in path else self.get(who, path)
            parts.append(response.text)
        for item in self.get(who, "/api/v1/indicators", limit=500).json().get("items", []):
            parts.append(self.get(who, f"/api/v1/indicators/{item['key']}").text)
        return "\n".join(parts)


def register(services: Services, parties: dict[str, Agency] = PARTIES) -> dict[str, Key]:
    registry = AgencyRegistry(services.store, services.clock)
    keys: dict[str, Key] = {}
    for name, agency in parties.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[name] = Key(agency, cred.key_id, secret)
    return keys


def platform_of(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    settings: Settings | None = None,
) -> Iterator[Platform]:
    """A ``Platform`` on ``request.param`` ("embedded" or "kafka+elasticsearch")."""
    with embedded_or_real(request, tmp_path, clock, "trust") as services:
        if settings is not None:
            services.settings = settings
        keys = register(services)
        with TestClient(full_app(services)) as client:
            platform = Platform(services, client, keys)
            platform.join()
            try:
                yield platform
            finally:
                for consumer in platform.consumers.values():
                    consumer.close()


BACKENDS = ["embedded", "kafka+elasticsearch"]


@pytest.fixture(params=BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Platform]:
    yield from platform_of(request, tmp_path, clock)


@pytest.fixture(params=["embedded"])
def embedded(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Platform]:
    yield from platform_of(request, tmp_path, clock)
