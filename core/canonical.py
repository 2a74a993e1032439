"""Canonical observable values and refanging (DOMAIN.md "Sameness").

Every function here is total: any input string gives a best-effort canonical form,
nothing raises. Choices beyond the letter of DOMAIN.md, written down once:

- IP / CIDR: parsed with ``ipaddress.ip_network(strict=False)``; a full-length prefix
  (``/32``, ``/128``) becomes the bare address, any other CIDR becomes its *network*
  (host bits are cleared: ``10.1.2.3/24`` -> ``10.1.2.0/24``). IPv6 is compressed and
  lower case; an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is the IPv4 address.
  Unparseable text is only trimmed and lower-cased.
- Domain: refanged, trimmed, trailing dots removed, ideographic full stops read as
  dots, then each label IDNA-encoded (UTS 46, non-transitional); a label that is not
  valid IDNA (``_dmarc``, ``*``, a bad ``xn--`` label) is only lower-cased.
- URL: refanged and trimmed; a value with no ``scheme://`` is read as ``http://``
  (feeds often omit it); scheme and host lower case, host IDNA / IP-canonical,
  default port (http 80, https 443, ftp 21) removed, empty path -> ``/``, fragment
  dropped, percent-escapes upper-cased, escapes of unreserved characters decoded,
  characters outside RFC 3986 (spaces, non-ASCII) percent-encoded as UTF-8, a stray
  ``%`` encoded as ``%25``; in a host name ``:/?#@`` are escaped too. Path and query
  case are kept; userinfo is kept as is.
- Hashes: the algorithm is unified in the *path* (``canonical_path``); the value is
  lower-cased when it is hex. ssdeep is case-sensitive base64 and kept; TLSH is
  upper-cased (its usual ``T1...`` spelling).
- Email address: refanged, trimmed, lower case, domain part IDNA-encoded.

Cross-type keying rules (DOMAIN.md "Known real-world traps"), applied by
core/observables.py; the data they need is here:

- ``ADDRESS_PATHS``: where an IP literal keys as the address itself whatever
  type the producer wrote (``[domain-name:value = '188.93.127.34']`` is the
  address 188.93.127.34).
- ``url_address``: a URL whose host is an IP literal also names that address
  (looking the address up finds the URL's record too).
- ``typed_reference``: MISP-STIX writes an address as
  ``[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = 'a.b.c.d']``;
  a type assertion that agrees with the value adds nothing, so the AND is the
  one comparison ``network-traffic:dst_ref.value = 'a.b.c.d'``.
"""

from __future__ import annotations

import ipaddress
import re

import idna

# --- refang / defang ----------------------------------------------------------------

_SCHEME_DEFANGED = re.compile(
    r"(?<![A-Za-z0-9])(h)(xx)(ps?)(?=\[:\]//|\[://\]|://)|(?<![A-Za-z0-9])(f)(x)(p)(?=\[:\]//|\[://\]|://)",
    re.IGNORECASE,
)
_COLON_SLASHES = re.compile(r"\[://\]|\[:\]//")


def _bracketed(inner: str) -> re.Pattern[str]:
    """``[x]``, ``(x)`` or ``{x}`` with optional blanks inside and around."""
    body = rf"[ \t]*(?:{inner})[ \t]*"
    return re.compile(rf"[ \t]*(?:\[{body}\]|\({body}\)|\{{{body}\}})[ \t]*", re.IGNORECASE)


_DOT = _bracketed(r"\.|dot")
_AT = _bracketed(r"@|at")
_COLON = re.compile(r"\[:\]")
_SCHEME_FANGED = re.compile(r"(?<![A-Za-z0-9])(h)(tt)(ps?)(?=://)|(?<![A-Za-z0-9])(f)(t)(p)(?=://)",
                            re.IGNORECASE)  # fmt: skip


def _scheme_letters(match: re.Match[str], table: dict[str, str]) -> str:
    """Swap the defanged letters (x <-> t); refanged letters take the case of the first one."""
    groups = [g for g in match.groups() if g is not None]
    head, middle, tail = groups
    if table is _TO_T:
        return head + ("t" if head.islower() else "T") * len(middle) + tail
    return head + "".join(table[c] for c in middle) + tail


