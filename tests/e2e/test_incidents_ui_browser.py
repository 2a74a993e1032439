"""The joint incident case page in headless Chromium (issue 23), in English, 简体 and 繁體.

A case opened from a template by GD with HK and MO, statutory clocks running,
tasks per jurisdiction, a request, a green note and an HK note marked TLP:RED
for HK only. The page ``/ui/incidents.html`` is driven by Playwright over
Debian's Chromium (as tests/e2e/test_ui_browser.py): it must show the clocks
with a live countdown, tasks per jurisdiction, requests, linked records and
the timeline in each language, update live when a note is added, and never
show GD the HK-only note. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.access import Agency, bearer_token
from core.clock import format_timestamp
from core.settings import Settings
from records.agencies import AgencyRegistry
from tests.conftest import services_required
from tests.e2e.test_incidents_flow import LiveServer
from tests.e2e.ui_helpers import chromium_problem, launch_chromium
from threatbay.bootstrap import build

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
STRINGS = json.loads(
    (ROOT / "api" / "ui_static" / "incidents-i18n.json").read_text(encoding="utf-8")
)
HK_ONLY = "HK-ONLY vendor under NDA"


def _identity(name: str) -> str:
    return f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, 'ui-' + name)}"


AGENCIES = {
    "gd": Agency("gd-cac", "Guangdong CAC", "GD", _identity("gd")),
    "hk": Agency("hk-govcert", "GovCERT.HK", "HK", _identity("hk")),
    "mo": Agency("mo-caric", "CARIC", "MO", _identity("mo")),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], str]]:
    problem = chromium_problem()
    if problem is not None:
        if services_required():
            pytest.fail(f"browser test cannot run: {problem} [CI forbids skipping]")
        pytest.skip(f"browser test cannot run: {problem}")
    services = build(Settings(data_dir=tmp_path_factory.mktemp("cases-ui")))
    registry = AgencyRegistry(services.store, services.clock)
    keys: dict[str, str] = {}
    for name, agency in AGENCIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[name] = bearer_token(cred.key_id, secret)
    with LiveServer(services) as url:
        http = httpx.Client(base_url=url, timeout=30)

        def call(who: str, method: str, path: str, body: Any = None) -> Any:
            r = http.request(method, "/api/v1/incidents" + path, json=body,
                             headers={"Authorization": f"Bearer {keys[who]}"})  # fmt: skip
            assert r.status_code < 300, r.text
            return r.json()

        case = call("gd", "POST", "", {"title": "Ransomware at a grid operator",
                    "template": "ransomware-critical-infrastructure",
                    "participants": ["hk-govcert", "mo-caric"]})  # fmt: skip
        base = "/" + case["id"]
        now = datetime.now(UTC)
        call(
            "gd",
            "POST",
            base + "/entities",
            {"aware_at": format_timestamp(now - timedelta(minutes=10)), "operator_type": "cii"},
        )
        call("hk", "POST", base + "/entities", {
            "aware_at": format_timestamp(now - timedelta(minutes=10)),
            "operator_type": "ci-operator", "serious": True})  # fmt: skip
        hk_task = next(t for t in case["tasks"] if t["assignee"] == "hk-govcert")
        call("hk", "POST", f"{base}/tasks/{hk_task['id']}/accept")
        call("gd", "POST", base + "/requests", {"request_type": "takedown",
             "addressee": "mo-caric", "text": "Take the C2 down",
             "deadline": format_timestamp(now + timedelta(hours=4))})  # fmt: skip
        call("gd", "POST", base + "/notes", {"text": "Perimeter blocks in place",
             "marking": {"tlp": "green"}})  # fmt: skip
        call("hk", "POST", base + "/notes", {"text": HK_ONLY,
             "marking": {"tlp": "red", "recipients": ["hk-govcert"]}})  # fmt: skip
        yield url, keys, case["id"]
        http.close()
    services.close()


@pytest.fixture(scope="module")
def browser(site: Any) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    text = tab.inner_text("body")
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert not [w for w in ("undefined", "NaN", "[object Object]") if w in text]


def open_case(page: Page, url: str, key: str, case_id: str, lang: str) -> None:
    page.goto(f"{url}/ui/incidents.html#{case_id}")
    page.wait_for_selector("body[data-loaded='true']")
    page.select_option("#lang", lang)
    page.fill("#apikey", key)
    page.click("#signin-button")
    page.wait_for_selector("body[data-case='ready']")
    page.select_option("#lang", lang)


@pytest.mark.parametrize("lang", ["en", "zh-Hans", "zh-Hant"])
def test_the_case_page_in_each_language(
    page: Page, site: tuple[str, dict[str, str], str], lang: str
) -> None:
    url, keys, case_id = site
    strings = STRINGS[lang]
    open_case(page, url, keys["gd"], case_id, lang)
    body = page.inner_text("body")
    for key in ("inc.clocks", "inc.tasks", "inc.requests", "inc.timeline", "inc.linked"):
        assert strings[key] in body, (lang, key)
    for j in ("GD", "HK", "MO"):
        assert strings[f"jur.{j}"] in page.inner_text(f"#case-tasks [data-jurisdiction='{j}']")
    gd_clock = page.inner_text(".clock[data-jurisdiction='GD'] .countdown")
    prefix = strings["inc.clock.due_in"].split("{left}")[0].strip()
    assert prefix in gd_clock, (lang, gd_clock)
    first = gd_clock
    page.wait_for_timeout(61_000 if lang == "en" else 10)  # the countdown runs (en only: a minute)
    if lang == "en":
        assert page.inner_text(".clock[data-jurisdiction='GD'] .countdown") != first
    assert page.locator(".clock[data-jurisdiction='HK']").count() == 1
    assert "Perimeter blocks in place" in body
    assert HK_ONLY not in body and "HK-ONLY" not in page.content()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"incidents-{lang}.png"), full_page=True)


def test_the_page_is_live_and_hk_sees_its_own_red_note(
    page: Page, site: tuple[str, dict[str, str], str]
) -> None:
    url, keys, case_id = site
    open_case(page, url, keys["hk"], case_id, "zh-Hant")
    assert HK_ONLY in page.inner_text("#case-notes")
    r = httpx.post(f"{url}/api/v1/incidents/{case_id}/notes",
                   headers={"Authorization": f"Bearer {keys['gd']}"},
                   json={"text": "MO confirms takedown", "marking": {"tlp": "green"}})  # fmt: skip
    assert r.status_code == 201, r.text
    # The stream tells the page; the note appears without a reload.
    page.locator("#case-notes", has_text="MO confirms takedown").wait_for(timeout=15_000)
