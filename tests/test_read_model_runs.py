"""The runs read models against a recount of the Run and Step tables, after every way
the store writes or deletes runs: RunCount (runs by format, type and status: the runs
list's summary and type choices), each run's step time bounds (the time axis of
its timeline) and the range of its step ids (what find in run's lookups are bounded
by)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import BASE_TIME, make_runs
from tests.read_models import end_running_run, migrated_from, runs_gone_from_source
from tests.test_read_model_causes import (
    assert_read_model_is_the_recount as assert_causes_are_the_recount,
)
from tests.test_read_model_minimap import recount as recount_minimaps
from tests.test_read_model_minimap import stored as minimap_rows
from traces import queries
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.models import Run, RunCount

pytestmark = pytest.mark.django_db


def recount() -> dict:
    rows = Run.objects.values_list("format", "type", "status").annotate(n=Count("id")).order_by()
    return {(format, run_type, status): n for format, run_type, status, n in rows}


def stored() -> dict:
    return {(c.format, c.run_type, c.status): c.count for c in RunCount.objects.all()}


def recounted_bounds() -> dict:
    runs = Run.objects.annotate(first=Min("steps__started_at"), last=Max("steps__finished_at"))
    return {pk: (first, last) for pk, first, last in runs.values_list("pk", "first", "last")}


def stored_bounds() -> dict:
    return {
        pk: (first, last)
        for pk, first, last in Run.objects.values_list(
            "pk", "steps_started_at", "steps_finished_at"
        )
    }


def recounted_step_ids() -> dict:
    runs = Run.objects.annotate(low=Min("steps__id"), high=Max("steps__id"))
    return {pk: (low, high) for pk, low, high in runs.values_list("pk", "low", "high")}


def stored_step_ids() -> dict:
    rows = Run.objects.values_list("pk", "step_id_min", "step_id_max")
    return {pk: (low, high) for pk, low, high in rows}


def recounted_failed_items() -> dict:
    real = Q(steps__synthetic=False)
    runs = Run.objects.annotate(items=Coalesce(Sum("steps__items_failed", filter=real), 0))
    return dict(runs.values_list("pk", "items"))


def assert_read_models_are_the_recount():
    assert stored() == recount()
    assert not RunCount.objects.filter(count__lte=0).exists()
    assert stored_bounds() == recounted_bounds()
    assert stored_step_ids() == recounted_step_ids()
    assert dict(Run.objects.values_list("pk", "steps_items_failed")) == recounted_failed_items()
    # The big runs' minimap starts (RunMinimap), read again from their steps.
    assert minimap_rows() == recount_minimaps()


def running_run() -> Run:
    return Run.objects.get(format="runs", status="running")


def test_ingest_of_the_samples_counts_every_run_and_bounds_its_steps(samples):
    assert ingest_paths([samples]).failed == []
    assert_read_models_are_the_recount()
    assert sum(stored().values()) == Run.objects.count() > 10
    bounded = [first for first, _last in stored_bounds().values() if first is not None]
    assert len(bounded) > 10


def test_ingesting_the_same_files_again_changes_nothing(samples):
    ingest_paths([samples])
    before = stored(), stored_bounds()
    ingest_paths([samples])
    assert (stored(), stored_bounds()) == before


def test_a_resync_of_a_run_that_failed_moves_its_count_and_bounds(runs_db):
    ingest_paths([runs_db])
    run = running_run()
    key = ("runs", run.type, "running")
    assert stored()[key] == 1
    end_running_run(runs_db, run, new_type="sync_stripe_v2")
    assert (run.status, run.type) == ("failed", "sync_stripe_v2")
    assert key not in stored()
    assert stored()[("runs", "sync_stripe_v2", "failed")] == 1
    assert run.steps_finished_at.isoformat() == "2026-03-04T09:00:00+00:00"
    assert_read_models_are_the_recount()
    assert "sync_stripe_v2" in queries.runs.run_types()


def test_a_files_runs_are_counted_in_one_statement_before_it_commits(samples):
    """Concurrent ingests hold a counter row only for the end of their transaction."""
    with CaptureQueriesContext(connection) as captured:
        assert ingest_paths([samples / "runs/runs.sqlite"]).failed == []
    statements = [query["sql"] for query in captured]
    upserts = [i for i, sql in enumerate(statements) if "INSERT INTO traces_runcount" in sql]
    assert len(upserts) == 1 and Run.objects.count() == 8
    # (the search index of the steps is written when the file settles: another table)
    step_rows = re.compile(r'INSERT INTO "?traces_step"? ?\(')
    if connection.vendor == "sqlite":  # PostgreSQL copies them (COPY is not captured)
        assert any(step_rows.search(sql) for sql in statements[: upserts[0]])
    assert not any(step_rows.search(sql) for sql in statements[upserts[0] :])
    assert_read_models_are_the_recount()


def test_the_delete_button_takes_the_run_off(client, samples):
    ingest_paths([samples])
    run = Run.objects.filter(format="duckflux").first()
    before = stored()[("duckflux", run.type, run.status)]
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code in (302, 303)
    assert stored().get(("duckflux", run.type, run.status), 0) == before - 1
    assert_read_models_are_the_recount()


def test_the_admin_shows_runs_and_deletes_them_through_the_store(admin_client, samples):
    ingest_paths([samples])
    run, other = Run.objects.filter(steps_failed__gt=0).order_by("pk")[:2]
    assert admin_client.get(reverse("admin:traces_run_add")).status_code == 403
    change = admin_client.post(reverse("admin:traces_run_change", args=[run.pk]), {"status": "x"})
    assert change.status_code == 403
    response = admin_client.post(reverse("admin:traces_run_delete", args=[run.pk]), {"post": "yes"})
    assert response.status_code == 302
    response = admin_client.post(
        reverse("admin:traces_run_changelist"),
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Run.objects.filter(pk__in=[run.pk, other.pk]).exists()
    assert_read_models_are_the_recount()
    assert_causes_are_the_recount()


def test_deleting_every_run_empties_the_counters(samples):
    ingest_paths([samples])
    store.delete_runs(list(Run.objects.values_list("pk", flat=True)))
    assert not RunCount.objects.exists()
    assert queries.runs.run_types() == []


@pytest.mark.parametrize("mirrored", [False, True], ids=["kept then pruned", "mirrored"])
def test_runs_gone_from_their_source_are_taken_off(runs_db, mirrored):
    """Kept as history then pruned, or deleted at once by a source that mirrors its
    writer's deletions."""
    runs_gone_from_source(runs_db, mirrored=mirrored, check=assert_read_models_are_the_recount)
    assert sum(stored().values()) == Run.objects.count() == 8 - 2  # the sample's 8 runs


