"""Runs from the `runs` table, and runs whose row is missing but whose steps name them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from ..common import fingerprint
from ..records import RunRecord
from ..sqlite_layout import (
    Snapshot,
    Table,
    as_text,
    column_set,
    derive_status,
    extra_columns,
    iter_rows_and_extras,
    jsonable,
    lenient_time,
    normalise_status,
    shared_ids,
)
from .calls import CALL_ROWS, LINK_ROWS, run_children
from .layout import NAME, VERSION, Layout, agg_joins, agg_parts
from .steps import actor_of, outcome, run_steps

_RUN_COLUMNS = column_set(
    "id runtype trigger actortype actorid status currentstep startedat completedat durationms "
    "input output error createdat updatedat"
)


# The columns `outcome` reads, by normalised name.
_OUTCOME = (
    "status", "startedat", "completedat", "durationms", "input", "output", "error"
)  # fmt: skip


def table_runs(snap: Snapshot, lay: Layout, origin: str) -> Iterator[RunRecord]:
    r = lay.runs
    columns, joins = agg_joins(lay, r.col("id", "r"))
    order = f"{r.col('created_at', 'r')}, {r.col('id', 'r')}"
    shared = shared_ids(snap.conn, r)
    cursor = snap.conn.execute(f"SELECT r.*, {columns} FROM {r.sql} r {joins} ORDER BY {order}")
    for values, own, tail in iter_rows_and_extras(cursor, 3):
        aggs = [agg_parts(agg) for agg in tail]
        print_ = fingerprint(VERSION, [jsonable(v) for v in own], *aggs)
        record = _run_record(snap, lay, origin, values, print_)
        if record.external_id in shared:
            # Rows sharing an id are one run to the store: the last one read stays.
            record.attributes["rows_with_this_id"] = shared[record.external_id]
        yield record


def _run_record(snap: Snapshot, lay: Layout, origin: str, row: dict, print_: str) -> RunRecord:
    attrs = {
        "created_at": jsonable(row.get("createdat")),
        "updated_at": jsonable(row.get("updatedat")),
        "actor_type": jsonable(row.get("actortype")),
        "actor_id": jsonable(row.get("actorid")),
        **extra_columns(lay.runs, row, _RUN_COLUMNS),
    }
    fields = outcome(*map(row.get, _OUTCOME), attrs)
    run_id = row.get("id")
    return RunRecord(
        format=NAME,
        external_id=as_text(run_id),
        origin=origin,
        name=as_text(row.get("runtype")),
        type=as_text(row.get("runtype")),
        trigger=as_text(row.get("trigger")),
        actor=actor_of(row),
        **fields,
        output_counters=counters_of(fields["output"]),
        progress_label=as_text(row.get("currentstep")),
        source_updated_at=lenient_time(row.get("updatedat"), attrs, "updated_at"),
        attributes=attrs,
        fingerprint=print_,
        steps=run_steps(snap, lay, run_id),
        calls=run_children(snap, lay.calls, lay, run_id, CALL_ROWS),
        links=run_children(snap, lay.links, lay, run_id, LINK_ROWS),
    )


def counters_of(output: Any) -> dict[str, float]:
    if not isinstance(output, dict):
        return {}
    return {
        key: value
        for key, value in output.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def ghost_runs(snap: Snapshot, lay: Layout, origin: str) -> Iterator[RunRecord]:
    """Steps whose run_id names no run (its row deleted, or not yet written)."""
    s, r = lay.steps, lay.runs
    if not s.has("run_id"):
        return
    columns, joins = agg_joins(lay, "g.rid")
    missing = (
        f"SELECT DISTINCT {s.col('run_id', 's')} AS rid FROM {s.sql} s "
        f"WHERE {s.col('run_id', 's')} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {r.sql} r WHERE {r.col('id', 'r')} = {s.col('run_id', 's')})"
    )
    rows = snap.conn.execute(f"SELECT g.rid, {columns} FROM ({missing}) g {joins}").fetchall()
    for run_id, *aggs in rows:
        parts = [agg_parts(agg) for agg in aggs]
        yield RunRecord(
            format=NAME,
            external_id=as_text(run_id),
            origin=origin,
            status=_ghost_status(snap.conn, s, run_id),
            attributes={"run_row_missing": True},
            fingerprint=fingerprint(VERSION, "ghost", jsonable(run_id), *parts),
            steps=run_steps(snap, lay, run_id),
            calls=run_children(snap, lay.calls, lay, run_id, CALL_ROWS),
            links=run_children(snap, lay.links, lay, run_id, LINK_ROWS),
        )


def _ghost_status(conn: sqlite3.Connection, s: Table, run_id: Any) -> str:
    sql = f"SELECT DISTINCT {s.col('status')} FROM {s.sql} WHERE {s.col('run_id')} = ?"
    return derive_status(normalise_status(row[0]) for row in conn.execute(sql, (run_id,)))
