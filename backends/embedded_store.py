"""Embedded store: documents by key in one SQLite file (ARCHITECTURE.md, "store").

Versions are ``(n, 0)`` with ``n`` counting writes of a key from 1. Filters and
sorts use only the field types declared in ``core/indices.py``; declared
scalar fields get an expression index on first use so a page over 100k
documents stays fast. Term filters on fields that have ever held an array
(tracked in ``store_array_fields``) match any element, like Elasticsearch.
Missing values sort first ascending and last descending; the key breaks ties.

A document is refused (``PutResult.refused``, the Store contract) when a
declared field holds a value Elasticsearch could not index into its type
(``unfit_value``: an object in a keyword field, text in a number, ...) or
its JSON exceeds ``MAX_DOCUMENT_BYTES``, so both adapters accept and refuse
the same documents.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson

from backends._sqlite import ConnectionPool
from core.errors import StoreUnavailable
from core.indices import FieldType, schema
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
    Sort,
    Stored,
    Term,
    Text,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_docs (
    idx TEXT    NOT NULL,
    key TEXT    NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT    NOT NULL,
    PRIMARY KEY (idx, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_array_fields (
    idx   TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (idx, field)
) WITHOUT ROWID;
"""

_INDEXED_TYPES = ("keyword", "long", "double", "boolean")
_CHUNK = 500


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(field: str) -> str:
    """SQL literal of the JSON path of a (possibly dotted) field name."""
    parts = field.split(".")
    return _sql_literal("$" + "".join('."' + p.replace('"', '\\"') + '"' for p in parts))


def _extract(field: str) -> str:
    # Inlined (not bound) so the expression matches the expression indexes.
    return f"json_extract(doc, {_json_path(field)})"


def _icontains(haystack: object, needle: object) -> int:
    """Case-insensitive substring test (Unicode-aware, unlike SQLite's LIKE)."""
    if haystack is None or not isinstance(needle, str):
        return 0
    return int(needle.casefold() in str(haystack).casefold())


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _fits(ftype: FieldType, value: Any) -> bool:
    """Whether Elasticsearch indexes ``value`` into a field of ``ftype`` (its coercion rules)."""
    if value is None:
        return True
    if isinstance(value, list):
        return all(_fits(ftype, v) for v in value)
    if ftype in ("keyword", "text"):
        return isinstance(value, str | int | float | bool)
    if ftype in ("long", "double"):
        return _number(value)
    if ftype == "boolean":
        return isinstance(value, bool) or value in ("true", "false", "")
    return True  # pragma: no cover - exhaustive over FieldType


def unfit_value(index: str, doc: dict[str, Any]) -> str | None:
    """Why a declared field of ``doc`` cannot hold its value, or None (see module docstring)."""
    for name, ftype in schema(index).items():
        if name in doc and not _fits(ftype, doc[name]):
            shown = orjson.dumps(doc[name])[:80].decode("utf-8", "replace")
            return f"field [{name}] of type [{ftype}] cannot hold {shown}"
    return None


def _register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("tb_icontains", 2, _icontains, deterministic=True)


