"""One HTTP stack for every puller: auth, timeouts, retries, and failures named plainly.

taxii2-client is built on ``requests``, so the MISP and CSV pullers use it too:
one place sets the feed's auth (basic / bearer / client certificate), a
default timeout on every request, and bounded retries with backoff on
connection errors and 429/5xx answers (urllib3 ``Retry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from core.errors import ConfigurationError, StoreUnavailable, ThreatBayError
from feeds.base import IngestUnavailable
from feeds.config import BasicAuth, BearerAuth, CertAuth, FeedConfig

USER_AGENT = "ThreatBay-feeds/1"


class MalformedFeed(ThreatBayError):
    """The feed answered, but with something that is not what its kind promises."""


@dataclass(frozen=True, slots=True)
class FeedFailure:
    """Why one pull of one feed failed, in words an operator can act on."""

    kind: str  # unreachable | timeout | credentials | http | malformed | ingest | config | error
    message: str
    transient: bool = True


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class _TimeoutAdapter(HTTPAdapter):
    """Applies the feed's timeout when the caller gave none, and the feed's CA bundle.

    The CA bundle is set here, not only on ``session.verify``, because requests
    lets ``REQUESTS_CA_BUNDLE`` from the environment override ``session.verify``.
    """

    def __init__(self, timeout_s: float, ca_bundle: str | None = None, **kwargs: Any) -> None:
        self.timeout_s = timeout_s
        self.ca_bundle = ca_bundle
        super().__init__(**kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self.timeout_s if timeout is None else timeout,
            verify=self.ca_bundle if self.ca_bundle and verify is not False else verify,
            cert=cert,
            proxies=dict(proxies) if proxies is not None else None,
        )


def configure_session(session: requests.Session, feed: FeedConfig) -> requests.Session:
    """Give ``session`` the feed's auth, TLS settings, timeout and retry policy."""
    retry = Retry(
        total=feed.retries,
        connect=feed.retries,
        read=feed.retries,
        status=feed.retries,
        backoff_factor=feed.retry_backoff_s,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    ca_bundle = str(feed.ca_bundle) if feed.ca_bundle and feed.verify_tls else None
    adapter = _TimeoutAdapter(feed.timeout_s, ca_bundle, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = ca_bundle or feed.verify_tls
    session.headers["User-Agent"] = USER_AGENT
    auth = feed.auth
    if isinstance(auth, BasicAuth):
        session.auth = requests.auth.HTTPBasicAuth(auth.username, auth.secret())
    elif isinstance(auth, BearerAuth):
        session.auth = _BearerAuth(auth.secret())
    elif isinstance(auth, CertAuth):
        session.cert = (str(auth.cert), str(auth.key)) if auth.key else str(auth.cert)
    return session


def session_for(feed: FeedConfig) -> requests.Session:
    """A new configured session for ``feed``."""
    return configure_session(requests.Session(), feed)


def get_bytes(session: requests.Session, url: str) -> tuple[bytes, requests.Response]:
    """GET ``url``; raise on any non-2xx answer (after the session's retries)."""
    response = session.get(url)
    response.raise_for_status()
    return response.content, response


def describe_failure(exc: BaseException, url: str) -> FeedFailure:
    """Name the failure: unreachable, timeout, wrong credentials, HTTP error, malformed..."""
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        where = exc.response.url or url
        if code in (401, 403):
            return FeedFailure(
                "credentials", f"credentials rejected (HTTP {code}) by {where}", transient=True
            )
        return FeedFailure("http", f"HTTP {code} {exc.response.reason or ''} from {where}".strip())
    if isinstance(exc, requests.exceptions.RetryError):
        return FeedFailure("http", f"server kept failing after retries at {url}: {_root(exc)}")
    if isinstance(exc, requests.exceptions.SSLError):
        root = _root(exc)
        hint = (
            "the server's certificate is not trusted (set ca_bundle)"
            if "CERTIFICATE_VERIFY_FAILED" in root
            else "the server may require a client certificate (auth type cert)"
        )
        return FeedFailure("unreachable", f"TLS failure talking to {url}: {hint}; {root}")
    if isinstance(exc, requests.exceptions.Timeout):
        return FeedFailure("timeout", f"timed out talking to {url}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return FeedFailure("unreachable", f"cannot reach {url}: {_root(exc)}")
    if isinstance(exc, MalformedFeed):
        return FeedFailure("malformed", f"malformed data from {url}: {exc}")
    if isinstance(exc, IngestUnavailable | StoreUnavailable):
        return FeedFailure("ingest", f"ingest could not accept the data: {exc}")
    if isinstance(exc, ConfigurationError):
        return FeedFailure("config", str(exc), transient=False)
    return FeedFailure("error", f"{type(exc).__name__}: {exc}")


def _root(exc: BaseException) -> str:
    """The innermost cause's message, which is the one that says what went wrong."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    text = str(seen)
    return text[:200]
