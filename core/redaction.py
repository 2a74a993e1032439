"""Victim-data redaction before anything leaves its jurisdiction (DOMAIN.md "Sharing").

What stays: attacker infrastructure. STIX patterns, SCO ``value``/``hashes``
and every other structured field are never rewritten; only victim fields and
free text are touched. In free text, URLs, IP addresses, long hex strings
(hashes) and the object's own attacker values (every quoted value of its
indicator pattern, an SCO's ``value``, a record's observable value) are
protected spans that no screen may match.

How a phishing sender is told from a victim address: an address is attacker
infrastructure when it is the value of an ``email-addr`` indicator or of an
``email-message:from_ref`` / ``sender_ref`` comparison (so it is a pattern
value, hence protected); every other e-mail address found in free text is a
victim address. ``to_refs``/``cc_refs``/``bcc_refs`` are always removed;
``from_ref``/``sender_ref`` stay.

Victim fields removed: ``to_refs``, ``cc_refs``, ``bcc_refs``,
``body_multipart`` and To/Cc/Bcc headers of an ``email-message``; an
``email-addr``'s ``display_name``; a ``sighting``'s ``where_sighted_refs``
(identities of those hit); every ``x_*`` property whose name contains
``account`` or ``victim``; a whole ``user-account`` object.

Free-text screens (``description``, ``name``, ``labels``, ``aliases``,
``x_*`` strings, notes and opinions, e-mail ``subject``/``body``,
``external_references[].description``), each replaced by
``[REDACTED:<kind>]``:

- ``email``: any address not protected as above;
- ``phone``: +852/+853 then 8 digits, +86 then a mobile (1[3-9] + 9 digits)
  or an area code and 7-8 digits; bare mainland mobiles ``1[3-9]xxxxxxxxx``;
  8-digit HK/MO numbers written ``dddd dddd`` / ``dddd-dddd`` (first digit
  2-9, not a year range), bare 8-digit mobiles starting 5, 6 or 9, and any
  8-digit number right after a phone cue (Tel, Phone, Mobile, 電話, 手机 ...).
  Digits joined to letters, ``.``/``:`` + digit, ``/``, ``=``, ``-`` or ``@``
  are never phones (IP addresses, hashes, URL paths and queries, versions);
- ``id-number``: mainland 18-character resident ID with a valid checksum
  (GB 11643), HKID ``A123456(3)`` with a valid check digit, Macao BIR
  ``1234567(8)`` or ``1/234567/8``;
- ``name``: the value after a label (Name:, Victim:, Contact:, 姓名：,
  受害人：, 联系人：, 事主：) up to the end of the clause or the next label;
  an honorific and capitalised name (Mr Chan Tai-man, Ms. Wong); one or two
  CJK characters before 先生/小姐/女士/太太.

Screens are ASCII-bounded, so CJK text glued to a number or address
("手机13812345678", "邮箱chan@bank.example") is still caught.

Held for review (not cleanly removable): a phone, ID or name cue (HKID, ID
no., passport, Tel, Victim name, 身份证, 电话, 护照, 姓名 ...) followed by a
value no screen recognised; an HKID-shaped ``A123456(7)`` whose check digit
is wrong; a CJK label glued to a CJK name ("受害人陈大文报案"); full-width
digit runs (１３８...), which the ASCII screens do not read.
Free text is screened conservatively: a false positive costs a redaction or a
review, a false negative leaks personal data across a border.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED:{}]"

_FREE_TEXT_KEYS = frozenset(
    {
        "description",
        "name",
        "labels",
        "aliases",
        "objective",
        "goals",
        "content",
        "abstract",
        "opinion",
        "explanation",
        "subject",
        "body",
        "x_notes",
    }
)
_EMAIL_VICTIM_HEADERS = frozenset({"to", "cc", "bcc", "delivered-to", "x-original-to"})


@dataclass(frozen=True, slots=True)
class Redacted:
    """A redacted copy, what was removed (``path:kind``) and why it must be held."""

    value: Any
    removed: tuple[str, ...] = ()
    held: tuple[str, ...] = ()


# --- patterns -------------------------------------------------------------


def _rx(pattern: str) -> re.Pattern[str]:
    # ASCII: CJK text glued to a number ("手机13812345678") must not hide it, and
    # \d must not match other scripts' digits.
    return re.compile(pattern, re.ASCII)


_L = r"(?<![\w/=@#+\-])(?<!\d[.:])"  # left edge: not glued to a token
_R = r"(?![\w/\-@])(?![.:]\d)"  # right edge

_EMAIL = _rx(
    r"(?<![\w.+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w\-])"
)
_PHONE_PATTERNS = (
    _rx(r"(?<![\w+])(?:\+\s?|00)85[23][\s\-]?\d{4}[\s\-]?\d{4}" + _R),
    _rx(r"(?<![\w+])\(\s?85[23]\s?\)[\s\-]?\d{4}[\s\-]?\d{4}" + _R),
    _rx(r"(?<![\w+])(?:\+\s?|00)86[\s\-]?1[3-9]\d[\s\-]?\d{4}[\s\-]?\d{4}" + _R),
    _rx(r"(?<![\w+])(?:\+\s?|00)86[\s\-]?\(?0?\d{2,3}\)?[\s\-]?\d{7,8}" + _R),
    _rx(_L + r"1[3-9]\d(?:\d{8}|[\s\-]\d{4}[\s\-]\d{4})" + _R),
    _rx(_L + r"(?!(?:19|20)\d\d[\s\-](?:19|20)\d\d)[2-9]\d{3}[ \-]\d{4}" + _R),
    _rx(_L + r"[569]\d{7}" + _R),
)
_PHONE_CUE = _rx(
    r"(?i)(?:\b(?:tel|phone|mobile|call|whatsapp|contact(?:\s+number)?)\b\.?"
    r"|電話|电话|手機|手机|聯絡|联系|聯繫)\s*(?:no\.?|number|號碼|号码)?\s*[:：]?\s*"
    r"(?<![\d])([2-9]\d{7})" + _R
)
_CN_ID = _rx(
    r"(?<![0-9A-Za-z])([1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
    r"\d{3}[\dXx])(?![0-9A-Za-z])"
)
_HKID = _rx(r"(?<![0-9A-Za-z])([A-Z]{1,2})(\d{6})\s?(?:\(([0-9A])\)|([0-9A]))(?![0-9A-Za-z)])")
_MO_ID = _rx(r"(?<![0-9A-Za-z/])[157](?:\d{6}\s?\(\d\)|/\d{6}/\d)(?![0-9A-Za-z/])")
_NAME_LABEL = _rx(
    r"(?i)(?:\b(?:victim(?:'s)?\s+name|full\s+name|name|victim|contact\s+person|contact)\b"
    r"|姓名|受害人|受害者|联系人|聯絡人|联络人|事主)\s*[:：]\s*"
    r"((?:(?!\s*[^\s:：,;，；。]{1,20}\s*[:：])[^\n,;，；。()\[\]]){1,60})"
)
# "file name:", "host name:" ... label attacker artefacts, not people.
_NOT_A_PERSON = _rx(
    r"(?i)(?:file|domain|host|malware|tool|campaign|server|process|service|task|dns|family"
    r"|project|key|package|module|operation)[\s_-]*$"
)
_HONORIFIC_NAME = _rx(
    r"\b(?:Mr|Mrs|Ms|Miss|Madam|Dr)\.?\s+[A-Z][a-z]+(?:\s[A-Z][a-z]+|-[A-Za-z][a-z]+){0,2}"
)
_CJK_HONORIFIC_NAME = re.compile(r"[\u4e00-\u9fff]{1,2}(?:先生|小姐|女士|太太)")
# A CJK label glued to a CJK name ("受害人陈大文报案"): no span to cut, so hold.
_CJK_UNLABELLED_NAME = re.compile(
    r"(?:姓名|受害人|事主|联系人|聯絡人|联络人)(?![数數员員们們士])[\u4e00-\u9fff]{2,4}"
)
_FULLWIDTH_DIGITS = re.compile(r"[０-９][０-９\s－-]{6,}[０-９]")
_HOLD_CUE = _rx(
    r"(?i)(?:\b(?:hkid|id\s*card|id\s*no\.?|id\s*number|identity\s*card|passport(?:\s*no\.?)?"
    r"|tel|phone|mobile|victim(?:'s)?\s+name)\b|身份证|身份證|证件号码?|證件號碼?|护照|護照"
    r"|电话|電話|手机|手機|姓名|受害人|事主)"
    r"\s*(?:no\.?|number|号码|號碼)?\s*(?:[:：#]|\bis\b|为|為|是)\s*(?=\S)"
)
_PROTECTED = (
    _rx(r"(?i)\b(?:hxxps?|https?|ftp|fxp)(?:://|\[://\]|\[:\]//)\S+"),
    _rx(
        r"(?<![\w.])(?:\d{1,3}(?:\.|\[\.\]))\d{1,3}(?:(?:\.|\[\.\])\d{1,3}){2}(?:/\d{1,2})?(?![\w.])"
    ),
    _rx(r"(?i)(?<![0-9a-f:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![0-9a-f:])"),
    _rx(r"(?i)(?<![0-9a-z])[0-9a-f]{32,128}(?![0-9a-z])"),
)

_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK = "10X98765432"


def cn_id_valid(number: str) -> bool:
    """GB 11643-1999 check character of an 18-character mainland resident ID."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_WEIGHTS, strict=True))
    return _CN_CHECK[total % 11] == number[17].upper()


