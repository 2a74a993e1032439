"""Per-audience views of merged records: noninterference at scale (DOMAIN.md "Noninterference").

The rule: everything a reader observes is computed only from the reports that
reader may see; adding reports it may not see changes nothing it observes.
A merged record's derived values (score, base, per-agency p_a, agency and
jurisdiction counts, labels, STIX ids, first/last seen, TLP, state,
explanation, the malware it is linked to) are therefore not one global value:
each reader gets the values computed from *its* visible part of the record.

Audiences. Readers are the registered agencies (a few dozen at most), each
on two channels, plus one virtual reader per jurisdiction:

- ``r:<agency>`` the agency reading or being notified (``Purpose.READ`` /
  ``NOTIFY``: TLP:RED reaches named recipients);
- ``m:<agency>`` the same agency on a machine channel (``STREAM``: RED
  reaches only its source, core/policy.py);
- ``j:<J>`` "any agency of jurisdiction J" (``Reader("", J)``, TAXII export):
  what every agency of J may see, for the alert reports of J's collection.

Parts. A record is made of parts: source reports, sightings (visible only
with the indicator they sight) and ``indicates`` links to malware / campaigns
/ intrusion sets (visible only with their indicator). Granular markings
(STIX 2.1 section 7.2.3) cut single fields of a source for the tokens they
exclude; a granular marking on ``pattern`` hides the whole source, since the
record *is* the pattern's value. ``AudienceSet.who_sees`` answers, per
part's sharing facts, the set of tokens that may see it (memoised: the
distinct facts are few).

Views. Tokens with the same visible parts share one *view*. A view's content
is built from its visible parts only (``build``); its *basis* is a digest of
exactly those parts. One document per distinct view lists exactly the
tokens that get it (``readers``), so a reader's filter matches exactly one
document per record: the record document itself for the view that sees every
part (most records: every reader that sees anything sees everything), and a
``<key>#<hash>`` document for each other view. Per-view work is only done
where a view actually differs.

Stability. A view is rebuilt only when its own basis changes. A token whose
basis is unchanged keeps the content it had (carried over verbatim, whatever
document it moves to), so a report hidden from a reader never even
re-stamps that reader's ``scored_at``. A token new to the registry adopts
an existing view of the same basis.

Readers are stored compressed: ``jur:<J>`` stands for every token of J when
all of them share the view (the common case: a handful of tags per record,
not one per agency). A reader's filter is ``r:<agency>`` (or ``m:`` / ``j:``)
plus ``jur:<its J>`` (core/policy.py ``reader_tags``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import orjson

from core.markings import normalise_tlp
from core.policy import (
    INTERNAL_FIELDS,
    Purpose,
    Reader,
    SharingPolicy,
    SourceReport,
    record_link_report,
    record_sighting_report,
    record_source_report,
    report_access,
)
from core.provenance import JURISDICTIONS, Tlp

Token = str
Content = dict[str, Any]


#: Source-entry fields a granular selector can name, by the selector's first step.
GRANULAR_FIELDS: Mapping[str, str] = {
    "labels": "labels",
    "indicator_types": "labels",
    "description": "description",
    "name": "name",
    "kill_chain_phases": "kill_chain_phases",
    "confidence": "confidence",
    "valid_from": "valid_from",
    "valid_until": "valid_until",
}


@dataclass(frozen=True, slots=True)
class Audience:
    """One reader on one channel, named by its token."""

    token: Token
    reader: Reader
    purpose: Purpose
    jurisdiction: str


def audience_tokens(agency_id: str, jurisdiction: str) -> tuple[Token, Token]:
    """The read and machine-channel tokens of an agency."""
    return f"r:{agency_id}", f"m:{agency_id}"


def jurisdiction_token(jurisdiction: str) -> Token:
    return f"j:{jurisdiction}"


def all_of(jurisdiction: str) -> str:
    """The compressed tag standing for every token of ``jurisdiction``."""
    return f"jur:{jurisdiction}"


@dataclass(eq=False)
class AudienceSet:
    """Every audience of the registry, with the sharing policy that decides for them.

    Built from the registered agencies (rebuilt when the registry changes;
    ``fingerprint`` names the set). Memoises ``who_sees`` per report facts.
    """

    policy: SharingPolicy
    members: tuple[Audience, ...]
    fingerprint: str = ""
    jurisdiction_of: dict[Token, str] = field(default_factory=dict)
    tokens_of: dict[str, frozenset[Token]] = field(default_factory=dict)
    _seen: dict[SourceReport, frozenset[Token]] = field(default_factory=dict, repr=False)
    _access: dict[
        tuple[Any, ...], tuple[frozenset[Token], tuple[tuple[str, frozenset[Token]], ...]]
    ] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.jurisdiction_of = {a.token: a.jurisdiction for a in self.members}
        self._all = frozenset(self.jurisdiction_of)
        by_j: dict[str, set[Token]] = {j: set() for j in JURISDICTIONS}
        for a in self.members:
            by_j.setdefault(a.jurisdiction, set()).add(a.token)
        self.tokens_of = {j: frozenset(t) for j, t in by_j.items()}
        if not self.fingerprint:
            facts = [
                (a.token, a.reader.jurisdiction, sorted(a.reader.crossborder_consent))
                for a in self.members
            ]
            self.fingerprint = hashlib.sha1(orjson.dumps(facts)).hexdigest()[:16]

    @property
    def tokens(self) -> frozenset[Token]:
        return self._all

    def who_sees(self, report: SourceReport) -> frozenset[Token]:
        """Tokens whose reader may see ``report`` for its channel's purpose (memoised)."""
        found = self._seen.get(report)
        if found is None:
            if len(self._seen) >= 8192:
                self._seen.clear()
            found = self._seen[report] = frozenset(
                a.token
                for a in self.members
                if report_access(self.policy, a.reader, a.purpose, report)[0]
            )
        return found

    def source_access(
        self, record: Mapping[str, Any], source: Mapping[str, Any]
    ) -> tuple[frozenset[Token], tuple[tuple[str, frozenset[Token]], ...]]:
        """Who sees one source entry, and which of its fields granular markings cut for whom.

        Memoised on exactly the sharing facts of the entry (a correlator asks this
        for every source of every record it writes; the distinct facts are few).
        """
        granular = source.get("granular") or {}
        facts = (
            record.get("observable_type"),
            source.get("agency"),
            source.get("jurisdiction"),
            source.get("tlp"),
            tuple(source.get("recipients") or ()),
            tuple(source.get("observable_types") or ()),
            tuple(sorted(granular.items())) if granular else (),
        )
        found = self._access.get(facts)
        if found is not None:
            return found
        report = record_source_report(record, source)
        who = self.who_sees(report)
        cuts: dict[str, frozenset[Token]] = {}
        for selector, level in facts[-1]:
            root = str(selector).split(".", 1)[0]
            allowed = self.who_sees(replace(report, tlp=_tlp(level)))
            if root == "pattern":
                who = who & allowed
            elif root in GRANULAR_FIELDS:
                name = GRANULAR_FIELDS[root]
                cuts[name] = cuts.get(name, frozenset()) | (self.tokens - allowed)
        if len(self._access) >= 8192:
            self._access.clear()
        found = self._access[facts] = (who, tuple(sorted(cuts.items())))
        return found

    def compress(self, tokens: Iterable[Token]) -> list[str]:
        """Stored form: ``jur:<J>`` for a jurisdiction whose every token is present."""
        have = set(tokens)
        out: list[str] = []
        for j in sorted(self.tokens_of):
            every = self.tokens_of[j]
            if every and every <= have:
                out.append(all_of(j))
                have -= every
        return sorted(out) + sorted(have)

    def expand(self, stored: Iterable[str]) -> frozenset[Token]:
        """The tokens a stored readers list stands for, in the current registry."""
        out: set[Token] = set()
        for tag in stored:
            if tag.startswith("jur:"):
                out |= self.tokens_of.get(tag[4:], frozenset())
            elif tag in self.jurisdiction_of:
                out.add(tag)
        return frozenset(out)


