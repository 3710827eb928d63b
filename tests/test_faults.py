"""Load and faults, each bounded and on loopback; each test adds its row to the
"Load and faults" table of docs/RELIABILITY.md (the `reliability_rows` fixture).

- pages under read load (a real gunicorn server) while a large ingest runs in
  another process: every answer a 200, no "database is locked" (~10 s; a minute of
  it on demand: bench/load_test.py);
- a duckflux JSON rewritten hundreds of times (truncate + write) while
  `manage.py ingest --watch` reads it: one run, in its final state;
- a runs database written by another process while it is re-synced again and
  again: every run as the source says, once the writer stops;
- an ingest killed with SIGKILL midway, then run again: exact counts (the entities
  read model too), nothing duplicated, nothing missing.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from tests.test_read_model_causes import assert_read_model_is_the_recount as causes_exact
from tests.test_read_model_entities import recount as recount_entities
from tests.test_read_model_entities import stored as entity_counters
from tests.test_read_model_loops import assert_read_model_is_the_recount as loops_exact
from tests.test_read_model_runs import assert_read_models_are_the_recount
from tests.test_read_model_trends import assert_read_models_are_the_recount as trends_exact
from traces.ingest.loader import ingest_paths
from traces.models import Call, EntityLink, FailureCause, Run, Step, TraceFile, TypeBucket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from fault_writers import rewrite_duckflux  # noqa: E402
from generate_runs_db import generate_runs_db  # noqa: E402
from load_test import WriteProbe, manage, read_load_during_ingest, site_env  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

RUNS_STATUS = {"completed": "succeeded", "failed": "failed", "running": "running"}
DUCKFLUX_STATUS = {"success": "succeeded", "failure": "failed", "running": "running"}
REWRITES = 200
# 21 steps, loops included.
DUCKFLUX_SAMPLE = "duckflux/json/b2c0c4d4-ed5c-4e88-83ca-a371f130295a.json"


def duplicated(runs) -> int:
    return (
        runs.values("format", "origin", "external_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )


def wait_for(condition, seconds: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# --- pages under read load during a large ingest --------------------------------------------


def test_pages_answer_under_read_load_while_a_large_ingest_runs(
    tmp_path, samples, reliability_rows
):
    result = read_load_during_ingest(
        tmp_path,
        samples,
        seconds=6,
        threads=8,
        workers=2,
        size={"runs": 100, "steps": 4000, "calls": 6000},
    )
    load = result.load
    reliability_rows.add(
        "read-load",
        "read load (gunicorn, 2 workers, 8 clients) during a large ingest in another process",
        f"{load.requests} requests in {load.seconds:.0f} s ({load.rate:.0f}/s, "
        f"p95 {load.percentile(0.95):.0f} ms); {result.source_runs} runs ingested meanwhile",
        errors=load.errors + load.locked + len(result.writes.failures),
        lost=result.source_runs - result.stored_runs,
        duplicated=result.duplicated_runs,
        notes=f'"database is locked" shown {load.locked} times; the ingest took '
        f"{result.ingest_seconds:.1f} s (whole runs committed every 0.5 s): "
        f"{result.writes.summary()}",
    )
    assert load.requests >= 50, load.summary()
    assert load.errors == 0 and load.locked == 0, load.summary() + result.server_errors
    assert result.writes.failures == []
    assert result.stored_runs == result.source_runs and result.duplicated_runs == 0


def test_a_write_from_the_site_waits_under_a_second_while_a_big_database_ingests(tmp_path):
    """Issue 12's bound: a database commits whole runs every half second, so a write
    from the site (an upload, a login) waits for one batch at most, not for the whole
    database (20.8 s when it was one transaction). Written every 0.1 s meanwhile."""
    big = tmp_path / "big.sqlite"
    generate_runs_db(big, runs=300, steps=60000, calls=60000, links=5000, seed=1)
    (tmp_path / "site").mkdir()
    with WriteProbe(every=0.1) as writes:
        ingest = manage(site_env(tmp_path / "site"), "ingest", str(big))
        _out, errors = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, errors
    assert Run.objects.count() == 300
    # Each write waits for the batch it meets, so how many fit in the ingest varies
    # (18-30): a few are enough to have met its transactions.
    assert len(writes.waits) >= 5 and writes.failures == [], writes.summary()
    # The bound itself (≤ 1 s; 0.6-0.8 s here) is the benchmark's (bench/RESULTS.md §1b),
    # not a timed test's: this one fails a return to one transaction (10.6 s) whatever
    # the machine's load.
    assert max(writes.waits) <= 3.0, writes.summary()


# --- duckflux rewritten while watched -------------------------------------------------------


def _interrupted(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Its output after a Ctrl-C. One that outlives `timeout` is killed before the test
    fails: left running, it would go on writing into the next tests' database."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as late:
        process.send_signal(signal.SIGABRT)  # its threads' stacks, by faulthandler
        try:
            _out, errors = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, errors = process.communicate()
        message = f"still running {timeout} s after Ctrl-C; stderr: {errors[-6000:]}"
        raise AssertionError(message) from late


def test_a_duckflux_file_rewritten_hundreds_of_times_while_watched_ends_as_one_final_run(
    tmp_path, samples, reliability_rows
):
    final = json.loads((samples / DUCKFLUX_SAMPLE).read_text())
    watched = tmp_path / "watched"
    watched.mkdir()
    trace = watched / Path(DUCKFLUX_SAMPLE).name
    opening = {"execution": dict(final["execution"], status="running"), "steps": []}
    trace.write_text(json.dumps(opening))
    env = site_env(tmp_path / "site", PYTHONFAULTHANDLER="1")
    (tmp_path / "site").mkdir()
    # Its Ctrl-C heard even when the tests run as a shell's background job, which
    # ignores SIGINT for all its children.
    watcher = manage(
        env, "ingest", str(watched), "--watch", "--interval", "0.05", "--json",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert wait_for(lambda: Run.objects.exists(), 20), "the watcher never ingested the file"
        writes = rewrite_duckflux(
            trace, final, rewrites=REWRITES, pause=0.008, rng=random.Random(1)
        )
        expected_status = DUCKFLUX_STATUS[final["execution"]["status"]]

        def settled() -> bool:
            run = Run.objects.first()
            ok = TraceFile.objects.filter(path=str(trace.resolve()), status="ok").exists()
            return ok and run is not None and run.status == expected_status

        assert wait_for(settled, 20), "the final state was never ingested"
        time.sleep(0.3)  # a few more scans: nothing may change any more
    finally:
        out, errors = _interrupted(watcher, timeout=30)
    scans = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    half_written = sum(1 for scan in scans if scan["files"]["failed"])
    runs = Run.objects.all()
    run = runs.get()
    exact = run.fingerprint == _final_fingerprint(samples)
    reliability_rows.add(
        "duckflux-rewrites",
        "a duckflux JSON rewritten whole (truncate + write) while `ingest --watch` reads it",
        f"1 run, {writes} rewrites, {len(scans)} ingests that changed something",
        errors=int(run.status != expected_status) + int(not exact),
        lost=0 if runs.exists() else 1,
        duplicated=runs.count() - 1,
        notes=f"caught empty or half-written {half_written} times (read again at the next scan)",
    )
    assert runs.count() == 1 and run.status == expected_status
    assert exact and run.step_count == len(final["steps"]) and run.finished_at is not None
    assert watcher.returncode in (0, 1), errors  # 1: the last scan listed a failure


def _final_fingerprint(samples: Path) -> str:
    """The fingerprint of the final file read on its own (it changes with any content)."""
    from traces.ingest import duckflux

    (record,) = duckflux.parse(samples / DUCKFLUX_SAMPLE)
    return record.fingerprint


# --- a runs database written by another process during re-sync ------------------------------


def test_a_runs_database_written_during_resyncs_ends_consistent_with_its_source(
    tmp_path, reliability_rows
):
    source = tmp_path / "live" / "runs.sqlite"
    source.parent.mkdir()
    writer = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/fault_writers.py"), "runs-db", str(source),
         "--seconds", "2.5", "--pause", "0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ingests, failed = 0, []
    try:
        wait_for(source.exists, 10)
        deadline = time.monotonic() + 30
        while writer.poll() is None and time.monotonic() < deadline:
            report = ingest_paths([source])
            ingests += 1
            failed += [result.error for result in report.failed]
    finally:
        out, errors = writer.communicate(timeout=30)
    assert writer.returncode == 0, errors
    written = json.loads(out)
    final = ingest_paths([source])
    assert final.failed == []
    expected = _runs_in_source(source)
    stored = {
        run.external_id: (run.status, run.step_count) for run in Run.objects.filter(format="runs")
    }
    wrong = {key for key in expected.keys() & stored.keys() if expected[key] != stored[key]}
    runs = Run.objects.filter(format="runs")
    reliability_rows.add(
        "runs-db-writer",
        "a runs database written by another process while re-synced again and again",
        f"{len(expected)} runs from {written['changes']} writer transactions, {ingests} re-syncs",
        errors=len(wrong),
        lost=len(expected.keys() - stored.keys()),
        duplicated=duplicated(runs) + len(stored.keys() - expected.keys()),
        notes=f"re-syncs that found the writer holding the lock and said so: {len(failed)}",
    )
    assert ingests >= 3
    assert stored == expected
    assert_read_models_are_the_recount()


def _runs_in_source(path: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT r.id, r.status, (SELECT COUNT(*) FROM steps s WHERE s.run_id = r.id) FROM runs r"
    ).fetchall()
    conn.close()
    return {run_id: (RUNS_STATUS[status], steps) for run_id, status, steps in rows}


# --- an ingest killed midway ----------------------------------------------------------------


DATABASES = 3


def test_an_ingest_killed_midway_then_run_again_has_exact_counts(tmp_path, reliability_rows):
    """A directory of runs databases: each commits its runs in batches of whole runs,
    so a kill lands with some databases done, one part-way (whole runs only, the
    batch being written rolled back, the file not claimed as read) and some not begun."""
    big = tmp_path / "big"
    big.mkdir()
    counts = {"runs": 0, "steps": 0, "calls": 0, "links": 0}
    for seed in range(DATABASES):
        made = generate_runs_db(
            big / f"runs-{seed}.sqlite", runs=30, steps=1500, calls=2000, links=800, seed=seed
        )
        counts = {key: counts[key] + made[key] for key in counts}
    env = site_env(tmp_path / "site")
    (tmp_path / "site").mkdir()
    first = manage(env, "ingest", str(big))
    # Once the first database is in, kill it in the middle of the next one.
    wait_for(lambda: Run.objects.exists() or first.poll() is not None, 30, step=0.02)
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    _until_its_sessions_end()
    runs_before = Run.objects.count()
    # Batches of whole runs committed: each with its counts, none half-written.
    assert_every_read_model_is_the_recount()
    killed_entities_exact = entity_counters() == recount_entities()
    per_run = {}
    for database in sorted(big.glob("*.sqlite")):
        per_run |= _steps_per_run_in_source(database)
    half_runs = _runs_not_whole(per_run)
    claimed_early = _files_claimed_before_whole(big)

    again = manage(env, "ingest", str(big))
    _out, errors = again.communicate(timeout=120)
    assert again.returncode == 0, errors
    stored = {
        "runs": Run.objects.count(),
        "steps": Step.objects.count(),
        "calls": Call.objects.count(),
        "links": EntityLink.objects.count(),
    }
    mismatched = _runs_not_whole(per_run)
    # The read model is written in each run's transaction: none half-counted.
    entities_exact = killed_entities_exact and entity_counters() == recount_entities()
    reliability_rows.add(
        "sigkill",
        "an ingest killed with SIGKILL midway, then run again",
        f"{counts['runs']} runs, {counts['steps']} steps, {counts['calls']} calls in {DATABASES} "
        f"databases; killed with {runs_before} runs committed, each whole",
        errors=len(mismatched + half_runs + claimed_early)
        + sum(stored[key] != counts[key] for key in stored)
        + (not entities_exact),
        lost=max(0, counts["runs"] - stored["runs"]),
        duplicated=duplicated(Run.objects.all()) + max(0, stored["runs"] - counts["runs"]),
        notes=f"after the second ingest: {stored['runs']} runs, {stored['steps']} steps, "
        f"{stored['calls']} calls, {stored['links']} links; entity counters "
        f"{'exact' if entities_exact else 'NOT the recount'}",
    )
    assert 0 < runs_before < counts["runs"], "not killed midway"
    assert half_runs == [], "a run was committed without all its steps"
    assert claimed_early == [], "a database was recorded as read before all its runs were in"
    assert stored == counts
    assert mismatched == []
    assert entities_exact
    assert_every_read_model_is_the_recount()
    assert FailureCause.objects.exists() and TypeBucket.objects.exists()


def _until_its_sessions_end() -> None:
    """PostgreSQL: wait for the killed ingest's server sessions to end. A COMMIT sent
    just before the kill is still being carried out (its deferred foreign keys
    checked) after the client is gone: two reads a moment apart would see the runs
    before it and after it, and compare one with the other (CI saw a recount of
    failed steps committed after the read model was read)."""
    if connection.vendor == "postgresql":
        assert wait_for(lambda: _other_sessions() == 0, 30), "the killed ingest's session lives on"


def _other_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return cursor.fetchone()[0]


def assert_every_read_model_is_the_recount():
    """The runs' counts and bounds, the failure causes and slices, the type trends and
    the repeated steps' groups (the entities' counters are compared by the test)."""
    assert_read_models_are_the_recount()
    causes_exact()
    trends_exact()
    loops_exact()


def _runs_not_whole(steps_in_source: dict[str, int]) -> list[str]:
    return [
        run.external_id
        for run in Run.objects.annotate(rows=Count("steps"))
        if steps_in_source.get(run.external_id) != run.rows or run.step_count != run.rows
    ]


def _files_claimed_before_whole(directory: Path) -> list[str]:
    """Databases whose row says they were read (hash, mtime) while their runs are not all in:
    the next ingest would take them as unchanged and never finish them."""
    claimed = TraceFile.objects.exclude(sha256="").annotate(runs_in=Count("runs"))
    return [
        trace_file.path
        for trace_file in claimed
        if trace_file.runs_in != len(_steps_per_run_in_source(Path(trace_file.path)))
    ]


def _steps_per_run_in_source(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute("SELECT run_id, COUNT(*) FROM steps GROUP BY run_id").fetchall()
    conn.close()
    return dict(rows)
