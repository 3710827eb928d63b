"""The trends read models (TypeBucket: runs by type, hour, status and duration bin;
TypeStep: a type's steps by day and name) against a recount of the Run and Step
tables, after every way the store writes or deletes runs; and the bins' percentile
error bound."""

import math
import random
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.urls import reverse

from tests.factories import BASE_TIME
from tests.read_models import end_running_run, migrated_from, runs_gone_from_source
from traces.ingest import store, type_trends
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.ingest.type_trends import NO_DURATION, bin_value, duration_bin
from traces.models import Run, Step, TypeBucket, TypeStep

pytestmark = pytest.mark.django_db


def recount() -> tuple[dict, dict]:
    """Both read models computed from the rows, in Python."""
    buckets = Counter()
    started = {}
    for run in Run.objects.only("format", "type", "status", "started_at", "duration_ms"):
        started[run.pk] = (run.format, run.type, type_trends.run_day(run.started_at))
        key = (
            run.type,
            type_trends.run_hour(run.started_at),
            run.format,
            run.status,
            duration_bin(run.duration_ms, run.status),
        )
        buckets[key] += 1
    steps = defaultdict(lambda: [0, 0, 0, 0])
    steps_rows = Step.objects.filter(synthetic=False)
    for run_id, name, status, duration in steps_rows.values_list(
        "run_id", "name", "status", "duration_ms"
    ):
        format, run_type, day = started[run_id]
        entry = steps[(run_type, day, format, name[: type_trends.STEP_NAME_MAX])]
        entry[0] += 1
        entry[1] += status == "failed"
        if duration is not None:
            entry[2] += 1
            entry[3] += type_trends.step_us(duration)
    return dict(buckets), {key: tuple(value) for key, value in steps.items()}


def stored() -> tuple[dict, dict]:
    buckets = {
        (b.run_type, b.hour, b.format, b.status, b.bin): b.count for b in TypeBucket.objects.all()
    }
    steps = {
        (s.run_type, s.day, s.format, s.name): (s.steps, s.failed, s.timed, s.total_us)
        for s in TypeStep.objects.all()
    }
    return buckets, steps


def assert_read_models_are_the_recount():
    assert stored() == recount()
    assert not TypeBucket.objects.filter(count__lte=0).exists()
    assert not TypeStep.objects.filter(steps__lte=0).exists()


def test_ingest_of_the_samples_counts_every_run_and_step(samples):
    assert ingest_paths([samples]).failed == []
    assert_read_models_are_the_recount()
    buckets, steps = stored()
    assert sum(buckets.values()) == Run.objects.count() > 10
    assert sum(v[0] for v in steps.values()) == Step.objects.filter(synthetic=False).count()
    assert any(bin != NO_DURATION for (_t, _h, _f, _s, bin) in buckets)


def test_ingesting_the_same_files_again_changes_nothing(samples):
    ingest_paths([samples])
    before = stored()
    ingest_paths([samples])
    assert stored() == before


def test_a_resync_of_a_run_that_ended_moves_its_counts(runs_db):
    ingest_paths([runs_db])
    run = Run.objects.get(format="runs", status="running")
    assert TypeBucket.objects.filter(run_type=run.type, status="running", bin=NO_DURATION).exists()
    end_running_run(runs_db, run, new_type="sync_stripe_v2", duration_ms=1234)
    assert (run.status, run.type) == ("failed", "sync_stripe_v2")
    assert_read_models_are_the_recount()
    moved = TypeBucket.objects.get(run_type="sync_stripe_v2")
    assert (moved.status, moved.count) == ("failed", 1)
    assert TypeStep.objects.filter(run_type="sync_stripe_v2", failed__gt=0).exists()


def test_the_delete_button_takes_the_run_off(client, samples):
    ingest_paths([samples])
    run = Run.objects.filter(format="duckflux").first()
    response = client.post(reverse("traces:run-delete", args=[run.pk]))
    assert response.status_code in (302, 303)
    assert_read_models_are_the_recount()


