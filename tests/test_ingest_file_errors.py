"""A database error met by one file fails that file alone, wherever the file meets
it (recording an unchanged file's new stat, looking up an upload's twin, recording a
failure), or is tried again when it only met another writer: never an exception out
of `ingest_paths`. A database written in parts and tried again after a deadlock
reports the runs its first attempt committed as that attempt wrote them.

The errors are the drivers' own: PostgreSQL fails the statement itself (its
transaction aborted unless a savepoint is rolled back), SQLite's BEGIN waits for the
write lock another connection holds."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.db.models import Sum

from tests.test_ingest_batches import every_run_commits  # noqa: F401 (a fixture used)
from tests.test_ingest_deadlocks import assert_every_read_model_is_the_recount, deadlock
from tests.test_read_model_causes import change_source
from traces.ingest import batches, loader
from traces.ingest.loader import ingest_paths
from traces.models import Run, TraceFile

pytestmark = pytest.mark.django_db(transaction=True)

DEADLOCK, LOCK_TIMEOUT = "40P01", "55P03"
# PostgreSQL's own messages for them.
MESSAGES = {DEADLOCK: "deadlock detected", LOCK_TIMEOUT: "canceling statement due to lock timeout"}
# What the driver's error says after it: where it was raised (AnotherWriter's DO block).
CONTEXT = "\nCONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE"
GREENTIC = ["01-success-always", "02-node-error", "03-flow-error-unknown"]


class AnotherWriter:
    """What another writer does to the ingest's statements that `picks` chooses (while
    `armed`; `times` of them, or all): on PostgreSQL the server fails the statement
    with `sqlstate`; on SQLite a BEGIN waits for the write lock another connection
    holds, and fails "database is locked" after its busy timeout (20 ms here), and
    any other statement fails with `sqlite_error` (SQLite's reads inside the write
    lock meet no writer)."""

    def __init__(self, picks, sqlstate: str, *, times: int | None = None, sqlite_error=""):
        self.picks, self.sqlstate, self.times = picks, sqlstate, times
        self.sqlite_error = sqlite_error or "disk I/O error"
        self.armed = True
        self.met: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if not self.armed or not self.picks(sql) or len(self.met) == self.times:
            return execute(sql, params, many, context)
        self.met.append(sql)
        if connection.vendor == "postgresql":
            message = MESSAGES[self.sqlstate]
            failing = f"DO $$ BEGIN RAISE '{message}' USING ERRCODE = '{self.sqlstate}'; END $$"
            return execute(failing, None, False, context)
        if sql.startswith("BEGIN"):
            return self._locked(execute, sql, params, many, context)
        raise OperationalError(self.sqlite_error) from sqlite3.OperationalError(self.sqlite_error)

    def _locked(self, execute, sql, params, many, context):
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        raw = context["connection"].connection
        (waits,) = raw.execute("PRAGMA busy_timeout").fetchone()
        raw.execute("PRAGMA busy_timeout = 20")
        try:
            return execute(sql, params, many, context)
        finally:
            raw.execute(f"PRAGMA busy_timeout = {waits}")
            other.execute("ROLLBACK")
            other.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(batches, "FIRST_BACKOFF_SECONDS", 0.001)
    monkeypatch.setattr(batches, "MAX_SECONDS", 3600)  # one transaction, however slow


def meeting(writer: AnotherWriter):
    return connection.execute_wrapper(writer)


def armed_while(monkeypatch, writer: AnotherWriter, function: str, path: Path) -> None:
    """The writer meets the statements of the loader's `function` for this file only."""
    original = getattr(loader, function)

    def armed(*args, **kwargs):
        given = (*args, *kwargs.values())
        writer.armed = path in [getattr(a, "real_path", None) for a in given] or str(path) in given
        try:
            return original(*args, **kwargs)
        finally:
            writer.armed = False

    monkeypatch.setattr(loader, function, armed)


