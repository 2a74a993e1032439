#!/usr/bin/env python3
"""Check a running `deploy/dev/services up --secure [--cluster]` stack from the client side.

    python3 -m venv .run/venv-probe
    .run/venv-probe/bin/pip install kafka-python==3.0.12 'elasticsearch>=9,<10'
    .run/venv-probe/bin/python deploy/dev/secure_probe.py [STACK_JSON]

Reads <run>/stack.json (default: ${THREATBAY_RUN:-<repo>/.run}/stack.json) and proves, with the
same client libraries and settings ThreatBay uses (kafka-python, elasticsearch-py 9):
  * plaintext Kafka / plain http / TLS without SASL / a wrong password are refused;
  * each stage principal can do its own job and is refused one step outside it
    (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, Elasticsearch 403);
  * a fresh test namespace is given the stage ACLs by replaying stack.json's acl_template
    as admin (then removed again), and the tester principal owns the `test-` prefix.
Prints one PASS/FAIL line per check (never a secret); exit status 1 if any check failed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import struct
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import elasticsearch
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

REPO = Path(__file__).resolve().parents[2]
FAILED: list[str] = []


def check(name: str, fn: Callable[[], str]) -> None:
    t0 = time.monotonic()
    try:
        detail = fn()
        print(f"PASS  {name}  ({detail}; {time.monotonic() - t0:.1f}s)", flush=True)
    except Exception as exc:  # every failure is reported, the run goes on
        FAILED.append(name)
        print(f"FAIL  {name}  ({type(exc).__name__}: {exc})", flush=True)


def refused(fn: Callable[[], Any], *errors: str) -> str:
    """Run fn, which must fail with an exception whose type or text names one of errors."""
    try:
        fn()
    except Exception as exc:  # the refusal is the expected outcome
        text = f"{type(exc).__name__}: {exc}"
        if any(e in text for e in errors):
            return "refused: " + text[:160]
        raise AssertionError(f"failed, but not as expected ({errors}): {text[:300]}") from exc
    raise AssertionError("was allowed")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def refused_why(fn: Callable[[], Any], why: str) -> str:
    """fn must fail; kafka-python often only logs the cause (it retries until its bootstrap
    timeout, or a consumer just reads nothing), so the cause is looked for in its log records."""
    handler = _Records()
    logger = logging.getLogger("kafka")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        outcome = refused(fn, "KafkaTimeoutError", "NoBrokersAvailable", "nothing read", why)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    causes = [line for line in handler.lines if why in line]
    if why not in outcome and not causes:
        raise AssertionError(f"refused, but {why!r} is not among the causes: {outcome}")
    return outcome[:80] + (f"; logged cause: {causes[0][-150:]}" if causes else "")


class Stack:
    def __init__(self, path: Path) -> None:
        self.doc = json.loads(path.read_text())
        if not self.doc["secure"]:
            raise SystemExit(f"{path} describes a {self.doc['mode']} stack, not a secure one")
        self.k = self.doc["kafka"]
        self.e = self.doc["elasticsearch"]

    def kafka_password(self, user: str) -> str:
        entry = self.k["admin"] if user == "admin" else self.k["principals"][user]
        return Path(entry["password_file"]).read_text().strip()

    def es_password(self, user: str) -> str:
        entry = self.e["admin"] if user == "admin" else self.e["users"][user]
        return Path(entry["password_file"]).read_text().strip()

    # The exact kafka-python settings (also in deploy/dev/SECURE.md).
    def kafka(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.k["bootstrap_servers"].split(","),
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": password or self.kafka_password(user),
            "ssl_cafile": self.k["ssl_cafile"],
        }

    def es(self, user: str, **kw: Any) -> Elasticsearch:
        # The exact elasticsearch-py settings (also in deploy/dev/SECURE.md).
        return Elasticsearch(
            self.e["urls"],
            ca_certs=self.e["ca_certs"],
            basic_auth=(user, self.es_password(user)),
            **kw,
        )


def produce(stack: Stack, user: str, topic: str, value: bytes = b"probe") -> str:
    producer = KafkaProducer(
        **stack.kafka(user),
        acks="all",
        enable_idempotence=True,
        max_block_ms=15000,
        request_timeout_ms=15000,
    )
    try:
        meta = producer.send(topic, key=b"probe", value=value).get(timeout=30)
        return f"offset {meta.offset} on {topic}[{meta.partition}]"
    finally:
        producer.close(timeout=5)


def consume(stack: Stack, user: str, topic: str, group: str, wait_s: float = 45) -> str:
    consumer = KafkaConsumer(
        topic,
        **stack.kafka(user),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30000,
    )
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=1000)
            if batches:
                consumer.commit()
                n = sum(len(v) for v in batches.values())
                return f"{n} record(s) from {topic} in group {group}, offsets committed"
        raise AssertionError(f"nothing read from {topic} in {wait_s:.0f} s")
    finally:
        consumer.close(autocommit=False)


def raw_plaintext(port: int) -> str:
    """Send an ApiVersions v0 request in plaintext; a TLS listener must not answer it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        body = struct.pack(">hhih", 18, 0, 7, 5) + b"probe"
        sock.sendall(struct.pack(">i", len(body)) + body)
        try:
            data = sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            return "no Kafka answer (reset/timeout)"
    if len(data) >= 8 and struct.unpack(">i", data[4:8])[0] == 7:
        raise AssertionError("a plaintext ApiVersions request was answered")
    return f"no Kafka answer ({len(data)} bytes back: {data[:7]!r}...)"


