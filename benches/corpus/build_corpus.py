#!/usr/bin/env python3
"""Build a large real STIX 2.1 indicator corpus split into three agency streams (GD/HK/MO).

Reads real producer repositories from local bare git dirs (the search tool's
``fetch`` snapshots, listed in sources.json) -- blobs are read with
``git --git-dir=... cat-file``, nothing is checked out -- and:

1. extracts every indicator (and, with --related, the SDOs/SROs/markings of the
   same bundles), from STIX 2.0/2.1 bundles, JSONL and (with --misp) MISP
   events converted by ThreatBay's own ``feeds.misp.event_to_stix``;
2. upgrades STIX 2.0 to 2.1 with ThreatBay's ``feeds.stix20.upgrade_object``
   and marks everything TLP:CLEAR (TLP 2.0 marking id; producer TLP ids are
   replaced, other marking refs kept);
3. de-duplicates by STIX id (latest ``modified`` wins);
4. validates every object with ThreatBay's ``ingest.validate.validation_error``
   and records rejections with reasons (rejected objects stay in the streams
   unless --drop-invalid: the tester pushed them too);
5. assigns each producer file to one primary agency (greedy balance), then
   re-reports a deterministic fraction of valid indicators from one or two
   other agencies with new STIX ids and that agency's spelling habits (hash
   algorithm spellings, upper-case hashes / domains, defanging, trailing dots),
   checking with ``core.observables.observables`` that each re-spelling keeps
   the canonical keys (mismatches are reported and the copy keeps the
   producer's spelling);
6. writes out/<AGENCY>.jsonl, out/real_indicators.jsonl (unique, upgraded,
   unmodified-pattern real indicators, for survey_shapes.py),
   out/provenance.jsonl, out/rejected.jsonl, out/multi_agency.jsonl and
   out/manifest.json.

Run with ThreatBay's venv (it has stix2-patterns, misp-stix, ...), pointing
``--sources`` at a copy of ``sources.example.json`` whose ``git_dir`` entries
name your local snapshots of the listed repositories (nothing fetched from
them is in this repository; the output stays outside it):

    .venv/bin/python benches/corpus/build_corpus.py --sources my-sources.json \
        --misp --related --out /tmp/real-corpus

Deterministic for a given sources.json and --seed.
"""

from __future__ import annotations

import argparse
import collections
import copy
import fnmatch
import hashlib
import json
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

THREATBAY = str(Path(__file__).resolve().parents[2])  # this checkout
sys.path.insert(0, THREATBAY)

from core.errors import InvalidPattern  # noqa: E402
from core.markings import TLP2_CLEAR, TLP_BY_MARKING_ID  # noqa: E402
from core.observables import observables  # noqa: E402
from feeds.stix20 import upgrade_object  # noqa: E402
from ingest.validate import validation_error  # noqa: E402

HERE = Path(__file__).resolve().parent
AGENCIES = ("GD", "HK", "MO")
NS = uuid.UUID("6d1b0c1e-3c43-4f0e-9a55-5a1f7c0e2b11")  # corpus namespace for uuid5 ids
AGENCY_IDENTITY = {a: f"identity--{uuid.uuid5(NS, 'agency:' + a)}" for a in AGENCIES}


# --------------------------------------------------------------------------- reading


def git(git_dir: str, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", git_dir, *args], check=True, capture_output=True
    ).stdout


def matches(path: str, patterns: list[str]) -> bool:
    """fnmatch per path segment, same number of segments (so '*.json' is top level only)."""
    parts = path.split("/")
    for pat in patterns:
        pparts = pat.split("/")
        if len(pparts) == len(parts) and all(
            fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pparts, strict=True)
        ):
            return True
    return False


def source_files(src: dict[str, Any]) -> list[str]:
    names = git(src["git_dir"], "ls-tree", "-r", "-z", "--name-only", src["commit"]).split(b"\0")
    return sorted(n.decode() for n in names if n and matches(n.decode(), src["include"]))


