"""Issue 15 class 3: security decisions read patterns with the grammar, not with shortcuts.

``email-message : to_ref.value`` (a space before the colon is valid STIX) names a
victim's address; ``user-account : user_id`` a victim's account. Neither type is
on the cross-border whitelist, so an indicator comparing them never crosses,
whatever else it compares and however it is spaced.
"""

from __future__ import annotations

import pytest

from tests.security.trust import ROOT, Platform, embedded, indicator, platform  # noqa: F401

VICTIM = "chan.taiman@victim-bank.example.hk"
ACCOUNT = "chantaiman1985"
C2 = "203.0.113.77"


@pytest.mark.parametrize(
    "pattern",
    [
        f"[ipv4-addr:value = '{C2}' AND email-message : to_ref.value = '{VICTIM}']",
        f"[ipv4-addr:value = '{C2}'] AND [email-message\t:to_refs[*].value = '{VICTIM}']",
        f"[ipv4-addr:value = '{C2}' AND user-account : user_id = '{ACCOUNT}']",
        f"[ipv4-addr:value = '{C2}' AND email-message:from_ref.display_name = '{ACCOUNT}']",
    ],
)
def test_a_victim_comparison_keeps_the_indicator_home(platform: Platform, pattern: str) -> None:  # noqa: F811
    obj = indicator(pattern)
    assert platform.push("hk", [obj])["success_count"] == 1
    platform.correlate()
    # The source and its own jurisdiction see it.
    assert obj["id"] in platform.get("hk2", f"{ROOT}collections/shared-all/objects/").text
    for reader in ("gd", "mo"):
        seen = platform.everything(reader)
        assert obj["id"] not in seen, f"{reader} received the indicator"
        assert VICTIM not in seen and ACCOUNT not in seen, f"{reader} saw victim data"


def test_an_or_of_a_victim_and_an_address_stays_home_whole(platform: Platform) -> None:  # noqa: F811
    """The report is the object: it may not cross (it compares a victim's address), so no
    record shows it across the border, the address's record included (DOMAIN.md
    "Noninterference": nothing a reader observes depends on a report it may not see).
    Its own jurisdiction sees both records."""
    obj = indicator(f"[ipv4-addr:value = '{C2}' OR email-message : to_ref.value = '{VICTIM}']")
    platform.push("hk", [obj])
    platform.correlate()
    home = platform.get("hk2", "/api/v1/lookup", value=C2).json()
    assert [r["key"] for r in home["records"]] == [f"ipv4-addr|value|{C2}"]
    found = platform.get("gd", "/api/v1/lookup", value=C2).json()
    assert found["records"] == []
    seen = platform.everything("gd")
    assert VICTIM not in seen and obj["id"] not in seen
