"""The case report for one participant: JSON, printable HTML and PDF (for a regulator's file).

Built only from that reader's view and timeline (respond/sharing.py), so it
contains exactly what the reader may see. The audit trail section lists every
action on the case the reader may see: who, when, what. The PDF is drawn with
fpdf2 (pure Python); CJK text needs a TrueType font with those glyphs
(``fonts-wqy-zenhei`` on Debian: found automatically, or
``THREATBAY_REPORT_FONT``); without one, CJK characters print as ``?``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


def audit_trail(timeline: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every action on the case the reader may see: when, who (agency, jurisdiction), what."""
    return [
        {
            "at": e["at"],
            "by": e.get("by"),
            "jurisdiction": e.get("jurisdiction"),
            "action": e["type"],
            "item": e.get("item"),
            "source": e.get("source"),
        }
        for e in timeline
    ]


def report_json(
    view: Mapping[str, Any], timeline: Sequence[Mapping[str, Any]], reader: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "report": "ThreatBay joint incident case",
        "reader": dict(reader),
        "case": dict(view),
        "timeline": list(timeline),
        "audit_trail": audit_trail(timeline),
    }


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return "<p class='empty'>—</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sections(
    view: Mapping[str, Any], timeline: Sequence[Mapping[str, Any]]
) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, headers, rows) of every section, shared by the HTML and PDF forms."""
    return [
        ("Participants", ["agency", "jurisdiction", "joined"],
         [[p["agency"], p["jurisdiction"], p["joined_at"]] for p in view["participants"]]),
        ("Statutory reporting clocks", ["jurisdiction", "stage", "due", "status", "reported"],
         [[c["jurisdiction"], c["stage"], c["due"] or "no fixed limit", c["status"],
           f"{c['met']['by']} {c['met']['at']} ref {c['met']['reference']}" if c["met"] else ""]
          for c in view["clocks"]]),
        ("Tasks", ["assignee", "task", "status", "outcome", "due", "TLP"],
         [[t["assignee"], t["title"], t["status"] + (" (overdue)" if t.get("overdue") else ""),
           t["outcome"], t.get("due") or "", t["tlp"].upper()] for t in view["tasks"]]),
        ("Requests", ["from", "to", "type", "deadline", "status", "answer"],
         [[r["by"], r["addressee"], r["request_type"], r.get("deadline") or "", r["status"],
           (r.get("answer") or {}).get("text", "")] for r in view["requests"]]),
        ("Impacts", ["jurisdiction", "category", "criticality", "description", "TLP"],
         [[i["jurisdiction"], i["category"], i.get("criticality"), i.get("description"),
           i["tlp"].upper()] for i in view["impacts"]]),
        ("Notes", ["at", "by", "note", "TLP"],
         [[n["at"], n["by"], n["text"], n["tlp"].upper()] for n in view["notes"]]),
        ("Linked alerts", ["alert", "level", "title"],
         [[a["alert"]["id"], a["alert"]["level"], a["alert"]["title"]] for a in view["alerts"]]),
        ("Linked records", ["record", "score"],
         [[r["record"]["key"], r["record"].get("score")] for r in view["records"]]),
        ("Audit trail", ["at", "by", "jurisdiction", "action"],
         [[a["at"], a["by"] or "", a["jurisdiction"] or "", a["action"]]
          for a in audit_trail(timeline)]),
    ]  # fmt: skip


def report_html(
    view: Mapping[str, Any], timeline: Sequence[Mapping[str, Any]], reader: Mapping[str, str]
) -> str:
    """A printable, self-contained HTML page (no script, no external resource)."""
    head = (
        f"<h1>{_e(view['title'])}</h1><p class='meta'>Case {_e(view['id'])} · "
        f"TLP:{_e(view['tlp'].upper())} · severity {_e(view['severity'])} · status "
        f"{_e(view['status'])} · determination {_e(view['determination'])} · lead "
        f"{_e(view['lead']['agency'] if view.get('lead') else '')}</p>"
        f"<p class='meta'>Prepared for {_e(reader.get('agency'))} "
        f"({_e(reader.get('jurisdiction'))})"
        f": this report contains exactly what that agency may see of the case.</p>"
    )
    body = "".join(
        f"<h2>{_e(title)}</h2>{_table(headers, rows)}"
        for title, headers, rows in sections(view, timeline)
    )
    style = (
        "body{font-family:sans-serif;margin:2em;color:#111}table{border-collapse:collapse;"
        "width:100%;margin-bottom:1em}td,th{border:1px solid #999;padding:4px;font-size:12px;"
        "text-align:left;vertical-align:top}.meta{color:#444}@media print{h2{break-after:avoid}}"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
        f"{_e(view['title'])}</title><style>{style}</style></head><body>{head}{body}</body></html>"
    )


def _font() -> str | None:
    configured = os.environ.get("THREATBAY_REPORT_FONT")
    for path in ([configured] if configured else []) + list(_FONTS):
        if path and Path(path).is_file():
            return path
    return None


def report_pdf(
    view: Mapping[str, Any], timeline: Sequence[Mapping[str, Any]], reader: Mapping[str, str]
) -> bytes:
    """The report as PDF (fpdf2); the same sections as the HTML form."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    font = _font()
    family = "Helvetica"
    if font:
        pdf.add_font("cjk", "", font)
        family = "cjk"
    pdf.add_page()

    def text(value: Any) -> str:
        s = "" if value is None else str(value)
        return s if font else s.encode("latin-1", "replace").decode("latin-1")

    pdf.set_font(family, size=14)
    pdf.multi_cell(0, 8, text(view["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=9)
    pdf.multi_cell(
        0, 5,
        text(f"Case {view['id']} | TLP:{view['tlp'].upper()} | severity {view['severity']} | "
             f"status {view['status']} | lead {(view.get('lead') or {}).get('agency', '')} | "
             f"for {reader.get('agency')} ({reader.get('jurisdiction')})"),
        new_x="LMARGIN", new_y="NEXT",
    )  # fmt: skip
    for title, headers, rows in sections(view, timeline):
        pdf.ln(2)
        pdf.set_font(family, size=11)
        pdf.cell(0, 7, text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=8)
        if not rows:
            pdf.cell(0, 5, "-", new_x="LMARGIN", new_y="NEXT")
            continue
        with pdf.table(
            text_align="LEFT", line_height=4.5, headings_style=FontFace(emphasis="")
        ) as table:
            row = table.row()
            for h in headers:
                row.cell(text(h))
            for values in rows:
                row = table.row()
                for v in values:
                    row.cell(text(v)[:500])
    return bytes(pdf.output())
