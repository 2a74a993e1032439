"""Fixtures of the Store contract suites: each test gets a fresh store of every adapter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.ports import Store
from core.settings import ElasticsearchSettings


@pytest.fixture(scope="session")
def es_session(es_url: str) -> Iterator[tuple[Store, str]]:
    """One ES store per test run, its indices under a unique prefix, dropped at the end."""
    from backends.elasticsearch_store import ElasticsearchStore

    prefix = f"tb-contract-{uuid.uuid4().hex[:10]}-"
    es = ElasticsearchStore(es_url, ElasticsearchSettings(request_timeout_s=30), prefix=prefix)
    yield es, prefix
    es.drop_indices()
    es.close()


@pytest.fixture(params=["embedded", "elasticsearch"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store (ES: the run's indices emptied before each test)."""
    if request.param == "embedded":
        from backends.embedded_store import EmbeddedStore

        embedded = EmbeddedStore(str(tmp_path / "store.sqlite3"))
        yield embedded
        embedded.close()
        return
    from elasticsearch import Elasticsearch

    es, prefix = request.getfixturevalue("es_session")
    # The dev node has no reindex module (no _delete_by_query): delete by id.
    with Elasticsearch(request.getfixturevalue("es_url")) as raw:
        raw.indices.refresh(index=f"{prefix}*")
        found = raw.search(index=f"{prefix}*", size=10_000, source=False)["hits"]["hits"]
        if found:
            raw.bulk(
                operations=[{"delete": {"_index": h["_index"], "_id": h["_id"]}} for h in found],
                refresh=True,
            )
    yield es
