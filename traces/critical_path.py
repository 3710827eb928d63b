"""The critical path of a run: the chain of steps that determined when it ended.

Jaeger's algorithm (jaeger-ui, TracePage/CriticalPath), written as a loop so a
tree of any depth is walked without recursion. Start at the run's end; at each
level take the child that finished last before the current point (its "last
finishing child"), go into it from its end, and when a step has no child left
that finished before the point, the time back to its start is its own and the
walk returns to its parent from that start. What each step keeps of the run's
time on the way is its self time on the path; the parts no step covers (a gap
between steps, the run's own set-up) are the run's.

As Jaeger does first ("sanitizeOverFlowingChildren"), a child is clamped to its
parent's span and one wholly outside it is left out with its subtree: the path
of a parent is what happened while it ran. One difference: Jaeger takes only a
child that ended strictly before the point, which skips a step that ended
exactly when the next began (steps back to back, as a sequence of tasks is); here
a child ending at the point counts, and each child is taken at most once.

Times are integers (microseconds since the epoch), so ties are exact. Steps with
no start are left out, but a grouping step without times of its own (a synthetic
group) spans its timed children. A step with a start and no end ends at the
run's horizon (the latest moment known of it) while it is open (running, never
closed), else at the last end of its children, else at its start.

No Django here: the store calls `compute` as it writes a run, the read model's
recount and the migration's backfill call it on rows read back.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# The run itself, as the walk's root: step ids are positive.
RUN = 0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def micros(moment: datetime | None) -> int | None:
    """A datetime as integer microseconds since the epoch (naive ones are UTC); None
    for anything else (the store keeps no such value either)."""
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


MAX_DURATION_MS = 10**14


def duration_micros(duration_ms: float | None) -> int | None:
    """A duration in ms as integer microseconds; None when it is not a finite number
    (the store keeps None for those: inserters._fit_float)."""
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int | float):
        return None
    if not math.isfinite(duration_ms):
        return None
    # A hostile 1e308 ms is finite but not as microseconds: held at ~3,000 years.
    return max(round(min(duration_ms, MAX_DURATION_MS) * 1000), 0)


def span_of(
    started_at: datetime | None,
    finished_at: datetime | None,
    duration_ms: float | None,
) -> tuple[int | None, int | None]:
    """(start, end) in microseconds: the recorded duration wins over the finish time
    when both are known, as on the timeline and in the exports."""
    start = micros(started_at)
    duration = duration_micros(duration_ms)
    if start is not None and duration is not None:
        return start, start + duration
    end = micros(finished_at)
    if start is not None and end is not None and end < start:
        end = start
    return start, end


@dataclass(slots=True)
class Timing:
    """One step as the walk needs it. `open`: still running (or never closed), so a
    missing end is the run's horizon."""

    step_id: int
    parent_id: int | None
    start: int | None
    end: int | None
    open: bool = False


# What a step row gives `timing()`, in order (the recount and the backfill read these).
TIMING_FIELDS = (
    "id", "parent_id", "started_at", "finished_at", "duration_ms", "status", "never_closed",
)  # fmt: skip


def timing(step_id, parent_id, started_at, finished_at, duration_ms, status, never_closed):
    """A step's Timing from its stored (or recorded) fields."""
    start, end = span_of(started_at, finished_at, duration_ms)
    return Timing(step_id, parent_id, start, end, status == "running" or bool(never_closed))


def of_run(steps: Iterable[Timing], started_at, finished_at, duration_ms) -> CriticalPath | None:
    """`compute` with the run's own times (a running run has no end: its horizon)."""
    start, end = span_of(started_at, finished_at, duration_ms)
    return compute(steps, start, end)


@dataclass
class CriticalPath:
    """The path: `self_us` by step id for every step on it (a step whose children
    fill its part of the path is on it with 0), in the order the walk met them,
    from the run's end backwards; `run_self_us` the run's own part (gaps);
    `start`/`end` the run's span on the path (`total_us` = end - start)."""

    start: int
    end: int
    self_us: dict[int, int] = field(default_factory=dict)
    run_self_us: int = 0

    @property
    def total_us(self) -> int:
        return self.end - self.start

    @property
    def total_ms(self) -> float:
        return self.total_us / 1000

    def self_ms(self) -> dict[int, float]:
        return {step_id: us / 1000 for step_id, us in self.self_us.items()}


