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
import itertools
import math
import re
import sqlite3
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..common import (
    SQLITE_ERRORS,
    corrupt_sqlite,
    duration_between,
    fingerprint,
    is_sqlite,
    loads_json_or_text,
    normalise_name,
)
from ..common import open_sqlite_snapshot as _snapshot
from ..records import LogRecord, ParseError, RunRecord, Status, StepRecord
from ..sqlite_layout import (
    BATCH,
    Snapshot,
    Table,
    as_float,
    as_int,
    as_text,
    column_set,
    derive_status,
    ensure_index,
    extra_columns,
    find_table,
    iter_rows,
    jsonable,
    lenient_time,
    normalise_status,
    readonly_schema,
    schema_tables,
    shared_ids,
    sqlite_guard,
    sqlite_schema_or_none,
)

NAME = "workflow"
# Part of every fingerprint: bump it when the mapping changes so stored runs are re-read.
_VERSION = 2

_WORKFLOW_TABLES = frozenset({"workflowexecutions", "executionsteps", "executionlogs"})
_EVENTS_TABLE = "executionevents"
_COMPENSATION = "compensation"
_EVENTS_SCHEMA = "tracer_events"

_EXECUTION_COLUMNS = column_set(
    "id workflow_id trigger_type trigger_data status output_data error_message triggered_by "
    "started_at completed_at duration_ms metadata"
)
_STEP_COLUMNS = column_set(
    "id execution_id step_name step_type input_data output_data status error_message "
    "started_at completed_at duration_ms sequence_num metadata tracer_input tracer_output"
)
_LOG_COLUMNS = column_set("id workflow_id execution_id level message module_name fields created_at")
_METADATA_KEYS = ("config_version", "explicit_trace", "capture_io")
_TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED)
# Step statuses as SQL lists: left open (running, pending), ended neither well nor badly.
_OPEN = f"('{Status.RUNNING}', '{Status.PENDING}')"
_ENDED = f"('{Status.SKIPPED}', '{Status.CANCELLED}')"


# --- recognising the two files --------------------------------------------------------------


def sniff(path: Path, head: bytes) -> bool:
    if not is_sqlite(head):
        return False
    try:
        tables = set(readonly_schema(path))
    except ParseError:
        return False
    return tables >= _WORKFLOW_TABLES or _EVENTS_TABLE in tables


def companion_of(path: Path) -> Path | None:
    """For an events.db, the workflow.db it belongs to (same directory)."""
    path = Path(path)
    if _kind(path) != "events":
        return None
    main = _beside(path.parent, "workflow", "workflow.db")
    events = _events_of(main) if main is not None else None
    return main if events is not None and events.resolve() == path.resolve() else None


def companion_paths(path: Path) -> list[Path]:
    """For a workflow.db, the events.db read with it."""
    path = Path(path)
    events = _events_of(path) if _kind(path) == "workflow" else None
    return [events] if events is not None else []


def _kind(path: Path) -> str | None:
    tables = sqlite_schema_or_none(path)
    if tables is None:
        return None
    if set(tables) >= _WORKFLOW_TABLES:
        return "workflow"
    return "events" if _EVENTS_TABLE in tables else None


def _events_of(main: Path) -> Path | None:
    return _beside(main.parent, "events", "events.db")


def _beside(directory: Path, kind: str, preferred: str) -> Path | None:
    """The file of that kind in `directory`: the usual name first, else the first by name."""
    first = directory / preferred
    if first.is_file() and _kind(first) == kind:
        return first
    with contextlib.suppress(OSError):
        for candidate in sorted(directory.iterdir()):
            if candidate != first and candidate.is_file() and _kind(candidate) == kind:
                return candidate
    return None


# --- parse ----------------------------------------------------------------------------------


def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    if _kind(path) == "events":
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
        conn = stack.enter_context(_snapshot(path))
        snap = Snapshot(conn)
        stack.callback(setattr, snap, "closed", True)
        events_error = _attach_events(stack, conn, events_path)
        layout = _layout(conn, events_error)
        _prepare(conn, layout)
        shared = shared_ids(conn, layout.executions)
        for row, extra in _execution_rows(conn, layout):
            record = _execution_record(snap, layout, origin, row, extra)
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
        events = stack.enter_context(_snapshot(path))
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
    conn.execute(f"ATTACH DATABASE ? AS {_EVENTS_SCHEMA}", (copy,))
    return ""


