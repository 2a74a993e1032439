"""Per-object validation on the push path: each bad object answered precisely.

Structure by ``core.stix.object_error`` (dict look-ups, no ``stix2.parse``),
then the STIX pattern of every indicator with ``pattern_type`` ``stix`` by
``core.patterns.pattern_error`` (STIX 2.1 section 9). One bad object never
fails its neighbours: each object gets its own answer.
"""

from __future__ import annotations

from typing import Any

from core.patterns import DEFAULT_LIMITS, PatternLimits, pattern_error
from core.stix import object_error


def validation_error(obj: Any, limits: PatternLimits = DEFAULT_LIMITS) -> str | None:
    """None when ``obj`` may be accepted, else the precise reason it may not."""
    err = object_error(obj)
    if err is not None:
        return err
    if obj["type"] == "indicator" and obj["pattern_type"] == "stix":
        perr = pattern_error(obj["pattern"], limits)
        if perr is not None:
            return f"invalid STIX pattern: {perr}"
    return None
