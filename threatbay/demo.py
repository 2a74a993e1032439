"""``threatbay demo``: the whole mechanism in one command, in under a minute.

The platform runs in this process exactly as ``threatbay serve`` runs it
(uvicorn in a thread, the correlator and the alert loops of
``threatbay/stages.py``) on whatever backends the settings name: the embedded
SQLite pair in a fresh temporary directory by default, Kafka + Elasticsearch
when ``THREATBAY_BUS_URL`` / ``THREATBAY_STORE_URL`` point there (under a
fresh namespace so reruns never collide).

Three simulated agencies (GD, HK, MO; ``threatbay/demo_data.py``) push
overlapping intelligence through real TAXII 2.1 calls (taxii2-client, HTTP
Basic with key id and secret). The demo then shows, from the API and from a
local webhook receiver that verifies every signature
(``core/webhook_signing.py``): the merged, explained records; the joint
alert; the signed notifications to each concerned jurisdiction; one
acknowledgement; one jurisdiction going overdue and being re-notified.

Overdue without waiting an hour: the platform runs on ``DemoClock`` (real
time plus an offset). The demo moves the offset forward by the ORANGE
acknowledgement deadline plus one minute and then calls
``correlate.alerter.escalation_tick`` itself, on the same store and bus the
escalation loop uses (that loop ticks every 15 s; calling the tick directly
makes the step deterministic, and the loop's own next tick finds nothing left
to do because escalation sets a fresh deadline).
"""

from __future__ import annotations

import contextlib
import io
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core import names
from core.access import Agency, bearer_token
from core.alerts import Level
from core.clock import format_timestamp
from core.errors import ThreatBayError
from core.ports import Query, Term
from core.settings import Settings
from core.webhook_signing import (
    HEADER_DELIVERY,
    HEADER_EVENT,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ReplayGuard,
    verify,
)
from records.agencies import AgencyExists
from records.books import records_of
from records.deliveries import PENDING
from threatbay import demo_data
from threatbay.bootstrap import Services, build

TAXII_MEDIA = "application/taxii+json;version=2.1"
SCENARIO_TIMEOUT_S = 60.0
OVERDUE_STEP = Level.ORANGE.ack_within + timedelta(minutes=1)


class DemoError(ThreatBayError):
    """The demo cannot run as asked (the message says why and what to do)."""


# ------------------------------------------------------------------ clock


