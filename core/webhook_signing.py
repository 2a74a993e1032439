"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with replay protection.

Headers sent with every delivery:

- ``X-ThreatBay-Timestamp``: Unix seconds when the request was signed;
- ``X-ThreatBay-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``;
- ``X-ThreatBay-Delivery``: the delivery id (the same on every retry of one job).

A receiver calls ``verify`` with its copy of the secret: it rejects a bad
signature, a timestamp outside ``tolerance`` of its own clock (stale or
replayed later), and a delivery id it has already accepted (``ReplayGuard``).
This is the scheme GitHub and Stripe document for their webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HEADER_TIMESTAMP = "X-ThreatBay-Timestamp"
HEADER_SIGNATURE = "X-ThreatBay-Signature"
HEADER_DELIVERY = "X-ThreatBay-Delivery"
HEADER_EVENT = "X-ThreatBay-Event"
DEFAULT_TOLERANCE = timedelta(seconds=300)


def new_secret() -> str:
    """A fresh 256-bit webhook secret (shown to the agency once)."""
    return secrets.token_urlsafe(32)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"<timestamp>.<body>"``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def sign(secret: str, body: bytes, now: datetime, delivery_id: str) -> dict[str, str]:
    """The headers of one signed delivery."""
    timestamp = str(int(now.timestamp()))
    return {
        HEADER_TIMESTAMP: timestamp,
        HEADER_SIGNATURE: signature(secret, timestamp, body),
        HEADER_DELIVERY: delivery_id,
        "Content-Type": "application/json",
    }


@dataclass
class ReplayGuard:
    """Delivery ids already accepted, remembered for longer than the tolerance window."""

    capacity: int = 100_000
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def seen(self, delivery_id: str) -> bool:
        return delivery_id in self._seen

    def remember(self, delivery_id: str) -> None:
        self._seen[delivery_id] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = "ok"


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature_header: str | None,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    *,
    delivery_id: str | None = None,
    guard: ReplayGuard | None = None,
) -> Verdict:
    """Receiver-side check: signature, freshness, and (with a guard) no replay."""
    if not timestamp or not signature_header:
        return Verdict(False, "missing signature headers")
    if not timestamp.isdigit():
        return Verdict(False, "malformed timestamp")
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected, signature_header.strip()):
        return Verdict(False, "bad signature")
    age = now.timestamp() - int(timestamp)
    if abs(age) > tolerance.total_seconds():
        return Verdict(False, f"timestamp outside tolerance ({int(age)} s old)")
    if guard is not None:
        if not delivery_id:
            return Verdict(False, "missing delivery id")
        if guard.seen(delivery_id):
            return Verdict(False, "replayed delivery id")
        guard.remember(delivery_id)
    return Verdict(True)
