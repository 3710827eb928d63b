"""The only module that writes traces to the database.

`write_run()` turns one `RunRecord` (and its lazy steps, calls, links and
logs) into rows, in bulk: ids are allocated up front so a step's parent and a
call's step are known without reading anything back, rows go out in batches
(COPY on PostgreSQL, executemany on SQLite), and the summaries the pages need
(step counts by status, child counts, failed subtrees) are computed on the way,
so the run row is written once, after its children, with its summary in it.
The caller holds the transaction: a run is written whole or not at all.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from django.db import connection
from django.db.models.base import ModelState
from django.utils import timezone

from traces import critical_path
from traces.causes import as_utc, error_cause, failure_slot
from traces.models import (
    Call,
    EntityLink,
    LogEntry,
    Run,
    RunMinimap,
    Step,
    StepGroup,
    TraceFile,
)
from traces.search import index as search_index

from .entity_counts import RunEntities, entities_of, remove_entities
from .failure_counts import add_causes, failure_causes_of, remove_causes, slice_name
from .inserters import (
    BATCH_SIZE,
    IdAllocator,
    RowBuffers,
    clean_value,
    dump_json,
    fit_key,
    insert_instances,
    kept_as_is,
)
from .minimaps import RunMinimaps
from .read_models import ReadModelDeltas
from .records import CallRecord, LinkRecord, LogRecord, RunRecord, Status, StepRecord
from .run_counts import move_run_count, run_counts_of, run_key
from .step_groups import StepGroups
from .step_paths import StepPaths


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
        "type", "source_updated_at", "step_count", "call_count", "link_count", "log_count",
    )  # fmt: skip

    def __init__(self):
        self._by_origin: dict[tuple[str, str], dict[str, Run]] = {}
        # One allocator per model for the whole ingest (it lives in the caller's
        # transaction, as this index does): not one reservation per run.
        self.ids = {model: IdAllocator(model) for model in (Run, Step)}
        # What the runs written (and rewritten) through this index change in the
        # read models, handed on by settle().
        self.deltas = ReadModelDeltas()
        self._gathered: set[int] = set()  # the runs written since the last settle()
        # New runs' rows, inserted together by settle() (their children are in:
        # foreign keys are checked at commit), by id and by global id.
        self._unwritten: dict[int, Run] = {}
        # Their children's rows (steps, calls, links, logs), in batches across runs.
        self.rows = RowBuffers()
        self._unwritten_global: dict[tuple[str, str], Run] = {}
        # Stored runs (None: none) of records read ahead, by global id.
        self._looked_up: dict[tuple[str, str], Run | None] = {}
        # Runs written through this index since the last settle(): their children
        # go into the search index then.
        self.written: list[int] = []
        self.type_trends = self.deltas.trends  # TypeBucket's and TypeStep's
        # The written runs' StepGroup rows: per run, not shared counters, so written
        # with the rows rather than gathered into the transaction's deltas.
        self.step_groups = StepGroups()
        # The written runs' minimap starts (RunMinimap), read as they stand at the end.
        self.minimaps = RunMinimaps()

    def get(self, format: str, origin: str, external_id: str) -> Run | None:
        if not origin:
            key = (format, external_id)
            run = self._unwritten_global.get(key)
            if run is None:
                if key in self._looked_up:  # read ahead (`ahead`), used once
                    return self._looked_up.pop(key)
                return _global_id_lookup().one(format, external_id)
        else:
            key = (format, origin)
            if key not in self._by_origin:
                stored = Run.objects.only(*self.FIELDS).filter(format=format, origin=origin)
                self._by_origin[key] = {run.external_id: run for run in stored.iterator()}
            run = self._by_origin[key].get(external_id)
        if run is not None and run.pk in self._unwritten:
            self.write_runs()  # a run given twice: its first copy is stored, then updated
        return run

    def ahead(self, records: Iterator[RunRecord]) -> Iterator[RunRecord]:
        """The records, those whose ids are global read LOOKUP_AHEAD ahead and their
        stored runs looked up together: one query, not one a run (a traceos dump
        holds thousands). Records with an origin pass straight through, and so do
        those whose children are still to be read (a parser streaming a run must
        have it consumed before it reads the next)."""
        waiting: list[RunRecord] = []
        for record in records:
            if record.origin or not _read_whole(record):
                yield from self._looked_up_now(waiting)
                waiting = []
                yield record
                continue
            waiting.append(record)
            if len(waiting) >= LOOKUP_AHEAD:
                yield from self._looked_up_now(waiting)
                waiting = []
        yield from self._looked_up_now(waiting)

    def look_up(self, records: list[RunRecord]) -> None:
        """Look up the stored runs of these records whose ids are global, together
        (a group of small files written at once): a query per format, not one a run."""
        self._looked_up_now([record for record in records if not record.origin])

    def _looked_up_now(self, records: list[RunRecord]) -> list[RunRecord]:
        by_format: dict[str, set[str]] = {}
        for record in records:
            by_format.setdefault(record.format, set()).add(fit_key(record.external_id))
        self._looked_up.clear()
        for format, external_ids in by_format.items():
            found = _global_id_lookup().many(format, sorted(external_ids))
            for external_id in external_ids:
                self._looked_up[(format, external_id)] = found.get(external_id)
        return records

    def add_run(self, run: Run) -> None:
        """A new run whose children are written: its row goes in with the others'."""
        self._unwritten[run.pk] = run
        if not run.origin:
            self._unwritten_global[(run.format, run.external_id)] = run

    def write_runs(self) -> None:
        """What is held back goes in: the runs' rows and their children's."""
        self.rows.flush()
        insert_instances(list(self._unwritten.values()))
        self._unwritten.clear()
        # A global id read ahead as "not stored" while its run was held back is
        # stored now: a later record of it must update it, not insert it again.
        for key, run in self._unwritten_global.items():
            if key in self._looked_up:
                self._looked_up[key] = run
        self._unwritten_global.clear()

    def remember(self, run: Run) -> None:
        """A run just written: a file that gives the same run twice (duplicate
        rows in a database) updates it instead of inserting it again."""
        self.written.append(run.pk)
        runs = self._by_origin.get((run.format, run.origin))
        if runs is not None:
            runs[run.external_id] = run

    def gather(self, run: Run, writer: _RunWriter, counted_as: tuple | None) -> None:
        """A run written: what it changes in the read models, kept for settle()."""
        move_run_count(self.deltas.run_counts, counted_as, run_key(run))
        add_causes(self.deltas.causes, run, writer.causes)
        writer.entities.gather_into(self.deltas.entities)
        self._gathered.add(run.pk)

    def settle(self, into: ReadModelDeltas | None = None) -> None:
        """The written runs' rows in, and their changes to the read models handed
        `into` the transaction's (batches.WriteBatch applies them once, just before
        it commits: see read_models), or, without one, applied now. Call at the end
        of the savepoint of the runs written (a file, or a part of a big one's)."""
        self._write_rows()
        self.type_trends.gather_written()  # read back now, as the runs stand
        if into is None:
            self.deltas.apply()
        else:
            into.merge(self.deltas)
            self.deltas.clear()

    def _write_rows(self) -> None:
        """The held rows in, and (SQLite) the written runs' search index entries."""
        self.write_runs()
        self.step_groups.apply()
        self.minimaps.apply()
        with connection.cursor() as cursor:
            search_index.index_runs(cursor, self.written)
        self._gathered.clear()
        self.written.clear()

    def settle_before_deleting(self, run_id: int) -> None:
        """A run written again in one file (a database that repeats a row): its
        first write's rows go in before they are read (what they take off the read
        models) and deleted."""
        if run_id in self._gathered:
            self._write_rows()


