"""The HTTP side of a webhook delivery: one POST, with one shared client."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

#: POST ``body`` with ``headers`` to ``url`` within ``timeout_s``; the HTTP status.
Sender = Callable[[str, bytes, dict[str, str], float], int]

#: What a sender may raise for a delivery that did not reach its endpoint.
SendError = httpx.HTTPError


class HttpxSender:
    """POSTs with one shared httpx client (building a client costs ~150 ms: TLS context)."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(follow_redirects=False)
            client = self._client
        return client.post(url, content=body, headers=headers, timeout=timeout_s).status_code

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
