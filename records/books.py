"""The record books of one process, built once per ``Services`` (STYLE.md 15).

One ``AlertBook`` (its event sequence is per process), one ``AuditLog`` (its
flusher is per process), one ``AgencyRegistry``... Every stage and the API
get them from ``records_of(services)``, so nobody builds a second copy.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from core.services import Services
from records.agencies import AgencyRegistry
from records.alerts import AlertBook
from records.allowlists import AllowListBook
from records.audit import AuditLog
from records.cases import CaseBook
from records.changes import ChangeAnnouncer
from records.date_added import book_of
from records.deliveries import Deliveries
from records.feed_cursors import FeedCursors
from records.outbox import Outbox
from records.webhooks import WebhookDirectory


@dataclass(frozen=True, eq=False)
class Records:
    """Typed access to every named index of the store, for one process."""

    agencies: AgencyRegistry
    alerts: AlertBook
    cases: CaseBook
    audit: AuditLog
    outbox: Outbox
    changes: ChangeAnnouncer
    webhooks: WebhookDirectory
    deliveries: Deliveries
    feed_cursors: FeedCursors
    allowlists: AllowListBook

    def close(self) -> None:
        self.audit.close()


_BUILT: weakref.WeakKeyDictionary[Services, Records] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def records_of(services: Services) -> Records:
    """The record books over ``services``, built on first use and shared afterwards."""
    with _LOCK:
        found = _BUILT.get(services)
        if found is None:
            s = services.settings
            book_of(services.store, services.clock, s.taxii, s.writes)  # date_added floors
            outbox = Outbox(services.store, services.clock, s.outbox)
            found = _BUILT[services] = Records(
                agencies=AgencyRegistry(services.store, services.clock),
                alerts=AlertBook(
                    services.store,
                    services.bus,
                    services.clock,
                    services.sharing,
                    writes=s.writes,
                    outbox=outbox,
                ),
                cases=CaseBook(
                    services.store, services.bus, services.clock, writes=s.writes, outbox=outbox
                ),
                audit=AuditLog(services.store, services.clock),
                outbox=outbox,
                changes=ChangeAnnouncer(services.store, services.bus, outbox),
                webhooks=WebhookDirectory(services.store),
                deliveries=Deliveries(services.store, services.clock),
                feed_cursors=FeedCursors(services.store, services.clock),
                allowlists=AllowListBook(services.store, services.clock),
            )
        return found
