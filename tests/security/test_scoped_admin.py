"""Issue 15 class 7: administration is scoped to the admin's jurisdiction.

A HK admin cannot mint a credential for a GD agency (and so cannot read GD's
RED intelligence with it), cannot rotate or revoke GD credentials, cannot see
GD agencies, cannot register agencies in GD or grant itself consent, and
cannot point a GD agency's webhook anywhere. Webhook URLs resolving to
loopback, link-local or private addresses are refused unless allow-listed.
"""

from __future__ import annotations

from tests.security.trust import TLP_RED, Platform, embedded, indicator  # noqa: F401

RED_DOMAIN = "gd-red-only.example.org"


def test_an_admin_cannot_mint_a_credential_for_another_jurisdiction(embedded: Platform) -> None:  # noqa: F811
    p = embedded
    red = indicator(f"[domain-name:value = '{RED_DOMAIN}']", tlp=TLP_RED,
                    x_threatbay_recipients=["gd-cncert"])  # fmt: skip
    p.push("gd", [red])
    p.correlate()
    minted = p.post(
        "hkadmin", "/api/v1/admin/agencies/gd-cncert/credentials", {"roles": ["analyst"]}
    )
    assert minted.status_code == 404, minted.text
    assert "bearer" not in minted.text
    # Nor anything else about GD's agencies and credentials.
    gd_key = p.keys["gd2"].key_id
    assert p.post("hkadmin", f"/api/v1/admin/credentials/{gd_key}/rotate", {}).status_code == 404
    assert p.post("hkadmin", f"/api/v1/admin/credentials/{gd_key}/revoke", {}).status_code == 404
    assert p.get("hkadmin", "/api/v1/admin/agencies/gd-cncert").status_code == 404
    listed = p.get("hkadmin", "/api/v1/admin/agencies").json()
    assert {a["jurisdiction"] for a in listed} == {"HK"}
    # GD's own admin administers GD.
    own = p.post("gdadmin", "/api/v1/admin/agencies/gd-cncert/credentials", {"roles": ["analyst"]})
    assert own.status_code == 201, own.text


def test_an_admin_registers_agencies_of_its_own_jurisdiction_without_consent(
    embedded: Platform,  # noqa: F811
) -> None:
    p = embedded
    identity = "identity--7e7b0b6e-1c63-4c1e-9a55-0e6e7f1c2d3a"
    body = {"id": "gd-fake", "name": "Fake", "jurisdiction": "GD", "identity_id": identity,
            "roles": ["analyst"]}  # fmt: skip
    assert p.post("hkadmin", "/api/v1/admin/agencies", body).status_code == 403
    consent = body | {"id": "hk-new", "jurisdiction": "HK", "crossborder_consent": ["GD"]}
    assert p.post("hkadmin", "/api/v1/admin/agencies", consent).status_code == 403
    plain = body | {"id": "hk-new", "jurisdiction": "HK"}
    assert p.post("hkadmin", "/api/v1/admin/agencies", plain).status_code == 201


def test_webhooks_stay_in_the_jurisdiction_and_off_internal_addresses(embedded: Platform) -> None:  # noqa: F811
    p = embedded
    key = p.keys["hkadmin"]

    def put(agency: str, url: str) -> int:
        r = p.client.put(f"/api/v1/webhooks/{agency}", json={"url": url}, headers=key.bearer)
        return int(r.status_code)

    assert put("gd-cac", "https://hooks.example.com/gd") in (403, 404)
    for url in (
        "http://127.0.0.1:8400/api/v1/admin/agencies",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/x",
        "https://192.168.1.1/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://localhost/x",
        "https://0.0.0.0/x",
        "https://user:pw@hooks.example.com/x",
        "file:///etc/passwd",
    ):
        assert put("hk-govcert", url) == 422, url
    assert put("hk-govcert", "https://93.184.215.14/hook") == 200
