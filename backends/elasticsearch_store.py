"""Elasticsearch store: the ``Store`` port on Elasticsearch 9 (ARCHITECTURE.md, "store").

Mappings come from ``core/indices.py`` and are applied idempotently at
start-up (``dynamic: false``: only declared fields are searchable, the rest is
kept in ``_source``, so custom properties never add fields or conflict with
the mapping). Every document also carries its key in the hidden keyword
field ``_tb_key``, the tie-breaker of every sort (ES 9 cannot sort on
``_id``); it is stripped on read. Writes are ``_bulk`` requests with
``create`` / ``if_seq_no``+``if_primary_term`` for optimistic concurrency
(PERFORMANCE.md: whole documents with deterministic ids). Text filters are
case-insensitive substring matches (``wildcard`` with ``case_insensitive``)
so they mean the same as in the embedded store.

Keys and values of any length (the Store contract), within Elasticsearch's
limits:

- ``_id`` may not exceed 512 bytes: a key longer than that (or one starting
  with ``ID_DIGEST_PREFIX``) is stored under ``ID_DIGEST_PREFIX`` + its
  SHA-256; the key itself stays in ``_source`` (``_tb_long_key``, not
  indexed) and ``_tb_key`` holds its first ~1 KB plus the digest, so sorting
  by key is exact up to the first 1,000 bytes of a key. Reads, writes and
  deletes by key map the key the same way: callers never see digests.
- a keyword term may not exceed 32,766 bytes: declared keyword fields have
  ``ignore_above`` (``LONG_TERM`` UTF-16 units); a longer value is stored in
  ``_source`` and its SHA-256 is indexed in ``_tb_long`` as
  ``field`` + NUL + digest, which ``Term`` filters use for long values, so
  exact matches still work (sorting and counting by such a value do not).
- a request may not exceed ``http.max_content_length`` (read from the
  cluster; 100 MB by default): bulk bodies are cut at ``BULK_MAX_BYTES``; a
  document that alone exceeds the limit is refused without being sent.

A document Elasticsearch rejects with HTTP 400 or 413 (it cannot parse a
value into its declared type, the request is too large, ...) is a
``PutResult.refused`` with Elasticsearch's reason; the rest of the bulk lands.
429, 5xx and connection failures raise ``StoreUnavailable`` (retried).

On a secured cluster (``ElasticsearchAuth``) the client speaks HTTPS, checks
the nodes' certificates against the configured CA, and authenticates as the
stage's own user (or API key); ``store_url`` may list several nodes
(``https://a:9200,https://b:9200``): the client moves to another when one dies.
"""

from __future__ import annotations

