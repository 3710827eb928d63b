"""Parallel ingest (`ingest --jobs N`, traces/ingest/parallel.py): workers on one
database split a batch's files, each file read exactly once, the report whole."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tests.test_faults import manage, site_env, wait_for
from tests.test_tasks import ROOT, database_url
from traces import sources as scans
from traces.ingest import parallel
from traces.models import (
    FailureCause,
    FailureSlice,
    IngestClaim,
    IngestJob,
    Run,
    Step,
    TraceFile,
    TraceSource,
)
from traces.tasks import enqueue_ingest, run_ingest_job, run_ingest_share

# Worker processes see only what is committed.
pytestmark = pytest.mark.django_db(transaction=True)
BROKEN_GREENTIC = '{"trace_version": 1, "flow": {"id": "x"}, "steps": ['


def ingest(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def stored() -> dict:
    """What an ingest left, without the ids (they depend on the order of writes)."""
    runs = sorted(
        Run.objects.values_list("format", "origin", "external_id", "status", "step_count")
    )
    steps = sorted(Step.objects.values_list("run__external_id", "key", "status", "seq"))
    files = sorted(TraceFile.objects.values_list("path", "format", "status", "produced"), key=str)
    return {"runs": runs, "steps": steps, "files": files}


def forget_everything() -> None:
    Run.objects.all().delete()
    TraceFile.objects.all().delete()
    FailureCause.objects.all().delete()
    FailureSlice.objects.all().delete()


def files_in(directory, count: int) -> list:
    directory.mkdir(exist_ok=True)
    paths = [directory / f"file-{index:03}.txt" for index in range(count)]
    for path in paths:
        path.write_text("not a trace")
    return paths


def take_all(batch: str, worker: str, start: threading.Barrier, taken: list) -> None:
    try:
        start.wait()
        while (share := parallel.take_share(batch, worker)) is not None:
            taken.append(share.pk)
    finally:
        connections.close_all()


# --- the command ----------------------------------------------------------------------------


def test_jobs_2_stores_the_samples_exactly_as_jobs_1(samples):
    one, _ = ingest(str(samples), "--json")
    expected = stored()
    forget_everything()

    two, _ = ingest(str(samples), "--json", "--jobs", "2")

    assert json.loads(two) == json.loads(one)
    assert json.loads(two)["files"]["ingested"] > 30 and json.loads(two)["runs"] > 40
    assert stored() == expected
    assert not IngestClaim.objects.exists()  # the batch's shares are gone with it


def test_jobs_2_again_finds_every_file_unchanged(samples):
    ingest(str(samples / "greentic"), str(samples / "traceos"), "--jobs", "2")
    out, _ = ingest(str(samples / "greentic"), str(samples / "traceos"), "--jobs", "2", "--json")
    assert json.loads(out)["files"] == {"ingested": 0, "unchanged": 9, "failed": 0, "skipped": 2}


def test_a_bad_file_among_parallel_workers_fails_alone_with_its_name(samples, tmp_path):
    shutil.copytree(samples / "greentic", tmp_path / "greentic")
    bad = tmp_path / "greentic/05-broken/trace.json"
    bad.parent.mkdir()
    bad.write_text(BROKEN_GREENTIC)
    err = io.StringIO()

    with pytest.raises(CommandError, match="1 file"):
        call_command("ingest", str(tmp_path), "--jobs", "2", stdout=io.StringIO(), stderr=err)

    assert err.getvalue().count("error: ") == 1 and f"error: {bad}:" in err.getvalue()
    assert TraceFile.objects.get(status="error").path == str(bad.resolve())
    assert TraceFile.objects.filter(status="ok").count() == 4 and Run.objects.count() == 4


def test_jobs_must_be_positive_and_not_watch(samples):
    with pytest.raises(CommandError, match="at least 1"):
        ingest(str(samples / "greentic"), "--jobs", "0")
    with pytest.raises(CommandError, match="--watch"):
        ingest(str(samples / "greentic"), "--jobs", "2", "--watch")


# --- shares ---------------------------------------------------------------------------------


def test_a_batch_lists_each_file_once_and_keeps_a_directory_together(samples, tmp_path):
    batch, kept, _files = parallel.plan_batch(
        [samples / "workflow", samples / "greentic"], workers=2
    )
    shares = list(IngestClaim.objects.filter(batch=batch).order_by("id"))
    paths = [path for share in shares for path in share.paths]
    assert kept == [] and len(paths) == len(set(paths)) == _files == 2 + 4
    assert {str(samples / "workflow/events.db"), str(samples / "workflow/workflow.db")} <= set(
        shares[0].paths
    )


def test_a_file_named_twice_is_in_one_share_and_reported_once(samples, tmp_path):
    """A directory and a file in it, a sub-directory, a link: each file listed once,
    as the loader reads it once (its first name kept), not read by two workers."""
    shutil.copytree(samples / "greentic", tmp_path / "g")
    (tmp_path / "g/link.json").symlink_to(tmp_path / "g/01-success-always/trace.json")
    named = [tmp_path / "g", tmp_path / "g/02-node-error", tmp_path / "g/02-node-error/trace.json"]
    batch, _kept, files = parallel.plan_batch(named, workers=2)
    paths = [path for share in IngestClaim.objects.filter(batch=batch) for path in share.paths]
    assert files == len(paths) == 4 and str(tmp_path / "g/link.json") in paths
    IngestClaim.objects.all().delete()

    one, _ = ingest(*map(str, named), "--json")
    expected = stored()
    forget_everything()
    two, _ = ingest(*map(str, named), "--json", "--jobs", "2")

    assert json.loads(one)["files"] == {"ingested": 4, "unchanged": 0, "failed": 0, "skipped": 0}
    assert json.loads(two) == json.loads(one)
    assert stored() == expected


@pytest.mark.parametrize("named", [["d"], ["d", "d/a.zip"], ["d/a.zip", "d"]])
def test_a_zip_in_a_directory_is_read_only_when_named_as_jobs_1_reads_it(samples, tmp_path, named):
    """A walk leaves an archive out (`ingest dir`), in a worker too; the archive named
    on its own is read (its members), also inside a directory named: not left out as
    a file named twice."""
    shutil.copytree(samples / "greentic/01-success-always", tmp_path / "d/one")
    with zipfile.ZipFile(tmp_path / "d/a.zip", "w") as archive:
        archive.write(samples / "greentic/02-node-error/trace.json", "two/trace.json")
    named = [str(tmp_path / path) for path in named]

    one, _ = ingest(*named, "--json")
    expected = stored()
    forget_everything()
    two, _ = ingest(*named, "--json", "--jobs", "2")

    assert json.loads(one)["files"]["ingested"] == len(named)  # d/one, and the zip's member
    assert json.loads(two) == json.loads(one)
    assert stored() == expected


def test_two_workers_taking_shares_at_once_never_take_the_same(tmp_path):
    files_in(tmp_path / "d", 40)
    batch, *_ = parallel.plan_batch([tmp_path], workers=40)
    total = IngestClaim.objects.filter(batch=batch).count()
    start, first, second = threading.Barrier(2), [], []
    workers = [
        threading.Thread(target=take_all, args=(batch, "first", start, first)),
        threading.Thread(target=take_all, args=(batch, "second", start, second)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert total >= 20 and not set(first) & set(second)
    assert len(first) + len(second) == total
    assert set(IngestClaim.objects.filter(batch=batch).values_list("state", flat=True)) == {"taken"}


def test_a_share_held_in_an_open_transaction_is_skipped_not_taken_twice(tmp_path):
    files_in(tmp_path / "d", 20)  # more than a small directory: split
    batch, *_ = parallel.plan_batch([tmp_path], workers=20)
    held, released, other = threading.Event(), threading.Event(), {}

    def hold() -> None:
        try:
            with transaction.atomic():
                other["held"] = parallel.take_share(batch, "holder").pk
                held.set()
                released.wait(timeout=30)
        finally:
            connections.close_all()

    def take() -> None:
        try:
            other["taken"] = parallel.take_share(batch, "taker").pk
            other["before_release"] = not released.is_set()
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(timeout=30)
    taker = threading.Thread(target=take)
    taker.start()
    taker.join(timeout=2)  # PostgreSQL skips the locked row; SQLite waits for the writer
    released.set()
    holder.join(timeout=30)
    taker.join(timeout=30)

    assert other["held"] != other["taken"]
    if connection.vendor == "postgresql":
        assert other["before_release"]  # SKIP LOCKED: not blocked by the open transaction


def test_a_dead_workers_share_is_taken_again_after_its_lease(samples):
    batch, *_ = parallel.plan_batch([samples / "greentic"], workers=4)
    dead = parallel.take_share(batch, "dead")

    parallel.work(batch, worker="alive")
    assert IngestClaim.objects.get(pk=dead.pk).worker == "dead"  # within its lease

    IngestClaim.objects.filter(pk=dead.pk).update(
        taken_at=timezone.now() - parallel.LEASE - timedelta(seconds=1)
    )
    assert parallel.work(batch, worker="alive") == 1
    assert IngestClaim.objects.get(pk=dead.pk).worker == "alive"
    report = parallel.gather(batch, [])
    assert report.summary()["files"]["ingested"] == 4 and Run.objects.count() == 4


def test_a_worker_that_lost_its_share_does_not_overwrite_it(samples, monkeypatch):
    batch, *_ = parallel.plan_batch([samples / "greentic"], workers=4)
    read = parallel.ingest_paths

    def taken_meanwhile(paths, **options):
        IngestClaim.objects.filter(batch=batch, worker="slow").update(worker="faster")
        return read(paths, **options)

    monkeypatch.setattr(parallel, "ingest_paths", taken_meanwhile)
    parallel.work(batch, worker="slow")

    shares = IngestClaim.objects.filter(batch=batch)
    assert shares.count() == 4 and set(shares.values_list("worker", "state")) == {
        ("faster", "taken")
    }
    assert Run.objects.count() == 4  # read all the same: the other worker finds them unchanged


def test_killing_a_parallel_ingest_stops_its_worker_processes(samples, tmp_path):
    """SIGKILL of `ingest --jobs 2`: its worker (a daemon process, which outlives a
    kill) stops at once, leaving shares unread, rather than reading them all alone."""
    distinct_greentic_files(samples, tmp_path / "traces", 1000)  # 2 s a worker, at least
    (tmp_path / "site").mkdir()
    planner = manage(site_env(tmp_path / "site"), "ingest", str(tmp_path / "traces"), "--jobs", "2")
    try:
        helper_took = IngestClaim.objects.exclude(worker__contains=f":{planner.pid}:")
        helper_took = helper_took.exclude(worker="")
        assert wait_for(lambda: helper_took.exists() or planner.poll() is not None, 120)
        helper = int(helper_took.first().worker.split(":")[1])
    finally:
        planner.kill()
        planner.wait(timeout=30)  # not communicate(): the worker holds its pipes too
    assert planner.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"

    assert wait_for(lambda: not running(helper), 5), "the worker goes on without its ingest"
    assert IngestClaim.objects.filter(state="todo").exists(), "the worker read them all alone"
    _out, errors = planner.communicate(timeout=30)
    assert f"ingest worker {helper}: its ingest is gone; stopping" in errors


def running(pid: int) -> bool:
    """Whether the process is alive (a zombie is not: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- shares left behind -------------------------------------------------------------------


def test_a_later_parallel_ingest_prunes_the_batches_left_long_ago(samples):
    long_ago = timezone.now() - parallel.ABANDONED_AFTER - timedelta(minutes=1)
    IngestClaim.objects.create(batch="killed", created_at=long_ago, taken_at=long_ago)
    IngestClaim.objects.create(batch="running", state="taken", taken_at=timezone.now())

    parallel.ingest_in_parallel([samples / "greentic"], jobs=1)

    assert list(IngestClaim.objects.values_list("batch", flat=True)) == ["running"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_parallel_ingest_that_fails_or_is_interrupted_leaves_no_shares(
    samples, monkeypatch, error
):
    def fail(*args, **kwargs):
        assert IngestClaim.objects.filter(state="done").exists()
        raise error

    monkeypatch.setattr(parallel, "gather", fail)
    with pytest.raises(type(error)):
        parallel.ingest_in_parallel([samples / "greentic"], jobs=1)
    assert not IngestClaim.objects.exists()


def test_a_shared_job_that_fails_leaves_no_shares(samples, settings, monkeypatch):
    settings.TRACER_INGEST_IN_BACKGROUND = True
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "ingest"]}
    }
    settings.TRACER_INGEST_SHARE_FROM = 2
    monkeypatch.setattr(parallel, "gather", lambda *args, **kwargs: 1 / 0)
    job = IngestJob.objects.create(kind="upload", paths=[str(samples / "greentic")])

    with pytest.raises(ZeroDivisionError):
        run_ingest_job.call(job.pk)

    job.refresh_from_db()
    assert job.status == "failed" and "ZeroDivisionError" in job.error
    assert not IngestClaim.objects.exists()


