"""The contract suites run against real servers, not stand-ins (ARCHITECTURE.md, STYLE.md 3).

deploy/dev/services starts Apache Kafka in KRaft mode with a fixed cluster id and an
Elasticsearch 9 node; these tests prove that is what the fixtures point at.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from kafka.admin import KafkaAdminClient

VERSIONS_ENV = Path(__file__).resolve().parents[2] / "deploy" / "dev" / "versions.env"


def _pinned(key: str) -> str:
    for line in VERSIONS_ENV.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{key} is not pinned in {VERSIONS_ENV}")


def test_kafka_is_the_single_kraft_node_deploy_dev_formatted(kafka_bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert cluster["controller_id"] == 1
    assert cluster["cluster_id"] == _pinned("KAFKA_CLUSTER_ID")


def test_elasticsearch_is_a_version_9_node(es_url: str) -> None:
    resp = httpx.get(es_url, timeout=10.0)
    assert resp.status_code == 200
    assert resp.headers.get("x-elastic-product") == "Elasticsearch"
    body = resp.json()
    assert body["version"]["number"].startswith("9.")
    assert body["tagline"] == "You Know, for Search"


def test_elasticsearch_indexes_and_finds_a_document(es_url: str) -> None:
    index = f"{es_url.rstrip('/')}/threatbay-contract-services-are-real"
    with httpx.Client(timeout=30.0) as http:
        http.delete(index)
        created = http.put(index, json={"mappings": {"properties": {"value": {"type": "keyword"}}}})
        assert created.status_code == 200, created.text
        try:
            put = http.put(f"{index}/_doc/1", params={"refresh": "true"}, json={"value": "1.2.3.4"})
            assert put.status_code == 201, put.text
            found = http.post(
                f"{index}/_search", json={"query": {"term": {"value": "1.2.3.4"}}}
            ).json()
            assert found["hits"]["total"]["value"] == 1
            assert found["hits"]["hits"][0]["_source"] == {"value": "1.2.3.4"}
        finally:
            http.delete(index)
