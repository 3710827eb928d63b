"""`manage.py check_read_models`: every read model against its recount (one source of
truth, traces/ingest/recount.py), the rows that differ reported (exit status 1), and
`--repair` rewriting them from the recount."""

import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.models import F

from tests.read_models import until_one_waits_on_a_lock
from tests.test_read_model_hostile import _hostile_record, all_exact
from tests.test_read_model_negative import _record, delete_subtracting_twice
from traces.ingest import batches, recount, store
from traces.ingest.loader import ingest_paths
from traces.models import (
    EntityCounter,
    EntityTypeCounter,
    FailureCause,
    FailureSlice,
    Run,
    RunCount,
    StepGroup,
    TypeBucket,
    TypeStep,
)

pytestmark = pytest.mark.django_db

BASE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def check(*args) -> str:
    out = io.StringIO()
    call_command("check_read_models", *args, stdout=out)
    return out.getvalue()


def repair(*args) -> str:
    """--repair's output: it exits 1 when it repaired something (fsck's 'corrected')."""
    out = io.StringIO()
    with pytest.raises(CommandError, match="differed from their recount and were repaired"):
        call_command("check_read_models", "--repair", *args, stdout=out)
    return out.getvalue()


def failing_check(*args) -> str:
    out = io.StringIO()
    with pytest.raises(CommandError, match="differ from their recount") as raised:
        call_command("check_read_models", *args, stdout=out)
    assert raised.value.returncode == 1
    return out.getvalue() + str(raised.value)


@pytest.fixture
def stored(samples, runs_db):
    ingest_paths([samples])
    for index in range(3):
        store.write_run(_hostile_record(f"h{index}", index), source_file=None, origin="")
    for model in (RunCount, FailureCause, FailureSlice, EntityCounter, EntityTypeCounter,
                  TypeBucket, TypeStep, StepGroup):  # fmt: skip
        assert model.objects.exists(), model


def test_a_store_written_by_the_ingest_equals_its_recount(stored):
    out = check()
    assert "every read model equals its recount" in out
    assert out.count(", 0 wrong, 0 missing") == len(recount.READ_MODELS)


def _drift() -> dict[str, str]:
    """One row of each read model made wrong, as a bug or a hand would."""
    cause = FailureCause.objects.order_by("pk").first()
    FailureCause.objects.filter(pk=cause.pk).update(count=cause.count + 1)
    FailureSlice.objects.filter(pk=FailureSlice.objects.order_by("pk").first().pk).delete()
    entity = EntityCounter.objects.order_by("pk").first()
    EntityCounter.objects.filter(pk=entity.pk).update(
        last_seen=entity.last_seen - timedelta(days=1)
    )
    EntityTypeCounter.objects.create(entity_type="ghost", links=0, subjects=-1)
    RunCount.objects.filter(pk=RunCount.objects.order_by("pk").first().pk).update(count=-1)
    run = Run.objects.filter(step_count__gt=0).order_by("pk").first()
    Run.objects.filter(pk=run.pk).update(steps_failed=run.steps_failed + 2, log_count=99)
    TypeBucket.objects.filter(pk=TypeBucket.objects.order_by("pk").first().pk).update(bin=3)
    TypeStep.objects.filter(pk=TypeStep.objects.order_by("pk").first().pk).update(total_us=1)
    group = StepGroup.objects.order_by("pk").first()
    StepGroup.objects.filter(pk=group.pk).update(p95_ms=(group.p95_ms or 0) + 1)
    return {"RunCount": 1, "Run": 1, "FailureCause": 1, "FailureSlice": 0,
            "EntityCounter": 1, "EntityTypeCounter": 1, "TypeBucket": 1, "TypeStep": 1,
            "StepGroup": 1}  # fmt: skip


def test_each_drift_is_reported_then_repaired(stored):
    wrong = _drift()
    out = failing_check()
    differences = {d.read_model.model.__name__: d for d in recount.check()}
    assert {name for name, d in differences.items() if d} == set(wrong)
    for name, n in wrong.items():
        assert len(differences[name].wrong) == n, name
    assert len(differences["FailureSlice"].missing) == 1
    assert "9 read model(s) differ" in out and "- stored (id" in out and "+ recount:" in out
    repaired = repair()
    assert "repaired failure slices (FailureSlice): deleted 0 rows, wrote 1" in repaired
    assert "repaired entity types (EntityTypeCounter): deleted 1 rows, wrote 0" in repaired
    assert "every read model equals its recount" in check()
    assert "every read model equals its recount" in check("--repair")  # exit 0: nothing to do
    all_exact()  # the tests' own recounts agree


