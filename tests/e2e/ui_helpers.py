"""Helpers for the browser test of the situational-awareness page (issue 9).

- ``LiveStack``: the app under uvicorn on 127.0.0.1 in a background thread, with
  the correlator and the alert engine running as background loops, exactly as
  ``threatbay serve`` runs them in one process (``threatbay/stages.py``).
- ``launch_chromium``: Debian's ``/usr/bin/chromium`` in headless mode, driven
  by Playwright for Python (``executable_path``; ``playwright install`` is never
  needed and never run). Playwright gives each launch its own temporary profile.
- Demo data pushed through the TAXII inbox of agencies in GD, HK and MO.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI

from api import ui
from api.app import create_app
from core import names
from core.access import Agency, Principal, bearer_token
from core.ports import Query
from correlate.alerter import AlertEngine, run_escalation
from correlate.rules import load_ruleset
from records.agencies import AgencyRegistry
from records.alerts import AlertBook
from threatbay.bootstrap import Loops, Services, correlator_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = os.environ.get("THREATBAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
TAXII = "application/taxii+json;version=2.1"
TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"


def chromium_problem() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    return None


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Debian Chromium; the flags keep it off every network but loopback."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
    )


# ------------------------------------------------------------------ agencies


def identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'ui-' + name)}"


DEMO_AGENCIES = {
    "gd": Agency("gd-cac", "Guangdong CAC", "GD", identity("gd"), "B"),
    "gd2": Agency("gd-cncert", "CNCERT Guangdong", "GD", identity("gd2"), "B"),
    "hk": Agency("hk-govcert", "GovCERT.HK", "HK", identity("hk"), "A"),
    "hk2": Agency("hk-hkcert", "HKCERT", "HK", identity("hk2"), "B"),
    "mo": Agency("mo-caric", "CARIC", "MO", identity("mo"), "B"),
}


@dataclass(frozen=True)
class DemoKey:
    """One agency's API key: TAXII push uses HTTP Basic, the page and API use the bearer."""

    agency: Agency
    key_id: str
    secret: str

    @property
    def bearer(self) -> str:
        return bearer_token(self.key_id, self.secret)

    @property
    def api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}


def register_agencies(services: Services) -> dict[str, DemoKey]:
    """The demo agencies with one credential each (roles publisher + analyst)."""
    registry = AgencyRegistry(services.store, services.clock)
    out = {}
    for name, agency in DEMO_AGENCIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        out[name] = DemoKey(agency, cred.key_id, secret)
    return out


# ------------------------------------------------------------------ live stack


def app_with_page(services: Services) -> FastAPI:
    """``create_app`` plus whichever of alerts, stream and the page it does not mount yet."""
    from api.alerts import alerts_router
    from api.stream import stream_router

    app = create_app(services)
    paths = {getattr(route, "path", "") for route in app.routes}
    if "/api/v1/alerts" not in paths:
        app.include_router(alerts_router())
    if "/api/v1/stream" not in paths:
        app.include_router(stream_router())
    if "/ui/" not in paths:
        app.include_router(ui.router())
    return app


