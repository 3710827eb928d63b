"""A run's steps on its time axis: a window in seq order, and each step's offset and
duration in milliseconds (`lay_out`), computed once for the page and the API alike.

A format that records durations but no timestamps (greentic) has its steps laid end
to end in order, by duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.db.models import Q, Sum
from django.utils import timezone

from traces.models import Run, Status, Step
from traces.pagination import Page, keyset_page

from .find import few_matches
from .find import matching as find_matching
from .steps import only_failed_subtrees, step_rows

TIMELINE_WINDOW = 300


def timeline_window(
    run_id: int,
    *,
    failed_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = TIMELINE_WINDOW,
    find=None,
) -> Page:
    """One window of the run's steps in seq order (parents before children); with
    `find` (a queries.find.Find), of the steps it matches."""
    if find is None:
        steps = Step.objects.filter(run_id=run_id)
    else:
        steps = find_matching(run_id, find, from_matches=few_matches(run_id, find))
    if failed_only:
        steps = only_failed_subtrees(steps)
    return keyset_page(
        step_rows(steps), "seq", descending=False, after=after, before=before, size=size
    )


def time_axis(run: Run) -> tuple:
    """(start, end) of the run's time axis: its own times, else its steps' (their
    earliest start and latest finish, stored at ingest); a running run's axis
    reaches its live_until (now, or the last write of a stale run)."""
    start = run.started_at or run.steps_started_at
    end = run.finished_at or run.steps_finished_at
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


class Placed(NamedTuple):
    step: Step
    offset_ms: float | None  # from the axis's start; None: the step has no start time
    duration_ms: float | None  # None: neither recorded nor derivable


@dataclass
class Layout:
    timed: bool  # on the run's clock; False: laid end to end by duration
    start: datetime | None  # the axis's start (None when laid end to end)
    span_ms: float  # the axis's length, as it is (0 for a run that took no time)
    items: list[Placed]


def lay_out(run: Run, steps: list[Step], *, failed_only: bool = False) -> Layout:
    """A window of the run's steps (in seq order) placed on its time axis, in
    milliseconds. With timestamps, on the run's clock: a step still running lasts
    until its run's live_until (now, or a stale run's last write). Without, end to
    end by duration, after the steps before the window (one aggregate)."""
    if any(step.started_at for step in steps):
        start, end = time_axis(run)
        until = run.live_until or timezone.now()
        items = [
            Placed(step, ms_between(start, step.started_at), _duration(step, until))
            for step in steps
        ]
        return Layout(True, start, max(ms_between(start, end) or 0.0, 0.0), items)
    if not steps:
        return Layout(False, None, 0.0, [])
    sums = duration_sums(run.pk, before_seq=steps[0].seq, failed_only=failed_only)
    offset, items = sums["before"], []
    for step in steps:
        items.append(Placed(step, offset, step.duration_ms))
        offset += step.duration_ms or 0.0
    return Layout(False, None, sums["total"], items)


def _duration(step: Step, until: datetime) -> float | None:
    if step.duration_ms is not None:
        return step.duration_ms
    if step.started_at and step.finished_at:
        return ms_between(step.started_at, step.finished_at)
    if step.started_at and step.status == Status.RUNNING:
        return max(ms_between(step.started_at, until), 0.0)
    return None


def ms_between(start: datetime | None, moment: datetime | None) -> float | None:
    """Milliseconds from `start` to `moment`; None when either is unknown."""
    if start is None or moment is None:
        return None
    return (moment - start).total_seconds() * 1000