def test_only_checks_the_models_named(stored):
    RunCount.objects.update(count=7)
    assert "every read model equals its recount" in check("--only", "FailureCause", "StepGroup")
    out = failing_check("--only", "RunCount")
    assert out.count(" rows, ") == 1


def test_a_double_subtraction_is_found_and_repaired(stored, monkeypatch):
    """What the applies keep visible (a count below 0) the check finds; the repair
    deletes it."""
    store.write_run(_record("lone", "lone-type"), source_file=None, origin="")
    delete_subtracting_twice(monkeypatch, "lone")
    assert RunCount.objects.filter(count__lt=0).exists()
    out = failing_check()
    assert "runs by status (RunCount)" in out
    repair()
    assert not RunCount.objects.filter(count__lt=0).exists()
    assert not FailureCause.objects.filter(count__lt=0).exists()
    assert "every read model equals its recount" in check()
    all_exact()


def test_an_empty_store_equals_its_recount():
    assert "every read model equals its recount" in check()


def test_stored_times_that_drifted_are_reported_then_set_again(stored):
    from traces.models import EntityLink, Step

    failed = Step.objects.filter(status="failed").order_by("pk").first()
    Step.objects.filter(pk=failed.pk).update(failed_at=None, failed_at_estimated=None)
    succeeded = Step.objects.filter(status="succeeded").order_by("pk").first()
    Step.objects.filter(pk=succeeded.pk).update(error_cause="stale cause", failed_at=BASE)
    link = EntityLink.objects.order_by("pk").first()
    EntityLink.objects.filter(pk=link.pk).update(seen_at=BASE)
    subject = Step.objects.exclude(entity_type="").order_by("pk").first()
    Step.objects.filter(pk=subject.pk).update(entity_seen_at=None)
    columns = ("Step.failed_at", "Step.failed_at_estimated", "Step.error_cause",
               "EntityLink.seen_at", "Step.entity_seen_at")  # fmt: skip
    out = failing_check("--only", *columns)
    assert "failure times (Step.failed_at): 2 wrong" in out
    assert "link times (EntityLink.seen_at): 1 wrong" in out
    assert f"- stored (id {succeeded.pk})" in out
    repaired = repair()
    assert "repaired failure times (Step.failed_at): set 2 rows" in repaired
    assert "every read model equals its recount" in check()
    failed.refresh_from_db()
    assert failed.failed_at == (failed.started_at or failed.run.started_at)
    all_exact()


def test_a_log_line_s_step_name_that_drifted_is_reported_then_set_again(stored, monkeypatch):
    """LogEntry.step_name, the key the log search matches a step name by: a line whose
    name is not its step's (a writer that left it empty) is found, and the repair
    sets it, index and all: the search by that name finds the line again (through
    the index's key: a name's few lines are read by their step_id instead)."""
    from traces.models import LogEntry
    from traces.search import logs
    from traces.search.logs import search_logs

    monkeypatch.setattr(logs, "NAMED_LINES", 0)

    line = LogEntry.objects.filter(step__isnull=False).select_related("step").order_by("pk")[0]
    word = next(w for w in line.message.split() if w.isalnum())
    name = line.step.name
    unstepped = LogEntry.objects.filter(step__isnull=True).order_by("pk").first()
    LogEntry.objects.filter(pk=line.pk).update(step_name="")
    if unstepped is not None:
        LogEntry.objects.filter(pk=unstepped.pk).update(step_name="ghost")
    assert line.pk not in [hit.pk for hit in search_logs(word, {"step": name}).items]
    out = failing_check("--only", "LogEntry.step_name")
    wrong = 1 + (unstepped is not None)
    assert f"log lines' step names (LogEntry.step_name): {wrong} wrong" in out
    assert f"- stored (id {line.pk}): ('',)" in out
    repaired = repair()
    assert f"repaired log lines' step names (LogEntry.step_name): set {wrong} rows" in repaired
    assert "every read model equals its recount" in check()
    line.refresh_from_db()
    assert line.step_name == name
    assert line.pk in [hit.pk for hit in search_logs(word, {"step": name}).items]
    if unstepped is not None:
        unstepped.refresh_from_db()
        assert unstepped.step_name == ""


