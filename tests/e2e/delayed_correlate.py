"""``threatbay correlate`` whose store holds every objects- and indicators-index write back.

Run as ``python -m tests.e2e.delayed_correlate`` (the multi-correlator date_added
test starts three). It is the real command (``threatbay.cli`` ``correlate``, real
Kafka, real Elasticsearch); only the store is wrapped: each ``put_many`` on the
objects or indicators index sleeps a random 0..``THREATBAY_TEST_OBJECT_WRITE_DELAY_S``
seconds before it is sent, as a slow or busy Elasticsearch node would. A version
(an object, or a record view of the ``records`` collection) is stamped before that
write, so the delay widens the window in which a version stamped earlier becomes
searchable after one stamped later.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from core.names import INDEX_INDICATORS, INDEX_OBJECTS
from core.ports import Put, PutResult, Store
from core.settings import Settings


class DelayedObjectWrites:
    """The real store; writes to the objects index wait a random while first."""

    def __init__(self, store: Store, max_delay_s: float, rng: random.Random) -> None:
        self._store = store
        self._max = max_delay_s
        self._rng = rng

    def put_many(self, index: str, puts: Sequence[Put]) -> list[PutResult]:
        if (index.endswith(INDEX_OBJECTS) or index.endswith(INDEX_INDICATORS)) and puts:
            time.sleep(self._rng.uniform(0.0, self._max))
        return self._store.put_many(index, puts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def main() -> None:
    from threatbay import bootstrap, cli

    max_delay = float(os.environ.get("THREATBAY_TEST_OBJECT_WRITE_DELAY_S", "1.5"))
    rng = random.Random(os.getpid())
    real = bootstrap.store_from_url

    def delayed(url: str, settings: Settings, stage: str = "ingest") -> Store:
        inner = real(url, settings, stage)
        store: Store = DelayedObjectWrites(inner, max_delay, rng)  # type: ignore[assignment]
        return store

    bootstrap.store_from_url = delayed  # type: ignore[assignment]
    sys.argv = ["threatbay", "correlate"]
    cli.main()


if __name__ == "__main__":
    main()