def audiences_of(policy: SharingPolicy, readers: Iterable[Reader]) -> AudienceSet:
    """The audience set of the registered agencies (as readers) under ``policy``."""
    members: list[Audience] = []
    for reader in sorted(readers, key=lambda r: r.agency_id):
        read, machine = audience_tokens(reader.agency_id, reader.jurisdiction)
        members.append(Audience(read, reader, Purpose.READ, reader.jurisdiction))
        members.append(Audience(machine, reader, Purpose.STREAM, reader.jurisdiction))
    for j in JURISDICTIONS:
        members.append(Audience(jurisdiction_token(j), Reader("", j), Purpose.TAXII_EXPORT, j))
    return AudienceSet(policy, tuple(members))


# ------------------------------------------------------------------ parts


def _tlp(value: Any) -> Tlp:
    try:
        return normalise_tlp(str(value))
    except ValueError:
        return "red"


@dataclass(frozen=True, slots=True)
class Parts:
    """Who may see each part of a record (indexes into its lists), and field cuts."""

    sources: tuple[frozenset[Token], ...]
    sightings: tuple[frozenset[Token], ...]
    links: tuple[frozenset[Token], ...]
    #: per source: (entry field, tokens that may NOT see it)
    cuts: tuple[tuple[tuple[str, frozenset[Token]], ...], ...]


