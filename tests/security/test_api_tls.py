"""The API over TLS with client certificates per jurisdiction (issue 20), through real HTTPS.

uvicorn runs with the configuration ``threatbay api`` uses (``bootstrap.uvicorn_config``)
and httpx presents client certificates from a throwaway PKI: one CA per jurisdiction.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from core.access import Agency
from core.settings import ApiSettings, Settings, TlsSettings
from records.agencies import AgencyRegistry
from tests.security.pki import Authority, Issued
from threatbay.bootstrap import Services, build, uvicorn_config

REPO = Path(__file__).resolve().parents[2]
THREATBAY = REPO / ".venv" / "bin" / "threatbay"

pytestmark = pytest.mark.timeout(120)


def identity(name: str) -> str:
    import uuid

    return f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, name)}"


GD = Agency("gd-cac", "Guangdong CAC", "GD", identity("gd"), "B", cert_names=("gd-cac.gd.example",))
HK = Agency(
    "hk-govcert", "GovCERT.HK", "HK", identity("hk"), "A", cert_names=("hk-govcert.hk.example",)
)
MO = Agency(
    "mo-caric",
    "CARIC",
    "MO",
    identity("mo"),
    "B",
    cert_names=("caric.mo.example",),
    require_client_cert=True,
)


@dataclass
class Pki:
    server_ca: Authority
    server: Issued
    cas: dict[str, Authority]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    server_ca = Authority("server", folder)
    server = server_ca.issue("threatbay.test", server=True, file_stem="server")
    cas = {j: Authority(j.lower(), folder) for j in ("GD", "HK", "MO")}
    for ca in cas.values():
        ca.write_crl()
    return Pki(server_ca, server, cas)


def tls_settings(pki: Pki) -> TlsSettings:
    return TlsSettings(
        cert_file=pki.server.cert_file,
        key_file=pki.server.key_file,
        client_ca={j: ca.ca_file for j, ca in pki.cas.items()},
        client_crl={j: ca.crl_file for j, ca in pki.cas.items()},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    keys: dict[str, tuple[str, str]]
    pki: Pki
    services: Services

    def client(self, cert: Issued | None = None, **kw: Any) -> httpx.Client:
        ctx = (
            cert.client_context(self.pki.server_ca.ca_file)
            if cert
            else ssl.create_default_context(cafile=str(self.pki.server_ca.ca_file))
        )
        return httpx.Client(base_url=self.base, verify=ctx, timeout=10, **kw)

    def basic(self, agency: str) -> dict[str, str]:
        key_id, secret = self.keys[agency]
        token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@pytest.fixture
def server(tmp_path: Path, pki: Pki) -> Iterator[Server]:
    settings = Settings(data_dir=tmp_path / "data", tls=tls_settings(pki), api=ApiSettings())
    services = build(settings, serves_api=True)
    registry = AgencyRegistry(services.store, services.clock)
    keys = {}
    for agency in (GD, HK, MO):
        registry.add_agency(agency)
        cred, secret = registry.add_credential(agency.id)
        keys[agency.id] = (cred.key_id, secret)
    port = free_port()
    config = uvicorn_config(create_app(services), settings, "127.0.0.1", port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Server(f"https://127.0.0.1:{port}", keys, pki, services)
    srv.should_exit = True
    thread.join(10)
    services.close()


def me(client: httpx.Client, **kw: Any) -> httpx.Response:
    return client.get("/api/v1/me", **kw)


# ------------------------------------------------------------------ the TLS layer


def test_hsts_on_every_response_and_the_page(server: Server) -> None:
    with server.client() as c:
        for path in ("/healthz", "/ui/", "/taxii2/"):
            resp = c.get(path, headers=server.basic("gd-cac"))
            assert resp.headers["strict-transport-security"] == "max-age=31536000", path


def test_plain_http_gets_no_answer_on_the_tls_port(server: Server) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base.replace("https:", "http:") + "/healthz", timeout=5)


def test_tls_below_1_2_is_refused_and_1_2_accepted(server: Server) -> None:
    port = int(server.base.rsplit(":", 1)[1])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(server.pki.server_ca.ca_file))
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(sock, server_hostname="127.0.0.1")
    v12 = ssl.create_default_context(cafile=str(server.pki.server_ca.ca_file))
    v12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with v12.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.2"


# ------------------------------------------------------------------ client certificates


def test_a_certificate_from_a_jurisdictions_ca_is_that_agency(server: Server) -> None:
    cert = server.pki.cas["GD"].issue("gd-cac.gd.example")
    with server.client(cert) as c:
        resp = me(c)
    assert resp.status_code == 200, resp.text
    assert resp.json()["agency"]["id"] == "gd-cac"


def test_a_san_names_the_agency_too(server: Server) -> None:
    cert = server.pki.cas["HK"].issue("someone", sans=("hk-govcert.hk.example",))
    with server.client(cert) as c:
        resp = me(c)
    assert resp.status_code == 200, resp.text
    assert resp.json()["agency"]["id"] == "hk-govcert"


def test_a_certificate_of_hk_claiming_a_gd_agency_is_refused(server: Server) -> None:
    forged = server.pki.cas["HK"].issue("gd-cac.gd.example")
    with server.client(forged) as c:
        alone = me(c)
        with_key = me(c, headers=server.basic("gd-cac"))
    for resp in (alone, with_key):
        assert resp.status_code == 401, resp.text
        assert "issued by HK's CA and cannot authenticate gd-cac, an agency of GD" in resp.text


def test_a_certificate_naming_no_agency_is_refused(server: Server) -> None:
    cert = server.pki.cas["GD"].issue("nobody.gd.example")
    with server.client(cert) as c:
        resp = me(c, headers=server.basic("gd-cac"))
    assert resp.status_code == 401
    assert "names no agency" in resp.text


def test_a_certificate_of_no_configured_ca_fails_the_handshake(
    server: Server, tmp_path: Path
) -> None:
    rogue = Authority("rogue", tmp_path / "rogue").issue("gd-cac.gd.example")
    with server.client(rogue) as c, pytest.raises(httpx.HTTPError):
        me(c)


def test_basic_and_bearer_still_work_over_tls_without_a_certificate(server: Server) -> None:
    key_id, secret = server.keys["hk-govcert"]
    with server.client() as c:
        basic = me(c, headers=server.basic("hk-govcert"))
        bearer = me(c, headers={"Authorization": f"Bearer tb_{key_id}.{secret}"})
    assert basic.status_code == bearer.status_code == 200
    assert basic.json()["agency"]["id"] == bearer.json()["agency"]["id"] == "hk-govcert"


def test_an_agency_that_requires_its_certificate(server: Server) -> None:
    with server.client() as c:
        without = me(c, headers=server.basic("mo-caric"))
    assert without.status_code == 401
    assert "requires its client certificate" in without.text
    own = server.pki.cas["MO"].issue("caric.mo.example")
    with server.client(own) as c:
        assert me(c, headers=server.basic("mo-caric")).status_code == 200
        # Its certificate with another agency's key: the two must name the same agency.
        other = me(c, headers=server.basic("gd-cac"))
    assert other.status_code == 401
    assert "certificate names mo-caric, the credential gd-cac" in other.text


def test_a_certificate_revoked_mid_run_is_refused_and_nobody_else_is(server: Server) -> None:
    """Revocation by the jurisdiction's CRL, re-read when the file changes (<= 1 s)."""
    hk_ca = server.pki.cas["HK"]
    victim = hk_ca.issue("hk-govcert.hk.example")
    other = server.pki.cas["GD"].issue("gd-cac.gd.example")
    with server.client(victim) as v, server.client(other) as o:
        assert me(v).status_code == 200
        hk_ca.revoked.append(victim.serial)
        hk_ca.write_crl()
        refused_after = _refused_within(v, 5.0)
        assert me(o).status_code == 200
        assert me(o, headers=server.basic("gd-cac")).status_code == 200
    assert refused_after is not None, "the revoked certificate was still accepted after 5 s"
    with server.client(victim) as fresh:
        resp = me(fresh)
    assert resp.status_code == 401 and "revoked by HK's CRL" in resp.text
    # The agency's key alone still works (its certificate is revoked, not the agency).
    with server.client() as c:
        assert me(c, headers=server.basic("hk-govcert")).status_code == 200


