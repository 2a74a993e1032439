"""The demo scenario: three agencies' overlapping intelligence about one fictional campaign.

Every value comes from documentation ranges so nothing real is accused
(RFC 5737 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24; RFC 3849
2001:db8::/32; RFC 2606 / 6761 ``example.*``, ``.example``, ``.test``);
hashes are SHA-256 digests of made-up strings. The same infrastructure is
written the ways real producers write it (DOMAIN.md "Sameness", known
real-world traps): upper case and a trailing dot on a domain, an IP as
``ipv4-addr:value`` by one agency and ``network-traffic:dst_ref.value`` by
another, a hash key spelled ``'SHA-256'`` / ``SHA256`` with upper-case hex.

Expected outcome with the default rules (``threatbay/defaults/alert_rules.yaml``):

- ``203.0.113.45``: GD (A, 80) + MO (B, 70) and sighted by MO -> score ~92.6
  -> RED ``red-corroborated-critical``, jurisdictions GD, MO (the headline alert:
  MO acknowledges, GD goes overdue);
- ``update.pearlriver-cdn.example``: GD + HK + MO -> ~98.6 -> ORANGE
  ``orange-cross-border``, jurisdictions GD, HK, MO;
- the loader's SHA-256: GD (55) + HK (60, TLP:AMBER) -> ~79.3 -> YELLOW;
- a TLP:RED URL from GD naming one recipient (``gd-cac``) that no other
  agency may see.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.access import Agency
from core.clock import format_timestamp
from core.markings import RECIPIENTS_PROPERTY, TLP1_AMBER, TLP1_GREEN, TLP1_RED
from core.observables import canonical_key

DEMO_NS = uuid.UUID("3d0b0c8e-5b0a-4c1e-9f3a-2a7d6e1c4b59")

CAMPAIGN = "Operation PearlRiver (fictional)"
MALWARE_NAME = "PearlLoader"
C2_DOMAIN = "update.pearlriver-cdn.example"
C2_IP = "203.0.113.45"
C2_IPV6 = "2001:db8::45"
PHISH_SENDER = "invoice@billing-gba.example.net"
RED_URL = "https://drop.pearlriver-cdn.example/stage2/payload.bin"
RED_RECIPIENT = "gd-cac"
LOADER_SHA256 = hashlib.sha256(b"threatbay demo: PearlLoader stage 1 (not a real file)").hexdigest()
DEFANGED_LOOKUP = "UPDATE.PearlRiver-CDN[.]example"
"""What an analyst pastes from a report: refanged and canonicalised by /api/v1/lookup."""

DOMAIN_KEY = canonical_key("domain-name", "value", C2_DOMAIN)
IP_KEY = canonical_key("ipv4-addr", "value", C2_IP)
HASH_KEY = canonical_key("file", "hashes.sha-256", LOADER_SHA256)


def _identity(agency_id: str) -> str:
    return f"identity--{uuid.uuid5(DEMO_NS, 'agency:' + agency_id)}"


GD_CNCERT = Agency(
    id="gd-cncert",
    name="CNCERT/CC Guangdong Branch (simulated)",
    jurisdiction="GD",
    identity_id=_identity("gd-cncert"),
    reliability="A",
    default_confidence=70,
    roles=("publisher", "analyst"),
)
HK_HKCERT = Agency(
    id="hk-hkcert",
    name="Hong Kong CERT Coordination Centre (simulated)",
    jurisdiction="HK",
    identity_id=_identity("hk-hkcert"),
    reliability="B",
    default_confidence=70,
    roles=("publisher", "analyst"),
)
MO_CARIC = Agency(
    id="mo-caric",
    name="Macao CARIC, Cybersecurity Incident Alert and Response Centre (simulated)",
    jurisdiction="MO",
    identity_id=_identity("mo-caric"),
    reliability="B",
    default_confidence=65,
    roles=("publisher", "analyst"),
)
AGENCIES: tuple[Agency, ...] = (GD_CNCERT, HK_HKCERT, MO_CARIC)

HEADLINE_KEY = IP_KEY
HEADLINE_LEVEL = "RED"
HEADLINE_JURISDICTIONS = ("GD", "MO")
ACKNOWLEDGING = MO_CARIC
"""The agency that acknowledges the headline alert in time."""
OVERDUE_JURISDICTION = "GD"
"""The jurisdiction that stays silent and goes overdue."""


@dataclass
class Push:
    """One agency's TAXII push: the objects and what the demo says about them."""

    agency: Agency
    objects: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Factory:
    """Builds STIX 2.1 objects stamped for one run (fresh ids, timestamps near ``now``)."""

    now: datetime
    run: str

    def sid(self, kind: str, name: str) -> str:
        return f"{kind}--{uuid.uuid5(DEMO_NS, f'{self.run}:{name}')}"

    @property
    def ts(self) -> str:
        return format_timestamp(self.now - timedelta(minutes=5))

    def base(self, kind: str, name: str, agency: Agency, tlp: str) -> dict[str, Any]:
        return {
            "type": kind,
            "spec_version": "2.1",
            "id": self.sid(kind, name),
            "created": self.ts,
            "modified": self.ts,
            "created_by_ref": agency.identity_id,
            "object_marking_refs": [tlp],
        }

    def indicator(
        self,
        name: str,
        agency: Agency,
        pattern: str,
        confidence: int,
        tlp: str = TLP1_GREEN,
        **extra: Any,
    ) -> dict[str, Any]:
        obj = self.base("indicator", name, agency, tlp)
        obj.update(
            {
                "name": name,
                "pattern": pattern,
                "pattern_type": "stix",
                "valid_from": format_timestamp(self.now - timedelta(days=1)),
                "indicator_types": ["malicious-activity"],
                "confidence": confidence,
                "labels": ["pearlriver"],
            }
        )
        obj.update(extra)
        return obj

    def indicates(self, name: str, agency: Agency, source: str, target: str) -> dict[str, Any]:
        obj = self.base("relationship", name, agency, TLP1_GREEN)
        obj.update({"relationship_type": "indicates", "source_ref": source, "target_ref": target})
        return obj


