"""The one place that wires stages and backends (cosmicpython ``bootstrap.py``).

Nothing is built at import time; tests pass their own clock and backends.

- ``build(settings)``: the ``Services`` of this process, the backends chosen by
  URL (faust ``by_url``): ``kafka://`` or ``sqlite:///`` for the bus,
  ``http(s)://`` or ``sqlite:///`` for the store;
- ``correlator_for`` / ``rescorer_for`` / ``alert_engine_for`` /
  ``notifier_for`` / ``deliverer_for``: each stage over those services and the
  record books built once for them (``records.books.records_of``);
- ``Loops``: the background loops of a process, supervised: a loop that
  crashes (a bug: core/consuming.py) is restarted with backoff, and its crash
  count and last error are kept for ``threatbay status`` and ``/readyz``;
- ``serve_all`` (every stage in one process: the embedded default and the
  single-machine production mode) and one entry point per stage for the
  production stack (deploy/compose.yaml).

Security (``threatbay/security.py``, ``threatbay/tls.py``): the stage a
process runs decides its Kafka principal and Elasticsearch user (``build(...,
stage=)``); ``THREATBAY_ENV=production`` refuses plaintext and default secrets
before anything connects; a stage checks at start-up that its principal may use
the topics it needs; the API serves TLS when ``THREATBAY_TLS__CERT_FILE`` is set.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import names
from core.clock import Clock, SystemClock
from core.consuming import StageHealth
from core.crossborder import default_whitelist, whitelist_from_yaml_text
from core.errors import ConfigurationError, Unavailable, UnknownAgency
from core.patterns import PatternLimits
from core.policy import SharingPolicy
from core.ports import Bus, Store
from core.services import Services
from core.settings import STAGES, Settings
from core.trust import TrustStore
from correlate.alerter import AlertEngine, run_escalation
from correlate.rescore import Rescorer
from correlate.score import AgencyProfile, Scorer
from correlate.warninglists import Warninglists
from correlate.worker import Correlator
from notify.deliverer import Deliverer
from notify.notifier import Notifier
from records.books import records_of
from records.health import CRASH_LOOP_CRASHES, Heartbeats, crash_looping, process_id
from records.views import AudienceSource, ViewWriter
from respond.service import Responder
from respond.stages import CaseNotifier, Proposer, run_respond_tick
from threatbay import memory
from threatbay.security import check_production, elasticsearch_auth, kafka_auth

__all__ = ["Services", "build"]

log = logging.getLogger("threatbay")

#: Seconds between two heartbeats of a process (records/health.py).
HEARTBEAT_S = 5.0

#: Alert-list page reuse on a near-real-time store (search lags writes by a refresh anyway).
NEAR_REAL_TIME_PAGE_TTL_S = 0.5


# ------------------------------------------------------------------ backends


def bus_from_url(url: str, settings: Settings, stage: str = "ingest") -> Bus:
    """Pick the bus adapter by URL scheme (faust ``by_url``); ``stage`` picks the principal."""
    if url.startswith("sqlite:"):
        from backends.embedded_bus import EmbeddedBus

        return EmbeddedBus(url.removeprefix("sqlite://"))
    if url.startswith("kafka:"):
        from backends.kafka_bus import KafkaBus

        return KafkaBus(
            url.removeprefix("kafka://"),
            settings.kafka,
            prefix=settings.namespace,
            auth=kafka_auth(settings, stage),
        )
    raise ValueError(f"unknown bus URL scheme: {url!r} (use kafka:// or sqlite:///)")


def store_from_url(url: str, settings: Settings, stage: str = "ingest") -> Store:
    """Pick the store adapter by URL scheme; ``stage`` picks the Elasticsearch user."""
    if url.startswith("sqlite:"):
        from backends.embedded_store import EmbeddedStore

        return EmbeddedStore(url.removeprefix("sqlite://"))
    if url.startswith(("http:", "https:")):
        from backends.elasticsearch_store import ElasticsearchStore

        return ElasticsearchStore(
            url,
            settings.elasticsearch,
            prefix=settings.namespace,
            auth=elasticsearch_auth(settings, stage),
        )
    raise ValueError(f"unknown store URL scheme: {url!r} (use http(s):// or sqlite:///)")


#: Topics each stage's principal writes and reads (deploy/dev/services grants exactly these).
STAGE_TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # The API publishes pushes, the alert events of acknowledge / resolve / comment, and the
    # case events of an analyst's case actions (records/cases.py).
    "ingest": ((names.TOPIC_RAW, names.TOPIC_ALERTS, names.TOPIC_CASES), ()),
    "correlator": ((names.TOPIC_CHANGES, names.TOPIC_DLQ), (names.TOPIC_RAW,)),
    # The alerts process also runs the respond stage: proposals from alerts, case notices.
    "alerts": (
        (names.TOPIC_ALERTS, names.TOPIC_DLQ, names.TOPIC_CASES),
        (names.TOPIC_CHANGES, names.TOPIC_ALERTS, names.TOPIC_CASES),
    ),
    "rescore": ((names.TOPIC_CHANGES, names.TOPIC_DLQ), ()),
}


def check_bus_access(services: Services, stage: str) -> None:
    """Fail at start-up, naming the topic and right, when this stage's principal lacks one."""
    from backends.kafka_bus import KafkaBus

    if isinstance(services.bus, KafkaBus):
        write, read = STAGE_TOPICS[stage]
        services.bus.check_access(write=write, read=read)


