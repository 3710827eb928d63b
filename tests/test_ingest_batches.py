"""Files share transactions, each in its own savepoint; a database commits its runs
in batches, each batch whole runs, and claims to be read only once it was whole."""

import shutil
import threading

import pytest
from django.db import OperationalError, connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from tests.test_ingest_resync import delete_source_runs, oldest_runs
from traces.ingest import batches, inserters, loader
from traces.ingest.loader import ingest_paths
from traces.models import Run, TraceFile

pytestmark = pytest.mark.django_db(transaction=True)

TRUNCATED = "duckflux/json/6b45129b-7616-488c-8763-e80b2b87d7a4.json"


class Crash(BaseException):
    """The process dies here (as under SIGKILL, nothing after it runs)."""


@pytest.fixture
def commits(monkeypatch) -> list:
    """Every commit of an ingest's batches, counted."""
    made = []
    commit = batches.WriteBatch.commit

    def counted(batch):
        made.append(batch)
        commit(batch)

    monkeypatch.setattr(batches.WriteBatch, "commit", counted)
    return made


def fail_on_second_run_of(monkeypatch, name: str) -> None:
    """A database error half-way through one file: its first run is written, then this."""
    write_run, written = loader.write_run, []

    def failing(record, *, source_file, **kwargs):
        if source_file.path.endswith(name):
            written.append(record)
            if len(written) == 2:
                raise OperationalError("disk I/O error")
        return write_run(record, source_file=source_file, **kwargs)

    monkeypatch.setattr(loader, "write_run", failing)


def test_bad_files_in_the_middle_of_a_batch_fail_alone_and_write_nothing(
    samples, tmp_path, monkeypatch, commits
):
    monkeypatch.setattr(batches, "MAX_SECONDS", 3600)  # one batch, however slow the machine
    for position, source in enumerate(
        ["greentic/01-success-always/trace.json", TRUNCATED, "traceos/traces.jsonl",
         "greentic/02-node-error/trace.json"]
    ):  # fmt: skip
        folder = tmp_path / str(position)
        folder.mkdir()
        shutil.copy(samples / source, folder / source.rsplit("/", 1)[-1])
    truncated = tmp_path / "1" / TRUNCATED.rsplit("/", 1)[-1]
    truncated.write_bytes(truncated.read_bytes()[:700])
    fail_on_second_run_of(monkeypatch, "traces.jsonl")

    report = ingest_paths([tmp_path])

    assert len(commits) == 1, "the four files were not written in one transaction"
    outcomes = {result.path.split("/")[-2]: result for result in report.files}
    assert [outcomes[key].outcome for key in "0123"] == [
        "ingested", "failed", "failed", "ingested"
    ]  # fmt: skip
    assert outcomes["1"].error.startswith(f"{truncated}: ") and "truncated" in outcomes["1"].error
    assert outcomes["2"].error.endswith(
        "traces.jsonl: internal error while ingesting (OperationalError: disk I/O error)"
    )
    assert set(Run.objects.values_list("format", flat=True)) == {"greentic"}
    assert Run.objects.count() == 2
    stored = {f.path: f for f in TraceFile.objects.all()}
    for key in "12":
        failed = stored[outcomes[key].path]
        assert failed.status == "error" and failed.error == outcomes[key].error
        assert failed.sha256 == "" and not Run.objects.filter(source_file=failed).exists()


def visible_from_another_connection() -> dict:
    """What a page would show now: each run's steps and calls as stored, and its counts."""
    seen = {}

    def look():
        try:
            runs = Run.objects.annotate(step_rows=Count("steps", distinct=True))
            runs = runs.annotate(call_rows=Count("calls", distinct=True))
            for run in runs:
                seen[run.external_id] = (
                    run.step_rows,
                    run.step_count,
                    run.call_rows,
                    run.call_count,
                )
            seen["claimed"] = TraceFile.objects.filter(format="runs").exclude(sha256="").exists()
        finally:
            connection.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return seen


