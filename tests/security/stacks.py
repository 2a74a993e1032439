"""The secured and clustered dev stacks for tests (``deploy/dev/services up --secure/--cluster``).

Which stack a test gets, in this order:

- ``THREATBAY_TEST_STACK=<stack.json>``: a stack someone started (used as it is);
- ``THREATBAY_START_STACK=secure|cluster|secure-cluster``: started here once per session
  under ``<repo>/.run/test-stack`` and stopped at the end of the session (``deploy/dev/test``
  sets ``secure-cluster``: the secured end-to-end flow and the fault tests share it);
- else ``<repo>/.run/stack.json`` when it describes a running secure/cluster stack.

A test that needs what the stack does not give (a cluster, security) is skipped on a
developer machine and fails under ``CI=true`` / ``THREATBAY_REQUIRE_SERVICES=1``.

``Stack`` turns ``stack.json`` into what ThreatBay and the checks need: the settings
and environment of each stage process (each stage its own Kafka principal and
Elasticsearch user), admin clients, and a fresh namespace with the stage ACLs
(``grant``) that ``drop`` removes again.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.elasticsearch_store import ElasticsearchAuth
from backends.kafka_bus import KafkaAuth
from core.settings import STAGES, Settings
from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "deploy" / "dev" / "services"
MANAGED_RUN = REPO / ".run" / "test-stack"


class Stack:
    """A running stack described by its ``stack.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_root = path.parent
        self.doc: dict[str, Any] = json.loads(path.read_text())
        self.k: dict[str, Any] = self.doc["kafka"]
        self.e: dict[str, Any] = self.doc["elasticsearch"]

    # -- what it is

    @property
    def mode(self) -> str:
        return str(self.doc["mode"])

    @property
    def secure(self) -> bool:
        return bool(self.doc["secure"])

    @property
    def cluster(self) -> bool:
        return bool(self.doc["cluster"])

    @property
    def bootstrap(self) -> str:
        return str(self.k["bootstrap_servers"])

    @property
    def es_urls(self) -> list[str]:
        return list(self.e["urls"])

    @property
    def store_url(self) -> str:
        """Every node: the client moves on when one dies (backends/elasticsearch_store.py)."""
        return ",".join(self.es_urls)

    @property
    def ca_file(self) -> Path | None:
        ca = self.k.get("ssl_cafile")
        return Path(ca) if ca else None

    @property
    def replication_factor(self) -> int:
        return int(self.k["replication_factor"])

    @property
    def es_replicas(self) -> int:
        return int(self.e["number_of_replicas"])

    def services(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``deploy/dev/services ARGS`` on this stack's run dir (kill/start/... a node)."""
        env = {**os.environ, "THREATBAY_RUN": str(self.run_root)}
        return subprocess.run(
            [sys.executable, str(SERVICES), *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    # -- credentials (files; passwords never leave this process)

    def _password(self, system: str, user: str) -> str:
        entry = (
            (self.k["admin"] if user == "admin" else self.k["principals"][user])
            if system == "kafka"
            else (self.e["admin"] if user == "admin" else self.e["users"][user])
        )
        return Path(entry["password_file"]).read_text().strip()

    def password_file(self, system: str, user: str) -> Path:
        entry = self.k["principals"][user] if system == "kafka" else self.e["users"][user]
        return Path(entry["password_file"])

    def kafka_auth(self, user: str) -> KafkaAuth | None:
        if not self.secure:
            return None
        return KafkaAuth(user, self._password("kafka", user), ca_file=self.ca_file)

    def es_auth(self, user: str) -> ElasticsearchAuth | None:
        if not self.secure:
            return None
        return ElasticsearchAuth(self.ca_file, user, self._password("es", user))

    def kafka_client_config(self, user: str = "admin") -> dict[str, Any]:
        config: dict[str, Any] = {"bootstrap_servers": self.bootstrap.split(",")}
        auth = self.kafka_auth(user)
        if auth is not None:
            config |= auth.client_config()
        return config

    def es_http(self, user: str = "admin") -> httpx.Client:
        """A plain HTTP client on the first live node (checks trust nothing of ours)."""
        auth = (user, self._password("es", user)) if self.secure else None
        verify: Any = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
        for url in self.es_urls:
            client = httpx.Client(base_url=url, auth=auth, verify=verify, timeout=30)
            try:
                client.get("/_cluster/health", timeout=3)
                return client
            except httpx.HTTPError:
                client.close()
        return httpx.Client(base_url=self.es_urls[0], auth=auth, verify=verify, timeout=30)

    # -- ThreatBay's configuration on this stack

    def env(self, namespace: str, data_dir: Path) -> dict[str, str]:
        """Environment of a stage process: every stage's principal, the stage picks its own."""
        env = {
            "THREATBAY_BUS_URL": f"kafka://{self.bootstrap}",
            "THREATBAY_STORE_URL": self.store_url,
            "THREATBAY_NAMESPACE": namespace,
            "THREATBAY_DATA_DIR": str(data_dir),
            "THREATBAY_KAFKA__REPLICATION_FACTOR": str(self.replication_factor),
            "THREATBAY_ELASTICSEARCH__REPLICAS": str(self.es_replicas),
        }
        if self.secure:
            assert self.ca_file is not None
            kp, ep = "THREATBAY_KAFKA_SECURITY__", "THREATBAY_ELASTICSEARCH_SECURITY__"
            env |= {f"{kp}PROTOCOL": "SASL_SSL", f"{kp}CA_FILE": str(self.ca_file)}
            env[f"{ep}CA_FILE"] = str(self.ca_file)
            for stage in STAGES:
                env[f"{kp}STAGES__{stage.upper()}__USERNAME"] = stage
                env[f"{kp}STAGES__{stage.upper()}__PASSWORD_FILE"] = str(
                    self.password_file("kafka", stage)
                )
                env[f"{ep}STAGES__{stage.upper()}__USERNAME"] = stage
                env[f"{ep}STAGES__{stage.upper()}__PASSWORD_FILE"] = str(
                    self.password_file("es", stage)
                )
        return env

    def settings(self, namespace: str, data_dir: Path, **extra: Any) -> Settings:
        """Settings of this test process: the stage principals, or ``user`` for all of them."""
        saved = {k: v for k, v in os.environ.items() if k.startswith("THREATBAY_")}
        try:
            for k in saved:
                del os.environ[k]
            os.environ.update(self.env(namespace, data_dir))
            return Settings(**extra)
        finally:
            for k in [k for k in os.environ if k.startswith("THREATBAY_")]:
                del os.environ[k]
            os.environ.update(saved)

    # -- namespaces with the stage ACLs

    def grant(self, namespace: str) -> None:
        """As admin: create the namespace's topics and grant the stage ACLs on them."""
        if not self.secure:
            return
        from kafka.admin import (
            ACL,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            KafkaAdminClient,
            NewTopic,
            ResourcePattern,
            ResourceType,
        )
        from kafka.errors import TopicAlreadyExistsError

        from backends.kafka_bus import MAX_MESSAGE_BYTES
        from core import names

        admin = KafkaAdminClient(**self.kafka_client_config("admin"))
        try:
            topics = [
                NewTopic(
                    namespace + t,
                    num_partitions=int(self.k["partitions"]),
                    replication_factor=self.replication_factor,
                    topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
                )
                for t in (
                    names.TOPIC_RAW,
                    names.TOPIC_DLQ,
                    names.TOPIC_CHANGES,
                    names.TOPIC_ALERTS,
                    names.TOPIC_CASES,
                )  # fmt: skip
            ]
            try:
                admin.create_topics(topics, timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass
            admin.wait_for_topics([t.name for t in topics], timeout_ms=60_000)
            acls = [
                ACL(
                    principal=a["principal"],
                    host="*",
                    operation=ACLOperation[a["operation"]],
                    permission_type=ACLPermissionType.ALLOW,
                    resource_pattern=ResourcePattern(
                        ResourceType[a["resource_type"]],
                        a["name"].replace("{ns}", namespace),
                        ACLResourcePatternType[a["pattern_type"]],
                    ),
                )
                for a in self.k["acl_template"]
            ]
            result = admin.create_acls(acls)
            if result["failed"]:
                raise AssertionError(f"ACLs not created: {result['failed'][:3]}")
        finally:
            admin.close()
        self._wait_for_acls(namespace + names.TOPIC_RAW)

    def _wait_for_acls(self, topic: str, timeout_s: float = 30.0) -> None:
        """Brokers apply new ACLs from the metadata log a moment after the create answers."""
        from kafka.admin import KafkaAdminClient

        probe = KafkaAdminClient(**self.kafka_client_config("ingest"))
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if all(b_ok for b_ok in self._describable(probe, topic)):
                    return
                time.sleep(0.2)
        finally:
            probe.close()
        raise AssertionError(f"the stage ACLs on {topic} did not apply within {timeout_s}s")

    @staticmethod
    def _describable(admin: Any, topic: str) -> list[bool]:
        [meta] = admin.describe_topics([topic])
        return [meta.get("error_code", 0) == 0]

    def drop(self, namespace: str) -> None:
        """Remove the namespace's topics, stage ACLs and indices (best effort)."""
        assert namespace, "refusing to drop the production names"
        try:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(**self.kafka_client_config("admin"))
            try:
                ours = [t for t in admin.list_topics() if t.startswith(namespace)]
                if ours:
                    admin.delete_topics(ours)
                if self.secure:
                    # Exactly the bindings grant() made: a MATCH filter on the namespace would
                    # also take the tester's PREFIXED "test-" grant with them.
                    admin.delete_acls(self._acl_filters(namespace))
            finally:
                admin.close()
        except Exception as exc:  # leftovers under a unique prefix harm no one
            print(f"[stacks] Kafka cleanup of {namespace} incomplete: {exc!r}")
        es = self.es_http()
        try:
            es.delete(f"/{namespace}*", params={"expand_wildcards": "all"})
        except httpx.HTTPError as exc:
            print(f"[stacks] Elasticsearch cleanup of {namespace} incomplete: {exc!r}")
        finally:
            es.close()

    def _acl_filters(self, namespace: str) -> list[Any]:
        from kafka.admin import (
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePatternFilter,
            ResourceType,
        )

        return [
            ACLFilter(
                principal=a["principal"],
                host="*",
                operation=ACLOperation[a["operation"]],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePatternFilter(
                    ResourceType[a["resource_type"]],
                    a["name"].replace("{ns}", namespace),
                    ACLResourcePatternType.LITERAL,
                ),
            )
            for a in self.k["acl_template"]
        ]

    # -- health

    def problem(self) -> str | None:
        """None when every Kafka broker and ES node answers, else what does not."""
        from kafka.admin import KafkaAdminClient

        try:
            admin = KafkaAdminClient(**self.kafka_client_config("admin"), request_timeout_ms=10_000)
            try:
                brokers = admin.describe_cluster().get("brokers") or []
            finally:
                admin.close()
        except Exception as exc:
            return f"Kafka at {self.bootstrap}: {type(exc).__name__}: {exc}"
        want = len(self.k["nodes"])
        if len(brokers) < want:
            return f"Kafka at {self.bootstrap}: {len(brokers)} of {want} brokers"
        es = self.es_http()
        try:
            health = es.get("/_cluster/health", params={"timeout": "10s"}).json()
        except httpx.HTTPError as exc:
            return f"Elasticsearch at {self.store_url}: {exc!r}"
        finally:
            es.close()
        if health.get("number_of_nodes") != len(self.e["nodes"]):
            return f"Elasticsearch: {health.get('number_of_nodes')} nodes"
        return None


def fresh_namespace(tag: str) -> str:
    """A namespace the ``tester`` principal owns too (``test-`` prefix), unique per call."""
    return f"test-{tag}-{uuid.uuid4().hex[:8]}-"


class _Manager:
    """Finds or starts the session's stack; stops it at the end if it started it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stack: Stack | None = None
        self.started = False
        self.error: str | None = None

    def get(self) -> Stack | None:
        with self.lock:
            if self.stack is None and self.error is None:
                self.stack, self.error = self._find()
            return self.stack

    def _find(self) -> tuple[Stack | None, str | None]:
        given = os.environ.get("THREATBAY_TEST_STACK")
        if given:
            return Stack(Path(given)), None
        start = os.environ.get("THREATBAY_START_STACK", "")
        if start:
            flags = {"secure": ["--secure"], "cluster": ["--cluster"]}.get(
                start, ["--secure", "--cluster"]
            )
            env = {**os.environ, "THREATBAY_RUN": str(MANAGED_RUN)}
            t0 = time.monotonic()
            print(f"[stacks] starting the {start} stack (deploy/dev/services up {' '.join(flags)})")
            res = subprocess.run(
                [sys.executable, str(SERVICES), "up", *flags],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=900,
            )
            self.started = True
            if res.returncode != 0:
                return None, f"`services up {' '.join(flags)}` failed:\n{res.stdout[-3000:]}"
            print(f"[stacks] {start} stack up in {time.monotonic() - t0:.1f}s")
            return Stack(MANAGED_RUN / "stack.json"), None
        default = REPO / ".run" / "stack.json"
        if default.exists():
            stack = Stack(default)
            if stack.mode != "plain":
                return stack, None
        return None, (
            "no secure or cluster stack: run `deploy/dev/services up --secure [--cluster]`, "
            "or set THREATBAY_TEST_STACK=<stack.json> or THREATBAY_START_STACK=secure-cluster"
        )

    def stop(self) -> None:
        with self.lock:
            if self.started:
                env = {**os.environ, "THREATBAY_RUN": str(MANAGED_RUN)}
                subprocess.run(
                    [sys.executable, str(SERVICES), "down"], env=env, cwd=REPO, timeout=300
                )
                self.started = False
                self.stack = None


MANAGER = _Manager()


def need_stack(*, secure: bool = False, cluster: bool = False) -> Stack:
    """The session's stack, which must be secure / a cluster as asked (skip, or fail in CI)."""
    stack = MANAGER.get()

    def check() -> str | None:
        if stack is None:
            return MANAGER.error
        if secure and not stack.secure:
            return f"the {stack.mode} stack at {stack.path} is not secured"
        if cluster and not stack.cluster:
            return f"the {stack.mode} stack at {stack.path} is not a cluster"
        return stack.problem()

    require_service("the secured/clustered dev stack", check)
    assert stack is not None
    return stack


@pytest.fixture(scope="session")
def stack_session() -> Iterator[None]:
    """Stops a stack this session started (used by the stack fixtures below)."""
    yield
    MANAGER.stop()


@pytest.fixture
def secure_stack(stack_session: None) -> Stack:
    return need_stack(secure=True)


@pytest.fixture
def cluster_stack(stack_session: None) -> Stack:
    return need_stack(cluster=True)
