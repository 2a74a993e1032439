"""Time comes from an injectable clock so tests can move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock tests set and advance by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when


@lru_cache(maxsize=1024)
def format_timestamp(when: datetime) -> str:
    """STIX/TAXII timestamp: UTC with microseconds and a ``Z``.

    Memoised: a batch formats the same instant once per record (strftime is ~6 µs).
    """
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 STIX timestamp (``Z`` or offset) into aware UTC.

    Raises ``ValueError`` on anything else. Memoised: scoring reads the same
    report and sighting times of a record again at every change.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    return _parse_timestamp(text)


@lru_cache(maxsize=65536)
def _parse_timestamp(text: str) -> datetime:
    if "T" not in text:
        raise ValueError(f"not a timestamp: {text!r}")
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {text!r}")
    return parsed.astimezone(UTC)


def since(clock: Clock, delta: timedelta) -> datetime:
    return clock.now() - delta