# --- layout, indexes, aggregates ------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    executions: Table
    steps: Table
    logs: Table
    events: Table | None
    events_error: str = ""


def _layout(conn: sqlite3.Connection, events_error: str) -> _Layout:
    tables = schema_tables(conn)
    events, error = _events_table(conn, tables, events_error)
    return _Layout(
        executions=find_table(conn, tables, "workflow_executions", ("id", "status")),
        steps=find_table(conn, tables, "execution_steps", ("id", "execution_id", "status")),
        logs=find_table(conn, tables, "execution_logs", ("id", "execution_id")),
        events=events,
        events_error=error,
    )


def _events_table(conn: sqlite3.Connection, tables: dict, error: str) -> tuple[Table | None, str]:
    """The events table: in workflow.db itself, else in the attached events copy."""
    required = ("execution_id", "sequence_num", "event_type")
    schema = "" if _EVENTS_TABLE in tables else _EVENTS_SCHEMA
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


def _prepare(conn: sqlite3.Connection, lay: _Layout) -> None:
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
        f"INSERT INTO temp.tracer_wf_status (word) SELECT DISTINCT {_as_word(s)} FROM {s.sql}"
    )
    words = conn.execute("SELECT rowid, word FROM temp.tracer_wf_status").fetchall()
    conn.executemany(
        "UPDATE temp.tracer_wf_status SET status = ? WHERE rowid = ?",
        [(normalise_status(word), rowid) for rowid, word in words],
    )


def _as_word(s: Table, alias: str = "") -> str:
    return f"CAST({s.col('status', alias)} AS TEXT)"


def _aggregate_sql(lay: _Layout) -> dict[str, str]:
    s, g = lay.steps, lay.logs
    status, kind = s.col("status", "s"), s.col("step_type", "s")
    normal = f"{kind} IS NOT '{_COMPENSATION}'"
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
            f"FROM {s.sql} s LEFT JOIN temp.tracer_wf_status w ON w.word IS {_as_word(s, 's')} "
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
_AGGREGATES = [
    *("s.n", "s.duration", "s.done", "s.completed", "s.failed", "s.running"),
    *("s.ok", "s.bad", "s.open", "s.ended", "l.n", "l.last", "l.at", "v.n", "v.last", "v.at"),
]
_EXTRA = [*_AGGREGATES, "started_fields", "event_start", "event_start_data", "event_end"]


def _execution_rows(conn: sqlite3.Connection, lay: _Layout) -> Iterator[tuple[dict, dict]]:
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
    cursor = conn.execute(sql)
    count = len(_EXTRA)
    names = [normalise_name(d[0]) for d in cursor.description[:-count]]
    while batch := cursor.fetchmany(BATCH):
        for row in batch:
            extra = dict(zip(_EXTRA, row[-count:], strict=True))
            extra["row"] = [jsonable(v) for v in row[:-count]]
            yield dict(zip(names, row[:-count], strict=True)), extra


def _extra_columns(lay: _Layout, eid: str) -> list[str]:
    g = lay.logs
    message = g.col("message", "x")
    started_log = (
        f"(SELECT {g.col('fields')} FROM {g.sql} x WHERE {g.col('execution_id', 'x')} = {eid} "
        f"AND ({message} = 'execution.started' OR {message} LIKE 'Execution started%') "
        f"ORDER BY {g.col('id', 'x')} LIMIT 1)"
    )
    events = lay.events is not None
    aggregates = [name if events or name[:2] != "v." else "NULL" for name in _AGGREGATES]
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


# --- executions -----------------------------------------------------------------------------


def _execution_record(
    snap: Snapshot, lay: _Layout, origin: str, row: dict, extra: dict
) -> RunRecord:
    attrs = _execution_attributes(lay, row, extra)
    status = normalise_status(row.get("status"))
    pipeline = as_text(attrs.get("pipeline"))
    execution_id = row.get("id")
    started, finished, duration = _execution_timing(row, extra, status, attrs)
    use_events = lay.events is not None and bool(extra["v.n"])
    skipped = 0
    if status not in _TERMINAL:
        skipped = _skipped_while_open(snap, lay, execution_id, extra, use_events)
    return RunRecord(
        format=NAME,
        external_id=as_text(execution_id),
        origin=origin,
        name=pipeline or as_text(row.get("triggertype")),
        type=pipeline,
        trigger=as_text(row.get("triggertype")),
        actor=as_text(row.get("triggeredby")),
        status=status,
        raw_status=as_text(row.get("status")),
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        error=as_text(row.get("errormessage")),
        **_progress(extra, attrs, status, skipped),
        source_updated_at=_last_activity(row, extra),
        attributes=attrs,
        fingerprint=_execution_print(extra),
        steps=_execution_steps(
            snap,
            lay,
            execution_id,
            status in _TERMINAL,
            use_events,
            attrs.get("capture_io") is True,
        ),
        logs=_execution_logs(snap, lay, execution_id, use_events),
    )