def sharing_policy(settings: Settings) -> SharingPolicy:
    """The sharing policy with the operator's cross-border whitelist, validated at start-up."""
    if settings.crossborder_file is None:
        return SharingPolicy(default_whitelist())
    text = settings.crossborder_file.read_text(encoding="utf-8")
    return SharingPolicy(whitelist_from_yaml_text(text))


def build(
    settings: Settings | None = None,
    clock: Clock | None = None,
    *,
    stage: str = "ingest",
    serves_api: bool = False,
) -> Services:
    """Build the services named by ``settings`` (embedded SQLite by default).

    ``stage`` is the process's stage (``ingest`` for the API and the command line): it picks
    the Kafka principal and Elasticsearch user; ``serves_api`` adds the API's TLS to the
    production checks.
    """
    settings = settings or Settings()
    settings.check_production()
    check_production(settings, [stage], serves_api)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.api.alert_page_ttl_s is None:
        near_real_time = settings.store_url.startswith(("http:", "https:"))
        settings.api.alert_page_ttl_s = NEAR_REAL_TIME_PAGE_TTL_S if near_real_time else 0.0
    clock = clock or SystemClock()
    trust = trust_store(settings, clock)  # before any backend opens: a bad list stops the start
    return Services(
        settings=settings,
        bus=bus_from_url(settings.bus_url, settings, stage),
        store=store_from_url(settings.store_url, settings, stage),
        clock=clock,
        sharing=sharing_policy(settings),
        trust=trust,
    )


def trust_store(settings: Settings, clock: Clock) -> TrustStore | None:
    """The trust lists of ``settings.signing`` verified against the pinned roots; None when
    no roots are configured. A list that cannot be used stops the start (ConfigurationError)."""
    from threatbay.cli_verify import InputUnusable, load_trust

    if settings.signing.roots_file is None:
        return None
    try:
        return load_trust(settings, None, [], None, clock.now())
    except InputUnusable as exc:
        raise ConfigurationError(f"THREATBAY_SIGNING: {exc}") from exc


# -------------------------------------------------------------------- stages


def agency_profiles(services: Services) -> Callable[[str], AgencyProfile]:
    """Reliability and default confidence of an agency, cached for ``api.agency_profile_ttl_s``."""
    registry = records_of(services).agencies
    ttl_s = services.settings.api.agency_profile_ttl_s
    cache: dict[str, tuple[float, AgencyProfile]] = {}
    lock = threading.Lock()

    def profile(agency_id: str) -> AgencyProfile:
        now = time.monotonic()
        with lock:
            hit = cache.get(agency_id)
        if hit and now - hit[0] < ttl_s:
            return hit[1]
        try:
            agency = registry.get(agency_id)
            found = AgencyProfile(agency.reliability, agency.default_confidence)
        except UnknownAgency:
            found = AgencyProfile()
        with lock:
            cache[agency_id] = (now, found)
        return found

    return profile


@functools.cache
def shared_warninglists() -> Warninglists:
    """The MISP warninglists, loaded once per process (~10 s: pymispwarninglists parses JSON)."""
    return Warninglists()


