"""Credentials from files and the production checks, for ``bootstrap``.

Settings name only the files that hold secrets (``*_file``); they are read here,
when a backend client is built, and handed to the adapters in objects whose
repr hides them, so no settings repr, log line or status output shows one.

``production_problems`` lists what ``THREATBAY_ENV=production`` refuses, each
with what to set: a plaintext API, Kafka or Elasticsearch connection, a
missing CA or credential file, a default or placeholder secret.
``check_production`` raises them together, or, with ``THREATBAY_ALLOW_INSECURE=1``
(lab use only), logs each one loudly and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from backends.elasticsearch_store import ElasticsearchAuth
from backends.kafka_bus import KafkaAuth
from core.errors import ConfigurationError
from core.settings import STAGES, Settings, StageCredential

log = logging.getLogger("threatbay.security")

#: Values that ship in examples, tutorials and images; never a production secret.
DEFAULT_SECRETS = frozenset(
    {
        "",
        "admin",
        "changeit",
        "changeme",
        "change-me",
        "changeme123",
        "default",
        "elastic",
        "kafka",
        "kafka-secret",
        "letmein",
        "password",
        "secret",
        "test",
        "threatbay",
        "123456",
    }
)
MIN_SECRET_LENGTH = 12
#: Built-in superusers: a stage runs as a least-privilege user instead.
SUPERUSERS = frozenset({"elastic", "admin", "root"})


def read_secret(path: Path) -> str:
    """The secret held in ``path`` (one line; a trailing newline is not part of it)."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def stage_of(stage: str) -> str:
    """The credential stage of a process (``feeds`` and the command line act as ``ingest``)."""
    return stage if stage in STAGES else "ingest"


def kafka_auth(settings: Settings, stage: str) -> KafkaAuth | None:
    """The principal ``stage`` connects to Kafka as; None on a PLAINTEXT cluster."""
    sec = settings.kafka_security
    if sec.protocol == "PLAINTEXT":
        return None
    cred = sec.credential(stage_of(stage))
    if not cred.username or cred.password_file is None:
        raise ConfigurationError(
            f"THREATBAY_KAFKA_SECURITY__PROTOCOL={sec.protocol} needs the {stage_of(stage)} "
            "stage's principal: set THREATBAY_KAFKA_SECURITY__STAGES__"
            f"{stage_of(stage).upper()}__USERNAME and __PASSWORD_FILE (or the default "
            "THREATBAY_KAFKA_SECURITY__USERNAME / __PASSWORD_FILE)"
        )
    return KafkaAuth(
        username=cred.username,
        password=_read(cred.password_file, "Kafka password"),
        ca_file=sec.ca_file,
        mechanism=sec.sasl_mechanism,
        check_hostname=sec.check_hostname,
    )


def elasticsearch_auth(settings: Settings, stage: str) -> ElasticsearchAuth | None:
    """The user (or API key) ``stage`` connects to Elasticsearch as; None when none is set."""
    sec = settings.elasticsearch_security
    cred = sec.credential(stage_of(stage))
    if not cred.configured and sec.ca_file is None:
        return None
    api_key = _read(cred.api_key_file, "Elasticsearch API key") if cred.api_key_file else None
    password = None
    if api_key is None and cred.password_file is not None:
        password = _read(cred.password_file, "Elasticsearch password")
    return ElasticsearchAuth(
        ca_file=sec.ca_file, username=cred.username, password=password, api_key=api_key
    )


def _read(path: Path, what: str) -> str:
    try:
        return read_secret(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} file {path}: {exc.strerror}") from exc


# ------------------------------------------------------------------ production


def production_problems(settings: Settings, stages: Iterable[str], serves_api: bool) -> list[str]:
    """What ``THREATBAY_ENV=production`` refuses for these stages, each with what to set."""
    problems: list[str] = []
    if serves_api:
        problems += _api_problems(settings)
    credential_stages = sorted({stage_of(s) for s in stages})
    if settings.bus_url.startswith("kafka:"):
        problems += _kafka_problems(settings, credential_stages)
    if settings.store_url.startswith(("http:", "https:")):
        problems += _elasticsearch_problems(settings, credential_stages)
    return problems


def _file_problem(path: Path | None, env: str, what: str) -> str | None:
    if path is None:
        return f"{what} is not set: set {env}"
    if not path.is_file():
        return f"{env}={path}: no such file ({what})"
    return None


def _api_problems(settings: Settings) -> list[str]:
    tls = settings.tls
    if not tls.enabled:
        return [
            "the API would serve plain HTTP: set THREATBAY_TLS__CERT_FILE and "
            "THREATBAY_TLS__KEY_FILE (PEM server certificate chain and key)"
        ]
    out = [
        p
        for p in (
            _file_problem(tls.cert_file, "THREATBAY_TLS__CERT_FILE", "the API's certificate"),
            _file_problem(tls.key_file, "THREATBAY_TLS__KEY_FILE", "the API's private key"),
        )
        if p
    ]
    for kind, files in (("CLIENT_CA", tls.client_ca), ("CLIENT_CRL", tls.client_crl)):
        for j, path in files.items():
            problem = _file_problem(path, f"THREATBAY_TLS__{kind}__{j}", f"{j}'s {kind.lower()}")
            if problem:
                out.append(problem)
    return out