def _execution_attributes(lay: _Layout, row: dict, extra: dict) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "workflow_id": jsonable(row.get("workflowid")),
        "metadata": loads_json_or_text(row.get("metadata"))[0],
        "trigger_data": loads_json_or_text(row.get("triggerdata"))[0],
        "output_data": loads_json_or_text(row.get("outputdata"))[0],
    }
    if isinstance(attrs["metadata"], dict):
        attrs.update({k: attrs["metadata"][k] for k in _METADATA_KEYS if k in attrs["metadata"]})
    started = _started_fields(extra)
    attrs["pipeline"] = started.get("pipeline")
    attrs["step_count"] = started.get("step_count")
    if lay.events_error:
        attrs["events_error"] = lay.events_error
    attrs.update(extra_columns(lay.executions, row, _EXECUTION_COLUMNS))
    return attrs


def _started_fields(extra: dict) -> dict:
    for source in ("started_fields", "event_start_data"):
        value, _ = loads_json_or_text(extra[source])
        if isinstance(value, dict) and value.get("pipeline"):
            return value
    return {}


def _execution_timing(row: dict, extra: dict, status: str, attrs: dict):
    """Sub-second times from events.db when it has them. The end is the precise
    start plus the exact duration: execution.failed is written before a saga
    compensates, so its time is not the end."""
    precise_start = lenient_time(extra["event_start"], attrs, "event_start")
    started = precise_start or lenient_time(row.get("startedat"), attrs, "started_at")
    if status not in _TERMINAL:
        return started, None, None
    duration = as_float(row.get("durationms"))
    finished = lenient_time(row.get("completedat"), attrs, "completed_at")
    if precise_start is not None and duration is not None:
        try:
            finished = precise_start + timedelta(milliseconds=duration)
        except OverflowError:  # a duration that ends past year 9999
            attrs.setdefault("unreadable_times", {})["finished"] = "start + duration_ms"
    elif extra["event_end"]:
        finished = lenient_time(extra["event_end"], attrs, "event_end") or finished
    if duration is None:
        duration = duration_between(started, finished)
    return started, finished, duration


def _progress(extra: dict, attrs: dict, status: str, skipped: int) -> dict[str, int | None]:
    ok, bad, still_open, ended = (
        as_int(extra[k]) or 0 for k in ("s.ok", "s.bad", "s.open", "s.ended")
    )
    # In a finished execution every step left open is resolved (skipped, cancelled);
    # in a running one, those its events already tell skipped.
    processed = ok + bad + ended + (still_open if status in _TERMINAL else skipped)
    return {
        "items_total": as_int(attrs.get("step_count")),
        "items_processed": processed,
        "items_succeeded": ok,
        "items_failed": bad,
    }


def _skipped_while_open(
    snap: Snapshot, lay: _Layout, eid: Any, extra: dict, use_events: bool
) -> int:
    """Steps of a running execution left open but told skipped: their records say
    skipped, so they count as processed. Matched as `_execution_steps` matches, and
    only read when the execution has a skip at all (a running one is re-read often)."""
    if not as_int(extra["s.open"]):
        return 0
    conn, s = snap.check(), lay.steps
    if not _step_events(conn, lay, eid, use_events, ("step.skipped",)).fetchone():
        return 0
    marks = _StepMarks(_step_events(conn, lay, eid, use_events, _MARK_TYPES))
    sql = (
        f"SELECT {s.col('step_name', 's')}, {s.col('step_type', 's')}, w.status "
        f"FROM {s.sql} s LEFT JOIN temp.tracer_wf_status w ON w.word IS {_as_word(s, 's')} "
        f"WHERE {s.col('execution_id', 's')} = ? "
        f"ORDER BY {s.col('sequence_num', 's')}, {s.col('id', 's')}"
    )
    skipped = 0
    for name, step_type, status in conn.execute(sql, (eid,)):
        mark = marks.take(as_text(name))
        normal = as_text(step_type) != _COMPENSATION
        skipped += normal and status in (Status.RUNNING, Status.PENDING) and mark.skipped
    return skipped