def parts_of(record: Mapping[str, Any], audiences: AudienceSet) -> Parts:
    """Who sees what of ``record`` (module docstring: parts, granular cuts)."""
    sources_who: list[frozenset[Token]] = []
    cuts: list[tuple[tuple[str, frozenset[Token]], ...]] = []
    by_id: dict[str, frozenset[Token]] = {}
    for source in record.get("sources") or ():
        who, source_cuts = audiences.source_access(record, source)
        sources_who.append(who)
        cuts.append(source_cuts)
        stix_id = source.get("stix_id")
        if isinstance(stix_id, str):
            held = by_id.get(stix_id)
            by_id[stix_id] = who if held is None else held | who
    sightings_in = record.get("sightings") or ()
    links_in = record.get("links") or ()
    if not sightings_in and not links_in:  # the common case
        return Parts(tuple(sources_who), (), (), tuple(cuts))
    any_source = frozenset().union(*sources_who) if sources_who else frozenset()
    all_sources = frozenset.intersection(*sources_who) if sources_who else frozenset()

    def of(entry: Mapping[str, Any]) -> frozenset[Token]:
        ref = entry.get("of")
        return by_id.get(ref, frozenset()) if isinstance(ref, str) else any_source

    sightings = tuple(
        audiences.who_sees(record_sighting_report(record, s)) & of(s) for s in sightings_in
    )
    links = tuple(
        (audiences.who_sees(record_link_report(record, link)) & of(link))
        if link.get("agency")
        else all_sources  # links stored before they carried their source: the full view only
        for link in links_in
    )
    return Parts(tuple(sources_who), sightings, links, tuple(cuts))


@dataclass(frozen=True, slots=True)
class Visible:
    """The parts one group of tokens sees (entries with their cut fields removed)."""

    sources: tuple[dict[str, Any], ...]
    sightings: tuple[dict[str, Any], ...]
    links: tuple[dict[str, Any], ...]
    basis: str


def _basis(sources: Sequence[Any], sightings: Sequence[Any], links: Sequence[Any]) -> str:
    # Entries are built by one code path each (correlate/merge.py) and keep their key
    # order through storage, so their serialisation is canonical without sorting.
    raw = orjson.dumps([sources, sightings, links])
    return hashlib.sha1(raw).hexdigest()[:20]


def visible_parts(record: Mapping[str, Any], parts: Parts, token: Token) -> Visible:
    """What ``token`` sees of ``record``."""
    sources: list[dict[str, Any]] = []
    for entry, who, cuts in zip(record.get("sources") or [], parts.sources, parts.cuts,
                                strict=True):  # fmt: skip
        if token not in who:
            continue
        cut = [name for name, hidden in cuts if token in hidden]
        sources.append({k: v for k, v in entry.items() if k not in cut} if cut else entry)
    sightings = [
        s for s, who in zip(record.get("sightings") or [], parts.sightings, strict=True)
        if token in who
    ]  # fmt: skip
    links = [
        lk for lk, who in zip(record.get("links") or [], parts.links, strict=True) if token in who
    ]
    return Visible(tuple(sources), tuple(sightings), tuple(links),
                   _basis(sources, sightings, links))  # fmt: skip


