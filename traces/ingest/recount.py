"""Every read model recounted from the rows it summarises, compared with what is
stored, and rewritten where they differ: `manage.py check_read_models`, the recount
script of bench/ and the tests use these definitions (one source of truth).

A recount is the code that counts at ingest run over every run where that code is
SQL (failure causes and slices, entity counters, run counts, each run's summaries)
or where it is Python over one query's rows (the trends' duration bins; the repeated
steps' percentiles, which SQLite has no function for): the same definitions, so a
difference is a drift of the stored rows, not of two ways of counting.

Rows are compared as multisets of whole rows (every column, values made Python's:
SQLite gives computed times as text, PostgreSQL sums as Decimal): a stored row the
recount lacks is *wrong* (a count taken below 0 by a double subtraction, a row that
should be gone, a first_seen not the first), a recount row not stored is *missing*.
A repair deletes the wrong rows and writes the missing ones (the runs' summaries:
updates the run), in one transaction that first takes the locks that keep writers
out until it commits (`locked`); readers go on reading the rows as they were.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import OperationalError, connection, models, transaction

from traces.causes import as_utc
from traces.models import (
    Call,
    EntityCounter,
    EntityLink,
    EntityTypeCounter,
    FailureCause,
    FailureSlice,
    LogEntry,
    Run,
    RunCount,
    RunMinimap,
    Step,
    StepGroup,
    TypeBucket,
    TypeStep,
)

from . import entity_counts, failure_counts, minimaps, step_groups, type_trends

_RUNS, _STEPS, _LINKS = Run._meta.db_table, Step._meta.db_table, EntityLink._meta.db_table
_LOGS = LogEntry._meta.db_table
STEP_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
# Runs whose steps one query of the Python recounts reads (the trends, the groups).
RUNS_A_QUERY = 50


@dataclass(frozen=True)
class ReadModel:
    """A read model: its rows (`columns` of `model`'s table) and how to recount
    them. `by_id`: columns of the Run rows themselves (the first is the run's id),
    repaired by updating the run, never by deleting it."""

    name: str
    model: type[models.Model]
    columns: tuple[str, ...]
    recount: Callable[[Recount], Iterable[tuple]]
    by_id: bool = False
    # Columns the recount gives after `columns`, written by a repair, not compared.
    written: tuple[str, ...] = ()
    # A compared row (stored or recounted, its values as _value_of makes them) in the
    # form they are compared in, when two forms mean the same.
    normal: Callable[[tuple], tuple] | None = None

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def pk(self) -> str:
        return self.model._meta.pk.column


@dataclass
class Difference:
    """A read model against its recount: its stored rows the recount lacks (by id)
    and the recount's rows it lacks."""

    read_model: ReadModel | StoredColumn
    rows: int = 0
    wrong: list[tuple[int, tuple]] = field(default_factory=list)
    missing: list[tuple] = field(default_factory=list)
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.wrong or self.missing)


class Recount:
    """One pass over the data: what several read models share is computed once."""

    def __init__(self):
        self._trends: type_trends.TypeTrendDeltas | None = None

    def sql(self, sql: str, params: Iterable = ()) -> Iterator[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, list(params))
            while batch := cursor.fetchmany(10_000):
                yield from batch

    def run_ids(self) -> list[int]:
        return [pk for (pk,) in self.sql(f"SELECT id FROM {_RUNS} ORDER BY id")]

    def trends(self) -> type_trends.TypeTrendDeltas:
        """TypeBucket's and TypeStep's counts of every run, as the ingest counts them."""
        if self._trends is None:
            self._trends = type_trends.TypeTrendDeltas()
            self._trends.add(self.run_ids())
            self._trends.gather_written()
        return self._trends


def _failures(model: type[models.Model]) -> Callable[[Recount], Iterable[tuple]]:
    return lambda recount: recount.sql(failure_counts.failed_steps_recount_sql(model), [False])


def _entities(recount: Recount) -> Iterable[tuple]:
    return recount.sql(entity_counts.recount_sql())


def _entity_types(recount: Recount) -> Iterable[tuple]:
    return recount.sql(
        "SELECT entity_type, SUM(links), SUM(subjects) FROM ("
        f"SELECT entity_type, COUNT(*) AS links, 0 AS subjects FROM {_LINKS} GROUP BY entity_type "
        f"UNION ALL SELECT entity_type, 0, COUNT(*) FROM {_STEPS} WHERE entity_type > '' "
        "GROUP BY entity_type) AS counted GROUP BY entity_type"
    )


def _run_counts(recount: Recount) -> Iterable[tuple]:
    return recount.sql(f"SELECT format, type, status, COUNT(*) FROM {_RUNS} GROUP BY 1, 2, 3")


def _run_summaries(recount: Recount) -> Iterable[tuple]:
    """Each run's figures of its own rows: its steps (not the synthetic ones) by status,
    their failed items, the steps' time bounds (all of them), its calls, links, logs."""
    real = "s.id IS NOT NULL AND s.synthetic = %s"
    by_status = ", ".join(
        f"SUM(CASE WHEN {real} AND s.status = '{status}' THEN 1 ELSE 0 END)"
        for status in STEP_STATUSES
    )
    counts = ", ".join(
        f"(SELECT COUNT(*) FROM {model._meta.db_table} c WHERE c.run_id = r.id)"
        for model in (Call, EntityLink, LogEntry)
    )
    return recount.sql(
        f"SELECT r.id, SUM(CASE WHEN {real} THEN 1 ELSE 0 END), {by_status}, "
        f"SUM(CASE WHEN {real} THEN COALESCE(s.items_failed, 0) ELSE 0 END), "
        f"MIN(s.started_at), MAX(s.finished_at), {counts} "
        f"FROM {_RUNS} r LEFT JOIN {_STEPS} s ON s.run_id = r.id GROUP BY r.id",
        [False] * (len(STEP_STATUSES) + 2),
    )


def _buckets(recount: Recount) -> Iterable[tuple]:
    return [(*key, n) for key, n in recount.trends().buckets.items() if n]


def _type_steps(recount: Recount) -> Iterable[tuple]:
    return [(*key, *values) for key, values in recount.trends().steps.items() if any(values)]


# StepGroup's columns compared: all but differs_by (written by a repair), whose input
# samples the ingest reads for at most DIFF_GROUPS groups a transaction (it depends
# on how runs were written together, not only on the steps).
GROUP_COLUMNS = tuple(column for column in step_groups._COLUMNS if column != "differs_by")


def _step_groups(recount: Recount) -> Iterator[tuple]:
    run_ids = recount.run_ids()
    for start in range(0, len(run_ids), RUNS_A_QUERY):
        yield from step_groups.gather(run_ids[start : start + RUNS_A_QUERY])


def _minimaps(recount: Recount) -> Iterator[tuple]:
    """Each big run's row, read from its steps with the store's own queries."""
    for run_id, step_count in recount.sql(minimaps.BIG_RUNS_SQL, [minimaps.big()]):
        starts, failed = minimaps.starts_of(run_id, step_count)
        yield run_id, step_count, json.dumps(starts), json.dumps(failed)


def _minimap_normal(row: tuple) -> tuple:
    """The sampled starts as a set (in the order the database read them: a minimap
    counts them into columns), sorted."""
    run_id, step_count, starts, failed = row
    return run_id, step_count, json.dumps(sorted(json.loads(starts))), failed


READ_MODELS = (
    ReadModel(
        "runs by status (RunCount)", RunCount, ("format", "run_type", "status", "count"),
        _run_counts,
    ),
    ReadModel(
        "runs' summaries (Run)", Run,
        ("id", "step_count", *(f"steps_{s}" for s in STEP_STATUSES), "steps_items_failed",
         "steps_started_at", "steps_finished_at", "call_count", "link_count", "log_count"),
        _run_summaries, by_id=True,
    ),
    ReadModel(
        "failure causes (FailureCause)", FailureCause,
        ("cause", "day", "format", "run_type", "count", "first_seen", "last_seen"),
        _failures(FailureCause),
    ),
    ReadModel(
        "failure slices (FailureSlice)", FailureSlice,
        tuple(failure_counts.SLICE_SQL_COLUMNS.split(", ")), _failures(FailureSlice),
    ),
    ReadModel(
        "entity counters (EntityCounter)", EntityCounter,
        ("entity_type", "entity_id", *entity_counts.FIGURES, "first_seen", "last_seen",
         "external_id"),
        _entities,
    ),
    ReadModel(
        "entity types (EntityTypeCounter)", EntityTypeCounter,
        ("entity_type", "links", "subjects"), _entity_types,
    ),
    ReadModel(
        "run trends (TypeBucket)", TypeBucket, (*type_trends.BUCKET_KEY, "count"), _buckets,
    ),
    ReadModel(
        "step trends (TypeStep)", TypeStep, (*type_trends.STEP_KEY, *type_trends.STEP_COUNTS),
        _type_steps,
    ),
    ReadModel(
        "repeated steps (StepGroup)", StepGroup, GROUP_COLUMNS, _step_groups,
        written=("differs_by",),
    ),
    ReadModel(
        "timeline minimaps (RunMinimap)", RunMinimap, ("run_id", "step_count", "starts", "failed"),
        _minimaps, normal=_minimap_normal,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class StoredColumn:
    """A column the ingest derives from a row's neighbours (the time a list orders
    by): `expected`, SQL over the row's table (its run and step looked up), is what
    it holds. Compared and repaired in SQL, row by row, without reading the rows."""

    name: str
    model: type[models.Model]
    column: str
    expected: str

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def differs(self) -> str:
        distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
        return f"{self.column} {distinct} {self.expected}"


def _of_run(table: str, column: str) -> str:
    return f"(SELECT r.{column} FROM {_RUNS} r WHERE r.id = {table}.run_id)"


def _step_time(table: str = _STEPS) -> str:
    return f"COALESCE({table}.started_at, {_of_run(table, 'started_at')})"


STORED_COLUMNS = (
    StoredColumn(
        "link times (EntityLink.seen_at)", EntityLink, "seen_at",
        f"COALESCE({_LINKS}.created_at, (SELECT s.started_at FROM {_STEPS} s "
        f"WHERE s.id = {_LINKS}.step_id), {_of_run(_LINKS, 'started_at')})",
    ),
    StoredColumn(
        "subject times (Step.entity_seen_at)", Step, "entity_seen_at",
        f"CASE WHEN {_STEPS}.entity_type > '' THEN {_step_time()} END",
    ),
    StoredColumn(
        "failure times (Step.failed_at)", Step, "failed_at",
        f"CASE WHEN {_STEPS}.status = 'failed' THEN {_step_time()} END",
    ),
    StoredColumn(
        "failure time estimates (Step.failed_at_estimated)", Step, "failed_at_estimated",
        f"CASE WHEN {_STEPS}.status = 'failed' THEN {_of_run(_STEPS, 'times_estimated')} END",
    ),
    StoredColumn(
        "causes of steps that did not fail (Step.error_cause)", Step, "error_cause",
        f"CASE WHEN {_STEPS}.status = 'failed' THEN {_STEPS}.error_cause ELSE '' END",
    ),
    # The key the log search matches a step name by (migration 0043): its step's name,
    # '' without a step. A repair's UPDATE re-indexes the line (SQLite's FTS5 trigger
    # on step_name; PostgreSQL's GIN index).
    StoredColumn(
        "log lines' step names (LogEntry.step_name)", LogEntry, "step_name",
        f"COALESCE((SELECT s.name FROM {_STEPS} s WHERE s.id = {_LOGS}.step_id), '')",
    ),
)  # fmt: skip
CHECKED = (*STORED_COLUMNS, *READ_MODELS)


def _value_of(model: type[models.Model], column: str) -> Callable:
    """How a column's value is compared: as Python has it, whatever the database gave."""
    kind = model._meta.get_field(column)
    if isinstance(kind, models.DateTimeField):
        return lambda v: None if v is None else as_utc(_datetime(v))
    if isinstance(kind, models.DateField):
        return lambda v: None if v is None else _date(v)
    if isinstance(kind, models.FloatField):
        return lambda v: None if v is None else float(v)
    if isinstance(kind, models.BooleanField):
        return lambda v: None if v is None else bool(v)
    if isinstance(kind, models.JSONField):
        return lambda v: json.dumps(json.loads(v) if isinstance(v, str) else v, sort_keys=True)
    if isinstance(kind, models.IntegerField | models.ForeignKey | models.AutoField):
        return lambda v: None if v is None else int(v)
    return lambda v: v


def _datetime(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(value) if isinstance(value, str) else value


def compare(read_model: ReadModel | StoredColumn, recount: Recount | None = None) -> Difference:
    """The read model against its recount (in the caller's transaction: run both in
    one snapshot, see `snapshot`)."""
    start = time.perf_counter()
    recount = recount or Recount()
    if isinstance(read_model, StoredColumn):
        value = _value_of(read_model.model, read_model.column)
        difference = Difference(read_model)
        difference.wrong = [
            (pk, (value(stored),))
            for pk, stored in recount.sql(
                f"SELECT id, {read_model.column} FROM {read_model.table} "
                f"WHERE {read_model.differs()} ORDER BY id"
            )
        ]
        difference.rows = len(difference.wrong)
        difference.seconds = time.perf_counter() - start
        return difference
    values = [_value_of(read_model.model, column) for column in read_model.columns]

    def row_of(raw) -> tuple:
        row = tuple(value(v) for value, v in zip(values, raw, strict=True))
        return read_model.normal(row) if read_model.normal else row

    stored: Counter = Counter()
    ids: dict[tuple, list[int]] = defaultdict(list)
    for pk, *raw in recount.sql(
        f"SELECT {read_model.pk}, {', '.join(read_model.columns)} FROM {read_model.table}"
    ):
        row = row_of(raw)
        stored[row] += 1
        ids[row].append(pk)
    counted: Counter = Counter()
    written: dict[tuple, list[tuple]] = defaultdict(list)  # a row's `written` columns
    size = len(read_model.columns)
    for raw in read_model.recount(recount):
        row = row_of(raw[:size])
        counted[row] += 1
        if read_model.written:
            written[row].append(tuple(raw[size:]))
    difference = Difference(read_model, rows=stored.total())
    for row, n in (stored - counted).items():
        difference.wrong += [(pk, row) for pk in ids[row][:n]]
    difference.missing = [
        (*row, *(written[row][index] if read_model.written else ()))
        for row, n in (counted - stored).items()
        for index in range(n)
    ]
    difference.wrong.sort(key=_sortable)
    difference.missing.sort(key=lambda row: _sortable((0, row)))
    difference.seconds = time.perf_counter() - start
    return difference


def _sortable(entry: tuple) -> tuple:
    _pk, row = entry
    return tuple((value is None, str(value)) for value in row)


def check(names: Iterable[str] | None = None) -> Iterator[Difference]:
    """Each read model (those named, else all: see `_chosen`) against its recount, in
    one snapshot of the database (no lock: writers go on, and are not seen)."""
    chosen = _chosen(names)
    with snapshot():
        recount = Recount()
        for read_model in chosen:
            yield compare(read_model, recount)


def repair(names: Iterable[str] | None = None) -> list[Difference]:
    """Recount the read models and rewrite the rows that differ: each in a transaction
    of its own (they are independent: a writer waits for one model's recount, not
    all), that keeps writers out from before its recount until it commits (`locked`),
    tried again if it met one (batches.retried: a deadlock, SQLite locked)."""
    from .batches import retried

    return [
        retried(lambda model=model: _repair(model), locked_too=True) for model in _chosen(names)
    ]


def _repair(read_model: ReadModel | StoredColumn) -> Difference:
    locked()
    difference = compare(read_model)
    if difference:
        rewrite(difference)
    return difference


def _chosen(names: Iterable[str] | None) -> list[ReadModel | StoredColumn]:
    """The read models of these names (READ_MODELS' model names, STORED_COLUMNS'
    Model.column), in CHECKED's order (the stored columns first: the entity counters
    are counted from the link times); all without names."""
    if not names:
        return list(CHECKED)
    wanted = {name.lower() for name in names}
    return [m for m in CHECKED if label(m).lower() in wanted]


def label(read_model: ReadModel | StoredColumn) -> str:
    """How the command names it: its model (a stored column: Model.column)."""
    if isinstance(read_model, StoredColumn):
        return f"{read_model.model.__name__}.{read_model.column}"
    return read_model.model.__name__


class snapshot:
    """A read-only transaction that sees one state of the database throughout: on
    PostgreSQL REPEATABLE READ; on SQLite a deferred transaction (WAL: a reader's
    snapshot, taken at its first read, and no write lock)."""

    def __enter__(self):
        self._atomic, self._began = None, False
        if connection.in_atomic_block:  # already in a transaction: the caller's view
            return self
        if connection.vendor == "postgresql":
            self._atomic = transaction.atomic()
            self._atomic.__enter__()
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return self
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        self._began = True
        return self

    def __exit__(self, *exc_info):
        if self._atomic is not None:
            return self._atomic.__exit__(*exc_info)
        if self._began:
            with connection.cursor() as cursor:
                cursor.execute("COMMIT")
        return False


# PostgreSQL: the tables a repair reads, locked before it reads them: the runs
# EXCLUSIVE (a delete or re-sync locks its runs' rows first, store.stored_runs, and
# waits), then the rows counted SHARE (readers go on, writers wait). Writers take
# these in no one order (an ingest writes a new run's steps before its run row, a
# delete deletes them first too), so a writer may hold one the repair waits for and
# then want the runs: the repair waits for a lock LOCK_WAIT at most, shorter than
# PostgreSQL's deadlock_timeout (1 s), lets everything go and takes them again
# later (LOCK_ATTEMPTS times, backing off): the writer goes on, never the victim.
LOCKED_FIRST = (_RUNS,)
LOCKED_THEN = tuple(model._meta.db_table for model in (Step, Call, EntityLink, LogEntry, StepGroup))
LOCK_WAIT_MS = 500
LOCK_ATTEMPTS = 40
LOCK_NOT_AVAILABLE = "55P03"


def locked() -> None:
    """Keep writers out of the counted tables until the transaction ends. SQLite: the
    transaction already holds the database's write lock (BEGIN IMMEDIATE: settings)."""
    if connection.vendor != "postgresql":
        return
    from .batches import backoff

    for attempt in range(LOCK_ATTEMPTS):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")
                cursor.execute(f"LOCK TABLE {', '.join(LOCKED_FIRST)} IN EXCLUSIVE MODE")
                cursor.execute(f"LOCK TABLE {', '.join(LOCKED_THEN)} IN SHARE MODE")
            break
        except OperationalError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if sqlstate != LOCK_NOT_AVAILABLE or attempt + 1 == LOCK_ATTEMPTS:
                raise
            time.sleep(backoff(min(attempt, 5)))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = DEFAULT")


def rewrite(difference: Difference) -> None:
    """Delete a read model's wrong rows and write its missing ones (a run's summaries:
    update its row). In the caller's transaction."""
    read_model = difference.read_model
    if isinstance(read_model, StoredColumn):
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {read_model.table} SET {read_model.column} = {read_model.expected} "
                f"WHERE {read_model.differs()}"
            )
        return
    columns = (*read_model.columns, *read_model.written)
    fields = [read_model.model._meta.get_field(column) for column in columns]

    def prepared(row: tuple) -> list:
        return [_db_value(f, value) for f, value in zip(fields, row, strict=True)]

    with connection.cursor() as cursor:
        if read_model.by_id:
            assignments = ", ".join(f"{column} = %s" for column in read_model.columns[1:])
            cursor.executemany(
                f"UPDATE {read_model.table} SET {assignments} WHERE id = %s",
                [[*prepared(row)[1:], row[0]] for row in difference.missing],
            )
            return
        ids = [pk for pk, _row in difference.wrong]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"DELETE FROM {read_model.table} WHERE {read_model.pk} IN ({marks})", chunk
            )
        if difference.missing:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {read_model.table} ({', '.join(columns)}) VALUES ({marks})",
                [prepared(row) for row in difference.missing],
            )


def _db_value(column: models.Field, value):
    if isinstance(column, models.JSONField):
        value = json.loads(value)
    return column.get_db_prep_value(value, connection, prepared=False)