def _last_activity(row: dict, extra: dict) -> datetime | None:
    values = (row.get("completedat"), row.get("startedat"), extra["l.at"], extra["v.at"])
    times = [t for t in (lenient_time(v, {}, "") for v in values) if t is not None]
    return max(times, default=None)


def _execution_print(extra: dict) -> str:
    aggregates = [extra[name] for name in _AGGREGATES]
    return fingerprint(_VERSION, extra["row"], aggregates)


# --- steps ----------------------------------------------------------------------------------


@dataclass
class _Mark:
    """What a step's events say about one run of it."""

    started: str | None = None
    ended: str | None = None
    elapsed: str | None = None
    skipped: bool = False
    skip_reason: Any = None
    skip_time: str | None = None
    compensated_time: str | None = None
    # "input"/"output" -> sequence_num of the events.db event that holds it whole.
    recorded: dict[str, Any] = field(default_factory=dict)

    def apply(self, event_type: str, when: str | None, data: dict, sequence: Any) -> None:
        if event_type == "step.started":
            self.started = when
        elif event_type in ("step.completed", "step.failed"):
            self.ended, self.elapsed = when, data.get("elapsed") or self.elapsed
        elif event_type == "step.skipped":
            self.skipped, self.skip_reason, self.skip_time = True, data.get("reason"), when
            self.elapsed = self.elapsed or data.get("elapsed")
        elif event_type == "step.compensated":
            self.compensated_time = when
        elif event_type in _IO_TYPES and _IO_TYPES[event_type] in data and sequence is not None:
            self.recorded[_IO_TYPES[event_type]] = sequence


_MARK_TYPES = ("step.started", "step.completed", "step.failed", "step.skipped", "step.compensated")
_IO_TYPES = {"step.input_recorded": "input", "step.output_recorded": "output"}


class _StepMarks:
    """Step events of one execution by step name, one `_Mark` per start; the
    k-th step row of a name takes the k-th mark."""

    def __init__(self, rows: Iterable[tuple[str, str | None, Any, Any, Any]]):
        self.by_name: dict[str, list[_Mark]] = defaultdict(list)
        for event_type, fallback_name, when, raw, sequence in rows:
            data, _ = loads_json_or_text(raw)
            data = data if isinstance(data, dict) else {}
            name = as_text(data.get("step_name") or fallback_name)
            marks = self.by_name[name]
            if event_type == "step.started" or not marks:
                marks.append(_Mark())
            marks[-1].apply(event_type, as_text(when) or None, data, sequence)
        self.taken: Counter = Counter()

    def take(self, name: str) -> _Mark:
        index = self.taken[name]
        self.taken[name] += 1
        marks = self.by_name.get(name, [])
        return marks[index] if index < len(marks) else _Mark()


def _step_events(
    conn: sqlite3.Connection, lay: _Layout, eid: Any, use_events: bool, wanted: Iterable[str]
) -> sqlite3.Cursor:
    """The execution's events of these types, in order, as (type, step name when
    the data has none, time, data, events.db sequence): from events.db, else from
    the `event` log rows (the one of each pair that names its type)."""
    types = ", ".join(f"'{t}'" for t in wanted)
    if use_events:
        v = lay.events
        sql = (
            f"SELECT {v.col('event_type')}, NULL, {v.col('created_at')}, {v.col('event_data')}, "
            f"{v.col('sequence_num')} FROM {v.sql} WHERE {v.col('execution_id')} = ? "
            f"AND {v.col('event_type')} IN ({types}) ORDER BY {v.col('sequence_num')}"
        )
    else:
        g = lay.logs
        sql = (
            f"SELECT {g.col('message')}, {g.col('module_name')}, {g.col('created_at')}, "
            f"{g.col('fields')}, NULL FROM {g.sql} WHERE {g.col('execution_id')} = ? "
            f"AND {g.col('level')} = 'event' AND {g.col('message')} IN ({types}) "
            f"ORDER BY {g.col('id')}"
        )
    return conn.execute(sql, (eid,))


