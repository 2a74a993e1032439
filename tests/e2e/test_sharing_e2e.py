"""Cross-border sharing end to end (issue 6, DOMAIN.md "Sharing").

On the embedded pair and on real Kafka + Elasticsearch: a HK agency pushes,
through TAXII, an AMBER indicator whose description names a victim's e-mail
address; a GD publisher pushes a RED indicator naming one GD recipient. After
correlation, the consenting GD counterpart sees the AMBER record redacted, the
MO agency sees nothing, RED reaches only its named recipient, and the audit
trail and ``trace`` show the cross-border release with its rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import names
from core.access import Agency
from core.clock import FakeClock
from core.crossborder import whitelist_from_yaml_text
from core.markings import TLP1_RED
from core.policy import SharingPolicy
from core.settings import ElasticsearchSettings, KafkaSettings, Settings
from records.agencies import AgencyRegistry
from tests.e2e.conftest import AGENCIES, ROOT, TLP_AMBER, Key, indicator
from threatbay.bootstrap import Services, build, correlator_for

WHITELIST = """
version: 1
rules:
  - name: hk-to-gd-phishing
    from: HK
    to: GD
    object_types: [indicator]
    observable_types: [domain-name]
    amber_requires_consent: true
    amber_counterparts: [gd-cac]
  - name: hk-to-mo-phishing
    from: HK
    to: MO
    object_types: [indicator]
    observable_types: [domain-name]
"""

VICTIM = "chan.taiman@example.hk"
AMBER_DOMAIN = "hk-phish-login.example.net"
AMBER_KEY = f"domain-name|value|{AMBER_DOMAIN}"
RED_DOMAIN = "gd-red-c2.example.org"
RED_KEY = f"domain-name|value|{RED_DOMAIN}"
HK_RED_DOMAIN = "hk-red-c2.example.org"
HK_RED_KEY = f"domain-name|value|{HK_RED_DOMAIN}"

PARTIES: dict[str, Agency] = {
    "gd": replace(AGENCIES["gd"], crossborder_consent=("HK",)),  # gd-cac, counterpart
    "gd2": AGENCIES["gd2"],  # gd-cncert, no consent, not a counterpart
    "gdpub": Agency("gd-psb", "Guangdong PSB", "GD", f"identity--{uuid.uuid4()}", "B"),
    "hk": AGENCIES["hk"],
    "mo": AGENCIES["mo"],
    "ops": AGENCIES["ops"],
}


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    policy = SharingPolicy(whitelist_from_yaml_text(WHITELIST))
    if request.param == "embedded":
        svc = build(Settings(data_dir=tmp_path), clock=clock)
        svc.sharing = policy
        yield svc
        svc.close()
        return
    from backends.elasticsearch_store import ElasticsearchStore
    from backends.kafka_bus import KafkaBus

    kafka = request.getfixturevalue("kafka_bootstrap")
    es = request.getfixturevalue("es_url")
    prefix = f"sharing-{uuid.uuid4().hex[:8]}-"
    store = ElasticsearchStore(es, ElasticsearchSettings(), prefix=prefix)
    bus = KafkaBus(kafka, KafkaSettings(partitions=3, session_timeout_ms=6000), prefix=prefix)
    svc = Services(
        settings=Settings(data_dir=tmp_path), bus=bus, store=store, clock=clock, sharing=policy
    )
    yield svc
    store.drop_indices()
    svc.close()


def _keys(services: Services) -> dict[str, Key]:
    registry = AgencyRegistry(services.store, services.clock)
    keys: dict[str, Key] = {}
    for name, agency in PARTIES.items():
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[name] = Key(agency, cred.key_id, secret)
    return keys


def _correlate(services: Services) -> int:
    worker = correlator_for(services)
    consumer = services.bus.consumer(names.TOPIC_RAW, names.GROUP_CORRELATOR)
    try:
        total = worker.drain(consumer, idle_polls=8)
    finally:
        consumer.close()
    for index in (names.INDEX_INDICATORS, names.INDEX_OBJECTS):
        services.store.refresh(index)
    return total


def _push(client: TestClient, key: Key, objects: list[dict[str, Any]]) -> None:
    response = client.post(
        key.inbox + "objects/", headers=key.post, content=orjson.dumps({"objects": objects})
    )
    assert response.status_code == 202, response.text
    assert response.json()["success_count"] == len(objects)


def _lookup(client: TestClient, key: Key, value: str) -> list[str]:
    """Record keys ``key``'s agency finds for ``value`` (empty when it may see none)."""
    response = client.get("/api/v1/lookup", params={"value": value}, headers=key.bearer)
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return [str(r["key"]) for r in response.json()["records"]]


def _detail(client: TestClient, key: Key, record: str) -> dict[str, Any] | None:
    response = client.get(f"/api/v1/indicators/{record}", headers=key.bearer)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def _search(client: TestClient, key: Key) -> str:
    response = client.get("/api/v1/indicators", params={"limit": 100}, headers=key.bearer)
    assert response.status_code == 200, response.text
    return str(response.text)


def _taxii(client: TestClient, key: Key, collection: str) -> str:
    """Every object of ``collection`` ``key`` may read, as text ('' when not readable)."""
    response = client.get(f"{ROOT}collections/{collection}/objects/", headers=key.basic)
    if response.status_code in (403, 404):
        return ""
    assert response.status_code == 200, response.text
    return str(response.text)