class DemoClock:
    """Real time plus an offset the demo moves forward (``core.clock.Clock``)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    @property
    def offset(self) -> timedelta:
        with self._lock:
            return self._offset


# -------------------------------------------------------------------- bus


def build_services(settings: Settings, clock: DemoClock) -> Services:
    """``bootstrap.build`` on the demo clock (topics and groups carry the run's namespace)."""
    return build(settings, clock)


# --------------------------------------------------------------- receiver


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request as the receiver saw it."""

    agency: str
    event_type: str
    alert_id: str
    level: str
    jurisdictions: tuple[str, ...]
    verified: bool
    reason: str
    delivery_id: str


@dataclass
class WebhookReceiver:
    """A local agency endpoint (``http.server``) that verifies every delivery it gets.

    It shares the platform's ``DemoClock`` so the freshness check agrees with
    the signing time after the demo moves the clock forward.
    """

    clock: DemoClock
    secrets: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """Verify one request (signature, freshness, replay) and record it."""
        agency = path.rstrip("/").rsplit("/", 1)[-1]
        delivery_id = headers.get(HEADER_DELIVERY.lower(), "")
        with self._lock:
            verdict = verify(
                self.secrets.get(agency, ""),
                headers.get(HEADER_TIMESTAMP.lower()),
                body,
                headers.get(HEADER_SIGNATURE.lower()),
                self.clock.now(),
                delivery_id=delivery_id,
                guard=self.guard,
            )
            try:
                payload = orjson.loads(body)
                event, alert = payload.get("event", {}), payload.get("alert", {})
            except orjson.JSONDecodeError:
                event, alert = {}, {}
            self.deliveries.append(
                Delivery(
                    agency=agency,
                    event_type=str(event.get("type") or headers.get(HEADER_EVENT.lower(), "?")),
                    alert_id=str(event.get("alert_id", "")),
                    level=str(alert.get("level") or event.get("level", "")),
                    jurisdictions=tuple(event.get("jurisdictions") or ()),
                    verified=verdict.ok,
                    reason=verdict.reason,
                    delivery_id=delivery_id,
                )
            )
        return 204 if verdict.ok else 401

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                self.send_response(receiver.handle(self.path, headers, body))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="webhooks", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# ---------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class AgencyKey:
    """One simulated agency and the API key the demo made for it."""

    agency: Agency
    key_id: str
    secret: str

    @property
    def bearer(self) -> str:
        return bearer_token(self.key_id, self.secret)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}


@dataclass
class DemoResult:
    """What the demo showed, for the report and for tests."""

    base_url: str = ""
    bus_url: str = ""
    store_url: str = ""
    namespace: str = ""
    keys: dict[str, AgencyKey] = field(default_factory=dict)
    pushed: dict[str, tuple[int, int]] = field(default_factory=dict)
    """agency -> (objects pushed, TAXII success_count)."""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)
    """The headline alert as the overdue jurisdiction's agency sees it after escalation."""
    deliveries: list[Delivery] = field(default_factory=list)
    acknowledged: tuple[str, str] | None = None
    """(jurisdiction, agency) that acknowledged the headline alert."""
    overdue: list[str] = field(default_factory=list)
    renotified: list[Delivery] = field(default_factory=list)
    lookup: dict[str, Any] = field(default_factory=dict)
    red_lookups: dict[str, bool] = field(default_factory=dict)
    """agency -> whether its lookup of the TLP:RED URL found a record."""
    stream_events: list[str] = field(default_factory=list)
    """Event types the SSE stream replays from the start for the overdue agency."""
    clock_offset: timedelta = timedelta(0)
    timings: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------ stack


@dataclass
class DemoStack:
    """The platform in this process: uvicorn in a thread plus the background loops."""

    services: Services
    host: str
    port: int
    loops: Any = None
    server: Any = None
    thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> DemoStack:
        import uvicorn

        from api.app import create_app
        from threatbay.bootstrap import Loops, shared_warninglists, start_alerter, start_correlator

        shared_warninglists()  # a few seconds once; before the loops so they start warm
        self.loops = Loops()
        start_correlator(self.services, self.loops)
        start_alerter(self.services, self.loops)
        # A short graceful timeout: open SSE streams never finish on their own.
        config = uvicorn.Config(
            create_app(self.services),
            host=self.host,
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the API did not start on {self.base_url} (port in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)
        if self.loops is not None:
            self.loops.shutdown()
        self.services.close()


# ----------------------------------------------------------------- helpers


def demo_settings(data_dir: Path | None = None, run: str | None = None) -> Settings:
    """Settings from the environment; a fresh temporary data dir unless ``data_dir`` is given.

    On Kafka / Elasticsearch, a run-specific namespace (unless one is set) so
    reruns never meet the previous run's topics and indices.
    """
    directory = data_dir or Path(tempfile.mkdtemp(prefix="threatbay-demo-"))
    settings = Settings(data_dir=directory)
    external = not (
        settings.bus_url.startswith("sqlite:") and settings.store_url.startswith("sqlite:")
    )
    if external and not settings.namespace:
        settings = settings.model_copy(update={"namespace": f"demo-{run or uuid.uuid4().hex[:8]}-"})
    return settings


def wait_for(what: str, check: Callable[[], Any], deadline: float) -> Any:
    """Poll ``check`` until it returns something truthy; raise after ``deadline``."""
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        time.sleep(0.1)


def register_agencies(services: Services, receiver: WebhookReceiver) -> dict[str, AgencyKey]:
    """The three agencies, an API key each, and a webhook endpoint each on the receiver."""
    registry = records_of(services).agencies
    directory = records_of(services).webhooks
    keys: dict[str, AgencyKey] = {}
    for agency in demo_data.AGENCIES:
        try:
            registry.add_agency(agency)
        except AgencyExists as exc:
            # The scenario's alerts already exist there and would only be updated, not
            # raised and notified again: the demo needs a store of its own.
            raise DemoError(
                f"{services.settings.store_url} (namespace {services.settings.namespace!r}) "
                "already holds a demo run; omit --data-dir (a fresh temporary directory is "
                "used) or give an empty one, or unset THREATBAY_NAMESPACE"
            ) from exc
        cred, secret = registry.add_credential(agency.id, ("publisher", "analyst"))
        keys[agency.id] = AgencyKey(agency, cred.key_id, secret)
        receiver.secrets[agency.id] = directory.register(agency, f"{receiver.url}/hook/{agency.id}")
    services.store.refresh(names.INDEX_WEBHOOKS)
    return keys


def push_over_taxii(base_url: str, key: AgencyKey, objects: list[dict[str, Any]]) -> int:
    """POST through taxii2-client to the agency's inbox and wait for the status; success count."""
    from taxii2client.v21 import ApiRoot, Server

    server = Server(f"{base_url}/taxii2/", user=key.key_id, password=key.secret)
    root: ApiRoot = server.api_roots[0]
    inbox = next(c for c in root.collections if c._raw.get("alias") == f"inbox-{key.agency.id}")
    status = inbox.add_objects(
        {"objects": objects}, wait_for_completion=True, poll_interval=0.2, timeout=30
    )
    return int(status.success_count)


def deliveries_settled(services: Services) -> bool:
    """No webhook delivery is waiting or being sent: the clock may jump.

    A delivery signed just before a jump of the simulated clock would reach the
    receiver after it and be refused as stale (the receiver checks freshness on
    the same clock), so the demo lets deliveries finish first.
    """
    services.store.refresh(names.INDEX_DELIVERIES)
    page = services.store.search(
        names.INDEX_DELIVERIES, Query(filters=(Term("state", (PENDING,)),), limit=1)
    )
    return not page.hits


def _all(services: Services, index: str) -> list[dict[str, Any]]:
    """Records (not their per-reader views) or alerts (the version most readers have)."""
    services.store.refresh(index)
    page = services.store.search(index, Query(limit=1000))
    docs = [hit.doc for hit in page.hits if "view_of" not in hit.doc]
    if index != names.INDEX_ALERTS:
        return docs
    main: dict[str, dict[str, Any]] = {}
    for doc in docs:
        held = main.get(doc["id"])
        if held is None or len(doc.get("reader_tokens") or ()) > len(
            held.get("reader_tokens") or ()
        ):
            main[doc["id"]] = doc
    return list(main.values())


# ---------------------------------------------------------------- scenario


def run_scenario(
    stack: DemoStack, clock: DemoClock, receiver: WebhookReceiver, console: Console
) -> DemoResult:
    """Register, push, and wait for each thing the demo shows (module docstring)."""
    from correlate.alerter import escalation_tick
    from correlate.rules import load_ruleset

    services = stack.services
    result = DemoResult(
        base_url=stack.base_url,
        bus_url=services.settings.bus_url,
        store_url=services.settings.store_url,
        namespace=services.settings.namespace,
    )
    started = time.monotonic()
    deadline = started + SCENARIO_TIMEOUT_S

    def mark(step: str) -> None:
        result.timings[step] = round(time.monotonic() - started, 2)

    result.keys = register_agencies(services, receiver)
    mark("agencies registered")

    for push in demo_data.scenario(clock.now()):
        key = result.keys[push.agency.id]
        accepted = push_over_taxii(stack.base_url, key, push.objects)
        result.pushed[push.agency.id] = (len(push.objects), accepted)
        console.print(
            f"  [bold]{push.agency.id}[/] pushed {len(push.objects)} objects over TAXII 2.1, "
            f"{accepted} accepted: " + "; ".join(push.notes)
        )
    mark("pushed over TAXII")

    def merged() -> dict[str, dict[str, Any]] | None:
        records = {r["key"]: r for r in _all(services, names.INDEX_INDICATORS)}
        domain, ip = records.get(demo_data.DOMAIN_KEY), records.get(demo_data.IP_KEY)
        if not domain or len(domain.get("agencies", [])) < 3:
            return None
        if not ip or not ip.get("sighted"):
            return None
        hashed = records.get(demo_data.HASH_KEY)
        if not hashed or len(hashed.get("agencies", [])) < 2:
            return None
        return records

    result.records = wait_for("the merged records", merged, deadline)
    mark("records merged")

    def alerts_raised() -> list[dict[str, Any]] | None:
        alerts = _all(services, names.INDEX_ALERTS)
        head = [a for a in alerts if demo_data.HEADLINE_KEY in a.get("indicator_keys", [])]
        if not head or head[0]["level"] != demo_data.HEADLINE_LEVEL:
            return None
        domain = [a for a in alerts if demo_data.DOMAIN_KEY in a.get("indicator_keys", [])]
        if not domain or len(domain[0]["jurisdictions"]) < 3:
            return None
        return alerts

    alerts = wait_for("the joint alerts", alerts_raised, deadline)
    headline = next(a for a in alerts if demo_data.HEADLINE_KEY in a["indicator_keys"])
    mark("alerts raised")

    def notified() -> bool:
        got = {
            (d.agency, d.jurisdictions)
            for d in receiver.received()
            if d.verified and d.event_type == "notified" and d.alert_id == headline["id"]
        }
        want = {(a.id, (a.jurisdiction,)) for a in demo_data.AGENCIES}
        want = {w for w in want if w[1][0] in headline["jurisdictions"]}
        return want <= got

    wait_for("the webhook notifications", notified, deadline)
    mark("jurisdictions notified")

    ack = result.keys[demo_data.ACKNOWLEDGING.id]
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        response = http.post(
            f"/api/v1/alerts/{headline['id']}/acknowledge",
            headers=ack.headers,
            json={"note": "Blocked at the perimeter; hunting in utility-operator logs."},
        )
        response.raise_for_status()
        result.acknowledged = (ack.agency.jurisdiction, ack.agency.id)
        mark("acknowledged")

        wait_for("the deliveries in flight", lambda: deliveries_settled(services), deadline)
        clock.advance(OVERDUE_STEP)
        result.clock_offset = clock.offset
        book = records_of(services).alerts
        escalation_tick(
            book, clock.now(), load_ruleset(services.settings.alert_rules_file).idle_expiry
        )

        def renotified() -> list[Delivery]:
            return [
                d
                for d in receiver.received()
                if d.verified and d.event_type == "renotified" and d.alert_id == headline["id"]
            ]

        result.renotified = wait_for("the re-notification", renotified, deadline)
        mark("overdue and re-notified")

        late = result.keys[
            next(
                a.id for a in demo_data.AGENCIES if a.jurisdiction == demo_data.OVERDUE_JURISDICTION
            )
        ]
        result.headline = http.get(f"/api/v1/alerts/{headline['id']}", headers=late.headers).json()
        result.overdue = list(result.headline.get("overdue_jurisdictions", []))
        result.alerts = sorted(
            _all(services, names.INDEX_ALERTS), key=lambda a: -int(a.get("level_rank", 0))
        )
        hk = result.keys[demo_data.HK_HKCERT.id]
        result.lookup = http.get(
            "/api/v1/lookup", headers=hk.headers, params={"value": demo_data.DEFANGED_LOOKUP}
        ).json()
        for agency_id, key in result.keys.items():
            found = http.get(
                "/api/v1/lookup", headers=key.headers, params={"value": demo_data.RED_URL}
            ).json()
            result.red_lookups[agency_id] = bool(found.get("found"))
        stream = http.get(
            "/api/v1/stream",
            headers=late.headers,
            params={"last_event_id": "0", "max_seconds": "1"},
        )
        result.stream_events = [
            line.removeprefix("event: ")
            for line in stream.text.splitlines()
            if line.startswith("event: ")
        ]
    result.deliveries = receiver.received()
    mark("done")
    return result


# ------------------------------------------------------------------ report


def _state_text(state: dict[str, Any]) -> str:
    """One jurisdiction's standing on an alert, in words."""
    if state["status"] == "acknowledged":
        return f"acknowledged by {state['acknowledged_by']}" + (
            " (late)" if state.get("late") else ""
        )
    if state.get("overdue"):
        return f"OVERDUE, re-notified {state['renotified_count']}x"
    return "notified, awaiting acknowledgement"


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _sighted(record: dict[str, Any]) -> str:
    sightings = record.get("sightings", [])
    hosts = sum(int(x.get("count") or 1) for x in sightings)
    return f"{len(sightings)} sighting(s), count {hosts}, by " + ", ".join(
        sorted({x["agency"] for x in sightings})
    )


def _value(record: dict[str, Any]) -> str:
    return str(record.get("value") or record["key"].split("|", 2)[-1])


def print_report(result: DemoResult, console: Console) -> None:
    """The readable report: records, alerts, deliveries, acknowledgement, escalation."""
    cross = [r for r in result.records.values() if len(r.get("agencies", [])) >= 2]
    cross.sort(key=lambda r: -float(r.get("score", 0)))
    reliability = {k.agency.id: k.agency.reliability for k in result.keys.values()}
    console.rule("Indicators merged across agencies, with their explained scores")
    for rec in cross:
        comp = rec.get("components", {})
        per = comp.get("per_agency", {})
        console.print(
            f"[bold]{rec['observable_type']} {escape(_value(rec))}[/]  score "
            f"[bold]{float(rec.get('score', 0)):.1f}[/] = base {float(comp.get('base', 0)):.1f}"
            f" x decay {float(comp.get('decay_factor', 1)):.4f}"
            f" (t={comp.get('t_days')} d, tau={comp.get('tau_days')} d,"
            f" delta={comp.get('delta')}); jurisdictions {', '.join(rec.get('jurisdictions', []))}"
            + (f"; sighted: {_sighted(rec)}" if rec.get("sighted") else "")
        )
        table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 2, 0, 2))
        for col in ("agency", "as reported", "conf.", "rel.", "p_a", "TLP"):
            table.add_column(col, overflow="fold")
        for src in rec.get("sources", []):
            table.add_row(
                f"{src['agency']} ({src['jurisdiction']})",
                escape(str(src.get("pattern") or src.get("source_path"))),
                str(src.get("confidence")),
                reliability.get(src["agency"], "?"),
                f"{float(per.get(src['agency'], 0)):.3f}",
                str(src.get("tlp", "")).upper(),
            )
        console.print(table)
        console.print("  why: " + "; ".join(comp.get("explanation", [])))
        console.print()
    single = len(result.records) - len(cross)
    console.print(
        f"{len(result.records)} records in all: {len(cross)} merged from 2+ agencies, "
        f"{single} from one agency only."
    )

    alerts = Table(title="Joint early warnings raised")
    for col in ("level", "rule", "indicator", "jurisdictions", "per-jurisdiction state"):
        alerts.add_column(col, overflow="fold")
    for alert in result.alerts:
        states = alert.get("jurisdiction_state", {})
        alerts.add_row(
            f"{alert['level']} ({alert.get('level_roman', '')}, {alert.get('hk_label', '')})",
            str(alert.get("rule")),
            escape(", ".join(k.split("|", 2)[-1] for k in alert.get("indicator_keys", [])[:3])),
            ", ".join(alert.get("jurisdictions", [])),
            "\n".join(f"{j}: {_state_text(s)}" for j, s in sorted(states.items())),
        )
    console.print(alerts)

    deliveries = Table(title="Webhook deliveries received at the local receiver")
    for col in ("agency", "event", "alert level", "for", "signature"):
        deliveries.add_column(col)
    for d in result.deliveries:
        deliveries.add_row(
            d.agency,
            d.event_type,
            d.level,
            ", ".join(d.jurisdictions),
            "verified" if d.verified else f"REJECTED: {d.reason}",
        )
    console.print(deliveries)
    ok = sum(1 for d in result.deliveries if d.verified)
    console.print(
        f"{ok} of {len(result.deliveries)} deliveries verified (HMAC-SHA256, fresh, no replay)."
    )

    head = result.headline
    if head:
        console.print(
            f"\n[bold]Headline alert[/] {head.get('id')}: {escape(str(head.get('title')))}"
        )
        if result.acknowledged:
            j, agency = result.acknowledged
            late = head.get("jurisdiction_state", {}).get(j, {}).get("late")
            when = "after its deadline" if late else "within its deadline"
            console.print(f"  {j} acknowledged via the API as {agency}, {when}.")
        console.print(
            f"  Demo clock moved forward {_minutes(result.clock_offset)} min "
            "(ORANGE deadline + 1 min); escalation tick run directly."
        )
        for j, s in sorted(head.get("jurisdiction_state", {}).items()):
            console.print(
                f"  {j}: {s['status']}, deadline {s['deadline']}, overdue={s['overdue']}, "
                f"re-notified {s['renotified_count']}x"
            )
        console.print(
            f"  overdue jurisdictions: {', '.join(result.overdue) or 'none'}; "
            f"re-notifications delivered: "
            + ", ".join(sorted({d.agency for d in result.renotified}))
        )

    if result.lookup:
        found = result.lookup.get("records", [])
        answer = (
            f"found, score now {float(found[0].get('score_now', 0)):.1f} "
            f"(decayed over the demo clock's {_minutes(result.clock_offset)} min jump)"
            if found
            else "not found"
        )
        console.print(
            f"\nLookup of the defanged value {result.lookup.get('query')!r} as hk-hkcert -> "
            f"{', '.join(result.lookup.get('keys', []))}: {answer}"
        )
    if result.red_lookups:
        console.print(
            "TLP:RED URL (named recipient only, never crosses a border): "
            + ", ".join(
                f"{a}{' (source)' if a == demo_data.GD_CNCERT.id else ''} "
                f"{'sees it' if seen else 'cannot see it'}"
                for a, seen in sorted(result.red_lookups.items())
            )
        )
    if result.stream_events:
        counts = Counter(result.stream_events)
        console.print(
            f"Live stream (SSE) replays {len(result.stream_events)} alert events for gd-cncert: "
            + ", ".join(f"{n} {kind}" for kind, n in counts.items())
        )
    console.print(
        "Timings (s since start of scenario): "
        + ", ".join(f"{k} {v}" for k, v in result.timings.items())
    )


