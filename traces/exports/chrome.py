"""A run as Chrome trace-event JSON, which Perfetto (ui.perfetto.dev) and
chrome://tracing open: `{"traceEvents": [{"ph": "X", ...}]}`.

One complete ("X") event per step and one for the run, `ts` and `dur` in
microseconds from the run's start. Perfetto nests the events of one track (tid)
by time, so a step goes on its parent's track when it fits inside the parent and
after its earlier siblings there; a parallel branch that overlaps them opens a
track of its own. Steps with no known start are left out and counted in the
run event's args.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from traces.models import Run

from .timing import Placed, placed_batches, run_span_times

CONTENT_TYPE = "application/json"
PID = 1
# The run's event has a track of its own; steps start on the next.
RUN_TRACK = 0
FIRST_STEP_TRACK = 1


def filename(run: Run) -> str:
    return f"run-{run.pk}.chrome.json"


def chunks(run: Run) -> Iterator[bytes]:
    tracks = _Tracks()
    run_start, run_end = run_span_times(run)
    origin = run_start
    unplaced = 0
    yield b'{"displayTimeUnit":"ms","traceEvents":['
    yield _dumps(_metadata("process_name", 0, {"name": run.name or run.external_id}))
    for batch in placed_batches(run):
        for placed in batch:
            if placed.start_ns is None:
                unplaced += 1
                continue
            if origin is None:
                origin = placed.start_ns
            yield b"," + _dumps(_step_event(placed, origin, tracks))
    if origin is not None:
        yield b"," + _dumps(_run_event(run, run_start, run_end, origin, unplaced))
    yield b"," + _dumps(_metadata("thread_name", RUN_TRACK, {"name": "run"}))
    for tid in range(FIRST_STEP_TRACK, tracks.count + 1):
        name = "steps" if tid == FIRST_STEP_TRACK else f"branch {tid - FIRST_STEP_TRACK}"
        yield b"," + _dumps(_metadata("thread_name", tid, {"name": name}))
    yield b"]}"


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def _metadata(name: str, tid: int, args: dict) -> dict:
    return {"ph": "M", "name": name, "pid": PID, "tid": tid, "args": args}


def _micros(nanos: int, origin: int) -> float:
    return (nanos - origin) / 1000


def _step_event(placed: Placed, origin: int, tracks: _Tracks) -> dict:
    step = placed.step
    end = placed.end_ns if placed.end_ns is not None else placed.start_ns
    tid = tracks.place(step.pk, step.parent_id, placed.start_ns, max(end, placed.start_ns))
    args = {"key": step.key, "status": step.status, "type": step.type}
    if step.error:
        args["error"] = step.error[:1000]
    if placed.estimated:
        args["times_estimated"] = True
    return {
        "ph": "X",
        "name": step.name or step.key,
        "cat": step.status,
        "ts": _micros(placed.start_ns, origin),
        "dur": max(end - placed.start_ns, 0) / 1000,
        "pid": PID,
        "tid": tid,
        "args": args,
    }


def _run_event(run: Run, start: int | None, end: int | None, origin: int, unplaced: int) -> dict:
    start = origin if start is None else start
    args: dict[str, Any] = {"format": run.format, "status": run.status, "run_id": run.pk}
    if run.times_estimated:
        args["times_estimated"] = True
    if unplaced:
        args["steps_without_times"] = unplaced
    return {
        "ph": "X",
        "name": run.name or run.external_id,
        "cat": "run",
        "ts": _micros(start, origin),
        "dur": max((end if end is not None else start) - start, 0) / 1000,
        "pid": PID,
        "tid": RUN_TRACK,
        "args": args,
    }


class _Tracks:
    """Assigns each event a track on which events nest properly: a track holds a
    stack of the events still open at the last start placed on it."""

    def __init__(self):
        self.count = FIRST_STEP_TRACK
        self.track_of: dict[int, int] = {}
        # per track: last start placed, and the open events as (step id, end)
        self.last_start: dict[int, int] = {}
        self.open: dict[int, list[tuple[int, int]]] = {FIRST_STEP_TRACK: []}

    def place(self, step_id: int, parent_id: int | None, start: int, end: int) -> int:
        tid = self.track_of.get(parent_id, FIRST_STEP_TRACK) if parent_id else FIRST_STEP_TRACK
        if not self._fits(tid, parent_id, start, end):
            self.count += 1
            tid = self.count
            self.open[tid] = []
        stack = self.open[tid]
        stack.append((step_id, end))
        self.last_start[tid] = start
        self.track_of[step_id] = tid
        return tid

    def _fits(self, tid: int, parent_id: int | None, start: int, end: int) -> bool:
        if start < self.last_start.get(tid, start):
            return False
        stack = self.open[tid]
        while stack and stack[-1][1] <= start and stack[-1][0] != parent_id:
            stack.pop()
        if not stack:
            return True
        top_id, top_end = stack[-1]
        # A root step never nests in another; a child only directly in its parent.
        return end <= top_end and top_id == parent_id