def read_blob(src: dict[str, Any], path: str) -> bytes | None:
    try:
        return git(src["git_dir"], "cat-file", "blob", f"{src['commit']}:{path}")
    except subprocess.CalledProcessError:
        return None  # absent from the snapshot (>= 4 MiB or LFS)


def misp_events(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict) and "response" in doc:
        items = doc["response"] if isinstance(doc["response"], list) else [doc["response"]]
        for item in items:
            if isinstance(item, dict):
                yield item if "Event" in item else {"Event": item}
    elif isinstance(doc, dict) and ("Event" in doc or "Attribute" in doc or "Object" in doc):
        yield doc if "Event" in doc else {"Event": doc}


def objects_of(src: dict[str, Any], path: str, blob: bytes, problems: list[dict]) -> list[dict]:
    fmt = src["format"]
    try:
        if fmt == "stix-jsonl":
            out = []
            for line in blob.decode("utf-8").splitlines():
                if line.strip():
                    item = json.loads(line)
                    out.extend(item["objects"] if item.get("type") == "bundle" else [item])
            return out
        doc = json.loads(blob)
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append({"source": src["name"], "path": path, "problem": f"not JSON: {exc}"})
        return []
    if fmt == "stix-bundle":
        if isinstance(doc, dict) and isinstance(doc.get("objects"), list):
            return doc["objects"]
        if isinstance(doc, dict) and "stix_header" in doc:
            problems.append(
                {
                    "source": src["name"],
                    "path": path,
                    "problem": f"STIX {doc.get('version', '1.x')} package (not STIX 2), skipped",
                }
            )
            return []
        if src.get("misp_fallback") and src.get("_misp_enabled") and any(misp_events(doc)):
            fmt = "misp"
        else:
            problems.append(
                {
                    "source": src["name"],
                    "path": path,
                    "problem": "not a STIX bundle"
                    + (" (a MISP event: use --misp)" if any(misp_events(doc)) else ""),
                }
            )
            return []
    if fmt == "misp":
        from feeds.misp import event_to_stix  # misp-stix import is slow; only when asked

        out = []
        events = list(misp_events(doc))
        if not events:
            problems.append({"source": src["name"], "path": path, "problem": "not a MISP event"})
        for event in events:
            try:
                out.extend(event_to_stix(event))
            except Exception as exc:  # MalformedFeed and friends
                problems.append(
                    {"source": src["name"], "path": path, "problem": f"misp-stix: {str(exc)[:300]}"}
                )
        return out
    raise ValueError(f"unknown format {fmt}")


# --------------------------------------------------------------------------- TLP


