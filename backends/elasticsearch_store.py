"""Elasticsearch store: the ``Store`` port on Elasticsearch 9 (ARCHITECTURE.md, "store").

Mappings come from ``core/indices.py`` and are applied idempotently at
start-up (``dynamic: false``: only declared fields are searchable, the rest is
kept in ``_source``). Every document also carries its key in the hidden
keyword field ``_tb_key``, the tie-breaker of every sort (ES 9 cannot sort on
``_id``); it is stripped on read. Writes are one ``_bulk`` request per call
with ``create`` / ``if_seq_no``+``if_primary_term`` for optimistic
concurrency (PERFORMANCE.md: whole documents with deterministic ids).
Text filters are case-insensitive substring matches (``wildcard`` with
``case_insensitive``) so they mean the same as in the embedded store.

On a secured cluster (``ElasticsearchAuth``) the client speaks HTTPS, checks
the nodes' certificates against the configured CA, and authenticates as the
stage's own user (or API key); ``store_url`` may list several nodes
(``https://a:9200,https://b:9200``): the client moves to another when one dies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    Elasticsearch,
    NotFoundError,
    OrjsonSerializer,
    TransportError,
)

from core.errors import ConfigurationError, StoreUnavailable
from core.indices import SCHEMAS, FieldType, schema
from core.ports import (
    Filter,
    Hit,
    Missing,
    Page,
    Put,
    PutResult,
    Query,
    Range,
    Stored,
    Term,
    Text,
)
from core.settings import ElasticsearchSettings

KEY_FIELD = "_tb_key"
_MAX_WINDOW = 10_000
_MGET_CHUNK = 1000
_TERMS_BUCKETS = 10_000
#: Only what put_many reads of a bulk response (smaller to send and to parse).
_BULK_FILTER = "items.*.status,items.*._seq_no,items.*._primary_term,items.*.error"
_T = TypeVar("_T")


@dataclass(frozen=True)
class ElasticsearchAuth:
    """How to reach a secured cluster: the nodes' CA and one user (or API key) per stage."""

    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)

    def client_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"verify_certs": True}
        if self.ca_file is not None:
            config["ca_certs"] = str(self.ca_file)
        if self.api_key:
            config["api_key"] = self.api_key
        elif self.username:
            config["basic_auth"] = (self.username, self.password or "")
        return config

    @property
    def who(self) -> str:
        if self.api_key:
            return "this API key"
        return f"user {self.username!r}" if self.username else "an anonymous client"


def _field_mapping(ftype: FieldType) -> dict[str, Any]:
    if ftype == "text":
        # The keyword sub-field serves case-insensitive substring search.
        return {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 8191}}}
    return {"type": ftype}


def _mappings(index: str) -> dict[str, Any]:
    properties = {name: _field_mapping(t) for name, t in schema(index).items()}
    properties[KEY_FIELD] = {"type": "keyword"}
    return {"dynamic": False, "properties": properties}


def _wildcard_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?\\" else c for c in text)


def _transient(exc: ApiError) -> bool:
    return exc.meta.status == 429 or exc.meta.status >= 500


@contextmanager
def _unavailable_on_failure(what: str) -> Iterator[None]:
    """Turn connection failures, 429 and 5xx into ``StoreUnavailable``."""
    try:
        yield
    except TransportError as exc:
        raise StoreUnavailable(f"Elasticsearch unreachable during {what}: {exc}") from exc
    except ApiError as exc:
        if _transient(exc):
            raise StoreUnavailable(
                f"Elasticsearch refused {what} (HTTP {exc.meta.status}): {exc}"
            ) from exc
        raise