@sqlite_guard
def _execution_steps(
    snap: Snapshot, lay: _Layout, eid: Any, terminal: bool, use_events: bool, captured: bool
) -> Iterator[StepRecord]:
    conn = snap.check()
    s = lay.steps
    # Only events.db holds I/O (the log rows of I/O events name the step alone).
    types = (*_MARK_TYPES, *_IO_TYPES) if use_events else _MARK_TYPES
    marks = _StepMarks(_step_events(conn, lay, eid, use_events, types))
    sql = (
        f"SELECT *, CAST({s.col('input_data')} AS BLOB) AS tracer_input, "
        f"CAST({s.col('output_data')} AS BLOB) AS tracer_output FROM {s.sql} "
        f"WHERE {s.col('execution_id')} = ? ORDER BY {s.col('sequence_num')}, {s.col('id')}"
    )
    compensation: list[StepRecord] = []
    used: set[str] = set()
    for row in iter_rows(conn.execute(sql, (eid,))):
        mark = marks.take(as_text(row.get("stepname")))
        recorded = _recorded_io(conn, lay.events, eid, mark) if mark.recorded else {}
        record = _step_record(s, row, mark, terminal, recorded, captured)
        _make_key_unique(record, used)
        if record.type == _COMPENSATION:
            compensation.append(record)  # few; held back to yield their parent first
        else:
            yield record
    if compensation:
        yield _compensation_parent(compensation)
        for record in compensation:
            record.parent_key = _COMPENSATION
            yield record


def _recorded_io(conn: sqlite3.Connection, v: Table, eid: Any, mark: _Mark) -> dict[str, Any]:
    """The step's input/output as events.db recorded them: whole, where workflow.db
    cuts at 10240 bytes. Read a step at a time: an execution's I/O can be large."""
    sql = (
        f"SELECT {v.col('event_data')} FROM {v.sql} "
        f"WHERE {v.col('execution_id')} = ? AND {v.col('sequence_num')} = ?"
    )
    values = {}
    for label, sequence in mark.recorded.items():
        row = conn.execute(sql, (eid, sequence)).fetchone()
        data = loads_json_or_text(row[0])[0] if row else None
        if isinstance(data, dict) and label in data:
            values[label] = data[label]
    return values


def _make_key_unique(record: StepRecord, used: set[str]) -> None:
    """Step ids repeat in a table without its primary key, and one could be the
    synthetic group's key: such a step gets `<id>#<n>`, its id kept in attributes."""
    key = record.key
    if key in used or key == _COMPENSATION:
        number = 2
        while f"{key}#{number}" in used:
            number += 1
        record.attributes["id_not_unique"] = key
        record.key = f"{key}#{number}"
    used.add(record.key)


def _step_record(
    s: Table, row: dict, mark: _Mark, terminal: bool, recorded: dict, captured: bool
) -> StepRecord:
    attrs: dict[str, Any] = {"sequence_num": jsonable(row.get("sequencenum"))}
    metadata, _ = loads_json_or_text(row.get("metadata"))
    if metadata is not None:
        attrs["metadata"] = metadata
    raw = as_text(row.get("status"))
    step_type = as_text(row.get("steptype"))
    status = normalise_status(raw)
    # The tracker never closes guard-skipped and compensation steps: their events
    # tell, running or not; once the execution ended, any step left open is resolved.
    told = mark.skipped or (step_type == _COMPENSATION and mark.compensated_time)
    never_closed = status in (Status.RUNNING, Status.PENDING) and (terminal or bool(told))
    if never_closed:
        status = _resolve(step_type, mark, attrs)
    if mark.skipped:
        attrs["skip_reason"] = mark.skip_reason
    input_, output, truncated = _step_io(row, attrs, recorded, captured)
    started, finished, duration = _step_timing(row, mark, status, never_closed, attrs)
    return StepRecord(
        key=as_text(row.get("id")),
        name=as_text(row.get("stepname")),
        type=step_type,
        status=status,
        raw_status=raw,
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        input=input_,
        output=output,
        error=as_text(row.get("errormessage")),
        truncated=truncated,
        never_closed=never_closed,
        attributes={**attrs, **extra_columns(s, row, _STEP_COLUMNS)},
    )