# --- what reads them ---------------------------------------------------------------------

FILTERS = [
    {},
    {"status": "failed"},
    {"format": "runs"},
    {"type": "sync_stripe"},
    {"format": "runs", "type": "sync_stripe", "status": "succeeded"},
    {"format": "greentic", "type": "no such type"},
    {"status": "stale"},
    {"q": "stripe"},
    {"format": "duckflux", "in_source": "yes"},
    {"since": BASE_TIME - timedelta(days=3650)},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_the_summary_of_a_filtered_list_is_its_runs_counted(samples, filters):
    ingest_paths([samples])
    runs = queries.runs.filter_runs(filters)
    counted = dict(runs.order_by().values_list("status").annotate(n=Count("id")))
    summary = queries.runs.run_status_summary(runs, {**filters, "sort": "-started"})
    assert summary == {"total": sum(counted.values()), **counted}


def test_a_list_filtered_by_what_the_counters_hold_does_not_count_runs(samples):
    ingest_paths([samples])
    for filters in ({}, {"status": "failed", "format": "runs"}, {"type": "sync_stripe"}):
        with CaptureQueriesContext(connection) as captured:
            queries.runs.run_status_summary(queries.runs.filter_runs(filters), filters)
            queries.runs.run_types()
        assert len(captured) == 2
        runs_table = re.compile(rf"\b{Run._meta.db_table}\b")
        assert not any(runs_table.search(query["sql"]) for query in captured), filters


def test_type_choices_are_the_stored_types(samples):
    ingest_paths([samples])
    types = Run.objects.exclude(type="").order_by("type").values_list("type", flat=True)
    assert queries.runs.run_types() == list(types.distinct())


def test_runs_list_queries_do_not_grow_with_runs_or_types(client, django_assert_num_queries):
    make_runs(3)
    # The page, its summary, the type choices, the newest id (new-runs poll), the
    # failing-now strip's two.
    with django_assert_num_queries(6):
        client.get(reverse("traces:run-list"))
    for index in range(20):
        make_runs(5, status="failed", type=f"type {index}")
        make_runs(2, format="traceos", status="running", type=f"type {index}")
    with django_assert_num_queries(7):  # + how many of the running ones are stale
        html = client.get(reverse("traces:run-list")).content.decode()
    assert "143 runs" in html and "100 failed" in html and "type 19" in html


@pytest.mark.parametrize(
    "url, headers",
    [
        ("/runs/{}/timeline/", {"HX-Request": "true"}),  # the tab, as its pages swap it
        ("/runs/{}/timeline/", {}),  # the whole page on the timeline tab
        ("/runs/{}/", {"HX-Request": "true", "HX-Target": "run-header"}),  # the header's poll
        ("/api/runs/{}/timeline", {}),
    ],
)
def test_a_running_runs_page_and_its_polls_read_no_bounds_from_its_steps(
    client, runs_db, url, headers
):
    ingest_paths([runs_db])
    run = running_run()
    assert run.finished_at is None and run.steps_started_at is not None
    Run.objects.filter(pk=run.pk).update(source_updated_at=timezone.now())  # live: it polls
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url.format(run.pk), headers=headers)
    assert response.status_code == 200
    sql = " ".join(query["sql"].upper() for query in captured)
    assert "MIN(" not in sql and "MAX(" not in sql


