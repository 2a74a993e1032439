"""``deploy/compose.yaml`` is secure by default and generated from the secured dev stack (issue 20).

There is no Docker engine here, so the compose stack is never started; instead
these tests prove it is *the same configuration* ``deploy/dev/services up
--secure [--cluster]`` runs (regenerating it changes nothing), that every
ThreatBay service in it passes the production checks with the secrets the
generator makes, and that each stage gets only its own credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import names
from core.settings import Settings
from threatbay.bootstrap import STAGE_TOPICS
from threatbay.security import production_problems

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MAKE = DEPLOY / "make_compose.py"
FILES = ("compose.yaml", "compose.cluster.yaml")
STAGE_SERVICES = {
    "ingest-api": "ingest",
    "correlator": "correlator",
    "alerter": "alerts",
    "rescore": "rescore",
}


def compose(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return doc


def generator() -> Any:
    sys.path.insert(0, str(DEPLOY))
    try:
        import make_compose  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEPLOY))
    return make_compose


def test_the_committed_compose_files_are_what_the_dev_stack_configuration_generates() -> None:
    res = subprocess.run([sys.executable, str(MAKE), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``make_compose.py secrets`` makes for a trial (CA, certificates, passwords)."""
    folder = tmp_path_factory.mktemp("compose") / "secrets"
    res = subprocess.run(
        [sys.executable, str(MAKE), "secrets", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return folder


@pytest.mark.parametrize("name", FILES)
def test_every_threatbay_service_passes_the_production_checks(
    name: str, secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = compose(name)
    for service, stage in STAGE_SERVICES.items():
        env = doc["services"][service]["environment"]
        mounted = {s["target"] for s in doc["services"][service]["secrets"]}
        for key in [k for k in os.environ if k.startswith("THREATBAY_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if value.startswith("/run/secrets/"):
                file = value.removeprefix("/run/secrets/")
                assert file in mounted, f"{service}: {key} names {file}, which is not mounted"
                value = str(secrets / ("tls/ca.pem" if file == "ca.pem" else file))
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.env == "production"
        problems = production_problems(settings, [stage], serves_api=stage == "ingest")
        assert problems == [], (service, problems)


@pytest.mark.parametrize("name", FILES)
def test_each_stage_mounts_only_its_own_credentials(name: str) -> None:
    doc = compose(name)
    for service, stage in STAGE_SERVICES.items():
        files = {s["target"] for s in doc["services"][service]["secrets"]}
        passwords = {f for f in files if f.endswith(".password")}
        assert passwords == {f"kafka-{stage}.password", f"es-{stage}.password"}, service
        env = doc["services"][service]["environment"]
        others = [k for k in env if "__STAGES__" in k and f"__STAGES__{stage.upper()}__" not in k]
        assert others == [], (service, others)


@pytest.mark.parametrize("name", FILES)
def test_nothing_listens_or_connects_in_plaintext(name: str) -> None:
    doc = compose(name)
    cluster = name == "compose.cluster.yaml"
    nodes = 3 if cluster else 1
    for i in range(1, nodes + 1):
        props = DEPLOY / "compose" / f"kafka-{i}{'.cluster' if cluster else ''}.properties"
        text = props.read_text()
        assert "PLAINTEXT" not in text
        assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL" in text
        assert "listener.name.controller.ssl.client.auth=required" in text
        assert "allow.everyone.if.no.acl.found=false" in text
        assert "auto.create.topics.enable=false" in text
        if cluster:
            assert "default.replication.factor=3" in text and "min.insync.replicas=2" in text
        es = (DEPLOY / "compose" / f"es-{i}{'.cluster' if cluster else ''}.yml").read_text()
        for line in (
            "xpack.security.enabled: true",
            "xpack.security.http.ssl.enabled: true",
            "xpack.security.transport.ssl.verification_mode: full",
        ):
            assert line in es
    for service in STAGE_SERVICES:
        env = doc["services"][service]["environment"]
        assert env["THREATBAY_KAFKA_SECURITY__PROTOCOL"] == "SASL_SSL"
        assert all(u.startswith("https://") for u in env["THREATBAY_STORE_URL"].split(","))
        assert len(env["THREATBAY_STORE_URL"].split(",")) == nodes
    assert doc["services"]["ingest-api"]["environment"]["THREATBAY_TLS__CERT_FILE"]


def test_the_stage_grants_cover_what_each_stage_uses() -> None:
    """The Kafka ACLs of the dev stack (and so of compose) against bootstrap.STAGE_TOPICS."""
    grants = generator().SVC.KAFKA_GRANTS
    for stage, (write, read) in STAGE_TOPICS.items():
        assert set(write) == set(grants[stage]["write"]), stage
        assert set(read) == set(grants[stage]["read"]), stage
    groups = {v for k, v in vars(names).items() if k.startswith("GROUP_")}
    assert groups == {g for grant in grants.values() for g in grant["groups"]}


def test_every_index_is_written_by_some_stage_role() -> None:
    """An index no stage may write is a feature that fails only on the secured stack."""
    writes = {i for stage in generator().SVC.ES_WRITES.values() for i in stage}
    indices = {v.removeprefix("threatbay-") for k, v in vars(names).items()
               if k.startswith("INDEX_")}  # fmt: skip
    assert indices <= writes, sorted(indices - writes)


def test_the_compose_roles_are_the_dev_stacks_on_production_names() -> None:
    svc = generator().SVC
    roles = yaml.safe_load((DEPLOY / "compose" / "roles.yml").read_text())
    dev = svc.es_roles()
    assert set(roles) == set(dev) - {"threatbay_tester"}
    for role, spec in roles.items():
        assert spec["cluster"] == dev[role]["cluster"]
        for got, want in zip(spec["indices"], dev[role]["indices"], strict=True):
            assert got["privileges"] == want["privileges"]
            assert got["names"] == [n.removeprefix("*") for n in want["names"]]
