"""The model's own rules: a run's stale-ness, per instance and per query; a log line
written through the ORM takes its step's name (LogEntry.step_name)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import make_runs, make_steps
from traces.models import LogEntry, Run, Step

pytestmark = pytest.mark.django_db


def test_stale_runs_are_the_runs_that_say_they_are_stale(settings):
    settings.TRACER_STALE_AFTER = timedelta(minutes=10)
    now = timezone.now()
    quiet = {"quiet": now - timedelta(minutes=11), "recent": now - timedelta(minutes=9)}
    for name, written in quiet.items():
        for status in ("running", "succeeded"):
            (run,) = make_runs(1, status=status, name=f"{name} {status}")
            Run.objects.filter(pk=run.pk).update(source_updated_at=written)
    make_runs(1, status="running", name="never written")
    stale = sorted(Run.objects.stale().values_list("name", flat=True))
    assert stale == ["quiet running"]
    assert stale == sorted(run.name for run in Run.objects.all() if run.is_stale)


# --- LogEntry.step_name (StepNameField) -----------------------------------------------------


@pytest.fixture
def two_steps() -> tuple[Run, Step, Step]:
    (run,) = make_runs(1)
    first, second = make_steps(run, 2)
    return run, first, second


def _exact(*lines: LogEntry) -> list[str]:
    """The lines' step_name as stored, each checked against its step's name as stored
    ('' without a step), in memory too."""
    steps = dict(Step.objects.values_list("pk", "name"))
    stored = {
        pk: (step_id, name)
        for pk, step_id, name in LogEntry.objects.values_list("pk", "step_id", "step_name")
    }
    for line in lines:
        step_id, name = stored[line.pk]
        assert name == steps.get(step_id, "") == line.step_name, (line.pk, name)
    return [stored[line.pk][1] for line in lines]


def test_a_line_saved_with_its_step_loaded_takes_its_name_without_a_query(
    two_steps, django_assert_num_queries
):
    run, first, second = two_steps
    with django_assert_num_queries(1):  # the INSERT
        line = LogEntry.objects.create(run=run, step=first, seq=1, step_name="stale")
    with django_assert_num_queries(1):
        lines = LogEntry.objects.bulk_create(
            [LogEntry(run=run, step=step, seq=2 + i) for i, step in enumerate((first, second))]
        )
    with django_assert_num_queries(1):
        bare = LogEntry.objects.create(run=run, step=None, seq=4, step_name="stale")
    assert _exact(line, *lines, bare) == ["step 0", "step 0", "step 1", ""]
    read = LogEntry.objects.select_related("step").get(pk=line.pk)
    read.step = second
    with django_assert_num_queries(1):  # the UPDATE
        read.save()
    assert _exact(read) == ["step 1"]


def test_a_line_read_from_the_database_is_saved_again_without_a_query(
    two_steps, django_assert_num_queries
):
    run, first, _ = two_steps
    LogEntry.objects.create(run=run, step=first, seq=1)
    line = LogEntry.objects.get()
    line.step_name = "changed by hand"
    line.message = "edited"
    with django_assert_num_queries(1):  # the UPDATE: the name it was read with
        line.save()
    assert _exact(line) == ["step 0"]
    line.step = None
    with django_assert_num_queries(1):
        line.save()
    assert _exact(line) == [""]


def test_a_line_given_its_step_id_alone_reads_its_steps_name_once(
    two_steps, django_assert_num_queries
):
    run, first, second = two_steps
    with django_assert_num_queries(2):  # the step's name, the INSERT
        line = LogEntry.objects.create(run=run, step_id=first.pk, seq=1, step_name="wrong")
    with django_assert_num_queries(1):  # known now
        line.save()
    assert _exact(line) == ["step 0"]
    line = LogEntry.objects.get(pk=line.pk)
    line.step_id = second.pk  # another step than the one it was read with
    with django_assert_num_queries(2):
        line.save()
    assert _exact(line) == ["step 1"]
    # A step without a name: known once read, not read again at each save.
    Step.objects.filter(pk=first.pk).update(name="")
    line.step_id = first.pk
    with django_assert_num_queries(2):
        line.save()
    with django_assert_num_queries(1):
        line.save()
    assert _exact(line) == [""]


def test_a_line_read_without_its_step_name_reads_its_steps(two_steps, django_assert_num_queries):
    run, first, _ = two_steps
    LogEntry.objects.create(run=run, step=first, seq=1)
    line = LogEntry.objects.only("pk", "run", "step", "seq").get()
    with django_assert_num_queries(1):  # only the fields it was read with: not the name
        line.save()
    line.step_name = "wrong"
    with django_assert_num_queries(2):  # asked to save it: its step's, read
        line.save(update_fields=["step_name"])
    assert _exact(line) == ["step 0"]
