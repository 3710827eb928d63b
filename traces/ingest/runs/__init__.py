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

import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import (
    duration_between,
    fingerprint,
    is_sqlite,
    loads_json_or_text,
    normalise_name,
    open_sqlite_snapshot,
)
from ..records import CallRecord, LinkRecord, ParseError, RunRecord, StepRecord
from ..sqlite_layout import (
    BATCH,
    Snapshot,
    Table,
    as_float,
    as_int,
    as_text,
    chunks,
    column_set,
    derive_status,
    ensure_index,
    extra_columns,
    find_table,
    iter_rows,
    jsonable,
    lenient_time,
    normalise_status,
    placeholders,
    quote_ident,
    readonly_schema,
    schema_tables,
    shared_ids,
    sqlite_guard,
)

NAME = "runs"
# Part of every fingerprint: bump it when the mapping changes so stored runs are re-read.
_VERSION = 1

_RUN_COLUMNS = column_set(
    "id runtype trigger actortype actorid status currentstep startedat completedat durationms "
    "input output error createdat updatedat"
)
_STEP_COLUMNS = column_set(
    "id runid parentstepid stepindex actortype actorid steptype status entitytype entityid "
    "context input output itemstotal itemsprocessed itemssucceeded itemsfailed attempt retryof "
    "maxretries error startedat completedat durationms createdat updatedat"
)
_CALL_COLUMNS = column_set(
    "id stepid tool operation input output status error attempt retryof durationms metadata "
    "createdat"
)
_LINK_COLUMNS = column_set("id stepid linktype entitytype entityid externalid createdat")
_CALL_STATUS = {"pending": "running"}


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
    with open_sqlite_snapshot(path) as conn:
        snap = Snapshot(conn)
        try:
            layout = _layout(conn)
            _prepare(conn, layout)
            yield from _table_runs(snap, layout, origin)
            yield from _ghost_runs(snap, layout, origin)
            yield from _standalone_runs(snap, layout, origin)
        finally:
            snap.closed = True


# --- layout and precomputation -------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    runs: Table
    steps: Table
    calls: Table | None
    links: Table | None