def print_where_to_look(result: DemoResult, console: Console) -> None:
    """URLs, keys and example ``curl`` lines with a real key."""
    base = result.base_url

    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)

    gd = result.keys.get(demo_data.GD_CNCERT.id)
    say("\n[bold]Where to look[/]")
    say(f"  API docs:     {base}/docs")
    say(f"  Page:         {base}/ui/   (sign in with a key below)")
    say(f"  Live stream:  {base}/api/v1/stream   (SSE, bearer auth; ?last_event_id=0 replays)")
    say(f"  TAXII 2.1:    {base}/taxii2/")
    say(f"  bus: {result.bus_url}   store: {result.store_url}")
    if result.namespace:
        say(f"  namespace (topic / index prefix): {result.namespace}")
    for key in result.keys.values():
        say(f"  key of {key.agency.id:10} {key.bearer}")
    if gd is None:
        return
    auth = f"-H 'Authorization: Bearer {gd.bearer}'"
    say("  Try:")
    say(f"    curl -s {auth} '{base}/api/v1/lookup?value=update.pearlriver-cdn%5B.%5Dexample'")
    say(f"    curl -s {auth} '{base}/api/v1/alerts?status=open'")
    say(f"    curl -sN {auth} '{base}/api/v1/stream?last_event_id=0'")
    say(
        f"    curl -s -u {gd.key_id}:{gd.secret} -H 'Accept: {TAXII_MEDIA}' "
        f"'{base}/taxii2/api/collections/'"
    )