class ElasticsearchStore:
    """The ``Store`` port on an Elasticsearch 9 cluster (``http(s)://host:9200``).

    ``prefix`` is prepended to every physical index name (isolates test runs);
    the logical name still selects the mapping from ``core/indices.py``.
    """

    def __init__(
        self,
        url: str,
        settings: ElasticsearchSettings,
        *,
        prefix: str = "",
        auth: ElasticsearchAuth | None = None,
    ) -> None:
        self._settings = settings
        self._prefix = prefix
        hosts = [u.strip() for u in url.split(",") if u.strip()]
        self._es = Elasticsearch(
            hosts,
            request_timeout=settings.request_timeout_s,
            max_retries=2,
            retry_on_timeout=False,
            serializer=OrjsonSerializer(),  # orjson is ~5x faster on bulk bodies and hits
            **(auth.client_config() if auth is not None else {}),
        )
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        try:
            for index in SCHEMAS:
                self._ensure_index(index)
        except StoreUnavailable:
            pass  # applied on first use once the cluster answers
        except (AuthenticationException, AuthorizationException) as exc:
            who = auth.who if auth is not None else "an anonymous client"
            raise ConfigurationError(
                f"Elasticsearch refused {who} (HTTP {exc.meta.status}) while applying the "
                f"mappings of {prefix}threatbay-*: check the stage's user, password file and "
                f"role ({exc.message})"
            ) from exc

    # ------------------------------------------------------------ plumbing

    def _name(self, index: str) -> str:
        return self._prefix + index

    def _ensure_index(self, index: str) -> str:
        """Create ``index`` with its mapping, or add new declared fields (idempotent)."""
        name = self._name(index)
        if index in self._ready:
            return name
        with self._lock, _unavailable_on_failure(f"mapping of {name}"):
            if index in self._ready:
                return name
            body_settings = {
                "number_of_shards": self._settings.shards,
                "number_of_replicas": self._settings.replicas,
                "refresh_interval": self._settings.refresh_interval,
            }
            try:
                self._es.indices.create(
                    index=name, settings=body_settings, mappings=_mappings(index)
                )
            except ApiError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
                mappings = _mappings(index)
                self._es.indices.put_mapping(
                    index=name, dynamic=mappings["dynamic"], properties=mappings["properties"]
                )
            self._ready.add(index)
        return name

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        with _unavailable_on_failure(what):
            return fn()

    @staticmethod
    def _strip(source: dict[str, Any]) -> dict[str, Any]:
        source.pop(KEY_FIELD, None)
        return source

    # --------------------------------------------------------------- reads

    def get(self, index: str, key: str) -> Stored | None:
        """The document under ``key`` with its (seq_no, primary_term) version, or ``None``."""
        name = self._ensure_index(index)
        try:
            resp = self._call("get", lambda: self._es.get(index=name, id=key))
        except NotFoundError:
            return None
        return Stored(
            key=key,
            doc=self._strip(dict(resp["_source"])),
            version=(int(resp["_seq_no"]), int(resp["_primary_term"])),
        )

    def get_many(self, index: str, keys: Sequence[str]) -> dict[str, Stored]:
        """The documents under ``keys`` that exist, by key (``_mget``)."""
        name = self._ensure_index(index)
        unique = list(dict.fromkeys(keys))
        found: dict[str, Stored] = {}
        for i in range(0, len(unique), _MGET_CHUNK):
            chunk = unique[i : i + _MGET_CHUNK]
            resp = self._call("mget", lambda c=chunk: self._es.mget(index=name, ids=c))  # type: ignore[misc]
            for doc in resp["docs"]:
                if doc.get("found"):
                    found[doc["_id"]] = Stored(
                        key=doc["_id"],
                        doc=self._strip(dict(doc["_source"])),
                        version=(int(doc["_seq_no"]), int(doc["_primary_term"])),
                    )
        return found

    # -------------------------------------------------------------- writes

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        """One ``_bulk`` request: create / conditional index / blind index per put (ports.Put).

        409 is a conflict result; other rejected documents (e.g. a value that
        does not fit the mapping) are ``ok=False, conflict=False``; 429/5xx on
        any item raise ``StoreUnavailable`` so the caller retries the batch.
        """
        if not puts:
            return []
        name = self._ensure_index(index)
        lines: list[bytes] = []
        for put in puts:
            meta: dict[str, Any] = {"_index": name, "_id": put.key}
            if put.blind:
                op = "index"
            elif put.expected is None:
                op = "create"
            else:
                op = "index"
                meta["if_seq_no"], meta["if_primary_term"] = put.expected
            lines.append(orjson.dumps({op: meta}))
            lines.append(orjson.dumps({**put.doc, KEY_FIELD: put.key}))
        # The client's NDJSON serializer is stdlib json (~10x slower than orjson on bulk
        # bodies); pre-serialised bytes are sent as they are.
        body = b"\n".join(lines) + b"\n"
        resp = self._call(
            "bulk write",
            lambda: self._es.bulk(operations=body, filter_path=_BULK_FILTER),  # type: ignore[arg-type]
        )
        results: list[PutResult] = []
        transient: list[str] = []
        for put, item in zip(puts, resp["items"], strict=True):
            outcome = next(iter(item.values()))
            status = int(outcome.get("status", 500))
            if status in (200, 201):
                version = (int(outcome["_seq_no"]), int(outcome["_primary_term"]))
                results.append(PutResult(key=put.key, ok=True, version=version))
            elif status == 409:
                results.append(PutResult(key=put.key, ok=False, conflict=True))
            elif status == 429 or status >= 500:
                transient.append(f"{put.key}: HTTP {status} {outcome.get('error')}")
                results.append(PutResult(key=put.key, ok=False))
            else:
                results.append(PutResult(key=put.key, ok=False))
        if transient:
            raise StoreUnavailable(
                f"Elasticsearch refused {len(transient)} write(s): {'; '.join(transient[:3])}"
            )
        return results

    def delete(self, index: str, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        name = self._ensure_index(index)
        try:
            self._call("delete", lambda: self._es.delete(index=name, id=key))
        except NotFoundError:
            return False
        return True

    # -------------------------------------------------------------- search

    def _filter(self, index: str, f: Filter) -> dict[str, Any]:
        if isinstance(f, Term):
            if not f.values:
                return {"match_none": {}}
            return {"terms": {f.field: list(f.values)}}
        if isinstance(f, Range):
            bounds = {
                op: v
                for op, v in (("gt", f.gt), ("gte", f.gte), ("lt", f.lt), ("lte", f.lte))
                if v is not None
            }
            return {"range": {f.field: bounds}} if bounds else {"match_all": {}}
        if isinstance(f, Text):
            declared = schema(index)
            pattern = f"*{_wildcard_escape(f.query)}*"
            should = [
                {
                    "wildcard": {
                        (field + ".raw" if declared.get(field) == "text" else field): {
                            "value": pattern,
                            "case_insensitive": True,
                        }
                    }
                }
                for field in f.fields
            ]
            return {"bool": {"should": should, "minimum_should_match": 1}}
        if isinstance(f, Missing):
            return {"bool": {"must_not": {"exists": {"field": f.field}}}}
        raise TypeError(f"unknown filter {f!r}")  # pragma: no cover - exhaustive

    def _query(self, index: str, filters: Sequence[Filter]) -> dict[str, Any]:
        return {"bool": {"filter": [self._filter(index, f) for f in filters]}}

    def search(self, index: str, query: Query) -> Page:
        """One page in sort order then key; ``after`` continues with ``search_after``."""
        name = self._ensure_index(index)
        # Missing values sort first ascending, last descending (as in the embedded store).
        sort: list[dict[str, Any]] = [
            {s.field: {"order": s.order, "missing": "_first" if s.order == "asc" else "_last"}}
            for s in query.sort
        ]
        sort.append({KEY_FIELD: {"order": "asc"}})
        # ES refuses size > index.max_result_window (10,000); one extra hit tells ``more``.
        limit = min(max(0, query.limit), _MAX_WINDOW - 1)
        extra: dict[str, Any] = {}
        if query.after is not None:
            if len(query.after) != len(query.sort) + 1:
                raise ValueError(f"cursor {list(query.after)!r} does not fit {list(query.sort)!r}")
            extra["search_after"] = list(query.after)
        resp = self._call(
            "search",
            lambda: self._es.search(
                index=name,
                query=self._query(index, query.filters),
                sort=sort,
                size=limit + 1,
                track_total_hits=False,
                seq_no_primary_term=query.versions,
                **extra,
            ),
        )
        raw = resp["hits"]["hits"]
        hits = [
            Hit(
                key=h["_id"],
                doc=self._strip(dict(h["_source"])),
                cursor=tuple(h["sort"]),
                version=(int(h["_seq_no"]), int(h["_primary_term"])) if query.versions else None,
            )
            for h in raw[:limit]
        ]
        return Page(hits=hits, more=len(raw) > limit)

    def count_by(self, index: str, field: str, filters: Sequence[Filter] = ()) -> dict[str, int]:
        """Documents per value of ``field`` (terms aggregation; each element for arrays)."""
        name = self._ensure_index(index)
        resp = self._call(
            "count_by",
            lambda: self._es.search(
                index=name,
                query=self._query(index, filters),
                size=0,
                aggs={"by": {"terms": {"field": field, "size": _TERMS_BUCKETS}}},
            ),
        )
        return {
            str(b.get("key_as_string", b["key"])): int(b["doc_count"])
            for b in resp["aggregations"]["by"]["buckets"]
        }

    def count(self, index: str, filters: Sequence[Filter] = ()) -> int:
        """Number of documents matching every filter (``_count``)."""
        name = self._ensure_index(index)
        resp = self._call(
            "count", lambda: self._es.count(index=name, query=self._query(index, filters))
        )
        return int(resp["count"])

    def refresh(self, index: str) -> None:
        """Make acknowledged writes visible to search."""
        name = self._ensure_index(index)
        self._call("refresh", lambda: self._es.indices.refresh(index=name))

    def drop_indices(self) -> None:
        """Delete every index under this store's prefix (tests and benches only).

        Also those another process created under the same prefix (a bench's
        correlator children write the object-versions index its parent never
        touches). Listed by wildcard, deleted by name: Elasticsearch refuses
        wildcard deletes by default (``action.destructive_requires_name``).
        """
        if not self._prefix:
            raise ValueError("refusing to drop unprefixed (production) indices")
        listed = self._call(
            "list indices",
            lambda: self._es.indices.get(index=f"{self._prefix}*", expand_wildcards="all"),
        )
        names = sorted({self._name(i) for i in self._ready} | set(listed))
        if names:
            self._call(
                "drop",
                lambda: self._es.indices.delete(index=",".join(names), ignore_unavailable=True),
            )
        self._ready.clear()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._es.close()
