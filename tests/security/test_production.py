"""``THREATBAY_ENV=production`` refuses plaintext, missing CA files and default secrets (issue 20).

Every refusal says what to set; ``THREATBAY_ALLOW_INSECURE=1`` turns them into loud
warnings for a lab. The checks run before any connection is made, so these tests
need no server; the last ones run the real ``threatbay`` command.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import Settings
from threatbay.security import check_production, production_problems

REPO = Path(__file__).resolve().parents[2]
THREATBAY = REPO / ".venv" / "bin" / "threatbay"
STAGES = ("ingest", "correlator", "alerts", "rescore")


def secret(path: Path, value: str = "s3cr3t-generated-0123456789") -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def secure_env(tmp: Path) -> dict[str, str]:
    """A complete production configuration (files exist, secrets generated)."""
    for name in ("ca.pem", "api.pem", "api.key", "gd-ca.pem"):
        (tmp / name).write_text("pem")
    env = {
        "THREATBAY_ENV": "production",
        "THREATBAY_DATA_DIR": str(tmp / "data"),
        "THREATBAY_BUS_URL": "kafka://kafka-1:9092,kafka-2:9092",
        "THREATBAY_STORE_URL": "https://es-1:9200,https://es-2:9200",
        "THREATBAY_TLS__CERT_FILE": str(tmp / "api.pem"),
        "THREATBAY_TLS__KEY_FILE": str(tmp / "api.key"),
        "THREATBAY_TLS__CLIENT_CA__GD": str(tmp / "gd-ca.pem"),
        "THREATBAY_KAFKA_SECURITY__PROTOCOL": "SASL_SSL",
        "THREATBAY_KAFKA_SECURITY__CA_FILE": str(tmp / "ca.pem"),
        "THREATBAY_ELASTICSEARCH_SECURITY__CA_FILE": str(tmp / "ca.pem"),
    }
    for stage in STAGES:
        for system, prefix in (("kafka", "KAFKA"), ("es", "ELASTICSEARCH")):
            env[f"THREATBAY_{prefix}_SECURITY__STAGES__{stage.upper()}__USERNAME"] = stage
            env[f"THREATBAY_{prefix}_SECURITY__STAGES__{stage.upper()}__PASSWORD_FILE"] = str(
                secret(tmp / f"{system}-{stage}.password")
            )
    return env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("THREATBAY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def problems(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, serves_api: bool = True) -> str:
    found = production_problems(settings_from(env, monkeypatch), STAGES, serves_api)
    return "\n".join(found)


def test_a_complete_production_configuration_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert problems(secure_env(tmp_path), monkeypatch) == ""


def test_plaintext_api_is_refused_with_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secure_env(tmp_path)
    del env["THREATBAY_TLS__CERT_FILE"], env["THREATBAY_TLS__KEY_FILE"]
    text = problems(env, monkeypatch)
    assert "the API would serve plain HTTP" in text
    assert "set THREATBAY_TLS__CERT_FILE and THREATBAY_TLS__KEY_FILE" in text
    assert problems(env, monkeypatch, serves_api=False) == ""  # a correlator serves no API


def test_plaintext_kafka_is_refused_with_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secure_env(tmp_path) | {"THREATBAY_KAFKA_SECURITY__PROTOCOL": "PLAINTEXT"}
    text = problems(env, monkeypatch)
    assert "over PLAINTEXT sends intelligence and credentials in clear" in text
    assert "set THREATBAY_KAFKA_SECURITY__PROTOCOL=SASL_SSL" in text


def test_plain_http_elasticsearch_is_refused_with_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secure_env(tmp_path) | {"THREATBAY_STORE_URL": "https://es-1:9200,http://es-2:9200"}
    text = problems(env, monkeypatch)
    assert "plain-HTTP nodes (http://es-2:9200): use https://" in text


def test_missing_ca_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = secure_env(tmp_path)
    (tmp_path / "ca.pem").unlink()
    (tmp_path / "gd-ca.pem").unlink()
    text = problems(env, monkeypatch)
    assert f"THREATBAY_KAFKA_SECURITY__CA_FILE={tmp_path / 'ca.pem'}: no such file" in text
    assert f"THREATBAY_ELASTICSEARCH_SECURITY__CA_FILE={tmp_path / 'ca.pem'}: no such" in text
    assert f"THREATBAY_TLS__CLIENT_CA__GD={tmp_path / 'gd-ca.pem'}: no such file" in text
    del env["THREATBAY_KAFKA_SECURITY__CA_FILE"]
    text = problems(env, monkeypatch)
    assert "the CA of the Kafka brokers is not set: set THREATBAY_KAFKA_SECURITY__CA_FILE" in text


@pytest.mark.parametrize("value", ["changeme", "elastic", "password\n", "short"])
def test_default_or_short_secrets_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    env = secure_env(tmp_path)
    secret(tmp_path / "kafka-correlator.password", value)
    text = problems(env, monkeypatch)
    assert "THREATBAY_KAFKA_SECURITY__STAGES__CORRELATOR__PASSWORD_FILE=" in text
    assert "holds a default or short Kafka password" in text


def test_missing_stage_principals_and_superusers_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secure_env(tmp_path)
    del env["THREATBAY_KAFKA_SECURITY__STAGES__ALERTS__USERNAME"]
    del env["THREATBAY_KAFKA_SECURITY__STAGES__ALERTS__PASSWORD_FILE"]
    env["THREATBAY_ELASTICSEARCH_SECURITY__STAGES__RESCORE__USERNAME"] = "elastic"
    text = problems(env, monkeypatch)
    assert "no Kafka principal for the alerts stage" in text
    assert "THREATBAY_KAFKA_SECURITY__STAGES__ALERTS__" in text
    assert "the rescore stage would use the Elasticsearch superuser 'elastic'" in text


def test_the_embedded_backends_are_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from({"THREATBAY_ENV": "production"}, monkeypatch)
    with pytest.raises(ConfigurationError, match="embedded backend"):
        settings.check_production()


def test_allow_insecure_warns_loudly_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = secure_env(tmp_path) | {"THREATBAY_KAFKA_SECURITY__PROTOCOL": "PLAINTEXT"}
    del env["THREATBAY_TLS__CERT_FILE"]
    with pytest.raises(ConfigurationError) as refused:
        check_production(settings_from(env, monkeypatch), STAGES, serves_api=True)
    assert "THREATBAY_ALLOW_INSECURE=1 overrides this" in str(refused.value)
    caplog.set_level(logging.WARNING, logger="threatbay.security")
    check_production(
        settings_from(env | {"THREATBAY_ALLOW_INSECURE": "1"}, monkeypatch), STAGES, True
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("INSECURE (THREATBAY_ALLOW_INSECURE=1, lab use only)" in w for w in warnings) == 2
    assert any("2 security check(s) overridden" in w for w in warnings)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("THREATBAY_")}
    return subprocess.run(
        [str(THREATBAY), *args], env=base | env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.timeout(120)
def test_the_real_commands_refuse_before_connecting(tmp_path: Path) -> None:
    """Plaintext URLs pointing nowhere: the refusal comes first, as one message, no traceback."""
    env = {
        "THREATBAY_ENV": "production",
        "THREATBAY_DATA_DIR": str(tmp_path),
        "THREATBAY_BUS_URL": "kafka://127.0.0.1:9",
        "THREATBAY_STORE_URL": "http://127.0.0.1:9",
    }
    api = run(["api"], env)
    assert api.returncode == 2, api.stderr
    assert "THREATBAY_ENV=production refuses these settings" in api.stderr
    assert "set THREATBAY_TLS__CERT_FILE" in api.stderr
    assert "THREATBAY_KAFKA_SECURITY__PROTOCOL=SASL_SSL" in api.stderr
    assert "use https://" in api.stderr
    assert "Traceback" not in api.stderr
    correlate = run(["correlate"], env)
    assert correlate.returncode == 2
    assert "THREATBAY_TLS__CERT_FILE" not in correlate.stderr  # it serves no API
    assert "THREATBAY_KAFKA_SECURITY__PROTOCOL=SASL_SSL" in correlate.stderr
