"""The tables of a runs database snapshot, and the indexes and per-run aggregates
(fingerprint parts) made on the copy."""

from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass
from typing import Any

from ..sqlite_layout import Table, ensure_index, find_table, quote_ident, schema_tables

NAME = "runs"
# Part of every fingerprint: bump it when the mapping changes so stored runs are re-read.
VERSION = 1


@dataclass(frozen=True)
class Layout:
    runs: Table
    steps: Table
    calls: Table | None
    links: Table | None


def find_layout(conn: sqlite3.Connection) -> Layout:
    tables = schema_tables(conn)
    return Layout(
        runs=find_table(conn, tables, "runs", ("id", "status")),
        steps=find_table(conn, tables, "steps", ("id", "status")),
        calls=find_table(conn, tables, "calls", ("id", "step_id", "status"), optional=True),
        links=find_table(
            conn,
            tables,
            "step_links",
            ("step_id", "link_type", "entity_type", "entity_id"),
            optional=True,
        ),
    )


def prepare(conn: sqlite3.Connection, lay: Layout) -> None:
    """Indexes and per-run aggregates on the private copy, so that each run
    costs a few indexed reads and its fingerprint none."""
    ensure_index(conn, lay.runs, ["id"])
    ensure_index(conn, lay.steps, ["id"])
    ensure_index(conn, lay.steps, ["run_id"])
    for table in (lay.calls, lay.links):
        if table is not None:
            ensure_index(conn, table, ["step_id"])
    conn.create_function(_ROW_HASH, -1, _row_hash, deterministic=True)
    for name, sql in _aggregate_sql(lay).items():
        conn.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        conn.execute(f"CREATE INDEX temp.{name}_rid ON {name} (rid)")


def _aggregate_sql(lay: Layout) -> dict[str, str]:
    """One GROUP BY per child table. Calls have no updated_at: a finishing call
    changes its status and duration, which the per-status parts catch. Without
    steps.updated_at nothing says which rows changed, so each row of steps,
    calls and links adds a hash of all its columns."""
    s = lay.steps
    rid = s.col("run_id", "s")
    hashed = hashes_rows(lay)
    sql = {
        "tracer_step_agg": _per_status(
            rid,
            s.col("status", "s"),
            f"count(*) || ',' || quote(max({s.col('updated_at', 's')})) || ',' || "
            f"total({s.col('duration_ms', 's')}) || ',' || total({s.col('items_processed', 's')})"
            + _row_hash_part(s, "s", hashed),
            f"{s.sql} s",
        )
    }
    join = f"JOIN {s.sql} s ON {s.col('id', 's')} = "
    if lay.calls is not None:
        c = lay.calls
        sql["tracer_call_agg"] = _per_status(
            rid,
            c.col("status", "c"),
            f"count(*) || ',' || total({c.col('duration_ms', 'c')}) || ',' || "
            f"quote(max({c.col('created_at', 'c')}))" + _row_hash_part(c, "c", hashed),
            f"{c.sql} c {join}{c.col('step_id', 'c')}",
        )
    if lay.links is not None:
        link = lay.links
        sql["tracer_link_agg"] = (
            f"SELECT {rid} AS rid, count(*) || ',' || quote(max({link.col('created_at', 'l')})) "
            f"{_row_hash_part(link, 'l', hashed)} "
            f"AS agg FROM {link.sql} l {join}{link.col('step_id', 'l')} "
            f"WHERE {rid} IS NOT NULL GROUP BY {rid}"
        )
    return sql


_ROW_HASH = "tracer_row_hash"
# SQLite's default limit on a function's arguments is 127: wider rows are hashed in parts.
_HASH_ARGS = 100


def hashes_rows(lay: Layout) -> bool:
    return not lay.steps.has("updated_at")


def _row_hash(*values: Any) -> int:
    """CRC-32 of a row's values (bytes, or a nested hash), each with its length,
    so that moving bytes from one column to the next changes it."""
    crc = 0
    for value in values:
        if value is None:
            crc = zlib.crc32(b"\x00", crc)
            continue
        if not isinstance(value, bytes):
            value = str(value).encode()
        crc = zlib.crc32(len(value).to_bytes(8, "little"), crc)
        crc = zlib.crc32(value, crc)
    return crc


def row_hash_sql(table: Table, alias: str = "") -> str:
    """The hash of every column of a row. Values go in as blobs: a text value
    that is not UTF-8 cannot become a Python str."""
    prefix = f"{alias}." if alias else ""
    columns = [f"CAST({prefix}{quote_ident(real)} AS BLOB)" for real in table.columns.values()]
    expression = f"{_ROW_HASH}({', '.join(columns[:_HASH_ARGS])})"
    for start in range(_HASH_ARGS, len(columns), _HASH_ARGS - 1):
        expression = (
            f"{_ROW_HASH}({expression}, {', '.join(columns[start : start + _HASH_ARGS - 1])})"
        )
    return expression


def _row_hash_part(table: Table, alias: str, hashed: bool) -> str:
    """`|| ',' || <sum of the rows' hashes>` when rows are hashed, else nothing.
    A sum, so that the rows' order does not matter; CRC-32s cannot overflow it."""
    return f" || ',' || sum({row_hash_sql(table, alias)})" if hashed else ""


def _per_status(rid: str, status: str, parts: str, source: str) -> str:
    return (
        f"SELECT rid, group_concat(part, ';') AS agg FROM ("
        f"SELECT {rid} AS rid, quote({status}) || ',' || {parts} AS part FROM {source} "
        f"WHERE {rid} IS NOT NULL GROUP BY {rid}, {status}) GROUP BY rid"
    )


def agg_joins(lay: Layout, run_id: str) -> tuple[str, str]:
    """(select list, joins) adding the three aggregates to a query over runs."""
    present = {
        "tracer_step_agg": True,
        "tracer_call_agg": lay.calls is not None,
        "tracer_link_agg": lay.links is not None,
    }
    columns, joins = [], []
    for index, (name, exists) in enumerate(present.items()):
        if exists:
            columns.append(f"a{index}.agg")
            joins.append(f"LEFT JOIN temp.{name} a{index} ON a{index}.rid = {run_id}")
        else:
            columns.append("NULL")
    return ", ".join(columns), " ".join(joins)


def agg_parts(agg: str | None) -> list[str]:
    # group_concat's order is unspecified: sort so that equal data gives an equal fingerprint.
    return sorted(agg.split(";")) if agg else []
