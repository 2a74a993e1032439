"""The API's TLS under uvicorn: context, client certificates in the scope, SIGHUP.

- ``server_context``: TLS 1.2 or newer only, the server certificate and key from
  ``THREATBAY_TLS__CERT_FILE`` / ``__KEY_FILE``, and, when jurisdictions' client
  CAs are configured, client certificates requested (optional: Basic and Bearer
  still work) and verified against all of them; ``api/client_certs.py`` then
  decides which jurisdiction issued one.
- ``ClientCertProtocol``: uvicorn's h11 protocol that puts the peer's
  certificate into every request's scope as the ASGI TLS extension
  (``scope["extensions"]["tls"]["client_cert_chain"]``): uvicorn 0.55 has no
  such extension, and the certificate is only on the connection's SSL object.
- ``reload_on_sighup``: SIGHUP loads the certificate and key files again into
  the live context (new connections get them; open ones keep theirs), and the
  jurisdictions' CA files into the app's trust; a restart does the same.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from types import FrameType
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from core.settings import TlsSettings
from threatbay.security import read_secret

log = logging.getLogger("threatbay.tls")

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
#: ASGI TLS extension: tls_version as the TLS protocol's two-byte code.
_WIRE_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def load_identity(context: ssl.SSLContext, tls: TlsSettings) -> None:
    """(Re)load the server certificate chain and key into ``context``."""
    assert tls.cert_file is not None
    password = read_secret(tls.key_password_file) if tls.key_password_file else None
    context.load_cert_chain(tls.cert_file, tls.key_file, password=password)


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The API's server context: TLS 1.2+, our certificate, the jurisdictions' client CAs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    load_identity(context, tls)
    if tls.client_ca:
        for path in tls.client_ca.values():
            context.load_verify_locations(cafile=str(path))
        # Optional: an agency may still use its key over TLS; an invalid certificate, though,
        # fails the handshake (expired, unknown CA), and the app checks the rest per request.
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI TLS extension of one connection (the peer's leaf certificate only)."""
    der = ssl_object.getpeercert(binary_form=True)
    version = ssl_object.version() or ""
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _WIRE_VERSIONS.get(version),
        "cipher_suite": None,
        "cipher_name": cipher[0] if cipher else None,
    }


class _WithTls:
    """Wraps the app for one connection, adding that connection's TLS extension to scopes."""

    def __init__(self, app: Any, extension: dict[str, Any]) -> None:
        self.app = app
        self.extension = extension

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.extension}
        await self.app(scope, receive, send)


class ClientCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, with the peer certificate in every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _WithTls(self.app, tls_extension(ssl_object))


def reload_on_sighup(reload: Callable[[], None]) -> None:
    """Run ``reload`` on SIGHUP (main thread only); a failed reload keeps the old files."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        try:
            reload()
        except Exception as exc:  # a bad new file must not take the API down
            log.error("SIGHUP: TLS files not reloaded, the previous ones stay in use: %s", exc)
        else:
            log.warning("SIGHUP: TLS certificate, key and client CAs reloaded")

    signal.signal(signal.SIGHUP, handler)