def full_basis(record: Mapping[str, Any]) -> str:
    """Basis of the view that sees every part of ``record``."""
    return _basis(record.get("sources") or [], record.get("sightings") or [],
                  record.get("links") or [])  # fmt: skip


def view_for(record_doc: Mapping[str, Any], tags: Iterable[str]) -> dict[str, Any] | None:
    """The view a reader with ``tags`` has of a record document read by key, or None.

    The record document holds its own view (``readers``) and every other view
    (``views``), so reading by key needs no search; a view document (``view_of``)
    is never a record. Every read of one record for a reader goes through here
    (the records API, cases' linked records), never through the record as stored.
    """
    if "view_of" in record_doc:
        return None
    wanted = set(tags)
    if wanted & set(record_doc.get("readers") or ()):
        return dict(record_doc)
    for view in record_doc.get("views") or []:
        if wanted & set(view.get("readers") or ()):
            return dict(view["view"])
    return None


# ------------------------------------------------------------------ planning


def content_of(doc: Mapping[str, Any]) -> Content:
    """A stored view document without its bookkeeping (what a reader's view is built from)."""
    return {k: v for k, v in doc.items() if k not in INTERNAL_FIELDS}


@dataclass
class ViewDoc:
    """One view document to store: its key, content, exact tokens and basis."""

    key: str
    content: Content
    tokens: frozenset[Token]
    basis: str


@dataclass
class Change:
    """Tokens whose view changed from ``before`` (None: they saw nothing) to ``after``."""

    tokens: frozenset[Token]
    before: Content | None
    after: Content
    doc_key: str


@dataclass
class Plan:
    """The record document's content and readers, its other views, and what changed."""

    full: Content
    full_tokens: frozenset[Token]
    full_basis: str
    partials: list[ViewDoc]
    removed: list[str]
    changes: list[Change]


def _hash_key(record_key: str, tokens: Iterable[Token], taken: set[str]) -> str:
    digest = hashlib.sha1(",".join(sorted(tokens)).encode()).hexdigest()
    n = 16
    while f"{record_key}#{digest[:n]}" in taken and n < len(digest):
        n += 4
    return f"{record_key}#{digest[:n]}"


def _sees_all(parts: Parts, token: Token) -> bool:
    """``token`` sees every part of the record, with no field cut."""
    return (
        all(token in who for who in parts.sources)
        and all(token in who for who in parts.sightings)
        and all(token in who for who in parts.links)
        and not any(token in hidden for cuts in parts.cuts for _, hidden in cuts)
    )


def partition(parts: Parts) -> list[frozenset[Token]]:
    """Tokens grouped by what they see, by set refinement over the parts (not per token).

    Tokens that see no source are in no group (a record with no visible source is
    not shown; a sighting or link is never seen without its source).
    """
    if not parts.sources:
        return []
    groups = [frozenset().union(*parts.sources)]
    splitters = [*parts.sources, *parts.sightings, *parts.links]
    splitters += [hidden for cuts in parts.cuts for _, hidden in cuts]
    for who in splitters:
        if all(g <= who or not (g & who) for g in groups):
            continue  # the common case: this part splits nobody
        nxt: list[frozenset[Token]] = []
        for g in groups:
            inside, outside = g & who, g - who
            nxt.extend(x for x in (inside, outside) if x)
        groups = nxt
    return groups