# --- jobs on the site: shared by db_workers ------------------------------------------------


def start_db_worker(tmp_path, name: str, roots=None) -> subprocess.Popen:
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        TRACER_INGEST_IN_BACKGROUND="1",
        TRACER_INGEST_SHARE_FROM="2",
        TRACER_DATA_DIR=str(tmp_path / name),
        TRACER_SOURCE_ROOTS=str(roots or tmp_path),
    )
    command = [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay"]
    command += ["--queue-name", "ingest"]
    out = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_big_job_is_shared_with_helper_tasks_that_other_db_workers_run(
    samples, tmp_path, settings
):
    settings.TRACER_INGEST_IN_BACKGROUND = True
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "ingest"]}
    }
    shutil.copytree(samples / "greentic", tmp_path / "traces")
    shutil.copytree(samples / "traceos", tmp_path / "traces/traceos")
    job = enqueue_ingest([str(tmp_path / "traces")], kind="upload")

    workers = [start_db_worker(tmp_path, name) for name in ("one", "two")]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, (tmp_path / "one.log").read_text()

    job.refresh_from_db()
    assert job.status == "done", job.error
    assert job.summary["files"] == {"ingested": 9, "unchanged": 0, "failed": 0, "skipped": 2}
    assert job.summary["runs"] == 13 and Run.objects.count() == 13
    assert job.files_total == 11 and len(job.results) == 11
    helpers = DBTaskResult.objects.filter(task_path="traces.tasks.run_ingest_share")
    assert helpers.count() == 3 and set(helpers.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert not IngestClaim.objects.exists()


def test_a_small_job_is_read_by_one_task(samples, tmp_path, settings):
    settings.TRACER_INGEST_IN_BACKGROUND = True
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "ingest"]}
    }
    settings.TRACER_INGEST_SHARE_FROM = 100
    job = IngestJob.objects.create(kind="upload", paths=[str(samples / "greentic")])

    run_ingest_job.call(job.pk)

    job.refresh_from_db()
    assert job.status == "done" and job.summary["runs"] == 4
    assert not DBTaskResult.objects.exists() and not IngestClaim.objects.exists()


