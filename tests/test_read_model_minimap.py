"""The minimap read model (RunMinimap: a big run's sampled and failed step starts)
against a recount from the Step table with the page's own queries, after every way
the store writes or deletes runs; and the timeline's minimap the same with it as
without it, in fewer queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.read_models import end_running_run, migrated_from, runs_gone_from_source
from traces.ingest import minimaps
from traces.ingest.loader import ingest_paths
from traces.models import Run, RunMinimap
from traces.queries import timeline

pytestmark = pytest.mark.django_db

# The samples' runs are small: a sample of a few steps makes most of them "big".
SAMPLE = 5


@pytest.fixture(autouse=True)
def small_sample(monkeypatch):
    monkeypatch.setattr(timeline, "MINIMAP_SAMPLE", SAMPLE)


def recount() -> dict:
    """Each run of more than a sample's steps: (its step count, its sampled starts sorted,
    its failed starts), read from its steps as the page reads them without a row."""
    big = timeline.MINIMAP_SAMPLE
    runs = Run.objects.filter(step_count__gt=big).values_list("pk", "step_count")
    return {
        pk: (count, sorted(timeline.sampled_starts(pk, count)), timeline.failed_starts(pk))
        for pk, count in runs
    }


def stored() -> dict:
    return {
        row.run_id: (row.step_count, sorted(row.starts), row.failed)
        for row in RunMinimap.objects.all()
    }


def assert_read_model_is_the_recount() -> dict:
    expected, got = recount(), stored()
    assert got == expected
    return got


def test_ingest_keeps_the_big_runs_starts(samples):
    assert ingest_paths([samples]).failed == []
    got = assert_read_model_is_the_recount()
    assert len(got) >= 5
    # Sampled: SAMPLE steps of each (those with a start); some runs' failed steps.
    assert all(len(starts) <= SAMPLE for _, starts, _ in got.values())
    assert any(starts for _, starts, _ in got.values())
    assert any(failed for _, _, failed in got.values())
    small = Run.objects.filter(step_count__lte=SAMPLE).values_list("pk", flat=True)
    assert not RunMinimap.objects.filter(run_id__in=list(small)).exists()


def test_the_failed_starts_are_capped_as_the_page_reads_them(samples, monkeypatch):
    monkeypatch.setattr(timeline, "MINIMAP_FAILED", 1)
    ingest_paths([samples])
    got = assert_read_model_is_the_recount()
    assert max(len(failed) for _, _, failed in got.values()) == 2  # the cap and one more


def test_ingesting_the_same_files_again_changes_nothing(samples):
    ingest_paths([samples])
    before = stored()
    ingest_paths([samples])
    assert stored() == before


def test_a_resync_reads_the_run_again(runs_db, monkeypatch):
    monkeypatch.setattr(timeline, "MINIMAP_SAMPLE", 1)  # the running run is small
    ingest_paths([runs_db])
    run = Run.objects.get(format="runs", status="running")
    before = stored()[run.pk]
    end_running_run(runs_db, run, new_type="other")
    got = assert_read_model_is_the_recount()
    assert got[run.pk][2] != before[2]  # its running steps failed: more failed starts


def test_the_delete_button_takes_the_row_off(client, samples):
    ingest_paths([samples])
    run = Run.objects.get(pk=RunMinimap.objects.values_list("run_id", flat=True).first())
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code in (302, 303)
    assert not RunMinimap.objects.filter(run_id=run.pk).exists()
    assert_read_model_is_the_recount()


@pytest.mark.parametrize("mirrored", [False, True], ids=["kept then pruned", "mirrored"])
def test_runs_gone_from_their_source_are_taken_off(runs_db, mirrored):
    gone = runs_gone_from_source(runs_db, mirrored=mirrored, check=assert_read_model_is_the_recount)
    assert not RunMinimap.objects.filter(run_id__in=gone).exists()


def test_the_timeline_s_minimap_is_the_same_from_the_row_in_fewer_queries(client, samples):
    ingest_paths([samples])
    run = Run.objects.filter(step_count__gt=SAMPLE, status="failed").order_by("pk").first()
    assert RunMinimap.objects.filter(run=run).exists()
    url = reverse("traces:run-timeline", args=[run.pk])

    def timeline_html() -> tuple[str, int]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, headers={"HX-Request": "true"})
        assert response.status_code == 200
        return response.content.decode(), len(captured)

    from_row, with_row = timeline_html()
    assert "data-minimap" in from_row and "mm-failed" in from_row
    RunMinimap.objects.filter(run=run).delete()
    from_steps, without_row = timeline_html()
    assert from_row == from_steps
    # One row read; without it, that look-up, the sample and the failed steps.
    assert with_row == without_row - 2
    # A row drawn for another step count (the run written since) is not used.
    minimaps.store([(run.pk, run.step_count)])
    RunMinimap.objects.filter(run=run).update(step_count=run.step_count + 1, starts=[], failed=[])
    assert timeline_html() == (from_steps, without_row)


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_read_model_from_the_stored_runs(samples):
    ingest_paths([samples])
    expected = recount()
    with migrated_from("0041_loglevel"):
        pass
    assert stored() == expected