class _Had:
    """A document of the stored record: its key, basis, content and the tokens reading it.

    The content is taken from the stored document only when asked for (most
    plans never need the old content of the record document).
    """

    __slots__ = ("key", "basis", "tokens", "_doc", "_content")

    def __init__(
        self, key: str, basis: str, tokens: frozenset[Token], doc: Mapping[str, Any],
        content: Content | None = None,
    ) -> None:  # fmt: skip
        self.key, self.basis, self.tokens, self._doc = key, basis, tokens, doc
        self._content = content

    @property
    def content(self) -> Content:
        if self._content is None:
            self._content = content_of(self._doc)
        return self._content

    @property
    def raw(self) -> Mapping[str, Any]:
        """The stored document itself (its bookkeeping too): enough to compare against."""
        return self._content if self._content is not None else self._doc


def _old_views(old: Mapping[str, Any] | None, audiences: AudienceSet, key: str) -> list[_Had]:
    if old is None:
        return []
    if "basis" not in old:  # stored before views existed: everyone saw (a filter of) it
        return [_Had("", "", audiences.tokens, old)]
    had = [_Had(key, str(old["basis"]), audiences.expand(old.get("readers") or []), old)]
    for view in old.get("views") or []:
        tokens = audiences.expand(view.get("readers") or [])
        had.append(_Had(view["key"], str(view["basis"]), tokens, view, view["view"]))
    return had


def _one_view(
    record: Mapping[str, Any],
    audiences: AudienceSet,
    build: Callable[[Visible], Content],
    old: Mapping[str, Any] | None,
    group: frozenset[Token],
    basis: str,
) -> Plan:
    """The common case: every reader that sees anything of the record sees all of it, and
    did before (or the record is new). One view, rebuilt; no per-reader work at all."""
    content = build(
        Visible(
            tuple(record.get("sources") or []),
            tuple(record.get("sightings") or []),
            tuple(record.get("links") or []),
            basis,
        )
    )
    key = str(record["key"])
    changes: list[Change] = []
    before = audiences.expand(old.get("readers") or []) if old is not None else frozenset()
    stayed, arrived = group & before, group - before
    if stayed:
        changes.append(Change(stayed, cast(Content, old), content, key))
    if arrived:
        changes.append(Change(arrived, None, content, key))
    return Plan(content, group, basis, [], [], changes)


