"""Which container a duckflux step ran in (FORMATS.md §6).

A step is written when it ends, so files list steps in completion order, and
there is no parent pointer: nesting is inferred from `seq`, times, completion
order and `loopIndex`. Only a `Skeleton` of each step is kept for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from ..records import StepRecord

CONTAINER_TYPES = frozenset({"loop", "parallel", "if"})


class Skeleton(NamedTuple):
    """What nesting needs of a step: kept for every step, unlike its payloads."""

    seq: int
    type: str
    started_at: datetime | None
    finished_at: datetime | None
    loop_index: int | None
    completion_index: int


def steps_in_seq_order(
    skeletons: list[Skeleton], load_step: Callable[[int], StepRecord]
) -> Iterator[StepRecord]:
    parents = infer_parents(skeletons)
    for skeleton in sorted(skeletons, key=lambda s: s.seq):
        record = load_step(skeleton.completion_index)
        parent = parents[skeleton.seq]
        record.parent_key = None if parent is None else str(parent)
        yield record


def infer_parents(skeletons: Iterable[Skeleton]) -> dict[int, int | None]:
    """seq -> the seq of the container the step ran in (FORMATS.md §6).

    Walks the steps in start order with the containers still open; a step's
    parent is the latest-started open container that can hold it. Containers
    are only dropped once they ended before the step started: with parallel
    branches the container on top need not be the one a step belongs to.
    """
    parents: dict[int, int | None] = {}
    open_containers: list[Skeleton] = []
    for step in sorted(skeletons, key=lambda s: s.seq):
        open_containers = [c for c in open_containers if not _ended_before(c, step)]
        parent = next((c for c in reversed(open_containers) if _can_hold(c, step)), None)
        parents[step.seq] = None if parent is None else parent.seq
        if step.type in CONTAINER_TYPES:
            open_containers.append(step)
    return parents


def _ended_before(container: Skeleton, step: Skeleton) -> bool:
    if container.finished_at is None or step.started_at is None:
        return False
    return container.finished_at < step.started_at


def _can_hold(container: Skeleton, step: Skeleton) -> bool:
    # A container is written when it ends, after everything inside it: this
    # settles the millisecond ties between a container's end and the next step.
    if step.completion_index > container.completion_index:
        return False
    if not _within(container, step):
        return False
    # loopIndex is the innermost loop's iteration, set on everything inside a
    # loop (a loop step itself carries its outer loop's index).
    if step.loop_index is None:
        return container.type != "loop" and container.loop_index is None
    if container.type == "loop":
        return True
    return container.loop_index == step.loop_index


def _within(container: Skeleton, step: Skeleton) -> bool:
    if container.started_at and step.started_at and step.started_at < container.started_at:
        return False
    return not (
        container.finished_at and step.finished_at and step.finished_at > container.finished_at
    )