class _WarninglistsOnDemand:
    """The shared warninglists, loaded (~10 s) only if a record lacks its stored hits."""

    def hits(self, observable_type: str, value: str, path: str = "value") -> list[str]:
        return shared_warninglists().hits(observable_type, value, path)


def correlator_for(services: Services) -> Correlator:
    """The correlation worker wired to this process's services."""
    s = services.settings
    return Correlator(
        services.bus,
        services.store,
        services.clock,
        agency_profiles(services),
        Scorer(shared_warninglists(), s.scoring.false_positive_cap),
        services.sharing,
        changes=records_of(services).changes,
        writes=s.writes,
        outbox=s.outbox,
        batch_size=s.consumer.correlator_batch,
        pattern_limits=PatternLimits(
            s.limits.pattern_max_chars, s.limits.pattern_max_comparisons, s.limits.pattern_max_depth
        ),
        audiences=AudienceSource(
            services.store, services.clock, services.sharing, s.api.agency_profile_ttl_s
        ),
    )


def rescorer_for(services: Services) -> Rescorer:
    """The periodic re-score wired to this process's services."""
    return Rescorer(
        services.store,
        services.bus,
        services.clock,
        Scorer(_WarninglistsOnDemand(), services.settings.scoring.false_positive_cap),
        agency_profiles(services),
        max_rate=services.settings.rescore_max_rate or None,
        changes=records_of(services).changes,
        audiences=AudienceSource(
            services.store,
            services.clock,
            services.sharing,
            services.settings.api.agency_profile_ttl_s,
        ),
        views=ViewWriter(services.store, records_of(services).outbox, services.settings.writes),
    )


def alert_engine_for(services: Services) -> AlertEngine:
    """The alert engine over this process's alert book and the operator's rule file."""
    from correlate.rules import load_ruleset

    rules = load_ruleset(services.settings.alert_rules_file)  # validated: fails at start-up
    return AlertEngine(
        records_of(services).alerts, rules, batch_size=services.settings.consumer.alerter_batch
    )


def notifier_for(services: Services) -> Notifier:
    books = records_of(services)
    return Notifier(
        services.store,
        services.bus,
        services.clock,
        services.sharing,
        registry=books.agencies,
        audit=books.audit,
        batch_size=services.settings.consumer.notifier_batch,
        book=books.alerts,
    )


def deliverer_for(services: Services) -> Deliverer:
    return Deliverer(services.store, services.clock, settings=services.settings.webhooks)


def responder_for(services: Services) -> Responder:
    """Joint incident cases over this process's record books; the clock rules file and the
    templates are checked here (a mistake fails start-up)."""
    return Responder(records_of(services), services.sharing, services.settings.cases)


# --------------------------------------------------------------------- loops


@dataclass
class LoopHealth:
    """What the supervisor knows of one loop (and of its consumer stage, if it is one)."""

    name: str
    running: bool = False
    crashes: int = 0
    last_error: str | None = None
    last_crash_at: float | None = None
    crash_times: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_CRASHES))
    stage: StageHealth | None = None

    @property
    def crash_looping(self) -> bool:
        return crash_looping(list(self.crash_times), time.time())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as heartbeats and ``threatbay status`` carry it."""
        return {
            "running": self.running,
            "crashes": self.crashes,
            "crash_looping": self.crash_looping,
            "last_error": self.last_error,
            "last_crash_at": self.last_crash_at,
            "stage": self.stage.to_dict() if self.stage is not None else None,
        }


@dataclass
class Loops:
    """Background loops of one process, supervised and stopped together."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    health: dict[str, LoopHealth] = field(default_factory=dict)
    max_restart_delay_s: float = 60.0
    process: str = field(default_factory=process_id)

    def start(
        self,
        name: str,
        target: Callable[[threading.Event], None],
        stage: StageHealth | None = None,
    ) -> None:
        """Run ``target`` in a thread, restarting it with backoff when it crashes (a bug).

        The first crash is logged with its traceback, each further one as one
        line with the count; a loop crashing ``CRASH_LOOP_CRASHES`` times within
        ten minutes is crash-looping (``threatbay status``, ``/readyz``).
        """
        health = self.health[name] = LoopHealth(name, stage=stage)

        def supervised() -> None:
            delay = 1.0
            while not self.stop.is_set():
                health.running = True
                try:
                    target(self.stop)
                    return
                except Exception as exc:  # a loop must never die silently
                    health.crashes += 1
                    health.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    health.last_crash_at = time.time()
                    health.crash_times.append(health.last_crash_at)
                    if health.crashes == 1:
                        log.exception("loop %s crashed; restarting in %.0f s", name, delay)
                    else:
                        log.error(
                            "loop %s crashed again (%d times%s): %s; restarting in %.0f s",
                            name, health.crashes,
                            ", crash-looping" if health.crash_looping else "",
                            health.last_error, delay,
                        )  # fmt: skip
                finally:
                    health.running = False
                self.stop.wait(delay)
                delay = min(delay * 2, self.max_restart_delay_s)

        thread = threading.Thread(target=supervised, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every loop's health, JSON-ready (heartbeats, ``/metrics``, ``threatbay status``)."""
        return {name: h.to_dict() for name, h in self.health.items()}

    def beat(self, services: Services, every_s: float = HEARTBEAT_S) -> None:
        """Write this process's heartbeat every ``every_s`` seconds until ``stop``."""
        beats = Heartbeats(services.store)

        def run() -> None:
            next_trim = time.monotonic() + memory.TRIM_EVERY_S
            refused = ""
            while True:
                try:
                    beats.beat(self.process, self.snapshot())
                except Unavailable as exc:
                    log.debug("heartbeat not written: %s", exc)
                except ConfigurationError as exc:  # a missing right: say so once, keep going
                    if str(exc) != refused:
                        log.error("heartbeat not written: %s", exc)
                    refused = str(exc)
                if time.monotonic() >= next_trim:
                    memory.release_free()
                    next_trim = time.monotonic() + memory.TRIM_EVERY_S
                if self.stop.wait(every_s):
                    return

        thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        thread.start()
        self.threads.append(thread)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)


