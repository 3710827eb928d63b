"""Scaffolding the read-model tests share (tests/test_read_model_*.py): the runs
sample database changed as its writer would change it, runs gone from their
source, and a migration run over rows written in an older schema."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.test_read_model_causes import change_source, delete_source_runs
from traces.ingest.loader import ingest_paths
from traces.models import Run, TraceSource

ENDED_AT = "2026-03-04T09:00:00.000Z"


def end_running_run(runs_db, run: Run, *, new_type: str, duration_ms: int | None = None):
    """The writer fails the runs sample's running run (its running steps 'killed'),
    gives it another type (and a duration), then the run is read again."""
    duration = "" if duration_ms is None else f"duration_ms = {int(duration_ms)}, "
    change_source(
        runs_db,
        (
            "UPDATE steps SET status = 'failed', error = 'killed', "
            "completed_at = ? WHERE run_id = ? AND status = 'running'",
            (ENDED_AT, run.external_id),
        ),
        (
            f"UPDATE runs SET status = 'failed', run_type = ?, completed_at = ?, {duration}"
            "updated_at = ? WHERE id = ?",
            (new_type, ENDED_AT, ENDED_AT, run.external_id),
        ),
    )
    assert ingest_paths([runs_db]).run_ids() == [run.pk]
    run.refresh_from_db()


def runs_gone_from_source(runs_db, *, mirrored: bool, check: Callable[[], None]) -> list[int]:
    """Two runs deleted from the runs database: kept as history then pruned, or deleted
    at once by a source that mirrors its writer's deletions; `check()` after each
    step. Returns the ids of the runs gone."""
    source = TraceSource.objects.create(path=str(runs_db.parent), mirror_deletions=mirrored)
    ingest_paths([runs_db], source=source)
    gone = [run.pk for run in Run.objects.filter(format="runs").order_by("pk")[:2]]
    delete_source_runs(
        runs_db, list(Run.objects.filter(pk__in=gone).values_list("external_id", flat=True))
    )
    ingest_paths([runs_db], source=source)
    check()
    if not mirrored:
        call_command("prune", "--left-source")
    assert not Run.objects.filter(pk__in=gone).exists()
    check()
    return gone


@contextlib.contextmanager
def migrated_from(migration: str) -> Iterator:
    """The database migrated back to `migration` (a name in the traces app); yields
    that state's apps for the test to write old rows with, then migrates to the leaf.
    Needs `django_db(transaction=True)`."""
    executor = MigrationExecutor(connection)
    executor.migrate([("traces", migration)])
    yield executor.loader.project_state([("traces", migration)]).apps
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("traces"))


def until_one_waits_on_a_lock(cursor, seconds: float = 10) -> bool:
    """PostgreSQL: poll until a session of this database waits on a lock (True), or
    `seconds` pass (False). Clears the statistics snapshot each time, so it also sees
    them from inside a transaction (one view a transaction otherwise)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        if cursor.fetchone()[0]:
            return True
        time.sleep(0.02)
    return False
