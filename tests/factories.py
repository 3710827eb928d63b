"""Bulk test data made with the ORM: many runs and steps without any trace file."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from traces.ingest import entity_counts
from traces.models import Run, Step

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
    return Run.objects.bulk_create(runs)


def make_steps(
    run: Run, count: int, *, status: str = "succeeded", parent: Step | None = None, start: int = 0
) -> list[Step]:
    steps = [
        Step(
            run=run,
            parent=parent,
            key=f"{parent.key if parent else 's'}.{start + index}",
            seq=start + index + 1,
            position=start + index,
            depth=(parent.depth + 1) if parent else 0,
            name=f"step {start + index}",
            type="exec",
            status=status,
            raw_status=status,
            started_at=BASE_TIME + timedelta(seconds=start + index),
            duration_ms=100.0,
            failed_subtree=status == "failed",
        )
        for index in range(count)
    ]
    return Step.objects.bulk_create(steps)


def count_entities() -> None:
    """The entities read model (and the times it orders by) for links and subject
    steps made here; the store keeps it on ingest."""
    entity_counts.rebuild()