def greentic_dirs(samples, root: Path, names: list[str], start: int = 0) -> list[Path]:
    paths = []
    for position, name in enumerate(names, start=start):
        folder = root / str(position)
        folder.mkdir(parents=True)
        shutil.copy(samples / "greentic" / name / "trace.json", folder / "trace.json")
        paths.append(folder / "trace.json")
    return paths


def outcomes(report) -> list[str]:
    return [result.outcome for result in report.files]


def is_touch(sql: str) -> bool:
    """The statement that opens the touch's savepoint (SQLite) or is the touch."""
    if connection.vendor == "sqlite":
        return sql.startswith("BEGIN")
    return sql.startswith('UPDATE "traces_tracefile" SET "size"')


@pytest.fixture
def stat_moved(samples, tmp_path) -> Path:
    """A file ingested, then its mtime moved an hour back (its bytes the same: it is
    hashed, found unchanged and its new stat recorded), and two new files beside it."""
    (unchanged,) = greentic_dirs(samples, tmp_path, GREENTIC[:1])
    assert ingest_paths([tmp_path]).failed == []
    greentic_dirs(samples, tmp_path, GREENTIC[1:], start=1)
    moved = unchanged.stat().st_mtime_ns - 3600 * 10**9
    os.utime(unchanged, ns=(moved, moved))
    return unchanged


def test_an_unchanged_files_new_stat_that_meets_another_writer_is_recorded_again(
    tmp_path, stat_moved
):
    writer = AnotherWriter(is_touch, DEADLOCK, times=1)
    with meeting(writer):
        report = ingest_paths([tmp_path])

    assert len(writer.met) == 1
    assert outcomes(report) == ["unchanged", "ingested", "ingested"]
    touched = TraceFile.objects.get(path=report.files[0].path)
    assert touched.mtime_ns == stat_moved.stat().st_mtime_ns
    assert Run.objects.count() == 3
    assert_every_read_model_is_the_recount()


def test_an_unchanged_file_whose_new_stat_cannot_be_recorded_fails_alone_by_name(
    tmp_path, stat_moved, monkeypatch
):
    """SQLite: another writer holds the lock while this file is read (its new stat and
    its failure both wait in vain); PostgreSQL: its row's lock is waited for in vain."""
    stored = TraceFile.objects.get()
    writer = AnotherWriter(is_touch, LOCK_TIMEOUT)
    armed_while(monkeypatch, writer, "_ingest_candidate", stat_moved)
    with meeting(writer):
        report = ingest_paths([tmp_path])

    assert outcomes(report) == ["failed", "ingested", "ingested"]
    failed = report.files[0]
    assert failed.path == stored.path and failed.runs_added == failed.runs_updated == []
    if connection.vendor == "sqlite":
        reason = f"(OperationalError: database is locked) (tried {batches.ATTEMPTS} times)"
        assert failed.error == (
            f"{stat_moved}: internal error while ingesting {reason}; the failure could not be"
            f" recorded: internal error while ingesting {reason}"
        )
        assert failed.file_id is None
        # Nothing of it written: the next ingest finds its new stat again.
        assert TraceFile.objects.get(pk=stored.pk).mtime_ns == stored.mtime_ns
        assert TraceFile.objects.get(pk=stored.pk).status == "ok"
    else:
        reason = f"(OperationalError: {MESSAGES[LOCK_TIMEOUT]}{CONTEXT})"
        assert failed.error == f"{stat_moved}: internal error while ingesting {reason}"
        assert len(writer.met) == 1  # a lock timeout is not tried again
        row = TraceFile.objects.get(pk=stored.pk)
        assert failed.file_id == row.pk and row.status == "error" and row.error == failed.error
        assert row.mtime_ns == stat_moved.stat().st_mtime_ns  # the stat failure records
    assert Run.objects.filter(source_file_id=stored.pk).count() == 1  # its run as it was
    assert Run.objects.count() == 3
    assert_every_read_model_is_the_recount()


