"""Every read model against its recount after the odd write paths a review of issue 13
tried: a re-sync that changes a failure's cause or time, or clears one of a run's
failures; links and subjects gone on re-sync; prune by age; a run deleted by another
writer while an ingest that read it earlier rewrites it."""

import sqlite3
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.test_read_model_causes import assert_read_model_is_the_recount as causes_exact
from tests.test_read_model_causes import change_source
from tests.test_read_model_entities import assert_read_model_is_the_recount as entities_exact
from tests.test_read_model_loops import assert_read_model_is_the_recount as loops_exact
from tests.test_read_model_runs import assert_read_models_are_the_recount as runs_exact
from tests.test_read_model_trends import assert_read_models_are_the_recount as trends_exact
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.models import EntityCounter, FailureCause, Run, Step

pytestmark = pytest.mark.django_db

UPDATED = "2026-03-04T09:00:00.000Z"
# The runs sample's run with two failures ("batch upsert failed", "duplicate key ...").
TWO_FAILURES = "01KJPSJ1XKGDYK4D7957SSQ9FR"


def all_exact():
    runs_exact()
    causes_exact()
    entities_exact()
    trends_exact()
    loops_exact()


def _failed_steps(runs_db, run_id: str) -> list[str]:
    conn = sqlite3.connect(runs_db)
    rows = conn.execute(
        "SELECT id FROM steps WHERE run_id = ? AND status = 'failed' ORDER BY step_index",
        (run_id,),
    ).fetchall()
    conn.close()
    return [row[0] for row in rows]


def _touch_run(run_id: str):
    return ("UPDATE runs SET updated_at = ? WHERE id = ?", (UPDATED, run_id))


def test_a_resync_that_changes_a_failures_cause_moves_it(runs_db):
    ingest_paths([runs_db])
    first, _second = _failed_steps(runs_db, TWO_FAILURES)
    change_source(
        runs_db,
        ("UPDATE steps SET error = 'disk full on volume 7' WHERE id = ?", (first,)),
        _touch_run(TWO_FAILURES),
    )
    assert len(ingest_paths([runs_db]).run_ids()) == 1
    all_exact()
    assert Step.objects.get(key=first).error_cause == "disk full on volume <n>"
    assert not FailureCause.objects.filter(cause__startswith="batch upsert failed").exists()


def test_a_resync_with_fewer_failures_keeps_the_others_and_their_bounds(runs_db):
    ingest_paths([runs_db])
    _first, second = _failed_steps(runs_db, TWO_FAILURES)
    change_source(
        runs_db,
        ("UPDATE steps SET status = 'completed', error = NULL WHERE id = ?", (second,)),
        _touch_run(TWO_FAILURES),
    )
    assert len(ingest_paths([runs_db]).run_ids()) == 1
    all_exact()
    assert Run.objects.get(external_id=TWO_FAILURES).steps_failed == 1


def test_a_resync_that_moves_a_failure_to_another_day_moves_its_day(runs_db):
    ingest_paths([runs_db])
    first, _second = _failed_steps(runs_db, TWO_FAILURES)
    change_source(
        runs_db,
        ("UPDATE steps SET started_at = '2026-02-27T23:59:59.999Z' WHERE id = ?", (first,)),
        _touch_run(TWO_FAILURES),
    )
    assert len(ingest_paths([runs_db]).run_ids()) == 1
    all_exact()


def test_a_resync_that_removes_an_entitys_only_link_and_a_subject_drops_it(runs_db):
    ingest_paths([runs_db])
    conn = sqlite3.connect(runs_db)
    link_id, run_id = conn.execute(
        "SELECT l.id, s.run_id FROM step_links l JOIN steps s ON s.id = l.step_id "
        "WHERE l.entity_type = 'stripe_page' AND l.entity_id = 'page_4'"
    ).fetchone()
    subject, subject_run = conn.execute(
        "SELECT id, run_id FROM steps WHERE entity_type IS NOT NULL AND run_id IS NOT NULL "
        "ORDER BY id LIMIT 1"
    ).fetchone()
    conn.close()
    assert EntityCounter.objects.filter(entity_type="stripe_page", entity_id="page_4").exists()
    change_source(
        runs_db,
        ("DELETE FROM step_links WHERE id = ?", (link_id,)),
        ("UPDATE steps SET entity_type = NULL, entity_id = NULL WHERE id = ?", (subject,)),
        _touch_run(run_id),
        _touch_run(subject_run),
    )
    ingest_paths([runs_db])
    all_exact()
    assert not EntityCounter.objects.filter(entity_type="stripe_page", entity_id="page_4").exists()


def test_prune_by_age_takes_the_old_runs_off_every_read_model(samples):
    ingest_paths([samples])
    starts = sorted(Run.objects.exclude(started_at=None).values_list("started_at", flat=True))
    middle = starts[len(starts) // 2]
    days = (timezone.now() - middle).days
    kept_before = Run.objects.filter(started_at__gte=timezone.now() - timedelta(days=days)).count()
    assert 0 < kept_before < Run.objects.count()
    call_command("prune", "--older-than", f"{days}d", "--batch-size", "3")
    assert Run.objects.count() >= kept_before > 0
    all_exact()


def test_a_run_deleted_by_another_writer_after_an_ingest_read_it(runs_db, monkeypatch):
    """A re-sync looks a database's stored runs up once (RunIndex caches them for the
    whole file, across its commits); another writer (the delete button, prune) deletes
    one of them, then the re-sync reaches that run, changed in its source. What the
    deleter took off must not be taken off again."""
    ingest_paths([runs_db])
    target = Run.objects.get(external_id=TWO_FAILURES)
    change_source(
        runs_db,
        ("UPDATE steps SET error = 'disk full on volume 7' WHERE run_id = ?", (TWO_FAILURES,)),
        _touch_run(TWO_FAILURES),
    )
    deleted = []
    looked_up = store.RunIndex.get

    def get_then_deleted(index, format, origin, external_id):
        run = looked_up(index, format, origin, external_id)
        if run is not None and run.pk == target.pk and Run.objects.filter(pk=run.pk).exists():
            store.delete_runs([run.pk])  # as another writer would, committed before us
            deleted.append(run.pk)
        return run

    monkeypatch.setattr(store.RunIndex, "get", get_then_deleted)
    ingest_paths([runs_db])
    assert deleted == [target.pk]
    all_exact()


def test_the_moved_failure_is_dated_as_the_source_says(runs_db):
    """Sanity of the day test above: the moved failure's read-model day is its new one."""
    ingest_paths([runs_db])
    first, _second = _failed_steps(runs_db, TWO_FAILURES)
    change_source(
        runs_db,
        ("UPDATE steps SET started_at = '2026-02-27T23:59:59.999Z' WHERE id = ?", (first,)),
        _touch_run(TWO_FAILURES),
    )
    ingest_paths([runs_db])
    day = datetime(2026, 2, 27).date()
    assert FailureCause.objects.filter(day=day, count=1).exists()