def _read_whole(record: RunRecord) -> bool:
    """Whether the record's children are all in memory already."""
    return all(
        type(children) in (list, tuple)
        for children in (record.steps, record.calls, record.links, record.logs)
    )


class _GlobalIdLookup:
    """Stored runs by their global ids, as `RunIndex.FIELDS`, with a plain SELECT
    prepared once: the ORM's `.filter().first()` compiles its query for every
    run, which costs more than writing a small run."""

    def __init__(self):
        fields = [f for f in Run._meta.concrete_fields if f.attname in RunIndex.FIELDS]
        self.names = [f.attname for f in fields]
        quoted = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        self.sql = (
            f"SELECT {quoted} FROM {Run._meta.db_table} "
            "WHERE format = %s AND origin = '' AND external_id = %s LIMIT 1"
        )
        self.many_sql = (
            f"SELECT {quoted} FROM {Run._meta.db_table} "
            "WHERE format = %s AND origin = '' AND external_id IN ({})"
        )
        self.external_id_at = self.names.index("external_id")
        # What the ORM would do to each value read (text to datetime, JSON, ...).
        self.converters = []
        for index, model_field in enumerate(fields):
            column = model_field.get_col(Run._meta.db_table)
            found = connection.ops.get_db_converters(column) + model_field.get_db_converters(
                connection
            )
            self.converters += [(index, converter, column) for converter in found]

    def one(self, format: str, external_id: str) -> Run | None:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [format, external_id])
            row = cursor.fetchone()
        return None if row is None else self._run(row)

    def many(self, format: str, external_ids: list[str]) -> dict[str, Run]:
        if not external_ids:
            return {}
        sql = self.many_sql.format(", ".join(["%s"] * len(external_ids)))
        with connection.cursor() as cursor:
            cursor.execute(sql, [format, *external_ids])
            rows = cursor.fetchall()
        return {row[self.external_id_at]: self._run(row) for row in rows}

    def _run(self, row: tuple) -> Run:
        values = list(row)
        for index, converter, column in self.converters:
            values[index] = converter(values[index], column, connection)
        return Run.from_db(connection.alias, self.names, values)


