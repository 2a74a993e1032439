"""Issue 15 class 4: redaction screens every string anywhere, and the notes that cross.

A HK report of an attacker domain carries victim data in places a field list
misses: a kill chain phase name, a property extension, nested custom
properties and their keys. GD and MO see the domain, never the victim. An
analyst's comment, acknowledgement note and resolution reason naming a victim
reach the other jurisdiction redacted: on the alert detail, on the stream and
in the webhook.
"""

from __future__ import annotations

import uuid

import orjson

from tests.security.trust import ROOT, Platform, embedded, indicator, platform  # noqa: F401

DOMAIN = "evil-login.example.net"
SECRETS = (
    "Chan Tai Man",
    "陳大文",
    "9123 4567",
    "chan.taiman@victim-bank.example.hk",
    "A123456(3)",
    "11010519491231002X",
    "Wong Siu Ming",
)
EXTENSION = f"extension-definition--{uuid.uuid4()}"


def _victim_laden() -> dict[str, object]:
    return indicator(
        f"[domain-name:value = '{DOMAIN}']",
        confidence=95,
        kill_chain_phases=[
            {
                "kill_chain_name": "Victim is Chan Tai Man (陳大文) tel 9123 4567",
                "phase_name": "delivery",
            },
        ],  # fmt: skip
        extensions={
            EXTENSION: {
                "extension_type": "property-extension",
                "case_notes": [
                    "mail to chan.taiman@victim-bank.example.hk",
                    {"deep": ["HKID A123456(3)"]},
                ],  # fmt: skip
            }
        },
        x_incident={
            "notes": ["victim named Wong Siu Ming"],
            "id": "11010519491231002X",
            "Chan Tai Man (陳大文)": "owner",
        },  # fmt: skip
    )


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_victim_data_anywhere_in_an_object_stays_home(platform: Platform) -> None:  # noqa: F811
    obj = _victim_laden()
    assert platform.push("hk", [obj])["success_count"] == 1
    platform.correlate()
    own = platform.get("hk2", f"{ROOT}collections/shared-hk/objects/").text
    assert "陳大文" in own  # the source's own jurisdiction reads it whole
    for reader in ("gd", "mo"):
        seen = platform.everything(reader)
        assert DOMAIN in seen, f"{reader} should see the attacker domain"
        assert _leaks(seen) == [], f"{reader} saw victim data"


def _alert_on_both_sides(p: Platform) -> str:
    """HK and GD report one domain: an alert concerning both jurisdictions."""
    p.push("hk", [indicator(f"[domain-name:value = '{DOMAIN}']", confidence=95)])
    p.push("gd", [indicator(f"[domain-name:value = '{DOMAIN}']", confidence=95)])
    p.correlate()
    p.raise_alerts()
    alerts = p.get("gd", "/api/v1/alerts").json()["items"]
    assert alerts, "two jurisdictions on one domain must raise an alert"
    return str(alerts[0]["id"])


def test_notes_naming_a_victim_cross_redacted(platform: Platform) -> None:  # noqa: F811
    p = platform
    books_webhooks = __import__("records.books", fromlist=["records_of"]).records_of(p.services)
    books_webhooks.webhooks.register(p.keys["hk"].agency, "https://hk.example/hook")
    alert_id = _alert_on_both_sides(p)
    note = "Called victim Chan Tai Man (陳大文) on 9123 4567, HKID A123456(3)"
    r = p.post("gd", f"/api/v1/alerts/{alert_id}/comments", {"text": note})
    assert r.status_code in (200, 201), r.text
    r = p.post("gd", f"/api/v1/alerts/{alert_id}/acknowledge", {"note": note})
    assert r.status_code == 200, r.text
    r = p.post("gd", f"/api/v1/alerts/{alert_id}/resolve", {"reason": note})
    assert r.status_code == 200, r.text
    p.raise_alerts()

    # GD (the author's jurisdiction) reads its notes as written.
    assert "陳大文" in p.get("gd", f"/api/v1/alerts/{alert_id}").text
    # HK reads the alert, its stream and its webhook payloads: redacted.
    detail = p.get("hk", f"/api/v1/alerts/{alert_id}")
    assert detail.status_code == 200, detail.text
    timeline = detail.json()["timeline"]
    assert any(e["type"] == "comment" for e in timeline)
    assert _leaks(detail.text) == []
    stream = p.client.get(
        "/api/v1/stream",
        params={"max_seconds": 2},
        headers=p.keys["hk"].bearer | {"Last-Event-ID": "0"},
    )
    assert stream.status_code == 200
    assert "resolved" in stream.text
    assert _leaks(stream.text) == []
    deliveries = p.client.get("/api/v1/deliveries", headers=p.keys["hk"].bearer)
    assert deliveries.status_code == 200, deliveries.text
    payloads = orjson.dumps(deliveries.json()).decode()
    assert "resolved" in payloads
    assert _leaks(payloads) == []
