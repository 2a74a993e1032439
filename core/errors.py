"""Errors are values with a home (STYLE.md 8): one root, subclasses carry data.

Two families matter to every stage (core/consuming.py):
- *transient*: ``StoreUnavailable`` and ``BusUnavailable`` (and ``WriteContention``,
  a store that keeps answering conflicts): do not commit, back off, retry;
- *poison*: ``Poison`` says one input can never be processed; it goes to
  ``intel.dlq`` with its reason and the rest of the batch goes on.
Anything else is a bug and is never mistaken for bad input.
"""

from __future__ import annotations


class ThreatBayError(Exception):
    """Root of every error ThreatBay raises on purpose."""


class ConfigurationError(ThreatBayError):
    """Settings or a configuration file are invalid; the message says which and why."""


class Unavailable(ThreatBayError):
    """A backend cannot do its part right now; retrying later may succeed."""


class BusUnavailable(Unavailable):
    """The bus did not durably acknowledge a publish, or cannot be reached."""


class StoreUnavailable(Unavailable):
    """The store cannot be reached or refused a write for a transient reason."""


class WriteContention(StoreUnavailable):
    """A read-modify-write kept meeting concurrent writers; the batch is retried later."""


class Poison(ThreatBayError):
    """One input (a bus message, an object, a stored record) can never be processed.

    ``reason`` is what the dead-letter topic records. Raised for a single
    message, the consumer loop dead-letters that message and processes the
    rest of the batch (core/consuming.py).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Poison):
    """The store permanently refused documents a batch wrote (``PutResult.refused``).

    ``reasons`` maps each refused key to why; every other document of the
    write landed. Raised by records writes, it is poison for the input that
    produced those documents: the consumer loop narrows the batch down to it
    (core/consuming.py) and dead-letters it with the reason.
    """

    def __init__(self, reasons: dict[str, str]) -> None:
        shown = "; ".join(f"{k[:120]}: {r}" for k, r in list(reasons.items())[:3])
        super().__init__(f"store refused {len(reasons)} document(s): {shown}")
        self.reasons = reasons


class InvalidObject(ThreatBayError):
    """A STIX object failed validation; ``reason`` says precisely why."""

    def __init__(self, object_id: str | None, reason: str) -> None:
        super().__init__(f"{object_id or '<no id>'}: {reason}")
        self.object_id = object_id
        self.reason = reason


class InvalidPattern(InvalidObject):
    """An indicator's STIX pattern is not valid STIX 2.1 patterning."""


class UnknownAgency(ThreatBayError):
    def __init__(self, agency_id: str) -> None:
        super().__init__(f"unknown agency {agency_id!r}")
        self.agency_id = agency_id


class BadCursor(ThreatBayError):
    """A paging cursor or event id is not one this server handed out (or was altered)."""
