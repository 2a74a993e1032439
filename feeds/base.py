"""What a puller hands the runner: batches of STIX objects, each with the cursor it reaches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import ThreatBayError


class IngestUnavailable(ThreatBayError):
    """Ingest could not durably accept a batch (e.g. the bus did not acknowledge); retry later."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Objects from one page / event / file, and the feed position once they are accepted.

    ``cursor`` None means "this batch does not move the position" (the runner
    keeps the previous one, so the batch is fetched again next time rather
    than skipped).
    """

    objects: list[Any]
    cursor: str | None
    label: str = ""
    invalid: tuple[str, ...] = ()  # entries that never became STIX (e.g. a bad CSV value)


class Puller(Protocol):
    """Turns one feed's format into STIX 2.1 batches, resuming after ``cursor``."""

    def batches(self, cursor: str | None) -> Iterator[Batch]: ...

    def close(self) -> None: ...