def _resolve(step_type: str, mark: _Mark, attrs: dict) -> str:
    """The tracker never closes guard-skipped or compensation steps: their events tell."""
    if step_type == _COMPENSATION and mark.compensated_time:
        attrs["resolved_by"] = "step.compensated"
        return Status.SUCCEEDED
    if mark.skipped:
        attrs["resolved_by"] = "step.skipped"
        return Status.SKIPPED
    attrs["resolved_by"] = "execution ended with the step still running"
    return Status.CANCELLED


def _step_io(row: dict, attrs: dict, recorded: dict, captured: bool) -> tuple[Any, Any, bool]:
    """I/O read as bytes: a 10240-byte cut can split a UTF-8 character. What
    events.db recorded is taken instead, whole; redacted like all that comes from
    there (the server redacts output, not input: an earlier step's secret output
    is in every later step's input). An execution that did not capture I/O (no
    X-Workflow-Trace: true) leaves the columns' '{}' default: no value, flagged."""
    values, cut, whole = [], [], []
    for label, column in (("input", "tracerinput"), ("output", "traceroutput")):
        if label in recorded:
            values.append(redact(recorded[label]))
            whole.append(label)
            continue
        value, truncated = loads_json_or_text(row.get(column))
        if not captured and value in ({}, None):
            value = None
            attrs["io_captured"] = False
        values.append(value)
        if truncated:
            cut.append(label)
    if cut:
        attrs["truncated_fields"] = cut
    if whole:
        attrs["io_from_events"] = whole
    return values[0], values[1], bool(cut)


def _step_timing(row: dict, mark: _Mark, status: str, never_closed: bool, attrs: dict):
    started = lenient_time(mark.started, attrs, "event_started") or lenient_time(
        row.get("startedat"), attrs, "started_at"
    )
    if status in (Status.RUNNING, Status.PENDING):
        return started, None, None
    ended = mark.ended
    if never_closed:
        ended = mark.skip_time if status == Status.SKIPPED else mark.compensated_time
    finished = lenient_time(ended, attrs, "event_ended") or lenient_time(
        row.get("completedat"), attrs, "completed_at"
    )
    duration = go_duration_ms(mark.elapsed)
    if duration is None:
        # A never-closed step's duration column is a 0 placeholder.
        closed = as_float(row.get("durationms"))
        duration = duration_between(started, finished) if never_closed else closed
    return started, finished, duration


def _compensation_parent(children: list[StepRecord]) -> StepRecord:
    status = derive_status(child.status for child in children)
    starts = [c.started_at for c in children if c.started_at is not None]
    ends = [c.finished_at for c in children if c.finished_at is not None]
    started = min(starts, default=None)
    finished = max(ends, default=None) if status in _TERMINAL else None
    return StepRecord(
        key=_COMPENSATION,
        name=_COMPENSATION,
        type=_COMPENSATION,
        status=status,
        started_at=started,
        finished_at=finished,
        duration_ms=duration_between(started, finished),
        synthetic=True,
        attributes={"compensation_steps": len(children)},
    )


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3}
_GO_UNIT_MS.update({"ms": 1, "s": 1e3, "m": 6e4, "h": 3.6e6})


def go_duration_ms(text: Any) -> float | None:
    """Go's Duration.String() (`1m30.000412s`, `152.341µs`, `0s`) in milliseconds."""
    if not isinstance(text, str) or not text:
        return None
    body = text[1:] if text[0] in "+-" else text
    parts = _GO_DURATION.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        return None
    total = sum(float(number) * _GO_UNIT_MS[unit] for number, unit in parts)
    if not math.isfinite(total):  # a few hundred digits
        return None
    return -total if text[0] == "-" else total


# --- logs and events ------------------------------------------------------------------------

# The first row of each pair says in words what its duplicate names by event type.
_MESSAGE_TYPES = (
    ("Execution started", "execution.started"),
    ("Execution completed", "execution.completed"),
    ("Step started", "step.started"),
    ("Step completed", "step.completed"),
    ("step.failed:", "step.failed"),
    ("execution.failed:", "execution.failed"),
)


@dataclass
class _Told:
    """One thing the tracker logged: a row, or a row and its `event` duplicate."""

    rows: list[dict]
    event_type: str | None
    step_name: str | None
    fields: Any


@dataclass
class _Event:
    ident: Any
    sequence: Any
    event_type: str
    step_name: str | None
    data: Any
    when: str


