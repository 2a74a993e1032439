"""Victim data out, attacker infrastructure kept (DOMAIN.md "Sharing", redaction)."""

from __future__ import annotations

import pytest

from core.redaction import cn_id_valid, hkid_valid, redact_object, redact_source, screen_text


@pytest.mark.parametrize(
    ("text", "kind", "secret"),
    [
        ("victim mailbox chan.tm@bank.com.hk was phished", "email", "chan.tm@bank.com.hk"),
        ("call back on +852 9123 4567 for details", "phone", "9123 4567"),
        ("staff line +85228881234", "phone", "28881234"),
        ("Macao contact +853 6612 3456", "phone", "6612 3456"),
        ("owner mobile +86 138 1234 5678", "phone", "1234 5678"),
        ("owner mobile 13812345678 reported it", "phone", "13812345678"),
        ("office (852) 2345 6789", "phone", "2345 6789"),
        ("office 2345-6789", "phone", "2345-6789"),
        ("HK mobile 91234567 was targeted", "phone", "91234567"),
        ("Tel: 28123456", "phone", "28123456"),
        ("電話：28123456", "phone", "28123456"),
        ("resident ID 11010519491231002X leaked", "id-number", "11010519491231002X"),
        ("HKID A123456(3) in the dump", "id-number", "A123456(3)"),
        ("HKID AB123456(9) in the dump", "id-number", "AB123456(9)"),
        ("Macao BIR 1234567(8) of the clerk", "id-number", "1234567(8)"),
        ("Macao BIR 5/123456/7 of the clerk", "id-number", "5/123456/7"),
        ("Victim: Chan Tai Man, branch manager", "name", "Chan Tai Man"),
        ("姓名：陈大文，部门：财务", "name", "陈大文"),
        ("受害人：陳小明", "name", "陳小明"),
        ("手机13812345678已停机", "phone", "13812345678"),
        ("邮箱chan@bank.example被盗用", "email", "chan@bank.example"),
        ("身份证号11010519491231002X泄露", "id-number", "11010519491231002X"),
        ("Dear Mr Chan Tai-man, please reset", "name", "Chan Tai-man"),
        ("陈先生的电脑被入侵", "name", "陈先生"),
    ],
)
def test_victim_data_in_free_text_is_redacted(text: str, kind: str, secret: str) -> None:
    screened, kinds, holds = screen_text(text)
    assert secret not in screened
    assert f"[REDACTED:{kind}]" in screened
    assert kind in kinds
    assert holds == ()


@pytest.mark.parametrize(
    "text",
    [
        "C2 at 203.0.113.5:8443 and 198.51.100.17",
        "beacon to http://198.51.100.7/login.php?id=12345678",
        "payload hxxp://evil[.]example/98765432/drop.bin",
        "MD5 d41d8cd98f00b204e9800998ecf8427e SHA1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "SHA256 1234567890123456789012345678901234567890123456789012345678901234",
        "IPv6 2001:db8:85a3::8a2e:370:7334 used for exfil",
        "exploits CVE-2024-21413 and MS17-010; build 10.0.19045; AS4134, AS13335",
        "active 2024-2025, first seen 20251127, epoch 1732700000, port 65535",
        "file name: invoice_20251127.exe, host name: mail01",
        "UUID 12345678-1234-4abc-8def-1234567890ab in the config",
        "sample size 41234567 bytes",  # 8 digits starting 4: not an HK mobile
        "The malware targets banks in the region",
        "受害人数超过100，受害者多为金融机构",
        "C2 服务器 203.0.113.5 端口 8443",
    ],
)
def test_attacker_infrastructure_and_ordinary_numbers_survive(text: str) -> None:
    assert screen_text(text) == (text, (), ())


def test_phishing_sender_kept_victim_address_removed() -> None:
    indicator = {
        "type": "indicator",
        "pattern": "[email-message:from_ref.value = 'hr@evil-domain.example']",
        "description": "Sent from hr@evil-domain.example to finance@victim-corp.example",
    }
    red = redact_object(indicator)
    assert red.value["description"] == ("Sent from hr@evil-domain.example to [REDACTED:email]")
    assert red.value["pattern"] == indicator["pattern"]
    assert red.removed == ("description:email",)


def test_email_message_recipients_removed_sender_kept() -> None:
    msg = {
        "type": "email-message",
        "id": "email-message--1",
        "from_ref": "email-addr--sender",
        "to_refs": ["email-addr--v1"],
        "cc_refs": ["email-addr--v2"],
        "bcc_refs": ["email-addr--v3"],
        "subject": "Invoice for Mr Chan, Tel: 9123 4567",
        "additional_header_fields": {"To": ["v@corp.example"], "X-Mailer": ["Foxmail"]},
        "body_multipart": [{"body": "Dear Mr Chan"}],
    }
    red = redact_object(msg)
    assert red.value["from_ref"] == "email-addr--sender"
    for gone in ("to_refs", "cc_refs", "bcc_refs", "body_multipart"):
        assert gone not in red.value
    assert red.value["additional_header_fields"] == {"X-Mailer": ["Foxmail"]}
    assert "9123 4567" not in red.value["subject"]
    assert {"to_refs:victim-email", "cc_refs:victim-email", "subject:phone"} <= set(red.removed)


