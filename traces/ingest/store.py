"""The only module that writes traces to the database.

`write_run()` turns one `RunRecord` (and its lazy steps, calls, links and
logs) into rows, in bulk: ids are allocated up front so a step's parent and a
call's step are known without reading anything back, rows go out with
`executemany` in batches, and the summaries the pages need (step counts by
status, child counts, failed subtrees) are computed on the way. The caller
holds the transaction: a run is written whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, models
from django.utils import timezone

from traces.causes import as_utc, error_cause, failure_day
from traces.models import Call, EntityLink, FailureCause, LogEntry, Run, Step, TraceFile

from .common import json_text
from .records import CallRecord, LinkRecord, LogRecord, RunRecord, Status, StepRecord

BATCH_SIZE = 2000
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


@dataclass
class RunOutcome:
    """What happened to one run: added, updated, unchanged, or kept (the stored
    copy is more complete than the one offered), with what the run now holds."""

    action: str
    run_id: int
    external_id: str
    counts: Counter = field(default_factory=Counter)


class RunIndex:
    """The stored runs a file may update, looked up once per database origin.

    A database of 10,000 runs would otherwise cost 10,000 lookups on every
    re-sync; files whose ids are global (origin "") hold few runs each."""

    FIELDS = (
        "id", "format", "origin", "external_id", "fingerprint", "completeness", "status",
        "source_updated_at", "step_count", "call_count", "link_count", "log_count",
    )  # fmt: skip

    def __init__(self):
        self._by_origin: dict[tuple[str, str], dict[str, Run]] = {}

    def get(self, format: str, origin: str, external_id: str) -> Run | None:
        runs = Run.objects.only(*self.FIELDS)
        if not origin:
            return runs.filter(format=format, origin="", external_id=external_id).first()
        key = (format, origin)
        if key not in self._by_origin:
            stored = runs.filter(format=format, origin=origin)
            self._by_origin[key] = {run.external_id: run for run in stored.iterator()}
        return self._by_origin[key].get(external_id)

    def remember(self, run: Run) -> None:
        """A run just written: a file that gives the same run twice (duplicate
        rows in a database) updates it instead of inserting it again."""
        runs = self._by_origin.get((run.format, run.origin))
        if runs is not None:
            runs[run.external_id] = run


def write_run(
    record: RunRecord, *, source_file: TraceFile | None, origin: str, index: RunIndex | None = None
) -> RunOutcome:
    """Insert or replace one run. Call inside `transaction.atomic()`."""
    index = index or RunIndex()
    origin = fit_key(origin, Run._meta.get_field("origin").max_length)
    external_id = fit_key(record.external_id)
    existing = index.get(record.format, origin, external_id)
    if existing is not None:
        if record.fingerprint and existing.fingerprint == record.fingerprint:
            _note_activity(existing, record.source_updated_at)
            return RunOutcome("unchanged", existing.pk, record.external_id, _stored(existing))
        if _less_complete(record.completeness, existing.completeness):
            return RunOutcome("kept", existing.pk, record.external_id, _stored(existing))
        delete_run_children([existing.pk])
    run = _save_run_row(record, existing, source_file=source_file, origin=origin)
    index.remember(run)
    writer = _RunWriter(run)
    writer.write(record)
    action = "updated" if existing is not None else "added"
    return RunOutcome(action, run.pk, record.external_id, writer.counts)


def _note_activity(run: Run, seen_at) -> None:
    """A running run unchanged, but in a newer write of its source (a traceos dump
    rewritten while the trace is in flight): it was alive then, so it is not stale."""
    if run.status != Status.RUNNING or seen_at is None:
        return
    if run.source_updated_at is None or seen_at > run.source_updated_at:
        Run.objects.filter(pk=run.pk).update(source_updated_at=seen_at)
        run.source_updated_at = seen_at


def _stored(run: Run) -> Counter:
    """What a run not rewritten holds, counted as a written run is."""
    return Counter(
        steps=run.step_count, calls=run.call_count, links=run.link_count, logs=run.log_count
    )


KEY_LENGTH = 255


def fit_key(text: str, length: int = KEY_LENGTH) -> str:
    """An id as its column can hold it, still telling ids apart: NUL replaced, and
    an id past `length` cut and ended with a hash of the whole (cutting alone
    would make two ids that share their start one)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) <= length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{text[: length - 25]}~{digest}"