def compute(
    steps: Iterable[Timing], run_start: int | None = None, run_end: int | None = None
) -> CriticalPath | None:
    """The critical path of a run whose steps come parents first (seq order); None
    when no step has a start time (a format that records durations only)."""
    steps = list(steps)
    known = [t for s in steps for t in (s.start, s.end) if t is not None]
    if not any(s.start is not None for s in steps):
        return None
    horizon = max([*known, *(t for t in (run_start, run_end) if t is not None)])
    spans = _resolve(steps, horizon)
    if not spans:
        return None
    first = min(start for start, _, _ in spans.values())
    last = max(end for _, end, _ in spans.values())
    start = first if run_start is None else min(run_start, first)
    end = max(last, horizon if run_end is None else run_end)
    children, clamped = _clamped_children(steps, spans, start, end)
    return _walk(children, clamped, start, end)


def _resolve(steps: list[Timing], horizon: int) -> dict[int, tuple[int, int, int | None]]:
    """Each timed step's (start, end, timed parent or RUN), bottom-up: a step without
    a start spans its timed children, one without an end ends as the module says."""
    parent_of: dict[int, int | None] = {}
    for step in steps:
        parent_of[step.step_id] = step.parent_id
    # The extent of each step's timed children: (first start, last end).
    extent: dict[int, tuple[int, int]] = {}
    spans: dict[int, tuple[int, int, int | None]] = {}
    for step in reversed(steps):
        inner = extent.get(step.step_id)
        start, end = step.start, step.end
        if start is None:
            if inner is None:
                continue
            start, end = inner
        elif end is None and step.open:
            end = horizon
        elif end is None:
            end = max(start, inner[1]) if inner else start
        end = max(end, start)
        spans[step.step_id] = (start, end, None)
        parent = step.parent_id
        if parent is not None and parent in parent_of:
            known = extent.get(parent)
            extent[parent] = (
                (start, end) if known is None else (min(known[0], start), max(known[1], end))
            )
    # Parents: the nearest timed ancestor (a step without times and timed children is
    # in `spans`, so only wholly untimed subtrees are skipped: they hold no timed step).
    for step_id, (start, end, _) in spans.items():
        parent = parent_of.get(step_id)
        spans[step_id] = (start, end, parent if parent in spans else RUN)
    return spans


def _clamped_children(
    steps: list[Timing], spans: dict, run_start: int, run_end: int
) -> tuple[dict[int, list[tuple[int, int, int]]], dict[int, tuple[int, int]]]:
    """Each step's children as (end, start, step id), clamped to the parent's span
    (top-down, parents first); children wholly outside it are left out with their
    subtrees. The run is the parent RUN, spanning [run_start, run_end]. Also each
    step's span as clamped."""
    clamped: dict[int, tuple[int, int]] = {RUN: (run_start, run_end)}
    children: dict[int, list[tuple[int, int, int]]] = {}
    for step in steps:
        span = spans.get(step.step_id)
        if span is None:
            continue
        start, end, parent = span
        bounds = clamped.get(parent)
        if bounds is None:  # its parent was left out
            continue
        low, high = bounds
        if start >= high or end <= low:
            continue
        start, end = max(start, low), min(end, high)
        clamped[step.step_id] = (start, end)
        children.setdefault(parent, []).append((end, start, step.step_id))
    # For each parent, children by end; among equal ends the longest, then the first.
    for items in children.values():
        items.sort(key=lambda item: (item[0], -item[1], -item[2]))
    return children, clamped


def _walk(children: dict, spans: dict, run_start: int, run_end: int) -> CriticalPath:
    ends = {parent: [item[0] for item in items] for parent, items in children.items()}
    # Children of each parent not yet taken: a prefix of its list by end.
    left = {parent: len(items) for parent, items in children.items()}
    parent_of = {step_id: parent for parent, items in children.items() for _, _, step_id in items}
    own: dict[int, int] = {}
    met: list[int] = []
    current, point = RUN, run_end
    while True:
        index = bisect_right(ends.get(current, ()), point, 0, left.get(current, 0)) - 1
        if index >= 0:
            end, _, child = children[current][index]
            left[current] = index
            own[current] = own.get(current, 0) + point - end
            if child not in own:
                own[child] = 0
                met.append(child)
            current, point = child, end
            continue
        start = spans[current][0]
        own[current] = own.get(current, 0) + max(point - start, 0)
        if current == RUN:
            break
        current, point = parent_of[current], start
    path = CriticalPath(start=run_start, end=run_end, run_self_us=own.pop(RUN, 0))
    # On the path: the steps that kept some time, and the steps above them.
    on_path: set[int] = set()
    for step_id in met:
        if own[step_id] <= 0:
            continue
        while step_id != RUN and step_id not in on_path:
            on_path.add(step_id)
            step_id = parent_of[step_id]
    path.self_us = {step_id: own[step_id] for step_id in met if step_id in on_path}
    return path