_GLOBAL_ID_LOOKUPS: dict[str, _GlobalIdLookup] = {}


def _global_id_lookup() -> _GlobalIdLookup:
    lookup = _GLOBAL_ID_LOOKUPS.get(connection.vendor)
    if lookup is None:
        lookup = _GLOBAL_ID_LOOKUPS[connection.vendor] = _GlobalIdLookup()
    return lookup


def write_run(
    record: RunRecord, *, source_file: TraceFile | None, origin: str, index: RunIndex | None = None
) -> RunOutcome:
    """Insert or replace one run. Call inside `transaction.atomic()`, and with an
    `index` call its settle() before the transaction ends."""
    if index is None:
        index = RunIndex()
        outcome = write_run(record, source_file=source_file, origin=origin, index=index)
        index.settle()
        return outcome
    origin = fit_key(origin, Run._meta.get_field("origin").max_length)
    external_id = fit_key(record.external_id)
    existing = index.get(record.format, origin, external_id)
    if existing is not None:
        if record.fingerprint and existing.fingerprint == record.fingerprint:
            _note_activity(existing, record.source_updated_at)
            return RunOutcome("unchanged", existing.pk, record.external_id, _stored(existing))
        if _less_complete(record.completeness, existing.completeness):
            return RunOutcome("kept", existing.pk, record.external_id, _stored(existing))
        index.settle_before_deleting(existing.pk)
        existing = _still_stored(existing)
    if existing is not None:
        index.type_trends.remove([existing.pk])
        delete_run_children([existing.pk], index.deltas)
    counted_as = run_key(existing) if existing is not None else None
    run = _run_row(record, existing, source_file=source_file, origin=origin)
    if existing is None:
        run.pk = index.ids[Run].next()
    # Children first (foreign keys are checked at commit), then the run row once,
    # its summary known: no INSERT-then-UPDATE of the run.
    writer = _RunWriter(run, index.ids[Step], index.rows)
    writer.write(record)
    if existing is None:
        index.add_run(run)
    else:
        _json_as_stored(run)
        run.save()
    index.gather(run, writer, counted_as)
    index.type_trends.add([run.pk])
    index.step_groups.add([run.pk])
    index.minimaps.add(run.pk, run.step_count)
    index.remember(run)
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


