"""The minimap read model (RunMinimap), kept by the store in the same transaction
as the Step rows it samples.

The timeline's minimap of a run of more than MINIMAP_SAMPLE steps reads the starts
of MINIMAP_SAMPLE steps spread over the run's seq (a thousand index probes) and of
its failed steps. A run's steps do not change once written, so the store reads them
once, when the transaction that wrote the run ends (`RunMinimaps.add`, then `apply`
in RunIndex.settle), with the page's own queries (queries.timeline.sampled_starts,
failed_starts: the same floats), and keeps them in one row; a run rewritten or
deleted loses its row with its steps (store.delete_run_children).
"""

from __future__ import annotations

from django.db import connection

from traces.models import Run, RunMinimap
from traces.queries import timeline
from traces.queries.timeline import failed_starts, sampled_starts

_TABLE = RunMinimap._meta.db_table


class RunMinimaps:
    """The runs a transaction wrote whose minimap is read when it ends."""

    def __init__(self):
        self.written: dict[int, int] = {}

    def add(self, run_id: int, step_count: int) -> None:
        """A run written with this many steps: kept when it has more than a sample."""
        if step_count > timeline.MINIMAP_SAMPLE:
            self.written[run_id] = step_count
        else:
            self.written.pop(run_id, None)

    def apply(self) -> None:
        """Read the written runs' starts and store them (their old rows go first)."""
        written = sorted(self.written.items())
        self.written.clear()
        store(written)


def big() -> int:
    """A run of more steps than this has a row."""
    return timeline.MINIMAP_SAMPLE


# The runs that have a row (one %s: big()), with their step counts, in id order.
BIG_RUNS_SQL = f"SELECT id, step_count FROM {Run._meta.db_table} WHERE step_count > %s ORDER BY id"


def starts_of(run_id: int, step_count: int) -> tuple[list[float], list[float]]:
    """A run's row's sampled and failed starts, read from its steps."""
    return sampled_starts(run_id, step_count), failed_starts(run_id)


def store(runs: list[tuple[int, int]]) -> None:
    """The RunMinimap rows of these (run id, step count), read from their steps."""
    if not runs:
        return
    rows = [
        RunMinimap(run_id=run_id, step_count=step_count, starts=starts, failed=failed)
        for run_id, step_count in runs
        for starts, failed in [starts_of(run_id, step_count)]
    ]
    run_ids = [run_id for run_id, _ in runs]
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_TABLE} WHERE run_id IN ({placeholders})", run_ids)
    RunMinimap.objects.bulk_create(rows)


def rebuild() -> None:
    """Every stored run's row, read again from its steps (the migration that adds the
    read model; a recount)."""
    RunMinimap.objects.all().delete()
    runs = Run.objects.filter(step_count__gt=timeline.MINIMAP_SAMPLE).order_by("pk")
    store(list(runs.values_list("pk", "step_count")))