def test_timeline_minimaps_that_drifted_are_reported_then_rewritten(samples, monkeypatch):
    """RunMinimap (a big run's sampled and failed starts, keyed by its run): a row
    whose starts lost one, one gone, one left for a run too small to have one; the
    check reports them and the repair writes each again from the run's steps."""
    from tests import test_read_model_minimap as minimap_test
    from traces.models import RunMinimap
    from traces.queries import timeline

    monkeypatch.setattr(timeline, "MINIMAP_SAMPLE", minimap_test.SAMPLE)
    ingest_paths([samples])
    assert "every read model equals its recount" in check("--only", "RunMinimap")
    first, second = RunMinimap.objects.order_by("run_id")[:2]
    RunMinimap.objects.filter(run_id=first.run_id).update(starts=first.starts[1:])
    second.delete()
    small = Run.objects.filter(step_count__lte=minimap_test.SAMPLE).order_by("pk")[0]
    RunMinimap.objects.create(run_id=small.pk, step_count=small.step_count, starts=[1.5])
    out = failing_check("--only", "RunMinimap")
    assert "timeline minimaps (RunMinimap): " in out and ", 2 wrong, 2 missing" in out
    assert f"- stored (id {small.pk}): ({small.pk}, " in out
    # A row's long values cut when shown (a big run's starts: thousands of floats).
    assert max(len(line) for line in out.splitlines()) < 400 and " characters)" in out
    repaired = repair("--only", "RunMinimap")
    assert "repaired timeline minimaps (RunMinimap): deleted 2 rows, wrote 2" in repaired
    assert "every read model equals its recount" in check()
    assert minimap_test.stored() == minimap_test.recount()


@pytest.mark.django_db(transaction=True)
def test_a_repair_keeps_a_deleter_waiting_until_it_has_written(samples, monkeypatch):
    """PostgreSQL: a run deleted while a repair recounts waits for the repair to commit
    (its locks), then takes the run off the repaired counts. Without them, the delete
    committed in between and the repair wrote counts that still had the run."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite's repair holds its write lock)")
    ingest_paths([samples])
    RunCount.objects.update(count=F("count") + 1)  # drifted
    run = Run.objects.order_by("pk").first()
    recounting, go, errors = threading.Event(), threading.Event(), []
    compare = recount.compare
    repairer = None

    def paused(read_model, *args):
        if threading.current_thread() is repairer and not recounting.is_set():
            recounting.set()  # its locks taken
            go.wait(10)
        return compare(read_model, *args)

    monkeypatch.setattr(recount, "compare", paused)

    def in_thread(work):
        def run_it():
            try:
                work()
            except Exception as exc:  # reported by the test
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run_it)

    repairer = in_thread(lambda: recount.repair(["RunCount"]))
    repairer.start()
    assert recounting.wait(10)
    deleter = in_thread(lambda: batches.retried(lambda: store.delete_runs([run.pk])))
    deleter.start()
    with connection.cursor() as cursor:
        waited = until_one_waits_on_a_lock(cursor)
    assert Run.objects.filter(pk=run.pk).exists()  # the deleter waits
    go.set()
    repairer.join(20)
    deleter.join(20)
    assert errors == [] and waited
    assert not Run.objects.filter(pk=run.pk).exists()
    all_exact()


@pytest.mark.django_db(transaction=True)
def test_a_repair_lets_a_writer_that_holds_the_steps_go_first(samples):
    """PostgreSQL: an ingest writes a new run's steps before its run row. A repair that
    took the runs, then waited for the steps, deadlocked with it; it waits LOCK_WAIT at
    most (less than the deadlock timeout), lets go, and takes them again after the
    writer has committed: the writer is never the victim."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once: PostgreSQL (SQLite's repair holds its write lock)")
    ingest_paths([samples])
    RunCount.objects.update(count=F("count") + 1)  # drifted
    run = Run.objects.order_by("pk").first()
    holding, errors, repaired = threading.Event(), [], []

    def writer():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE traces_step IN ROW EXCLUSIVE MODE")  # steps written
                holding.set()
                assert until_one_waits_on_a_lock(cursor)  # the repair, for the steps
                cursor.execute("UPDATE traces_run SET name = 'renamed' WHERE id = %s", [run.pk])
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def repair():
        try:
            repaired.extend(recount.repair(["RunCount"]))
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer), threading.Thread(target=repair)]
    threads[0].start()
    assert holding.wait(10)
    threads[1].start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [len(d.wrong) for d in repaired] == [RunCount.objects.count()]
    assert Run.objects.get(pk=run.pk).name == "renamed"
    all_exact()
