"""The one place TAXII out talks to the sharing policy (DOMAIN.md "Sharing").

Pages are filtered natively by audience tags (``reader_tags`` ∩ ``audience``
≠ ∅), then each returned object goes through ``decide_object`` for the view
the reader gets (whole, redacted, or nothing).
"""

from __future__ import annotations

from typing import Any

from core import policy
from core.access import Principal
from core.provenance import Provenance
from records.audit import AuditEntry, Party, release_entry


def tags_of(reader: policy.Reader) -> tuple[str, ...]:
    return tuple(policy.reader_tags(reader))


def view_of(
    sharing: policy.SharingPolicy,
    reader: policy.Reader,
    doc: dict[str, Any],
    rules: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The object as ``reader`` may see it, or None; ``rules`` collects id -> deciding rule."""
    prov = Provenance.from_dict(doc["provenance"])
    purpose = policy.Purpose.TAXII_EXPORT
    decision = policy.decide_object(sharing, reader, purpose, doc["object"], prov)
    if rules is not None:
        rules[f"{doc['id']}|{doc['version']}"] = decision.rule
    if decision.outcome == "allow":
        obj: dict[str, Any] = doc["object"]
        return obj
    if decision.outcome == "allow_redacted":
        return decision.view
    return None


def release_entries(
    principal: Principal,
    items: list[tuple[dict[str, Any], dict[str, Any]]],
    rules: dict[str, str],
) -> list[AuditEntry]:
    """Audit entries for objects released across a border (DOMAIN.md: every one is logged)."""
    to = Party.of(principal)
    return [
        release_entry(
            action="taxii_export",
            purpose=policy.Purpose.TAXII_EXPORT.value,
            actor=to,
            to=to,
            target=doc["id"],
            source_agency=doc["agency"],
            source_jurisdictions=[doc["jurisdiction"]],
            tlp=doc["tlp"],
            redacted=seen is not doc["object"],
            rule=rules.get(f"{doc['id']}|{doc['version']}", ""),
        )
        for doc, seen in items
        if doc["jurisdiction"] != to.jurisdiction
    ]