def stored_runs(run_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Those of these runs still stored, by id: (status, type) as they stand now, their
    rows locked until the transaction ends (PostgreSQL; SQLite's writer holds the whole
    database from BEGIN IMMEDIATE). Read before what a run adds to the read models is
    read and taken off: a run looked up earlier (RunIndex keeps a database's runs across
    its commits) may have been deleted or rewritten by another writer since; whoever
    locks its row first takes it off, once, and the other sees it as it is then."""
    lock = " ORDER BY id FOR UPDATE" if connection.vendor == "postgresql" else ""
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, status, type FROM {Run._meta.db_table} WHERE id IN ({placeholders})"
            + lock,
            run_ids,
        )
        return {pk: (status, run_type) for pk, status, run_type in cursor.fetchall()}


def _still_stored(run: Run) -> Run | None:
    """The stored run a record rewrites, as it stands now (see stored_runs), or None:
    deleted since it was looked up, so the record is written as a new run."""
    now = stored_runs([run.pk]).get(run.pk)
    if now is None:
        return None
    run.status, run.type = now
    return run


def delete_run_children(run_ids: list[int], deltas: ReadModelDeltas | None = None) -> None:
    """Delete everything under these runs with plain SQL (Django's cascade
    would load every row into Python first). What they took off the read models
    is gathered into `deltas` (the caller's transaction applies it), or applied now."""
    if not run_ids:
        return
    now = deltas is None
    deltas = ReadModelDeltas() if now else deltas
    placeholders = ", ".join(["%s"] * len(run_ids))
    remove_causes(deltas.causes_removed, failure_causes_of(run_ids))
    remove_entities(deltas.entities_removed, entities_of(run_ids))
    with connection.cursor() as cursor:
        for model in (RunMinimap, StepGroup, LogEntry, EntityLink, Call, Step):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE run_id IN ({placeholders})", run_ids
            )
    if now:
        deltas.apply()


def delete_runs(run_ids: list[int], deltas: ReadModelDeltas | None = None) -> None:
    """Delete these runs and their rows; what they took off the read models is
    gathered into `deltas` (applied by the caller's transaction before it commits),
    or, without one, applied now (in the read models' one order)."""
    if not run_ids:
        return
    run_ids = sorted(stored_runs(run_ids))  # those another writer has not deleted
    if not run_ids:
        return
    now = deltas is None
    deltas = ReadModelDeltas() if now else deltas
    deltas.trends.remove(run_ids)
    delete_run_children(run_ids, deltas)
    for key, n in run_counts_of(run_ids).items():
        deltas.run_counts[key] -= n
    Run.objects.filter(pk__in=run_ids)._raw_delete(Run.objects.db)
    if now:
        deltas.apply()


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


_RUN_COLUMNS = {name: Run._meta.get_field(name) for name in RUN_FIELDS}
# The values clean_value keeps as they are, by field: most, tested cheaply.
_RUN_KEPT = {name: kept_as_is(column) for name, column in _RUN_COLUMNS.items()}
# A new Run's field values before any is set: Model.__init__ works them out for
# each of ~60 fields every time, which costs more than writing a small run.
_RUN_CALLABLE_DEFAULTS = [
    (f.attname, f.default)
    for f in Run._meta.concrete_fields
    if f.has_default() and callable(f.default)
]
_RUN_CONSTANTS = {
    f.attname: f.get_default()
    for f in Run._meta.concrete_fields
    if f.attname not in dict(_RUN_CALLABLE_DEFAULTS) and not f.generated
}


def _new_run(format: str, origin: str, external_id: str) -> Run:
    """`Run(format=..., origin=..., external_id=...)`, without Model.__init__."""
    run = Run.__new__(Run)
    run._state = ModelState()
    values = run.__dict__
    values.update(_RUN_CONSTANTS)
    for name, default in _RUN_CALLABLE_DEFAULTS:
        values[name] = default()
    values["format"], values["origin"], values["external_id"] = format, origin, external_id
    return run


def _run_row(
    record: RunRecord, existing: Run | None, *, source_file: TraceFile | None, origin: str
) -> Run:
    external_id = fit_key(record.external_id)
    run = existing or _new_run(record.format, origin, external_id)
    values = {name: getattr(record, name) for name in RUN_FIELDS}
    values["attributes"] = dict(values["attributes"])
    if external_id != record.external_id:
        values["attributes"].setdefault("full_values", {})["external_id"] = record.external_id
    for name, value in values.items():
        if not _RUN_KEPT[name](value):
            value = clean_value(_RUN_COLUMNS[name], value, values["attributes"])
        setattr(run, name, value)
    run.completeness = list(record.completeness) if record.completeness is not None else None
    run.source_file = source_file
    run.left_source_at = None  # written again by its source: back in it
    run.ingested_at = timezone.now()
    return run


def _json_as_stored(run: Run) -> None:
    """The run's JSON values as `dump_json` makes them storable (no NUL, NaN as
    null), for the ORM's save(); `insert_instances` dumps them so itself."""
    for name in ("input", "output", "output_counters", "attributes"):
        value = getattr(run, name)
        if value is not None:
            setattr(run, name, orjson.loads(dump_json(value)))


STEP_FIXED = (
    "id", "run_id", "parent_id", "seq", "position", "depth", "error_cause", "entity_seen_at",
    "failed_at", "failed_at_estimated", "child_count", "call_count", "link_count",
    "failed_subtree", "path", "critical_ms",
)  # fmt: skip
CALL_FIXED = ("run_id", "step_id", "position")
LINK_FIXED = ("run_id", "step_id", "seen_at")
LOG_FIXED = ("run_id", "step_id", "step_name")
# Step rows a run keeps back until its calls and links are counted, so their
# summaries go in with the INSERT; a longer run's earlier steps get an UPDATE.
# One batch: no more memory than before, whatever the size of the payloads.
HELD_STEPS = BATCH_SIZE
# Records with global ids read ahead to look their stored runs up together.
LOOKUP_AHEAD = 200


class _RunWriter:
    """Writes one run's children and keeps the summaries as they stream by."""

    def __init__(self, run: Run, step_ids: IdAllocator, rows: RowBuffers):
        self.run = run
        self.run_id = run.pk
        self.rows = rows
        self.db_time = rows.db_time
        self.counts: Counter = Counter()
        self.step_ids: dict[str, int] = {}
        # Each step's name as stored, written on its log lines (LogEntry.step_name).
        self.step_names: dict[int, str] = {}
        self.parent_of: dict[int, int | None] = {}
        self.depth_of: dict[int, int] = {}
        self.children: Counter = Counter()
        self.calls_of: Counter = Counter()
        self.links_of: Counter = Counter()
        self.failed_subtree: set[int] = set()
        self.by_status: Counter = Counter()
        self.orphans: Counter = Counter()
        self.seq = 0
        self.new_step_id = step_ids.next
        self.step_plan = rows.plan(Step, StepRecord, STEP_FIXED)
        at = self.step_plan.at
        self.subject_at = (at["entity_type"], at["entity_id"], at["entity_seen_at"])
        self.entities = RunEntities()
        self.held_steps: list[list] = []
        # Steps with a smaller id went out before their summaries were known.
        self.first_held_id = 0
        # (cause, slot, step name) -> [count, first seen, last seen] of this run's
        # failed steps (failure_counts.add_causes).
        self.causes: dict[tuple, list] = {}
        # The earliest start and latest finish of the steps written (Run.steps_*_at).
        self.first_start = None
        self.last_finish = None
        # A step's time (its start, else its run's): its links' time when they have none.
        self.step_times: dict[int, object] = {}
        # Each step's path (names along the tree), that runs are compared by.
        self.paths = StepPaths()
        # The steps' spans for the critical path, and the path once they are all in.
        self.timings: list[critical_path.Timing] = []
        self.critical: dict[int, float] = {}

    def write(self, record: RunRecord) -> None:
        self._write_steps(record.steps)
        self._write_rows(Call, CallRecord, CALL_FIXED, record.calls, self._call_row)
        self._write_links(record.links)
        self._write_rows(LogEntry, LogRecord, LOG_FIXED, record.logs, self._log_row)
        self._find_critical_path()
        self._write_held_steps()
        self._write_step_summaries()
        self._write_run_summary()

    def _write_rows(self, model, record_type, fixed, records, to_row) -> None:
        plan, add = None, self.rows.add
        for item in records:
            values = to_row(item)
            if values is not None:
                plan = plan or self.rows.plan(model, record_type, fixed)
                add(plan, plan.row(item, *values))

    def _write_links(self, links) -> None:
        """Links, each counted for the entities read model as its row stores it."""
        plan, add, link = None, self.rows.add, self.entities.link
        for item in links:
            values = self._link_row(item)
            if values is None:
                continue
            if plan is None:
                plan = self.rows.plan(EntityLink, LinkRecord, LINK_FIXED)
                at = plan.at
                fields = operator.itemgetter(
                    at["entity_type"], at["entity_id"], at["link_type"], at["step_id"],
                    at["seen_at"], at["external_id"],
                )  # fmt: skip
            row = plan.row(item, *values)
            add(plan, row)
            link(*fields(row))

    def _write_steps(self, steps) -> None:
        plan, held = self.step_plan, self.held_steps
        type_at, id_at, seen_at = self.subject_at
        step_at, name_at, names = plan.at["id"], plan.at["name"], self.step_names
        subject = self.entities.subject
        for step in steps:
            values = self._step_row(step)
            if values is None:
                continue
            if len(held) >= HELD_STEPS:
                plan.write(held)
                held.clear()
                self.first_held_id = values[1][0]
            row = plan.row(step, *values)
            held.append(row)
            names[row[step_at]] = row[name_at]
            if row[type_at] != "":
                subject(row[type_at], row[id_at], row[seen_at])

    def _write_held_steps(self) -> None:
        """The held steps with their summaries, known now that calls and links are in."""
        at = self.step_plan.fixed_at
        id_at, child_at, call_at, link_at, failed_at, critical_at = (
            at["id"], at["child_count"], at["call_count"], at["link_count"], at["failed_subtree"],
            at["critical_ms"],
        )  # fmt: skip
        for row in self.held_steps:
            step_id = row[id_at]
            row[child_at] = self.children[step_id]
            row[call_at] = self.calls_of[step_id]
            row[link_at] = self.links_of[step_id]
            row[failed_at] = step_id in self.failed_subtree
            row[critical_at] = self.critical.get(step_id)
        self.rows.extend(self.step_plan, self.held_steps)
        self.held_steps = []

    def _step_row(self, step: StepRecord) -> tuple[dict, tuple] | None:
        if step.key in self.step_ids:
            self.orphans["duplicate step keys"] += 1
            return None
        attributes = dict(step.attributes)
        parent_id = self.step_ids.get(step.parent_key) if step.parent_key is not None else None
        if step.parent_key is not None and parent_id is None:
            attributes["missing_parent"] = step.parent_key
        step_id = self.new_step_id()
        self.step_ids[step.key] = step_id
        self.parent_of[step_id] = parent_id
        depth = 0 if parent_id is None else self.depth_of[parent_id] + 1
        self.depth_of[step_id] = depth
        position = self.children[parent_id]
        self.children[parent_id] += 1
        if not step.synthetic:
            self.by_status[step.status] += 1
            self.counts["steps"] += 1
        cause = ""
        failed_items = _failed_items(step.items_failed)
        if failed_items and not step.synthetic:
            self.counts["items_failed"] += failed_items
        if step.status == "failed" or failed_items:
            # Failed items count as a failure: "failed only" keeps the step.
            self._mark_failed_subtree(step_id)
        if step.status == "failed":
            cause = self._count_failure(step)
        self.seq += 1
        self._note_times(step)
        self.timings.append(
            critical_path.timing(
                step_id, parent_id, step.started_at, step.finished_at, step.duration_ms,
                step.status, step.never_closed,
            )
        )  # fmt: skip
        moment = self.step_times[step_id] = step.started_at or self.run.started_at
        seen_at = self.db_time(moment) if step.entity_type else None
        # As the causes read model dates the failure (_count_failure), and as
        # failure_counts._failure_time repairs it; an estimate when the run's times are
        # (the failing-now strip counts those apart).
        failed = step.status == "failed"
        failed_at = self.db_time(moment) if failed else None
        estimated = self.run.times_estimated if failed else None
        path = self.paths.add(step_id, parent_id, step.name or step.type, step.loop_index)
        # The four summaries are filled in by _write_held_steps.
        return attributes, (step_id, self.run_id, parent_id, self.seq, position, depth, cause,
                            seen_at, failed_at, estimated, 0, 0, 0, False, path,
                            None)  # fmt: skip

    def _count_failure(self, step: StepRecord) -> str:
        """The step's cause, counted for the read model unless the step is synthetic
        (the causes box counts what the source has, as the steps page lists it)."""
        message = step.error if isinstance(step.error, str) else str(step.error or "")
        cause = error_cause(message.replace("\x00", "\ufffd"))
        if step.synthetic:
            return cause
        moment = step.started_at or self.run.started_at
        moment = as_utc(moment) if moment is not None else None
        key = (cause, failure_slot(moment), slice_name(step.name))
        entry = self.causes.setdefault(key, [0, moment, moment])
        entry[0] += 1
        if moment is not None:
            entry[1] = min(entry[1], moment)
            entry[2] = max(entry[2], moment)
        return cause

    def _note_times(self, step: StepRecord) -> None:
        if step.started_at is not None:
            start = as_utc(step.started_at)
            self.first_start = min(self.first_start or start, start)
        if step.finished_at is not None:
            finish = as_utc(step.finished_at)
            self.last_finish = max(self.last_finish or finish, finish)

    def _mark_failed_subtree(self, step_id: int | None) -> None:
        while step_id is not None and step_id not in self.failed_subtree:
            self.failed_subtree.add(step_id)
            step_id = self.parent_of[step_id]

    def _call_row(self, call: CallRecord) -> tuple[dict, tuple] | None:
        step_id = self.step_ids.get(call.step_key)
        if step_id is None:
            self.orphans["calls of unknown steps"] += 1
            return None
        position = self.calls_of[step_id]
        self.calls_of[step_id] += 1
        self.counts["calls"] += 1
        return dict(call.attributes), (self.run_id, step_id, position)

    def _link_row(self, link: LinkRecord) -> tuple[dict, tuple] | None:
        step_id = self.step_ids.get(link.step_key)
        if step_id is None:
            self.orphans["links of unknown steps"] += 1
            return None
        self.links_of[step_id] += 1
        self.counts["links"] += 1
        seen_at = self.db_time(link.created_at or self.step_times[step_id])
        return dict(link.attributes), (self.run_id, step_id, seen_at)

    def _log_row(self, log: LogRecord) -> tuple[dict, tuple]:
        attributes = dict(log.attributes)
        step_id = self.step_ids.get(log.step_key) if log.step_key is not None else None
        if log.step_key is not None and step_id is None:
            attributes["unknown_step"] = log.step_key
        self.counts["logs"] += 1
        return attributes, (self.run_id, step_id, self.step_names.get(step_id, ""))

    def _find_critical_path(self) -> None:
        """The run's critical path, now that all its steps are known: each step's self
        time on it for its row (Step.critical_ms), its length for the run's."""
        run = self.run
        found = critical_path.of_run(self.timings, run.started_at, run.finished_at, run.duration_ms)
        self.timings = []
        self.critical = found.self_ms() if found is not None else {}
        run.critical_path_ms = found.total_ms if found is not None else None

    def _write_step_summaries(self) -> None:
        """Summaries of the steps that went out before they were known (runs of
        more than HELD_STEPS steps): a second write of those rows only."""
        first_held = self.first_held_id
        if not first_held:
            return
        self._write_early_critical(first_held)
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
            if step_id < first_held
        ]
        columns = (
            ("child_count", "integer"), ("call_count", "integer"), ("link_count", "integer"),
            ("failed_subtree", "boolean"),
        )  # fmt: skip
        _update_steps(columns, rows)

    def _write_run_summary(self) -> None:
        """The run's summary, set on its row before the one write of it."""
        summary = {f"steps_{status}": self.by_status[status] for status in _STEP_STATUSES}
        attributes = self.run.attributes
        if self.orphans:
            attributes = {**attributes, "skipped_records": dict(self.orphans)}
        values = dict(
            step_count=self.counts["steps"],
            call_count=self.counts["calls"],
            link_count=self.counts["links"],
            log_count=self.counts["logs"],
            steps_items_failed=min(self.counts["items_failed"], MAX_INT32),
            max_depth=max(self.depth_of.values(), default=0),
            steps_started_at=self.first_start,
            steps_finished_at=self.last_finish,
            step_id_min=min(self.step_ids.values(), default=None),
            step_id_max=max(self.step_ids.values(), default=None),
            attributes=attributes,
            **summary,
        )
        for name, value in values.items():
            setattr(self.run, name, value)

    def _write_early_critical(self, first_held: int) -> None:
        rows = [
            (self_ms, step_id) for step_id, self_ms in self.critical.items() if step_id < first_held
        ]
        _update_steps((("critical_ms", "double precision"),), rows)


