"""One typed settings object, environment prefix ``THREATBAY_`` (STYLE.md 7).

Backends are chosen by URL: ``bus_url=kafka://host:9092`` or ``sqlite:///path``,
``store_url=http(s)://es:9200`` or ``sqlite:///path``. The default is the
embedded SQLite pair under ``data_dir`` so a fresh install needs no servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigurationError


class KafkaSettings(BaseModel):
    partitions: int = 6
    replication_factor: int = 1
    client_id: str = "threatbay"
    session_timeout_ms: int = 10_000
    linger_ms: int = 5
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "lz4"


class ElasticsearchSettings(BaseModel):
    shards: int = 1
    replicas: int = 0
    refresh_interval: str = "1s"
    request_timeout_s: float = 30.0


class TaxiiSettings(BaseModel):
    max_content_length: int = 10 * 1024 * 1024
    default_page_size: int = 100
    max_page_size: int = 1000
    status_retention_hours: int = 48
    settle_interval_s: float = 1.0
    """Longest reuse of the date_added watermark by one API process (records/date_added.py):
    each new one costs a floors read and write and a refresh of the objects index."""
    date_added_lease_s: float = 30.0
    """How long a writer's date_added floor holds the watermark back if the writer dies."""
    clock_skew_s: float = 5.0
    """Largest clock difference between processes; a writer re-stamps its objects when its
    write outlived its floor's lease minus this."""
    records_expire_below: float = Field(default=25.0, ge=0, le=100)
    """The ``records`` collection's ``valid_until``: when a record's decayed score (as its
    reader sees it) falls below this (core/record_indicators.py)."""


class LimitsSettings(BaseModel):
    """What one push may cost (README "Limits"): per object, and per agency per minute.

    Per object, a limit exceeded is that object's failure in the TAXII status;
    per agency, a request past its minute's budget is answered 429 with
    ``Retry-After`` (counted in each API process).
    """

    pattern_max_chars: int = 65_536
    pattern_max_comparisons: int = 1_000
    pattern_max_depth: int = 32
    object_max_depth: int = 32
    """JSON nesting of one object (dicts and lists inside it)."""
    agency_objects_per_minute: int = 100_000
    """0: no limit."""
    agency_bytes_per_minute: int = 100 * 1024 * 1024
    """Request bodies; 0: no limit."""
    agency_grammar_chars_per_minute: int = 500_000
    """Characters of patterns the fast path cannot read (the grammar parses them at ~40 µs
    a character: this bounds one agency to ~20 s of parsing a minute); 0: no limit."""


class WritesSettings(BaseModel):
    """Read-modify-write under optimistic concurrency (records/rmw.py)."""

    conflict_retries: int = 20
    """Rounds of re-read and re-apply before a batch gives up (``WriteContention``)."""
    conflict_backoff_s: float = 0.005
    """Pause between two rounds (doubled each round)."""


class ConsumerSettings(BaseModel):
    """The one consumer loop every stage runs (core/consuming.py)."""

    max_backoff_s: float = 30.0
    """Longest pause after a transient failure (store or bus unavailable)."""
    correlator_batch: int = 200
    alerter_batch: int = 500
    notifier_batch: int = 200
    poll_timeout_s: float = 0.5


class OutboxSettings(BaseModel):
    """Changes noted before a write, published after it (records/outbox.py)."""

    sweep_interval_s: float = 30.0
    """Seconds between sweeps for notes a failed publish left behind."""
    grace_s: float = 60.0
    """A note younger than this belongs to a write whose publish may still be under way."""


class AlertsSettings(BaseModel):
    escalation_interval_s: float = 15.0
    """Seconds between escalation ticks (overdue, update due, idle expiry)."""


class CasesSettings(BaseModel):
    """Joint incident cases (respond/, DOMAIN.md "Joint incident cases")."""

    clock_rules_file: Path | None = None
    """Statutory reporting clock rules (YAML); default threatbay/defaults/clock_rules.yaml."""
    templates_dir: Path | None = None
    """Case templates per incident type (YAML files); default threatbay/defaults/case_templates."""
    tick_s: float = 15.0
    """Seconds between respond ticks: outbox sweep, overdue tasks and requests, clocks."""
    task_renotify_s: float = 3600.0
    """An overdue task (or request) is re-notified once per this many seconds."""
    propose_min_level: Literal["RED", "ORANGE", "YELLOW", "BLUE"] = "ORANGE"
    """Alerts at this level or above concerning several jurisdictions propose a case."""
    propose_min_jurisdictions: int = 2
    max_tlp: dict[str, Literal["clear", "green", "amber", "amber+strict", "red"]] = Field(
        default_factory=dict
    )
    """Per jurisdiction, the most restrictive TLP a participant of it receives (e.g. MO: green)."""
    batch: int = 200
    """Messages per poll of the proposer and the case notifier."""