# --- source rescans shared by db_workers ----------------------------------------------------


def distinct_greentic_files(samples, target, copies: int) -> int:
    """`copies` copies of the greentic samples, each file's bytes (so its run) its own."""
    count = 0
    for index in range(copies):
        for trace in sorted((samples / "greentic").glob("*/trace.json")):
            copy = target / f"copy-{index}" / trace.parent.name / "trace.json"
            copy.parent.mkdir(parents=True)
            copy.write_text(trace.read_text() + " " * (index + 1))
            count += 1
    return count


@pytest.fixture
def shared_source(samples, tmp_path, settings):
    settings.TRACER_INGEST_IN_BACKGROUND = True
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "ingest"]}
    }
    settings.TRACER_INGEST_SHARE_FROM = 2
    settings.TRACER_SOURCE_ROOTS = [tmp_path / "roots"]
    top = tmp_path / "roots/traces"
    files = distinct_greentic_files(samples, top, 6)
    (top / "notes.txt").write_text("not a trace")
    return TraceSource.objects.create(path=str(top)), files


def test_a_source_rescan_of_many_changed_files_is_shared_each_file_read_once(
    shared_source, monkeypatch
):
    source, files = shared_source
    job = enqueue_ingest([source.path], kind="rescan", source=source)
    planner, read = threading.current_thread(), parallel.ingest_paths

    def slow_planner(paths, **options):  # so that the helper surely takes shares too
        if threading.current_thread() is planner:
            time.sleep(0.2)
        return read(paths, **options)

    monkeypatch.setattr(parallel, "ingest_paths", slow_planner)
    helped = []

    def helper() -> None:  # a second db_worker, running the helper task it finds queued
        try:
            tasks = DBTaskResult.objects.filter(task_path="traces.tasks.run_ingest_share")
            deadline = time.monotonic() + 60
            while not tasks.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            helped.append(run_ingest_share.call(*tasks.first().args_kwargs["args"]))
        finally:
            connections.close_all()

    thread = threading.Thread(target=helper)
    thread.start()
    run_ingest_job.call(job.pk)
    thread.join(timeout=60)

    job.refresh_from_db()
    source.refresh_from_db()
    report = source.last_scan_report
    assert job.status == "done" and job.summary == report
    assert report["files"] == {
        "ingested": files,
        "unchanged": 0,
        "failed": 0,
        "skipped": 1,
        "refused": 0,
    }
    assert report["runs"] == files and report["files_found"] == files + 1
    assert helped and helped[0] >= 1  # the helper read shares of the scan
    assert TraceFile.objects.filter(source=source, status="ok").count() == files
    assert Run.objects.count() == files and not IngestClaim.objects.exists()
    again = scans.rescan(source)
    assert again["files"]["unchanged"] == files and again["files"]["ingested"] == 0


