"""Writers' SQLite databases through the whole ingest path: incremental re-sync,
reading a database another program holds, and bad databases."""

import contextlib
import hashlib
import sqlite3
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from traces.ingest import history
from traces.ingest.loader import ingest_paths
from traces.models import Call, EntityLink, LogEntry, Run, Step, TraceFile, TraceSource

pytestmark = pytest.mark.django_db


def test_runs_sample_counts_progress_and_output_counters(runs_db):
    summary = ingest_paths([runs_db]).summary()
    counts = tuple(summary[name] for name in ("runs", "steps", "calls", "links"))
    assert counts == (8, 31, 33, 37)
    charges = Step.objects.get(name="process_charges", run__status="succeeded")
    assert charges.items_total and charges.items_processed is not None
    assert charges.child_count > 0
    sync = Run.objects.filter(name="sync_stripe", status="succeeded").get()
    assert sync.output_counters and all(
        isinstance(v, int | float) for v in sync.output_counters.values()
    )
    assert Step.objects.filter(run__format="runs", parent__isnull=False).count() == 11
    assert EntityLink.objects.filter(link_type="output", entity_type="transaction").count() == 27


def test_workflow_sample_counts(samples):
    summary = ingest_paths([samples / "workflow"]).summary()
    assert (summary["runs"], summary["steps"], summary["logs"]) == (7, 54, 259)
    assert LogEntry.objects.filter(duplicate=False).count() == 143
    assert Step.objects.filter(run__format="workflow", never_closed=True).count() == 4
    running = Step.objects.filter(run__format="workflow", status="running", synthetic=False)
    assert running.count() == 1


def test_resync_rewrites_only_the_runs_that_changed(runs_db):
    ingest_paths([runs_db])
    before = dict(Run.objects.values_list("external_id", "ingested_at"))
    running = Run.objects.get(status="running")
    conn = sqlite3.connect(runs_db)
    conn.execute(
        "UPDATE runs SET status = 'completed', completed_at = '2026-03-02T09:00:00.000Z', "
        "duration_ms = 1000, updated_at = '2026-03-02T09:00:00.000Z' WHERE id = ?",
        (running.external_id,),
    )
    conn.execute(
        "UPDATE steps SET status = 'completed', updated_at = '2026-03-02T09:00:00.000Z' "
        "WHERE run_id = ? AND status = 'running'",
        (running.external_id,),
    )
    conn.execute("UPDATE calls SET status = 'success', duration_ms = 5 WHERE status = 'running'")
    conn.commit()
    conn.close()
    report = ingest_paths([runs_db])
    assert report.run_ids() == [running.pk]
    running.refresh_from_db()
    assert running.status == "succeeded" and running.steps_running == 0
    after = dict(Run.objects.values_list("external_id", "ingested_at"))
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {running.external_id}
    assert Call.objects.filter(run__format="runs").count() == 33


def test_resync_picks_up_added_rows(runs_db):
    ingest_paths([runs_db])
    conn = sqlite3.connect(runs_db)
    conn.execute(
        "INSERT INTO runs (id, run_type, trigger, actor_type, status, created_at, updated_at) "
        "VALUES ('01NEW', 'export_csv', 'manual', 'user', 'pending', "
        "'2026-03-03T00:00:00.000Z', '2026-03-03T00:00:00.000Z')"
    )
    conn.commit()
    conn.close()
    report = ingest_paths([runs_db])
    assert len(report.files[0].runs_added) == 1 and report.files[0].runs_updated == []
    assert Run.objects.filter(format="runs").count() == 9


def delete_source_runs(path, run_ids: list[str]) -> None:
    """What a writer's retention does: its runs go with their steps, calls and links."""
    marks = ", ".join("?" * len(run_ids))
    steps = f"SELECT id FROM steps WHERE run_id IN ({marks})"
    conn = sqlite3.connect(path)
    conn.execute(f"DELETE FROM step_links WHERE step_id IN ({steps})", run_ids)
    conn.execute(f"DELETE FROM calls WHERE step_id IN ({steps})", run_ids)
    conn.execute(f"DELETE FROM steps WHERE run_id IN ({marks})", run_ids)
    conn.execute(f"DELETE FROM runs WHERE id IN ({marks})", run_ids)
    conn.commit()
    conn.close()