def failure_record(sql: str) -> bool:
    """The first statement of recording a failure: SQLite's BEGIN, PostgreSQL's read
    of the file's row."""
    if connection.vendor == "sqlite":
        return sql.startswith("BEGIN")
    return sql.startswith("SELECT") and '"traces_tracefile"."path" =' in sql


@pytest.fixture
def not_a_trace(samples, tmp_path) -> Path:
    """A file named first that is no trace (it fails before anything is written), and
    a directory of two traces after it."""
    bad = tmp_path / "notes.txt"
    bad.write_text("not a trace\n")
    greentic_dirs(samples, tmp_path / "traces", GREENTIC[:2])
    return bad


def test_recording_a_failure_that_meets_another_writer_is_tried_again(
    tmp_path, not_a_trace, monkeypatch
):
    writer = AnotherWriter(failure_record, DEADLOCK, times=1)
    armed_while(monkeypatch, writer, "_fail", not_a_trace)
    with meeting(writer):
        report = ingest_paths([not_a_trace, tmp_path / "traces"])

    assert len(writer.met) == 1
    assert outcomes(report) == ["failed", "ingested", "ingested"]
    failed = report.files[0]
    assert failed.error.startswith(f"{not_a_trace}: not a trace file in any known format")
    row = TraceFile.objects.get(path=failed.path)
    assert failed.file_id == row.pk and row.status == "error" and row.error == failed.error
    assert Run.objects.count() == 2
    assert_every_read_model_is_the_recount()


def test_a_failure_that_cannot_be_recorded_is_reported_and_the_batch_goes_on(
    tmp_path, not_a_trace, monkeypatch
):
    writer = AnotherWriter(failure_record, LOCK_TIMEOUT)
    armed_while(monkeypatch, writer, "_fail", not_a_trace)
    with meeting(writer):
        report = ingest_paths([not_a_trace, tmp_path / "traces"])

    assert outcomes(report) == ["failed", "ingested", "ingested"]
    failed = report.files[0]
    if connection.vendor == "sqlite":
        met = f"(OperationalError: database is locked) (tried {batches.ATTEMPTS} times)"
    else:
        met = f"(OperationalError: {MESSAGES[LOCK_TIMEOUT]}{CONTEXT})"
    assert failed.error.startswith(f"{not_a_trace}: not a trace file in any known format")
    assert failed.error.endswith(
        f"; the failure could not be recorded: internal error while ingesting {met}"
    )
    assert failed.file_id is None and not TraceFile.objects.filter(path=failed.path).exists()
    assert Run.objects.count() == 2 and TraceFile.objects.count() == 2
    assert_every_read_model_is_the_recount()


def is_twin_lookup(sql: str) -> bool:
    return sql.startswith("SELECT") and '"traces_tracefile"."sha256" =' in sql


@pytest.fixture
def uploads(samples, tmp_path) -> list[Path]:
    """Three uploads, the second a copy of the first: its twin is looked up once the
    first is written, in the batch's open transaction."""
    first, other = greentic_dirs(samples, tmp_path, GREENTIC[:2])
    copy = tmp_path / "1-copy" / "trace.json"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    return [first, copy, other]


