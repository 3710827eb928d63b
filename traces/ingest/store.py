"""The only module that writes traces to the database.

`write_run()` turns one `RunRecord` (and its lazy steps, calls, links and
logs) into rows, in bulk: ids are allocated up front so a step's parent and a
call's step are known without reading anything back, rows go out with
`executemany` in batches, and the summaries the pages need (step counts by
status, child counts, failed subtrees) are computed on the way. The caller
holds the transaction: a run is written whole or not at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson
from django.db import connection
from django.utils import timezone

from traces.causes import as_utc, error_cause, failure_day
from traces.models import Call, EntityLink, LogEntry, Run, Step, TraceFile

from .entity_counts import add_run_entities, entities_of, subtract_entities
from .failure_counts import add_failure_causes, failure_causes_of, subtract_failure_causes
from .inserters import BATCH_SIZE, BulkInserter, IdAllocator, clean_value, dump_json, fit_key
from .records import CallRecord, LinkRecord, LogRecord, RunRecord, Status, StepRecord
from .run_counts import apply_run_counts, move_run_count, run_counts_of, run_key


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
        # RunCount's changes by the runs written through this index, for settle().
        self.run_counts: Counter = Counter()

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

    def settle(self) -> None:
        """Apply the written runs' counts to RunCount: once, at the end of the
        file's transaction (see run_counts)."""
        apply_run_counts(self.run_counts)
        self.run_counts.clear()


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
        delete_run_children([existing.pk])
    counted_as = run_key(existing) if existing is not None else None
    run = _save_run_row(record, existing, source_file=source_file, origin=origin)
    move_run_count(index.run_counts, counted_as, run_key(run))
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


def delete_run_children(run_ids: list[int]) -> None:
    """Delete everything under these runs with plain SQL (Django's cascade
    would load every row into Python first)."""
    if not run_ids:
        return
    placeholders = ", ".join(["%s"] * len(run_ids))
    removed, removed_entities = failure_causes_of(run_ids), entities_of(run_ids)
    with connection.cursor() as cursor:
        for model in (LogEntry, EntityLink, Call, Step):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE run_id IN ({placeholders})", run_ids
            )
    subtract_failure_causes(removed)
    subtract_entities(removed_entities)


def delete_runs(run_ids: list[int]) -> None:
    delete_run_children(run_ids)
    counted = run_counts_of(run_ids) if run_ids else Counter()
    Run.objects.filter(pk__in=run_ids)._raw_delete(Run.objects.db)
    apply_run_counts(Counter({key: -n for key, n in counted.items()}))


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
        setattr(run, name, clean_value(Run._meta.get_field(name), value, values["attributes"]))
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
        # The earliest start and latest finish of the steps written (Run.steps_*_at).
        self.first_start = None
        self.last_finish = None
        self.ids = {model: IdAllocator(model) for model in (Step, Call, EntityLink, LogEntry)}
        # A step's time (its start, else its run's): its links' time when they have none.
        self.step_times: dict[int, object] = {}
        # (cause, day) -> [count, first seen, last seen] of this run's failed steps.
        self.causes: dict[tuple, list] = {}

    def write(self, record: RunRecord) -> None:
        self._write_rows(Step, record.steps, self._step_row)
        self._write_rows(Call, record.calls, self._call_row)
        self._write_rows(EntityLink, record.links, self._link_row)
        self._write_rows(LogEntry, record.logs, self._log_row)
        self._write_step_summaries()
        self._write_run_summary()
        add_failure_causes(self.run, self.causes)
        add_run_entities(self.run.pk)

    def _write_rows(self, model, records, to_row) -> None:
        inserter = BulkInserter(model)
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
        self._note_times(step)
        fixed = {
            "id": step_id,
            "run_id": self.run.pk,
            "parent_id": parent_id,
            "seq": self.seq + 1,
            "position": position,
            "depth": depth,
        }
        self.step_times[step_id] = step.started_at or self.run.started_at
        if step.entity_type:
            fixed["entity_seen_at"] = _db_time(self.step_times[step_id])
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
            "seen_at": _db_time(link.created_at or self.step_times[step_id]),
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
            steps_started_at=self.first_start,
            steps_finished_at=self.last_finish,
            attributes=attributes,
            **summary,
        )


def _db_time(moment):
    return None if moment is None else connection.ops.adapt_datetimefield_value(moment)


_STEP_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