class ScoringSettings(BaseModel):
    """Scoring tunables (core/scoring.py, DOMAIN.md "Score")."""

    false_positive_cap: float = Field(default=10.0, ge=0, le=100)
    """Highest score of a record view that sees a false-positive sighting (issue #19)."""


class ExportsSettings(BaseModel):
    """Blocklist exports (api/exports.py, exports/formats.py; issue #19)."""

    rpz_zone: str = "rpz.threatbay"
    """Origin of the RPZ zone when the request names none (``?zone=``)."""
    page_size: int = Field(default=500, ge=10, le=5000)
    """Records read from the store per page while an export streams."""


class WebhookSettings(BaseModel):
    max_attempts: int = 8
    base_delay_s: float = 10.0
    max_delay_s: float = 3600.0
    timeout_s: float = 5.0
    workers: int = 8
    tick_s: float = 1.0
    allowed_targets: list[str] = []
    """CIDRs and host names a webhook may point at although not public (core/webhook_targets.py)."""
    require_https: bool | None = None
    """None: required when ``env`` is production."""


class ApiSettings(BaseModel):
    auth_cache_ttl_s: float = 1.0
    """Longest time a credential read from the store is reused (api/auth.py)."""
    auth_failure_burst: int = 20
    auth_failure_per_s: float = 1.0
    alert_page_ttl_s: float | None = None
    """Reuse of alert-list pages; None: chosen by bootstrap (0.5 s on a near-real-time store)."""
    stream_poll_s: float = 0.25
    stream_heartbeat_s: float = 15.0
    agency_profile_ttl_s: float = 30.0
    """How long a correlator reuses an agency's reliability and default confidence."""
    key_header: str = "X-API-Key"
    """Header that may carry an API key ``tb_<key id>.<secret>`` when there is no
    Authorization header (OpenCTI's taxii2 connector ``use_apikey``); empty: off."""


class SigningSettings(BaseModel):
    """Trusted data (DOMAIN.md; core/signing.py, core/trust.py, core/object_signatures.py)."""

    algorithms: list[str] = ["Ed25519", "ES256", "SM2SM3"]
    """The allow-list. ``none``, HMAC (``HS*``) and unknown names are refused at start-up."""
    roots_file: Path | None = None
    """JSON ``{"GD": [root public JWK, ...], "HK": [...], "MO": [...]}``: the pinned roots."""
    agencies_file: Path | None = None
    """JSON ``{"identity--…": "GD", …}``: which jurisdiction's list may speak for an agency."""
    trust_lists: dict[str, str] = {}
    """Jurisdiction -> file or URL of its signed trust list (JSON in the environment)."""
    clock_skew_s: float = 300.0
    """Tolerance for times a signer states (trust list ``issued``, countersignature time)."""
    require_signed: list[str] = []
    """Agency ids whose pushes must carry a verified signature (``*``: every agency); local
    policy, never a flag in the payload."""

    @field_validator("algorithms")
    @classmethod
    def _only_allowed_algorithms(cls, value: list[str]) -> list[str]:
        from core.signing import ALGORITHMS, refusal

        for alg in value:
            refused = refusal(alg, ALGORITHMS)
            if refused:
                raise ValueError(f"THREATBAY_SIGNING__ALGORITHMS: {refused}")
        return value


# ------------------------------------------------------------------ security
#
# Secrets never live in settings: only the paths of the files that hold them
# (``*_file``), read by ``threatbay/security.py`` when a client is built, so a
# settings repr, a log line or ``threatbay status`` cannot show one.

STAGES = ("ingest", "correlator", "alerts", "rescore")
"""The processes that get their own Kafka principal and Elasticsearch user (least privilege).

``ingest`` is the API process (TAXII push, analyst API, feeds and the admin command line);
``threatbay serve`` runs every stage, each with its own clients when credentials differ.
"""


class StageCredential(BaseModel):
    """One principal: a user name and the file holding its password (or an ES API key file)."""

    username: str | None = None
    password_file: Path | None = None
    api_key_file: Path | None = None
    """Elasticsearch only: a file holding an encoded API key (instead of user and password)."""

    @property
    def configured(self) -> bool:
        return bool(self.username and self.password_file) or self.api_key_file is not None


class KafkaSecuritySettings(BaseModel):
    """How this process authenticates to Kafka (``THREATBAY_KAFKA_SECURITY__...``)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    ca_file: Path | None = None
    """PEM file of the CA that signed the brokers' certificates (checked, with host names)."""
    check_hostname: bool = True
    username: str | None = None
    """Principal of a stage that has no entry in ``stages``."""
    password_file: Path | None = None
    stages: dict[str, StageCredential] = Field(default_factory=dict)
    """Per-stage principals: the stage this process runs decides which one it uses."""

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: dict[str, StageCredential]) -> dict[str, StageCredential]:
        return _check_stages(value)

    def credential(self, stage: str) -> StageCredential:
        """The principal of ``stage`` (its own entry, else the default one)."""
        own = self.stages.get(stage)
        if own is not None and own.configured:
            return own
        return StageCredential(username=self.username, password_file=self.password_file)