@sqlite_guard
def _execution_logs(snap: Snapshot, lay: _Layout, eid: Any, use_events: bool) -> Iterator:
    conn = snap.check()
    keys = _StepKeys(conn, lay.steps, eid)
    events = _EventQueue(_event_rows(conn, lay.events, eid)) if use_events else None
    seq = itertools.count(1)
    g = lay.logs
    sql = f"SELECT * FROM {g.sql} WHERE {g.col('execution_id')} = ? ORDER BY {g.col('id')}"
    for told in _told(iter_rows(conn.execute(sql, (eid,)))):
        event, earlier = events.match(told) if events else (None, [])
        for other in earlier:
            yield _event_log(next(seq), other, keys)
        key = keys.key_for(told.event_type, told.step_name)
        for index, row in enumerate(told.rows):
            yield _log_record(next(seq), g, row, key, index > 0, told, event)
    for other in events.rest() if events else ():
        yield _event_log(next(seq), other, keys)


def _told(rows: Iterator[dict]) -> Iterator[_Told]:
    pending: dict | None = None
    for row in rows:
        if pending is not None and _repeats(pending, row):
            yield _make_told(pending, row)
            pending = None
            continue
        if pending is not None:
            yield _make_told(pending)
        pending = row
    if pending is not None:
        yield _make_told(pending)


def _repeats(first: dict, second: dict) -> bool:
    """Whether `second` is the `event` duplicate the tracker writes after `first`."""
    if as_text(first.get("level")) == "event" or as_text(second.get("level")) != "event":
        return False
    if first.get("fields") != second.get("fields"):
        return False
    if first.get("modulename") != second.get("modulename"):
        return False
    said = _message_type(as_text(first.get("message")))
    return said is None or said == as_text(second.get("message"))


def _message_type(message: str) -> str | None:
    for prefix, event_type in _MESSAGE_TYPES:
        if message.startswith(prefix):
            return event_type
    return None


def _make_told(first: dict, second: dict | None = None) -> _Told:
    message = as_text(first.get("message"))
    if second is not None:
        event_type = as_text(second.get("message"))
    elif as_text(first.get("level")) == "event":
        event_type = message
    else:
        event_type = _message_type(message)
    fields, _ = loads_json_or_text(first.get("fields"))
    name = fields.get("step_name") if isinstance(fields, dict) else None
    step_name = as_text(name or first.get("modulename")) or None
    return _Told([first] if second is None else [first, second], event_type, step_name, fields)


def _log_record(
    seq: int, g: Table, row: dict, key: str | None, duplicate: bool, told: _Told, event
) -> LogRecord:
    attrs: dict[str, Any] = {
        "log_id": jsonable(row.get("id")),
        "module_name": as_text(row.get("modulename")),
        "created_at": jsonable(row.get("createdat")),
        **extra_columns(g, row, _LOG_COLUMNS),
    }
    when = lenient_time(row.get("createdat"), attrs, "created_at")
    if event is not None:
        when = _enrich(attrs, event, told.fields, full=not duplicate) or when
    fields = told.fields if not duplicate else loads_json_or_text(row.get("fields"))[0]
    return LogRecord(
        seq=seq,
        message=as_text(row.get("message")),
        level=as_text(row.get("level")) or "info",
        time=when,
        step_key=key,
        fields=fields,
        duplicate=duplicate,
        attributes=attrs,
    )


def _enrich(attrs: dict, event: _Event, fields: Any, *, full: bool) -> datetime | None:
    """Add an events.db event's facts to the log row that tells it; its time
    is the same instant, to the nanosecond instead of the second."""
    attrs.update(event_time=event.when, event_id=event.ident, event_sequence=event.sequence)
    if full and event.data != fields:
        attrs["event_data"] = redact(event.data)
    return lenient_time(event.when, attrs, "event_time")


def _event_log(seq: int, event: _Event, keys: _StepKeys) -> LogRecord:
    attrs: dict[str, Any] = {
        "source": "events.db",
        "event_time": event.when,
        "event_id": event.ident,
        "event_sequence": event.sequence,
    }
    return LogRecord(
        seq=seq,
        message=event.event_type,
        level="event",
        time=lenient_time(event.when, attrs, "event_time"),
        step_key=keys.key_for(event.event_type, event.step_name),
        fields=redact(event.data),
        attributes=attrs,
    )


