"""Calls and entity links of a run's steps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..common import loads_json_or_text
from ..records import CallRecord, LinkRecord
from ..sqlite_layout import (
    Snapshot,
    Table,
    as_float,
    as_int,
    as_text,
    chunks,
    column_set,
    extra_columns,
    iter_rows,
    jsonable,
    lenient_time,
    normalise_status,
    placeholders,
    sqlite_guard,
)
from .layout import Layout
from .steps import Placed

_CALL_COLUMNS = column_set(
    "id stepid tool operation input output status error attempt retryof durationms metadata "
    "createdat"
)
_LINK_COLUMNS = column_set("id stepid linktype entitytype entityid externalid createdat")
_CALL_STATUS = {"pending": "running"}


@sqlite_guard
def run_children(snap: Snapshot, table: Table | None, lay: Layout, run_id: Any, build) -> Iterator:
    """Calls or links of a run's steps, by time."""
    conn = snap.check()
    s = lay.steps
    if table is None or not s.has("run_id"):
        return
    sql = (
        f"SELECT c.* FROM {table.sql} c JOIN {s.sql} s ON {s.col('id', 's')} = "
        f"{table.col('step_id', 'c')} WHERE {s.col('run_id', 's')} = ? "
        f"ORDER BY {table.col('created_at', 'c')}, {table.col('id', 'c')}"
    )
    for row in iter_rows(conn.execute(sql, (run_id,))):
        yield build(table, row)


def call_record(c: Table, row: dict) -> CallRecord:
    attrs = extra_columns(c, row, _CALL_COLUMNS)
    metadata, _ = loads_json_or_text(row.get("metadata"))
    if metadata is not None:
        attrs["metadata"] = metadata
    input_, _ = loads_json_or_text(row.get("input"))
    output, _ = loads_json_or_text(row.get("output"))
    return CallRecord(
        key=as_text(row.get("id")),
        step_key=as_text(row.get("stepid")),
        tool=as_text(row.get("tool")),
        operation=as_text(row.get("operation")),
        status=normalise_status(row.get("status"), _CALL_STATUS),
        raw_status=as_text(row.get("status")),
        attempt=as_int(row.get("attempt")),
        retry_of=as_text(row.get("retryof")),
        started_at=lenient_time(row.get("createdat"), attrs, "created_at"),
        duration_ms=as_float(row.get("durationms")),
        input=input_,
        output=output,
        error=as_text(row.get("error")),
        attributes=attrs,
    )


def link_record(link: Table, row: dict) -> LinkRecord:
    attrs = extra_columns(link, row, _LINK_COLUMNS)
    if row.get("id") is not None:
        attrs["id"] = jsonable(row["id"])
    return LinkRecord(
        step_key=as_text(row.get("stepid")),
        link_type=as_text(row.get("linktype")),
        entity_type=as_text(row.get("entitytype")),
        entity_id=as_text(row.get("entityid")),
        external_id=as_text(row.get("externalid")),
        created_at=lenient_time(row.get("createdat"), attrs, "created_at"),
        attributes=attrs,
    )


@sqlite_guard
def group_children(snap: Snapshot, table: Table | None, group: list[Placed], build) -> Iterator:
    conn = snap.check()
    if table is None:
        return
    order = f"{table.col('created_at')}, {table.col('id')}"
    for chunk in chunks(group):
        sql = (
            f"SELECT * FROM {table.sql} WHERE {table.col('step_id')} "
            f"IN ({placeholders(len(chunk))}) ORDER BY {order}"
        )
        for row in iter_rows(conn.execute(sql, [p.original for p in chunk])):
            yield build(table, row)