def _layout(conn: sqlite3.Connection) -> _Layout:
    tables = schema_tables(conn)
    return _Layout(
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


def _prepare(conn: sqlite3.Connection, lay: _Layout) -> None:
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


def _aggregate_sql(lay: _Layout) -> dict[str, str]:
    """One GROUP BY per child table. Calls have no updated_at: a finishing call
    changes its status and duration, which the per-status parts catch. Without
    steps.updated_at nothing says which rows changed, so each row of steps,
    calls and links adds a hash of all its columns."""
    s = lay.steps
    rid = s.col("run_id", "s")
    hashed = _hashes_rows(lay)
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


def _hashes_rows(lay: _Layout) -> bool:
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


def _row_hash_sql(table: Table, alias: str = "") -> str:
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
    return f" || ',' || sum({_row_hash_sql(table, alias)})" if hashed else ""


def _per_status(rid: str, status: str, parts: str, source: str) -> str:
    return (
        f"SELECT rid, group_concat(part, ';') AS agg FROM ("
        f"SELECT {rid} AS rid, quote({status}) || ',' || {parts} AS part FROM {source} "
        f"WHERE {rid} IS NOT NULL GROUP BY {rid}, {status}) GROUP BY rid"
    )


def _agg_joins(lay: _Layout, run_id: str) -> tuple[str, str]:
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


def _agg_parts(agg: str | None) -> list[str]:
    # group_concat's order is unspecified: sort so that equal data gives an equal fingerprint.
    return sorted(agg.split(";")) if agg else []


# --- runs from the runs table ---------------------------------------------------------------


def _table_runs(snap: Snapshot, lay: _Layout, origin: str) -> Iterator[RunRecord]:
    r = lay.runs
    columns, joins = _agg_joins(lay, r.col("id", "r"))
    order = f"{r.col('created_at', 'r')}, {r.col('id', 'r')}"
    shared = shared_ids(snap.conn, r)
    cursor = snap.conn.execute(f"SELECT r.*, {columns} FROM {r.sql} r {joins} ORDER BY {order}")
    names = [normalise_name(d[0]) for d in cursor.description[:-3]]
    while batch := cursor.fetchmany(BATCH):
        for row in batch:
            values = dict(zip(names, row[:-3], strict=True))
            aggs = [_agg_parts(agg) for agg in row[-3:]]
            print_ = fingerprint(_VERSION, [jsonable(v) for v in row[:-3]], *aggs)
            record = _run_record(snap, lay, origin, values, print_)
            if record.external_id in shared:
                # Rows sharing an id are one run to the store: the last one read stays.
                record.attributes["rows_with_this_id"] = shared[record.external_id]
            yield record


def _run_record(snap: Snapshot, lay: _Layout, origin: str, row: dict, print_: str) -> RunRecord:
    attrs = {
        "created_at": jsonable(row.get("createdat")),
        "updated_at": jsonable(row.get("updatedat")),
        "actor_type": jsonable(row.get("actortype")),
        "actor_id": jsonable(row.get("actorid")),
        **extra_columns(lay.runs, row, _RUN_COLUMNS),
    }
    started = lenient_time(row.get("startedat"), attrs, "started_at")
    finished = lenient_time(row.get("completedat"), attrs, "completed_at")
    input_, input_cut = loads_json_or_text(row.get("input"))
    output, output_cut = loads_json_or_text(row.get("output"))
    run_id = row.get("id")
    return RunRecord(
        format=NAME,
        external_id=as_text(run_id),
        origin=origin,
        name=as_text(row.get("runtype")),
        type=as_text(row.get("runtype")),
        trigger=as_text(row.get("trigger")),
        actor=_actor(row),
        status=normalise_status(row.get("status")),
        raw_status=as_text(row.get("status")),
        started_at=started,
        finished_at=finished,
        duration_ms=_duration(row, started, finished),
        input=input_,
        output=output,
        error=as_text(row.get("error")),
        output_counters=_counters(output),
        progress_label=as_text(row.get("currentstep")),
        source_updated_at=lenient_time(row.get("updatedat"), attrs, "updated_at"),
        truncated=input_cut or output_cut,
        attributes=attrs,
        fingerprint=print_,
        steps=_run_steps(snap, lay, run_id),
        calls=_children(snap, lay.calls, lay, run_id, _call_record),
        links=_children(snap, lay.links, lay, run_id, _link_record),
    )


def _actor(row: dict) -> str:
    kind, ident = as_text(row.get("actortype")), as_text(row.get("actorid"))
    return f"{kind}:{ident}" if kind and ident else kind or ident


def _duration(row: dict, started, finished) -> float | None:
    value = as_float(row.get("durationms"))
    return value if value is not None else duration_between(started, finished)


def _counters(output: Any) -> dict[str, float]:
    if not isinstance(output, dict):
        return {}
    return {
        key: value
        for key, value in output.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


@sqlite_guard
def _run_steps(snap: Snapshot, lay: _Layout, run_id: Any) -> Iterator[StepRecord]:
    conn = snap.check()
    s = lay.steps
    if not s.has("run_id"):
        return
    pairs = _skeleton(conn, s, f"{s.col('run_id')} = ?", (run_id,))
    placed = _Forest(pairs, lambda parent: _outside_parent(conn, s, parent)).order()
    yield from _step_records(conn, s, placed)


@sqlite_guard
def _children(snap: Snapshot, table: Table | None, lay: _Layout, run_id: Any, build) -> Iterator:
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


# --- step trees -----------------------------------------------------------------------------


def _skeleton(conn: sqlite3.Connection, s: Table, where: str, params: Sequence) -> list[tuple]:
    """(id, parent_step_id) of the matching steps, siblings in their order. Only
    these two values per step are held in memory; full rows are read in batches."""
    order = f"{s.col('step_index')}, {s.col('created_at')}, {s.col('id')}"
    cursor = conn.execute(
        f"SELECT {s.col('id')}, {s.col('parent_step_id')} FROM {s.sql} "
        f"WHERE {where} ORDER BY {order}",
        tuple(params),
    )
    pairs: list[tuple] = []
    while batch := cursor.fetchmany(BATCH * 4):
        pairs.extend(batch)
    return pairs


def _outside_parent(conn: sqlite3.Connection, s: Table, parent: str) -> str:
    row = conn.execute(
        f"SELECT {s.col('run_id')} FROM {s.sql} WHERE {s.col('id')} = ? LIMIT 1", (parent,)
    ).fetchone()
    if row is None:
        return f"parent step {parent} does not exist"
    if row[0] is None:
        return f"parent step {parent} is a standalone step"
    return f"parent step {parent} belongs to run {as_text(row[0])}"


@dataclass(frozen=True, slots=True)
class _Placed:
    """A step's place in the yielded tree."""

    original: Any  # the id as stored, to query by
    key: str
    parent_key: str | None
    problem: str = ""
    declared_parent: str | None = None


class _Forest:
    """Orders steps parents first (depth-first, siblings in their order).

    A step whose parent is missing, elsewhere, itself, or part of a
    parent_step_id cycle becomes a root with the reason in `problem`: every
    step comes out exactly once, and the walk always ends."""

    def __init__(self, pairs: list[tuple], outside: Callable[[str], str]):
        self.nodes: dict[str, tuple[Any, str | None]] = {}
        for original, parent in pairs:
            parent_key = None if parent is None or parent == "" else as_text(parent)
            self.nodes.setdefault(as_text(original), (original, parent_key))
        self.children: dict[str, list[str]] = defaultdict(list)
        self.roots: list[str] = []
        self.problems: dict[str, str] = {}
        for key, (_, parent) in self.nodes.items():
            if parent is None:
                self.roots.append(key)
            elif parent == key:
                self._break(key, "step is its own parent")
            elif parent not in self.nodes:
                self._break(key, outside(parent))
            else:
                self.children[parent].append(key)

    def _break(self, key: str, problem: str) -> None:
        self.roots.append(key)
        self.problems[key] = problem

    def order(self) -> list[_Placed]:
        placed: list[_Placed] = []
        visited: set[str] = set()
        for root in self.roots:
            self._walk(root, placed, visited)
        for key in self.nodes:
            if key not in visited:
                member = self._cycle_member(key)
                self.problems[member] = (
                    f"parent_step_id cycle: parent {self.nodes[member][1]} is also a descendant"
                )
                self._walk(member, placed, visited)
        return placed

    def groups(self) -> list[list[_Placed]]:
        """The order split into one list per root (a root and its subtree)."""
        groups: list[list[_Placed]] = []
        for item in self.order():
            if item.parent_key is None:
                groups.append([])
            groups[-1].append(item)
        return groups

    def _walk(self, root: str, placed: list[_Placed], visited: set[str]) -> None:
        stack = [root]
        while stack:
            key = stack.pop()
            if key in visited:
                continue
            visited.add(key)
            original, parent = self.nodes[key]
            if key == root:
                problem = self.problems.get(key, "")
                placed.append(_Placed(original, key, None, problem, parent if problem else None))
            else:
                placed.append(_Placed(original, key, parent))
            stack.extend(reversed([c for c in self.children.get(key, ()) if c not in visited]))

    def _cycle_member(self, key: str) -> str:
        # Unvisited steps all have unvisited parents in the set: walking up must loop.
        seen: set[str] = set()
        while key not in seen:
            seen.add(key)
            key = self.nodes[key][1]
        return key


def _step_records(conn: sqlite3.Connection, s: Table, placed: list[_Placed]) -> Iterator:
    head = f"SELECT * FROM {s.sql} WHERE {s.col('id')} IN "
    for chunk in chunks(placed):
        sql = head + f"({placeholders(len(chunk))})"
        rows: dict[str, dict] = {}
        for row in iter_rows(conn.execute(sql, [p.original for p in chunk])):
            rows.setdefault(as_text(row.get("id")), row)
        for item in chunk:
            if item.key in rows:
                yield _step_record(s, rows[item.key], item)


def _step_record(s: Table, row: dict, placed: _Placed) -> StepRecord:
    attrs = _step_attributes(s, row, placed)
    started = lenient_time(row.get("startedat"), attrs, "started_at")
    finished = lenient_time(row.get("completedat"), attrs, "completed_at")
    input_, input_cut = loads_json_or_text(row.get("input"))
    output, output_cut = loads_json_or_text(row.get("output"))
    step_type = as_text(row.get("steptype"))
    return StepRecord(
        key=placed.key,
        name=step_type,
        type=step_type,
        status=normalise_status(row.get("status")),
        raw_status=as_text(row.get("status")),
        parent_key=placed.parent_key,
        started_at=started,
        finished_at=finished,
        duration_ms=_duration(row, started, finished),
        input=input_,
        output=output,
        error=as_text(row.get("error")),
        attempt=as_int(row.get("attempt")),
        retry_of=as_text(row.get("retryof")),
        max_retries=as_int(row.get("maxretries")),
        items_total=as_int(row.get("itemstotal")),
        items_processed=as_int(row.get("itemsprocessed")),
        items_succeeded=as_int(row.get("itemssucceeded")),
        items_failed=as_int(row.get("itemsfailed")),
        entity_type=as_text(row.get("entitytype")),
        entity_id=as_text(row.get("entityid")),
        truncated=input_cut or output_cut,
        attributes=attrs,
    )


def _step_attributes(s: Table, row: dict, placed: _Placed) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "actor": _actor(row),
        "actor_type": jsonable(row.get("actortype")),
        "actor_id": jsonable(row.get("actorid")),
        "step_index": jsonable(row.get("stepindex")),
        "created_at": jsonable(row.get("createdat")),
        "updated_at": jsonable(row.get("updatedat")),
    }
    context, _ = loads_json_or_text(row.get("context"))
    if context is not None:
        attrs["context"] = context
    if placed.problem:
        attrs["parent_problem"] = placed.problem
        attrs["parent_step_id"] = placed.declared_parent
    attrs.update(extra_columns(s, row, _STEP_COLUMNS))
    return attrs


# --- calls and links ------------------------------------------------------------------------


def _call_record(c: Table, row: dict) -> CallRecord:
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


def _link_record(link: Table, row: dict) -> LinkRecord:
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


# --- runs without a runs row ----------------------------------------------------------------


def _ghost_runs(snap: Snapshot, lay: _Layout, origin: str) -> Iterator[RunRecord]:
    """Steps whose run_id names no run (its row deleted, or not yet written)."""
    s, r = lay.steps, lay.runs
    if not s.has("run_id"):
        return
    columns, joins = _agg_joins(lay, "g.rid")
    missing = (
        f"SELECT DISTINCT {s.col('run_id', 's')} AS rid FROM {s.sql} s "
        f"WHERE {s.col('run_id', 's')} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {r.sql} r WHERE {r.col('id', 'r')} = {s.col('run_id', 's')})"
    )
    rows = snap.conn.execute(f"SELECT g.rid, {columns} FROM ({missing}) g {joins}").fetchall()
    for run_id, *aggs in rows:
        parts = [_agg_parts(agg) for agg in aggs]
        yield RunRecord(
            format=NAME,
            external_id=as_text(run_id),
            origin=origin,
            status=_ghost_status(snap.conn, s, run_id),
            attributes={"run_row_missing": True},
            fingerprint=fingerprint(_VERSION, "ghost", jsonable(run_id), *parts),
            steps=_run_steps(snap, lay, run_id),
            calls=_children(snap, lay.calls, lay, run_id, _call_record),
            links=_children(snap, lay.links, lay, run_id, _link_record),
        )


def _ghost_status(conn: sqlite3.Connection, s: Table, run_id: Any) -> str:
    sql = f"SELECT DISTINCT {s.col('status')} FROM {s.sql} WHERE {s.col('run_id')} = ?"
    return derive_status(normalise_status(row[0]) for row in conn.execute(sql, (run_id,)))


# --- standalone steps -----------------------------------------------------------------------


def _standalone_runs(snap: Snapshot, lay: _Layout, origin: str) -> Iterator[RunRecord]:
    conn, s = snap.conn, lay.steps
    where = f"{s.col('run_id')} IS NULL"
    forest = _Forest(_skeleton(conn, s, where, ()), lambda p: _outside_parent(conn, s, p))
    groups = forest.groups()
    if not groups:
        return
    prints = _StandalonePrints(conn, lay)
    taken = _run_ids(conn, lay)
    for chunk in chunks(groups):
        roots = [group[0] for group in chunk]
        rows = {r.key: r for r in _step_records(conn, s, roots)}
        for group in chunk:
            root = rows.get(group[0].key)
            if root is not None:
                record = _standalone_record(snap, lay, origin, root, group, prints.of(group))
                if record.external_id in taken:
                    # A run with this id exists: the step's run must not replace it.
                    record.external_id = f"standalone-step:{root.key}"
                    record.attributes["run_id_taken"] = root.key
                yield record


def _run_ids(conn: sqlite3.Connection, lay: _Layout) -> set[str]:
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
    snap: Snapshot, lay: _Layout, origin: str, root: StepRecord, group: list[_Placed], print_: str
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
        output_counters=_counters(root.output),
        items_total=root.items_total,
        items_processed=root.items_processed,
        items_succeeded=root.items_succeeded,
        items_failed=root.items_failed,
        source_updated_at=lenient_time(root.attributes.get("updated_at"), {}, "updated_at"),
        truncated=root.truncated,
        attributes={"standalone": True},
        fingerprint=print_,
        steps=_group_steps(snap, lay, group),
        calls=_group_children(snap, lay.calls, group, _call_record),
        links=_group_children(snap, lay.links, group, _link_record),
    )


