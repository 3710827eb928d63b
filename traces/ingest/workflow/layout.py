"""The tables of a workflow.db snapshot (with events.db attached), the indexes
and per-execution aggregates made on the copy, and the query over executions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from ..records import ParseError, Status
from ..sqlite_layout import (
    Table,
    ensure_index,
    find_table,
    iter_rows_and_extras,
    jsonable,
    normalise_status,
    schema_tables,
)

EVENTS_TABLE = "executionevents"
COMPENSATION = "compensation"
EVENTS_SCHEMA = "tracer_events"

TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED)
# Step statuses as SQL lists: left open (running, pending), ended neither well nor badly.
_OPEN = f"('{Status.RUNNING}', '{Status.PENDING}')"
_ENDED = f"('{Status.SKIPPED}', '{Status.CANCELLED}')"


@dataclass(frozen=True)
class Layout:
    executions: Table
    steps: Table
    logs: Table
    events: Table | None
    events_error: str = ""


def find_layout(conn: sqlite3.Connection, events_error: str) -> Layout:
    tables = schema_tables(conn)
    events, error = _events_table(conn, tables, events_error)
    return Layout(
        executions=find_table(conn, tables, "workflow_executions", ("id", "status")),
        steps=find_table(conn, tables, "execution_steps", ("id", "execution_id", "status")),
        logs=find_table(conn, tables, "execution_logs", ("id", "execution_id")),
        events=events,
        events_error=error,
    )


def _events_table(conn: sqlite3.Connection, tables: dict, error: str) -> tuple[Table | None, str]:
    """The events table: in workflow.db itself, else in the attached events copy."""
    required = ("execution_id", "sequence_num", "event_type")
    schema = "" if EVENTS_TABLE in tables else EVENTS_SCHEMA
    attached = [row[1] for row in conn.execute("PRAGMA database_list")]
    if schema and schema not in attached:
        return None, error
    try:
        found = find_table(
            conn, schema_tables(conn, schema), "execution_events", required, schema=schema
        )
    except ParseError as exc:
        return None, f"events: {exc}"
    return found, error


def prepare(conn: sqlite3.Connection, lay: Layout) -> None:
    # workflow.db has no index on execution_id; the copy is ours to index.
    ensure_index(conn, lay.executions, ["id"])
    ensure_index(conn, lay.steps, ["execution_id", "sequence_num"])
    ensure_index(conn, lay.logs, ["execution_id", "id"])
    if lay.events is not None:
        ensure_index(conn, lay.events, ["execution_id", "sequence_num"])
    _status_words(conn, lay.steps)
    for name, sql in _aggregate_sql(lay).items():
        conn.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        conn.execute(f"CREATE INDEX temp.{name}_eid ON {name} (eid)")


def _status_words(conn: sqlite3.Connection, s: Table) -> None:
    """Each status word of the steps as `normalise_status` reads it, so that the
    counts made in SQL classify steps as their records do (`COMPLETED` succeeded).
    Words go in and are matched as SQL has them, not as Python decodes them."""
    conn.execute("CREATE TEMP TABLE tracer_wf_status (word TEXT PRIMARY KEY, status TEXT)")
    conn.execute(
        f"INSERT INTO temp.tracer_wf_status (word) SELECT DISTINCT {as_word(s)} FROM {s.sql}"
    )
    words = conn.execute("SELECT rowid, word FROM temp.tracer_wf_status").fetchall()
    conn.executemany(
        "UPDATE temp.tracer_wf_status SET status = ? WHERE rowid = ?",
        [(normalise_status(word), rowid) for rowid, word in words],
    )


def as_word(s: Table, alias: str = "") -> str:
    return f"CAST({s.col('status', alias)} AS TEXT)"


def _aggregate_sql(lay: Layout) -> dict[str, str]:
    s, g = lay.steps, lay.logs
    status, kind = s.col("status", "s"), s.col("step_type", "s")
    normal = f"{kind} IS NOT '{COMPENSATION}'"
    sql = {
        # completed/failed/running count the source's words (a changed word is a
        # changed run); ok/bad/open/ended count the steps as they are read.
        "tracer_wf_steps": (
            f"SELECT {s.col('execution_id', 's')} AS eid, count(*) AS n, "
            f"total({s.col('duration_ms', 's')}) AS duration, "
            f"max({s.col('completed_at', 's')}) AS done, "
            f"sum({status} = 'completed') AS completed, sum({status} = 'failed') AS failed, "
            f"sum({status} = 'running') AS running, "
            f"sum({normal} AND w.status = '{Status.SUCCEEDED}') AS ok, "
            f"sum({normal} AND w.status = '{Status.FAILED}') AS bad, "
            f"sum({normal} AND w.status IN {_OPEN}) AS open, "
            f"sum({normal} AND w.status IN {_ENDED}) AS ended "
            f"FROM {s.sql} s LEFT JOIN temp.tracer_wf_status w ON w.word IS {as_word(s, 's')} "
            "GROUP BY 1"
        ),
        "tracer_wf_logs": (
            f"SELECT {g.col('execution_id')} AS eid, count(*) AS n, max({g.col('id')}) AS last, "
            f"max({g.col('created_at')}) AS at FROM {g.sql} GROUP BY 1"
        ),
    }
    if lay.events is not None:
        v = lay.events
        sql["tracer_wf_events"] = (
            f"SELECT {v.col('execution_id')} AS eid, count(*) AS n, "
            f"max({v.col('sequence_num')}) AS last, max({v.col('created_at')}) AS at "
            f"FROM {v.sql} GROUP BY 1"
        )
    return sql


# The aggregates (all part of the fingerprint), then what is looked up per execution.
AGGREGATES = [
    *("s.n", "s.duration", "s.done", "s.completed", "s.failed", "s.running"),
    *("s.ok", "s.bad", "s.open", "s.ended", "l.n", "l.last", "l.at", "v.n", "v.last", "v.at"),
]
_EXTRA = [*AGGREGATES, "started_fields", "event_start", "event_start_data", "event_end"]


def execution_rows(conn: sqlite3.Connection, lay: Layout) -> Iterator[tuple[dict, dict]]:
    """Each execution row with its aggregates and start/end facts, in one query."""
    e = lay.executions
    eid = e.col("id", "e")
    sql = (
        f"SELECT e.*, {', '.join(_extra_columns(lay, eid))} FROM {e.sql} e "
        f"LEFT JOIN temp.tracer_wf_steps s ON s.eid = {eid} "
        f"LEFT JOIN temp.tracer_wf_logs l ON l.eid = {eid} "
        + (f"LEFT JOIN temp.tracer_wf_events v ON v.eid = {eid} " if lay.events else "")
        + f"ORDER BY {e.col('started_at', 'e')}, {eid}"
    )
    for row, own, tail in iter_rows_and_extras(conn.execute(sql), len(_EXTRA)):
        extra = dict(zip(_EXTRA, tail, strict=True))
        extra["row"] = [jsonable(v) for v in own]
        yield row, extra


def _extra_columns(lay: Layout, eid: str) -> list[str]:
    g = lay.logs
    message = g.col("message", "x")
    started_log = (
        f"(SELECT {g.col('fields')} FROM {g.sql} x WHERE {g.col('execution_id', 'x')} = {eid} "
        f"AND ({message} = 'execution.started' OR {message} LIKE 'Execution started%') "
        f"ORDER BY {g.col('id', 'x')} LIMIT 1)"
    )
    events = lay.events is not None
    aggregates = [name if events or name[:2] != "v." else "NULL" for name in AGGREGATES]
    lookups = _event_lookups(lay.events, eid) if events else ["NULL"] * 3
    return [*aggregates, started_log, *lookups]


def _event_lookups(v: Table, eid: str) -> list[str]:
    def first(column: str, types: str, direction: str) -> str:
        return (
            f"(SELECT {v.col(column, 'y')} FROM {v.sql} y WHERE {v.col('execution_id', 'y')} = "
            f"{eid} AND {v.col('event_type', 'y')} IN ({types}) "
            f"ORDER BY {v.col('sequence_num', 'y')} {direction} LIMIT 1)"
        )

    started, ended = "'execution.started'", "'execution.completed', 'execution.failed'"
    return [
        first("created_at", started, "ASC"),
        first("event_data", started, "ASC"),
        first("created_at", ended, "DESC"),
    ]