def plan_views(
    record: Mapping[str, Any],
    audiences: AudienceSet,
    build: Callable[[Visible], Content],
    *,
    old: Mapping[str, Any] | None = None,
    force_full: bool = False,
) -> Plan:
    """Decide every view of ``record`` (its parts as merged now) against ``old``.

    ``old`` is the record document as stored before this change (None for a new
    record). ``build`` computes a view's content from its visible parts (once
    per distinct new basis). ``force_full`` rebuilds the record document's own
    content even if its basis did not change. Work is by set operations over the
    record's parts and stored views, never a loop over every reader.
    """
    key = str(record["key"])
    parts = parts_of(record, audiences)
    new_full_basis = full_basis(record)
    groups = partition(parts)
    if (
        len(groups) == 1
        and (old is None or ("basis" in old and not old.get("views")))
        and not force_full
        and _sees_all(parts, min(groups[0]))
        and (old is None or old["basis"] != new_full_basis)
    ):
        return _one_view(record, audiences, build, old, groups[0], new_full_basis)
    had = _old_views(old, audiences, key)
    old_by_key = {h.key: h for h in had if h.key}
    adopt: dict[str, str] = {}
    for h in sorted(had, key=lambda h: (h.key != key, h.key)):
        if h.key:
            adopt.setdefault(h.basis, h.key)
    full_unchanged = (
        not force_full and key in old_by_key and old_by_key[key].basis == new_full_basis
    )
    built: dict[str, Content] = {}

    def content_for(visible: Visible) -> Content:
        if visible.basis not in built:
            built[visible.basis] = build(visible)
        return built[visible.basis]

    if full_unchanged:
        full_content = old_by_key[key].content
    else:
        full_content = content_for(
            Visible(
                tuple(record.get("sources") or []),
                tuple(record.get("sightings") or []),
                tuple(record.get("links") or []),
                new_full_basis,
            )
        )

    # Each group of tokens seeing alike, split by the document each part of it read.
    Source = tuple[str, str]  # ("old", doc key) | ("kept", record key) | ("new", basis)
    assigned: dict[Source, set[Token]] = {}
    visible_of: dict[Source, Visible] = {}
    moves: dict[tuple[str, Source], set[Token]] = {}  # (old doc key or "", source) -> tokens

    def put(source: Source, tokens: frozenset[Token], came_from: str, visible: Visible) -> None:
        if source == ("old", key) and not full_unchanged:
            source = ("kept", key)  # the record document is rebuilt: its old content moves
        assigned.setdefault(source, set()).update(tokens)
        visible_of[source] = visible
        moves.setdefault((came_from, source), set()).update(tokens)

    everything: Visible | None = None
    for group in groups:
        token = min(group)
        if _sees_all(parts, token):
            if everything is None:  # the common case: one group that sees every part
                everything = Visible(
                    tuple(record.get("sources") or []),
                    tuple(record.get("sightings") or []),
                    tuple(record.get("links") or []),
                    new_full_basis,
                )
            visible = everything
        else:
            visible = visible_parts(record, parts, token)
        rest = group
        for h in had:
            mine = rest & h.tokens
            if not mine:
                continue
            rest = rest - mine
            carried = bool(h.key) and h.basis == visible.basis
            put(("old", h.key) if carried else ("new", visible.basis), mine, h.key, visible)
        if rest:  # readers new to this record's views (the registry changed): adopt or build
            found = adopt.get(visible.basis)
            put(("old", found) if found else ("new", visible.basis), rest, "", visible)

    full_source: Source = ("old", key) if full_unchanged else ("new", new_full_basis)
    full_tokens = frozenset(assigned.pop(full_source, set()))
    content_by_source: dict[Source, tuple[str, Content]] = {full_source: (key, full_content)}
    partials: list[ViewDoc] = []
    # Views carried over keep their document; the others get a key of their tokens.
    taken = {key} | {ref for (kind, ref) in assigned if kind == "old"}
    for source, tokens in sorted(assigned.items()):
        kind, ref = source
        if kind == "old":
            doc_key, content = ref, old_by_key[ref].content
        else:
            doc_key = _hash_key(key, tokens, taken)
            taken.add(doc_key)
            content = content_for(visible_of[source]) if kind == "new" else old_by_key[key].content
        partials.append(ViewDoc(doc_key, content, frozenset(tokens), visible_of[source].basis))
        content_by_source[source] = (doc_key, content)
    kept_keys = {v.key for v in partials}
    removed = sorted(k for k in old_by_key if k != key and k not in kept_keys)

    changes: list[Change] = []
    for (came_from, source), tokens in sorted(moves.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if source == full_source:
            doc_key, content = key, full_content
        else:
            doc_key, content = content_by_source[source]
        unchanged = came_from and (
            (source[0] == "old" and source[1] == came_from)
            or (source[0] == "kept" and came_from == key)
        )
        if unchanged:
            continue  # same content as before: nothing happened for these readers
        # (only compared against: the stored document will do, bookkeeping and all)
        before = (
            cast(Content, old_by_key[came_from].raw)
            if came_from
            else (cast(Content, had[0].raw) if had and not had[0].key else None)
        )
        changes.append(Change(frozenset(tokens), before, content, doc_key))
    return Plan(
        full=full_content,
        full_tokens=full_tokens,
        full_basis=new_full_basis,
        partials=partials,
        removed=removed,
        changes=changes,
    )


def stored_views(plan: Plan, audiences: AudienceSet) -> list[dict[str, Any]]:
    """The record document's ``views`` bookkeeping for ``plan``."""
    return [
        {
            "key": v.key,
            "readers": audiences.compress(v.tokens),
            "basis": v.basis,
            "view": v.content,
        }
        for v in plan.partials
    ]


def rescore_due(full: Mapping[str, Any], views: Sequence[Mapping[str, Any]]) -> str | None:
    """The earliest ``next_rescore_at`` of the record's views (what the re-score pages on)."""
    moments = [full.get("next_rescore_at")] + [v["view"].get("next_rescore_at") for v in views]
    found = [m for m in moments if isinstance(m, str)]
    return min(found) if found else None