def delete_run_children(run_ids: list[int]) -> None:
    """Delete everything under these runs with plain SQL (Django's cascade
    would load every row into Python first)."""
    if not run_ids:
        return
    placeholders = ", ".join(["%s"] * len(run_ids))
    removed = _failure_causes_of(run_ids)
    with connection.cursor() as cursor:
        for model in (LogEntry, EntityLink, Call, Step):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE run_id IN ({placeholders})", run_ids
            )
    _subtract_failure_causes(removed)


def delete_runs(run_ids: list[int]) -> None:
    delete_run_children(run_ids)
    Run.objects.filter(pk__in=run_ids)._raw_delete(Run.objects.db)


def _less_complete(new: tuple | None, stored: list | None) -> bool:
    if new is None or stored is None:
        return False
    try:
        return tuple(new) < tuple(stored)
    except TypeError:
        return False


RUN_FIELDS = (
    "name", "type", "trigger", "actor", "status", "raw_status", "started_at", "finished_at",
    "duration_ms", "input", "output", "error", "output_counters", "progress_label",
    "items_total", "items_processed", "items_succeeded", "items_failed", "truncated",
    "times_estimated", "attributes", "source_updated_at", "fingerprint",
)  # fmt: skip


def _save_run_row(
    record: RunRecord, existing: Run | None, *, source_file: TraceFile | None, origin: str
) -> Run:
    external_id = fit_key(record.external_id)
    run = existing or Run(format=record.format, origin=origin, external_id=external_id)
    values = {name: getattr(record, name) for name in RUN_FIELDS}
    values["attributes"] = dict(values["attributes"])
    if external_id != record.external_id:
        values["attributes"].setdefault("full_values", {})["external_id"] = record.external_id
    for name, value in values.items():
        setattr(run, name, _clean_value(Run._meta.get_field(name), value, values["attributes"]))
    for name in ("input", "output", "output_counters", "attributes"):
        value = getattr(run, name)
        if value is not None:
            setattr(run, name, orjson.loads(dump_json(value)))
    run.completeness = list(record.completeness) if record.completeness is not None else None
    run.source_file = source_file
    run.left_source_at = None  # written again by its source: back in it
    run.ingested_at = timezone.now()
    run.save()
    return run


