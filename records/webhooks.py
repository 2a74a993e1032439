"""Agencies' webhook endpoints and their signing secrets (index ``threatbay-webhooks``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import names
from core.access import Agency
from core.errors import StoreUnavailable
from core.ports import Put, Query, Store, Term
from core.webhook_signing import new_secret


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    agency_id: str
    jurisdiction: str
    url: str
    secret: str
    active: bool = True


class WebhookDirectory:
    """One endpoint per agency; the secret is shown to the agency once, at registration."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, agency: Agency, url: str) -> str:
        """Set ``agency``'s endpoint with a fresh secret; returns the secret (shown once)."""
        secret = new_secret()
        doc = {
            "agency_id": agency.id,
            "jurisdiction": agency.jurisdiction,
            "url": url,
            "secret": secret,
            "active": True,
        }
        [result] = self.store.put_many(
            names.INDEX_WEBHOOKS, [Put(key=agency.id, doc=doc, blind=True)]
        )
        if not result.ok:
            raise StoreUnavailable("store refused the webhook registration")
        return secret

    def get(self, agency_id: str) -> WebhookEndpoint | None:
        stored = self.store.get(names.INDEX_WEBHOOKS, agency_id)
        if stored is None:
            return None
        d = stored.doc
        return WebhookEndpoint(
            d["agency_id"], d["jurisdiction"], d["url"], d["secret"], bool(d.get("active", True))
        )

    def in_jurisdictions(self, jurisdictions: Sequence[str]) -> list[WebhookEndpoint]:
        page = self.store.search(
            names.INDEX_WEBHOOKS,
            Query(
                filters=(Term("jurisdiction", tuple(jurisdictions)), Term("active", (True,))),
                limit=1000,
            ),
        )
        return [
            WebhookEndpoint(
                h.doc["agency_id"], h.doc["jurisdiction"], h.doc["url"], h.doc["secret"]
            )
            for h in page.hits
        ]
