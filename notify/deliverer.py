"""Sends due webhook deliveries: signed, retried with backoff, every attempt logged.

``delivery_tick(now)`` claims the due jobs (records/deliveries.py), POSTs each
with ``notify.sender``, signs it (core/webhook_signing.py), logs the attempt on
the job, schedules a retry with exponential backoff, and marks the job
``dead`` after ``max_attempts``. Endpoints are independent: one slow agency
does not hold up the others. Jobs live in the store, so pending ones survive
a restart.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import orjson

from core.clock import Clock, format_timestamp
from core.errors import Unavailable
from core.ports import Store
from core.settings import WebhookSettings
from core.webhook_signing import HEADER_EVENT, sign
from notify.sender import HttpxSender, Sender, SendError
from records.deliveries import DEAD, DELIVERED, Deliveries, DeliveryJob
from records.webhooks import WebhookDirectory

log = logging.getLogger("threatbay.notify")


class Deliverer:
    """Sends due delivery jobs with retries and backoff (module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        max_attempts: int | None = None,
        base_delay: timedelta | None = None,
        max_delay: timedelta | None = None,
        timeout_s: float | None = None,
        workers: int | None = None,
        sender: Sender | None = None,
        settings: WebhookSettings | None = None,
    ) -> None:
        s = settings or WebhookSettings()
        self.store, self.clock = store, clock
        self.directory = WebhookDirectory(store)
        self.deliveries = Deliveries(store, clock)
        self.max_attempts = max_attempts if max_attempts is not None else s.max_attempts
        self.base_delay = base_delay or timedelta(seconds=s.base_delay_s)
        self.max_delay = max_delay or timedelta(seconds=s.max_delay_s)
        self.timeout_s = timeout_s if timeout_s is not None else s.timeout_s
        self.workers = workers or s.workers
        self.tick_s = s.tick_s
        self.sender = sender or HttpxSender()
        self.lease = max(timedelta(seconds=60), timedelta(seconds=4 * self.timeout_s))

    def backoff(self, attempts: int) -> timedelta:
        """Delay before attempt ``attempts + 1``: base × 2^(attempts − 1), capped."""
        return min(self.base_delay * (1 << max(attempts - 1, 0)), self.max_delay)

    def delivery_tick(self, now: datetime, limit: int = 200) -> dict[str, int]:
        """Send every pending job due at ``now``; returns counts by outcome."""
        counts = {DELIVERED: 0, "retry": 0, DEAD: 0}
        held = self.deliveries.claim(self.deliveries.due(now, limit), now + self.lease)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            outcomes = list(pool.map(lambda job: self._attempt(job, now), [j for j, _ in held]))
        results = self.deliveries.record_attempts(held)
        for outcome, result in zip(outcomes, results, strict=True):
            if result.ok:
                counts[outcome] += 1
        return counts

    def _attempt(self, job: DeliveryJob, now: datetime) -> str:
        endpoint = self.directory.get(job["agency"])
        body = orjson.dumps(job["payload"])
        status: int | None = None
        error: str | None = None
        if endpoint is None or not endpoint.active:
            error = "no active webhook endpoint for the agency"
        else:
            headers = sign(endpoint.secret, body, now, job["id"])
            headers[HEADER_EVENT] = job["event_type"]
            try:
                status = self.sender(endpoint.url, body, headers, self.timeout_s)
            except SendError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        job["attempts"] = int(job["attempts"]) + 1
        entry: dict[str, Any] = {
            "at": format_timestamp(now),
            "attempt": job["attempts"],
            "status": status,
            "error": error,
            "url": endpoint.url if endpoint else None,
        }
        job["log"] = [*job["log"], entry][-20:]
        job["updated"] = format_timestamp(now)
        if status is not None and 200 <= status < 300:
            job["state"] = DELIVERED
            job["delivered_at"] = format_timestamp(now)
            return DELIVERED
        if job["attempts"] >= self.max_attempts:
            job["state"] = DEAD
            return DEAD
        job["next_attempt_at"] = format_timestamp(now + self.backoff(job["attempts"]))
        return "retry"

    def run(self, stop: threading.Event, every_s: float | None = None) -> None:
        """Loop: ``delivery_tick`` every ``every_s`` seconds until ``stop``; outages skip a tick."""
        every = self.tick_s if every_s is None else every_s
        while not stop.is_set():
            try:
                self.delivery_tick(self.clock.now())
            except Unavailable as exc:
                log.warning("delivery tick skipped: %s", exc)
            stop.wait(every)