def mark_clear(obj: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """TLP:CLEAR on every markable object; returns (obj, producer TLP replaced or None)."""
    if obj.get("type") in ("marking-definition", "extension-definition"):
        return obj, None
    refs = obj.get("object_marking_refs")
    refs = refs if isinstance(refs, list) else []
    producer = sorted({TLP_BY_MARKING_ID[r] for r in refs if r in TLP_BY_MARKING_ID})
    kept = [r for r in refs if r not in TLP_BY_MARKING_ID]
    obj = dict(obj)
    obj["object_marking_refs"] = [*kept, TLP2_CLEAR]
    replaced = ",".join(producer) if producer and producer != ["clear"] else None
    return obj, replaced


# --------------------------------------------------------------------------- re-spelling

# one comparison: type:path <op> 'string'  (paths may hold quoted steps)
_CMP = re.compile(
    r"(?P<type>[A-Za-z0-9_-]+):(?P<path>(?:[A-Za-z_][A-Za-z0-9_]*|'(?:[^'\\]|\\.)*')"
    r"(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|'(?:[^'\\]|\\.)*')|\[\*\]|\[\d+\])*)"
    r"(?P<ws1>\s*)(?P<op>=|==)(?P<ws2>\s*)'(?P<val>(?:[^'\\]|\\.)*)'"
)
_HASH_STEP = re.compile(r"^(?P<head>.*\bhashes\.)(?P<alg>'[^']*'|[A-Za-z0-9_-]+)$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(/\d+)?$")

# How each agency writes hash algorithms (canonical name -> spelling in a path step).
HASH_STYLE = {
    "GD": {"md5": "MD5", "sha-1": "'SHA-1'", "sha-256": "'SHA-256'", "sha-512": "'SHA-512'"},
    "HK": {"md5": "MD5", "sha-1": "SHA1", "sha-256": "SHA256", "sha-512": "SHA512"},
    "MO": {"md5": "md5", "sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512"},
}


def _canon_alg(step: str) -> str:
    key = re.sub(r"[-_'\s]", "", step).lower()
    return {"md5": "md5", "sha1": "sha-1", "sha256": "sha-256", "sha512": "sha-512"}.get(key, "")


def _unesc(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("'", "\\'")


def defang_host(host: str) -> str:
    return host.replace(".", "[.]")


def respell_value(agency: str, otype: str, path: str, value: str, rng: random.Random) -> str:
    kind, p = otype.lower(), path.lower()
    if ".hashes." in "." + p or p.startswith("hashes."):
        if _HEX.match(value):
            return value.upper() if agency == "HK" else value.lower()
        return value
    if kind == "domain-name" and p == "value":
        if agency == "HK":
            return value.upper() + ("." if rng.random() < 0.5 else "")
        if agency == "MO":
            return defang_host(value)
        return value
    if kind == "url" and p == "value":
        m = re.match(
            r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<host>[^/?#:@]+)(?P<rest>.*)$", value
        )
        if not m or "@" in value.split("?", 1)[0]:  # userinfo is case-sensitive: leave it alone
            return value
        scheme, host, rest = m.group("scheme") or "", m.group("host"), m.group("rest")
        if agency == "MO":
            scheme = re.sub(r"^http", "hxxp", scheme, flags=re.I)
            return scheme + defang_host(host) + rest
        if agency == "HK":
            return scheme.upper() + host.upper() + rest  # scheme and host are case-insensitive
        return value
    if kind in ("ipv4-addr",) or (kind == "network-traffic" and p.endswith("_ref.value")):
        if agency == "MO":
            return defang_host(value)
        if agency == "HK" and kind == "network-traffic" and not _IPV4.match(value):
            return value.upper()
        return value
    if kind == "email-addr" and p == "value" and agency == "MO":
        return value.replace("@", "[@]").replace(".", "[.]")
    return value


def respell(agency: str, pattern: str, rng: random.Random) -> str:
    def sub(m: re.Match[str]) -> str:
        otype, path, val = m.group("type"), m.group("path"), _unesc(m.group("val"))
        hm = _HASH_STEP.match(path)
        if hm:
            alg = _canon_alg(hm.group("alg"))
            if alg in HASH_STYLE[agency]:
                path = hm.group("head") + HASH_STYLE[agency][alg]
        plain_path = path.replace("'", "")
        new_val = respell_value(agency, otype, plain_path, val, rng)
        return f"{otype}:{path}{m.group('ws1')}{m.group('op')}{m.group('ws2')}'{_esc(new_val)}'"

    return _CMP.sub(sub, pattern)


# --------------------------------------------------------------------------- helpers


def keys_of(obj: dict[str, Any]) -> list[str] | None:
    if obj.get("type") != "indicator" or obj.get("pattern_type") != "stix":
        return None
    try:
        return sorted(o.key for o in observables(obj["pattern"]))
    except InvalidPattern:
        return None


def ts_shift(value: str, delta: timedelta) -> str:
    t = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) + delta
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


_REASON_NOISE = [
    (re.compile(r"'(?:[^'\\]|\\.)*'"), "'…'"),
    (re.compile(r"\"(?:[^\"\\]|\\.)*\""), '"…"'),
    (re.compile(r"\b\d+:\d+\b"), "L:C"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b"), "<uuid>"),
]


def reason_bucket(reason: str) -> str:
    for rx, rep in _REASON_NOISE:
        reason = rx.sub(rep, reason)
    return reason[:200]


def stable_hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", required=True, help="a sources.example.json with local git_dirs")
    ap.add_argument("--out", required=True, help="output directory (outside the repository)")
    ap.add_argument("--misp", action="store_true", help="also convert the optional MISP sources")
    ap.add_argument(
        "--related",
        action="store_true",
        help="also emit the non-indicator objects of each bundle with its agency",
    )
    ap.add_argument("--drop-invalid", action="store_true", help="leave rejected objects out")
    ap.add_argument("--seed", type=int, default=20260901)
    ap.add_argument(
        "--p2", type=float, default=0.12, help="share of indicators re-reported by 1 more agency"
    )
    ap.add_argument(
        "--p3", type=float, default=0.05, help="share re-reported by both other agencies"
    )
    ap.add_argument(
        "--respell",
        type=float,
        default=0.8,
        help="share of re-reported copies written in the agency's own spelling",
    )
    args = ap.parse_args()

    cfg = json.loads(Path(args.sources).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    problems: list[dict] = []
    files: list[tuple[dict, str, list[dict]]] = []  # (source, path, upgraded objects)
    per_source: dict[str, collections.Counter] = {}
    tlp_replaced: collections.Counter = collections.Counter()
    raw_reasons: collections.Counter = collections.Counter()
    for src in cfg["sources"]:
        if src.get("optional") and not args.misp:
            continue
        src["_misp_enabled"] = args.misp
        cnt = per_source.setdefault(src["name"], collections.Counter())
        for path in source_files(src):
            blob = read_blob(src, path)
            if blob is None:
                problems.append(
                    {"source": src["name"], "path": path, "problem": "blob absent from snapshot"}
                )
                continue
            objs = []
            for raw in objects_of(src, path, blob, problems):
                if not isinstance(raw, dict):
                    cnt["non_object"] += 1
                    continue
                if raw.get("type") == "indicator":
                    raw_err = validation_error(raw)
                    if raw_err is not None:  # what ThreatBay says to the object as published
                        raw_reasons[reason_bucket(raw_err)] += 1
                fresh = copy.deepcopy(raw)
                new = upgrade_object(fresh)
                cnt["upgraded_2.0"] += new is not fresh
                new, replaced = mark_clear(new)
                if replaced and new.get("type") == "indicator":
                    tlp_replaced[replaced] += 1
                cnt[f"objects:{new.get('type')}"] += 1
                objs.append(new)
            cnt["files"] += 1
            files.append((src, path, objs))

    # de-duplicate by id across all files: latest modified wins, first file keeps it
    best: dict[str, tuple[str, int, int]] = {}
    dup_counter: collections.Counter = collections.Counter()
    for fi, (src, _path, objs) in enumerate(files):
        for oi, obj in enumerate(objs):
            oid = obj.get("id")
            if not isinstance(oid, str):
                continue
            ver = str(obj.get("modified") or obj.get("created") or "")
            if oid in best:
                dup_counter[src["name"]] += 1
                if ver > best[oid][0]:
                    best[oid] = (ver, fi, oi)
            else:
                best[oid] = (ver, fi, oi)
    keep = {(fi, oi) for _, fi, oi in best.values()}

    # validate
    reasons: collections.Counter = collections.Counter()
    reason_examples: dict[str, dict] = {}
    rejected_f = (out / "rejected.jsonl").open("w")
    valid: dict[str, bool] = {}
    real_f = (out / "real_indicators.jsonl").open("w")
    prov_f = (out / "provenance.jsonl").open("w")
    file_indicators: list[list[dict]] = []
    file_related: list[list[dict]] = []
    pattern_types: collections.Counter = collections.Counter()
    for fi, (src, _path, objs) in enumerate(files):
        inds, rel = [], []
        for oi, obj in enumerate(objs):
            if (fi, oi) not in keep and isinstance(obj.get("id"), str):
                continue
            err = validation_error(obj)
            oid = obj.get("id", "")
            valid[oid] = err is None
            if obj.get("type") == "indicator":
                pattern_types[str(obj.get("pattern_type"))] += 1
            if err is not None:
                b = reason_bucket(err)
                reasons[(obj.get("type"), b)] += 1
                reason_examples.setdefault(
                    b,
                    {
                        "source": src["name"],
                        "path": path,
                        "id": oid,
                        "error": err[:500],
                        "pattern": str(obj.get("pattern", ""))[:300],
                    },
                )
                rejected_f.write(
                    json.dumps(
                        {
                            "source": src["name"],
                            "path": path,
                            "id": oid,
                            "type": obj.get("type"),
                            "error": err,
                        }
                    )
                    + "\n"
                )
            if obj.get("type") == "indicator":
                inds.append(obj)
                real_f.write(json.dumps(obj, ensure_ascii=False) + "\n")
                prov_f.write(
                    json.dumps(
                        {
                            "id": oid,
                            "source": src["name"],
                            "repo": src["repo"],
                            "commit": src["commit"],
                            "path": path,
                            "valid": err is None,
                        }
                    )
                    + "\n"
                )
            elif obj.get("type") != "bundle":
                rel.append(obj)
        file_indicators.append(inds)
        file_related.append(rel)
    rejected_f.close()
    real_f.close()
    prov_f.close()

    # primary agency per file: greedy balance by indicator count (deterministic)
    order = sorted(
        range(len(files)),
        key=lambda i: (-len(file_indicators[i]), files[i][0]["name"], files[i][1]),
    )
    load = dict.fromkeys(AGENCIES, 0)
    primary: dict[int, str] = {}
    for i in order:
        a = min(AGENCIES, key=lambda x: (load[x], x))
        primary[i] = a
        load[a] += len(file_indicators[i])

    streams: dict[str, list[dict]] = {a: [] for a in AGENCIES}
    identities = {
        a: {
            "type": "identity",
            "spec_version": "2.1",
            "id": AGENCY_IDENTITY[a],
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "name": f"{a} national CERT (corpus)",
            "identity_class": "organization",
            "object_marking_refs": [TLP2_CLEAR],
        }
        for a in AGENCIES
    }
    for a in AGENCIES:
        streams[a].append(identities[a])
    copies = collections.Counter()
    respell_stats = collections.Counter()
    mismatch_examples: list[dict] = []
    for i in range(len(files)):
        a = primary[i]
        if args.related:
            streams[a].extend(
                o
                for o in file_related[i]
                if not args.drop_invalid or valid.get(o.get("id", ""), False)
            )
        for ind in file_indicators[i]:
            ok = valid.get(ind["id"], False)
            if args.drop_invalid and not ok:
                continue
            streams[a].append(ind)
            if not ok:
                continue
            h = stable_hash(str(args.seed), ind["id"]) / 2**64
            others = [x for x in AGENCIES if x != a]
            if h < args.p3:
                extra = others
            elif h < args.p3 + args.p2:
                extra = [others[stable_hash("pick", ind["id"]) % 2]]
            else:
                extra = []
            base_keys = keys_of(ind)
            for b in extra:
                dup = copy.deepcopy(ind)
                dup["id"] = f"indicator--{uuid.uuid5(NS, b + ':' + ind['id'])}"
                delta = timedelta(minutes=rng.randint(30, 60 * 24 * 45))
                dup["created"] = ts_shift(ind["created"], delta)
                dup["modified"] = dup["created"]
                if "valid_until" in dup and dup["valid_until"] <= dup["valid_from"]:
                    dup.pop("valid_until")
                dup["created_by_ref"] = AGENCY_IDENTITY[b]
                if rng.random() < args.respell:
                    new_pattern = respell(b, ind["pattern"], rng)
                    if new_pattern != ind["pattern"]:
                        trial = dict(dup, pattern=new_pattern)
                        err = validation_error(trial)
                        tkeys = keys_of(trial) if err is None else None
                        if err is None and tkeys == base_keys:
                            dup["pattern"] = new_pattern
                            respell_stats[f"{b}:respelled"] += 1
                        else:
                            respell_stats[f"{b}:{'invalid' if err else 'key_changed'}"] += 1
                            if len(mismatch_examples) < 40:
                                mismatch_examples.append(
                                    {
                                        "agency": b,
                                        "original": ind["pattern"][:400],
                                        "respelled": new_pattern[:400],
                                        "error": err,
                                        "original_keys": [k[:300] for k in (base_keys or [])][:5],
                                        "respelled_keys": [k[:300] for k in (tkeys or [])][:5],
                                    }
                                )
                    else:
                        respell_stats[f"{b}:unchanged"] += 1
                streams[b].append(dup)
                copies[f"{a}->{b}"] += 1

    # write streams (ordered like a TAXII collection: by modified, then id)
    key_agencies: dict[str, set[str]] = collections.defaultdict(set)
    key_ids: dict[str, dict[str, list[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    stream_counts = {}
    for a in AGENCIES:
        objs = streams[a]
        head, rest = objs[:1], objs[1:]
        rest.sort(key=lambda o: (str(o.get("modified") or o.get("created") or ""), o.get("id", "")))
        with (out / f"{a}.jsonl").open("w") as f:
            for o in head + rest:
                f.write(json.dumps(o, ensure_ascii=False) + "\n")
        c = collections.Counter(o.get("type") for o in objs)
        n_valid_ind = 0
        for o in objs:
            if o.get("type") != "indicator" or validation_error(o) is not None:
                continue
            ks = keys_of(o)
            if ks is None:
                continue
            n_valid_ind += 1
            for k in ks:
                key_agencies[k].add(a)
                key_ids[k][a].append(o["id"])
        stream_counts[a] = {
            "objects": len(objs),
            "by_type": dict(c),
            "valid_stix_indicators": n_valid_ind,
            "distinct_observables": sum(1 for k, s in key_agencies.items() if a in s),
        }

    multi = {k: s for k, s in key_agencies.items() if len(s) >= 2}
    with (out / "multi_agency.jsonl").open("w") as f:
        for k in sorted(multi):
            f.write(
                json.dumps(
                    {
                        "key": k,
                        "agencies": sorted(multi[k]),
                        "ids": {a: key_ids[k][a] for a in sorted(multi[k])},
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    with (out / "distinct_observables.txt").open("w") as f:
        for k in sorted(key_agencies):
            f.write(k.replace("\n", "\\n") + "\n")

    by_type = collections.Counter(k.split("|", 1)[0] for k in multi)
    manifest = {
        "generated_by": "build_corpus.py",
        "seed": args.seed,
        "p2": args.p2,
        "p3": args.p3,
        "respell": args.respell,
        "options": {"misp": args.misp, "related": args.related, "drop_invalid": args.drop_invalid},
        "sources": [
            {k: s[k] for k in ("name", "repo", "commit", "licence", "kind", "format")}
            | {"counts": dict(per_source.get(s["name"], {}))}
            for s in cfg["sources"]
            if s["name"] in per_source
        ],
        "input_problems": problems,
        "duplicates_by_id": dict(dup_counter),
        "unique_indicators": sum(len(x) for x in file_indicators),
        "indicator_pattern_types": dict(pattern_types),
        "producer_tlp_replaced_on_indicators": dict(tlp_replaced),
        "rejected_as_published_before_upgrade": dict(raw_reasons.most_common()),
        "rejected": {
            "total": sum(reasons.values()),
            "by_type_and_reason": [
                {"type": t, "reason": r, "count": n} for (t, r), n in reasons.most_common()
            ],
            "examples": reason_examples,
        },
        "agencies": stream_counts,
        "copies": dict(copies),
        "respelling": dict(respell_stats),
        "respelling_problems_examples": mismatch_examples,
        "distinct_observables_total": len(key_agencies),
        "multi_agency": {
            "keys": len(multi),
            "in_2_agencies": sum(1 for s in multi.values() if len(s) == 2),
            "in_3_agencies": sum(1 for s in multi.values() if len(s) == 3),
            "by_observable_type": dict(by_type),
            "file": "multi_agency.jsonl",
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    print(
        json.dumps(
            {
                k: manifest[k]
                for k in (
                    "unique_indicators",
                    "duplicates_by_id",
                    "copies",
                    "respelling",
                    "distinct_observables_total",
                    "multi_agency",
                )
            },
            indent=1,
        )
    )
    print("rejected:", manifest["rejected"]["total"])
    for r in manifest["rejected"]["by_type_and_reason"][:25]:
        print(f"  {r['count']:6d} {r['type']}: {r['reason']}")
    print("problems:", len(problems))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
