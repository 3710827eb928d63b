"""Bulk test data made with the ORM: many runs and steps without any trace file."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.db.models import Max, Min, OuterRef, Subquery

from traces.causes import as_utc, error_cause, failure_slot
from traces.ingest import entity_counts
from traces.ingest.failure_counts import (
    add_failure_causes,
    fill_failed_at,
    fill_failed_at_estimated,
    slice_name,
)
from traces.ingest.run_counts import apply_run_counts, run_key
from traces.models import FailureCause, FailureSlice, LogEntry, Run, Step

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count()


def make_runs(count: int, *, format: str = "runs", status: str = "succeeded", **fields):
    runs = [
        Run(
            format=format,
            external_id=f"{format}-{status}-{next(_ids)}",
            name=fields.get("name", f"run {index}"),
            type=fields.get("type", "nightly"),
            status=status,
            raw_status=status,
            started_at=BASE_TIME + timedelta(minutes=index),
            duration_ms=1000.0 + index,
            step_count=fields.get("step_count", 3),
            steps_succeeded=fields.get("steps_succeeded", 3),
        )
        for index in range(count)
    ]
    # Counted as the store counts the runs it writes.
    apply_run_counts(Counter(run_key(run) for run in runs))
    return Run.objects.bulk_create(runs)


def make_steps(
    run: Run,
    count: int,
    *,
    status: str = "succeeded",
    parent: Step | None = None,
    start: int = 0,
    error: str | Callable[[int], str] = "",
) -> list[Step]:
    """`count` sibling steps; failed ones get their cause and are counted in
    FailureCause and FailureSlice, as the store does. `error` is a message, or one per position."""
    failed = status == "failed"
    steps = []
    for index in range(start, start + count):
        message = error(index) if callable(error) else error
        steps.append(
            Step(
                run=run,
                parent=parent,
                key=f"{parent.key if parent else 's'}.{index}",
                seq=index + 1,
                position=index,
                depth=(parent.depth + 1) if parent else 0,
                name=f"step {index}",
                type="exec",
                status=status,
                raw_status=status,
                started_at=BASE_TIME + timedelta(seconds=index),
                failed_at=(BASE_TIME + timedelta(seconds=index)) if failed else None,
                failed_at_estimated=run.times_estimated if failed else None,
                duration_ms=100.0,
                error=message,
                error_cause=error_cause(message) if failed else "",
                failed_subtree=failed,
            )
        )
    steps = Step.objects.bulk_create(steps)
    # The run's step time bounds, as the store keeps them.
    bounds = Step.objects.filter(run=run).aggregate(
        first=Min("started_at"), last=Max("finished_at")
    )
    Run.objects.filter(pk=run.pk).update(
        steps_started_at=bounds["first"], steps_finished_at=bounds["last"]
    )
    if failed:
        add_failure_causes(run, failures_by_cause_and_day(run, steps))
    return steps


def failures_by_cause_and_day(run: Run, steps: list[Step]) -> dict[tuple, list]:
    """What the store counts of a run's failed steps: (cause, slot, step name) ->
    [count, first, last]."""
    causes: dict[tuple, list] = {}
    for step in steps:
        moment = step.started_at or run.started_at
        moment = as_utc(moment) if moment is not None else None
        key = (step.error_cause, failure_slot(moment), slice_name(step.name))
        entry = causes.setdefault(key, [0, moment, moment])
        entry[0] += 1
        if moment is not None:
            entry[1], entry[2] = min(entry[1], moment), max(entry[2], moment)
    return causes


def recount_failure_causes() -> None:
    """After a test changed failed steps' errors or times in place (or their runs'):
    their causes, their failed_at (and whether it is estimated) and FailureCause
    written again from the steps, as the store would have."""
    fill_failed_at()
    fill_failed_at_estimated()
    FailureCause.objects.all().delete()
    FailureSlice.objects.all().delete()
    for run in Run.objects.all():
        failed = list(Step.objects.filter(run=run, status="failed"))
        for step in failed:
            step.error_cause = error_cause(step.error)
        Step.objects.bulk_update(failed, ["error_cause"])
        counted = [step for step in failed if not step.synthetic]
        add_failure_causes(run, failures_by_cause_and_day(run, counted))


def count_entities() -> None:
    """The entities read model (and the times it orders by) for links and subject
    steps made here; the store keeps it on ingest."""
    entity_counts.rebuild()


def refresh_step_names() -> None:
    """Every log line's step_name its step's (LogEntry.step_name), after a test renamed
    steps or moved lines by update(), which the ORM's save does not see: as the ingest
    would have written them."""
    name = Step.objects.filter(pk=OuterRef("step_id")).values("name")
    LogEntry.objects.filter(step__isnull=False).update(step_name=Subquery(name))