def _secret_problem(path: Path | None, env: str, what: str) -> str | None:
    missing = _file_problem(path, env, what)
    if missing or path is None:
        return missing
    try:
        secret = read_secret(path)
    except OSError as exc:
        return f"{env}={path}: cannot be read ({exc.strerror})"
    if secret.strip().lower() in DEFAULT_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        return (
            f"{env}={path} holds a default or short {what} (under {MIN_SECRET_LENGTH} "
            "characters or a well-known value): put a generated secret there"
        )
    return None


def _kafka_problems(settings: Settings, stages: list[str]) -> list[str]:
    sec = settings.kafka_security
    prefix = "THREATBAY_KAFKA_SECURITY__"
    if sec.protocol != "SASL_SSL":
        return [
            f"THREATBAY_BUS_URL={settings.bus_url} over {sec.protocol} sends intelligence and "
            f"credentials in clear: set {prefix}PROTOCOL=SASL_SSL, {prefix}CA_FILE and each "
            f"stage's {prefix}STAGES__<STAGE>__USERNAME / __PASSWORD_FILE"
        ]
    out = []
    ca = _file_problem(sec.ca_file, f"{prefix}CA_FILE", "the CA of the Kafka brokers")
    if ca:
        out.append(ca)
    if not sec.check_hostname:
        out.append(f"{prefix}CHECK_HOSTNAME=false accepts any broker: remove it")
    for stage in stages:
        cred, env = _stage_credential(sec.stages, sec.username, sec.password_file, stage, prefix)
        if not cred.username:
            out.append(f"no Kafka principal for the {stage} stage: set {env}USERNAME")
        problem = _secret_problem(cred.password_file, f"{env}PASSWORD_FILE", "Kafka password")
        if problem:
            out.append(problem)
    return out


def _elasticsearch_problems(settings: Settings, stages: list[str]) -> list[str]:
    sec = settings.elasticsearch_security
    prefix = "THREATBAY_ELASTICSEARCH_SECURITY__"
    out = []
    plain = [u for u in settings.store_url.split(",") if not u.strip().startswith("https:")]
    if plain:
        out.append(
            f"THREATBAY_STORE_URL has plain-HTTP nodes ({', '.join(plain)}): use https:// "
            f"and set {prefix}CA_FILE"
        )
    ca = _file_problem(sec.ca_file, f"{prefix}CA_FILE", "the CA of the Elasticsearch nodes")
    if ca:
        out.append(ca)
    for stage in stages:
        own = sec.stages.get(stage)
        if own is not None and own.api_key_file is not None:
            env = f"{prefix}STAGES__{stage.upper()}__API_KEY_FILE"
            problem = _secret_problem(own.api_key_file, env, "Elasticsearch API key")
            if problem:
                out.append(problem)
            continue
        if (own is None or not own.configured) and sec.api_key_file is not None:
            problem = _secret_problem(
                sec.api_key_file, f"{prefix}API_KEY_FILE", "Elasticsearch API key"
            )
            if problem:
                out.append(problem)
            continue
        cred, env = _stage_credential(sec.stages, sec.username, sec.password_file, stage, prefix)
        if not cred.username:
            out.append(
                f"no Elasticsearch user for the {stage} stage: set {env}USERNAME and "
                f"{env}PASSWORD_FILE (or {env}API_KEY_FILE)"
            )
        elif cred.username in SUPERUSERS:
            out.append(
                f"the {stage} stage would use the Elasticsearch superuser {cred.username!r}: give "
                "it its own least-privilege user (deploy/dev/SECURE.md lists the roles)"
            )
        problem = _secret_problem(
            cred.password_file, f"{env}PASSWORD_FILE", "Elasticsearch password"
        )
        if problem:
            out.append(problem)
    return out


def _stage_credential(
    stages: dict[str, StageCredential],
    username: str | None,
    password_file: Path | None,
    stage: str,
    prefix: str,
) -> tuple[StageCredential, str]:
    """The credential a stage would use and the env prefix to name when it is wrong."""
    own = stages.get(stage)
    if own is not None and (own.username or own.password_file):
        return own, f"{prefix}STAGES__{stage.upper()}__"
    return StageCredential(username=username, password_file=password_file), (
        f"{prefix}STAGES__{stage.upper()}__ (or {prefix})"
        if not (username or password_file)
        else prefix
    )


def check_production(settings: Settings, stages: Iterable[str], serves_api: bool) -> None:
    """Refuse insecure production settings; with ``allow_insecure``, say so loudly instead."""
    if settings.env != "production":
        return
    problems = production_problems(settings, list(stages), serves_api)
    if not problems:
        return
    if settings.allow_insecure:
        for problem in problems:
            log.warning("INSECURE (THREATBAY_ALLOW_INSECURE=1, lab use only): %s", problem)
        log.warning(
            "INSECURE: THREATBAY_ENV=production is running with %d security check(s) overridden "
            "by THREATBAY_ALLOW_INSECURE=1; never do this with real intelligence",
            len(problems),
        )
        return
    lines = "\n  - ".join(problems)
    raise ConfigurationError(
        f"THREATBAY_ENV=production refuses these settings:\n  - {lines}\n"
        "(THREATBAY_ALLOW_INSECURE=1 overrides this for a lab, loudly)"
    )