def test_amber_is_redacted_for_the_counterpart_red_reaches_only_its_recipient(
    backends: Services,
) -> None:
    keys = _keys(backends)
    amber = indicator(
        601,
        pattern=f"[domain-name:value = '{AMBER_DOMAIN}']",
        tlp=TLP_AMBER,
        description=f"phishing sent to victim {VICTIM} from attacker sender {AMBER_DOMAIN}",
    )
    red = indicator(
        602,
        pattern=f"[domain-name:value = '{RED_DOMAIN}']",
        tlp=TLP1_RED,
        x_threatbay_recipients=["gd-cac"],
    )
    hk_red = indicator(
        603,
        pattern=f"[domain-name:value = '{HK_RED_DOMAIN}']",
        tlp=TLP1_RED,
        x_threatbay_recipients=["gd-cac"],
    )
    with TestClient(create_app(backends)) as client:
        _push(client, keys["hk"], [amber, hk_red])
        _push(client, keys["gdpub"], [red])
        assert _correlate(backends) == 3

        # The consenting GD counterpart sees the AMBER record, victim address removed.
        gd = keys["gd"]
        assert _lookup(client, gd, AMBER_DOMAIN) == [AMBER_KEY]
        seen = _detail(client, gd, AMBER_KEY)
        assert seen is not None
        text = orjson.dumps(seen).decode()
        assert VICTIM not in text and "[REDACTED:email]" in text
        assert AMBER_DOMAIN in text  # attacker infrastructure intact
        assert seen["sharing"]["redactions"]
        # The source itself still sees the original.
        own = _detail(client, keys["hk"], AMBER_KEY)
        assert own is not None and VICTIM in orjson.dumps(own).decode()
        exported = _taxii(client, gd, "shared-hk")
        assert AMBER_DOMAIN in exported and VICTIM not in exported

        # MO has a rule but no counterparts: AMBER never reaches it; GD without consent neither.
        for who in ("mo", "gd2"):
            assert _lookup(client, keys[who], AMBER_DOMAIN) == [], who
            assert _detail(client, keys[who], AMBER_KEY) is None, who
        for collection in ("shared-all", "shared-hk"):
            exported = _taxii(client, keys["mo"], collection)
            assert AMBER_DOMAIN not in exported and VICTIM not in exported

        # RED reaches its named GD recipient, and no one else.
        assert _lookup(client, gd, RED_DOMAIN) == [RED_KEY]
        assert _detail(client, gd, RED_KEY) is not None
        assert RED_DOMAIN in _search(client, gd)
        for who in ("gd2", "mo", "hk"):
            assert _lookup(client, keys[who], RED_DOMAIN) == [], who
            assert _detail(client, keys[who], RED_KEY) is None, who
            assert RED_DOMAIN not in _search(client, keys[who]), who
        for who in ("gd", "gd2", "mo", "hk"):
            for collection in ("shared-all", "shared-gd"):
                assert RED_DOMAIN not in _taxii(client, keys[who], collection), (who, collection)
        # RED never crosses a border, even to a recipient the HK source named.
        assert _detail(client, gd, HK_RED_KEY) is None
        assert HK_RED_DOMAIN not in _search(client, gd)

        # Audit: the release of HK's AMBER report to gd-cac is logged, redacted, with its rule.
        ops = keys["ops"]
        response = client.get("/api/v1/audit", headers=ops.bearer)
        assert response.status_code == 200, response.text
        releases = [
            e
            for e in response.json()["entries"]
            if e.get("record_key") == AMBER_KEY and e.get("to_agency") == "gd-cac"
        ]
        assert releases, response.json()["entries"]
        for entry in releases:
            assert entry["cross_border"] is True
            assert entry["source_agency"] == "hk-govcert"
            assert entry["source_jurisdiction"] == "HK"
            assert entry["to_jurisdiction"] == "GD"
            assert entry["redacted"] is True
            assert "hk-to-gd-phishing" in entry["rule"]
        assert not [
            e
            for e in response.json()["entries"]
            if e.get("record_key") == AMBER_KEY and e.get("to_agency") in ("mo-caric", "gd-cncert")
        ]

        response = client.get(f"/api/v1/trace/{AMBER_KEY}", headers=ops.bearer)
        assert response.status_code == 200, response.text
        trace = response.json()
        trace_text = orjson.dumps(trace).decode()
        assert "hk-govcert" in trace_text and amber["id"] in trace_text
        assert "gd-cac" in trace_text and "hk-to-gd-phishing" in trace_text
        # Non-admins may not trace.
        assert client.get(f"/api/v1/trace/{AMBER_KEY}", headers=gd.bearer).status_code == 403


def test_admin_api_records_an_agencys_crossborder_consent(
    services: Services, keys: dict[str, Key]
) -> None:
    """Consent is a bilateral arrangement recorded on the host, never through the API
    (issue 15: an admin must not grant its own jurisdiction another's AMBER)."""
    new = {
        "id": "hk-newcert",
        "name": "HK new cert",
        "jurisdiction": "HK",  # ops administers HK
        "identity_id": f"identity--{uuid.uuid4()}",
        "crossborder_consent": ["GD", "MO"],
    }
    with TestClient(create_app(services)) as client:
        ops = keys["ops"].bearer
        response = client.post("/api/v1/admin/agencies", json=new, headers=ops)
        assert response.status_code == 403, response.text
        assert "consent" in response.json()["detail"]
    registry = AgencyRegistry(services.store, services.clock)
    registry.add_agency(
        Agency("gd-gdca", "GD cert authority", "GD", f"identity--{uuid.uuid4()}",
               crossborder_consent=("HK", "MO"))
    )  # fmt: skip
    assert registry.get("gd-gdca").crossborder_consent == ("HK", "MO")
    with pytest.raises(ValueError, match="crossborder_consent"):
        Agency("gd-bad", "Bad", "GD", f"identity--{uuid.uuid4()}", crossborder_consent=("TW",))
    old_doc = AGENCIES["gd"].to_doc()
    del old_doc["crossborder_consent"]  # documents written before the field existed
    assert Agency.from_doc(old_doc).crossborder_consent == ()
