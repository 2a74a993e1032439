"""Validators of every export format, by the real tools where there are any.

- RPZ: BIND's ``named-checkzone`` (Debian ``bind9-utils``), required: a missing
  binary fails the test (deploy/dev/test and .ci/run install it), never skips.
- Suricata / Snort: ``idstools.rule.parse`` (OISF's rule library, the lineage of
  suricata-update) on every rule, plus a check that sid, rev and msg come back
  as written and that the option count matches (an unescaped ``;`` would
  mis-split silently, so the count catches it).
- Zeek Intel: a parser written from Zeek's "Intelligence Framework" docs.
- CSV: the ``csv`` module; STIX: the ``stix2`` library.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import stix2
from idstools import rule as idsrule

NAMED_CHECKZONE = "named-checkzone"


def check_zone(text: str, tmp: Path, origin: str = "rpz.threatbay") -> str:
    """Run named-checkzone on ``text``; returns its output, fails the test on an error."""
    tool = shutil.which(NAMED_CHECKZONE)
    if tool is None:
        pytest.fail("named-checkzone is missing: apt-get install bind9-utils (never skipped)")
    path = tmp / "zone.db"
    path.write_text(text, encoding="ascii")
    done = subprocess.run(
        [tool, "-i", "full", "-k", "fail", "-n", "fail", origin, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + "\n" + text[:3000]
    return done.stdout


_OPTION = re.compile(r'(?:[^;"\\]|\\.|"(?:[^"\\]|\\.)*")*;')


def rules_of(text: str) -> list[dict[str, Any]]:
    """Every rule line parsed by idstools, checked against what was written."""
    parsed = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert line.isascii() and line.isprintable(), line
        rule = idsrule.parse(line)
        assert rule is not None, f"idstools cannot parse: {line}"
        body = line[line.index("(") + 1 : line.rindex(")")]
        written = [o.strip() for o in _OPTION.findall(body)]
        assert "".join(_OPTION.findall(body)).strip() == body.strip(), line
        assert len(rule["options"]) == len(written), (line, rule["options"])
        sid = re.search(r"sid:(\d+);", line)
        rev = re.search(r"rev:(\d+);", line)
        assert sid and rule["sid"] == int(sid.group(1)), line
        assert rev and rule["rev"] == int(rev.group(1)), line
        assert 1 <= rule["sid"] < 2**32 and rule["rev"] >= 1
        parsed.append(rule)
    sids = [r["sid"] for r in parsed]
    assert len(sids) == len(set(sids)), "duplicate sids"
    return parsed


ZEEK_HEADER = ["indicator", "indicator_type", "meta.source", "meta.desc", "meta.url"]
ZEEK_TYPES = {"Intel::ADDR", "Intel::SUBNET", "Intel::URL", "Intel::SOFTWARE", "Intel::EMAIL",
              "Intel::DOMAIN", "Intel::USER_NAME", "Intel::CERT_HASH", "Intel::PUBKEY_HASH",
              "Intel::FILE_HASH", "Intel::FILE_NAME"}  # fmt: skip


def zeek_intel(text: str) -> list[dict[str, str]]:
    """Read a Zeek Intel file as the ASCII input reader would (docs: single TAB separators,
    ``-`` unset, ``(empty)`` empty, ``#fields`` header; meta.source required)."""
    lines = text.split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    header = lines[0].split("\t")
    assert header[0] == "#fields" and header[1:] == ZEEK_HEADER, lines[0]
    out = []
    for line in lines[1:-1]:
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        assert len(fields) == len(ZEEK_HEADER), repr(line)
        assert all(f and f.isprintable() for f in fields), repr(line)
        row = dict(zip(ZEEK_HEADER, fields, strict=True))
        assert row["indicator_type"] in ZEEK_TYPES, row
        assert row["meta.source"] not in ("-", "(empty)"), row
        assert row["indicator"] not in ("-", "(empty)"), row
        kind, value = row["indicator_type"], row["indicator"]
        if kind == "Intel::ADDR":
            ipaddress.ip_address(value)
        elif kind == "Intel::SUBNET":
            ipaddress.ip_network(value)
        elif kind == "Intel::URL":
            assert "://" not in value.split("/")[0], value
        elif kind == "Intel::FILE_HASH":
            assert re.fullmatch(r"[0-9a-f]{32,128}", value), value
        out.append(row)
    return out


def csv_rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert reader.fieldnames == ["value", "type", "score_now", "jurisdictions", "first_seen",
                                 "last_seen", "key", "level"]  # fmt: skip
    return list(reader)


def stix_bundle(text: str) -> list[dict[str, Any]]:
    from stix2patterns.validator import run_validator

    decoded = orjson.loads(text)
    objects = decoded["objects"]
    assert decoded["type"] == "bundle" and decoded["id"].startswith("bundle--")
    if objects:  # stix2 cannot tell the version of an empty 2.1 bundle
        bundle = stix2.parse(text, allow_custom=False)
        assert bundle.type == "bundle" and len(bundle.objects) == len(objects)
    for obj in objects:
        assert run_validator(obj["pattern"]) == [], obj["pattern"]
    return list(objects)


def rpz_names(text: str) -> set[str]:
    """Owner names of the CNAME records of a zone file (after named-checkzone passed)."""
    return {line.split()[0] for line in text.splitlines() if " CNAME " in line}
