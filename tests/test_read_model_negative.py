"""A read model row a bug subtracted from twice: its count goes below 0 and the row
stays (every apply deletes only rows at exactly 0), so a recount sees it (the tests'
and `manage.py check_read_models`), and the pages that read it still answer."""

from datetime import timedelta

import pytest
from django.urls import reverse

from tests.factories import BASE_TIME
from traces.ingest import read_models, store
from traces.ingest.read_models import ReadModelDeltas
from traces.ingest.records import LinkRecord, RunRecord, StepRecord
from traces.models import (
    EntityCounter,
    EntityTypeCounter,
    FailureCause,
    FailureSlice,
    Run,
    RunCount,
    TypeBucket,
    TypeStep,
)

pytestmark = pytest.mark.django_db


def _record(external_id: str, run_type: str) -> RunRecord:
    record = RunRecord(
        format="otlp", external_id=external_id, status="failed", type=run_type,
        started_at=BASE_TIME, finished_at=BASE_TIME + timedelta(seconds=3), duration_ms=3000,
    )  # fmt: skip
    record.steps = [
        StepRecord(
            key="1",
            name="charge",
            status="failed",
            error="card declined",
            started_at=BASE_TIME,
            entity_type="invoice",
            entity_id="inv_1",
        )
    ]
    record.links = [LinkRecord(step_key="1", link_type="input", entity_type="customer",
                               entity_id="cus_1")]  # fmt: skip
    return record


@pytest.fixture
def subtracted_twice(monkeypatch):
    """A run of its own type (every key of its rows its alone), and another one; the
    first deleted by a store whose apply takes the deltas off twice."""
    store.write_run(_record("lone", "lone-type"), source_file=None, origin="")
    other = store.write_run(_record("other", "other-type"), source_file=None, origin="")
    delete_subtracting_twice(monkeypatch, "lone")
    return Run.objects.get(pk=other.run_id)


def delete_subtracting_twice(monkeypatch, external_id: str) -> None:
    apply = ReadModelDeltas.apply

    def twice(self):
        copy = ReadModelDeltas()
        copy.merge(self)
        self.merge(copy)
        apply(self)

    monkeypatch.setattr(read_models.ReadModelDeltas, "apply", twice)
    store.delete_runs([Run.objects.get(external_id=external_id).pk])
    monkeypatch.undo()


def test_a_count_taken_below_zero_keeps_its_row(subtracted_twice):
    assert list(RunCount.objects.filter(run_type="lone-type").values_list("count", flat=True)) == [
        -1
    ]
    assert list(
        FailureCause.objects.filter(run_type="lone-type").values_list("count", flat=True)
    ) == [-1]
    assert list(
        FailureSlice.objects.filter(run_type="lone-type").values_list("count", flat=True)
    ) == [-1]
    assert list(
        TypeBucket.objects.filter(run_type="lone-type").values_list("count", flat=True)
    ) == [-1]
    assert list(TypeStep.objects.filter(run_type="lone-type").values_list("steps", "failed")) == [
        (-1, -1)
    ]
    # The entities both runs link to: 2 - 2 * 1 = 0, every figure 0, so the rows go:
    # a recount finds them missing (the other run still counts 1).
    assert not EntityCounter.objects.exists()
    assert not EntityTypeCounter.objects.exists()


def test_an_entity_subtracted_twice_keeps_its_negative_figures(monkeypatch):
    store.write_run(_record("lone", "lone-type"), source_file=None, origin="")
    delete_subtracting_twice(monkeypatch, "lone")
    assert set(EntityCounter.objects.values_list("entity_type", "links", "subjects", "runs")) == {
        ("customer", -1, 0, -1),
        ("invoice", 0, -1, -1),
    }
    assert set(EntityTypeCounter.objects.values_list("entity_type", "links", "subjects")) == {
        ("customer", -1, 0),
        ("invoice", 0, -1),
    }


def test_pages_that_read_a_negative_row_answer(client, subtracted_twice):
    other = subtracted_twice
    urls = [
        reverse("traces:run-list"),
        reverse("traces:type-list"),
        reverse("traces:type-detail", args=["lone-type"]),
        reverse("traces:type-detail", args=["other-type"]),
        reverse("traces:entity-list"),
        "/steps/?status=failed",
        "/api/steps/errors",
        reverse("traces:run-detail", args=[other.pk]),
        reverse("traces:run-type-compare", args=[other.pk]),
    ]
    # The other run's type with a succeeded bucket below 0: the comparison with its runs.
    TypeBucket.objects.filter(run_type="other-type").update(count=-3, status="succeeded")
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_pages_that_read_a_negative_entity_answer(client, monkeypatch):
    """The entity counters a double subtraction left below 0 (customer: -1 link, -1
    run; invoice: -1 subject step): the entities list (its type filter too), each
    entity's page and the API still answer."""
    store.write_run(_record("lone", "lone-type"), source_file=None, origin="")
    delete_subtracting_twice(monkeypatch, "lone")
    assert EntityCounter.objects.filter(runs__lt=0).count() == 2
    urls = [
        reverse("traces:entity-list"),
        reverse("traces:entity-list") + "?type=customer",
        reverse("traces:entity-detail", args=["customer", "cus_1"]),
        reverse("traces:entity-detail", args=["invoice", "inv_1"]),
        "/api/entities",
        "/api/entities?type=customer",
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url