_TO_T = {"x": "t", "X": "T"}
_TO_X = {"t": "x", "T": "X"}


def refang(text: str) -> str:
    """Undo common defanging (DOMAIN.md "Sameness": hxxp, [.], (.), [dot], [@], [:]).

    Only bracketed forms and ``hxxp``/``fxp`` directly before ``://`` are touched,
    so ordinary prose, file names and paths are left alone. Blanks around a
    bracketed dot or at (``evil [.] com``) go with it.
    """
    if not isinstance(text, str):
        return ""
    if "x" not in text and "X" not in text and "[" not in text and "(" not in text \
            and "{" not in text:  # fmt: skip
        return text
    text = _SCHEME_DEFANGED.sub(lambda m: _scheme_letters(m, _TO_T), text)
    text = _COLON_SLASHES.sub("://", text)
    text = _DOT.sub(".", text)
    text = _AT.sub("@", text)
    return _COLON.sub(":", text)


def defang(text: str) -> str:
    """Defang an observable value for display: ``http://a.b`` -> ``hxxp://a[.]b``."""
    text = _SCHEME_FANGED.sub(lambda m: _scheme_letters(m, _TO_X), text)
    return text.replace(".", "[.]").replace("@", "[@]")


# --- paths --------------------------------------------------------------------------

_HASH_ALGORITHMS = {
    "md5": "md5",
    "md6": "md6",
    "sha1": "sha-1",
    "sha224": "sha-224",
    "sha256": "sha-256",
    "sha384": "sha-384",
    "sha512": "sha-512",
    "sha3224": "sha3-224",
    "sha3256": "sha3-256",
    "sha3384": "sha3-384",
    "sha3512": "sha3-512",
    "ripemd160": "ripemd-160",
    "whirlpool": "whirlpool",
    "ssdeep": "ssdeep",
    "tlsh": "tlsh",
}
_PATH_TOKEN = re.compile(r"\.?(?:'((?:[^'\\]|\\['\\])*)'|\[([^\]]*)\]|([^.\['\s]+))")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def hash_algorithm(name: str) -> str:
    """Canonical hash algorithm name: ``SHA256``, ``'SHA-256'``, ``sha_256`` -> ``sha-256``."""
    key = re.sub(r"[-_'\s]", "", name).lower()
    return _HASH_ALGORITHMS.get(key, name.strip().strip("'").lower())


def path_components(path: str) -> list[str]:
    """Split a STIX object path (``hashes.'SHA-256'``, ``to_refs[*].value``) into steps."""
    parts: list[str] = []
    for match in _PATH_TOKEN.finditer(path):
        quoted, index, bare = match.groups()
        if quoted is not None:
            parts.append(re.sub(r"\\(['\\])", r"\1", quoted))
        elif index is not None:
            parts.append(f"[{index.strip()}]")
        elif bare is not None:
            parts.append(bare)
    return parts


def render_path(parts: list[str] | tuple[str, ...]) -> str:
    """Write path steps back as text, quoting a step only when it is not an identifier."""
    out: list[str] = []
    for part in parts:
        if part.startswith("[") and part.endswith("]"):
            out.append(part)
            continue
        step = part if _IDENT.match(part) else "'" + part.replace("\\", "\\\\").replace(
            "'", "\\'") + "'"  # fmt: skip
        out.append(step if not out else "." + step)
    return "".join(out)


def is_hash_path(path: str) -> bool:
    """True when the path addresses a hash value (a ``hashes`` step followed by one more)."""
    parts = path_components(path)
    return len(parts) >= 2 and parts[-2] == "hashes"


def canonical_path(path: str) -> str:
    """Key form of an object path; hash algorithm unified (``hashes.'SHA-256'`` -> sha-256).

    This is the ``path`` part of a canonical key, not STIX syntax: steps are joined
    with dots and never quoted.
    """
    try:
        parts = path_components(path)
        if len(parts) >= 2 and parts[-2] == "hashes":
            parts[-1] = hash_algorithm(parts[-1])
        out = ""
        for part in parts:
            out += part if (not out or part.startswith("[")) else "." + part
        return out
    except Exception:  # total by contract
        return path.strip()