class EmbeddedStore:
    """The ``Store`` port on a SQLite file (``sqlite:///abs/path``)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conns = ConnectionPool(path, on_open=_register_functions)
        self._indexed: set[tuple[str, str]] = set()
        self._indexed_lock = threading.Lock()
        self._writes_since_analyze = 0
        self._rows_at_analyze = -1
        try:
            with self._conns.borrow() as conn:
                conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"embedded store at {path!r} unavailable: {exc}") from exc

    # ------------------------------------------------------------ plumbing

    def _conn(self) -> AbstractContextManager[sqlite3.Connection]:
        """A pooled connection for one call (``with self._conn() as conn``)."""
        return self._conns.borrow()

    def _ensure_indexes(self, conn: sqlite3.Connection, index: str, fields: set[str]) -> None:
        """Create the expression index of each declared scalar field on its first use.

        Only fields that are actually filtered or sorted on get an index, so
        writes do not pay for indexes nobody reads.
        """
        declared = schema(index)
        wanted = {
            f
            for f in fields
            if declared.get(f) in _INDEXED_TYPES and (index, f) not in self._indexed
        }
        if not wanted:
            return
        with self._indexed_lock:
            for name in sorted(wanted):
                ix = "ix_" + "".join(c if c.isalnum() else "_" for c in f"{index}_{name}")
                conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "{ix}" ON store_docs '
                    f"(idx, {_extract(name)}) WHERE idx = {_sql_literal(index)}"
                )
                self._indexed.add((index, name))
            self._rows_at_analyze = -1  # new indexes need statistics

    def _refresh_statistics(self, conn: sqlite3.Connection) -> None:
        """Refresh planner statistics once this process has written ~10 % more rows.

        Without statistics SQLite prefers the primary key (a scan of the whole
        index) over the expression indexes. Sampled statistics
        (``analysis_limit``) mislead it the same way, so this is a full
        ``ANALYZE`` (~0.25 s at 100k documents), run rarely.
        """
        if self._rows_at_analyze >= 0 and self._writes_since_analyze < max(
            1000, self._rows_at_analyze // 10
        ):
            return
        conn.execute("PRAGMA analysis_limit=0")
        conn.execute("ANALYZE store_docs")
        self._writes_since_analyze = 0
        (self._rows_at_analyze,) = conn.execute(
            "SELECT COALESCE(MAX(CAST(stat AS INTEGER)), 0) FROM sqlite_stat1 WHERE tbl=?",
            ("store_docs",),
        ).fetchone()

    def _array_fields(self, conn: sqlite3.Connection, index: str) -> set[str]:
        rows = conn.execute("SELECT field FROM store_array_fields WHERE idx=?", (index,))
        return {r[0] for r in rows}

    # --------------------------------------------------------------- reads

    def get(self, index: str, key: str) -> Stored | None:
        """The document under ``key`` and its version, or ``None``."""
        try:
            with self._conn() as conn:
                row = conn.execute(
                    "SELECT seq, doc FROM store_docs WHERE idx=? AND key=?", (index, key)
                ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        if row is None:
            return None
        return Stored(key=key, doc=orjson.loads(row[1]), version=(int(row[0]), 0))

    def get_many(self, index: str, keys: Sequence[str]) -> dict[str, Stored]:
        """The documents under ``keys`` that exist, by key."""
        found: dict[str, Stored] = {}
        unique = list(dict.fromkeys(keys))
        try:
            with self._conn() as conn:
                for i in range(0, len(unique), _CHUNK):
                    chunk = unique[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for key, seq, doc in conn.execute(
                        f"SELECT key, seq, doc FROM store_docs WHERE idx=? AND key IN ({marks})",
                        (index, *chunk),
                    ):
                        found[key] = Stored(key=key, doc=orjson.loads(doc), version=(int(seq), 0))
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return found

    # -------------------------------------------------------------- writes

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        """Apply ``puts`` in one transaction under optimistic concurrency (ports.Put)."""
        if not puts:
            return []
        results: list[PutResult] = []
        arrays: set[str] = set()
        try:
            with self._conns.writing() as conn:
                for put in puts:
                    result = self._put_one(conn, index, put)
                    results.append(result)
                    if result.ok:
                        arrays.update(k for k, v in put.doc.items() if isinstance(v, list))
                self._writes_since_analyze += len(puts)
                if arrays:
                    conn.executemany(
                        "INSERT OR IGNORE INTO store_array_fields (idx, field) VALUES (?, ?)",
                        [(index, f) for f in sorted(arrays)],
                    )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"embedded store write failed: {exc}") from exc
        return results

    @staticmethod
    def _put_one(conn: sqlite3.Connection, index: str, put: Put) -> PutResult:
        problem = unfit_value(index, put.doc)
        if problem is not None:
            return PutResult(key=put.key, ok=False, refused=problem)
        raw = orjson.dumps(put.doc)
        if len(raw) > MAX_DOCUMENT_BYTES:
            return PutResult(key=put.key, ok=False, refused=(
                f"document of {len(raw):,} bytes is over the store's limit "
                f"({MAX_DOCUMENT_BYTES:,} bytes)"))  # fmt: skip
        doc = raw.decode()
        if put.blind:
            row = conn.execute(
                "INSERT INTO store_docs (idx, key, seq, doc) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (idx, key) DO UPDATE SET seq = seq + 1, doc = excluded.doc "
                "RETURNING seq",
                (index, put.key, doc),
            ).fetchone()
            return PutResult(key=put.key, ok=True, version=(int(row[0]), 0))
        if put.expected is None:
            cur = conn.execute(
                "INSERT INTO store_docs (idx, key, seq, doc) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (idx, key) DO NOTHING",
                (index, put.key, doc),
            )
            if cur.rowcount == 1:
                return PutResult(key=put.key, ok=True, version=(1, 0))
            return PutResult(key=put.key, ok=False, conflict=True)
        seq, term = put.expected
        if term != 0:
            return PutResult(key=put.key, ok=False, conflict=True)
        cur = conn.execute(
            "UPDATE store_docs SET seq = seq + 1, doc = ? WHERE idx=? AND key=? AND seq=?",
            (doc, index, put.key, seq),
        )
        if cur.rowcount == 1:
            return PutResult(key=put.key, ok=True, version=(seq + 1, 0))
        return PutResult(key=put.key, ok=False, conflict=True)

    def delete(self, index: str, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        try:
            with self._conns.writing() as conn:
                cur = conn.execute("DELETE FROM store_docs WHERE idx=? AND key=?", (index, key))
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return cur.rowcount == 1

    # -------------------------------------------------------------- search

    def _where(
        self,
        conn: sqlite3.Connection,
        index: str,
        filters: Sequence[Filter],
        sort: Sequence[Sort] = (),
    ) -> tuple[list[str], list[Any]]:
        """SQL conditions (AND-ed) and parameters for ``filters`` on ``index``."""
        used = {f.field for f in filters if isinstance(f, Term | Range)}
        self._ensure_indexes(conn, index, used | {s.field for s in sort})
        self._refresh_statistics(conn)
        arrays = self._array_fields(conn, index)
        # The index name is inlined so the partial expression indexes apply.
        clauses: list[str] = [f"idx = {_sql_literal(index)}"]
        params: list[Any] = []
        for f in filters:
            if isinstance(f, Term):
                if not f.values:
                    clauses.append("0")
                    continue
                marks = ",".join("?" * len(f.values))
                if f.field in arrays or "." in f.field:
                    clauses.append(
                        f"EXISTS (SELECT 1 FROM json_each(doc, {_json_path(f.field)}) "
                        f"WHERE value IN ({marks}))"
                    )
                else:
                    clauses.append(f"{_extract(f.field)} IN ({marks})")
                params.extend(f.values)
            elif isinstance(f, Range):
                for op, bound in ((">", f.gt), (">=", f.gte), ("<", f.lt), ("<=", f.lte)):
                    if bound is not None:
                        clauses.append(f"{_extract(f.field)} {op} ?")
                        params.append(bound)
            elif isinstance(f, Text):
                if not f.fields:
                    clauses.append("0")
                    continue
                clauses.append(
                    "(" + " OR ".join(f"tb_icontains({_extract(x)}, ?)" for x in f.fields) + ")"
                )
                params.extend(f.query for _ in f.fields)
            elif isinstance(f, Missing):
                path = _json_path(f.field)
                clauses.append(
                    f"(json_type(doc, {path}) IS NULL OR json_type(doc, {path}) = 'null' OR "
                    f"(json_type(doc, {path}) = 'array' AND json_array_length(doc, {path}) = 0))"
                )
            else:  # pragma: no cover - exhaustive over Filter
                raise TypeError(f"unknown filter {f!r}")
        return clauses, params

    @staticmethod
    def _after(sort: Sequence[Sort], after: Sequence[Any]) -> tuple[str, list[Any]]:
        """Keyset condition "strictly after ``after``" for ``ORDER BY sort…, key``."""
        if len(after) != len(sort) + 1:
            raise ValueError(f"cursor {list(after)!r} does not fit sort {list(sort)!r}")
        ors: list[str] = []
        params: list[Any] = []
        eqs: list[str] = []
        eq_params: list[Any] = []
        for s, value in zip(sort, after[:-1], strict=True):
            expr = _extract(s.field)
            if value is None:
                # NULL sorts first ascending, last descending.
                beyond = f"{expr} IS NOT NULL" if s.order == "asc" else "0"
                beyond_params: list[Any] = []
                eq, eq_p = f"{expr} IS NULL", []
            else:
                if s.order == "asc":
                    beyond = f"{expr} > ?"
                else:
                    beyond = f"({expr} < ? OR {expr} IS NULL)"
                beyond_params = [value]
                eq, eq_p = f"{expr} = ?", [value]
            ors.append("(" + " AND ".join([*eqs, beyond]) + ")")
            params.extend([*eq_params, *beyond_params])
            eqs.append(eq)
            eq_params.extend(eq_p)
        ors.append("(" + " AND ".join([*eqs, "key > ?"]) + ")")
        params.extend([*eq_params, after[-1]])
        return "(" + " OR ".join(ors) + ")", params

    def search(self, index: str, query: Query) -> Page:
        """One page of documents matching every filter, in sort order then key (ports.Query)."""
        try:
            with self._conn() as conn:
                clauses, params = self._where(conn, index, query.filters, query.sort)
                if query.after is not None:
                    cond, cond_params = self._after(query.sort, tuple(query.after))
                    clauses.append(cond)
                    params.extend(cond_params)
                sort_exprs = [_extract(s.field) for s in query.sort]
                order = ", ".join(
                    [f"{e} {s.order.upper()}" for e, s in zip(sort_exprs, query.sort, strict=True)]
                    + ["key ASC"]
                )
                select = ", ".join(["key", "doc", "seq", *sort_exprs])
                where = " AND ".join(clauses)
                limit = max(0, query.limit)
                rows = conn.execute(
                    f"SELECT {select} FROM store_docs WHERE {where} ORDER BY {order} LIMIT ?",
                    (*params, limit + 1),
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        hits = [
            Hit(
                key=row[0],
                doc=orjson.loads(row[1]),
                cursor=(*row[3:], row[0]),
                version=(int(row[2]), 0) if query.versions else None,
            )
            for row in rows[:limit]
        ]
        return Page(hits=hits, more=len(rows) > limit)

    def count_by(self, index: str, field: str, filters: Sequence[Filter] = ()) -> dict[str, int]:
        """Documents per value of ``field``; each element counts for arrays."""
        try:
            with self._conn() as conn:
                self._ensure_indexes(conn, index, {field})
                clauses, params = self._where(conn, index, filters)
                where = " AND ".join(clauses)
                if field in self._array_fields(conn, index) or "." in field:
                    sql = (
                        "SELECT CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                        "ELSE CAST(j.value AS TEXT) END AS v, COUNT(DISTINCT d.key) "
                        f"FROM (SELECT key, doc FROM store_docs WHERE {where}) AS d, "
                        f"json_each(d.doc, {_json_path(field)}) AS j "
                        "WHERE j.type NOT IN ('null', 'object', 'array') GROUP BY v"
                    )
                else:
                    # Never held an array: group on the expression index, no JSON parsing.
                    sql = (
                        f"SELECT {_extract(field)} AS v, COUNT(*) FROM store_docs "
                        f"WHERE {where} AND {_extract(field)} IS NOT NULL GROUP BY v"
                    )
                rows = conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        if schema(index).get(field) == "boolean":
            return {("true" if v in (1, "true") else "false"): int(n) for v, n in rows}
        return {str(v): int(n) for v, n in rows}

    def count(self, index: str, filters: Sequence[Filter] = ()) -> int:
        """Number of documents matching every filter."""
        try:
            with self._conn() as conn:
                clauses, params = self._where(conn, index, filters)
                where = " AND ".join(clauses)
                row = conn.execute(
                    f"SELECT COUNT(*) FROM store_docs WHERE {where}", params
                ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return int(row[0])

    def refresh(self, index: str) -> None:
        """Writes are visible once committed; nothing to do."""

    def close(self) -> None:
        """Close this process's connections to the store file."""
        self._conns.close()
