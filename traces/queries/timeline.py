"""A run's steps on its time axis: a window in seq order, the axis's ends, and the
summed durations that lay steps end to end when a format records no times."""

from __future__ import annotations

from django.db.models import Max, Min, Q, Sum

from traces.models import Run, Step
from traces.pagination import Page, keyset_page

from .steps import only_failed_subtrees, step_rows

TIMELINE_WINDOW = 300


def timeline_window(
    run_id: int,
    *,
    failed_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = TIMELINE_WINDOW,
) -> Page:
    """One window of the run's steps in seq order (parents before children)."""
    steps = Step.objects.filter(run_id=run_id)
    if failed_only:
        steps = only_failed_subtrees(steps)
    return keyset_page(
        step_rows(steps), "seq", descending=False, after=after, before=before, size=size
    )


def step_time_bounds(run_id: int) -> dict:
    """Earliest start and latest finish among the run's steps (for runs that record
    no times of their own). One aggregate over the run's steps."""
    return Step.objects.filter(run_id=run_id).aggregate(
        first_start=Min("started_at"), last_finish=Max("finished_at")
    )


def time_axis(run: Run) -> tuple:
    """(start, end) of the run's time axis: its own times, else its steps' (one
    aggregate); a running run's axis reaches its live_until (now, or the last
    write of a stale run)."""
    start, end = run.started_at, run.finished_at
    if start is None or end is None:
        bounds = step_time_bounds(run.pk)
        start = start or bounds["first_start"]
        end = end or bounds["last_finish"]
    until = run.live_until
    if until is not None:
        end = max(end or until, until)
    return start, end or start


def duration_sums(run_id: int, *, before_seq: int, failed_only: bool = False) -> dict:
    """For runs without step timestamps: the summed durations of all steps and of
    those before `before_seq`, to lay steps end to end. One aggregate."""
    steps = Step.objects.filter(run_id=run_id)
    if failed_only:
        steps = only_failed_subtrees(steps)
    sums = steps.aggregate(
        total=Sum("duration_ms"), before=Sum("duration_ms", filter=Q(seq__lt=before_seq))
    )
    return {"total": sums["total"] or 0.0, "before": sums["before"] or 0.0}