def hkid_valid(letters: str, digits: str, check: str) -> bool:
    """HKID check digit: weights 9..2 over (space=36, A=10..Z=35, digits); sum ≡ 0 mod 11."""
    letters = letters.upper()
    if len(letters) == 1:
        letters = " " + letters
    values = [36 if c == " " else ord(c) - ord("A") + 10 for c in letters]
    values += [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True))
    check_value = 10 if check.upper() == "A" else int(check)
    return (total + check_value) % 11 == 0


# --- free text ---------------------------------------------------------------


def _overlaps(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _protected_spans(text: str, keep: frozenset[str]) -> list[tuple[int, int]]:
    spans = [m.span() for rx in _PROTECTED for m in rx.finditer(text)]
    lowered = text.lower()
    for value in keep:
        if len(value) < 3:
            continue
        start = lowered.find(value)
        while start != -1:
            spans.append((start, start + len(value)))
            start = lowered.find(value, start + 1)
    return spans


# Cheap gates: most free text has no address, no 4-digit run and no cue word,
# and then the screens below need not run at all.
_DIGITS4 = _rx(r"\d{4}")
_CUE_WORDS = _rx(
    r"(?i)name|victim|contact|tel|phone|mobile|call|whatsapp|passport|hkid|identity"
    r"|\bid\b|\b(?:mr|mrs|ms|miss|madam|dr)\b"
)
_CJK_CUES = re.compile(
    r"姓名|受害|事主|联系|聯絡|联络|聯繫|身份|证件|證件|护照|護照|电话|電話|手机|手機"
    r"|先生|小姐|女士|太太|[０-９]"
)

ScreenResult = tuple[str, tuple[str, ...], tuple[str, ...]]


@lru_cache(maxsize=16384)
def screen_text(text: str, keep: frozenset[str] = frozenset()) -> ScreenResult:
    """(screened text, kinds removed, hold reasons) for one free-text string (cached)."""
    has_at = "@" in text
    has_digits = _DIGITS4.search(text) is not None
    has_cue = _CUE_WORDS.search(text) is not None or _CJK_CUES.search(text) is not None
    if not (has_at or has_digits or has_cue):
        return text, (), ()
    protected = _protected_spans(text, keep)
    found: list[tuple[int, int, str]] = []
    holds: list[str] = []

    def add(start: int, end: int, kind: str) -> None:
        if _overlaps(start, end, protected) or _overlaps(start, end, [(s, e) for s, e, _ in found]):
            return
        found.append((start, end, kind))

    if has_at:
        for m in _EMAIL.finditer(text):
            if m.group(0).lower() not in keep:
                add(m.start(), m.end(), "email")
    if has_digits:
        for m in _CN_ID.finditer(text):
            if cn_id_valid(m.group(1)):
                add(m.start(1), m.end(1), "id-number")
        for m in _HKID.finditer(text):
            check = m.group(3) or m.group(4)
            if hkid_valid(m.group(1), m.group(2), check):
                add(m.start(), m.end(), "id-number")
            elif m.group(3) is not None and not _overlaps(m.start(), m.end(), protected):
                holds.append("id-number-unverified")
        for m in _MO_ID.finditer(text):
            add(m.start(), m.end(), "id-number")
        for rx in _PHONE_PATTERNS:
            for m in rx.finditer(text):
                add(m.start(), m.end(), "phone")
        for m in _PHONE_CUE.finditer(text):
            add(m.start(1), m.end(1), "phone")
    if has_cue:
        for m in _NAME_LABEL.finditer(text):
            if _NOT_A_PERSON.search(text, max(0, m.start() - 12), m.start()):
                continue
            value = m.group(1).rstrip()
            if value.strip():
                add(m.start(1), m.start(1) + len(value), "name")
        for m in _HONORIFIC_NAME.finditer(text):
            add(m.start(), m.end(), "name")
        for m in _CJK_HONORIFIC_NAME.finditer(text):
            add(m.start(), m.end(), "name")
        spans = [(s, e) for s, e, _ in found]
        for m in _CJK_UNLABELLED_NAME.finditer(text):
            if not _overlaps(m.start(), m.end(), spans):
                holds.append("unlabelled-name")
        if _FULLWIDTH_DIGITS.search(text):
            holds.append("fullwidth-digits")
        for m in _HOLD_CUE.finditer(text):
            if not _overlaps(m.end(), m.end() + 1, spans):
                holds.append("unrecognised-personal-data")
    if not found:
        return text, (), tuple(holds)
    found.sort()
    out: list[str] = []
    pos = 0
    for start, end, kind in found:
        out.append(text[pos:start])
        out.append(REDACTED.format(kind))
        pos = end
    out.append(text[pos:])
    return "".join(out), tuple(kind for _, _, kind in found), tuple(holds)


# --- objects -------------------------------------------------------------------

_PATTERN_VALUE = _rx(r"'((?:\\.|[^'\\])*)'")


def attacker_values(obj: dict[str, Any]) -> frozenset[str]:
    """Lower-cased attacker values an object names: pattern values, an SCO's ``value``."""
    values: set[str] = set()
    pattern = obj.get("pattern")
    if isinstance(pattern, str):
        for m in _PATTERN_VALUE.finditer(pattern):
            values.add(m.group(1).replace("\\'", "'").replace("\\\\", "\\").lower())
    value = obj.get("value")
    if isinstance(value, str) and obj.get("type") in (
        "ipv4-addr",
        "ipv6-addr",
        "domain-name",
        "url",
        "email-addr",
    ):
        values.add(value.lower())
    return frozenset(v for v in values if v)


class _Collector:
    def __init__(self, keep: frozenset[str]) -> None:
        self.keep = keep
        self.removed: list[str] = []
        self.held: list[str] = []

    def text(self, path: str, value: Any) -> Any:
        if isinstance(value, str):
            screened, kinds, holds = screen_text(value, self.keep)
            self.removed.extend(f"{path}:{k}" for k in kinds)
            self.held.extend(f"{path}:{h}" for h in holds)
            return screened
        if isinstance(value, list):
            return [self.text(f"{path}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.text(f"{path}.{k}", v) for k, v in value.items()}
        return value


def _is_victim_custom(key: str) -> bool:
    lowered = key.lower()
    return lowered.startswith("x_") and ("account" in lowered or "victim" in lowered)


def redact_object(obj: dict[str, Any], keep: Iterable[str] = ()) -> Redacted:
    """A copy of a STIX object fit to leave its jurisdiction (module docstring has the rules)."""
    col = _Collector(attacker_values(obj) | frozenset(k.lower() for k in keep))
    out: dict[str, Any] = {}
    obj_type = obj.get("type")
    if obj_type == "user-account":
        kept = {k: obj[k] for k in ("type", "id", "spec_version") if k in obj}
        return Redacted(kept, ("user-account:user-account",), ())
    for key, value in obj.items():
        if obj_type == "email-message" and key in ("to_refs", "cc_refs", "bcc_refs"):
            col.removed.append(f"{key}:victim-email")
            continue
        if obj_type == "email-message" and key == "body_multipart":
            col.removed.append(f"{key}:email-body")
            continue
        if (
            obj_type == "email-message"
            and key == "additional_header_fields"
            and isinstance(value, dict)
        ):
            headers = {}
            for header, hv in value.items():
                if header.lower() in _EMAIL_VICTIM_HEADERS:
                    col.removed.append(f"{key}.{header}:victim-email")
                else:
                    headers[header] = col.text(f"{key}.{header}", hv)
            out[key] = headers
            continue
        if obj_type == "email-addr" and key == "display_name":
            col.removed.append(f"{key}:name")
            continue
        if obj_type == "sighting" and key == "where_sighted_refs":
            col.removed.append(f"{key}:victim-identity")
            continue
        if _is_victim_custom(key):
            col.removed.append(f"{key}:{'user-account' if 'account' in key.lower() else 'victim'}")
            continue
        if key in _FREE_TEXT_KEYS or key.startswith("x_"):
            out[key] = col.text(key, copy.deepcopy(value))
        elif key == "external_references" and isinstance(value, list):
            refs = []
            for i, ref in enumerate(value):
                ref = copy.deepcopy(ref)
                if isinstance(ref, dict) and "description" in ref:
                    ref["description"] = col.text(
                        f"external_references[{i}].description", ref["description"]
                    )
                refs.append(ref)
            out[key] = refs
        else:
            out[key] = copy.deepcopy(value)
    return Redacted(out, tuple(col.removed), tuple(col.held))


_SOURCE_TEXT_KEYS = ("description", "labels", "name")


def redact_source(source: dict[str, Any], keep: Iterable[str] = ()) -> Redacted:
    """A merged record's source entry fit to cross: free text screened, pattern untouched."""
    extra = [source["pattern"]] if isinstance(source.get("pattern"), str) else []
    values = attacker_values({"pattern": extra[0]}) if extra else frozenset()
    col = _Collector(values | frozenset(k.lower() for k in keep))
    out = dict(source)
    for key in _SOURCE_TEXT_KEYS:
        if key in out:
            out[key] = col.text(key, out[key])
    for key in list(out):
        if _is_victim_custom(key):
            del out[key]
            col.removed.append(f"{key}:victim")
        elif key.startswith("x_"):
            out[key] = col.text(key, out[key])
    return Redacted(out, tuple(col.removed), tuple(col.held))