@sqlite_guard
def _group_steps(snap: Snapshot, lay: _Layout, group: list[_Placed]) -> Iterator[StepRecord]:
    yield from _step_records(snap.check(), lay.steps, group)


@sqlite_guard
def _group_children(snap: Snapshot, table: Table | None, group: list[_Placed], build) -> Iterator:
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


class _StandalonePrints:
    """Fingerprint parts of every standalone step, read in three queries."""

    def __init__(self, conn: sqlite3.Connection, lay: _Layout):
        s = lay.steps
        standalone = f"SELECT {s.col('id')} FROM {s.sql} WHERE {s.col('run_id')} IS NULL"
        hashed = _hashes_rows(lay)
        self.steps = self._read(
            conn,
            f"SELECT {s.col('id')}, quote({s.col('status')}) || ',' || "
            f"quote({s.col('updated_at')}) || ',' || quote({s.col('duration_ms')}) || ',' || "
            f"quote({s.col('items_processed')})"
            + (f" || ',' || {_row_hash_sql(s)}" if hashed else "")
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
            parts += f" || ',' || {_row_hash_sql(table)}"
        return self._read(
            conn,
            f"SELECT {step_id}, group_concat({parts}, ';') FROM {table.sql} "
            f"WHERE {step_id} IN ({standalone}) GROUP BY {step_id}",
        )

    def of(self, group: list[_Placed]) -> str:
        keys = [p.key for p in group]
        return fingerprint(
            _VERSION,
            "standalone",
            [(k, self.steps.get(k), _agg_parts(self.calls.get(k))) for k in keys],
            [_agg_parts(self.links.get(k)) for k in keys],
        )
