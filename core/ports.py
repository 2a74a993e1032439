"""The two ports every stage talks through: the bus and the store.

Each has two adapters in ``backends/`` (Kafka / embedded SQLite log;
Elasticsearch / embedded SQLite) and one contract suite in ``tests/contract/``.
They are kept small on purpose (STYLE.md 1): dedup, scoring and policy live
above them, never in an adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# --------------------------------------------------------------------- bus


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: key (for ordering), value bytes and headers."""

    key: str
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed message with its position in the log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Mapping[str, str]


class Consumer(Protocol):
    """A member of a named consumer group on one topic."""

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Incoming]:
        """Next messages after the group's position (may be empty)."""
        ...

    def commit(self) -> None:
        """Durably record that everything returned by ``poll`` so far is processed."""
        ...

    def rewind(self) -> None:
        """Move back to the last committed position (re-deliver uncommitted messages)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class GroupLag:
    """How far a consumer group is behind on one topic: per partition (committed, end).

    ``committed`` is the offset of the next message the group will read (a
    group that never committed reads from the start of the log); ``end`` the
    offset the next published message will get. ``lag`` is what is not yet
    processed (``threatbay status``, ``/metrics``).
    """

    topic: str
    group: str
    partitions: Mapping[int, tuple[int, int]]

    @property
    def lag(self) -> int:
        return sum(max(0, end - committed) for committed, end in self.partitions.values())


class Bus(Protocol):
    """A durable, partitioned, replayable log (Kafka, or the embedded SQLite log)."""

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Append ``messages``; return only once all are durably acknowledged.

        Raises ``BusUnavailable`` if any message could not be acknowledged.
        """
        ...

    def consumer(self, topic: str, group: str, *, from_beginning: bool = False) -> Consumer:
        """Join ``group`` on ``topic``; ``from_beginning`` replays the whole log."""
        ...

    def lag(self, topic: str, group: str) -> GroupLag:
        """Committed and end offset of every partition of ``topic`` for ``group``.

        Read from the log itself, so any process can see any group's lag
        (a topic that does not exist yet has no partitions). Raises
        ``BusUnavailable`` when the bus cannot answer.
        """
        ...

    def close(self) -> None: ...


# ------------------------------------------------------------------- store

#: The largest document (its JSON) a store accepts: Elasticsearch's default
#: ``http.max_content_length`` (100 MB). Larger documents are refused (``PutResult.refused``).
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024

Version = tuple[int, int]
"""Optimistic-concurrency token: (seq_no, primary_term) in ES, (n, 0) embedded."""


@dataclass(frozen=True, slots=True)
class Stored:
    key: str
    doc: dict[str, Any]
    version: Version


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``doc`` under ``key``.

    ``expected`` is the version read before computing ``doc``; ``None`` means
    the key must not exist yet (create). ``blind=True`` overwrites whatever is
    there (for documents with a single writer, e.g. audit entries).
    """

    key: str
    doc: dict[str, Any]
    expected: Version | None = None
    blind: bool = False


@dataclass(frozen=True, slots=True)
class PutResult:
    """What became of one ``Put``: written (``ok``), a version ``conflict``, or ``refused``.

    ``refused`` says why the store will never accept this document as it is
    (a value its declared field type cannot hold, a document over
    ``MAX_DOCUMENT_BYTES`` or the cluster's request limit): retrying cannot
    help, so the input behind it is poison (``core.errors.Refused``).
    """

    key: str
    ok: bool
    version: Version | None = None
    conflict: bool = False
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Term:
    """Field equals one of ``values`` (for array fields: any element does)."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Range:
    field: str
    gt: Any = None
    gte: Any = None
    lt: Any = None
    lte: Any = None


@dataclass(frozen=True, slots=True)
class Text:
    """Case-insensitive substring / full-text match over ``fields``."""

    fields: tuple[str, ...]
    query: str


@dataclass(frozen=True, slots=True)
class Missing:
    """Field is absent or null."""

    field: str


Filter = Term | Range | Text | Missing


@dataclass(frozen=True, slots=True)
class Sort:
    field: str
    order: Literal["asc", "desc"] = "asc"


@dataclass(frozen=True, slots=True)
class Query:
    """All ``filters`` AND-ed; results sorted by ``sort`` then by key.

    ``after`` is the ``cursor`` of the last hit of the previous page. With
    ``versions`` every hit carries its document's version, so a conditional
    write can follow without reading it again (it may be one refresh behind on
    Elasticsearch: such a write comes back as a conflict).
    """

    filters: tuple[Filter, ...] = ()
    sort: tuple[Sort, ...] = ()
    limit: int = 100
    after: tuple[Any, ...] | None = None
    versions: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    key: str
    doc: dict[str, Any]
    cursor: tuple[Any, ...]
    version: Version | None = None  # set when the query asked for ``versions``


@dataclass(frozen=True, slots=True)
class Page:
    hits: list[Hit]
    more: bool


class Store(Protocol):
    """Documents by key in named indices (Elasticsearch, or embedded SQLite)."""

    def get(self, index: str, key: str) -> Stored | None: ...

    def get_many(self, index: str, keys: Sequence[str]) -> dict[str, Stored]: ...

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        """Write each put under optimistic concurrency; one result per put, in order.

        Keys of any length are accepted. A version mismatch is a ``conflict``
        result, a document the store can never accept a ``refused`` result
        with the reason (the other puts are written all the same), never an
        exception; an unreachable or overloaded store raises ``StoreUnavailable``
        (nothing can be assumed written).
        """
        ...

    def delete(self, index: str, key: str) -> bool: ...

    def search(self, index: str, query: Query) -> Page: ...

    def count_by(self, index: str, field: str, filters: Sequence[Filter] = ()) -> dict[str, int]:
        """Number of documents per value of ``field`` (each element for arrays)."""
        ...

    def count(self, index: str, filters: Sequence[Filter] = ()) -> int: ...

    def refresh(self, index: str) -> None:
        """Make all acknowledged writes visible to search (tests, read-your-writes)."""
        ...

    def close(self) -> None: ...