def test_an_uploads_twin_lookup_that_meets_a_deadlock_is_tried_again(uploads, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a read inside SQLite's open transaction holds the lock: no writer to meet")
    writer = AnotherWriter(is_twin_lookup, DEADLOCK, times=1)
    armed_while(monkeypatch, writer, "_known_content", uploads[1])
    with meeting(writer):
        report = ingest_paths(uploads, uploaded=True)

    assert len(writer.met) == 1
    assert outcomes(report) == ["ingested", "unchanged", "ingested"]
    assert report.files[1].same_as == str(uploads[0]) == report.files[0].path
    assert Run.objects.count() == 2
    assert_every_read_model_is_the_recount()


def test_an_uploads_twin_lookup_that_fails_fails_that_upload_alone(uploads, monkeypatch):
    writer = AnotherWriter(is_twin_lookup, LOCK_TIMEOUT)
    armed_while(monkeypatch, writer, "_known_content", uploads[1])
    with meeting(writer):
        report = ingest_paths(uploads, uploaded=True)

    assert outcomes(report) == ["ingested", "failed", "ingested"]
    failed = report.files[1]
    reason = "disk I/O error" if connection.vendor == "sqlite" else MESSAGES[LOCK_TIMEOUT] + CONTEXT
    assert failed.error == (
        f"{uploads[1]}: internal error while ingesting (OperationalError: {reason})"
    )
    row = TraceFile.objects.get(path=failed.path)
    assert failed.file_id == row.pk and row.status == "error" and row.error == failed.error
    assert not Run.objects.filter(source_file=row).exists()
    assert Run.objects.count() == 2
    assert_every_read_model_is_the_recount()


# --- a database tried again after some of its parts committed -------------------------------


def committed_runs(**lookups) -> int:
    """The runs another connection sees (whose rows match `lookups`)."""
    seen = []

    def look():
        try:
            seen.append(Run.objects.filter(**lookups).count())
        finally:
            connection.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return seen[0]


def deadlock_at_the_fourth_run(monkeypatch, **committed) -> list:
    """The first attempt at the database meets a deadlock at its fourth run, three
    (whose rows match `committed`) committed by then, one at a time
    (`every_run_commits`); the attempts, counted."""
    write_run, written, attempts = loader.write_run, [], []

    def deadlocking(record, *, source_file, **kwargs):
        outcome = write_run(record, source_file=source_file, **kwargs)
        written.append(record)
        if len(written) == 4:
            assert committed_runs(**committed) == 3
            raise deadlock()
        return outcome

    write_file = loader._write_file

    def counted(*args, **kwargs):
        attempts.append(1)
        return write_file(*args, **kwargs)

    monkeypatch.setattr(loader, "write_run", deadlocking)
    monkeypatch.setattr(loader, "_write_file", counted)
    return attempts


def assert_counts_are_those_stored(result, runs) -> None:
    stored = runs.aggregate(
        steps=Sum("step_count"), calls=Sum("call_count"), links=Sum("link_count")
    )
    assert result.counts["runs"] == runs.count()
    assert {name: result.counts[name] for name in stored} == stored


@pytest.mark.usefixtures("every_run_commits")
def test_a_database_written_again_after_a_deadlock_reports_the_runs_it_added(runs_db, monkeypatch):
    attempts = deadlock_at_the_fourth_run(monkeypatch)
    report = ingest_paths([runs_db])

    assert len(attempts) == 2
    (result,) = report.files
    assert result.outcome == "ingested" and result.runs_unchanged == []
    assert sorted(result.runs_added) == sorted(Run.objects.values_list("pk", flat=True))
    assert len(result.runs_added) == 8 and report.summary()["runs"] == 8
    assert_counts_are_those_stored(result, Run.objects.all())
    assert_every_read_model_is_the_recount()


@pytest.mark.usefixtures("every_run_commits")
def test_a_database_written_again_after_a_deadlock_reports_the_runs_it_updated(
    runs_db, monkeypatch
):
    """Its seven runs changed (the eighth, a step without a run row, did not)."""
    assert ingest_paths([runs_db]).failed == []
    change_source(runs_db, ("UPDATE runs SET run_type = run_type || '-v2'", ()))
    attempts = deadlock_at_the_fourth_run(monkeypatch, type__endswith="-v2")
    report = ingest_paths([runs_db])

    assert len(attempts) == 2
    (result,) = report.files
    changed = Run.objects.filter(type__endswith="-v2")
    assert result.outcome == "ingested" and result.runs_added == []
    assert sorted(result.runs_updated) == sorted(changed.values_list("pk", flat=True))
    assert result.runs_unchanged == list(
        Run.objects.exclude(type__endswith="-v2").values_list("pk", flat=True)
    )
    assert len(result.runs_updated) == 7 and report.summary()["runs"] == 7
    assert_counts_are_those_stored(result, changed)
    assert_every_read_model_is_the_recount()
