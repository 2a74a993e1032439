"""Opaque paging tokens, encoded and checked in one place (STYLE.md 15).

A cursor is base64url (unpadded) of JSON: for the analyst API the store
cursor of the last hit (its sort values then its key); TAXII's ``next`` wraps
more (api/taxii/pagination.py) in the same codec. Anything a client sends back
that is not a token of the expected shape is ``BadCursor`` (HTTP 400), never a
server error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson

from core.errors import BadCursor

#: Longest token accepted (a cursor of a few sort values and a key is far shorter).
MAX_TOKEN_CHARS = 4096


def encode_token(payload: Any) -> str:
    """base64url of the JSON of ``payload``, without padding."""
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_token(text: str) -> Any:
    """The JSON value inside a token; ``BadCursor`` when it is not one."""
    if len(text) > MAX_TOKEN_CHARS:
        raise BadCursor("cursor is too long to be one this server issued")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise BadCursor("cursor is not valid") from exc


def encode_cursor(values: Sequence[Any]) -> str:
    """The token of a store cursor (``Hit.cursor``)."""
    return encode_token(list(values))


def decode_cursor(text: str, arity: int | None = None) -> tuple[Any, ...]:
    """The store cursor inside ``text``: a list of ``arity`` scalars (sort values, then a key)."""
    values = decode_token(text)
    if not isinstance(values, list) or not values:
        raise BadCursor("cursor is not valid")
    if arity is not None and len(values) != arity:
        raise BadCursor("cursor does not belong to this listing")
    if not all(v is None or isinstance(v, str | int | float) for v in values):
        raise BadCursor("cursor is not valid")
    if not isinstance(values[-1], str):
        raise BadCursor("cursor is not valid")
    return tuple(values)
