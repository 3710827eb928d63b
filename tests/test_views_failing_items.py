"""A run whose steps' items failed reaches the failing-now strip on `/`, whatever its
own status and its steps': counted as failed items (and the runs holding them),
apart from failed runs and failed steps, each number a link to the runs it counts.
The strip reads Run.steps_items_failed, kept at ingest with the run's row: checked
here against a recount of the steps after ingest, re-sync, delete and prune."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_runs
from tests.read_models import end_running_run, runs_gone_from_source
from tests.test_query_plans import plan_steps
from tests.test_read_model_causes import change_source
from traces import queries
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step
from traces.queries.failing import failing_now

pytestmark = pytest.mark.django_db

URL = reverse("traces:run-list")


def strip_now() -> timezone.datetime:
    """A clock a minute after the newest run start: every run of the samples' day
    is in the strip's 24 h, the newest in its hour."""
    return Run.objects.aggregate(newest=Max("started_at"))["newest"] + timedelta(minutes=1)


def recount(now) -> dict:
    """By run type and whether its times are estimated: (failed runs, runs with failed
    items, failed items) in the last hour and day, counted from the Run statuses and
    the Step rows themselves."""
    counted: dict[tuple[str, bool], list[int]] = {}
    for window, since in ((0, now - timedelta(hours=1)), (1, now - timedelta(hours=24))):
        for run in Run.objects.filter(started_at__gte=since):
            items = sum(step.items_failed or 0 for step in run.steps.filter(synthetic=False))
            row = counted.setdefault((run.type, run.times_estimated), [0] * 6)
            row[window] += run.status == "failed"
            row[2 + window] += items > 0
            row[4 + window] += items
    return {run_type: tuple(row) for run_type, row in counted.items() if any(row)}


def stored(now) -> dict:
    """As recount(): the strip's rows, and apart their runs of estimated times."""
    return {
        (row.run_type, estimated): (
            part.last_hour,
            part.last_day,
            part.item_runs_hour,
            part.item_runs_day,
            part.items_hour,
            part.items_day,
        )
        for row in failing_now(now).types
        for estimated, part in ((False, row), (True, row.estimated))
        if part.any
    }


def assert_strip_is_the_recount(now=None):
    now = now or strip_now()
    assert stored(now) == recount(now)


def succeeded_with_failed_items() -> Run:
    return Run.objects.get(format="runs", status="succeeded", type="sync_stripe")


def test_a_succeeded_run_with_failed_items_counts_in_the_strip(runs_db):
    ingest_paths([runs_db])
    run = succeeded_with_failed_items()
    assert run.steps_items_failed == 2 and run.steps_failed == 0
    now = strip_now()
    assert_strip_is_the_recount(now)
    (sync,) = [row for row in failing_now(now).types if row.run_type == "sync_stripe"]
    # Its failed run and the runs with failed items (the succeeded one among them).
    assert sync.last_day == 1
    assert sync.item_runs_day == 3 and sync.items_day == 2 + 53 + 4
    failing = failing_now(now)
    assert failing.has_items and failing.items_last_day == 59


def test_a_type_whose_runs_only_lost_items_is_listed_and_links_its_runs(client, runs_db):
    ingest_paths([runs_db])
    run = succeeded_with_failed_items()
    Run.objects.exclude(pk=run.pk).update(started_at=timezone.now() - timedelta(days=3))
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=10))
    failing = client.get(URL).context["failing"]
    assert [(t.run_type, t.last_day, t.item_runs_hour, t.items_hour) for t in failing.types] == [
        ("sync_stripe", 0, 1, 2)
    ]
    assert not failing.quiet
    html = " ".join(client.get(URL).content.decode().split())
    assert "Failed items, last 1 h" in html
    link = f'href="{URL}?type=sync_stripe&amp;status=items&amp;since=1h">✗ 2 items'
    assert link in html and "in 1 run</span>" in html
    # Failed runs and failed steps are said apart: none of either.
    assert '<td class="num"><span class="muted">0</span></td>' in html
    assert "No step failed in the last 24 h." in html
    assert "Failed items, inside steps whatever their own status:" in html
    # The link lists exactly the run it counts.
    listed = client.get(URL, {"type": "sync_stripe", "status": "items", "since": "1h"})
    assert [r.pk for r in listed.context["page"].items] == [run.pk]
    assert "1 run" in " ".join(listed.content.decode().split())


def test_without_failed_items_the_strip_has_no_items_columns(client):
    from tests.factories import make_runs

    (run,) = make_runs(1, status="failed", type="nightly")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now())
    html = client.get(URL).content.decode()
    assert "Failed runs, last 1 h" in html and "Failed items" not in html