def start_correlator(services: Services, loops: Loops, *, from_beginning: bool = False) -> None:
    correlator = correlator_for(services)
    loops.start(
        "correlator",
        lambda stop: correlator.run(stop, from_beginning=from_beginning),
        correlator.stage_health(),
    )


def start_rescorer(services: Services, loops: Loops) -> None:
    rescorer = rescorer_for(services)
    interval = services.settings.rescore_interval_s
    loops.start("rescore", lambda stop: rescorer.run(stop, interval))


def start_alerter(services: Services, loops: Loops) -> None:
    """Alert engine, escalation tick (with the alert outbox sweep), notifier and deliverer."""
    engine = alert_engine_for(services)
    notifier = notifier_for(services)
    deliverer = deliverer_for(services)
    every = services.settings.alerts.escalation_interval_s
    idle = engine.ruleset.idle_expiry
    book = records_of(services).alerts
    loops.start("alerter", engine.run, engine.stage_health())
    loops.start("escalation", lambda stop: run_escalation(book, stop, every, idle))
    loops.start("notifier", notifier.run, notifier.stage_health())
    loops.start("deliverer", deliverer.run)
    start_responder(services, loops)


def start_responder(services: Services, loops: Loops) -> None:
    """The respond stage: case proposals from alerts, case notifications, the respond tick."""
    responder = responder_for(services)
    batch = services.settings.cases.batch
    proposer = Proposer(responder, services.bus, batch_size=batch)
    notifier = CaseNotifier(responder, services.bus, batch_size=batch)
    every = services.settings.cases.tick_s
    loops.start("case-proposer", proposer.run)
    loops.start("case-notifier", notifier.run)
    loops.start("respond-tick", lambda stop: run_respond_tick(responder, stop, every))


# ----------------------------------------------------------------- processes


def uvicorn_config(app: Any, settings: Settings, host: str, port: int, **kw: Any) -> Any:
    """uvicorn's config for the API: TLS when a certificate is configured (threatbay/tls.py)."""
    import uvicorn

    if not settings.tls.enabled:
        return uvicorn.Config(app, host=host, port=port, **kw)
    from threatbay import tls

    context = tls.server_context(settings.tls)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=tls.ClientCertProtocol,
        ssl_context_factory=lambda _config, _default: context,
        **kw,
    )
    config.tls_context = context  # type: ignore[attr-defined]
    return config


