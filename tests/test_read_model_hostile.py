"""Every read model against its recount after the odd write paths a review of issue 13
tried: a re-sync that changes a failure's cause or time, or clears one of a run's
failures; links and subjects gone on re-sync; prune by age; a run deleted by another
writer while an ingest that read it earlier rewrites it."""

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from tests.factories import BASE_TIME
from tests.test_read_model_causes import assert_read_model_is_the_recount as causes_exact
from tests.test_read_model_causes import change_source
from tests.test_read_model_entities import assert_read_model_is_the_recount as entities_exact
from tests.test_read_model_loops import assert_read_model_is_the_recount as loops_exact
from tests.test_read_model_runs import assert_read_models_are_the_recount as runs_exact
from tests.test_read_model_trends import assert_read_models_are_the_recount as trends_exact
from traces.ingest import recount, store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import LinkRecord, RunRecord, StepRecord
from traces.models import Call, EntityCounter, EntityLink, FailureCause, LogEntry, Run, Step

pytestmark = pytest.mark.django_db

UPDATED = "2026-03-04T09:00:00.000Z"
# The runs sample's run with two failures ("batch upsert failed", "duplicate key ...").
TWO_FAILURES = "01KJPSJ1XKGDYK4D7957SSQ9FR"


STEP_STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")


def run_summaries_exact():
    """Each run's own counts of its rows (steps by status, not the synthetic ones, as
    the source has them; calls, links, log lines), as its rows stand."""
    real = Q(steps__synthetic=False)
    figures = {f"steps_{status}": Count("steps", filter=real & Q(steps__status=status))
               for status in STEP_STATUSES}  # fmt: skip
    counted = {
        run.pk: run
        for run in Run.objects.annotate(
            steps_=Count("steps", filter=real),
            **{f"{name}_": count for name, count in figures.items()},
        )
    }
    for name, model in (("call_count", Call), ("link_count", EntityLink), ("log_count", LogEntry)):
        rows = dict(model.objects.values_list("run").annotate(n=Count("id")).order_by())
        assert {pk: getattr(run, name) for pk, run in counted.items()} == {
            pk: rows.get(pk, 0) for pk in counted
        }, name
    for run in counted.values():
        assert run.step_count == run.steps_, run.pk
        for name in figures:
            assert getattr(run, name) == getattr(run, f"{name}_"), (run.pk, name)


def all_exact():
    runs_exact()
    run_summaries_exact()
    causes_exact()
    entities_exact()
    trends_exact()
    loops_exact()
    # The app's recount (manage.py check_read_models) finds nothing either.
    assert [d.read_model.name for d in recount.check() if d] == []


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


def _resync_one_failure(runs_db, which: int, change: str) -> str:
    """The runs sample in, then one of TWO_FAILURES' failed steps changed by `change`
    (SQL of the step, by id) and the run read again; every read model checked."""
    ingest_paths([runs_db])
    step = _failed_steps(runs_db, TWO_FAILURES)[which]
    change_source(runs_db, (change, (step,)), _touch_run(TWO_FAILURES))
    assert len(ingest_paths([runs_db]).run_ids()) == 1
    all_exact()
    return step


def test_a_resync_that_changes_a_failures_cause_moves_it(runs_db):
    changed = "UPDATE steps SET error = 'disk full on volume 7' WHERE id = ?"
    step = _resync_one_failure(runs_db, 0, changed)
    assert Step.objects.get(key=step).error_cause == "disk full on volume <n>"
    assert not FailureCause.objects.filter(cause__startswith="batch upsert failed").exists()


def test_a_resync_with_fewer_failures_keeps_the_others_and_their_bounds(runs_db):
    cleared = "UPDATE steps SET status = 'completed', error = NULL WHERE id = ?"
    _resync_one_failure(runs_db, 1, cleared)
    assert Run.objects.get(external_id=TWO_FAILURES).steps_failed == 1


def test_a_resync_that_moves_a_failure_to_another_day_moves_its_day(runs_db):
    moved = "UPDATE steps SET started_at = '2026-02-27T23:59:59.999Z' WHERE id = ?"
    _resync_one_failure(runs_db, 0, moved)
    assert FailureCause.objects.filter(day=datetime(2026, 2, 27).date(), count=1).exists()


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