def test_a_run_without_times_of_its_own_is_laid_on_its_steps_bounds(samples):
    ingest_paths([samples])
    run = Run.objects.filter(status="succeeded", steps_finished_at__isnull=False).first()
    first, last = recounted_bounds()[run.pk]
    run.started_at = run.finished_at = None
    with CaptureQueriesContext(connection) as captured:
        assert queries.timeline.time_axis(run) == (first, last)
    assert len(captured) == 0


def test_a_running_runs_axis_reaches_now(runs_db):
    ingest_paths([runs_db])
    run = running_run()
    run.source_updated_at = timezone.now()
    run.started_at = None
    start, end = queries.timeline.time_axis(run)
    assert start == run.steps_started_at
    assert timezone.now() - end < timedelta(minutes=1)


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_read_models_from_the_stored_runs():
    with migrated_from("0009_failure_causes") as apps:
        OldRun, OldStep = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
        runs = [
            OldRun.objects.create(format="runs", external_id=str(i), type=kind, status=status)
            for i, (kind, status) in enumerate([("a", "failed"), ("a", "failed"), ("b", "running")])
        ]
        for seq in range(1, 4):
            OldStep.objects.create(
                run=runs[0], key=str(seq), seq=seq, position=seq, status="succeeded",
                started_at=BASE_TIME + timedelta(seconds=seq),
                finished_at=BASE_TIME + timedelta(seconds=seq * 10),
            )  # fmt: skip
    assert stored() == {("runs", "a", "failed"): 2, ("runs", "b", "running"): 1}
    assert stored_bounds()[runs[0].pk] == (
        BASE_TIME + timedelta(seconds=1),
        BASE_TIME + timedelta(seconds=30),
    )
    assert stored_bounds()[runs[2].pk] == (None, None)
    # The step ids' range (0035) from the stored steps, NULL for a run without any.
    assert stored_step_ids() == recounted_step_ids()
    assert stored_step_ids()[runs[0].pk][0] is not None
    assert stored_step_ids()[runs[2].pk] == (None, None)
