"""An execution's steps (`execution_steps`), completed by what their events tell."""

from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..common import duration_between, loads_json_or_text
from ..records import Status, StepRecord
from ..sqlite_layout import (
    Snapshot,
    Table,
    as_float,
    as_text,
    column_set,
    derive_status,
    extra_values,
    fetch_rows,
    jsonable,
    lenient_time,
    normalise_status,
    select_list,
    sqlite_guard,
)
from .layout import COMPENSATION, TERMINAL, Layout
from .redaction import redact

_STEP_COLUMNS = column_set(
    "id execution_id step_name step_type input_data output_data status error_message "
    "started_at completed_at duration_ms sequence_num metadata tracer_input tracer_output"
)


@dataclass(slots=True)
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
        elif event_type in IO_TYPES and IO_TYPES[event_type] in data and sequence is not None:
            self.recorded[IO_TYPES[event_type]] = sequence


MARK_TYPES = ("step.started", "step.completed", "step.failed", "step.skipped", "step.compensated")
IO_TYPES = {"step.input_recorded": "input", "step.output_recorded": "output"}


class StepMarks:
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


def step_events(
    conn: sqlite3.Connection, lay: Layout, eid: Any, use_events: bool, wanted: Iterable[str]
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


# A step row as read: these columns, its I/O again as bytes, then the table's others.
_STEP_ROW = (
    "id", "step_name", "step_type", "status", "error_message", "started_at", "completed_at",
    "duration_ms", "sequence_num", "metadata",
)  # fmt: skip
_OWN = len(_STEP_ROW) + 2


@sqlite_guard
def execution_steps(
    snap: Snapshot, lay: Layout, eid: Any, terminal: bool, use_events: bool, captured: bool
) -> Iterator[StepRecord]:
    conn = snap.check()
    s = lay.steps
    # Only events.db holds I/O (the log rows of I/O events name the step alone).
    types = (*MARK_TYPES, *IO_TYPES) if use_events else MARK_TYPES
    marks = StepMarks(step_events(conn, lay, eid, use_events, types))
    # I/O read as bytes: a 10240-byte cut can split a UTF-8 character.
    io = [f"CAST({s.col(name)} AS BLOB)" for name in ("input_data", "output_data")]
    columns, extras = select_list(s, _STEP_ROW, _STEP_COLUMNS, io)
    sql = (
        f"SELECT {columns} FROM {s.sql} WHERE {s.col('execution_id')} = ? "
        f"ORDER BY {s.col('sequence_num')}, {s.col('id')}"
    )
    compensation: list[StepRecord] = []
    used: set[str] = set()
    for row in fetch_rows(conn.execute(sql, (eid,))):
        mark = marks.take(as_text(row[1]))
        recorded = _recorded_io(conn, lay.events, eid, mark) if mark.recorded else {}
        record = _step_record(extras, row, mark, terminal, recorded, captured)
        _make_key_unique(record, used)
        if record.type == COMPENSATION:
            compensation.append(record)  # few; held back to yield their parent first
        else:
            yield record
    if compensation:
        yield _compensation_parent(compensation)
        for record in compensation:
            record.parent_key = COMPENSATION
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
    if key in used or key == COMPENSATION:
        number = 2
        while f"{key}#{number}" in used:
            number += 1
        record.attributes["id_not_unique"] = key
        record.key = f"{key}#{number}"
    used.add(record.key)


def _step_record(
    extras: list[str], row: tuple, mark: _Mark, terminal: bool, recorded: dict, captured: bool
) -> StepRecord:
    (ident, name, step_type, raw, error, started, completed, duration, sequence, metadata,
     io_in, io_out) = row[:_OWN]  # fmt: skip
    attrs: dict[str, Any] = {"sequence_num": jsonable(sequence)}
    metadata, _ = loads_json_or_text(metadata)
    if metadata is not None:
        attrs["metadata"] = metadata
    raw = as_text(raw)
    step_type = as_text(step_type)
    status = normalise_status(raw)
    # The tracker never closes guard-skipped and compensation steps: their events
    # tell, running or not; once the execution ended, any step left open is resolved.
    told = mark.skipped or (step_type == COMPENSATION and mark.compensated_time)
    never_closed = status in (Status.RUNNING, Status.PENDING) and (terminal or bool(told))
    if never_closed:
        status = _resolve(step_type, mark, attrs)
    if mark.skipped:
        attrs["skip_reason"] = mark.skip_reason
    input_, output, truncated = _step_io((io_in, io_out), attrs, recorded, captured)
    started, finished, duration = _step_timing(
        (started, completed, duration), mark, status, never_closed, attrs
    )
    if extras:
        attrs = {**attrs, **extra_values(extras, row[_OWN:])}
    return StepRecord(
        key=as_text(ident),
        name=as_text(name),
        type=step_type,
        status=status,
        raw_status=raw,
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        input=input_,
        output=output,
        error=as_text(error),
        truncated=truncated,
        never_closed=never_closed,
        attributes=attrs,
    )


def _resolve(step_type: str, mark: _Mark, attrs: dict) -> str:
    """The tracker never closes guard-skipped or compensation steps: their events tell."""
    if step_type == COMPENSATION and mark.compensated_time:
        attrs["resolved_by"] = "step.compensated"
        return Status.SUCCEEDED
    if mark.skipped:
        attrs["resolved_by"] = "step.skipped"
        return Status.SKIPPED
    attrs["resolved_by"] = "execution ended with the step still running"
    return Status.CANCELLED


def _step_io(io: tuple, attrs: dict, recorded: dict, captured: bool) -> tuple[Any, Any, bool]:
    """I/O read as bytes: a 10240-byte cut can split a UTF-8 character. What
    events.db recorded is taken instead, whole; redacted like all that comes from
    there (the server redacts output, not input: an earlier step's secret output
    is in every later step's input). An execution that did not capture I/O (no
    X-Workflow-Trace: true) leaves the columns' '{}' default: no value, flagged."""
    values, cut, whole = [], [], []
    for label, raw in zip(("input", "output"), io, strict=True):
        if label in recorded:
            values.append(redact(recorded[label]))
            whole.append(label)
            continue
        value, truncated = loads_json_or_text(raw)
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


def _step_timing(times: tuple, mark: _Mark, status: str, never_closed: bool, attrs: dict):
    """`times`: the row's (started_at, completed_at, duration_ms)."""
    started_at, completed_at, duration_ms = times
    started = lenient_time(mark.started, attrs, "event_started") or lenient_time(
        started_at, attrs, "started_at"
    )
    if status in (Status.RUNNING, Status.PENDING):
        return started, None, None
    ended = mark.ended
    if never_closed:
        ended = mark.skip_time if status == Status.SKIPPED else mark.compensated_time
    finished = lenient_time(ended, attrs, "event_ended") or lenient_time(
        completed_at, attrs, "completed_at"
    )
    duration = go_duration_ms(mark.elapsed)
    if duration is None:
        # A never-closed step's duration column is a 0 placeholder.
        closed = as_float(duration_ms)
        duration = duration_between(started, finished) if never_closed else closed
    return started, finished, duration


def _compensation_parent(children: list[StepRecord]) -> StepRecord:
    status = derive_status(child.status for child in children)
    starts = [c.started_at for c in children if c.started_at is not None]
    ends = [c.finished_at for c in children if c.finished_at is not None]
    started = min(starts, default=None)
    finished = max(ends, default=None) if status in TERMINAL else None
    return StepRecord(
        key=COMPENSATION,
        name=COMPENSATION,
        type=COMPENSATION,
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
    single = _GO_DURATION.fullmatch(body)  # most are one number and unit: 5.662749ms
    if single is not None:
        total = float(single[1]) * _GO_UNIT_MS[single[2]]
        if not math.isfinite(total):
            return None
        return -total if text[0] == "-" else total
    parts = _GO_DURATION.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        return None
    total = sum(float(number) * _GO_UNIT_MS[unit] for number, unit in parts)
    if not math.isfinite(total):  # a few hundred digits
        return None
    return -total if text[0] == "-" else total