def test_a_resync_that_moves_a_failed_runs_type_and_start_moves_its_failures(runs_db):
    """The run's type is in FailureCause's key, and a step without a start of its own is
    dated by its run's (failures, links and subjects alike)."""
    ingest_paths([runs_db])
    change_source(
        runs_db,
        ("UPDATE steps SET started_at = NULL WHERE run_id = ?", (TWO_FAILURES,)),
        (
            "UPDATE runs SET run_type = 'renamed', started_at = '2026-02-01T00:00:00.000Z' "
            "WHERE id = ?",
            (TWO_FAILURES,),
        ),
        _touch_run(TWO_FAILURES),
    )
    assert len(ingest_paths([runs_db]).run_ids()) == 1
    all_exact()
    assert set(FailureCause.objects.filter(run_type="renamed").values_list("day", flat=True)) == {
        datetime(2026, 2, 1).date()
    }


def test_a_run_given_twice_in_one_transaction_is_counted_once_as_last_written():
    """A file that repeats a run (duplicate rows), the second copy with fewer failures,
    another cause and other links: counted as the second."""
    index = store.RunIndex()
    first, second = _hostile_record("twice", 1), _hostile_record("twice", 2)
    second.steps = second.steps[:9]
    for record in (first, second):
        store.write_run(record, source_file=None, origin="", index=index)
    index.settle()
    all_exact()
    assert Run.objects.get(external_id="twice").step_count == 9


# --- odd values, written, rewritten and deleted ------------------------------------------------

HOSTILE_NAMES = [None, "", "a\x00b", "名" * 150, "x" * 5000, "\U0001f600" * 120, "a\u202eb", " "]
HOSTILE_ERRORS = ["", "\x00", "boom\x00 42 at 0x7ff", "名" * 3000, None, "E" * 10]
HOSTILE_TIMES = [
    None,
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 3, 0, 9, 59, 999999, tzinfo=timezone.get_fixed_timezone(-720)),
]


def _hostile_record(external_id: str, seed: int, *, run_start=BASE_TIME) -> RunRecord:
    record = RunRecord(
        format="otlp", external_id=external_id, status="failed", type="t\x00" * 80,
        started_at=run_start,
    )  # fmt: skip
    record.steps = [
        StepRecord(
            key=str(i),
            name=HOSTILE_NAMES[(i + seed) % len(HOSTILE_NAMES)],
            status="failed" if (i + seed) % 3 else "succeeded",
            error=HOSTILE_ERRORS[(i + seed) % len(HOSTILE_ERRORS)],
            started_at=HOSTILE_TIMES[(i * 7 + seed) % len(HOSTILE_TIMES)],
            entity_type=["", "acc\x00t", "a" * 300][i % 3],
            entity_id=["x", "名" * 400, ""][(i + seed) % 3],
        )
        for i in range(24)
    ]
    record.links = [
        LinkRecord(
            step_key=str(i),
            link_type=["input", "output", "weird", ""][i % 4],
            entity_type=["customer", "c\x00", "t" * 300][i % 3],
            entity_id=["cus_1", "", "名" * 400, "cus_1"][(i + seed) % 4],
            created_at=HOSTILE_TIMES[(i + seed) % len(HOSTILE_TIMES)],
        )
        for i in range(0, 24, 2)
    ]
    return record


def test_hostile_failures_and_links_are_taken_off_as_they_were_counted():
    """Names, messages, times and entity keys the store cleans (NUL, over-long, in
    other offsets, at the ends of the calendar): what a run is counted under at
    ingest is what its deletion and its rewrite take off."""
    for index in range(4):
        store.write_run(_hostile_record(f"h{index}", index), source_file=None, origin="")
    store.write_run(_hostile_record("h-none", 5, run_start=None), source_file=None, origin="")
    all_exact()
    store.write_run(_hostile_record("h0", 2), source_file=None, origin="")  # rewritten
    all_exact()
    store.delete_runs(list(Run.objects.order_by("pk").values_list("pk", flat=True))[::2])
    all_exact()
    store.delete_runs(list(Run.objects.values_list("pk", flat=True)))
    assert not FailureCause.objects.exists() and not EntityCounter.objects.exists()


