"""The read-path caches of issue 5's latency work keep access control and freshness.

``api/auth.py`` keeps credentials and agencies for a short TTL: a change made
through the registry in this process (admin API) applies on the very next
request, a change written elsewhere (the command line, another API process)
within the TTL. ``api/alerts.py`` reuses alert pages and policy decisions:
a caller's own acknowledgement is never hidden, and one reader's decision
never serves another reader. Real embedded store, real HTTP through the app.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.alerts import AlertPages, DecisionMemo, ListViewMemo
from api.auth import PrincipalCache
from core import names, policy
from core.alerts import Level, Trigger, open_alert
from core.clock import format_timestamp
from core.ports import Put
from core.services import default_sharing
from tests.e2e.conftest import TLP_GREEN, Key, indicator
from threatbay.bootstrap import Services

ME = "/api/v1/me"


class Ticks:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: Key) -> dict[str, str]:
    return {"Authorization": key.bearer["Authorization"]}


def write_behind_the_api(services: Services, doc_key: str, change: dict[str, Any]) -> None:
    """What another process (``threatbay agency ...``) does: a store write, no registry call."""
    stored = services.store.get(names.INDEX_AGENCIES, doc_key)
    assert stored is not None
    services.store.put_many(
        names.INDEX_AGENCIES, [Put(doc_key, stored.doc | change, expected=stored.version)]
    )
    services.store.refresh(names.INDEX_AGENCIES)


def warm_auth_cache(app: FastAPI, ttl_s: float) -> Ticks:
    ticks = Ticks()
    app.state.auth_cache = PrincipalCache(ttl_s=ttl_s, monotonic=ticks)
    return ticks


# ------------------------------------------------------------------ credentials


def test_revocation_through_the_admin_api_applies_at_once_even_with_a_long_cache(
    app: FastAPI, client: TestClient, keys: dict[str, Key]
) -> None:
    warm_auth_cache(app, ttl_s=3600)
    gd, admin = keys["hk"], bearer(keys["ops"])  # ops administers HK agencies
    assert client.get(ME, headers=bearer(gd)).status_code == 200  # now cached
    r = client.post(f"/api/v1/admin/credentials/{gd.key_id}/revoke", headers=admin)
    assert r.status_code == 200
    assert client.get(ME, headers=bearer(gd)).status_code == 401
    assert client.get(gd.inbox, headers=gd.basic).status_code == 401


def test_rotation_through_the_admin_api_refuses_the_old_secret_at_once(
    app: FastAPI, client: TestClient, keys: dict[str, Key]
) -> None:
    warm_auth_cache(app, ttl_s=3600)
    mo, admin = keys["hk"], bearer(keys["ops"])  # ops administers HK agencies
    assert client.get(ME, headers=bearer(mo)).status_code == 200
    fresh = client.post(f"/api/v1/admin/credentials/{mo.key_id}/rotate", headers=admin).json()
    assert client.get(ME, headers=bearer(mo)).status_code == 401
    assert client.get(ME, headers={"Authorization": f"Bearer {fresh['bearer']}"}).status_code == 200


def test_revocation_by_another_process_applies_within_the_ttl(
    app: FastAPI, client: TestClient, services: Services, keys: dict[str, Key]
) -> None:
    ticks = warm_auth_cache(app, ttl_s=1.0)
    hk = keys["hk"]
    assert client.get(ME, headers=bearer(hk)).status_code == 200
    write_behind_the_api(services, f"cred:{hk.key_id}", {"revoked": True})
    ticks.now += 0.5  # inside the documented bound the cached read may still serve
    assert client.get(ME, headers=bearer(hk)).status_code == 200
    ticks.now += 0.5
    assert client.get(ME, headers=bearer(hk)).status_code == 401
    assert client.get(hk.inbox, headers=hk.basic).status_code == 401


def test_a_changed_agency_applies_within_the_ttl(
    app: FastAPI, client: TestClient, services: Services, keys: dict[str, Key]
) -> None:
    ticks = warm_auth_cache(app, ttl_s=1.0)
    gd2 = keys["gd2"]
    assert client.get(ME, headers=bearer(gd2)).json()["agency"]["name"] == "CNCERT Guangdong"
    write_behind_the_api(services, "agency:gd-cncert", {"name": "CNCERT Guangdong branch"})
    ticks.now += 1.0
    me = client.get(ME, headers=bearer(gd2)).json()
    assert me["agency"]["name"] == "CNCERT Guangdong branch"


def test_a_cached_credential_still_checks_the_secret_and_the_role(
    app: FastAPI, client: TestClient, keys: dict[str, Key], role_keys: dict[str, Key]
) -> None:
    warm_auth_cache(app, ttl_s=3600)
    hk = keys["hk"]
    assert client.get(ME, headers=bearer(hk)).status_code == 200
    wrong = {"Authorization": f"Bearer tb_{hk.key_id}.{hk.secret[:-2]}xx"}
    assert client.get(ME, headers=wrong).status_code == 401
    publisher = role_keys["publisher"]
    assert client.get(ME, headers=bearer(publisher)).status_code == 200
    # Cached or not, a publisher key may not read the analyst API.
    r = client.get("/api/v1/lookup", params={"value": "x.example"}, headers=bearer(publisher))
    assert r.status_code == 403


# ------------------------------------------------------------------ alerts


def push(client: TestClient, key: Key, objects: list[dict[str, Any]]) -> None:
    r = client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
    )
    assert r.status_code == 202, r.text


def two_jurisdiction_alert(
    client: TestClient,
    keys: dict[str, Key],
    correlate: Callable[[], int],
    raise_alerts: Callable[[], None],
    domain: str,
    n: int,
) -> None:
    push(client, keys["hk"], [indicator(n, pattern=f"[domain-name:value = '{domain}']",
                                         confidence=90, tlp=TLP_GREEN)])  # fmt: skip
    push(client, keys["gd"], [indicator(n + 1, pattern=f"[domain-name:value = '{domain}']",
                                        confidence=85, tlp=TLP_GREEN)])  # fmt: skip
    correlate()
    raise_alerts()


def test_an_acknowledgement_shows_in_the_next_list_despite_the_page_cache(
    app: FastAPI,
    client: TestClient,
    keys: dict[str, Key],
    correlate: Callable[[], int],
    raise_alerts: Callable[[], None],
) -> None:
    ticks = Ticks()
    app.state.alert_pages = AlertPages(ttl_s=3600, monotonic=ticks)
    two_jurisdiction_alert(client, keys, correlate, raise_alerts, "ack.example.com", 10)
    items = client.get("/api/v1/alerts", headers=bearer(keys["hk"])).json()["items"]
    assert len(items) == 1
    assert items[0]["jurisdiction_state"]["HK"]["status"] == "notified"
    r = client.post(f"/api/v1/alerts/{items[0]['id']}/acknowledge", headers=bearer(keys["hk"]))
    assert r.status_code == 200, r.text
    after = client.get("/api/v1/alerts", headers=bearer(keys["hk"])).json()["items"]
    assert after[0]["jurisdiction_state"]["HK"]["status"] == "acknowledged"


def test_a_new_alert_from_the_correlator_appears_once_the_page_ttl_passes(
    app: FastAPI,
    client: TestClient,
    keys: dict[str, Key],
    correlate: Callable[[], int],
    raise_alerts: Callable[[], None],
) -> None:
    ticks = Ticks()
    app.state.alert_pages = AlertPages(ttl_s=0.5, monotonic=ticks)
    assert client.get("/api/v1/alerts", headers=bearer(keys["hk"])).json()["items"] == []
    two_jurisdiction_alert(client, keys, correlate, raise_alerts, "late.example.com", 20)
    ticks.now += 0.5
    items = client.get("/api/v1/alerts", headers=bearer(keys["hk"])).json()["items"]
    assert [i["indicators"][0]["value"] for i in items] == ["late.example.com"]


def test_the_embedded_store_gets_no_page_cache(
    client: TestClient,
    keys: dict[str, Key],
    correlate: Callable[[], int],
    raise_alerts: Callable[[], None],
) -> None:
    # Without touching any clock: the embedded store is read-your-writes, so is the list.
    assert client.get("/api/v1/alerts", headers=bearer(keys["hk"])).json()["items"] == []
    two_jurisdiction_alert(client, keys, correlate, raise_alerts, "now.example.com", 30)
    assert len(client.get("/api/v1/alerts", headers=bearer(keys["hk"])).json()["items"]) == 1


def test_one_readers_memoised_decision_never_serves_another_reader(
    keys: dict[str, Key],
) -> None:
    sharing = default_sharing()
    memo = DecisionMemo()
    source = {"agency": "hk-govcert", "jurisdiction": "HK", "tlp": "amber+strict", "recipients": []}
    strict_hk: dict[str, Any] = {
        "key": "domain-name|value|strict.example.com",
        "observable_type": "domain-name",
        "value": "strict.example.com",
        "score": 90.0,
        "tlp": "amber+strict",
        "agencies": ["hk-govcert"],
        "jurisdictions": ["HK"],
        "sources": [source],
    }
    readers = [policy.Reader(k.agency.id, k.agency.jurisdiction) for k in (keys["hk"], keys["gd"])]
    for reader in readers * 2:  # the second round is answered from the memo
        got = memo.decide(sharing, reader, policy.Purpose.READ, strict_hk)
        want = policy.decide_record(sharing, reader, policy.Purpose.READ, strict_hk)
        assert (got.outcome, got.view) == (want.outcome, want.view)
    hk_view = memo.decide(sharing, readers[0], policy.Purpose.READ, strict_hk)
    gd_view = memo.decide(sharing, readers[1], policy.Purpose.READ, strict_hk)
    assert hk_view.shown and not gd_view.shown  # AMBER+STRICT: the source agency only
    # The same indicator with another TLP is another question, not a memo hit.
    greener = strict_hk | {"sources": [source | {"tlp": "green"}]}
    assert memo.decide(sharing, readers[1], policy.Purpose.READ, greener).shown


def test_one_readers_memoised_alert_view_never_serves_another_reader() -> None:
    sharing = default_sharing()
    source = {"agency": "hk-govcert", "jurisdiction": "HK", "tlp": "amber+strict",
              "recipients": []}  # fmt: skip
    indicator_summary = {
        "key": "domain-name|value|strict.example.com", "observable_type": "domain-name",
        "value": "strict.example.com", "score": 90.0, "tlp": "amber+strict",
        "agencies": ["hk-govcert"], "jurisdictions": ["HK"], "sources": [source],
    }  # fmt: skip
    at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    trigger = Trigger(
        rule="yellow-rule", family="indicator", level=Level.YELLOW,
        dedup_key="indicator|strict", category="malicious-infrastructure",
        title="YELLOW: strict.example.com", trigger_id="t1", at=format_timestamp(at),
        jurisdictions=("HK",), agencies=("hk-govcert",), indicators=(indicator_summary,),
        measures=("Block it.",),
    )  # fmt: skip
    doc, _events = open_alert(trigger, at)
    hk = policy.Reader("hk-govcert", "HK")
    gd = policy.Reader("gd-cac", "GD")
    memo = ListViewMemo()
    for _ in range(2):  # the second round is answered from the memo
        seen = memo.view(sharing, hk, doc)
        assert seen is not None and seen["indicator_keys"] == [indicator_summary["key"]]
        assert "timeline" not in seen
        assert memo.view(sharing, gd, doc) is None
    # An equal document read again from the store is a new object: computed afresh.
    again = orjson.loads(orjson.dumps(doc))
    assert memo.view(sharing, gd, again) is None
    assert memo.view(sharing, hk, again) == seen