class ElasticsearchSecuritySettings(BaseModel):
    """How this process authenticates to Elasticsearch (``THREATBAY_ELASTICSEARCH_SECURITY__``)."""

    ca_file: Path | None = None
    """PEM file of the CA that signed the nodes' HTTP certificates (checked, with host names)."""
    username: str | None = None
    password_file: Path | None = None
    api_key_file: Path | None = None
    stages: dict[str, StageCredential] = Field(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: dict[str, StageCredential]) -> dict[str, StageCredential]:
        return _check_stages(value)

    def credential(self, stage: str) -> StageCredential:
        own = self.stages.get(stage)
        if own is not None and own.configured:
            return own
        return StageCredential(
            username=self.username, password_file=self.password_file, api_key_file=self.api_key_file
        )


class TlsSettings(BaseModel):
    """The API's TLS (``THREATBAY_TLS__...``): server certificate and client certificates.

    The certificate and key files are read at start-up and again on SIGHUP. One CA per
    jurisdiction: a client certificate issued under ``client_ca["HK"]`` can only be an agency
    of HK (api/client_certs.py); ``client_crl`` names each jurisdiction's revocation list
    (re-read when the file changes).
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    key_password_file: Path | None = None
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    client_ca: dict[str, Path] = Field(default_factory=dict)
    client_crl: dict[str, Path] = Field(default_factory=dict)
    hsts_max_age_s: int = 31_536_000

    @field_validator("client_ca", "client_crl")
    @classmethod
    def _jurisdictions(cls, value: dict[str, Path]) -> dict[str, Path]:
        # Environment variable names are case-insensitive: THREATBAY_TLS__CLIENT_CA__GD -> "gd".
        out = {k.upper(): v for k, v in value.items()}
        unknown = sorted(set(out) - {"GD", "HK", "MO"})
        if unknown:
            raise ValueError(f"unknown jurisdictions {unknown}: use GD, HK, MO")
        return out

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


def _check_stages(value: dict[str, StageCredential]) -> dict[str, StageCredential]:
    unknown = sorted(set(value) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}: use {list(STAGES)}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="THREATBAY_", env_nested_delimiter="__", extra="ignore"
    )

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".local/share/threatbay")
    bus_url: str = ""
    store_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8400
    namespace: str = ""
    """Prefix of every Kafka topic and Elasticsearch index (isolates tests and benchmarks)."""
    crossborder_file: Path | None = None
    alert_rules_file: Path | None = None
    rescore_interval_s: float = 300.0
    """Seconds between passes of the periodic re-score of decayed indicator scores."""
    rescore_max_rate: float = 500.0
    """Records per second a re-score pass may read (0: unlimited); see benches/bench_rescore.py."""
    kafka: KafkaSettings = KafkaSettings()
    elasticsearch: ElasticsearchSettings = ElasticsearchSettings()
    taxii: TaxiiSettings = TaxiiSettings()
    limits: LimitsSettings = LimitsSettings()
    writes: WritesSettings = WritesSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    outbox: OutboxSettings = OutboxSettings()
    alerts: AlertsSettings = AlertsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    cases: CasesSettings = CasesSettings()
    exports: ExportsSettings = ExportsSettings()
    scoring: ScoringSettings = ScoringSettings()
    api: ApiSettings = ApiSettings()
    signing: SigningSettings = SigningSettings()
    allow_insecure: bool = False
    """THREATBAY_ALLOW_INSECURE=1: production checks only warn, loudly (lab use)."""
    tls: TlsSettings = TlsSettings()
    kafka_security: KafkaSecuritySettings = KafkaSecuritySettings()
    elasticsearch_security: ElasticsearchSecuritySettings = ElasticsearchSecuritySettings()

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        if not self.bus_url:
            self.bus_url = f"sqlite:///{self.data_dir / 'bus.sqlite3'}"
        if not self.store_url:
            self.store_url = f"sqlite:///{self.data_dir / 'store.sqlite3'}"
        return self

    def check_production(self) -> None:
        """The embedded backends are for one machine; refuse them in production."""
        if self.env != "production":
            return
        for name, url in (("bus_url", self.bus_url), ("store_url", self.store_url)):
            if url.startswith("sqlite:"):
                raise ConfigurationError(
                    f"THREATBAY_{name.upper()}={url} is the embedded backend, which is not "
                    "allowed with THREATBAY_ENV=production; point it at Kafka / Elasticsearch"
                )