def test_failed_runs_without_a_timed_failed_step_say_why_no_step_is_counted(client):
    """The strip must not read "3 failed runs" over "no step failed" unexplained (a
    source may fail a run on its own; a step without a start fails on its run's time)."""
    from tests.factories import make_runs

    (run,) = make_runs(1, status="failed", type="nightly")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now())
    Step.objects.filter(run=run).update(status="succeeded")
    html = " ".join(client.get(URL).content.decode().split())
    assert 'status=failed&amp;since=24h">✗ 1</a>' in html
    assert (
        "No step failed in the last 24 h: the failed runs above have no failed step (the "
        "source marked them failed)." in html
    )


def test_the_runs_list_filter_of_failed_items_counts_its_runs(client, samples):
    ingest_paths([samples])
    response = client.get(URL, {"status": "items"})
    expected = Run.objects.filter(steps_items_failed__gt=0)
    assert {r.pk for r in response.context["page"].items} == set(
        expected.values_list("pk", flat=True)
    )
    assert response.context["summary"]["total"] == expected.count() >= 3


def test_ingesting_again_changes_nothing(samples):
    ingest_paths([samples])
    now = strip_now()
    before = stored(now)
    ingest_paths([samples])
    assert stored(now) == before == recount(now)


def test_a_resync_that_changes_a_runs_failed_items_moves_them(runs_db):
    ingest_paths([runs_db])
    run = succeeded_with_failed_items()
    now = strip_now()
    change_source(
        runs_db,
        (
            "UPDATE steps SET items_failed = 9 WHERE run_id = ? AND items_failed = 2",
            (run.external_id,),
        ),
        (
            "UPDATE runs SET updated_at = '2026-03-05T00:00:00.000Z' WHERE id = ?",
            (run.external_id,),
        ),
    )
    ingest_paths([runs_db])
    run.refresh_from_db()
    assert run.steps_items_failed == 9
    assert_strip_is_the_recount(now)
    # And items that are no longer failed take the run off.
    change_source(
        runs_db,
        ("UPDATE steps SET items_failed = 0 WHERE run_id = ?", (run.external_id,)),
        (
            "UPDATE runs SET updated_at = '2026-03-06T00:00:00.000Z' WHERE id = ?",
            (run.external_id,),
        ),
    )
    ingest_paths([runs_db])
    assert_strip_is_the_recount(now)
    (sync,) = [row for row in failing_now(now).types if row.run_type == "sync_stripe"]
    assert sync.item_runs_day == 2


def test_a_running_run_that_ends_failed_moves_to_its_new_type(runs_db):
    ingest_paths([runs_db])
    now = strip_now()
    running = Run.objects.get(format="runs", status="running")
    end_running_run(runs_db, running, new_type="sync_stripe_v2")
    assert_strip_is_the_recount(now)
    assert stored(now)[("sync_stripe_v2", False)][1] == 1


@pytest.mark.parametrize("mirrored", [True, False])
def test_runs_deleted_or_pruned_leave_the_strip(runs_db, mirrored):
    gone = runs_gone_from_source(runs_db, mirrored=mirrored, check=assert_strip_is_the_recount)
    assert gone and not Step.objects.filter(run_id__in=gone).exists()


def test_the_delete_button_takes_a_runs_items_off(client, runs_db):
    ingest_paths([runs_db])
    now = strip_now()
    run = succeeded_with_failed_items()
    before = stored(now)[("sync_stripe", False)]
    client.post(reverse("traces:run-delete", args=[run.pk]))
    after = stored(now)[("sync_stripe", False)]
    # Runs with failed items and their items in the last 24 h: one run and 2 items fewer.
    assert (after[3], after[5]) == (before[3] - 1, before[5] - 2)
    assert_strip_is_the_recount(now)


def test_the_strip_reads_two_index_ranges_of_runs():
    now = timezone.now()
    # A store of 40 days of runs in 20 types, a few failed or with failed items lately,
    # planned with statistics as a real one is (PostgreSQL): on an empty table any index
    # is as cheap as another.
    runs = make_runs(4000)
    for index, run in enumerate(runs):
        run.started_at = now - timedelta(minutes=15 * index)
        run.type = f"type {index % 20}"
        run.status = "failed" if index % 100 == 7 else "succeeded"
        run.steps_items_failed = 3 if index % 100 == 11 else 0
    Run.objects.bulk_update(runs, ["started_at", "type", "status", "steps_items_failed"])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE traces_run")
    statements = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    # (Not test_query_plans.plans_of: PostgreSQL's union starts with a parenthesis.)
    with connection.execute_wrapper(record):
        queries.failing.failing_types(now - timedelta(hours=1), now - timedelta(days=1))
    ((sql, params),) = statements
    steps = plan_steps(sql, params, dear=("sort", "incremental_sort", "seqscan"))
    text = " ".join(steps)
    # Failed runs by (status, start), runs with failed items by the partial index.
    assert "run_status_started" in text and "run_items_failed_started" in text, steps
    assert "SCAN traces_run" not in text and "Seq Scan" not in text