def oldest_runs(count: int) -> list[Run]:
    return list(Run.objects.filter(format="runs", step_count__gt=0).order_by("started_at")[:count])


def test_runs_deleted_by_the_writer_are_kept_marked_and_unchanged(runs_db):
    ingest_paths([runs_db])
    old = oldest_runs(2)
    before = {run.pk: (run.ingested_at, run.step_count, run.call_count) for run in old}
    steps_before = Step.objects.filter(run__in=old).count()
    delete_source_runs(runs_db, [run.external_id for run in old])
    start = timezone.now()
    report = ingest_paths([runs_db])
    assert report.failed == [] and report.run_ids() == []
    assert Run.objects.filter(format="runs").count() == 8
    left = Run.objects.filter(left_source_at__isnull=False)
    assert {run.pk for run in left} == set(before)
    assert all(start <= run.left_source_at <= timezone.now() for run in left)
    after = {run.pk: (run.ingested_at, run.step_count, run.call_count) for run in left}
    assert after == before
    assert Step.objects.filter(run__in=old).count() == steps_before > 0


def test_a_source_that_mirrors_deletions_deletes_the_runs_its_writer_deleted(runs_db):
    source = TraceSource.objects.create(path=str(runs_db.parent), mirror_deletions=True)
    ingest_paths([runs_db], source=source)
    old = oldest_runs(2)
    delete_source_runs(runs_db, [run.external_id for run in old])
    # Read again without naming the source (`manage.py ingest`): the file still belongs to it.
    report = ingest_paths([runs_db])
    assert report.failed == []
    assert Run.objects.filter(format="runs").count() == 6
    assert not Run.objects.filter(pk__in=[run.pk for run in old]).exists()
    assert not Step.objects.filter(run_id__in=[run.pk for run in old]).exists()
    assert not Run.objects.filter(left_source_at__isnull=False).exists()


@contextlib.contextmanager
def sql_parameter_limit(limit: int):
    """SQLite builds differ in how many parameters one statement may have (32,766
    upstream, 250,000 in Debian's): lowered here, a statement naming every run of a
    database of a few hundred runs fails as one of 33,000 runs does upstream."""
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    before = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    try:
        yield
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)


def test_a_database_of_more_runs_than_one_statement_may_name_is_resynced_in_chunks(
    runs_db, monkeypatch
):
    conn = sqlite3.connect(runs_db)
    conn.executemany(
        "INSERT INTO runs (id, run_type, trigger, actor_type, status, created_at, updated_at) "
        "VALUES (?, 'export_csv', 'manual', 'user', 'pending', "
        "'2026-03-03T00:00:00.000Z', '2026-03-03T00:00:00.000Z')",
        [(f"01BULK{n:04}",) for n in range(240)],
    )
    conn.commit()
    conn.close()
    monkeypatch.setattr(history, "ID_CHUNK", 50)
    with sql_parameter_limit(100):
        first = ingest_paths([runs_db])
        delete_source_runs(runs_db, ["01BULK0007", "01BULK0100", "01BULK0200"])
        again = ingest_paths([runs_db])
    assert first.failed == [] and again.failed == []
    assert Run.objects.filter(format="runs").count() == 248
    left = Run.objects.filter(left_source_at__isnull=False).values_list("external_id", flat=True)
    assert sorted(left) == ["01BULK0007", "01BULK0100", "01BULK0200"]


PROCESS_CHARGES = "01KJPJ3Q1JR9Q2VTNRTF33QMPZ"
FETCH_CHARGES = "01KJPJ3MTQ6J1H399TYRR7SCWR"
UPSERT_BATCH = "01KJPJ3Q1J9KVJYDR8YMZ68TZ2"


