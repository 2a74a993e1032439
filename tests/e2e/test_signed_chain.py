"""The re-share chain of issue #24 with real clients, on embedded and on Kafka + Elasticsearch.

GD pushes SM2-signed indicators to deployment 1 with taxii2-client; HK pulls
them from deployment 1 with taxii2-client, countersigns each with its Ed25519
key and pushes them into deployment 2 (its own data directory or prefix); MO
verifies the chain there with ``threatbay verify URL``. Both deployments run
under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from taxii2client.v21 import ApiRoot, Collection, as_pages
from typer.testing import CliRunner

from api.app import create_app
from core import object_signatures as sigs
from core.clock import FakeClock
from core.markings import TLP2_GREEN
from core.trust import format_time
from tests.e2e.conftest import Key, embedded_or_real, free_port
from tests.e2e.test_signed_push import drain_correlator, register
from tests.signing_world import GD, HK, NOW, World, signed, world
from threatbay.bootstrap import Services
from threatbay.cli import app as cli_app


@contextmanager
def serving(services: Services) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def collection(url: str, key: Key, alias: str) -> Collection:
    root = ApiRoot(f"{url}/taxii2/api/", user=key.key_id, password=key.secret)
    found: Collection = {c._raw["alias"]: c for c in root.collections}[alias]
    return found


@pytest.fixture(params=["embedded", "real"])
def deployments(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Services, Services, World]]:
    w = world()
    with ExitStack() as stack:
        made = []
        for name in ("d1", "d2"):
            (tmp_path / name).mkdir()
            svc = stack.enter_context(
                embedded_or_real(request, tmp_path / name, FakeClock(NOW), f"chain-{name}")
            )
            svc.trust = w.trust()
            made.append(svc)
        yield made[0], made[1], w


def test_gd_sm2_then_hk_countersignature_verified_by_mo_in_a_second_deployment(
    deployments: tuple[Services, Services, World], tmp_path: Path
) -> None:
    one, two, w = deployments
    keys1, keys2 = register(one), register(two)
    originals = [
        signed(
            "SM2SM3",
            w,
            id=f"indicator--00000000-0000-4000-8000-00000000000{n}",
            pattern=f"[ipv4-addr:value = '203.0.113.{n}']",
            object_marking_refs=[TLP2_GREEN],
            granular_markings=[],
        )
        for n in range(3)
    ]
    raw = json.dumps({"objects": originals}, ensure_ascii=False, indent=1)
    with serving(one) as url1, serving(two) as url2:
        status = collection(url1, keys1["gd"], "inbox-gd-cac").add_objects(
            raw, wait_for_completion=True, poll_interval=0.1
        )
        assert status.success_count == 3, status._raw
        drain_correlator(one)()

        pulled: list[dict[str, Any]] = []
        for page in as_pages(collection(url1, keys1["hk"], "shared-all").get_objects):
            pulled += page.get("objects", [])
        assert sorted(o["id"] for o in pulled) == [o["id"] for o in originals]
        assert all(o == next(x for x in originals if x["id"] == o["id"]) for o in pulled)

        hk_inbox = collection(url2, keys2["hk"], "inbox-hk-govcert")
        # without its own countersignature HK may not push GD's objects into deployment 2
        bare = hk_inbox.add_objects({"objects": pulled[:1]}, wait_for_completion=True)
        assert bare.failure_count == 1
        assert "created_by_ref" in bare.failures[0]["message"]

        reshared = [sigs.countersign(o, w.keys["hk-ed"], HK, NOW) for o in pulled]
        forged = sigs.countersign(pulled[0], w.keys["hk-ed"], HK, NOW)
        forged["confidence"] = 1  # an edit on the way: the GD signature no longer holds
        status = hk_inbox.add_objects(
            {"objects": [*reshared, forged]}, wait_for_completion=True, poll_interval=0.1
        )
        assert status.success_count == 3, status._raw
        assert status.failure_count == 1
        assert "does not match the content" in status.failures[0]["message"]
        drain_correlator(two)()

        mo = keys2["mo"]
        result = CliRunner().invoke(
            cli_app,
            [
                "verify",
                f"{url2}/taxii2/api/collections/shared-all/objects/",
                *w.write(tmp_path),
                "--received-at",
                format_time(NOW),
                "--auth",
                f"{mo.key_id}:{mo.secret}",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "3 objects: 3 verified, 0 failed, 0 unsigned" in result.output
    assert result.output.count("origin            GD " + GD) == 3
    assert result.output.count("SM2SM3") == 3
    assert result.output.count("countersignature  HK " + HK) == 3
    assert result.output.count("hk-govcert-ed-2026 Ed25519") == 3
