"""Errors are values with a home (STYLE.md 8): one root, subclasses carry data."""

from __future__ import annotations


class ThreatBayError(Exception):
    """Root of every error ThreatBay raises on purpose."""


class ConfigurationError(ThreatBayError):
    """Settings or a configuration file are invalid; the message says which and why."""


class BusUnavailable(ThreatBayError):
    """The bus did not durably acknowledge a publish, or cannot be reached."""


class StoreUnavailable(ThreatBayError):
    """The store cannot be reached or refused a write for a transient reason."""


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
