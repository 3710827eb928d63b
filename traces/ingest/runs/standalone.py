"""Standalone steps (`run_id` NULL): each root step with its subtree becomes a run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ..common import fingerprint
from ..records import RunRecord, StepRecord
from ..sqlite_layout import Snapshot, Table, as_text, chunks, lenient_time
from .calls import CALL_ROWS, LINK_ROWS, group_children
from .layout import NAME, VERSION, Layout, agg_parts, hashes_rows, row_hash_sql
from .run_rows import counters_of
from .steps import Forest, Placed, group_steps, outside_parent, step_records, step_skeleton


def standalone_runs(snap: Snapshot, lay: Layout, origin: str) -> Iterator[RunRecord]:
    conn, s = snap.conn, lay.steps
    where = f"{s.col('run_id')} IS NULL"
    forest = Forest(step_skeleton(conn, s, where, ()), lambda p: outside_parent(conn, s, p))
    groups = forest.groups()
    if not groups:
        return
    prints = _StandalonePrints(conn, lay)
    taken = _run_ids(conn, lay)
    for chunk in chunks(groups):
        roots = [group[0] for group in chunk]
        rows = {r.key: r for r in step_records(conn, s, roots)}
        for group in chunk:
            root = rows.get(group[0].key)
            if root is not None:
                record = _standalone_record(snap, lay, origin, root, group, prints.of(group))
                if record.external_id in taken:
                    # A run with this id exists: the step's run must not replace it.
                    record.external_id = f"standalone-step:{root.key}"
                    record.attributes["run_id_taken"] = root.key
                yield record


def _run_ids(conn: sqlite3.Connection, lay: Layout) -> set[str]:
    """The ids of the runs table and of the runs that steps name, as text."""
    r, s = lay.runs, lay.steps
    sql = f"SELECT DISTINCT COALESCE(CAST({r.col('id')} AS TEXT), '') FROM {r.sql}"
    if s.has("run_id"):
        sql += (
            f" UNION SELECT DISTINCT CAST({s.col('run_id')} AS TEXT) FROM {s.sql} "
            f"WHERE {s.col('run_id')} IS NOT NULL"
        )
    return {as_text(row[0]) for row in conn.execute(sql)}


def _standalone_record(
    snap: Snapshot, lay: Layout, origin: str, root: StepRecord, group: list[Placed], print_: str
) -> RunRecord:
    return RunRecord(
        format=NAME,
        external_id=root.key,
        origin=origin,
        name=root.name,
        type=root.type,
        actor=root.attributes.get("actor", ""),
        status=root.status,
        raw_status=root.raw_status,
        started_at=root.started_at,
        finished_at=root.finished_at,
        duration_ms=root.duration_ms,
        input=root.input,
        output=root.output,
        error=root.error,
        output_counters=counters_of(root.output),
        items_total=root.items_total,
        items_processed=root.items_processed,
        items_succeeded=root.items_succeeded,
        items_failed=root.items_failed,
        source_updated_at=lenient_time(root.attributes.get("updated_at"), {}, "updated_at"),
        truncated=root.truncated,
        attributes={"standalone": True},
        fingerprint=print_,
        steps=group_steps(snap, lay, group),
        calls=group_children(snap, lay.calls, group, CALL_ROWS),
        links=group_children(snap, lay.links, group, LINK_ROWS),
    )


class _StandalonePrints:
    """Fingerprint parts of every standalone step, read in three queries."""

    def __init__(self, conn: sqlite3.Connection, lay: Layout):
        s = lay.steps
        standalone = f"SELECT {s.col('id')} FROM {s.sql} WHERE {s.col('run_id')} IS NULL"
        hashed = hashes_rows(lay)
        self.steps = self._read(
            conn,
            f"SELECT {s.col('id')}, quote({s.col('status')}) || ',' || "
            f"quote({s.col('updated_at')}) || ',' || quote({s.col('duration_ms')}) || ',' || "
            f"quote({s.col('items_processed')})"
            + (f" || ',' || {row_hash_sql(s)}" if hashed else "")
            + f" FROM {s.sql} WHERE {s.col('run_id')} IS NULL",
        )
        self.calls = self._children(conn, lay.calls, standalone, hashed, "status", "duration_ms")
        self.links = self._children(conn, lay.links, standalone, hashed, "link_type", "created_at")

    @staticmethod
    def _read(conn: sqlite3.Connection, sql: str) -> dict[str, str]:
        return {as_text(key): value for key, value in conn.execute(sql)}

    def _children(self, conn, table: Table | None, standalone: str, hashed: bool, *cols) -> dict:
        if table is None:
            return {}
        step_id = table.col("step_id")
        parts = " || ',' || ".join(f"quote({table.col(c)})" for c in cols)
        if hashed:
            parts += f" || ',' || {row_hash_sql(table)}"
        return self._read(
            conn,
            f"SELECT {step_id}, group_concat({parts}, ';') FROM {table.sql} "
            f"WHERE {step_id} IN ({standalone}) GROUP BY {step_id}",
        )

    def of(self, group: list[Placed]) -> str:
        keys = [p.key for p in group]
        return fingerprint(
            VERSION,
            "standalone",
            [(k, self.steps.get(k), agg_parts(self.calls.get(k))) for k in keys],
            [agg_parts(self.links.get(k)) for k in keys],
        )
