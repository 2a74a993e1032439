"""``GET /api/v1/lookup?value=<address>`` finds the address however producers wrote it (issue #17).

Seen on real data: ``[domain-name:value = '188.93.127.34']`` was found by no
lookup of 188.93.127.34. Three agencies write one address three ways (a
domain-name value, a URL on it, MISP-STIX's typed network-traffic reference)
and a fourth writes it as an ``ipv4-addr``: one record with every agency, found
by a lookup of the address, through TAXII on embedded and real Kafka + ES.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.clock import FakeClock
from tests.e2e.conftest import bundle, embedded_or_real, indicator
from tests.e2e.test_backends_agree import drain
from tests.e2e.test_status import keys_for
from threatbay.bootstrap import Services, correlator_for

ADDRESS = "188.93.127.34"
WRITTEN = {
    "gd": f"[domain-name:value = '{ADDRESS}']",
    "gd2": f"[url:value = 'http://{ADDRESS}:8080/gate.php']",
    "hk": f"[network-traffic:dst_ref.type = 'ipv4-addr' AND "
    f"network-traffic:dst_ref.value = '{ADDRESS}']",
    "mo": f"[ipv4-addr:value = '{ADDRESS}/32']",
}


@pytest.fixture(params=["embedded", "kafka+elasticsearch"])
def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Services]:
    with embedded_or_real(request, tmp_path, clock, "lookupx") as svc:
        yield svc


def test_a_lookup_of_the_address_finds_every_spelling_in_one_record(backends: Services) -> None:
    keys = keys_for(backends)
    with TestClient(create_app(backends)) as client:
        for name, pattern in WRITTEN.items():
            obj = indicator(stix_id=f"indicator--{uuid.uuid4()}", pattern=pattern)
            key = keys[name]
            r = client.post(key.inbox + "objects/", content=orjson.dumps(bundle(obj)),
                            headers=key.post)  # fmt: skip
            assert r.status_code == 202 and r.json()["success_count"] == 1, r.text
        drain(backends, correlator_for(backends))
        answer = client.get("/api/v1/lookup", params={"value": ADDRESS},
                            headers=keys["ops"].bearer).json()  # fmt: skip
    assert answer["found"], answer
    [record] = [r for r in answer["records"] if r["key"] == f"ipv4-addr|value|{ADDRESS}"]
    assert sorted(record["agencies"]) == sorted(keys[n].agency.id for n in WRITTEN)