def test_a_certificate_that_expires_mid_run_is_refused_and_nobody_else_is(server: Server) -> None:
    short = server.pki.cas["GD"].issue("gd-cac.gd.example", valid_for=timedelta(seconds=4))
    other = server.pki.cas["HK"].issue("hk-govcert.hk.example")
    with server.client(short) as s, server.client(other) as o:
        assert me(s).status_code == 200  # this keep-alive connection stays open
        refused_after = _refused_within(s, 10.0)
        assert me(o).status_code == 200
    assert refused_after is not None, "the expired certificate was still accepted"
    with server.client(short) as fresh, pytest.raises(httpx.HTTPError):
        me(fresh)  # a new handshake with an expired certificate fails outright


def _refused_within(client: httpx.Client, timeout_s: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        resp = me(client)
        if resp.status_code == 401:
            return time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        time.sleep(0.2)
    return None


# ------------------------------------------------------------------ the real process


def _api_process(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("THREATBAY_")}
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [str(THREATBAY), "api"],
        env=base | {"THREATBAY_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"} | env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _served_cert(port: int, ca: Path) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sighup_reloads_the_certificate_and_key(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    cert.write_bytes(pki.server.cert_file.read_bytes())
    key.write_bytes(pki.server.key_file.read_bytes())
    proc = _api_process(
        tmp_path,
        {
            "THREATBAY_PORT": str(port),
            "THREATBAY_TLS__CERT_FILE": str(cert),
            "THREATBAY_TLS__KEY_FILE": str(key),
            "THREATBAY_TLS__CLIENT_CA__GD": str(pki.cas["GD"].ca_file),
        },
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = _served_cert(port, pki.server_ca.ca_file)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "api.log").read_text()
                assert time.monotonic() < deadline, "threatbay api did not start"
                time.sleep(0.3)
        renewed = pki.server_ca.issue("threatbay.test", server=True, file_stem="renewed")
        cert.write_bytes(renewed.cert_file.read_bytes())
        key.write_bytes(renewed.key_file.read_bytes())
        assert _served_cert(port, pki.server_ca.ca_file) == first  # nothing reloaded yet
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _served_cert(port, pki.server_ca.ca_file) == first:
            assert time.monotonic() < deadline, "SIGHUP did not reload the certificate"
            time.sleep(0.2)
        from cryptography import x509

        served = x509.load_der_x509_certificate(_served_cert(port, pki.server_ca.ca_file))
        assert served.serial_number == renewed.serial
        assert proc.poll() is None, "the API died on SIGHUP"
        log = (tmp_path / "api.log").read_text()
        assert "SIGHUP: TLS certificate, key and client CAs reloaded" in log
        assert f"listening on https://127.0.0.1:{port}" in log
    finally:
        proc.terminate()
        proc.wait(20)