def in_place_changes():
    """(SQL changing one row and no timestamp, what the stored run then holds)."""
    step = lambda: Step.objects.get(key=PROCESS_CHARGES)  # noqa: E731
    return {
        "items": (
            f"UPDATE steps SET items_failed = 7 WHERE id = '{PROCESS_CHARGES}'",
            lambda: step().items_failed == 7,
        ),
        "error": (
            f"UPDATE steps SET error = 'rate limited' WHERE id = '{PROCESS_CHARGES}'",
            lambda: step().error == "rate limited",
        ),
        # The same length as before: only the content tells.
        "output": (
            "UPDATE steps SET output = replace(output, '198', '199') "
            f"WHERE id = '{PROCESS_CHARGES}'",
            lambda: step().output["succeeded"] == 199,
        ),
        "call": (
            "UPDATE calls SET output = '{\"pages\": 9}' WHERE rowid = "
            f"(SELECT min(rowid) FROM calls WHERE step_id = '{FETCH_CHARGES}')",
            lambda: (
                {"pages": 9} in [c.output for c in Call.objects.filter(step__key=FETCH_CHARGES)]
            ),
        ),
        "link": (
            "UPDATE step_links SET entity_id = 'tx_moved' WHERE rowid = "
            f"(SELECT min(rowid) FROM step_links WHERE step_id = '{UPSERT_BATCH}')",
            lambda: EntityLink.objects.filter(entity_id="tx_moved").exists(),
        ),
    }


@pytest.mark.parametrize("change", sorted(in_place_changes()))
def test_without_steps_updated_at_a_row_changed_in_place_is_resynced(runs_db, change):
    """The format lets steps lack updated_at: then the rows' content must tell."""
    conn = sqlite3.connect(runs_db)
    conn.execute("ALTER TABLE steps DROP COLUMN updated_at")
    conn.commit()
    ingest_paths([runs_db])
    run = Run.objects.get(steps__key=PROCESS_CHARGES)
    before = dict(Run.objects.values_list("pk", "ingested_at"))
    assert ingest_paths([runs_db]).run_ids() == []  # unchanged: nothing written
    statement, holds = in_place_changes()[change]
    conn.execute(statement)
    conn.commit()
    conn.close()
    assert ingest_paths([runs_db]).run_ids() == [run.pk]
    assert holds()
    after = dict(Run.objects.values_list("pk", "ingested_at"))
    assert {pk for pk in after if after[pk] != before[pk]} == {run.pk}


def test_reading_never_writes_to_the_source(runs_db):
    digest = hashlib.sha256(runs_db.read_bytes()).hexdigest()
    runs_db.chmod(0o444)
    assert ingest_paths([runs_db]).failed == []
    assert hashlib.sha256(runs_db.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in runs_db.parent.iterdir()) == ["runs.sqlite"]


def test_a_database_locked_by_its_writer_is_read_once_the_lock_is_gone(runs_db):
    writer = sqlite3.connect(runs_db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE runs SET updated_at = updated_at")

    def release():
        time.sleep(1.0)
        writer.execute("COMMIT")
        writer.close()

    thread = threading.Thread(target=release)
    thread.start()
    report = ingest_paths([runs_db])
    thread.join()
    assert report.failed == []
    assert Run.objects.filter(format="runs").count() == 8


def _broken(path, sql: str):
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing steps table", '"steps"'),
        ("missing status column", '"status"'),
        ("corrupt", "corrupt"),
    ],
)
def test_broken_databases_give_a_named_error_and_write_nothing(runs_db, case, reason):
    if case == "missing steps table":
        _broken(runs_db, "PRAGMA foreign_keys=OFF; DROP TABLE steps;")
        # With no steps table, it is no longer recognisable as a runs database.
        report = ingest_paths([runs_db], format="runs")
    elif case == "missing status column":
        _broken(runs_db, "ALTER TABLE steps DROP COLUMN status;")
        report = ingest_paths([runs_db])
    else:
        data = bytearray(runs_db.read_bytes())
        data[4096:12288] = b"\xff" * 8192
        runs_db.write_bytes(bytes(data))
        report = ingest_paths([runs_db], format="runs")
    assert len(report.failed) == 1
    error = report.failed[0].error
    assert "runs.sqlite" in error and reason in error.lower()
    assert Run.objects.count() == Step.objects.count() == Call.objects.count() == 0
    assert TraceFile.objects.get().status == "error"


def test_empty_database_and_text_file_named_db_are_named_errors(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    text = tmp_path / "notes.db"
    text.write_text("these are not the tables you are looking for\n")
    report = ingest_paths([empty, text])
    errors = {r.display_name.rsplit("/", 1)[-1]: r.error for r in report.failed}
    assert set(errors) == {"empty.db", "notes.db"}
    assert all("not a trace file" in e or "empty" in e for e in errors.values())
    assert Run.objects.count() == 0
