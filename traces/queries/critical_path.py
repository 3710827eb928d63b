"""A run's critical path as the pages and the API read it: the read model the store
keeps (Step.critical_ms on the steps on the path, Run.critical_path_ms its length;
traces/critical_path.py computes both), a window at a time in seq order from the
partial index `step_critical`, never the run's other steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from traces import critical_path
from traces.models import Run, Step
from traces.pagination import Page, keyset_page

from .timeline import ms_between, time_axis

CRITICAL_WINDOW = 300
ROW_FIELDS = (
    "id", "run_id", "parent_id", "key", "seq", "depth", "name", "type", "status",
    "started_at", "finished_at", "duration_ms", "critical_ms",
)  # fmt: skip


@dataclass
class PathRow:
    """A step on the path: `start_ms` from the run's start, its `duration_ms`, its
    own time on the path `self_ms` and that as a share of the path's length."""

    step: Step
    start_ms: float | None
    duration_ms: float | None
    self_ms: float
    share: float


def why_none(run: Run) -> str:
    """Why a run has no critical path, in a sentence for its page and the API."""
    if run.times_estimated:
        return (
            f"This run's source ({run.format}) records how long each step took but not when "
            "it started: its times are estimated, laid end to end, so there is no critical "
            "path to find."
        )
    if not run.step_count:
        return "This run has no steps."
    return "No step of this run has a start time, so there is no critical path to find."


def path_window(
    run: Run, *, after: str | None = None, before: str | None = None, size: int = CRITICAL_WINDOW
) -> tuple[Page, list[PathRow]]:
    """One window of the steps on the path, in seq order (parents first), placed."""
    steps = Step.objects.filter(run_id=run.pk, critical_ms__isnull=False).only(*ROW_FIELDS)
    page = keyset_page(steps, "seq", descending=False, after=after, before=before, size=size)
    start, _ = time_axis(run)
    total = run.critical_path_ms or 0.0
    rows = [
        PathRow(
            step,
            ms_between(start, step.started_at),
            _duration(step),
            step.critical_ms,
            step.critical_ms / total if total > 0 else 0.0,
        )
        for step in page.items
    ]
    return page, rows


def _duration(step: Step) -> float | None:
    if step.duration_ms is not None:
        return step.duration_ms
    return ms_between(step.started_at, step.finished_at)


def recount(run: Run) -> tuple[float | None, dict[int, float]]:
    """The path computed again from the run's stored steps, as (length, self time by
    step id): what the read model must equal (tests, after ingest and re-sync)."""
    rows = Step.objects.filter(run_id=run.pk).order_by("seq")
    timings = [critical_path.timing(*row) for row in rows.values_list(*critical_path.TIMING_FIELDS)]
    found = critical_path.of_run(timings, run.started_at, run.finished_at, run.duration_ms)
    if found is None:
        return None, {}
    return found.total_ms, found.self_ms()


def stored(run: Run) -> tuple[float | None, dict[int, float]]:
    """The read model as kept: (Run.critical_path_ms, Step.critical_ms by step id)."""
    steps = Step.objects.filter(run_id=run.pk, critical_ms__isnull=False)
    return run.critical_path_ms, dict(steps.values_list("id", "critical_ms"))