def _event_rows(conn: sqlite3.Connection, v: Table, eid: Any) -> Iterator[_Event]:
    sql = (
        f"SELECT {v.col('id')}, {v.col('sequence_num')}, {v.col('event_type')}, "
        f"{v.col('event_data')}, {v.col('created_at')} FROM {v.sql} "
        f"WHERE {v.col('execution_id')} = ? ORDER BY {v.col('sequence_num')}"
    )
    cursor = conn.execute(sql, (eid,))
    while batch := cursor.fetchmany(BATCH):
        for ident, sequence, event_type, raw, when in batch:
            data, _ = loads_json_or_text(raw)
            name = data.get("step_name") if isinstance(data, dict) else None
            yield _Event(
                jsonable(ident),
                jsonable(sequence),
                as_text(event_type),
                as_text(name) or None,
                data,
                as_text(when),
            )


@dataclass
class _EventQueue:
    """The events of one execution, matched in order to what the logs tell.

    Events read past while looking for a match wait in `buffer`; those passed
    over by a later match were told by no log row, and come out before it."""

    rows: Iterator[_Event]
    buffer: deque = field(default_factory=deque)
    buffered: Counter = field(default_factory=Counter)

    def match(self, told: _Told) -> tuple[_Event | None, list[_Event]]:
        if told.event_type is None:
            return None, []
        wanted = (told.event_type, told.step_name)
        if self.buffered[wanted]:
            return self._from_buffer(wanted)
        for event in self.rows:
            if (event.event_type, event.step_name) == wanted:
                earlier = list(self.buffer)
                self.buffer.clear()
                self.buffered.clear()
                return event, earlier
            self.buffer.append(event)
            self.buffered[(event.event_type, event.step_name)] += 1
        return None, []

    def _from_buffer(self, wanted: tuple) -> tuple[_Event, list[_Event]]:
        earlier = []
        while True:
            event = self.buffer.popleft()
            self.buffered[(event.event_type, event.step_name)] -= 1
            if (event.event_type, event.step_name) == wanted:
                return event, earlier
            earlier.append(event)

    def rest(self) -> Iterator[_Event]:
        yield from self.buffer
        yield from self.rows


class _StepKeys:
    """Which step a log line is about: the step of that name, or when several
    share the name, the latest one started before the line."""

    def __init__(self, conn: sqlite3.Connection, s: Table, eid: Any):
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.started: Counter = Counter()
        self.compensation = False
        sql = (
            f"SELECT {s.col('id')}, {s.col('step_name')}, {s.col('step_type')} FROM {s.sql} "
            f"WHERE {s.col('execution_id')} = ? ORDER BY {s.col('sequence_num')}, {s.col('id')}"
        )
        for key, name, step_type in conn.execute(sql, (eid,)):
            self.by_name[as_text(name)].append(as_text(key))
            self.compensation = self.compensation or step_type == _COMPENSATION

    def key_for(self, event_type: str | None, name: str | None) -> str | None:
        if event_type and event_type.startswith("saga.") and self.compensation:
            return _COMPENSATION
        keys = self.by_name.get(name or "")
        if not keys:
            return None
        if event_type == "step.started":
            self.started[name] += 1
        index = max(self.started[name], 1) - 1
        return keys[min(index, len(keys) - 1)]


# --- redaction ------------------------------------------------------------------------------

# Mirrors module/step_output_redactor.go (at the commit FORMATS.md §4 cites):
# workflow.db holds step output redacted, events.db does not; what we add from
# events.db must not show more than workflow.db.
_SENSITIVE = (
    *("secret", "password", "token", "credential", "authorization", "cookie", "signature"),
    *("request_body", "raw_body", "artifact_content", "content_b64", "transmission_sig"),
    *("api_key", "api-key", "apikey", "private_key", "access_key", "backup_code"),
    *("totp_secret", "mfa_secret"),
)
REDACTED = "[REDACTED]"


def redact(value: Any) -> Any:
    """A copy of `value` with the values under secret-like keys replaced, at any
    depth (without recursion: event data can be nested a thousand levels)."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(source, dict) and isinstance(key, str) and _sensitive(key):
                copied: Any = REDACTED
            elif isinstance(item, dict | list):
                copied = {} if isinstance(item, dict) else []
                stack.append((item, copied))
            else:
                copied = item
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _sensitive(name: str) -> bool:
    lower = name.lower()
    if lower.endswith("_display"):
        return False
    matched = [pattern for pattern in _SENSITIVE if pattern in lower]
    if not matched:
        return False
    return not (lower.endswith("_ref") and all(m == "credential" for m in matched))
