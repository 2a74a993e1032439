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

Where (DOMAIN.md "redaction screens every string anywhere in an object"): every
string of an object is screened, at any depth, except the structural values
whose form is checked (identifiers, timestamps, the pattern, an SCO's ``value``,
hash values, vocabulary keys of a marking); custom properties, property
extensions, ``kill_chain_phases``, ``external_references`` and nested lists
included, and the names of custom keys themselves. A key naming a victim or
an account (``victim``, ``account`` in its name), at any depth, is removed
with its value. Human notes that cross a border (alert comments,
acknowledgement and resolution notes) go through ``redact_note``.

How (STYLE.md 17, "linear-time matching for anything an outsider controls"):
every screen is a google-re2 expression (an automaton: time linear in the
text, no backtracking) run over the UTF-8 bytes once; what Python's ``re``
expressed with look-behind is a check on the bytes before a match (a failed
check resumes the search one byte on), look-ahead is a consuming alternative
after a capture group, and every repetition that can restart is bounded, so
the whole screen is linear in the text (benches/bench_screen.py). Texts longer
than ``MAX_SCREEN_CHARS`` are not screened but held. Today's case: 'tel' +
1,500 spaces + 'x 1234' took Python's ``re`` 16 s; here microseconds.
"""

from __future__ import annotations

import bisect
import copy
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import re2

from core.errors import InvalidPattern
from core.patterns import parse_pattern

REDACTED = "[REDACTED:{}]"
WITHHELD_NOTE = "[WITHHELD: personal data that could not be removed]"

#: Longest string screened; a longer one crossing a border is held, never sent unscreened.
MAX_SCREEN_CHARS = 262_144
#: Strings up to this length have their screen result cached.
_CACHED_CHARS = 4096

_EMAIL_VICTIM_HEADERS = frozenset({"to", "cc", "bcc", "delivered-to", "x-original-to"})


@dataclass(frozen=True, slots=True)
class Redacted:
    """A redacted copy, what was removed (``path:kind``) and why it must be held."""

    value: Any
    removed: tuple[str, ...] = ()
    held: tuple[str, ...] = ()


# --- linear-time expressions over UTF-8 bytes --------------------------------------------

_CJK = "一-鿿"  # U+4E00..U+9FFF, written literally: RE2 reads UTF-8, not \\u escapes
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGIT = frozenset(b"0123456789")


def _rx(pattern: str) -> Any:
    return re2.compile(pattern.encode())


def _before(data: bytes, start: int, banned: frozenset[int]) -> bool:
    """True when the byte before ``start`` is not in ``banned`` (a look-behind)."""
    return start == 0 or data[start - 1] not in banned


def _matches(
    rx: Any, data: bytes, left: Callable[[bytes, int], bool] | None = None, group: int = 0
) -> Iterator[tuple[int, int, Any]]:
    """(start, end, match) of ``group`` for every match of ``rx`` whose start passes ``left``.

    A match refused by ``left`` resumes the search one byte after its start (what a
    look-behind does); an accepted one after the end of ``group`` (a consumed
    look-ahead character may start the next match). Linear: every expression used
    here bounds the length of what it can match before a restart.
    """
    pos = 0
    size = len(data)
    while pos <= size:
        m = rx.search(data, pos)
        if m is None:
            return
        start, end = m.span(group)
        if left is not None and not left(data, start):
            pos = m.start() + 1
            continue
        yield start, end, m
        pos = max(end, m.start() + 1)


_L_TOKEN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/=@#+-")


def _left_token(data: bytes, start: int) -> bool:
    """Not glued to a token: ``(?<![\\w/=@#+\\-])(?<!\\d[.:])``."""
    if start == 0:
        return True
    if data[start - 1] in _L_TOKEN:
        return False
    return not (start >= 2 and data[start - 1] in b".:" and data[start - 2] in _DIGIT)


def _left_not(banned: bytes) -> Callable[[bytes, int], bool]:
    chars = frozenset(banned)
    return lambda data, start: _before(data, start, chars)


_WS = r"[\t\n\x0b\x0c\r ]"
# Right edge, consumed: (?![\w/\-@])(?![.:]\d) -- end, or a character that may follow.
_R = r"(?:$|[^\w/\-@.:]|[.:](?:$|[^0-9]))"

_EMAIL = _rx(
    r"([A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?){0,10}\.[A-Za-z]{2,24})"
    r"(?:$|[^\w\-])"
)
_EMAIL_LEFT = _left_not(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_PLUS_LEFT = _left_not(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+")
_PHONE_PATTERNS: tuple[tuple[Any, Callable[[bytes, int], bool]], ...] = (
    (_rx(rf"((?:\+{_WS}?|00)85[23][{_WS[1:-1]}\-]?[0-9]{{4}}[{_WS[1:-1]}\-]?[0-9]{{4}}){_R}"),
     _PLUS_LEFT),
    (_rx(rf"(\({_WS}?85[23]{_WS}?\)[{_WS[1:-1]}\-]?[0-9]{{4}}[{_WS[1:-1]}\-]?[0-9]{{4}}){_R}"),
     _PLUS_LEFT),
    (_rx(rf"((?:\+{_WS}?|00)86[{_WS[1:-1]}\-]?1[3-9][0-9][{_WS[1:-1]}\-]?[0-9]{{4}}"
         rf"[{_WS[1:-1]}\-]?[0-9]{{4}}){_R}"), _PLUS_LEFT),
    (_rx(rf"((?:\+{_WS}?|00)86[{_WS[1:-1]}\-]?\(?0?[0-9]{{2,3}}\)?[{_WS[1:-1]}\-]?"
         rf"[0-9]{{7,8}}){_R}"), _PLUS_LEFT),
    (_rx(rf"(1[3-9][0-9](?:[0-9]{{8}}|[{_WS[1:-1]}\-][0-9]{{4}}[{_WS[1:-1]}\-][0-9]{{4}})){_R}"),
     _left_token),
    (_rx(rf"([2-9][0-9]{{3}}[ \-][0-9]{{4}}){_R}"), _left_token),
    (_rx(rf"([569][0-9]{{7}}){_R}"), _left_token),
)  # fmt: skip
_YEAR_RANGE = re.compile(rb"(?:19|20)\d\d[ \-](?:19|20)\d\d")
_PHONE_CUE = _rx(
    r"(?i)(?:\b(?:tel|phone|mobile|call|whatsapp|contact(?:" + _WS + r"{1,10}number)?)\b\.?"
    r"|電話|电话|手機|手机|聯絡|联系|聯繫)"
    + _WS
    + r"{0,20}(?:no\.?|number|號碼|号码)?"
    + _WS
    + r"{0,20}[:：]?"
    + _WS
    + r"{0,20}([2-9][0-9]{7})"
    + _R
)
_CN_ID = _rx(
    r"([1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx])(?:$|[^0-9A-Za-z])"
)
_ALNUM_LEFT = _left_not(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HKID = _rx(r"(([A-Z]{1,2})([0-9]{6})" + _WS + r"?(?:\(([0-9A])\)|([0-9A])))(?:$|[^0-9A-Za-z)])")
_MO_ID = _rx(r"([157](?:[0-9]{6}" + _WS + r"?\([0-9]\)|/[0-9]{6}/[0-9]))(?:$|[^0-9A-Za-z/])")
_MO_LEFT = _left_not(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/")
_NAME_LABEL = _rx(
    r"(?i)(?:\b(?:victim(?:'s)?" + _WS + r"{1,10}name|full" + _WS + r"{1,10}name|name|victim"
    r"|contact" + _WS + r"{1,10}person|contact|complainant|reporter)\b"
    r"|姓名|受害人|受害者|联系人|聯絡人|联络人|事主|報案人|报案人)"
    + _WS
    + r"{0,20}[:：]"
    + _WS
    + r"{0,20}([^\n,;，；。()\[\]]{1,60})"
)
# "Victim is Chan Tai Man", "victim named Wong": a phrase, not a label.
_NAME_PHRASE = _rx(
    r"(?i:\b(?:victim|complainant|reporter|account holder|card ?holder)(?:'s name)?"
    + _WS
    + r"{1,5}(?:is|was|named|called)"
    + _WS
    + r"{1,5})"
    r"([A-Z][a-z]+(?:[ \-][A-Z][a-z]+){0,3}(?:" + _WS + r"?[(（][" + _CJK + r"]{2,4}[)）])?)"
)
# "Chan Tai Man (陳大文)": a romanised name with its Chinese name is a person.
_ROMANISED_WITH_CJK = _rx(
    r"\b([A-Z][a-z]+(?:[ \-][A-Z][a-z]+){1,3}" + _WS + r"?[(（][" + _CJK + r"]{2,4}[)）])"
)
# The value-end rule of a label: stop before the next "label:" (run by Python's re on
# a bounded window after each label, so its cost is bounded per label).
_NEXT_LABEL = re.compile(r"\s*[^\s:：,;，；。]{1,20}\s*[:：]")
_NOT_A_PERSON = re.compile(
    r"(?i)(?:file|domain|host|malware|tool|campaign|server|process|service|task|dns|family"
    r"|project|key|package|module|operation)[\s_-]*$"
)
_HONORIFIC_NAME = _rx(
    r"\b(?:Mr|Mrs|Ms|Miss|Madam|Dr)\.?"
    + _WS
    + r"{1,5}[A-Z][a-z]+(?:"
    + _WS
    + r"[A-Z][a-z]+|-[A-Za-z][a-z]+){0,2}"
)
_CJK_HONORIFIC_NAME = _rx(r"[" + _CJK + r"]{1,2}(?:先生|小姐|女士|太太)")
_CJK_UNLABELLED_NAME = _rx(r"(?:姓名|受害人|事主|联系人|聯絡人|联络人)([" + _CJK + r"]{2,4})")
_NOT_A_NAME_START = frozenset("数數员員们們士")
_FULLWIDTH_DIGITS = _rx(r"[０-９][０-９\t\n\x0b\x0c\r －-]{6,40}[０-９]")
_HOLD_CUE = _rx(
    r"(?i)(?:\b(?:hkid|id"
    + _WS
    + r"{0,5}card|id"
    + _WS
    + r"{0,5}no\.?|id"
    + _WS
    + r"{0,5}number|identity"
    + _WS
    + r"{0,5}card|passport(?:"
    + _WS
    + r"{0,5}no\.?)?"
    r"|tel|phone|mobile|victim(?:'s)?" + _WS + r"{1,5}name)\b|身份证|身份證|证件号码?|證件號碼?"
    r"|护照|護照|电话|電話|手机|手機|姓名|受害人|事主)"
    + _WS
    + r"{0,20}(?:no\.?|number|号码|號碼)?"
    + _WS
    + r"{0,20}(?:[:：#]|\bis\b|为|為|是)"
    + _WS
    + r"{0,20}([^\t\n\x0b\x0c\r ])"
)
_PROTECTED: tuple[tuple[Any, Callable[[bytes, int], bool] | None], ...] = (
    (_rx(r"(?i)(\b(?:hxxps?|https?|ftp|fxp)(?:://|\[://\]|\[:\]//)[^\t\n\x0b\x0c\r ]+)"), None),
    (_rx(r"((?:[0-9]{1,3}(?:\.|\[\.\]))[0-9]{1,3}(?:(?:\.|\[\.\])[0-9]{1,3}){2}(?:/[0-9]{1,2})?)"
         r"(?:$|[^\w.])"), _left_not(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     b"0123456789_.")),
    (_rx(r"(?i)((?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4})(?:$|[^0-9a-f:])"),
     _left_not(b"0123456789abcdefABCDEF:")),
    (_rx(r"(?i)([0-9a-f]{32,128})(?:$|[^0-9a-z])"),
     _left_not(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")),
)  # fmt: skip

# Cheap gates: most free text has no address, no 4-digit run and no cue word.
_DIGITS4 = _rx(r"[0-9]{4}")
_CUE_WORDS = _rx(
    r"(?i)name|victim|contact|tel|phone|mobile|call|whatsapp|passport|hkid|identity"
    r"|complainant|reporter|holder|\bid\b|\b(?:mr|mrs|ms|miss|madam|dr)\b"
    r"|姓名|受害|事主|联系|聯絡|联络|聯繫|身份|证件|證件|护照|護照|电话|電話|手机|手機|报案|報案"
    r"|先生|小姐|女士|太太|[０-９]|[(（][" + _CJK + r"]"
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


# --- free text ---------------------------------------------------------------------------


class _Spans:
    """Disjoint byte spans, sorted; overlap test and insertion by bisection."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.ends, start + 1)  # first span ending after start
        return i < len(self.starts) and self.starts[i] < end

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)


def _protected_spans(data: bytes, keep: frozenset[str]) -> _Spans:
    spans = [(s, e) for rx, left in _PROTECTED for s, e, _ in _matches(rx, data, left, 1)]
    lowered = data.lower()
    for value in keep:
        needle = value.encode()
        if len(needle) < 3:
            continue
        start = lowered.find(needle)
        while start != -1:
            spans.append((start, start + len(needle)))
            start = lowered.find(needle, start + 1)
    return _Spans(spans)


ScreenResult = tuple[str, tuple[str, ...], tuple[str, ...]]


def _visible_form(text: str) -> str:
    """``text`` as a reader sees it: NFKC (full-width letters, digits, ＠, ideographic
    spaces to ASCII) without invisible format characters (zero-width spaces, joiners)."""
    kept = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", kept)


def _screen(text: str, keep: frozenset[str]) -> ScreenResult:
    if len(text) > MAX_SCREEN_CHARS:
        return text, (), ("too-long-to-screen",)
    screened, kinds, holds = _screen_as_written(text, keep)
    if not text.isascii():
        # Data written to slip past the screens (full-width digits, ＠, zero-width spaces):
        # what the screens find only in the visible form cannot be cut cleanly, so hold.
        visible = _visible_form(text)
        if visible != text:
            _, hidden, _ = _screen_as_written(visible, keep)
            if len(hidden) > len(kinds):
                holds = (*holds, "obfuscated-personal-data")
    return screened, kinds, holds


def _screen_as_written(text: str, keep: frozenset[str]) -> ScreenResult:
    data = text.encode("utf-8", "surrogatepass")
    has_at = b"@" in data
    has_digits = _DIGITS4.search(data) is not None
    has_cue = _CUE_WORDS.search(data) is not None
    if not (has_at or has_digits or has_cue):
        return text, (), ()
    protected = _protected_spans(data, keep)
    taken = _Spans()
    found: list[tuple[int, int, str]] = []
    holds: list[str] = []

    def add(start: int, end: int, kind: str) -> None:
        if start >= end or protected.overlaps(start, end) or taken.overlaps(start, end):
            return
        taken.add(start, end)
        found.append((start, end, kind))

    if has_at:
        for start, end, _ in _matches(_EMAIL, data, _EMAIL_LEFT, 1):
            if data[start:end].decode("utf-8", "replace").lower() not in keep:
                add(start, end, "email")
    if has_digits:
        for start, end, _ in _matches(_CN_ID, data, _ALNUM_LEFT, 1):
            if cn_id_valid(data[start:end].decode()):
                add(start, end, "id-number")
        for start, end, m in _matches(_HKID, data, _ALNUM_LEFT, 1):
            letters, digits = m.group(2).decode(), m.group(3).decode()
            check = (m.group(4) or m.group(5)).decode()
            if hkid_valid(letters, digits, check):
                add(start, end, "id-number")
            elif m.group(4) is not None and not protected.overlaps(start, end):
                holds.append("id-number-unverified")
        for start, end, _ in _matches(_MO_ID, data, _MO_LEFT, 1):
            add(start, end, "id-number")
        for rx, left in _PHONE_PATTERNS:
            for start, end, _ in _matches(rx, data, left, 1):
                if _YEAR_RANGE.fullmatch(data, start, end) is None:
                    add(start, end, "phone")
        for start, end, _ in _matches(_PHONE_CUE, data, None, 1):
            add(start, end, "phone")
    if has_cue:
        for start, end, m in _matches(_NAME_LABEL, data, None, 1):
            label_start = m.start()
            before = data[max(0, label_start - 40) : label_start].decode("utf-8", "ignore")
            if _NOT_A_PERSON.search(before[-12:]):
                continue
            window = data[start : start + 400].decode("utf-8", "ignore")
            value = window[: len(data[start:end].decode("utf-8", "ignore"))]
            for i in range(len(value)):
                if _NEXT_LABEL.match(window, i):
                    value = value[:i]
                    break
            value = value.rstrip()
            if value.strip():
                add(start, start + len(value.encode()), "name")
        for start, end, _ in _matches(_NAME_PHRASE, data, None, 1):
            add(start, end, "name")
        for start, end, _ in _matches(_ROMANISED_WITH_CJK, data, None, 1):
            add(start, end, "name")
        for start, end, _ in _matches(_HONORIFIC_NAME, data):
            add(start, end, "name")
        for start, end, _ in _matches(_CJK_HONORIFIC_NAME, data):
            add(start, end, "name")
        for start, end, m in _matches(_CJK_UNLABELLED_NAME, data, None, 1):
            if data[start:end].decode()[0] in _NOT_A_NAME_START:
                continue
            if not taken.overlaps(m.start(), end):
                holds.append("unlabelled-name")
        if _FULLWIDTH_DIGITS.search(data) is not None:
            holds.append("fullwidth-digits")
        for start, _end, _ in _matches(_HOLD_CUE, data, None, 1):
            if not taken.overlaps(start, start + 1):
                holds.append("unrecognised-personal-data")
    if not found:
        return text, (), tuple(holds)
    found.sort()
    out: list[bytes] = []
    pos = 0
    for start, end, kind in found:
        out.append(data[pos:start])
        out.append(REDACTED.format(kind).encode())
        pos = end
    out.append(data[pos:])
    screened = b"".join(out).decode("utf-8", "surrogatepass")
    return screened, tuple(kind for _, _, kind in found), tuple(holds)


class _ScreenCache:
    """Results for short strings (the common case: labels, names, descriptions)."""

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, frozenset[str]], ScreenResult] = OrderedDict()

    def get(self, text: str, keep: frozenset[str]) -> ScreenResult:
        if len(text) > _CACHED_CHARS:
            return _screen(text, keep)
        key = (text, keep)
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = _screen(text, keep)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return found


_CACHE = _ScreenCache()


def screen_text(text: str, keep: frozenset[str] = frozenset()) -> ScreenResult:
    """(screened text, kinds removed, hold reasons) for one free-text string."""
    return _CACHE.get(text, keep)


def redact_note(text: str) -> tuple[str, tuple[str, ...]]:
    """A human note (alert comment, acknowledgement or resolution note) fit to cross a border.

    (text, what was removed); a note the screens cannot clean is withheld whole.
    """
    screened, kinds, holds = screen_text(text)
    if holds:
        return WITHHELD_NOTE, (*kinds, *(f"held:{h}" for h in holds))
    return screened, kinds


# --- objects ---------------------------------------------------------------------------

_STIX_ID = re.compile(
    r"[a-z][a-z0-9-]{0,250}--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
    r"-[0-9a-fA-F]{12}"
)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")
_HEX = re.compile(r"[0-9a-fA-F:+/=]{1,1024}")
_ID_KEYS = frozenset({"id", "created_by_ref", "marking_ref"})
_TIME_KEYS = frozenset(
    {"created", "modified", "valid_from", "valid_until", "first_seen", "last_seen",
     "first_observed", "last_observed", "published", "start", "stop"}
)  # fmt: skip
_VOCAB_KEYS = frozenset(
    {"type", "spec_version", "pattern_type", "pattern_version", "lang", "extension_type",
     "definition_type", "relationship_type", "selectors"}
)  # fmt: skip
_ATTACKER_SCO = frozenset({"ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"})


def _structural(key: str, value: str) -> bool:
    """True when ``value`` under ``key`` is a structural value of its expected form."""
    if key in _ID_KEYS or key.endswith("_ref") or key.endswith("_refs"):
        return _STIX_ID.fullmatch(value) is not None
    if key in _TIME_KEYS:
        return _TIMESTAMP.fullmatch(value) is not None
    if key in _VOCAB_KEYS:
        return len(value) <= 250 and re.fullmatch(r"[A-Za-z0-9_.+:\-]*", value) is not None
    return False


def attacker_values(obj: dict[str, Any]) -> frozenset[str]:
    """Lower-cased attacker values an object names: its pattern's string literals (read by
    the grammar), an attacker-infrastructure SCO's ``value``."""
    values: set[str] = set()
    pattern = obj.get("pattern")
    if isinstance(pattern, str):
        try:
            parsed = parse_pattern(pattern)
        except InvalidPattern:
            parsed = None
        if parsed is not None:
            for test in parsed.tests:
                values.update(v.lower() for v in test.string_values())
    value = obj.get("value")
    if isinstance(value, str) and obj.get("type") in _ATTACKER_SCO:
        values.add(value.lower())
    return frozenset(v for v in values if v)


def _is_victim_key(key: str) -> bool:
    lowered = key.lower()
    return "victim" in lowered or "account" in lowered


class _Collector:
    def __init__(self, keep: frozenset[str]) -> None:
        self.keep = keep
        self.removed: list[str] = []
        self.held: list[str] = []

    def text(self, path: str, value: str) -> str:
        screened, kinds, holds = screen_text(value, self.keep)
        self.removed.extend(f"{path}:{k}" for k in kinds)
        self.held.extend(f"{path}:{h}" for h in holds)
        return screened

    def walk(self, path: str, key: str, value: Any) -> Any:
        """Every string under ``value`` screened (structural values of their form kept);
        keys naming a victim or account removed, other keys screened too."""
        if isinstance(value, str):
            return value if _structural(key, value) else self.text(path, value)
        if isinstance(value, list):
            return [self.walk(f"{path}[{i}]", key, v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                name = str(k)
                if _is_victim_key(name):
                    self.removed.append(f"{path}.{name}:victim")
                    continue
                screened_key = self.text(f"{path}.<key>", name) if not _plain_key(name) else name
                out[screened_key] = self.walk(f"{path}.{name}", name, v)
            return out
        return value


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}|extension-definition--[0-9a-f-]{36}")


def _plain_key(name: str) -> bool:
    return _PLAIN_KEY.fullmatch(name) is not None and not _DIGITS_IN_KEY.search(name)


_DIGITS_IN_KEY = re.compile(r"\d{4}")


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
                    headers[header] = col.walk(f"{key}.{header}", header, hv)
            out[key] = headers
            continue
        if obj_type == "email-addr" and key == "display_name":
            col.removed.append(f"{key}:name")
            continue
        if obj_type == "sighting" and key == "where_sighted_refs":
            col.removed.append(f"{key}:victim-identity")
            continue
        if _is_victim_key(key):
            kind = "user-account" if "account" in key.lower() else "victim"
            col.removed.append(f"{key}:{kind}")
            continue
        if key == "pattern" and isinstance(value, str):
            out[key] = value  # decided on by its parse (core/policy.py), never rewritten
        elif key == "value" and obj_type in _ATTACKER_SCO and isinstance(value, str):
            out[key] = value
        elif key == "hashes" and isinstance(value, dict):
            out[key] = {
                k: v if isinstance(v, str) and _HEX.fullmatch(v) else col.walk(f"hashes.{k}", k, v)
                for k, v in value.items()
            }
        elif key in ("object_marking_refs", "granular_markings"):
            out[key] = col.walk(key, key, copy.deepcopy(value))
        else:
            out[key] = col.walk(key, key, value)
    return Redacted(out, tuple(col.removed), tuple(col.held))


#: Fields of a record's source entry that are structural (who, when, which object).
_SOURCE_STRUCTURAL = frozenset(
    {"agency", "jurisdiction", "source_kind", "stix_id", "modified", "confidence", "tlp",
     "tlp_defaulted", "recipients", "valid_from", "valid_until", "revoked", "first_seen",
     "last_seen", "source_path", "count"}
)  # fmt: skip


def redact_source(source: dict[str, Any], keep: Iterable[str] = ()) -> Redacted:
    """A merged record's source entry fit to cross: every string but the structural ones
    screened (descriptions, names, labels, kill chain phases, custom fields), its pattern
    kept as written."""
    pattern = source.get("pattern")
    values = attacker_values({"pattern": pattern}) if isinstance(pattern, str) else frozenset()
    col = _Collector(values | frozenset(k.lower() for k in keep))
    out: dict[str, Any] = {}
    for key, value in source.items():
        if key in _SOURCE_STRUCTURAL or key == "pattern":
            out[key] = value
        elif _is_victim_key(key):
            col.removed.append(f"{key}:victim")
        else:
            out[key] = col.walk(key, key, value)
    return Redacted(out, tuple(col.removed), tuple(col.held))


def event_for(reader_jurisdiction: str, event: dict[str, Any]) -> dict[str, Any]:
    """An alert timeline event as a reader of ``reader_jurisdiction`` may see it.

    The human note of a comment, acknowledgement or resolution (``text``) was written
    in the author's jurisdiction (``jurisdiction``); for a reader of any other one it
    goes through ``redact_note`` (DOMAIN.md: "every human-written note ... that
    crosses"). An event naming no jurisdiction counts as crossing.
    """
    text = event.get("text")
    if not isinstance(text, str) or event.get("jurisdiction") == reader_jurisdiction:
        return event
    screened, removed = redact_note(text)
    if not removed:
        return event
    return {**event, "text": screened, "redacted": list(removed)}