def main() -> int:
    run = Path(os.environ.get("THREATBAY_RUN", str(REPO / ".run")))
    stack = Stack(Path(sys.argv[1]) if len(sys.argv) > 1 else run / "stack.json")
    k, e = stack.k, stack.e
    print(f"stack: {stack.doc['mode']}  kafka {k['bootstrap_servers']}  es {e['urls']}")
    ns = f"test-probe-{uuid.uuid4().hex[:8]}-"

    # ------------------------------------------------------------- transport refusals
    for node in k["nodes"]:
        check(
            f"kafka {node['name']}: plaintext on the SASL_SSL port is refused",
            lambda n=node: raw_plaintext(n["port"]),
        )
        check(
            f"kafka {node['name']}: controller port refuses TLS without a client cert",
            lambda n=node: refused(
                lambda: (
                    ssl.create_default_context(cafile=k["ssl_cafile"])
                    .wrap_socket(
                        socket.create_connection(("127.0.0.1", n["controller_port"]), timeout=5),
                        server_hostname="127.0.0.1",
                    )
                    .recv(1)
                ),
                "certificate",
                "alert",
                "EOF",
                "reset",
                "closed",
                "SSL",
            ),
        )
    check(
        "kafka: TLS without SASL (security_protocol=SSL) gets no metadata",
        lambda: refused(
            lambda: KafkaAdminClient(
                bootstrap_servers=k["bootstrap_servers"].split(","),
                security_protocol="SSL",
                ssl_cafile=k["ssl_cafile"],
                request_timeout_ms=8000,
                bootstrap_timeout_ms=8000,
            ).list_topics(),
            "NoBrokersAvailable",
            "KafkaTimeoutError",
            "Timeout",
            "Connection",
        ),
    )
    check(
        "kafka: a wrong password is refused (SASL_AUTHENTICATION_FAILED)",
        lambda: refused_why(
            lambda: KafkaAdminClient(
                **stack.kafka("ingest", "wrong-password"),
                request_timeout_ms=8000,
                bootstrap_timeout_ms=8000,
            ).list_topics(),
            "SaslAuthenticationFailed",
        ),
    )
    check(
        "kafka: the CA is needed (no ssl_cafile: certificate verify failed)",
        lambda: refused_why(
            lambda: KafkaAdminClient(
                **{**stack.kafka("ingest"), "ssl_cafile": None},
                request_timeout_ms=8000,
                bootstrap_timeout_ms=8000,
            ).list_topics(),
            "CERTIFICATE_VERIFY_FAILED",
        ),
    )

    # ------------------------------------------------------------- a fresh namespace
    admin = KafkaAdminClient(**stack.kafka("admin"))
    acls = [
        ACL(
            principal=a["principal"],
            host="*",
            operation=ACLOperation[a["operation"]],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType[a["resource_type"]],
                a["name"].replace("{ns}", ns),
                ACLResourcePatternType[a["pattern_type"]],
            ),
        )
        for a in k["acl_template"]
    ]
    topics = ["intel.stix.raw", "intel.dlq", "intel.records.changes", "intel.alerts"]

    def setup_namespace() -> str:
        admin.create_topics(
            {
                ns + t: {"num_partitions": 2, "replication_factor": k["replication_factor"]}
                for t in topics
            },
            wait_for_metadata=True,
        )
        result = admin.create_acls(acls)
        if result["failed"]:
            raise AssertionError(f"ACL creation failed: {result['failed'][:3]}")
        return f"{len(topics)} topics + {len(result['succeeded'])} ACLs for {ns!r} as admin"

    check("kafka: admin replays acl_template for a fresh namespace", setup_namespace)
    raw, alerts, changes, dlq = (
        ns + t for t in ("intel.stix.raw", "intel.alerts", "intel.records.changes", "intel.dlq")
    )
    check(
        "kafka ingest: WRITE intel.stix.raw (acks=all, idempotent)",
        lambda: produce(stack, "ingest", raw),
    )
    check(
        "kafka ingest: WRITE intel.alerts refused",
        lambda: refused(lambda: produce(stack, "ingest", alerts), "TopicAuthorizationFailed"),
    )
    check(
        "kafka ingest: WRITE intel.records.changes refused",
        lambda: refused(lambda: produce(stack, "ingest", changes), "TopicAuthorizationFailed"),
    )
    check(
        "kafka ingest: READ intel.stix.raw refused",
        lambda: refused(
            lambda: consume(stack, "ingest", raw, ns + "threatbay-correlator"),
            "TopicAuthorizationFailed",
            "GroupAuthorizationFailed",
        ),
    )
    check(
        "kafka ingest: create_topics on its own, existing topic -> TOPIC_AUTHORIZATION_FAILED "
        "(not TOPIC_ALREADY_EXISTS)",
        lambda: refused(
            lambda: KafkaAdminClient(**stack.kafka("ingest")).create_topics(
                {raw: {"num_partitions": 6, "replication_factor": k["replication_factor"]}}
            ),
            "TopicAuthorizationFailed",
        ),
    )
    check(
        "kafka ingest: create a new topic refused",
        lambda: refused(
            lambda: KafkaAdminClient(**stack.kafka("ingest")).create_topics(
                {ns + "intel.new": {"num_partitions": 1, "replication_factor": 1}}
            ),
            "TopicAuthorizationFailed",
            "ClusterAuthorizationFailed",
        ),
    )
    check(
        "kafka correlator: READ intel.stix.raw in group threatbay-correlator + commit",
        lambda: consume(stack, "correlator", raw, ns + "threatbay-correlator"),
    )
    check(
        "kafka correlator: READ in group threatbay-alerter refused",
        lambda: refused(
            lambda: consume(stack, "correlator", raw, ns + "threatbay-alerter"),
            "GroupAuthorizationFailed",
        ),
    )
    check(
        "kafka correlator: WRITE intel.records.changes",
        lambda: produce(stack, "correlator", changes),
    )
    check("kafka correlator: WRITE intel.dlq", lambda: produce(stack, "correlator", dlq))
    check(
        "kafka correlator: WRITE intel.alerts refused",
        lambda: refused(lambda: produce(stack, "correlator", alerts), "TopicAuthorizationFailed"),
    )
    check(
        "kafka correlator: WRITE intel.stix.raw refused",
        lambda: refused(lambda: produce(stack, "correlator", raw), "TopicAuthorizationFailed"),
    )
    check("kafka rescore: WRITE intel.records.changes", lambda: produce(stack, "rescore", changes))
    check(
        "kafka rescore: READ intel.stix.raw refused",
        lambda: refused(
            lambda: consume(stack, "rescore", raw, ns + "threatbay-correlator"),
            "TopicAuthorizationFailed",
            "GroupAuthorizationFailed",
        ),
    )
    check(
        "kafka alerts: READ intel.records.changes in group threatbay-alerter",
        lambda: consume(stack, "alerts", changes, ns + "threatbay-alerter"),
    )
    check("kafka alerts: WRITE intel.alerts", lambda: produce(stack, "alerts", alerts))
    check(
        "kafka alerts: READ intel.alerts in group threatbay-notifier",
        lambda: consume(stack, "alerts", alerts, ns + "threatbay-notifier"),
    )
    check(
        "kafka alerts: READ intel.stix.raw in its own group refused (kafka-python raises "
        "nothing: it logs 'not authorized' and reads nothing)",
        lambda: refused_why(
            lambda: consume(stack, "alerts", raw, ns + "threatbay-alerter", wait_s=10),
            "is not authorized",
        ),
    )
    check(
        "kafka alerts: WRITE intel.stix.raw refused",
        lambda: refused(lambda: produce(stack, "alerts", raw), "TopicAuthorizationFailed"),
    )
    check(
        "kafka ingest: production intel.alerts (no namespace) refused too",
        lambda: refused(
            lambda: produce(stack, "ingest", "intel.alerts"), "TopicAuthorizationFailed"
        ),
    )

    tester_topic = f"test-probe-{uuid.uuid4().hex[:8]}"

    def tester_owns_prefix() -> str:
        t_admin = KafkaAdminClient(**stack.kafka("tester"))
        try:
            t_admin.create_topics(
                {
                    tester_topic: {
                        "num_partitions": 1,
                        "replication_factor": k["replication_factor"],
                    }
                },
                wait_for_metadata=True,
            )
            produce(stack, "tester", tester_topic)
            consume(stack, "tester", tester_topic, "test-probe-group")
            t_admin.delete_topics([tester_topic])
            return f"created, wrote, read and deleted {tester_topic}"
        finally:
            t_admin.close()

    check("kafka tester: owns the test- prefix (create/write/read/delete)", tester_owns_prefix)
    check(
        "kafka tester: WRITE production intel.stix.raw refused",
        lambda: refused(
            lambda: produce(stack, "tester", "intel.stix.raw"), "TopicAuthorizationFailed"
        ),
    )

    def teardown_namespace() -> str:
        admin.delete_topics([ns + t for t in topics])
        filters = [
            ACLFilter(
                principal=None,
                host=None,
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(
                    ResourceType[rt], ns + name, ACLResourcePatternType.LITERAL
                ),
            )
            for rt, name in {
                (a["resource_type"], a["name"].replace("{ns}", "")) for a in k["acl_template"]
            }
        ]
        removed = sum(len(m) for _, m, _ in admin.delete_acls(filters))
        return f"deleted {len(topics)} topics and {removed} ACLs of {ns!r}"

    check("kafka admin: remove the namespace again", teardown_namespace)
    admin.close()

    # ------------------------------------------------------------- elasticsearch
    url = e["urls"][0]
    check(
        "es: plain http on the https port gets no HTTP answer",
        lambda: refused(
            lambda: Elasticsearch(url.replace("https", "http")).info(),
            "ConnectionError",
            "Connection",
            "RemoteDisconnected",
            "reset",
        ),
    )
    check(
        "es: no credentials -> 401",
        lambda: refused(
            lambda: Elasticsearch(url, ca_certs=e["ca_certs"]).info(),
            "AuthenticationException",
            "401",
        ),
    )
    check(
        "es: without the CA -> certificate verify failed",
        lambda: refused(
            lambda: Elasticsearch(url, basic_auth=("ingest", stack.es_password("ingest"))).info(),
            "CERTIFICATE_VERIFY_FAILED",
            "TLS",
            "SSL",
        ),
    )
    for user in [*e["users"], "admin"]:
        check(
            f"es {user}: _security/_authenticate",
            lambda u=user: (
                "user {username}, roles {roles}, realm {authentication_realm[type]}".format(
                    **stack.es(u).security.authenticate().body
                )
            ),
        )
    idx = ns + "threatbay-"

    def es_write(user: str, index: str) -> str:
        client = stack.es(user)
        resp = client.index(index=index, id="probe", document={"probe": True}, refresh=True)
        return f"{resp['result']} {index}/_doc/probe"

    check(
        "es correlator: create index + mapping (create_index, mapping/put)",
        lambda: (
            str(
                stack.es("correlator").indices.create(
                    index=idx + "indicators",
                    mappings={"properties": {"probe": {"type": "boolean"}}},
                )["acknowledged"]
            )
            + " "
            + str(
                stack.es("correlator").indices.put_mapping(
                    index=idx + "indicators", properties={"other": {"type": "keyword"}}
                )["acknowledged"]
            )
        ),
    )
    check(
        "es correlator: write <ns>threatbay-indicators",
        lambda: es_write("correlator", idx + "indicators"),
    )
    check(
        "es ingest: read <ns>threatbay-indicators",
        lambda: f"found={stack.es('ingest').get(index=idx + 'indicators', id='probe')['found']}",
    )
    check(
        "es ingest: write <ns>threatbay-indicators refused (403)",
        lambda: refused(
            lambda: es_write("ingest", idx + "indicators"), "AuthorizationException", "403"
        ),
    )
    check(
        "es correlator: write threatbay-agencies refused (403)",
        lambda: refused(
            lambda: es_write("correlator", idx + "agencies"), "AuthorizationException", "403"
        ),
    )
    check("es ingest: write <ns>threatbay-agencies", lambda: es_write("ingest", idx + "agencies"))
    check(
        "es rescore: write outside threatbay-* refused (403)",
        lambda: refused(
            lambda: es_write("rescore", "other-index"), "AuthorizationException", "403"
        ),
    )
    check(
        "es alerts: delete index refused (403)",
        lambda: refused(
            lambda: stack.es("alerts").indices.delete(index=idx + "indicators"),
            "AuthorizationException",
            "403",
        ),
    )
    check(
        "es tester: owns test-* (create/write/delete)",
        lambda: (
            es_write("tester", ns + "tester-index")
            + "; deleted="
            + str(stack.es("tester").indices.delete(index=ns + "tester-index")["acknowledged"])
        ),
    )
    check(
        "es admin: clean up the probe's indices",
        lambda: str(stack.es("admin").indices.delete(index=ns + "*")["acknowledged"]),
    )
    if len(e["urls"]) > 1:
        check(
            "es: every node answers over https with the CA",
            lambda: ", ".join(
                Elasticsearch(
                    u, ca_certs=e["ca_certs"], basic_auth=("admin", stack.es_password("admin"))
                ).info()["name"]
                for u in e["urls"]
            ),
        )
    print(f"{'FAILED: ' + ', '.join(FAILED) if FAILED else 'all checks passed'}")
    print(f"elasticsearch-py {elasticsearch.__versionstr__}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
