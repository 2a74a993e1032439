"""The rooms' dependency rule (ARCHITECTURE.md "Rules of the house"), checked on the source.

``core`` imports nothing of ours; ``records`` imports ``core``; the stages
(``ingest``, ``correlate``, ``notify``, ``api``, ``feeds``) import ``core`` and
``records`` only; only ``threatbay`` (and tests, benches) wire ``backends``.
Every import is read from the syntax tree, including those inside functions
and under ``TYPE_CHECKING``: a type-only arrow is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {
    "core", "records", "ingest", "correlate", "notify", "respond", "api", "feeds", "backends",
    "threatbay", "exports",
}  # fmt: skip
ALLOWED = {
    "core": {"core"},
    "records": {"core", "records"},
    "ingest": {"core", "records", "ingest"},
    "correlate": {"core", "records", "correlate"},
    "notify": {"core", "records", "notify"},
    "respond": {"core", "records", "respond"},
    # The case routes call the respond room as the TAXII inbox calls ingest.
    "api": {"core", "records", "api", "ingest", "respond", "exports"},
    # Blocklist formats (issue #19): pure rendering; the route and the CLI feed it records.
    "exports": {"core", "records", "exports"},
    "feeds": {"core", "records", "feeds"},
    "backends": {"core", "backends"},
}


def imported_rooms(path: Path) -> set[tuple[str, int]]:
    """(room, line) of every import of one of our packages in ``path``."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            room = name.split(".", 1)[0]
            if room in OURS:
                found.add((room, node.lineno))
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_rooms_inside_it(room: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {other}"
        for path in sorted((ROOT / room).rglob("*.py"))
        for other, line in sorted(imported_rooms(path))
        if other not in ALLOWED[room]
    ]
    assert not wrong, "arrows pointing outward:\n" + "\n".join(wrong)


def test_the_walker_sees_a_function_level_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from backends.kafka_bus import KafkaBus\n")
    assert imported_rooms(source) == {("backends", 2)}
