"""One typed settings object, environment prefix ``THREATBAY_`` (STYLE.md 7).

Backends are chosen by URL: ``bus_url=kafka://host:9092`` or ``sqlite:///path``,
``store_url=http(s)://es:9200`` or ``sqlite:///path``. The default is the
embedded SQLite pair under ``data_dir`` so a fresh install needs no servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
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


class WebhookSettings(BaseModel):
    max_attempts: int = 8
    base_delay_s: float = 10.0
    max_delay_s: float = 3600.0
    timeout_s: float = 5.0
    workers: int = 8
    tick_s: float = 1.0


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
    writes: WritesSettings = WritesSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    outbox: OutboxSettings = OutboxSettings()
    alerts: AlertsSettings = AlertsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    api: ApiSettings = ApiSettings()

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