@dataclass
class LiveStack:
    """The API on a real port plus the correlator and alert engine as background loops."""

    services: Services
    base_url: str = ""
    loops: Loops = field(default_factory=Loops)
    _app: Any = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> LiveStack:
        self.loops.start(
            "correlator",
            lambda stop: correlator_for(self.services).run(stop, from_beginning=True),
        )
        book = AlertBook(
            self.services.store, self.services.bus, self.services.clock, self.services.sharing
        )
        engine = AlertEngine(book, load_ruleset())
        self.loops.start("alerter", lambda stop: engine.run(stop, from_beginning=True))
        self.loops.start("escalation", lambda stop: run_escalation(book, stop, every_s=5.0))
        self._serve(0)
        return self

    def _serve(self, port: int) -> None:
        # A short graceful timeout: open SSE streams never finish on their own.
        config = uvicorn.Config(
            self._app or app_with_page(self.services),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self._app = config.app
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        bound = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{bound}"

    def stop_server(self) -> None:
        """Stop the HTTP server (open streams are cut); the loops keep running."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)

    def start_server(self) -> None:
        """Serve again on the same port, as after a restart of the API process."""
        self._serve(int(self.base_url.rsplit(":", 1)[1]))

    def stop(self) -> None:
        self.stop_server()
        self.loops.shutdown()

    # ---------------------------------------------------------------- data

    def push(self, key: DemoKey, objects: list[dict[str, Any]]) -> None:
        """POST objects to the agency's TAXII inbox; every object must be accepted."""
        response = httpx.post(
            f"{self.base_url}/taxii2/api/collections/inbox-{key.agency.id}/objects/",
            content=orjson.dumps({"objects": objects}),
            headers={"Content-Type": TAXII, "Accept": TAXII},
            auth=(key.key_id, key.secret),
            timeout=30,
        )
        assert response.status_code == 202, response.text
        assert response.json()["success_count"] == len(objects), response.text

    def publish(self, key: DemoKey, objects: list[dict[str, Any]]) -> None:
        """What the TAXII inbox does for a push, without HTTP (for when the API is down)."""
        from ingest.push import push_objects

        registry = AgencyRegistry(self.services.store, self.services.clock)
        principal = Principal(key.agency, frozenset({"publisher"}), key.key_id)
        result = push_objects(
            principal, objects, self.services.bus, self.services.clock, registry.identity_owners()
        )
        assert not result.failures, result.failures

    def stored_alerts(self) -> list[dict[str, Any]]:
        """Every alert in the store, whoever may see it (test oracle only)."""
        self.refresh()
        page = self.services.store.search(names.INDEX_ALERTS, Query(limit=500))
        return [hit.doc for hit in page.hits]

    def get(self, key: DemoKey, path: str, **params: Any) -> Any:
        response = httpx.get(self.base_url + path, params=params, headers=key.api, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def open_alerts(self, key: DemoKey) -> list[dict[str, Any]]:
        """Every open alert the API shows ``key`` (all pages)."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"status": "open", "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.get(key, "/api/v1/alerts", **params)
            items += page["items"]
            cursor = page.get("next_cursor") or page.get("next")
            if not cursor:
                return items

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Poll ``check`` until true (the pipeline runs in background loops)."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def refresh(self) -> None:
        for index in (names.INDEX_INDICATORS, names.INDEX_ALERTS, names.INDEX_ALERT_EVENTS):
            self.services.store.refresh(index)


# ------------------------------------------------------------------ STIX


def indicator(
    pattern: str, *, confidence: int = 80, tlp: str = TLP_GREEN, **extra: Any
) -> dict[str, Any]:
    """A STIX 2.1 indicator with a fresh id."""
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        "confidence": confidence,
        "object_marking_refs": [tlp],
    }
    obj.update(extra)
    return obj


def demo_reports() -> list[tuple[str, list[dict[str, Any]]]]:
    """(agency, objects) pushes giving cross-border alerts and a spread of observable types."""
    return [
        (
            "hk",
            [
                indicator("[domain-name:value = 'Bad.Example.COM.']", confidence=90),
                indicator("[ipv4-addr:value = '203.0.113.77']", confidence=85),
                indicator("[url:value = 'http://phish.example.org/login']", confidence=60),
                indicator("[file:hashes.'SHA-256' = '" + "ab" * 32 + "']", confidence=70),
                indicator("[url:value = 'http://amber-only.example.net/x']", tlp=TLP_AMBER),
            ],
        ),
        (
            "gd",
            [
                indicator("[domain-name:value = 'bad.example.com']", confidence=80),
                indicator("[ipv4-addr:value = '198.51.100.23']", confidence=75),
                indicator("[email-addr:value = 'ceo-office@spoof.example.com']", confidence=55),
            ],
        ),
        (
            "gd2",
            [
                indicator("[ipv4-addr:value = '198.51.100.23']", confidence=70),
                indicator("[domain-name:value = 'cdn-update.example.info']", confidence=65),
            ],
        ),
        (
            "mo",
            [
                indicator("[ipv4-addr:value = '203.0.113.77']", confidence=80),
                indicator("[ipv4-addr:value = '198.51.100.23']", confidence=60),
                indicator("[file:hashes.MD5 = '" + "0f" * 16 + "']", confidence=50),
            ],
        ),
        (
            "hk2",
            [
                indicator("[domain-name:value = 'cdn-update.example.info']", confidence=60),
                indicator("[ipv4-addr:value = '192.0.2.200']", confidence=40),
            ],
        ),
    ]