@pytest.fixture
def every_run_commits(monkeypatch) -> list[dict]:
    """A batch falls due after every run; what another connection sees after each commit."""
    monkeypatch.setattr(batches, "MAX_SECONDS", 0)
    monkeypatch.setattr(batches, "SQLITE_PAUSE_SECONDS", 0)
    views = []
    commit = batches.WriteBatch.commit

    def commit_and_look(batch):
        commit(batch)
        views.append(visible_from_another_connection())

    monkeypatch.setattr(batches.WriteBatch, "commit", commit_and_look)
    return views


def whole_runs(samples, tmp_path) -> dict:
    """The runs of the sample database, as one whole ingest stores them."""
    reference = tmp_path / "reference" / "runs.sqlite"
    reference.parent.mkdir()
    shutil.copy(samples / "runs/runs.sqlite", reference)
    assert ingest_paths([reference]).failed == []
    runs = Run.objects.annotate(step_rows=Count("steps", distinct=True))
    runs = runs.annotate(call_rows=Count("calls", distinct=True))
    whole = {r.external_id: (r.step_rows, r.step_count, r.call_rows, r.call_count) for r in runs}
    Run.objects.all().delete()
    TraceFile.objects.all().delete()
    return whole


def test_a_database_commits_whole_runs_before_it_is_done(
    samples, tmp_path, runs_db, every_run_commits
):
    whole = whole_runs(samples, tmp_path)
    every_run_commits.clear()
    report = ingest_paths([runs_db])
    assert report.failed == []
    views = every_run_commits
    partial = [view for view in views if 0 < len(view) - 1 < len(whole)]
    assert partial, "no run was visible before the database was done"
    claimed = [view.pop("claimed") for view in views]
    assert claimed == [False] * (len(views) - 1) + [True], "claimed to be read before the end"
    for view in views:
        assert view == {key: whole[key] for key in view}, "a run was visible without all its rows"
    assert len(visible_from_another_connection()) - 1 == len(whole)


def test_a_crash_mid_database_leaves_whole_runs_and_the_next_ingest_finishes_them(
    samples, tmp_path, runs_db, every_run_commits, monkeypatch
):
    whole = whole_runs(samples, tmp_path)
    commit = batches.WriteBatch.commit

    def crash_at_the_third(batch):
        commit(batch)
        if len(every_run_commits) == 3:
            raise Crash

    monkeypatch.setattr(batches.WriteBatch, "commit", crash_at_the_third)
    every_run_commits.clear()
    with pytest.raises(Crash):
        ingest_paths([runs_db])
    after_crash = visible_from_another_connection()
    assert after_crash.pop("claimed") is False  # read again next time, not taken as unchanged
    assert 0 < len(after_crash) < len(whole)
    assert after_crash == {key: whole[key] for key in after_crash}

    monkeypatch.setattr(batches.WriteBatch, "commit", commit)
    (result,) = ingest_paths([runs_db]).files
    assert result.outcome == "ingested" and len(result.runs_unchanged) == len(after_crash)
    finished = visible_from_another_connection()
    assert finished.pop("claimed") is True
    assert finished == whole
    assert ingest_paths([runs_db]).files[0].outcome == "unchanged"


def test_a_resync_cut_short_settles_no_run_as_gone(runs_db, every_run_commits, monkeypatch):
    assert ingest_paths([runs_db]).failed == []
    gone = [run.external_id for run in oldest_runs(2)]
    delete_source_runs(runs_db, gone)
    commit = batches.WriteBatch.commit
    cut_after = len(every_run_commits) + 2

    def crash(batch):
        commit(batch)
        if len(every_run_commits) == cut_after:
            raise Crash

    monkeypatch.setattr(batches.WriteBatch, "commit", crash)
    with pytest.raises(Crash):
        ingest_paths([runs_db])
    assert not Run.objects.filter(left_source_at__isnull=False).exists()

    monkeypatch.setattr(batches.WriteBatch, "commit", commit)
    assert ingest_paths([runs_db]).failed == []
    left = Run.objects.filter(left_source_at__isnull=False)
    assert sorted(left.values_list("external_id", flat=True)) == sorted(gone)


