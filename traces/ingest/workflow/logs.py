"""An execution's log rows (`execution_logs`), merged with the events of events.db."""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..common import loads_json_or_text
from ..records import LogRecord
from ..sqlite_layout import (
    BATCH,
    Snapshot,
    Table,
    as_text,
    column_set,
    extra_values,
    fetch_rows,
    jsonable,
    lenient_time,
    select_list,
    sqlite_guard,
)
from .layout import COMPENSATION, Layout
from .redaction import redact
from .steps import IO_TYPES

_LOG_COLUMNS = column_set("id workflow_id execution_id level message module_name fields created_at")

# The first row of each pair says in words what its duplicate names by event type.
_MESSAGE_TYPES = (
    ("Execution started", "execution.started"),
    ("Execution completed", "execution.completed"),
    ("Step started", "step.started"),
    ("Step completed", "step.completed"),
    ("step.failed:", "step.failed"),
    ("execution.failed:", "execution.failed"),
)


# A log row as read: these columns, then the table's others (`select_list`).
_LOG_ROW = ("id", "level", "message", "module_name", "fields", "created_at")
_ID, _LEVEL, _MESSAGE, _MODULE, _FIELDS, _CREATED = range(6)


@dataclass(slots=True)
class _Told:
    """One thing the tracker logged: a row, or a row and its `event` duplicate."""

    rows: list[tuple]
    event_type: str | None
    step_name: str | None
    fields: Any


@dataclass(slots=True)
class _Event:
    ident: Any
    sequence: Any
    event_type: str
    step_name: str | None
    data: Any
    when: str


@sqlite_guard
def execution_logs(snap: Snapshot, lay: Layout, eid: Any, use_events: bool) -> Iterator:
    conn = snap.check()
    keys = _StepKeys(conn, lay.steps, eid)
    events = _EventQueue(_event_rows(conn, lay.events, eid)) if use_events else None
    seq = itertools.count(1)
    g = lay.logs
    columns, extras = select_list(g, _LOG_ROW, _LOG_COLUMNS)
    sql = f"SELECT {columns} FROM {g.sql} WHERE {g.col('execution_id')} = ? ORDER BY {g.col('id')}"
    for told in _told(fetch_rows(conn.execute(sql, (eid,)))):
        event, earlier = events.match(told) if events else (None, [])
        for other in earlier:
            yield _event_log(next(seq), other, keys)
        key = keys.key_for(told.event_type, told.step_name)
        yield _log_record(next(seq), extras, told.rows[0], key, False, told, event)
        if len(told.rows) > 1:
            yield _log_record(next(seq), extras, told.rows[1], key, True, told, event)
    for other in events.rest() if events else ():
        yield _event_log(next(seq), other, keys)


def _told(rows: Iterator[tuple]) -> Iterator[_Told]:
    pending: tuple | None = None
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


def _repeats(first: tuple, second: tuple) -> bool:
    """Whether `second` is the `event` duplicate the tracker writes after `first`."""
    first_level, second_level = first[_LEVEL], second[_LEVEL]
    # Levels are text: as_text() only for what is not.
    if (first_level if type(first_level) is str else as_text(first_level)) == "event":
        return False
    if (second_level if type(second_level) is str else as_text(second_level)) != "event":
        return False
    if first[_FIELDS] != second[_FIELDS] or first[_MODULE] != second[_MODULE]:
        return False
    said = _message_type(as_text(first[_MESSAGE]))
    return said is None or said == as_text(second[_MESSAGE])


def _message_type(message: str) -> str | None:
    for prefix, event_type in _MESSAGE_TYPES:
        if message.startswith(prefix):
            return event_type
    return None


def _make_told(first: tuple, second: tuple | None = None) -> _Told:
    message = as_text(first[_MESSAGE])
    if second is not None:
        event_type = as_text(second[_MESSAGE])
    elif as_text(first[_LEVEL]) == "event":
        event_type = message
    else:
        event_type = _message_type(message)
    fields, _ = loads_json_or_text(first[_FIELDS])
    name = fields.get("step_name") if isinstance(fields, dict) else None
    step_name = as_text(name or first[_MODULE]) or None
    return _Told([first] if second is None else [first, second], event_type, step_name, fields)


def _log_record(
    seq: int, extras: list[str], row: tuple, key: str | None, duplicate: bool, told: _Told, event
) -> LogRecord:
    ident, level, message, module, _fields, created = row[:6]
    attrs: dict[str, Any] = {
        "log_id": ident if type(ident) is not bytes else jsonable(ident),
        "module_name": module if type(module) is str else as_text(module),
        "created_at": created if type(created) is not bytes else jsonable(created),
    }
    if extras:
        attrs.update(extra_values(extras, row[6:]))
    when = lenient_time(created, attrs, "created_at")
    if event is not None:
        when = (
            _enrich(attrs, event, told.fields, full=not duplicate, on_step=key is not None) or when
        )
    # A duplicate's fields are its first row's, to the byte (`_repeats`): read once.
    return LogRecord(
        seq=seq,
        message=message if type(message) is str else as_text(message),
        level=(level if type(level) is str else as_text(level)) or "info",
        time=when,
        step_key=key,
        fields=told.fields,
        duplicate=duplicate,
        attributes=attrs,
    )


def _enrich(
    attrs: dict, event: _Event, fields: Any, *, full: bool, on_step: bool
) -> datetime | None:
    """Add an events.db event's facts to the log row that tells it; its time
    is the same instant, to the nanosecond instead of the second."""
    attrs.update(event_time=event.when, event_id=event.ident, event_sequence=event.sequence)
    if full and event.data != fields:
        attrs["event_data"] = _event_data(event, on_step=on_step)
    return lenient_time(event.when, attrs, "event_time")


def _event_log(seq: int, event: _Event, keys: _StepKeys) -> LogRecord:
    attrs: dict[str, Any] = {
        "source": "events.db",
        "event_time": event.when,
        "event_id": event.ident,
        "event_sequence": event.sequence,
    }
    step_key = keys.key_for(event.event_type, event.step_name)
    return LogRecord(
        seq=seq,
        message=event.event_type,
        level="event",
        time=lenient_time(event.when, attrs, "event_time"),
        step_key=step_key,
        fields=_event_data(event, on_step=step_key is not None),
        attributes=attrs,
    )


ON_THE_STEP = "[the whole value is the step's {}]"


def _event_data(event: _Event, *, on_step: bool) -> Any:
    """An event's data, redacted. An I/O event's value is its step's input or output
    (events.db holds it whole): kept there once, not again in every log row that
    tells the event, which would load megabytes with a page of the log."""
    data = redact(event.data)
    which = IO_TYPES.get(event.event_type)
    if on_step and which and isinstance(data, dict) and which in data:
        data = {**data, which: ON_THE_STEP.format(which)}
    return data


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
            self.compensation = self.compensation or step_type == COMPENSATION

    def key_for(self, event_type: str | None, name: str | None) -> str | None:
        if event_type and event_type.startswith("saga.") and self.compensation:
            return COMPENSATION
        keys = self.by_name.get(name or "")
        if not keys:
            return None
        if event_type == "step.started":
            self.started[name] += 1
        index = max(self.started[name], 1) - 1
        return keys[min(index, len(keys) - 1)]
