"""The failure causes read models (FailureCause, FailureSlice) against a recount of the Step table,
after every way the store writes or deletes steps: ingest, re-sync, the delete
button, prune and a source that mirrors its writer's deletions."""

import sqlite3
from datetime import UTC

import pytest
from django.core.management import call_command
from django.db.models import Count, Max, Min
from django.db.models.functions import Coalesce, TruncDate
from django.urls import reverse

from traces.causes import NO_DAY, NO_MESSAGE, NO_SLOT, as_utc, error_cause, failure_day
from traces.ingest import failure_counts, store
from traces.ingest.loader import ingest_paths
from traces.models import FailureCause, FailureSlice, Run, Step, TraceSource

pytestmark = pytest.mark.django_db


def recount() -> dict:
    """FailureCause as it should be: the failed steps (not synthetic: as the steps page
    counts them) grouped by cause, UTC day of their time, run format and run type."""
    time = Coalesce("started_at", "run__started_at")
    rows = (
        Step.objects.filter(status="failed", synthetic=False)
        .values("error_cause", "run__format", "run__type", day=TruncDate(time, tzinfo=UTC))
        .annotate(n=Count("id"), first=Min(time), last=Max(time))
    )
    # A failure without a time is counted on NO_DAY, which is also the day of one at
    # 0001-01-01: their rows add up.
    counted: dict = {}
    for r in rows:
        key = (r["error_cause"], r["day"] or NO_DAY, r["run__format"], r["run__type"])
        count, first, last = counted.get(key, (0, None, None))
        times = [t for t in (first, r["first"]) if t is not None]
        first = min(times, default=None)
        last = max((t for t in (last, r["last"]) if t is not None), default=None)
        counted[key] = (count + r["n"], first, last)
    return counted


def stored() -> dict:
    return {
        (c.cause, c.day, c.format, c.run_type): (c.count, c.first_seen, c.last_seen)
        for c in FailureCause.objects.all()
    }