def test_victim_fields_removed_from_objects() -> None:
    sighting = {
        "type": "sighting",
        "sighting_of_ref": "indicator--1",
        "where_sighted_refs": ["identity--victim"],
        "x_victim_org": "Bank of Somewhere",
        "x_compromised_accounts": ["jdoe"],
        "x_notes": "reset by IT, mobile 61234567",
        "labels": ["phishing", "contact 98765432"],
    }
    red = redact_object(sighting)
    assert red.value["sighting_of_ref"] == "indicator--1"
    for gone in ("where_sighted_refs", "x_victim_org", "x_compromised_accounts"):
        assert gone not in red.value
    assert red.value["x_notes"] == "reset by IT, mobile [REDACTED:phone]"
    assert red.value["labels"] == ["phishing", "contact [REDACTED:phone]"]
    assert sighting["where_sighted_refs"] == ["identity--victim"]  # input untouched


def test_user_account_object_keeps_only_its_identity() -> None:
    red = redact_object({"type": "user-account", "id": "user-account--1", "user_id": "jdoe"})
    assert red.value == {"type": "user-account", "id": "user-account--1"}


def test_ip_pattern_with_digits_never_touched() -> None:
    obj = {"type": "indicator", "pattern": "[url:value = 'http://198.51.100.7/a?id=91234567']"}
    assert redact_object(obj).value == obj


@pytest.mark.parametrize(
    "text",
    [
        "Victim HKID is A123456(7)",  # HKID shape, wrong check digit
        "身份证：12345",
        "passport no: E1234 5678 9",
        "Tel: 2345 678",
        "姓名：陈大文電話：28123456",
        "受害人陈大文报案",
        "手机：１３８１２３４５６７８",
    ],
)
def test_personal_data_the_screens_cannot_remove_is_held(text: str) -> None:
    assert screen_text(text)[2], text


def test_record_source_redaction_keeps_observable_value() -> None:
    source = {
        "agency": "hk-govcert",
        "pattern": "[ipv4-addr:value = '203.0.113.5']",
        "description": "203.0.113.5 hit the mail server of the victim, contact Tel: 9123 4567",
        "labels": ["c2"],
    }
    red = redact_source(source, keep=["203.0.113.5"])
    assert red.value["description"].startswith("203.0.113.5 hit")
    assert "9123 4567" not in red.value["description"]
    assert red.removed == ("description:phone",)


def test_checksums() -> None:
    assert cn_id_valid("11010519491231002X")
    assert not cn_id_valid("110105194912310021")
    assert hkid_valid("A", "123456", "3")
    assert not hkid_valid("A", "123456", "7")
    assert hkid_valid("AB", "123456", "9")


@pytest.mark.parametrize(
    "text",
    [
        "mail chan＠bank.hk",  # full-width at sign
        "call 9123\u30004567",  # ideographic space
        "call 91\u200b23 4567 now",  # zero-width space inside the number
        "HKID Ａ123456(3)",  # full-width letter
        "victim\u00a0is Chan Tai Man",  # no-break space
    ],
)
def test_personal_data_written_to_slip_past_the_screens_is_held(text: str) -> None:
    assert "obfuscated-personal-data" in screen_text(text)[2], text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Victim is Chan Tai Man (陳大文), tel 9123 4567", "陳大文"),
        ("victim named Wong Siu Ming", "Wong Siu Ming"),
        ("owner Chan Tai Man (陳大文)", "Chan Tai Man"),
        ("complainant: Lee Ka Yan", "Lee Ka Yan"),
    ],
)
def test_names_in_phrases_are_redacted(text: str, secret: str) -> None:
    screened, kinds, _ = screen_text(text)
    assert secret not in screened and "name" in kinds


def test_every_string_of_an_object_is_screened_keys_included() -> None:
    obj = {
        "type": "indicator",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "pattern": "[domain-name:value = 'evil.example']",
        "kill_chain_phases": [{"kill_chain_name": "tel 9123 4567", "phase_name": "x"}],
        "extensions": {
            "extension-definition--4f5c6a38-2d0e-4c55-9b8e-7a1d3c9e5b22": {
                "extension_type": "property-extension",
                "notes": [{"deep": "HKID A123456(3)"}],
                "victim_contact": "anything",
            }
        },
        "x_case": {"Chan Tai Man (陳大文)": "owner"},
    }
    red = redact_object(obj)
    text = str(red.value)
    for secret in ("9123 4567", "A123456(3)", "陳大文", "victim_contact"):
        assert secret not in text, secret
    assert red.value["pattern"] == obj["pattern"] and red.value["id"] == obj["id"]
