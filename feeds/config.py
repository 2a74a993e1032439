"""The feed registry file (YAML): which external feeds to pull, how, and how far to trust them.

Each feed becomes a source agency ``feed-<name>`` (DOMAIN.md "Parties") with
its own reliability (Admiralty A–F) and a default TLP for objects the feed
left unmarked (DOMAIN.md "Sharing"). A top-level ``defaults`` mapping is
merged under every feed. Secrets may be given inline or, better, by the name
of an environment variable (``password_env`` / ``token_env``).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.access import Agency
from core.errors import ConfigurationError
from core.markings import normalise_tlp
from core.provenance import JURISDICTIONS, Tlp

FeedKind = Literal["taxii21", "taxii20", "misp", "csv", "text"]
IocType = Literal["ipv4", "ipv6", "ip", "domain", "url", "email", "md5", "sha1", "sha256", "auto"]

# Namespace of every id ThreatBay derives for feeds (agency identities, CSV indicators).
FEED_NAMESPACE = uuid.UUID("6f1d0c8e-3b6a-5d0e-9a57-1c2b3d4e5f60")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,56}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from ``300``, ``"300s"``, ``"15m"``, ``"1h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 300, '90s', '15m', '1h', '1d')")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str
    password: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password is None) == (self.password_env is None):
            raise ValueError("basic auth needs exactly one of 'password' or 'password_env'")
        return self

    def secret(self) -> str:
        """The password, read from the environment when ``password_env`` is set."""
        return self.password if self.password is not None else _env(self.password_env)


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_token(self) -> BearerAuth:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("bearer auth needs exactly one of 'token' or 'token_env'")
        return self

    def secret(self) -> str:
        return self.token if self.token is not None else _env(self.token_env)


class CertAuth(_Strict):
    """TLS client certificate (PEM files); ``key`` may be omitted when in ``cert``."""

    type: Literal["cert"]
    cert: Path
    key: Path | None = None


FeedAuth = Annotated[BasicAuth | BearerAuth | CertAuth, Field(discriminator="type")]


def _env(name: str | None) -> str:
    value = os.environ.get(name or "")
    if not value:
        raise ConfigurationError(f"environment variable {name} (a feed secret) is not set")
    return value


class CsvMapping(_Strict):
    """Which column holds which IOC type; columns by header name or 0-based index."""

    columns: dict[str, IocType] = Field(default_factory=dict)
    delimiter: str = ","
    has_header: bool = True
    comment: str = "#"
    description_column: str | None = None


class FeedConfig(_Strict):
    """One external feed."""

    name: str
    kind: FeedKind
    url: str
    collection: str | None = None
    auth: FeedAuth | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None  # PEM file of CAs to trust for this feed's server
    interval_s: float = 3600.0
    reliability: Literal["A", "B", "C", "D", "E", "F"] = "C"
    confidence: int = Field(50, ge=0, le=100)
    tlp: Tlp = "amber"
    jurisdiction: str
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    retry_backoff_s: float = Field(1.0, ge=0)
    backoff_base_s: float = Field(30.0, gt=0)
    backoff_max_s: float = Field(3600.0, gt=0)
    page_size: int = Field(500, ge=1, le=10_000)
    enabled: bool = True
    # CSV / text lists
    csv: CsvMapping | None = None
    ioc_type: IocType = "auto"
    labels: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"feed name {value!r} must be 1-57 lower-case letters, digits or '-' "
                "(it becomes the agency id 'feed-<name>')"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return value

    @field_validator("tlp", mode="before")
    @classmethod
    def _tlp(cls, value: Any) -> Any:
        return normalise_tlp(value) if isinstance(value, str) else value

    @field_validator("jurisdiction")
    @classmethod
    def _jurisdiction(cls, value: str) -> str:
        if value not in JURISDICTIONS:
            raise ValueError(f"jurisdiction must be one of {list(JURISDICTIONS)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _interval(cls, data: Any) -> Any:
        if isinstance(data, dict) and "interval" in data:
            data = dict(data)
            data["interval_s"] = parse_duration(data.pop("interval"))
        return data

    @model_validator(mode="after")
    def _kind_needs(self) -> FeedConfig:
        if self.kind in ("taxii21", "taxii20") and not self.collection:
            raise ValueError(f"a {self.kind} feed needs 'collection' (the collection id)")
        if self.kind == "csv" and (self.csv is None or not self.csv.columns):
            raise ValueError("a csv feed needs 'csv: {columns: {<column>: <ioc type>}}'")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be >= backoff_base_s")
        return self

    @property
    def agency_id(self) -> str:
        return f"feed-{self.name}"

    def agency(self) -> Agency:
        """The source agency this feed's reports are attributed to (DOMAIN.md "Parties")."""
        return Agency(
            id=self.agency_id,
            name=f"Feed {self.name}",
            jurisdiction=self.jurisdiction,
            identity_id=f"identity--{uuid.uuid5(FEED_NAMESPACE, 'agency|' + self.name)}",
            reliability=self.reliability,
            default_confidence=self.confidence,
            roles=("publisher",),
        )


class FeedRegistry(_Strict):
    """The whole registry file."""

    feeds: tuple[FeedConfig, ...]

    def get(self, name: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        known = ", ".join(f.name for f in self.feeds) or "none"
        raise ConfigurationError(f"no feed named {name!r} in the registry (known: {known})")


def _where(loc: tuple[int | str, ...], raw: list[Any]) -> str:
    if len(loc) >= 2 and loc[0] == "feeds" and isinstance(loc[1], int):
        index = loc[1]
        entry = raw[index] if index < len(raw) and isinstance(raw[index], dict) else {}
        label = f"feeds[{index}]" + (f" ({entry['name']})" if "name" in entry else "")
        rest = [str(p) for p in loc[2:] if p not in ("BasicAuth", "BearerAuth", "CertAuth")]
        return label + ("." + ".".join(rest) if rest else "")
    return ".".join(str(p) for p in loc) or "<file>"


def parse_registry(data: Any, source: str = "<feeds>") -> FeedRegistry:
    """Validate a parsed registry document; raise ``ConfigurationError`` listing every problem."""
    if not isinstance(data, dict) or not isinstance(data.get("feeds"), list):
        raise ConfigurationError(f"{source}: expected a mapping with a 'feeds:' list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigurationError(f"{source}: 'defaults' must be a mapping")
    unknown = set(data) - {"defaults", "feeds"}
    if unknown:
        raise ConfigurationError(f"{source}: unknown top-level keys {sorted(unknown)}")
    raw: list[Any] = data["feeds"]
    merged = [defaults | entry if isinstance(entry, dict) else entry for entry in raw]
    try:
        registry = FeedRegistry.model_validate({"feeds": merged})
    except ValidationError as exc:
        lines = [
            f"  {_where(err['loc'], raw)}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise ConfigurationError(f"{source}: invalid feed registry\n" + "\n".join(lines)) from None
    names = [f.name for f in registry.feeds]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(f"{source}: duplicate feed names {dupes}")
    return registry


def load_registry(path: Path) -> FeedRegistry:
    """Read and validate the YAML registry at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read feed registry {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from None
    return parse_registry(data, str(path))