class _RunWriter:
    """Writes one run's children and keeps the summaries as they stream by."""

    def __init__(self, run: Run):
        self.run = run
        self.counts: Counter = Counter()
        self.step_ids: dict[str, int] = {}
        self.parent_of: dict[int, int | None] = {}
        self.depth_of: dict[int, int] = {}
        self.children: Counter = Counter()
        self.calls_of: Counter = Counter()
        self.links_of: Counter = Counter()
        self.failed_subtree: set[int] = set()
        self.by_status: Counter = Counter()
        self.orphans: Counter = Counter()
        self.seq = 0
        self.ids = {model: _IdAllocator(model) for model in (Step, Call, EntityLink, LogEntry)}
        # (cause, day) -> [count, first seen, last seen] of this run's failed steps.
        self.causes: dict[tuple, list] = {}

    def write(self, record: RunRecord) -> None:
        self._write_rows(Step, record.steps, self._step_row)
        self._write_rows(Call, record.calls, self._call_row)
        self._write_rows(EntityLink, record.links, self._link_row)
        self._write_rows(LogEntry, record.logs, self._log_row)
        self._write_step_summaries()
        self._write_run_summary()
        _add_failure_causes(self.run, self.causes)

    def _write_rows(self, model, records, to_row) -> None:
        inserter = _BulkInserter(model)
        for item in records:
            row = to_row(item)
            if row is not None:
                inserter.add(item, *row)
        inserter.flush()

    def _step_row(self, step: StepRecord) -> tuple[dict, dict] | None:
        if step.key in self.step_ids:
            self.orphans["duplicate step keys"] += 1
            return None
        attributes = dict(step.attributes)
        parent_id = self.step_ids.get(step.parent_key) if step.parent_key is not None else None
        if step.parent_key is not None and parent_id is None:
            attributes["missing_parent"] = step.parent_key
        step_id = self.ids[Step].next()
        self.step_ids[step.key] = step_id
        self.parent_of[step_id] = parent_id
        depth = 0 if parent_id is None else self.depth_of[parent_id] + 1
        self.depth_of[step_id] = depth
        position = self.children[parent_id]
        self.children[parent_id] += 1
        if not step.synthetic:
            self.by_status[step.status] += 1
            self.counts["steps"] += 1
        fixed = {
            "id": step_id,
            "run_id": self.run.pk,
            "parent_id": parent_id,
            "seq": self.seq + 1,
            "position": position,
            "depth": depth,
        }
        if step.status == "failed":
            self._mark_failed_subtree(step_id)
            fixed["error_cause"] = self._count_failure(step)
        self.seq += 1
        return attributes, fixed

    def _count_failure(self, step: StepRecord) -> str:
        """The step's cause, counted for the read model unless the step is synthetic
        (the causes box counts what the source has, as the steps page lists it)."""
        message = step.error if isinstance(step.error, str) else str(step.error or "")
        cause = error_cause(message.replace("\x00", "\ufffd"))
        if step.synthetic:
            return cause
        moment = step.started_at or self.run.started_at
        moment = as_utc(moment) if moment is not None else None
        entry = self.causes.setdefault((cause, failure_day(moment)), [0, moment, moment])
        entry[0] += 1
        if moment is not None:
            entry[1] = min(entry[1], moment)
            entry[2] = max(entry[2], moment)
        return cause

    def _mark_failed_subtree(self, step_id: int | None) -> None:
        while step_id is not None and step_id not in self.failed_subtree:
            self.failed_subtree.add(step_id)
            step_id = self.parent_of[step_id]

    def _call_row(self, call: CallRecord) -> tuple[dict, dict] | None:
        step_id = self.step_ids.get(call.step_key)
        if step_id is None:
            self.orphans["calls of unknown steps"] += 1
            return None
        position = self.calls_of[step_id]
        self.calls_of[step_id] += 1
        self.counts["calls"] += 1
        return dict(call.attributes), {
            "id": self.ids[Call].next(),
            "run_id": self.run.pk,
            "step_id": step_id,
            "position": position,
        }

    def _link_row(self, link: LinkRecord) -> tuple[dict, dict] | None:
        step_id = self.step_ids.get(link.step_key)
        if step_id is None:
            self.orphans["links of unknown steps"] += 1
            return None
        self.links_of[step_id] += 1
        self.counts["links"] += 1
        return dict(link.attributes), {
            "id": self.ids[EntityLink].next(),
            "run_id": self.run.pk,
            "step_id": step_id,
        }

    def _log_row(self, log: LogRecord) -> tuple[dict, dict]:
        attributes = dict(log.attributes)
        step_id = self.step_ids.get(log.step_key) if log.step_key is not None else None
        if log.step_key is not None and step_id is None:
            attributes["unknown_step"] = log.step_key
        self.counts["logs"] += 1
        return attributes, {
            "id": self.ids[LogEntry].next(),
            "run_id": self.run.pk,
            "step_id": step_id,
        }

    def _write_step_summaries(self) -> None:
        touched = set(self.children) | set(self.calls_of) | set(self.links_of) | self.failed_subtree
        touched.discard(None)
        rows = [
            (
                self.children[step_id],
                self.calls_of[step_id],
                self.links_of[step_id],
                step_id in self.failed_subtree,
                step_id,
            )
            for step_id in sorted(touched)
        ]
        table = Step._meta.db_table
        sql = (
            f"UPDATE {table} SET child_count = %s, call_count = %s, link_count = %s, "
            f"failed_subtree = %s WHERE id = %s"
        )
        with connection.cursor() as cursor:
            for start in range(0, len(rows), BATCH_SIZE):
                cursor.executemany(sql, rows[start : start + BATCH_SIZE])

    def _write_run_summary(self) -> None:
        summary = {f"steps_{status}": self.by_status[status] for status in _STEP_STATUSES}
        attributes = self.run.attributes
        if self.orphans:
            attributes = {**attributes, "skipped_records": dict(self.orphans)}
        Run.objects.filter(pk=self.run.pk).update(
            step_count=self.counts["steps"],
            call_count=self.counts["calls"],
            link_count=self.counts["links"],
            log_count=self.counts["logs"],
            max_depth=max(self.depth_of.values(), default=0),
            attributes=attributes,
            **summary,
        )


