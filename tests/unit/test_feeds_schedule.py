"""When a feed is pulled next: its interval, or a capped exponential backoff after failures."""

from __future__ import annotations

from feeds.config import FeedConfig
from feeds.http import FeedFailure
from feeds.runner import PullReport, retry_delay


def _feed(**extra: object) -> FeedConfig:
    entry = {"name": "f", "kind": "text", "url": "http://127.0.0.1/x", "jurisdiction": "GD"}
    return FeedConfig.model_validate(entry | extra)


def test_a_healthy_feed_waits_its_interval_and_a_failing_one_backs_off_to_the_cap() -> None:
    feed = _feed(interval="6h", backoff_base_s=30, backoff_max_s=600)
    assert retry_delay(feed, 0) == 6 * 3600
    assert [retry_delay(feed, n) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]
    assert retry_delay(feed, 50) == 600


def test_the_summary_line_names_the_failure_and_the_counts() -> None:
    report = PullReport(feed="f", fetched=10, accepted=8, rejected=2, batches=1)
    assert report.summary() == "feed f: ok, fetched 10, accepted 8, rejected 2 in 1 batch"
    report.failure = FeedFailure("credentials", "credentials rejected (HTTP 401) by http://x/")
    assert report.summary().startswith("feed f: FAILED (credentials) credentials rejected")


def test_a_taxii_cursor_remembers_ties_and_asks_from_just_before_them() -> None:
    from feeds.taxii import TaxiiCursor

    bare = TaxiiCursor.parse("2026-02-01T00:02:00.000000Z")
    assert bare.query() == "2026-02-01T00:02:00.000000Z" and bare.seen == ()
    tied = TaxiiCursor("2026-02-01T00:02:00.000000Z", ("indicator--a|2026-01-01T00:00:00Z",))
    again = TaxiiCursor.parse(tied.dump())
    assert again == tied
    assert again.query() == "2026-02-01T00:01:59.999999Z"
    assert TaxiiCursor.parse(None) == TaxiiCursor()
