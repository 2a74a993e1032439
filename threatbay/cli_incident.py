"""``threatbay incident ...``: joint incident cases from the command line.

A client of the case API (``/api/v1/incidents``) with the caller's own key, so
it shows exactly what that key may see; ``check-rules`` and ``templates``
validate an operator's clock rules file and template folder offline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from core.clock import format_timestamp
from core.errors import ConfigurationError

incident_app = typer.Typer(help="Joint incident cases (GD, HK, MO): open, work, report.")

Url = Annotated[str, typer.Option("--url", envvar="THREATBAY_URL", help="ThreatBay API base URL.")]
Key = Annotated[
    str, typer.Option("--key", envvar="THREATBAY_KEY", help="Your API key (tb_<id>.<secret>).")
]
DEFAULT_URL = "http://127.0.0.1:8400"


def _call(url: str, key: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.request(
            method,
            f"/api/v1/incidents{path}",
            headers={"Authorization": f"Bearer {key}"},
            json=body,
            params={k: v for k, v in params.items() if v is not None},
        )
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        typer.echo(f"threatbay incident: HTTP {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


def _show(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _marking(tlp: str, recipients: list[str] | None, audience: list[str] | None) -> dict[str, Any]:
    return {"tlp": tlp, "recipients": recipients or [], "audience": audience or []}


@incident_app.command("list")
def list_cases(
    url: Url = DEFAULT_URL, key: Key = "", status: Annotated[str | None, typer.Option()] = None
) -> None:
    """Cases you take part in or are invited to."""
    for case in _call(url, key, "GET", "", status=status)["items"]:
        typer.echo(
            f"{case['id']}  {case['status']:9} {case['severity']:6} lead "
            f"{(case.get('lead') or {}).get('agency', '-'):12} {case['title']}"
        )


@incident_app.command()
def show(case_id: str, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """One case as your key may see it."""
    _show(_call(url, key, "GET", f"/{case_id}"))


@incident_app.command("open")
def open_case(
    title: Annotated[str, typer.Option(help="Case title (no personal data).")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    template: Annotated[str | None, typer.Option(help="Template name.")] = None,
    participant: Annotated[list[str] | None, typer.Option(help="Agency id (repeat).")] = None,
    alert: Annotated[list[str] | None, typer.Option(help="Alert id to link (repeat).")] = None,
    severity: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Open a case that your agency leads."""
    body = {"title": title, "template": template, "participants": participant or [],
            "alert_ids": alert or [], "severity": severity}  # fmt: skip
    case = _call(url, key, "POST", "", {k: v for k, v in body.items() if v is not None})
    typer.echo(case["id"])


@incident_app.command()
def accept(case_id: str, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """Accept a proposed case for your jurisdiction."""
    _call(url, key, "POST", f"/{case_id}/accept")
    typer.echo("accepted")


@incident_app.command()
def decline(
    case_id: str, reason: Annotated[str, typer.Option()], url: Url = DEFAULT_URL, key: Key = ""
) -> None:
    """Decline a proposed case for your jurisdiction, with a reason."""
    _call(url, key, "POST", f"/{case_id}/decline", {"reason": reason})
    typer.echo("declined")


@incident_app.command()
def task(
    case_id: str,
    title: Annotated[str, typer.Option()],
    assignee: Annotated[str, typer.Option(help="Agency id of a participant.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    due: Annotated[str | None, typer.Option(help="RFC 3339 due time.")] = None,
    tlp: Annotated[str, typer.Option()] = "amber",
) -> None:
    """Assign a task."""
    body = {"title": title, "assignee": assignee, "due": due, "marking": _marking(tlp, [], [])}
    case = _call(url, key, "POST", f"/{case_id}/tasks", body)
    typer.echo(case["tasks"][-1]["id"])


@incident_app.command()
def note(
    case_id: str,
    text: str,
    url: Url = DEFAULT_URL,
    key: Key = "",
    tlp: Annotated[str, typer.Option()] = "amber",
    recipient: Annotated[list[str] | None, typer.Option(help="TLP:RED recipient.")] = None,
    audience: Annotated[list[str] | None, typer.Option(help="Agency or GD/HK/MO.")] = None,
) -> None:
    """Add a note under its own marking."""
    body = {"text": text, "marking": _marking(tlp, recipient, audience)}
    _call(url, key, "POST", f"/{case_id}/notes", body)
    typer.echo("noted")


@incident_app.command()
def lead(case_id: str, agency: str, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """Hand the lead to another participating agency."""
    _call(url, key, "POST", f"/{case_id}/lead", {"agency": agency})
    typer.echo(f"lead: {agency}")


@incident_app.command()
def aware(
    case_id: str,
    operator_type: Annotated[str, typer.Option(help="cii | state-organ | ci-operator | other")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    at: Annotated[str | None, typer.Option(help="Awareness time (default: now).")] = None,
    serious: Annotated[bool, typer.Option()] = False,
) -> None:
    """Report an affected entity of your jurisdiction and when you became aware (starts clocks)."""
    body = {"aware_at": at or format_timestamp(datetime.now(UTC)),
            "operator_type": operator_type, "serious": serious}  # fmt: skip
    case = _call(url, key, "POST", f"/{case_id}/entities", body)
    for clock in case["clocks"]:
        typer.echo(
            f"{clock['jurisdiction']} {clock['stage']}: due {clock['due']} ({clock['status']})"
        )


@incident_app.command()
def report(
    case_id: str,
    url: Url = DEFAULT_URL,
    key: Key = "",
    format: Annotated[str, typer.Option(help="json | html | pdf")] = "html",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """The case report for your agency."""
    body = _call(url, key, "GET", f"/{case_id}/report", format=format)
    data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_INDENT_2)
    if output:
        output.write_bytes(data)
        typer.echo(f"written {output}")
    else:
        typer.echo(data.decode("utf-8", "replace"))


@incident_app.command("check-rules")
def check_rules(path: Path) -> None:
    """Validate a statutory clock rules file (exit 1 naming the mistake)."""
    from respond.clocks import load_clock_rules

    try:
        rules = load_clock_rules(path)
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    for s in rules.stages:
        within = f"{s.within.total_seconds() / 3600:g} h" if s.within else "no fixed limit"
        typer.echo(f"{s.jurisdiction} {s.name}: {within} when {dict(s.when)}")


@incident_app.command()
def templates(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """List (and validate) the case templates of a folder (default: the shipped ones)."""
    from respond.templates import load_templates

    try:
        found = load_templates(directory)
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    for t in found.values():
        typer.echo(f"{t.name}: {t.title} ({t.severity}, {len(t.tasks)} tasks)")