def test_deleting_every_run_empties_the_read_models(samples):
    ingest_paths([samples])
    store.delete_runs(list(Run.objects.values_list("pk", flat=True)))
    assert not TypeBucket.objects.exists() and not TypeStep.objects.exists()


@pytest.mark.parametrize("mirrored", [False, True], ids=["kept then pruned", "mirrored"])
def test_runs_gone_from_their_source_are_taken_off(runs_db, mirrored):
    runs_gone_from_source(runs_db, mirrored=mirrored, check=assert_read_models_are_the_recount)


def _record(external_id: str, *, status="succeeded", duration=1000.0, steps=3, run_type="t"):
    return RunRecord(
        format="otlp",
        external_id=external_id,
        type=run_type,
        status=status,
        started_at=BASE_TIME,
        duration_ms=duration,
        steps=[
            StepRecord(key=str(i), name=f"step {i % 2}", duration_ms=10.0 * i,
                       status="failed" if i == 0 else "succeeded")
            for i in range(steps)
        ],
    )  # fmt: skip


def test_a_run_given_twice_in_one_transaction_counts_once_as_last_written():
    """A database with duplicate rows: the second write replaces the first before
    the deltas are applied."""
    index = store.RunIndex()
    for record in (_record("a", status="failed", steps=5), _record("a", duration=2e3, steps=2)):
        store.write_run(record, source_file=None, origin="", index=index)
    index.settle()
    assert_read_models_are_the_recount()
    assert list(TypeBucket.objects.values_list("status", "count")) == [("succeeded", 1)]
    assert sum(TypeStep.objects.values_list("steps", flat=True)) == 2


def test_hostile_values_are_counted_without_overflow():
    names = ["x" * 5000, "名" * 300, "", "a\u202eb"]
    for index, duration in enumerate([float("nan"), -5.0, 0.0, 1e308, float("inf"), 1e-9]):
        record = _record(f"h{index}", duration=duration, run_type="t" * 200)
        record.steps = [
            StepRecord(key=str(i), name=names[i % 4], duration_ms=d)
            for i, d in enumerate([1e308, float("inf"), -1.0, None, 0.5])
        ]
        store.write_run(record, source_file=None, origin="")
    assert_read_models_are_the_recount()
    store.delete_runs(list(Run.objects.values_list("pk", flat=True))[:3])
    assert_read_models_are_the_recount()


# --- the bins ------------------------------------------------------------------------------


def test_every_duration_is_within_the_error_bound_of_its_bin():
    rng = random.Random(7)
    for _ in range(20000):
        ms = math.exp(rng.uniform(math.log(type_trends.MIN_MS), math.log(type_trends.MAX_MS)))
        value = bin_value(duration_bin(ms, "succeeded"))
        assert abs(value - ms) / ms <= type_trends.ERROR + 1e-12
    assert type_trends.ERROR < 0.022
    assert duration_bin(None, "succeeded") == duration_bin(5.0, "running") == NO_DURATION
    assert duration_bin(0.0, "failed") == duration_bin(-3.0, "failed")


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_read_models_from_the_stored_runs():
    with migrated_from("0014_ingest_claims") as apps:
        OldRun, OldStep = apps.get_model("traces", "Run"), apps.get_model("traces", "Step")
        runs = [
            OldRun.objects.create(
                format="runs", external_id=str(i), type=kind, status=status, duration_ms=ms,
                started_at=BASE_TIME + timedelta(hours=i),
            )
            for i, (kind, status, ms) in enumerate(
                [("a", "failed", 10.0), ("a", "succeeded", 20.0), ("b", "running", None)]
            )
        ]  # fmt: skip
        for seq in range(1, 4):
            OldStep.objects.create(
                run=runs[0], key=str(seq), seq=seq, position=seq, name="load",
                status="failed" if seq == 1 else "succeeded", duration_ms=seq * 1.5,
            )  # fmt: skip
    assert_read_models_are_the_recount()
    assert TypeBucket.objects.count() == 3
    fields = ("run_type", "name", "steps", "failed", "total_us")
    assert list(TypeStep.objects.values_list(*fields)) == [("a", "load", 3, 1, 9000)]
