"""TAXII 2.1 media types and content negotiation (TAXII 2.1 section 1.6.8)."""

from __future__ import annotations

TAXII_21 = "application/taxii+json;version=2.1"
STIX_21 = "application/stix+json;version=2.1"


def _parse(item: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in item.split(";")]
    params: dict[str, str] = {}
    for p in parts[1:]:
        name, _, value = p.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return parts[0].lower(), params


def _is_taxii21(mtype: str, params: dict[str, str]) -> bool:
    # An unversioned application/taxii+json means the latest version, 2.1 (section 1.6.8.1).
    return mtype == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def accepts_taxii21(accept: str | None) -> bool:
    """True when an Accept header allows ``application/taxii+json;version=2.1``.

    No Accept header, ``*/*`` and ``application/*`` allow it (RFC 9110 12.5.1);
    ``q=0`` excludes a range; another TAXII version or another type does not allow it.
    """
    if accept is None or not accept.strip():
        return True
    for item in accept.split(","):
        if not item.strip():
            continue
        mtype, params = _parse(item)
        try:
            if float(params.get("q", "1")) <= 0:
                continue
        except ValueError:
            continue
        if mtype in ("*/*", "application/*") or _is_taxii21(mtype, params):
            return True
    return False


def is_taxii21_content(content_type: str | None) -> bool:
    """True when a request body is declared as TAXII 2.1 (section 1.6.8)."""
    if not content_type:
        return False
    mtype, params = _parse(content_type)
    return _is_taxii21(mtype, params)
