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
    extra_values,
    fetch_rows,
    jsonable,
    lenient_time,
    normalise_status,
    placeholders,
    select_list,
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


# A call or link row as read: these columns, then the table's others (`select_list`).
_CALL_ROW = (
    "id", "step_id", "tool", "operation", "status", "attempt", "retry_of", "created_at",
    "duration_ms", "input", "output", "error", "metadata",
)  # fmt: skip
_LINK_ROW = ("id", "step_id", "link_type", "entity_type", "entity_id", "external_id", "created_at")


class _Reader:
    """How a call or link row is read: its SELECT list and its record builder."""

    def __init__(self, names: tuple[str, ...], known: frozenset[str], build):
        self.names, self.known, self.build, self.own = names, known, build, len(names)

    def select(self, table: Table, alias: str = "") -> tuple[str, list[str]]:
        return select_list(table, self.names, self.known, alias=alias)


@sqlite_guard
def run_children(
    snap: Snapshot, table: Table | None, lay: Layout, run_id: Any, reader: _Reader
) -> Iterator:
    """Calls or links of a run's steps, by time."""
    conn = snap.check()
    s = lay.steps
    if table is None or not s.has("run_id"):
        return
    columns, extras = reader.select(table, "c")
    sql = (
        f"SELECT {columns} FROM {table.sql} c JOIN {s.sql} s ON {s.col('id', 's')} = "
        f"{table.col('step_id', 'c')} WHERE {s.col('run_id', 's')} = ? "
        f"ORDER BY {table.col('created_at', 'c')}, {table.col('id', 'c')}"
    )
    build = reader.build
    for row in fetch_rows(conn.execute(sql, (run_id,))):
        yield build(extras, row)


def _call_record(extras: list[str], row: tuple) -> CallRecord:
    (ident, step_id, tool, operation, status, attempt, retry_of, created, duration, input_,
     output, error, metadata) = row[:13]  # fmt: skip
    attrs = extra_values(extras, row[13:]) if extras else {}
    metadata, _ = loads_json_or_text(metadata)
    if metadata is not None:
        attrs["metadata"] = metadata
    input_, _ = loads_json_or_text(input_)
    output, _ = loads_json_or_text(output)
    return CallRecord(
        key=as_text(ident),
        step_key=as_text(step_id),
        tool=as_text(tool),
        operation=as_text(operation),
        status=_call_status(status),
        raw_status=as_text(status),
        attempt=attempt if type(attempt) is int else as_int(attempt),
        retry_of=as_text(retry_of),
        started_at=lenient_time(created, attrs, "created_at"),
        duration_ms=as_float(duration),
        input=input_,
        output=output,
        error=as_text(error),
        attributes=attrs,
    )


def _call_status(word: Any) -> str:
    if type(word) is not str:
        return normalise_status(word, _CALL_STATUS)
    status = _CALL_STATUS_SEEN.get(word)
    if status is None:
        if len(_CALL_STATUS_SEEN) >= 256:
            _CALL_STATUS_SEEN.clear()
        status = _CALL_STATUS_SEEN[word] = normalise_status(word, _CALL_STATUS)
    return status


_CALL_STATUS_SEEN: dict[str, str] = {}


def _link_record(extras: list[str], row: tuple) -> LinkRecord:
    ident, step_id, link_type, entity_type, entity_id, external_id, created = row[:7]
    attrs = extra_values(extras, row[7:]) if extras else {}
    if ident is not None:
        attrs["id"] = jsonable(ident)
    return LinkRecord(
        step_key=as_text(step_id),
        link_type=as_text(link_type),
        entity_type=as_text(entity_type),
        entity_id=as_text(entity_id),
        external_id=as_text(external_id),
        created_at=lenient_time(created, attrs, "created_at"),
        attributes=attrs,
    )


CALL_ROWS = _Reader(_CALL_ROW, _CALL_COLUMNS, _call_record)
LINK_ROWS = _Reader(_LINK_ROW, _LINK_COLUMNS, _link_record)


@sqlite_guard
def group_children(
    snap: Snapshot, table: Table | None, group: list[Placed], reader: _Reader
) -> Iterator:
    conn = snap.check()
    if table is None:
        return
    columns, extras = reader.select(table)
    order = f"{table.col('created_at')}, {table.col('id')}"
    build = reader.build
    for chunk in chunks(group):
        sql = (
            f"SELECT {columns} FROM {table.sql} WHERE {table.col('step_id')} "
            f"IN ({placeholders(len(chunk))}) ORDER BY {order}"
        )
        for row in fetch_rows(conn.execute(sql, [p.original for p in chunk])):
            yield build(extras, row)