# --- values -------------------------------------------------------------------------


def _network_text(text: str) -> str | None:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if network.prefixlen == network.max_prefixlen:
        address = network.network_address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)  # ::ffff:a.b.c.d is the IPv4 address
        return str(address)
    return str(network)


def canonical_ip(value: str) -> str:
    """IPv4/IPv6 compressed; /32 and /128 dropped; CIDR as its network (host bits cleared)."""
    text = refang(value).strip()
    canonical = _network_text(text)
    return canonical if canonical is not None else text.lower()


def ip_or_none(value: str) -> str | None:
    """Canonical address/CIDR if ``value`` is an IP or CIDR, else None."""
    text = refang(value).strip()
    if not text or not (text[0].isdigit() or text[0] in ":abcdefABCDEF"):
        return None
    return _network_text(text)


_IDEOGRAPHIC_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _label(label: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return label.lower()


def _trim_domain(text: str) -> str:
    while True:
        trimmed = text.strip().translate(_IDEOGRAPHIC_DOTS).rstrip(".")
        if trimmed == text:
            return text
        text = trimmed


def canonical_domain(value: str) -> str:
    """Domain: lower case, trailing dot removed, IDNA (punycode) per label (DOMAIN.md)."""
    text = _trim_domain(refang(value))
    if text.isascii():
        return text.lower()
    for _ in range(4):  # UTS 46 mapping can expose new blanks or dots; stop at the fixpoint
        mapped = _trim_domain(".".join(_label(label) for label in text.split(".")))
        if mapped == text:
            break
        text = mapped
    return text


def canonical_email(value: str) -> str:
    """Email address: lower case; the domain part IDNA-encoded."""
    text = refang(value).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return text.lower()
    return local.lower() + "@" + canonical_domain(domain)


_DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21", "ws": "80", "wss": "443"}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ALLOWED = _UNRESERVED | frozenset(":/?#[]@!$&'()*+,;=")
# a reg-name host may not hold ':', '/', '?', '#', '@': escaping them keeps a rerun stable
_HOST_ALLOWED = _UNRESERVED | frozenset("[]!$&'()*+,;=")
_HEX = frozenset("0123456789abcdefABCDEF")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_OPAQUE_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?!\d+(?:[/?#]|\Z))")


def normalise_percent(text: str, allowed: frozenset[str] = _ALLOWED) -> str:
    """Upper-case escapes, decode escaped unreserved chars, escape what RFC 3986 disallows."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            decoded = chr(int(text[i + 1 : i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
            i += 3
            continue
        if char in allowed:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)


def _host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            return "[" + str(ipaddress.IPv6Address(host[1:-1])) + "]"
        except ValueError:
            return host.lower()
    address = ip_or_none(host) if host[:1].isdigit() else None
    if address is not None and "/" not in address:
        return address
    return canonical_domain(host) if host else host


def canonical_url(value: str) -> str:
    """URL canonical form (DOMAIN.md "Sameness"); see the module docstring for each step."""
    text = refang(value).strip()
    match = _SCHEME.match(text)
    if match is None:
        bare_ip = ip_or_none(text)
        if bare_ip is not None and "/" not in bare_ip:
            return "http://" + (f"[{bare_ip}]" if ":" in bare_ip else bare_ip) + "/"
        if not text or _OPAQUE_SCHEME.match(text):
            # mailto:, urn:, data: ... have no authority to normalise
            return text
        text = "http://" + text
        match = _SCHEME.match(text)
        if match is None:  # pragma: no cover - we just wrote the scheme
            return text
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    rest = rest.split("#", 1)[0]
    cut = len(rest)
    for sep in "/?":
        pos = rest.find(sep)
        if pos != -1:
            cut = min(cut, pos)
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, hostport = authority.rpartition("@")
    host, port = hostport, ""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close != -1:
            host, after = hostport[: close + 1], hostport[close + 1 :]
            if after.startswith(":"):
                port = after[1:]
    else:
        head, colon, maybe_port = hostport.rpartition(":")
        if colon and (maybe_port.isdigit() or maybe_port == ""):
            host, port = head, maybe_port
    if port.isdigit() and port.isascii():
        port = str(int(port))
    if port == _DEFAULT_PORTS.get(scheme) or port == "":
        port = ""
    host = _host(host)
    path, qmark, query = tail.partition("?")
    path = normalise_percent(path) or "/"
    # hosts are case-insensitive: lower-case after escaping so a rerun changes nothing
    host_allowed = _ALLOWED if host.startswith("[") else _HOST_ALLOWED
    netloc = (normalise_percent(userinfo) + "@" if at else "") + normalise_percent(
        host, host_allowed
    ).lower()
    if port:
        netloc += ":" + port
    result = f"{scheme}://{netloc}{path}"
    if qmark and query:
        result += "?" + normalise_percent(query)
    return result


def _is_email_path(observable_type: str, path: str) -> bool:
    if observable_type == "email-addr":
        return True
    return observable_type == "email-message" and path.endswith(".value")


def canonical_value(observable_type: str, path: str, value: str) -> str:
    """Canonical form of one observable value (DOMAIN.md "Sameness"); never raises."""
    try:
        return _canonical_value(observable_type.strip().lower(), path.strip(), value)
    except Exception:  # total by contract: a value we cannot read is kept, trimmed
        return value.strip() if isinstance(value, str) else ""


def _canonical_value(observable_type: str, path: str, value: str) -> str:
    if is_hash_path(path):
        algorithm = hash_algorithm(path_components(path)[-1])
        text = value.strip()
        if algorithm == "tlsh":
            return text.upper()
        if _HEX_DIGITS.fullmatch(text):
            return text.lower()
        return text
    if observable_type in ("ipv4-addr", "ipv6-addr"):
        return canonical_ip(value)
    if observable_type == "domain-name":
        return canonical_domain(value)
    if observable_type == "url":
        return canonical_url(value)
    if _is_email_path(observable_type, path):
        return canonical_email(value)
    if observable_type == "network-traffic" and path.endswith("_ref.value"):
        address = ip_or_none(value)
        return address if address is not None else canonical_domain(value)
    if observable_type == "mac-addr":
        return value.strip().lower().replace("-", ":")
    return value.strip()


# --- cross-type keying ------------------------------------------------------------------

#: (object type, canonical path) whose IP literal keys as ``ipv4-addr`` / ``ipv6-addr``.
ADDRESS_PATHS = frozenset(
    {
        ("ipv4-addr", "value"),
        ("ipv6-addr", "value"),
        ("network-traffic", "dst_ref.value"),
        ("network-traffic", "src_ref.value"),
        ("domain-name", "value"),
    }
)


def address_type(address: str) -> str:
    """``ipv4-addr`` or ``ipv6-addr`` for a canonical address or network."""
    return "ipv6-addr" if ":" in address else "ipv4-addr"


def url_address(url: str) -> str | None:
    """The address a canonical URL's host is (``http://[2001:db8::1]:8080/x`` -> 2001:db8::1)."""
    scheme_end = url.find("://")
    if scheme_end == -1:
        return None
    authority = url[scheme_end + 3 :].split("/", 1)[0].split("?", 1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if not host[:1].isdigit() and not (host[:1] in "abcdefABCDEF" and ":" in host):
        return None
    address = ip_or_none(host)
    return address if address is not None and "/" not in address else None


def typed_reference(comparisons: list[tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """``X:R.type = 'T' AND X:R.value = 'V'`` as ``(X, "R.value", V)`` when T agrees with V.

    ``comparisons`` are (object type, canonical path, value) AND-ed in one
    observation. T agrees when V is an address of that version (``ipv4-addr`` /
    ``ipv6-addr``) or V is a name and T is ``domain-name``; anything else
    (another type, a third comparison such as a port) keeps the pattern whole.
    """
    if len(comparisons) != 2:
        return None
    (t1, p1, v1), (t2, p2, v2) = sorted(comparisons, key=lambda c: c[1])
    ref = p1.removesuffix(".type")
    if t1.lower() != t2.lower() or p1 != ref + ".type" or p2 != ref + ".value" or not ref:
        return None
    address = ip_or_none(v2)
    written = v1.strip().lower()
    if address is not None:
        agrees = written == address_type(address)
    else:
        agrees = written == "domain-name"
    return (t2, p2, v2) if agrees else None