def _update_steps(columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> None:
    """Set `columns` (name, PostgreSQL type) of steps: `rows` are their values, then
    the step's id. PostgreSQL: one statement a batch, the values as arrays (an UPDATE
    a row cost ~160 µs of a step of a 50,000-step run: 6-10 s for the 504 MB file);
    SQLite: executemany (no round trips)."""
    table = Step._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH_SIZE):
            batch = rows[start : start + BATCH_SIZE]
            if connection.vendor != "postgresql":
                assignments = ", ".join(f"{name} = %s" for name, _ in columns)
                cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", batch)
                continue
            names = [name for name, _ in columns]
            arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
            cursor.execute(
                f"UPDATE {table} AS step SET "
                + ", ".join(f"{name} = v.{name}" for name in names)
                + f" FROM unnest({arrays}, %s::bigint[]) AS v({', '.join(names)}, id) "
                f"WHERE step.id = v.id",
                [list(values) for values in zip(*batch, strict=True)],
            )


MAX_INT32 = 2**31 - 1


def _failed_items(value) -> int:
    """A step's failed items as a count: a positive integer column can hold, else 0
    (the row's own cleaner keeps an unusable value aside)."""
    if type(value) is not int or value <= 0:
        return 0
    return min(value, MAX_INT32)


_STEP_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
