"""Where a webhook may point (DOMAIN.md "Parties", README "Webhooks").

A webhook makes ThreatBay's own network send requests: pointed at loopback,
link-local (cloud metadata at 169.254.169.254), private or otherwise
non-public addresses it would be a server-side request forgery. So a URL is
refused unless

- its scheme is https (http only when ``require_https`` is off: not in
  production), it has a host and no user-info;
- every address its host resolves to is a public unicast address, or lies in
  a network, or the host is a name, that the operator allow-listed
  (``THREATBAY_WEBHOOKS__ALLOWED_TARGETS``: CIDRs and host names).

Resolution is passed in (``resolve``), so this stays pure; the caller resolves
with the system resolver, and the sender checks again before each delivery
(a name may resolve elsewhere later).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

Resolve = Callable[[str], list[str]]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return address.is_global and not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _allowed(address: Address, host: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            network: Network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if entry == host:
                return True
            continue
        if address.version == network.version and address in network:
            return True
    return False


def webhook_url_error(
    url: str, *, require_https: bool, allowed: Iterable[str], resolve: Resolve
) -> str | None:
    """Why ``url`` may not be a webhook target (module docstring); None when it may."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("https", "http"):
        return "a webhook URL must be https://"
    if parts.scheme == "http" and require_https:
        return "a webhook URL must be https:// in production"
    if not host:
        return "a webhook URL needs a host"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL may not carry user-info"
    allowed = list(allowed)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host)]
        except (OSError, ValueError) as exc:
            return f"the host {host} does not resolve ({exc})"
        if not addresses:
            return f"the host {host} does not resolve"
    for address in addresses:
        if not _public(address) and not _allowed(address, host, allowed):
            return (
                f"{host} resolves to {address}, a loopback, link-local, private or reserved "
                "address; allow-list it in THREATBAY_WEBHOOKS__ALLOWED_TARGETS to use it"
            )
    return None
