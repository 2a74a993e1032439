"""What one reader may see of an alert, for one purpose (DOMAIN.md "Sharing", "Noninterference").

Pure: the API, the stream and the notifier all call ``alert_view``. The alert
given is the reader's own version (records/alerts.py): built only from the
reader's views of the records, so each indicator summary in it must be wholly
visible to the reader (``decide_record`` with ``exact``); this only redacts
what crosses a border and hides an indicator whose sharing changed since.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import policy
from core.alerts import Alert, reader_view
from core.redaction import event_for

#: How an indicator summary is decided (``policy.decide_record``, or a memo of it).
Decide = Callable[
    [policy.SharingPolicy, policy.Reader, policy.Purpose, dict[str, Any]], policy.Decision
]


def alert_view(
    sharing: policy.SharingPolicy,
    reader: policy.Reader,
    purpose: policy.Purpose,
    alert: Alert,
    decide: Decide | None = None,
) -> Alert | None:
    """The alert as ``reader`` may see it for ``purpose``; None when nothing in it is visible.

    Each indicator goes through ``decide`` (the sharing policy, or a memo of
    it: the alert list); agency names the reader may not see are removed from
    the alert and its timeline.
    """

    def allow(indicator: dict[str, Any]) -> dict[str, Any] | None:
        if decide is not None:
            decision = decide(sharing, reader, purpose, indicator)
        else:
            decision = policy.decide_record(sharing, reader, purpose, indicator, exact=True)
        return decision.view if decision.shown else None

    view = reader_view(alert, allow)
    if view is None:
        return None
    visible = {a for i in view["indicators"] for a in i.get("agencies") or []}
    visible |= {
        s["acknowledged_by"] for s in alert["jurisdiction_state"].values() if s["acknowledged_by"]
    }
    visible |= {e["by"] for e in alert["timeline"] if e.get("by")}
    view["agencies"] = sorted(a for a in alert["agencies"] if a in visible)
    view["timeline"] = [
        event_for(
            reader.jurisdiction,
            {**e, "new_agencies": [a for a in e["new_agencies"] if a in visible]}
            if "new_agencies" in e
            else e,
        )
        for e in alert["timeline"]
    ]
    return view