_STEP_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")


# --- the failure causes read model (FailureCause), kept with the steps ------------------

_CAUSES = FailureCause._meta.db_table
_CAUSE_KEY = "cause = %s AND day = %s AND format = %s AND run_type = %s"


def _add_failure_causes(run: Run, causes: dict[tuple, list]) -> None:
    """Add one run's failed steps, counted by cause and day, to FailureCause."""
    if not causes:
        return
    ops = connection.ops
    if connection.vendor == "postgresql":
        earliest, latest = (
            "LEAST(t.first_seen, excluded.first_seen)",
            "GREATEST(t.last_seen, excluded.last_seen)",
        )
    else:  # SQLite's min() and max() of two values are NULL if either is
        earliest = "COALESCE(min(t.first_seen, excluded.first_seen), excluded.first_seen)"
        latest = "COALESCE(max(t.last_seen, excluded.last_seen), excluded.last_seen)"
    sql = (
        f"INSERT INTO {_CAUSES} AS t (cause, day, format, run_type, count, first_seen, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (cause, day, format, run_type) DO UPDATE SET "
        f"count = t.count + excluded.count, first_seen = {earliest}, last_seen = {latest}"
    )
    rows = [
        (
            cause,
            ops.adapt_datefield_value(day),
            run.format,
            run.type,
            count,
            ops.adapt_datetimefield_value(first),
            ops.adapt_datetimefield_value(last),
        )
        for (cause, day), (count, first, last) in sorted(causes.items(), key=_by_key)
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _by_key(item):
    (cause, day), _counts = item
    return cause, day


def _cause_day_sql(time: str) -> str:
    """The SQL of causes.failure_day: the UTC day of a time, NO_DAY without one."""
    if connection.vendor == "postgresql":
        return f"COALESCE(({time} AT TIME ZONE 'UTC')::date, DATE '0001-01-01')"
    return f"COALESCE(date({time}), '0001-01-01')"


def _failed_steps_sql(where: str) -> str:
    """Failed steps (as the causes box counts them) with their cause's key and time."""
    time = "COALESCE(s.started_at, r.started_at)"
    return (
        f"SELECT s.error_cause, {_cause_day_sql(time)} AS day, r.format, r.type, "
        f"COUNT(*), MIN({time}), MAX({time}) "
        f"FROM {Step._meta.db_table} s JOIN {Run._meta.db_table} r ON r.id = s.run_id "
        f"WHERE s.status = 'failed' AND s.synthetic = %s AND s.error_cause <> '' AND {where} "
        "GROUP BY s.error_cause, day, r.format, r.type"
    )


def _failure_causes_of(run_ids: list[int]) -> list[tuple]:
    """What these runs' failed steps add to FailureCause: (cause, day, format,
    run_type, count, first, last) in the database's own types."""
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(_failed_steps_sql(f"s.run_id IN ({placeholders})"), [False, *run_ids])
        return cursor.fetchall()


def _subtract_failure_causes(removed: list[tuple]) -> None:
    """Take deleted failed steps off FailureCause (their steps already deleted): a
    count that reaches 0 removes its row; a row that lost its first or last
    failure gets its bounds again from the steps left."""
    if not removed:
        return
    keys = [row[:4] for row in removed]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {_CAUSES} SET count = count - %s WHERE {_CAUSE_KEY}",
            [(row[4], *row[:4]) for row in removed],
        )
        cursor.executemany(f"DELETE FROM {_CAUSES} WHERE count <= 0 AND {_CAUSE_KEY}", keys)
        for cause, day, format, run_type, _count, first, last in removed:
            cursor.execute(
                f"SELECT first_seen, last_seen FROM {_CAUSES} WHERE {_CAUSE_KEY}",
                [cause, day, format, run_type],
            )
            kept = cursor.fetchone()
            if kept is None or not _may_bound(first, last, *kept):
                continue
            where = (
                f"s.error_cause = %s AND r.format = %s AND r.type = %s "
                f"AND {_cause_day_sql('COALESCE(s.started_at, r.started_at)')} = %s"
            )
            cursor.execute(_failed_steps_sql(where), [False, cause, format, run_type, day])
            recount = cursor.fetchone()
            cursor.execute(
                f"UPDATE {_CAUSES} SET first_seen = %s, last_seen = %s WHERE {_CAUSE_KEY}",
                [recount[5], recount[6], cause, day, format, run_type]
                if recount
                else [None, None, cause, day, format, run_type],
            )