def recount_slices() -> dict:
    """FailureSlice as it should be, counted in Python from each failed step: its
    cause, the 10-minute UTC slot of its time, its run's format and type, and the
    first 100 characters of its name."""
    slices: dict = {}
    failed = Step.objects.filter(status="failed", synthetic=False).select_related("run")
    for step in failed:
        moment = step.started_at or step.run.started_at
        if moment is None:
            slot = NO_SLOT
        else:
            moment = as_utc(moment)
            slot = moment.replace(minute=moment.minute // 10 * 10, second=0, microsecond=0)
        key = (step.error_cause, slot, step.run.format, step.run.type, step.name[:100])
        count, first, last = slices.get(key, (0, moment, moment))
        if moment is not None:
            first, last = min(first, moment), max(last, moment)
        slices[key] = (count + 1, first, last)
    return slices


def stored_slices() -> dict:
    return {
        (c.cause, c.slot, c.format, c.run_type, c.step_name): (c.count, c.first_seen, c.last_seen)
        for c in FailureSlice.objects.all()
    }


def assert_read_model_is_the_recount():
    assert stored() == recount()
    assert stored_slices() == recount_slices()
    assert not FailureCause.objects.filter(count__lte=0).exists()
    assert not FailureSlice.objects.filter(count__lte=0).exists()
    # Every failed step has its cause, and no other step has one; and its time, as
    # the read models date it (its start, else its run's), which the list ranges by.
    # Whether that time is an estimate: its run's times are (the failing-now strip
    # counts those apart).
    steps = Step.objects.select_related("run").only(
        "status", "error", "error_cause", "started_at", "failed_at", "failed_at_estimated",
        "run__started_at", "run__times_estimated",
    )  # fmt: skip
    for step in steps:
        failed = step.status == "failed"
        expected = error_cause(step.error) if failed else ""
        assert step.error_cause == expected, step.pk
        failed_at = (step.started_at or step.run.started_at) if failed else None
        assert step.failed_at == failed_at, step.pk
        assert step.failed_at_estimated == (step.run.times_estimated if failed else None), step.pk


def change_source(path, *statements) -> None:
    conn = sqlite3.connect(path)
    for statement, params in statements:
        conn.execute(statement, params)
    conn.commit()
    conn.close()


def delete_source_runs(path, run_ids: list[str]) -> None:
    marks = ", ".join("?" * len(run_ids))
    steps = f"SELECT id FROM steps WHERE run_id IN ({marks})"
    change_source(
        path,
        (f"DELETE FROM step_links WHERE step_id IN ({steps})", run_ids),
        (f"DELETE FROM calls WHERE step_id IN ({steps})", run_ids),
        (f"DELETE FROM steps WHERE run_id IN ({marks})", run_ids),
        (f"DELETE FROM runs WHERE id IN ({marks})", run_ids),
    )


def runs_with_failures(format: str = "runs") -> list[Run]:
    return list(Run.objects.filter(format=format, steps_failed__gt=0).order_by("started_at"))


def test_ingest_of_the_samples_counts_every_failure(samples):
    assert ingest_paths([samples]).failed == []
    assert_read_model_is_the_recount()
    counted = sum(count for count, _first, _last in stored().values())
    assert counted == Step.objects.filter(status="failed", synthetic=False).count() > 10


def test_the_failed_at_backfill_gives_what_ingest_stores(samples):
    """The migration's fill (0032) of a store written before failed_at: failed steps
    only, each at its start or its run's (greentic steps have no start)."""
    ingest_paths([samples])
    stored_at = dict(Step.objects.values_list("pk", "failed_at"))
    assert Step.objects.filter(status="failed", started_at=None, failed_at__isnull=False).exists()
    Step.objects.update(failed_at=None)
    failure_counts.fill_failed_at()
    assert dict(Step.objects.values_list("pk", "failed_at")) == stored_at
    assert_read_model_is_the_recount()


def test_the_failed_at_estimated_backfill_gives_what_ingest_stores(samples):
    """The migration's fill (0033) of a store written before failed_at_estimated: the
    failed steps only, each with its run's Run.times_estimated (greentic's True)."""
    ingest_paths([samples])
    stored = dict(Step.objects.values_list("pk", "failed_at_estimated"))
    assert set(stored.values()) == {None, False, True}
    Step.objects.update(failed_at_estimated=None)
    failure_counts.fill_failed_at_estimated()
    assert dict(Step.objects.values_list("pk", "failed_at_estimated")) == stored
    assert_read_model_is_the_recount()


def test_ingesting_the_same_files_again_changes_nothing(samples):
    ingest_paths([samples])
    before = stored()
    ingest_paths([samples])
    assert stored() == before


def test_a_resync_of_a_run_with_a_new_failure_moves_its_counts(runs_db):
    ingest_paths([runs_db])
    step_id, run_id = (
        sqlite3.connect(runs_db)
        .execute("SELECT id, run_id FROM steps WHERE status = 'completed' ORDER BY id LIMIT 1")
        .fetchone()
    )
    change_source(
        runs_db,
        (
            "UPDATE steps SET status = 'failed', error = 'quota exceeded for tenant 42', "
            "updated_at = '2026-03-04T09:00:00.000Z' WHERE id = ?",
            (step_id,),
        ),
        ("UPDATE runs SET updated_at = '2026-03-04T09:00:00.000Z' WHERE id = ?", (run_id,)),
    )
    report = ingest_paths([runs_db])
    assert report.failed == [] and len(report.run_ids()) == 1
    assert Step.objects.get(key=step_id).error_cause == "quota exceeded for tenant <n>"
    assert_read_model_is_the_recount()
    assert "quota exceeded for tenant <n>" in {key[0] for key in stored()}


def test_a_resync_that_clears_a_failure_takes_it_off(runs_db):
    ingest_paths([runs_db])
    run = runs_with_failures()[0]
    change_source(
        runs_db,
        (
            "UPDATE steps SET status = 'completed', error = NULL, "
            "updated_at = '2026-03-04T09:00:00.000Z' WHERE run_id = ? AND status = 'failed'",
            (run.external_id,),
        ),
        (
            "UPDATE runs SET updated_at = '2026-03-04T09:00:00.000Z' WHERE id = ?",
            (run.external_id,),
        ),
    )
    assert ingest_paths([runs_db]).run_ids() == [run.pk]
    assert_read_model_is_the_recount()


def test_the_delete_button_takes_the_runs_failures_off(client, samples):
    ingest_paths([samples])
    run = runs_with_failures("duckflux")[0]
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code in (302, 303)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert_read_model_is_the_recount()


def test_deleting_every_run_empties_the_read_model(samples):
    ingest_paths([samples])
    store.delete_runs(list(Run.objects.values_list("pk", flat=True)))
    assert not FailureCause.objects.exists()


def test_deleting_one_of_two_failures_of_a_day_keeps_the_others_bounds(samples):
    ingest_paths([samples])
    for run in Run.objects.filter(steps_failed__gt=0).order_by("pk")[::2]:
        store.delete_runs([run.pk])
        assert_read_model_is_the_recount()


def test_prune_takes_the_pruned_runs_failures_off(runs_db):
    ingest_paths([runs_db])
    gone = runs_with_failures()[:2]
    delete_source_runs(runs_db, [run.external_id for run in gone])
    ingest_paths([runs_db])  # kept, marked as having left their source
    assert_read_model_is_the_recount()
    call_command("prune", "--left-source")
    assert not Run.objects.filter(pk__in=[run.pk for run in gone]).exists()
    assert_read_model_is_the_recount()


def test_a_source_that_mirrors_deletions_takes_their_failures_off(runs_db):
    source = TraceSource.objects.create(path=str(runs_db.parent), mirror_deletions=True)
    ingest_paths([runs_db], source=source)
    gone = runs_with_failures()[:2]
    before = sum(count for count, _first, _last in stored().values())
    delete_source_runs(runs_db, [run.external_id for run in gone])
    ingest_paths([runs_db], source=source)
    assert not Run.objects.filter(pk__in=[run.pk for run in gone]).exists()
    assert_read_model_is_the_recount()
    assert sum(count for count, _first, _last in stored().values()) < before


def test_a_failure_without_a_message_or_a_time_is_counted_on_no_day():
    assert error_cause("") == NO_MESSAGE
    assert failure_day(None) == NO_DAY