def test_a_source_rescan_of_few_changed_files_is_read_by_the_job_alone(shared_source, settings):
    source, files = shared_source
    settings.TRACER_INGEST_SHARE_FROM = files + 1
    job = enqueue_ingest([source.path], kind="rescan", source=source)
    run_ingest_job.call(job.pk)
    source.refresh_from_db()
    assert source.last_scan_report["files"]["ingested"] == files
    assert not DBTaskResult.objects.filter(task_path="traces.tasks.run_ingest_share").exists()


def test_a_source_rescan_is_shared_by_two_db_worker_processes(shared_source, tmp_path):
    source, files = shared_source
    job = enqueue_ingest([source.path], kind="rescan", source=source)

    workers = [start_db_worker(tmp_path, name, roots=tmp_path / "roots") for name in ("a", "b")]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()

    job.refresh_from_db()
    source.refresh_from_db()
    assert job.status == "done", job.error
    assert source.last_scan_report["files"]["ingested"] == files
    assert source.last_scan_report["files"]["failed"] == 0
    assert TraceFile.objects.filter(source=source).count() == files == Run.objects.count()
    helpers = DBTaskResult.objects.filter(task_path="traces.tasks.run_ingest_share")
    assert helpers.count() == 3 and set(helpers.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert not IngestClaim.objects.exists()