SMALL_FILES = [
    "greentic/01-success-always/trace.json",
    "duckflux/json/42462fed-a9ef-4b4a-89d5-3755b1f42178.json",
    "greentic/02-node-error/trace.json",
    "duckflux/json/4d8b9121-deea-4d0c-9c93-66014f7b337d.json",
]


def copy_small_files(samples, tmp_path) -> None:
    for position, source in enumerate(SMALL_FILES):
        folder = tmp_path / str(position)
        folder.mkdir()
        shutil.copy(samples / source, folder / source.rsplit("/", 1)[-1])


@pytest.fixture
def together(monkeypatch) -> list[bool]:
    """Whether each group of small files read ahead went in together."""
    outcomes, write_together = [], loader._write_together

    def recorded(reads, ctx):
        outcomes.append(write_together(reads, ctx))
        return outcomes[-1]

    monkeypatch.setattr(loader, "_write_together", recorded)
    return outcomes


def test_small_files_are_written_together_their_rows_in_one_statement(
    samples, tmp_path, monkeypatch, commits, together
):
    monkeypatch.setattr(batches, "MAX_SECONDS", 3600)
    copy_small_files(samples, tmp_path)
    writes, insert_rows = [], inserters.InstancePlan.insert_rows

    def noted(plan, rows):
        writes.append((plan.sql.split()[2], len(rows)))
        insert_rows(plan, rows)

    monkeypatch.setattr(inserters.InstancePlan, "insert_rows", noted)
    with CaptureQueriesContext(connection) as queries:
        report = ingest_paths([tmp_path])
    assert [result.outcome for result in report.files] == ["ingested"] * 4
    assert together == [True] and len(commits) == 1
    file_writes = [rows for table, rows in writes if table == "traces_tracefile"]
    assert file_writes == [4], "the four files' rows were not written together"
    # One statement on SQLite (4 rows: a power of two), a COPY on PostgreSQL.
    file_inserts = [q["sql"] for q in queries if "INSERT INTO traces_tracefile" in q["sql"]]
    assert len(file_inserts) == (1 if connection.vendor == "sqlite" else 0)
    # One for the files, one for the read models' apply before the commit (retried alone).
    assert len([q for q in queries if q["sql"].startswith("SAVEPOINT")]) == 2
    stored = {f.path: f for f in TraceFile.objects.all()}
    for result in report.files:
        assert stored[result.path].sha256 and stored[result.path].produced["runs"] == 1
        assert Run.objects.get(source_file=stored[result.path]).pk == result.runs_added[0]
    assert ingest_paths([tmp_path]).summary()["files"]["unchanged"] == 4


def test_a_bad_file_among_small_files_written_together_fails_alone(
    samples, tmp_path, monkeypatch, commits, together
):
    """A database error in one of the files written together: they are written
    again each alone, and only that one fails, by name, leaving nothing behind."""
    monkeypatch.setattr(batches, "MAX_SECONDS", 3600)
    copy_small_files(samples, tmp_path)
    write_run = loader.write_run

    def failing(record, *, source_file, **kwargs):
        if "/2/" in source_file.path:
            raise OperationalError("disk I/O error")
        return write_run(record, source_file=source_file, **kwargs)

    monkeypatch.setattr(loader, "write_run", failing)
    report = ingest_paths([tmp_path])

    assert together == [False], "the files were not tried together first"
    assert len(commits) == 1
    assert [result.outcome for result in report.files] == [
        "ingested", "ingested", "failed", "ingested"
    ]  # fmt: skip
    bad = report.files[2]
    assert bad.error.endswith(
        "trace.json: internal error while ingesting (OperationalError: disk I/O error)"
    )
    assert bad.counts == {} and bad.runs_added == []
    assert Run.objects.count() == 3
    assert report.summary()["runs"] == 3
    failed = TraceFile.objects.get(path=bad.path)
    assert failed.status == "error" and failed.sha256 == ""
    assert not Run.objects.filter(source_file=failed).exists()
    good = [result for result in report.files if result.outcome == "ingested"]
    for result in good:
        assert Run.objects.filter(source_file_id=result.file_id).count() == 1
