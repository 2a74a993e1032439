"""What the alert engine does with the re-score's threshold crossings (embedded backends)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import names
from core.alerts import resolve
from correlate.alerter import AlertEngine
from correlate.rules import load_ruleset
from records.alerts import AlertBook
from tests.e2e import test_rescore
from tests.e2e.test_rescore import IP, Flow, reported
from threatbay.bootstrap import rescorer_for

flow = test_rescore.flow
patience = test_rescore.patience

DEDUP = f"indicator|{IP}"


def engine_for(f: Flow) -> tuple[AlertBook, AlertEngine]:
    book = AlertBook(f.services.store, f.services.bus, f.services.clock, f.services.sharing)
    return book, AlertEngine(book, load_ruleset())


def test_a_decay_crossing_shows_the_decayed_score_on_the_open_alert(flow: Flow) -> None:
    book, engine = engine_for(flow)
    changes = flow.services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)
    reported(flow)
    engine.drain(changes)
    opened = book.current([DEDUP])[DEDUP]
    assert opened is not None and opened.doc["level"] == "ORANGE"  # 98.1, HK + GD
    assert opened.doc["indicators"][0]["score"] == pytest.approx(98.1)

    flow.clock.advance(timedelta(days=1))
    assert (
        rescorer_for(flow.services).run_pass().crossings == 2
    )  # IP 98.1 -> 88.6, domain 95 -> 88.7
    engine.drain(changes)
    alert = book.current([DEDUP])[DEDUP]
    assert alert is not None and alert.doc["status"] == "open" and alert.doc["level"] == "ORANGE"
    # 98.1 × (1 − (1/47)^(1/1.65))
    assert alert.doc["indicators"][0]["score"] == pytest.approx(88.59, abs=0.01)


def test_a_decay_crossing_never_reopens_a_resolved_alert(flow: Flow) -> None:
    book, engine = engine_for(flow)
    changes = flow.services.bus.consumer(names.TOPIC_CHANGES, names.GROUP_ALERTER)
    reported(flow)
    engine.drain(changes)
    opened = book.current([DEDUP])[DEDUP]
    assert opened is not None
    book.transact(
        opened.doc["id"], lambda a: resolve(a, "hk-govcert", "HK", flow.clock.now(), "blocked")
    )

    flow.clock.advance(timedelta(days=1))
    assert rescorer_for(flow.services).run_pass().crossings == 2
    engine.drain(changes)
    latest = book.current([DEDUP])[DEDUP]
    assert latest is not None
    assert (latest.doc["id"], latest.doc["status"]) == (opened.doc["id"], "resolved")