def scenario(now: datetime, run: str | None = None) -> list[Push]:
    """The three pushes, in order (GD, then HK, then MO), stamped for ``now``."""
    f = _Factory(now, run or uuid.uuid4().hex)
    gd, hk, mo = GD_CNCERT, HK_HKCERT, MO_CARIC
    malware = f.base("malware", "malware", gd, TLP1_GREEN)
    malware.update(
        {
            "name": MALWARE_NAME,
            "is_family": True,
            "malware_types": ["downloader", "remote-access-trojan"],
            "description": f"Loader used in {CAMPAIGN}; talks to {C2_DOMAIN} and {C2_IP}.",
        }
    )
    mid = malware["id"]

    gd_domain = f.indicator("gd: C2 domain", gd, f"[domain-name:value = '{C2_DOMAIN}']", 85)
    gd_ip = f.indicator("gd: C2 address", gd, f"[ipv4-addr:value = '{C2_IP}']", 80)
    gd_hash = f.indicator("gd: loader hash", gd, f"[file:hashes.'SHA-256' = '{LOADER_SHA256}']", 55)
    gd_red = f.indicator(
        "gd: stage-2 URL (TLP:RED)",
        gd,
        f"[url:value = '{RED_URL}']",
        90,
        tlp=TLP1_RED,
        **{RECIPIENTS_PROPERTY: [RED_RECIPIENT]},
    )
    gd_objects = [malware, gd_domain, gd_ip, gd_hash, gd_red] + [
        f.indicates(f"gd rel {i}", gd, ind["id"], mid)
        for i, ind in enumerate((gd_domain, gd_ip, gd_hash))
    ]

    hk_domain = f.indicator(
        "hk: C2 domain", hk, f"[domain-name:value = '{C2_DOMAIN.upper()}.']", 80
    )
    hk_hash = f.indicator(
        "hk: loader hash (TLP:AMBER)",
        hk,
        f"[file:hashes.SHA256 = '{LOADER_SHA256.upper()}']",
        60,
        tlp=TLP1_AMBER,
    )
    hk_ipv6 = f.indicator(
        "hk: C2 IPv6", hk, "[ipv6-addr:value = '2001:0db8:0000:0000:0000:0000:0000:0045']", 65
    )
    hk_phish = f.indicator(
        "hk: phishing sender", hk, "[email-addr:value = 'Invoice@Billing-GBA.example.net']", 60
    )
    hk_objects = [
        hk_domain,
        hk_hash,
        hk_ipv6,
        hk_phish,
        f.indicates("hk rel", hk, hk_domain["id"], mid),
    ]

    mo_domain = f.indicator("mo: C2 domain", mo, f"[domain-name:value = '{C2_DOMAIN}.']", 75)
    mo_ip = f.indicator("mo: C2 traffic", mo, f"[network-traffic:dst_ref.value = '{C2_IP}']", 70)
    sighting = f.base("sighting", "mo sighting", mo, TLP1_GREEN)
    sighting.update(
        {
            "sighting_of_ref": mo_ip["id"],
            "count": 3,
            "first_seen": format_timestamp(now - timedelta(hours=2)),
            "last_seen": format_timestamp(now - timedelta(minutes=10)),
            "where_sighted_refs": [mo.identity_id],
            "description": "Outbound connections from three hosts of a utility operator.",
        }
    )
    mo_objects = [mo_domain, mo_ip, sighting, f.indicates("mo rel", mo, mo_ip["id"], mid)]

    return [
        Push(
            gd,
            gd_objects,
            [
                f"malware {MALWARE_NAME} + 3 'indicates' relationships",
                f"{C2_DOMAIN} (lower case), {C2_IP} as ipv4-addr:value",
                "loader hash as 'SHA-256', lower-case hex",
                f"one TLP:RED URL for named recipient {RED_RECIPIENT} only",
            ],
        ),
        Push(
            hk,
            hk_objects,
            [
                f"{C2_DOMAIN.upper()}. (upper case, trailing dot)",
                "loader hash as SHA256, upper-case hex, TLP:AMBER",
                "2001:0db8:...:0045 (uncompressed IPv6), a phishing sender",
            ],
        ),
        Push(
            mo,
            mo_objects,
            [
                f"{C2_DOMAIN}. (trailing dot)",
                f"{C2_IP} as network-traffic:dst_ref.value",
                "one sighting (3 hosts) of that address",
            ],
        ),
    ]
