"""duckflux's SQLite encoding: `<id>.sqlite`, tables `executions` and `steps`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..common import brief
from ..records import ParseError, RunRecord, StepRecord
from ..sqlite_layout import (
    SQLITE_ERRORS,
    corrupt_sqlite,
    jsonable,
    normalise_name,
    open_sqlite_snapshot,
    quote_ident,
    readonly_schema,
    schema_tables,
    sqlite_guard,
    table_columns,
)
from .model import (
    EXECUTION_COLUMNS,
    RETRY_HINT,
    STEP_COLUMNS,
    StepCollector,
    build_run,
    decode_text_value,
    dotted_locator,
    required_str,
    step_record,
)

# Columns holding a value that is JSON unless it was a string (stored raw).
_SQLITE_VALUE_FIELDS = frozenset({"inputs", "input", "output"})


def sniff(path: Path) -> bool:
    schema = readonly_schema(path, ("executions", "steps"))
    if not {"executions", "steps"} <= schema.keys():
        return False
    return "workflowid" in schema["executions"] and {"executionid", "seq"} <= schema["steps"]


@sqlite_guard  # a corrupt page can be met while reading rows
def parse(path: Path) -> Iterator[RunRecord]:
    with open_sqlite_snapshot(path) as conn:
        tables = schema_tables(conn)
        for table in ("executions", "steps"):
            if table not in tables:
                raise ParseError(f"table '{table}' is missing")
        executions, steps = tables["executions"], tables["steps"]
        rows = conn.execute(f"SELECT * FROM {quote_ident(executions)} ORDER BY rowid").fetchall()
        if not rows:
            raise ParseError(f"no execution row in table '{executions}' ({RETRY_HINT})")
        execution_id_column = table_columns(conn, steps).get("executionid")
        if execution_id_column is None:
            raise ParseError(f"table '{steps}' has no execution_id column")
        for row in rows:
            yield _sqlite_run(path, conn, row, steps, execution_id_column)


def _sqlite_run(
    path: Path, conn: sqlite3.Connection, row: sqlite3.Row, steps: str, id_column: str
) -> RunRecord:
    execution = _sqlite_model(row, EXECUTION_COLUMNS)
    locate = dotted_locator(f"executions row {brief(execution.get('id'))}")
    run_id = required_str(execution, "id", locate)
    query = f'SELECT rowid AS "_duckflux_rowid", * FROM {quote_ident(steps)}'
    collector = StepCollector()
    rowids: list[int] = []
    # steps.id is the completion order: the writer inserts a step when it ends.
    in_order = f"WHERE {quote_ident(id_column)} = ? ORDER BY rowid"
    for step_row in conn.execute(f"{query} {in_order}", (run_id,)):
        rowids.append(step_row["_duckflux_rowid"])
        collector.add(_sqlite_step(step_row), dotted_locator(f"steps row {rowids[-1]}"))

    def load_step(index: int) -> StepRecord:
        try:
            step_row = conn.execute(f"{query} WHERE rowid = ?", (rowids[index],)).fetchone()
        except SQLITE_ERRORS as exc:  # read lazily, outside parse
            raise corrupt_sqlite(exc) from exc
        if step_row is None:  # found by the scan, not by its rowid: a damaged index
            raise ParseError(f"corrupt SQLite database: steps row {rowids[index]} is unreadable")
        locate = dotted_locator(f"steps row {rowids[index]}")
        return step_record(_sqlite_step(step_row), index, locate)

    return build_run(path, "sqlite", execution, locate, collector, load_step)


def _sqlite_step(row: sqlite3.Row) -> dict[str, Any]:
    raw = _sqlite_model(row, STEP_COLUMNS, skip=("executionid", "_duckflux_rowid"))
    if "id" in raw:  # the autoincrement id: completion order, kept as an attribute
        raw["row_id"] = raw.pop("id")
    return raw


def _sqlite_model(
    row: sqlite3.Row, fields: dict[str, str], skip: Iterable[str] = ()
) -> dict[str, Any]:
    """A row as a model dict; columns the model does not know keep their names."""
    model: dict[str, Any] = {}
    columns: list[str] = row.keys()  # iterating a Row gives its values, not its keys
    for column in columns:
        normalised = normalise_name(column)
        if normalised in skip or column in skip:
            continue
        field = fields.get(normalised, column)
        value = jsonable(row[column])
        model[field] = decode_text_value(value) if field in _SQLITE_VALUE_FIELDS else value
    return model
