"""A run deleted (the delete button, prune) while a re-sync rewrites it, on PostgreSQL,
where the two transactions run at once: each locks the run's row (store.stored_runs)
before it reads what the run adds to the read models, so what the run counted is taken
off once, by whoever locked it first."""

import threading
import time

import pytest
from django.db import connection, transaction

from tests.test_read_model_causes import change_source
from tests.test_read_model_hostile import TWO_FAILURES, all_exact
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_delete_whose_children_are_gone_when_a_resync_reads_the_run(runs_db, monkeypatch):
    """The deleter has deleted the run's steps, links and logs, not yet its row, nor
    committed; the re-sync of that run (changed in its source) starts then. Without the
    lock, the re-sync read the deleter's steps as still there (not committed), took their
    failures and links off the read models a second time, and wrote the run again."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite has one writer)")
    ingest_paths([runs_db])
    target = Run.objects.get(external_id=TWO_FAILURES)
    change_source(
        runs_db,
        ("UPDATE steps SET error = 'disk full on volume 7' WHERE run_id = ?", (TWO_FAILURES,)),
        ("UPDATE runs SET updated_at = '2026-03-04T09:00:00.000Z' WHERE id = ?", (TWO_FAILURES,)),
    )
    children_gone, go, errors = threading.Event(), threading.Event(), []
    counts_of = store.run_counts_of
    deleter = None

    def paused(run_ids):  # between the children's DELETE and the run's, in the deleter
        if threading.current_thread() is deleter:
            children_gone.set()
            go.wait(10)
        return counts_of(run_ids)

    monkeypatch.setattr(store, "run_counts_of", paused)

    def delete():
        try:
            with transaction.atomic():
                store.delete_runs([target.pk])
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    waited = []

    def release_once_the_resync_waits():
        """The deleter goes on once the re-sync waits on a lock it holds (or after 10 s)."""
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not waited:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                    if cursor.fetchone()[0]:
                        waited.append(True)
                time.sleep(0.02)
        finally:
            go.set()
            connection.close()

    deleter = threading.Thread(target=delete)
    deleter.start()
    assert children_gone.wait(10)
    releaser = threading.Thread(target=release_once_the_resync_waits)
    releaser.start()
    report = ingest_paths([runs_db])
    deleter.join(20)
    releaser.join(20)
    assert errors == [] and not deleter.is_alive()
    assert waited, "the re-sync never waited for the deleter"
    assert report.failed == []
    all_exact()
    assert not Run.objects.filter(pk=target.pk).exists()
    assert Run.objects.filter(external_id=TWO_FAILURES).count() == 1  # written as a new run
