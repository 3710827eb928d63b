"""@systemoperator/runs SQLite databases (FORMATS.md §3): runs, step trees, calls, entity links.

Everything is read from a private snapshot of the database. A run's steps,
calls and links are generators over that snapshot: consume them while
iterating `parse()` (the store does), not after it has finished.

Run ids are only unique inside one database, so `origin` is the database's
path. A standalone step (`run_id` NULL) becomes a run of its own whose id is
the step id, and steps whose run row is missing are gathered under a run with
that id (`attributes["run_row_missing"]`), so no step is ever dropped. Calls
and links of steps that do not exist belong to no run and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..records import ParseError, RunRecord
from ..sqlite_layout import Snapshot, is_sqlite, readonly_schema, sqlite_guard
from .layout import NAME, find_layout, prepare
from .run_rows import ghost_runs, table_runs
from .standalone import standalone_runs

# Every run is read whole from one snapshot, so the loader may commit the runs
# of a big database in batches before the last one is read.
SNAPSHOT_READ = True


def sniff(path: Path, head: bytes) -> bool:
    if not is_sqlite(head):
        return False
    try:
        schema = readonly_schema(path, ["steps"])
    except ParseError:
        return False
    return "runs" in schema and {"runid", "parentstepid"} <= schema.get("steps", set())


@sqlite_guard
def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    origin = str(path.resolve())
    with Snapshot.open(path) as snap:
        layout = find_layout(snap.conn)
        prepare(snap.conn, layout)
        yield from table_runs(snap, layout, origin)
        yield from ghost_runs(snap, layout, origin)
        yield from standalone_runs(snap, layout, origin)


__all__ = ["NAME", "SNAPSHOT_READ", "parse", "sniff"]