# ------------------------------------------------------------------- entry


@contextlib.contextmanager
def running_platform(
    settings: Settings, host: str, port: int, clock: DemoClock
) -> Iterator[tuple[DemoStack, WebhookReceiver]]:
    """The platform and the webhook receiver, stopped on exit."""
    receiver = WebhookReceiver(clock).start()
    stack = DemoStack(build_services(settings, clock), host, port)
    try:
        stack.start()
        yield stack, receiver
    finally:
        stack.stop()
        receiver.stop()


def run_demo(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8400,
    keep_running: bool = False,
    console: Console | None = None,
) -> DemoResult:
    """Start the platform, play the scenario, print the report; stay up if asked."""
    console = console or Console()
    clock = DemoClock()
    t0 = time.monotonic()
    console.print(f"[bold]ThreatBay demo[/] on {settings.bus_url} + {settings.store_url}")
    with running_platform(settings, host, port, clock) as (stack, receiver):
        console.print(f"Platform up at {stack.base_url} in {time.monotonic() - t0:.1f} s")
        result = run_scenario(stack, clock, receiver, console)
        result.timings["total incl. start-up"] = round(time.monotonic() - t0, 2)
        print_report(result, console)
        print_where_to_look(result, console)
        from threatbay.status import current, render

        console.print()
        render(current(stack.services, stack.loops), console)
        if keep_running:
            console.print("\nThe platform keeps running; press Ctrl-C to stop.")
            _wait_for_interrupt()
    return result


