"""Webhook signatures: HMAC over "<timestamp>.<body>", freshness, replay refusal."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from core.webhook_signing import (
    HEADER_DELIVERY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ReplayGuard,
    sign,
    verify,
)

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SECRET = "s3cret-of-hk-govcert"
BODY = b'{"alert":{"level":"RED"}}'


def signed() -> dict[str, str]:
    return sign(SECRET, BODY, NOW, "evt-1|hk-govcert")


def test_signature_is_documented_hmac_of_timestamp_dot_body() -> None:
    headers = signed()
    ts = headers[HEADER_TIMESTAMP]
    assert ts == str(int(NOW.timestamp()))
    expected = hmac.new(SECRET.encode(), f"{ts}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers[HEADER_SIGNATURE] == f"sha256={expected}"
    assert headers[HEADER_DELIVERY] == "evt-1|hk-govcert"


def test_receiver_accepts_a_fresh_genuine_delivery_once() -> None:
    h = signed()
    guard = ReplayGuard()
    args = (SECRET, h[HEADER_TIMESTAMP], BODY, h[HEADER_SIGNATURE])
    first = verify(*args, NOW + timedelta(seconds=3), delivery_id=h[HEADER_DELIVERY], guard=guard)
    assert first.ok
    again = verify(*args, NOW + timedelta(seconds=4), delivery_id=h[HEADER_DELIVERY], guard=guard)
    assert not again.ok and again.reason == "replayed delivery id"


def test_receiver_rejects_tampering_wrong_secret_and_stale_timestamps() -> None:
    h = signed()
    ts, sig = h[HEADER_TIMESTAMP], h[HEADER_SIGNATURE]
    assert verify(SECRET, ts, BODY.replace(b"RED", b"BLUE"), sig, NOW).reason == "bad signature"
    assert verify("other-secret", ts, BODY, sig, NOW).reason == "bad signature"
    assert verify(SECRET, str(int(ts) + 1), BODY, sig, NOW).reason == "bad signature"
    stale = verify(SECRET, ts, BODY, sig, NOW + timedelta(seconds=301))
    assert not stale.ok and "tolerance" in stale.reason
    assert verify(SECRET, ts, BODY, sig, NOW + timedelta(seconds=299)).ok
    assert not verify(SECRET, None, BODY, sig, NOW).ok
    assert not verify(SECRET, "12ab", BODY, sig, NOW).ok


def test_replay_guard_forgets_oldest_beyond_capacity() -> None:
    guard = ReplayGuard(capacity=2)
    for d in ("a", "b", "c"):
        guard.remember(d)
    assert not guard.seen("a") and guard.seen("b") and guard.seen("c")