import hashlib
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
    MAX_DOCUMENT_BYTES,
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
#: The whole key of a document whose key does not fit ``_id`` (kept in ``_source`` only).
LONG_KEY_FIELD = "_tb_long_key"
#: ``field`` NUL sha256(value) of every keyword value longer than ``LONG_TERM``.
LONG_TERMS_FIELD = "_tb_long"
#: Elasticsearch's ``_id`` limit, in UTF-8 bytes.
MAX_ID_BYTES = 512
ID_DIGEST_PREFIX = "~tb-sha256:"
#: Longest keyword value indexed as a term: ``ignore_above`` counts UTF-16 units (Java
#: chars), at most 3 UTF-8 bytes each, so 8,191 stays under Lucene's 32,766-byte term.
LONG_TERM = 8191
#: How much of a long key ``_tb_key`` keeps before the digest (sort order).
_SORT_PREFIX_BYTES = 1000
#: Largest bulk request body sent at once.
BULK_MAX_BYTES = 20 * 1024 * 1024
_MAX_WINDOW = 10_000
_MGET_CHUNK = 1000
_TERMS_BUCKETS = 10_000
#: Only what put_many reads of a bulk response (smaller to send and to parse).
_BULK_FILTER = "items.*.status,items.*._seq_no,items.*._primary_term,items.*.error,items.*._index"
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
        return {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": LONG_TERM}}}
    if ftype == "keyword":
        return {"type": "keyword", "ignore_above": LONG_TERM}
    return {"type": ftype}


def _mappings(index: str) -> dict[str, Any]:
    properties = {name: _field_mapping(t) for name, t in schema(index).items()}
    properties[KEY_FIELD] = {"type": "keyword"}
    properties[LONG_TERMS_FIELD] = {"type": "keyword"}
    return {"dynamic": False, "properties": properties}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _long_key(key: str) -> bool:
    return key.startswith(ID_DIGEST_PREFIX) or len(key.encode("utf-8", "surrogatepass")) > (
        MAX_ID_BYTES
    )


def doc_id(key: str) -> str:
    """The ``_id`` of ``key``: the key itself, or a digest when it cannot be one."""
    return ID_DIGEST_PREFIX + _digest(key) if _long_key(key) else key


def _sort_key(key: str) -> str:
    """``_tb_key``: the key, or for a long key its first ~1,000 bytes, NUL and its digest."""
    if not _long_key(key):
        return key
    head = key.encode("utf-8", "surrogatepass")[:_SORT_PREFIX_BYTES]
    return head.decode("utf-8", "ignore") + "\x00" + _digest(key)


def _utf16_units(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF) if not text.isascii() else len(text)


def long_term(field: str, value: str) -> str:
    """The ``_tb_long`` entry standing for ``field`` = ``value`` (a value over ``LONG_TERM``)."""
    return f"{field}\x00{_digest(value)}"


def _long_terms(index: str, doc: dict[str, Any]) -> list[str]:
    """``_tb_long`` entries of every declared keyword value too long to be a term."""
    found: list[str] = []
    for name, ftype in schema(index).items():
        if ftype != "keyword":
            continue
        value = doc.get(name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and len(v) > LONG_TERM // 3 and _utf16_units(v) > LONG_TERM:
                found.append(long_term(name, v))
    return found


def _reason(error: Any) -> str:
    """Elasticsearch's error object as one line: type, reason and its cause."""
    if not isinstance(error, dict):
        return str(error)[:1000]
    text = f"{error.get('type')}: {error.get('reason')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
    return text[:1000]


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
        self._max_content_length: int | None = None
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
        source.pop(LONG_KEY_FIELD, None)
        source.pop(LONG_TERMS_FIELD, None)
        return source

    @staticmethod
    def _key_of(hit_id: str, source: dict[str, Any]) -> str:
        long_key = source.get(LONG_KEY_FIELD)
        return long_key if isinstance(long_key, str) else hit_id

    def max_content_length(self) -> int:
        """The cluster's ``http.max_content_length`` in bytes (read once; 100 MB if unknown)."""
        if self._max_content_length is None:
            limit = MAX_DOCUMENT_BYTES
            try:
                resp = self._es.cluster.get_settings(
                    include_defaults=True, filter_path="**.http.max_content_length"
                )
                for section in ("transient", "persistent", "defaults"):
                    text = resp.get(section, {}).get("http", {}).get("max_content_length")
                    if text:
                        limit = _parse_bytes(str(text))
                        break
            except (ApiError, TransportError, ValueError):
                pass  # not allowed to read cluster settings, or unreachable: the default
            self._max_content_length = limit
        return self._max_content_length

    # --------------------------------------------------------------- reads

    def get(self, index: str, key: str) -> Stored | None:
        """The document under ``key`` with its (seq_no, primary_term) version, or ``None``."""
        name = self._ensure_index(index)
        try:
            resp = self._call("get", lambda: self._es.get(index=name, id=doc_id(key)))
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
        ids = {doc_id(k): k for k in dict.fromkeys(keys)}
        unique = list(ids)
        found: dict[str, Stored] = {}
        for i in range(0, len(unique), _MGET_CHUNK):
            chunk = unique[i : i + _MGET_CHUNK]
            resp = self._call("mget", lambda c=chunk: self._es.mget(index=name, ids=c))  # type: ignore[misc]
            for doc in resp["docs"]:
                if doc.get("found"):
                    key = ids[doc["_id"]]
                    found[key] = Stored(
                        key=key,
                        doc=self._strip(dict(doc["_source"])),
                        version=(int(doc["_seq_no"]), int(doc["_primary_term"])),
                    )
        return found

    # -------------------------------------------------------------- writes

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        """``_bulk`` requests: create / conditional index / blind index per put (ports.Put).

        409 is a conflict result; a document Elasticsearch rejects for good
        (HTTP 400 or 413: a value its mapping cannot parse, a document over
        the request limit) is a ``refused`` result with the reason, and every
        other document is written; 429/5xx on any item raise
        ``StoreUnavailable`` so the caller retries the batch; 401/403 on an
        item (the stage's user lacks a right on that index) raise
        ``ConfigurationError``: the stage stops and the operator sees why
        (a refused write is neither poison nor passing weather).
        """
        if not puts:
            return []
        name = self._ensure_index(index)
        limit = self.max_content_length()
        results: list[PutResult | None] = [None] * len(puts)
        actions: list[tuple[int, bytes]] = []
        for i, put in enumerate(puts):
            action = self._action(index, name, put)
            if len(action) > limit:
                results[i] = PutResult(
                    key=put.key,
                    ok=False,
                    refused=f"document of {len(action):,} bytes is over Elasticsearch's "
                    f"http.max_content_length ({limit:,} bytes)",
                )
            else:
                actions.append((i, action))
        transient: list[str] = []
        start = 0
        while start < len(actions):
            size, end = 0, start
            while end < len(actions) and (
                end == start or size + len(actions[end][1]) <= min(limit, BULK_MAX_BYTES)
            ):
                size += len(actions[end][1])
                end += 1
            chunk = actions[start:end]
            for (i, _), result in zip(chunk, self._bulk([a for _, a in chunk], puts, chunk),
                                      strict=True):  # fmt: skip
                if isinstance(result, str):
                    transient.append(result)
                    result = PutResult(key=puts[i].key, ok=False)
                results[i] = result
            start = end
        if transient:
            raise StoreUnavailable(
                f"Elasticsearch refused {len(transient)} write(s): {'; '.join(transient[:3])}"
            )
        return [r if r is not None else PutResult(key=p.key, ok=False) for r, p in
                zip(results, puts, strict=True)]  # fmt: skip

    def _action(self, index: str, name: str, put: Put) -> bytes:
        """One bulk action: its metadata line and its document line, newline-terminated."""
        meta: dict[str, Any] = {"_index": name, "_id": doc_id(put.key)}
        if put.blind:
            op = "index"
        elif put.expected is None:
            op = "create"
        else:
            op = "index"
            meta["if_seq_no"], meta["if_primary_term"] = put.expected
        extra: dict[str, Any] = {KEY_FIELD: _sort_key(put.key)}
        if _long_key(put.key):
            extra[LONG_KEY_FIELD] = put.key
        long_terms = _long_terms(index, put.doc)
        if long_terms:
            extra[LONG_TERMS_FIELD] = long_terms
        # The client's NDJSON serializer is stdlib json (~10x slower than orjson on bulk
        # bodies); pre-serialised bytes are sent as they are.
        return orjson.dumps({op: meta}) + b"\n" + orjson.dumps({**put.doc, **extra}) + b"\n"

    def _bulk(
        self, actions: list[bytes], puts: Sequence[Put], chunk: list[tuple[int, bytes]]
    ) -> list[PutResult | str]:
        """Send ``actions`` in one request: a result per action, or why it must be retried.

        A whole request refused with 400 or 413 (one action Elasticsearch will not
        take poisons the request) is split in halves until the action is alone,
        which is then refused with the reason; the others are written.
        """
        body = b"".join(actions)
        try:
            resp = self._call(
                "bulk write",
                lambda: self._es.bulk(operations=body, filter_path=_BULK_FILTER),  # type: ignore[arg-type]
            )
        except ApiError as exc:
            if exc.meta.status not in (400, 413):
                raise
            if len(actions) == 1:
                reason = _reason(exc.body.get("error") if isinstance(exc.body, dict) else exc.body)
                return [PutResult(key=puts[chunk[0][0]].key, ok=False,
                                  refused=f"HTTP {exc.meta.status} {reason}")]  # fmt: skip
            half = len(actions) // 2
            return self._bulk(actions[:half], puts, chunk[:half]) + self._bulk(
                actions[half:], puts, chunk[half:]
            )
        out: list[PutResult | str] = []
        for (i, _), item in zip(chunk, resp["items"], strict=True):
            key = puts[i].key
            outcome = next(iter(item.values()))
            status = int(outcome.get("status", 500))
            if status in (200, 201):
                version = (int(outcome["_seq_no"]), int(outcome["_primary_term"]))
                out.append(PutResult(key=key, ok=True, version=version))
            elif status == 409:
                out.append(PutResult(key=key, ok=False, conflict=True))
            elif status in (400, 413):
                reason = f"HTTP {status} {_reason(outcome.get('error'))}"
                out.append(PutResult(key=key, ok=False, refused=reason))
            elif status in (401, 403):  # the stage's user lacks a right: the operator's to fix
                raise ConfigurationError(
                    f"Elasticsearch refused a write to {outcome.get('_index', '?')} "
                    f"(HTTP {status}): check the stage's user and role "
                    f"({_reason(outcome.get('error'))})"
                )
            else:  # 429, 5xx, a block or anything unknown: never assume it is the document
                out.append(f"{key[:200]}: HTTP {status} {_reason(outcome.get('error'))}")
        return out

    def delete(self, index: str, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        name = self._ensure_index(index)
        try:
            self._call("delete", lambda: self._es.delete(index=name, id=doc_id(key)))
        except NotFoundError:
            return False
        return True

    # -------------------------------------------------------------- search

    def _filter(self, index: str, f: Filter) -> dict[str, Any]:
        if isinstance(f, Term):
            if not f.values:
                return {"match_none": {}}
            short = [
                v for v in f.values if not (isinstance(v, str) and _utf16_units(v) > LONG_TERM)
            ]
            long = [long_term(f.field, v) for v in f.values if v not in short]
            if not long:
                return {"terms": {f.field: short}}
            should: list[dict[str, Any]] = [{"terms": {LONG_TERMS_FIELD: long}}]
            if short:
                should.append({"terms": {f.field: short}})
            return {"bool": {"should": should, "minimum_should_match": 1}}
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
                key=self._key_of(h["_id"], h["_source"]),
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


_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def _parse_bytes(text: str) -> int:
    """``100mb`` -> 104857600 (Elasticsearch byte-size settings)."""
    text = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * _UNITS[unit])
    return int(text)
