"""Read-modify-write under optimistic concurrency, written once for every record kind.

Every stage that changes a stored document does the same dance: read it (by
key: real-time on both backends), compute the new document from what was
read, write it with the version read; a conflict means someone else wrote in
between, so re-read and re-apply. Two workers on different partitions thus
never lose each other's update of a shared record.

``change(key, stored)`` is the pure part: the ``Put`` to make (its key may
differ from ``key``, e.g. a new generation of an alert), or None to leave the
document alone. It is called again for a key whose write conflicted, with the
document as now stored. A document the store refuses for good
(``PutResult.refused``) raises ``Refused`` once every other key is written:
poison for the input behind it (core/consuming.py narrows the batch down to
it). A key still conflicting after ``conflict_retries`` rounds raises
``WriteContention``, transient: a consumer rewinds and retries its batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from core.errors import Refused, WriteContention
from core.ports import Put, PutResult, Store, Stored
from core.settings import WritesSettings

K = TypeVar("K", bound=Hashable)


@dataclass
class Contention:
    """How much a read-modify-write had to retry (for results and benches)."""

    conflicts: int = 0
    rounds: int = 0


def read_modify_write(
    store: Store,
    index: str,
    keys: Iterable[K],
    change: Callable[[K, Stored | None], Put | None],
    *,
    writes: WritesSettings | None = None,
    read: Callable[[list[K]], Mapping[K, Stored | None]] | None = None,
    known: Mapping[K, Stored] | None = None,
    before_write: Callable[[list[Put]], None] | None = None,
    contention: Contention | None = None,
) -> dict[K, PutResult]:
    """Apply ``change`` to each of ``keys``; returns the successful write of each changed key.

    ``read`` replaces the default read by key (``store.get_many`` on ``index``,
    for string keys); ``known`` supplies documents for the first round only
    (a cache of what this process wrote last: a stale entry just conflicts);
    ``before_write`` sees each round's puts before they are written (the
    outbox notes changes there); ``contention`` counts the conflicts met.
    """
    writes = writes or WritesSettings()
    pending = list(dict.fromkeys(keys))
    done: dict[K, PutResult] = {}
    refused: dict[str, str] = {}
    pause = writes.conflict_backoff_s
    first = True
    for _round in range(max(1, writes.conflict_retries)):
        if not pending:
            break
        current: dict[K, Stored | None] = {}
        if first and known:
            current.update({k: known[k] for k in pending if k in known})
        unread = [k for k in pending if k not in current]
        if unread:
            if read is not None:
                current.update(read(unread))
            else:
                found = store.get_many(index, [str(k) for k in unread])
                current.update({k: found.get(str(k)) for k in unread})
        first = False
        puts: list[tuple[K, Put]] = []
        for key in pending:
            put = change(key, current.get(key))
            if put is not None:
                puts.append((key, put))
        if not puts:
            pending = []
            break
        if before_write is not None:
            before_write([p for _, p in puts])
        results = store.put_many(index, [p for _, p in puts])
        pending = []
        for (key, _), result in zip(puts, results, strict=True):
            if result.conflict:
                pending.append(key)
            elif result.ok:
                done[key] = result
            else:
                refused[result.key] = f"{index}: {result.refused or 'refused by the store'}"
        if contention is not None:
            contention.rounds += 1
            contention.conflicts += len(pending)
        if pending:
            time.sleep(pause)
            pause *= 2
    if refused:
        raise Refused(refused)
    if pending:
        raise WriteContention(
            f"{index}: gave up after {writes.conflict_retries} conflicting rounds on "
            f"{[str(k) for k in pending[:5]]}"
        )
    return done