def _may_bound(first, last, kept_first, kept_last) -> bool:
    """Whether deleted failures held a kept row's first or last time (then its
    bounds are read again). Times compare as the database returned them."""
    if first is None or kept_first is None:
        return False
    first, last, kept_first, kept_last = map(_moment, (first, last, kept_first, kept_last))
    return first <= kept_first or last >= kept_last


def _moment(value) -> datetime:
    # SQLite gives computed times (MIN of a COALESCE) as text, columns as datetimes.
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


_COLUMN_CACHE: dict[type, list[models.Field]] = {}


def _columns(model) -> list[models.Field]:
    if model not in _COLUMN_CACHE:
        _COLUMN_CACHE[model] = list(model._meta.concrete_fields)
    return _COLUMN_CACHE[model]


def _clean_value(column: models.Field, value: Any, attributes: dict) -> Any:
    """Fit a trace's value to its column, keeping what does not fit in attributes.

    Traces come from anywhere: a name can be 100 kB, a counter 10**30, a
    duration NaN. The database must never be the one to refuse them."""
    name = column.attname
    if value is None:
        return None if column.null else _empty(column)
    if isinstance(column, models.CharField | models.TextField):
        text = value if isinstance(value, str) else str(value)
        text = text.replace("\x00", "\ufffd")
        limit = column.max_length
        if limit and len(text) > limit:
            attributes.setdefault("full_values", {})[name] = text
            text = text[: limit - 1] + "…"
        return text
    if isinstance(column, models.BooleanField):
        return bool(value)
    if isinstance(column, models.IntegerField):
        return _fit_int(column, value, attributes)
    if isinstance(column, models.FloatField):
        return _fit_float(column, value, attributes)
    return value


def _empty(column: models.Field) -> Any:
    if column.has_default():
        return column.get_default()
    return "" if isinstance(column, models.CharField | models.TextField) else None


def _fit_int(column: models.Field, value: Any, attributes: dict) -> int | None:
    low, high = INT64 if isinstance(column, models.BigIntegerField) else INT32
    if isinstance(value, bool) or not isinstance(value, int | float):
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)[:200]
        return None if column.null else 0
    if isinstance(value, float) and not math.isfinite(value):
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)
        return None if column.null else 0
    if not low <= value <= high:
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)[:200]
        return None if column.null else 0
    return int(value)


def _fit_float(column: models.Field, value: Any, attributes: dict) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        attributes.setdefault("unusable_values", {})[column.attname] = repr(value)[:200]
        return None
    return float(value)


class _IdAllocator:
    """Hands out primary keys for rows we insert ourselves.

    Valid inside the write transaction that the caller holds: on SQLite the
    whole database is locked for writing from BEGIN IMMEDIATE, so max(id) + 1
    onwards is ours; on PostgreSQL ids come from the table's own sequence."""

    def __init__(self, model):
        self.model = model
        self.table = model._meta.db_table
        self._next: int | None = None
        self._pool: list[int] = []
        # PostgreSQL reservations start small and double, so a file of many
        # small runs does not reserve (and burn) thousands of ids per run.
        self._chunk = 16
        self.postgres = connection.vendor == "postgresql"

    def next(self) -> int:
        if self._next is not None:
            value = self._next
            self._next += 1
            return value
        if self.postgres:
            if not self._pool:
                self._pool = self._reserve_postgres(self._chunk)
                self._chunk = min(self._chunk * 2, BATCH_SIZE)
            return self._pool.pop()
        self._next = self._sqlite_start() + 1
        return self._next - 1

    def _sqlite_start(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {self.table}")
            highest = cursor.fetchone()[0]
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [self.table])
            row = cursor.fetchone()
        return max(highest, row[0] if row else 0) + 1

    def _reserve_postgres(self, count: int) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [self.table, count],
            )
            return sorted((row[0] for row in cursor.fetchall()), reverse=True)