# --- the admin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["step", "call", "entitylink", "logentry"])
def test_the_admin_cannot_change_or_delete_what_the_read_models_count(admin_client, samples, model):
    """Steps, calls, links and log lines are written by the store alone, which keeps the
    read models (causes, entity counters, the runs' summaries, the search index) with
    them, as runs are (RunAdmin): the admin shows them and changes or deletes none."""
    ingest_paths([samples])
    rows = {
        "step": Step.objects.filter(status="failed", entity_type__gt=""),
        "call": Call.objects.all(),
        "entitylink": EntityLink.objects.all(),
        "logentry": LogEntry.objects.all(),
    }[model]
    row = rows.order_by("pk").first()
    assert admin_client.get(reverse(f"admin:traces_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:traces_{model}_add")).status_code == 403
    change = reverse(f"admin:traces_{model}_change", args=[row.pk])
    assert admin_client.get(change).status_code == 200  # seen
    assert admin_client.post(change, {"status": "succeeded"}).status_code == 403
    delete = admin_client.post(
        reverse(f"admin:traces_{model}_delete", args=[row.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    selected = admin_client.post(
        reverse(f"admin:traces_{model}_changelist"),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert selected.status_code in (200, 302, 403)
    assert rows.model.objects.filter(pk=row.pk).exists()
    all_exact()


def test_the_admins_run_delete_pages_say_the_rows_in_counts_without_reading_them(
    admin_client, samples, django_assert_max_num_queries
):
    """The confirmation pages (one run, the changelist's action) count a run's rows from
    its own summary, not by loading each row as Django's collector would."""
    ingest_paths([samples])
    run = Run.objects.order_by("-step_count").first()
    assert run.step_count > 10
    with django_assert_max_num_queries(8):
        page = admin_client.get(reverse("admin:traces_run_delete", args=[run.pk]))
    assert page.status_code == 200
    assert f"Steps: {run.step_count}" in page.content.decode()
    action = admin_client.post(
        reverse("admin:traces_run_changelist"),
        {"action": "delete_selected", "_selected_action": [run.pk]},
    )
    assert action.status_code == 200 and b"Are you sure" in action.content
    assert Run.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 12, 0, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC),
    ],
    ids=["last instant", "last day", "first day"],
)
def test_failures_at_the_calendars_ends_are_shown_with_their_sparklines(client, when):
    """The causes box draws a failure on the calendar's last day (a "no end" sentinel):
    its axis has no bucket after it, which ended the failed-steps page in a 500."""
    record = RunRecord(format="otlp", external_id="ends", status="failed", started_at=BASE_TIME)
    record.steps = [StepRecord(key="1", name="n", status="failed", error="boom", started_at=when)]
    store.write_run(record, source_file=None, origin="")
    for url in ("/steps/?status=failed", "/steps/?status=failed&q=boom", "/api/steps/errors"):
        assert client.get(url).status_code == 200, url
    all_exact()


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999500, tzinfo=UTC),
        datetime(9999, 12, 31, 12, 0, tzinfo=UTC),
    ],
    ids=["last instant", "last millisecond rounded up", "last day"],
)
def test_the_causes_box_grouping_the_steps_dates_a_failure_as_the_read_model(when):
    """A filter the read models cannot answer (a message) groups the failed steps
    themselves, by the read model's day: exact to the calendar's last instant (SQLite's
    date() rounds to milliseconds, and past 9999-12-31 23:59:59.9995 gives NULL: the
    failure had no day, so no sparkline)."""
    from traces.queries import errors

    record = RunRecord(format="otlp", external_id="ends", status="failed", started_at=BASE_TIME)
    record.steps = [StepRecord(key="1", name="n", status="failed", error="boom", started_at=when)]
    store.write_run(record, source_file=None, origin="")
    assert errors.groups_source({"error": "boom"}) == errors.STEPS
    assert errors.groups_source({}) == errors.DAYS
    from_steps = errors.failure_groups({"error": "boom"}, details=False).groups
    from_read_model = errors.failure_groups({}, details=False).groups
    assert [group.days for group in from_steps] == [{when.date(): 1}]
    assert [group.days for group in from_steps] == [group.days for group in from_read_model]
    assert from_steps[0].first_seen == from_steps[0].last_seen == when