def _uvicorn(services: Services, host: str, port: int, loops: Loops) -> None:
    import uvicorn

    from api.app import create_app

    settings = services.settings
    app = create_app(services, loops=loops)
    config = uvicorn_config(app, settings, host, port, log_level="info")
    if settings.tls.enabled:
        from threatbay import tls

        def reload() -> None:
            tls.load_identity(config.tls_context, settings.tls)
            if app.state.client_trust is not None:
                app.state.client_trust.reload()

        tls.reload_on_sighup(reload)
    scheme = "https" if settings.tls.enabled else "http"
    print(
        f"ThreatBay listening on {scheme}://{host}:{port}  "
        f"(API docs: {scheme}://{host}:{port}/docs)"
    )
    print(f"  bus:   {settings.bus_url}\n  store: {settings.store_url}")
    try:
        uvicorn.Server(config).run()
    finally:
        loops.shutdown()
        records_of(services).close()
        services.close()


def first_run_hint(services: Services) -> str | None:
    """What a new user should do next when no agency is registered yet."""
    if records_of(services).agencies.list():
        return None
    return (
        "No agency is registered yet. To see the whole mechanism with three simulated agencies\n"
        "(GD, HK, MO) in one minute, stop this and run:   threatbay demo\n"
        "To register a real agency:   threatbay agency add --help"
    )


def stage_services(settings: Settings) -> dict[str, Services]:
    """The services of each stage of ``serve``: one per stage when stages have their own
    principals (each stage keeps its least privilege in one process), else one shared."""
    if not (settings.kafka_security.stages or settings.elasticsearch_security.stages):
        shared = build(settings, stage="ingest", serves_api=True)
        return dict.fromkeys(STAGES, shared)
    built: dict[str, Services] = {}
    try:
        for stage in STAGES:
            built[stage] = build(settings, stage=stage, serves_api=stage == "ingest")
            check_bus_access(built[stage], stage)
    except BaseException:
        for services in built.values():
            services.close()
        raise
    return built


def serve_all(settings: Settings, host: str, port: int) -> None:
    """API + correlator + re-score + alert engine + notifier in one process."""
    memory.limit_arenas()
    by_stage = stage_services(settings)
    services = by_stage["ingest"]
    hint = first_run_hint(services)
    if hint:
        print(hint)
    loops = Loops()
    start_correlator(by_stage["correlator"], loops)
    start_rescorer(by_stage["rescore"], loops)
    start_alerter(by_stage["alerts"], loops)
    loops.beat(services)
    try:
        _uvicorn(services, host, port, loops)
    finally:
        for other in {id(s): s for s in by_stage.values() if s is not services}.values():
            records_of(other).close()
            other.close()


def serve_api(settings: Settings, host: str, port: int) -> None:
    services = build(settings, stage="ingest", serves_api=True)
    check_bus_access(services, "ingest")
    _uvicorn(services, host, port, Loops())


def _run_until_signal(services: Services, loops: Loops) -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    loops.shutdown()
    records_of(services).close()
    services.close()


def run_correlator(settings: Settings, *, from_beginning: bool = False) -> None:
    services = build(settings, stage="correlator")
    check_bus_access(services, "correlator")
    loops = Loops()
    start_correlator(services, loops, from_beginning=from_beginning)
    loops.beat(services)
    print(f"correlator consuming {settings.bus_url} -> {settings.store_url}")
    _run_until_signal(services, loops)


def run_rescorer(settings: Settings) -> None:
    """Only the periodic re-score (run one per deployment; more only add conflicts)."""
    services = build(settings, stage="rescore")
    check_bus_access(services, "rescore")
    loops = Loops()
    start_rescorer(services, loops)
    loops.beat(services)
    print(f"re-score every {settings.rescore_interval_s:g}s on {settings.store_url}")
    _run_until_signal(services, loops)


def rescore_once(settings: Settings) -> str:
    """One re-score pass now; a line saying what it did (``threatbay rescore --once``)."""
    services = build(settings, stage="rescore")
    try:
        r = rescorer_for(services).run_pass()
    finally:
        services.close()
    return (
        f"re-scored {r.written} of {r.due} due records ({r.full} fully, {r.conflicts} "
        f"conflicts skipped), {r.crossings} threshold crossings announced"
    )


def run_alerter(settings: Settings) -> None:
    services = build(settings, stage="alerts")
    check_bus_access(services, "alerts")
    loops = Loops()
    start_alerter(services, loops)
    loops.beat(services)
    print(f"alert engine consuming {settings.bus_url} -> {settings.store_url}")
    _run_until_signal(services, loops)
