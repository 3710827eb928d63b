"""GoCodeAlone/workflow databases (FORMATS.md §4): `workflow.db`, with the
`events.db` beside it when there is one.

One run per execution; its steps by `sequence_num` (compensation steps under
one synthetic "compensation" step) and its log rows by `id`, merged with the
events of `events.db`: an event that a log row already tells only enriches it
(precise time, full I/O), an event no row tells becomes a log entry of its own.

Both databases are read through private snapshots, the events copy attached
to the workflow copy. A run's steps and logs are generators over them: consume
them while iterating `parse()`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..records import ParseError, RunRecord
from ..sqlite_layout import (
    SQLITE_ERRORS,
    Snapshot,
    corrupt_sqlite,
    is_sqlite,
    open_sqlite_snapshot,
    readonly_schema,
    shared_ids,
    sqlite_guard,
    sqlite_schema_or_none,
)
from .executions import NAME, PARSER_VERSION, execution_record
from .layout import EVENTS_SCHEMA, EVENTS_TABLE, execution_rows, find_layout, prepare

# Every run is read whole from one snapshot (both databases copied under a read
# lock), so the loader may commit the runs in batches before the last one is read.
SNAPSHOT_READ = True

_WORKFLOW_TABLES = frozenset({"workflowexecutions", "executionsteps", "executionlogs"})


def sniff(path: Path, head: bytes) -> bool:
    if not is_sqlite(head):
        return False
    try:
        tables = set(readonly_schema(path))
    except ParseError:
        return False
    return tables >= _WORKFLOW_TABLES or EVENTS_TABLE in tables


def companion_of(path: Path) -> Path | None:
    """For an events.db, the workflow.db it belongs to (same directory)."""
    path = Path(path)
    if _database_kind(path) != "events":
        return None
    main = _beside(path.parent, "workflow", "workflow.db")
    events = _events_of(main) if main is not None else None
    return main if events is not None and events.resolve() == path.resolve() else None


def companion_paths(path: Path) -> list[Path]:
    """For a workflow.db, the events.db read with it."""
    path = Path(path)
    events = _events_of(path) if _database_kind(path) == "workflow" else None
    return [events] if events is not None else []


def _database_kind(path: Path) -> str | None:
    tables = sqlite_schema_or_none(path)
    if tables is None:
        return None
    if set(tables) >= _WORKFLOW_TABLES:
        return "workflow"
    return "events" if EVENTS_TABLE in tables else None


def _events_of(main: Path) -> Path | None:
    return _beside(main.parent, "events", "events.db")


def _beside(directory: Path, kind: str, preferred: str) -> Path | None:
    """The file of that kind in `directory`: the usual name first, else the first by name."""
    first = directory / preferred
    if first.is_file() and _database_kind(first) == kind:
        return first
    with contextlib.suppress(OSError):
        for candidate in sorted(directory.iterdir()):
            if candidate != first and candidate.is_file() and _database_kind(candidate) == kind:
                return candidate
    return None


def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    if _database_kind(path) == "events":
        main = companion_of(path)
        if main is None:
            raise ParseError(
                f"{path.name} holds only execution events; put it beside its workflow.db"
            )
        path = main
    yield from _parse(path, _events_of(path))


@sqlite_guard
def _parse(path: Path, events_path: Path | None) -> Iterator[RunRecord]:
    origin = str(path.resolve())
    with contextlib.ExitStack() as stack:
        snap = stack.enter_context(Snapshot.open(path))
        conn = snap.conn
        events_error = _attach_events(stack, conn, events_path)
        layout = find_layout(conn, events_error)
        prepare(conn, layout)
        shared = shared_ids(conn, layout.executions)
        for row, extra in execution_rows(conn, layout):
            record = execution_record(snap, layout, origin, row, extra)
            if record.external_id in shared:
                # Rows sharing an id are one run to the store: the last one read stays.
                record.attributes["rows_with_this_id"] = shared[record.external_id]
            yield record


def _attach_events(stack: contextlib.ExitStack, conn: sqlite3.Connection, path) -> str:
    """Attach a snapshot of events.db to the workflow copy; a broken or locked
    events.db only costs the precise times, so its error is returned, not raised."""
    if path is None:
        return ""
    try:
        events = stack.enter_context(open_sqlite_snapshot(path))
        # Damage met later, while a run's logs are read, would fail the whole
        # workflow.db: the copy is checked now (a few ms) and left out if damaged.
        problems = [row[0] for row in events.execute("PRAGMA quick_check(3)")]
    except ParseError as exc:
        return f"{path.name}: {exc}"
    except SQLITE_ERRORS as exc:
        return f"{path.name}: {corrupt_sqlite(exc)}"
    if problems != ["ok"]:
        return f"{path.name}: corrupt SQLite database: {'; '.join(map(str, problems))}"
    copy = events.execute("PRAGMA database_list").fetchone()[2]
    conn.execute(f"ATTACH DATABASE ? AS {EVENTS_SCHEMA}", (copy,))
    return ""


__all__ = [
    "NAME",
    "PARSER_VERSION",
    "SNAPSHOT_READ",
    "companion_of",
    "companion_paths",
    "parse",
    "sniff",
]