def _wait_for_interrupt() -> None:
    done = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def report_text(result: DemoResult, width: int = 160) -> str:
    """The report as plain text (tests read what a user would read)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    print_report(result, console)
    print_where_to_look(result, console)
    return buffer.getvalue()


# ------------------------------------------------------------- demo incident


@dataclass
class IncidentResult:
    """What ``threatbay demo incident`` walked through, for the report and for tests."""

    case_id: str = ""
    lead_history: list[str] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    clocks: list[dict[str, Any]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    red_note_seen_by: dict[str, bool] = field(default_factory=dict)
    deliveries: list[str] = field(default_factory=list)
    stix_types: dict[str, int] = field(default_factory=dict)


def run_incident_scenario(
    stack: DemoStack, clock: DemoClock, receiver: WebhookReceiver, keys: dict[str, AgencyKey],
    console: Console,
) -> IncidentResult:  # fmt: skip
    """A joint case on the headline RED alert (GD + MO): proposal, lead, tasks, overdue,
    takedown request, statutory clocks, lead transfer, a TLP:RED note, STIX."""
    from respond.stages import DELIVERED, respond_tick
    from threatbay.bootstrap import responder_for

    services = stack.services
    gd, hk, mo = (
        keys[a.id] for a in (demo_data.GD_CNCERT, demo_data.HK_HKCERT, demo_data.MO_CARIC)
    )
    out = IncidentResult()
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    responder = responder_for(services)
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:

        def call(key: AgencyKey, method: str, path: str, body: Any = None) -> Any:
            r = http.request(method, f"/api/v1/incidents{path}", headers=key.headers, json=body)
            r.raise_for_status()
            return r.json()

        def proposed() -> list[dict[str, Any]]:
            services.store.refresh(names.INDEX_CASES)
            return [c for c in call(gd, "GET", "")["items"] if c["status"] == "proposed"]

        proposal = wait_for("the case proposal from the RED alert", proposed, deadline)[0]
        out.case_id = case = proposal["id"]
        console.print(f"  proposal {case} for {', '.join(proposal['proposal']['jurisdictions'])}")
        call(gd, "POST", f"/{case}/accept")
        call(mo, "POST", f"/{case}/accept")
        call(gd, "POST", f"/{case}/participants", {"agency": hk.agency.id})
        out.lead_history.append(gd.agency.id)
        now = clock.now()

        def due(hours: int) -> str:
            return format_timestamp(now + timedelta(hours=hours))

        hk_task = call(gd, "POST", f"/{case}/tasks", {"title": "Hunt for PearlLoader in HK CI",
                       "assignee": hk.agency.id, "due": due(2)})["tasks"][-1]  # fmt: skip
        call(gd, "POST", f"/{case}/tasks", {"title": "Check CARIC notifications",
                       "assignee": mo.agency.id, "due": due(1)})  # fmt: skip
        call(hk, "POST", f"/{case}/tasks/{hk_task['id']}/accept")
        call(hk, "POST", f"/{case}/tasks/{hk_task['id']}/done", {"outcome": "successful"})
        req = call(gd, "POST", f"/{case}/requests", {"request_type": "takedown",
                   "addressee": mo.agency.id, "text": "Take down the PearlRiver C2 domain",
                   "deadline": due(4), "record_keys": [demo_data.DOMAIN_KEY]})  # fmt: skip
        req_id = req["requests"][-1]["id"]
        call(mo, "POST", f"/{case}/requests/{req_id}/answer", {"text": "Registrar suspended it"})
        call(
            gd,
            "POST",
            f"/{case}/entities",
            {
                "aware_at": format_timestamp(now),
                "operator_type": "cii",
                "critical_infrastructure": True,
                "sector": "energy",
            },
        )
        call(hk, "POST", f"/{case}/entities", {"aware_at": format_timestamp(now),
             "operator_type": "ci-operator", "serious": True})  # fmt: skip
        wait_for("the deliveries in flight", lambda: deliveries_settled(services), deadline)
        clock.advance(timedelta(hours=1, minutes=1))
        services.store.refresh(names.INDEX_CASES)
        respond_tick(responder)
        call(gd, "POST", f"/{case}/lead", {"agency": hk.agency.id})
        out.lead_history.append(hk.agency.id)
        secret = "HK only: the operator's vendor is under NDA"
        call(hk, "POST", f"/{case}/notes", {"text": secret,
             "marking": {"tlp": "red", "recipients": [hk.agency.id]}})  # fmt: skip
        view = call(gd, "GET", f"/{case}")
        out.tasks = {t["assignee"]: t for t in view["tasks"]}
        out.clocks = view["clocks"]
        out.request = next(r for r in view["requests"] if r["id"] == req_id)
        for key in (gd, hk, mo):
            notes = call(key, "GET", f"/{case}")["notes"]
            out.red_note_seen_by[key.agency.id] = any(n["text"] == secret for n in notes)
        bundle = call(gd, "GET", f"/{case}/stix")
        out.stix_types = dict(Counter(o["type"] for o in bundle["objects"]))

        def case_deliveries() -> list[str]:
            got = [f"{d.agency}:{d.event_type}" for d in receiver.received()
                   if d.event_type in DELIVERED and not d.alert_id]  # fmt: skip
            return got if any("task_overdue" in g for g in got) else []

        out.deliveries = wait_for("the case notifications", case_deliveries, deadline)
    return out


def print_incident_report(result: IncidentResult, base_url: str, console: Console) -> None:
    console.rule("Joint incident case")
    console.print(f"case {result.case_id}; lead {' -> '.join(result.lead_history)}")
    for agency, t in sorted(result.tasks.items()):
        console.print(
            f"  task for {agency}: {t['status']} (outcome {t['outcome']})"
            + (" OVERDUE, escalated" if t.get("overdue") else "")
        )
    r = result.request
    if r:
        console.print(f"  {r['request_type']} request to {r['addressee']}: {r['status']}")
    for c in result.clocks:
        console.print(f"  {c['jurisdiction']} clock {c['stage']}: due {c['due']} -> {c['status']}")
    console.print(
        "  TLP:RED note by HK seen by: "
        + ", ".join(a for a, seen in sorted(result.red_note_seen_by.items()) if seen)
    )
    console.print(f"  case webhooks delivered: {', '.join(sorted(set(result.deliveries)))}")
    console.print(f"  STIX form: {result.stix_types}")
    console.print(f"\n  Page: {base_url}/ui/incidents.html   API: {base_url}/api/v1/incidents/"
                  f"{result.case_id}   TAXII: {base_url}/taxii2/cases/collections/")  # fmt: skip


def run_incident_demo(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8400,
    keep_running: bool = False,
    console: Console | None = None,
) -> tuple[DemoResult, IncidentResult]:
    """The alert demo, then a joint case on its headline RED alert."""
    console = console or Console()
    clock = DemoClock()
    console.print(f"[bold]ThreatBay demo incident[/] on {settings.bus_url} + {settings.store_url}")
    with running_platform(settings, host, port, clock) as (stack, receiver):
        result = run_scenario(stack, clock, receiver, console)
        incident = run_incident_scenario(stack, clock, receiver, result.keys, console)
        print_incident_report(incident, stack.base_url, console)
        print_where_to_look(result, console)
        if keep_running:
            console.print("\nThe platform keeps running; press Ctrl-C to stop.")
            _wait_for_interrupt()
    return result, incident