class _BulkInserter:
    """Buffers rows of one model and writes them with executemany.

    Each column gets one small function, chosen once, that fits a record's
    value to it (see `_clean_value`) and adapts it for the database; this is
    the hot loop of every ingest."""

    def __init__(self, model):
        columns = _columns(model)
        names = ", ".join(connection.ops.quote_name(c.column) for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        self.sql = f"INSERT INTO {model._meta.db_table} ({names}) VALUES ({marks})"
        self.names = [column.attname for column in columns]
        self.cleaners = [_cleaner(column) for column in columns]
        self.defaults = [_empty(column) for column in columns]
        self.json_at = [i for i, c in enumerate(columns) if isinstance(c, models.JSONField)]
        self.adapt_json = _json_adapter()
        self.rows: list[list] = []

    def add(self, record, attributes: dict, fixed: dict) -> None:
        row = []
        for name, clean, default in zip(self.names, self.cleaners, self.defaults, strict=True):
            if name in fixed:
                row.append(fixed[name])
            elif name == "attributes":
                row.append(attributes)
            else:
                value = getattr(record, name, _MISSING)
                row.append(default if value is _MISSING else clean(value, attributes))
        # Cleaners may have added to attributes, so JSON is dumped last.
        for index in self.json_at:
            row[index] = self.adapt_json(row[index])
        self.rows.append(row)
        if len(self.rows) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            with connection.cursor() as cursor:
                cursor.executemany(self.sql, self.rows)
            self.rows = []


_MISSING = object()


def _cleaner(column: models.Field):
    if column.attname == "key":
        return _key_cleaner(column)
    if isinstance(column, models.JSONField):
        return _keep
    if isinstance(column, models.DateTimeField):
        return _datetime_adapter()
    if isinstance(column, models.CharField | models.TextField):
        return _text_cleaner(column)

    def clean(value, attributes):
        return _clean_value(column, value, attributes)

    return clean


def _keep(value, attributes):
    return value


def _key_cleaner(column: models.Field):
    """A step's or call's key: unique in its run, so cut with `fit_key`, never `…`."""
    length = column.max_length

    def clean(value, attributes):
        text = value if type(value) is str else str(value)
        fitted = fit_key(text, length)
        if fitted != text:
            attributes.setdefault("full_values", {})["key"] = text
        return fitted

    return clean


def _text_cleaner(column: models.Field):
    name, limit, null = column.attname, column.max_length, column.null

    def clean(value, attributes):
        if value is None:
            return None if null else ""
        if type(value) is not str:
            value = str(value)
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if limit and len(value) > limit:
            attributes.setdefault("full_values", {})[name] = value
            value = value[: limit - 1] + "…"
        return value

    return clean


def _datetime_adapter():
    if connection.vendor == "sqlite":
        # What Django's SQLite backend stores: naive UTC text.
        def adapt(value, attributes):
            if value is None:
                return None
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return value.isoformat(" ")

        return adapt
    return _keep


def _json_adapter():
    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        def adapt(value):
            if value is None:
                return None
            text = dump_json(value)
            return Jsonb(value, dumps=lambda _unused: text)

        return adapt

    def adapt_text(value):
        return None if value is None else dump_json(value)

    return adapt_text


def dump_json(value: Any) -> str:
    """JSON text any database accepts: no NUL characters (PostgreSQL refuses
    them), no lone surrogates, NaN as null."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=_json_default)
    except (TypeError, orjson.JSONEncodeError) as exc:  # big integers, lone surrogates, depth
        try:
            if "Recursion" in str(exc):
                raise RecursionError from exc
            text = json.dumps(value, default=_json_default, ensure_ascii=False)
        except RecursionError:
            # Nested deeper than JSON readers go (orjson: 254 levels, Python's json
            # about 1000): kept as its JSON text, a string every reader can load.
            text = json.dumps(json_text(value, ascii_only=False), ensure_ascii=False)
        data = text.encode("utf-8", errors="replace")
    if b"\\u0000" in data:
        data = _ESCAPED_NUL.sub(rb"\1\\ufffd", data)
    return data.decode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
