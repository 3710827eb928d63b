"""Server time of every page, fragment and API endpoint at 1,000,000 steps, each
beside the bare SQL that the page needs.

    nice .venv/bin/python bench/bench_pages.py [--quick] [-n 20] [--only NAME,...]
         [--profile NAME] [--rebuild] [--analyze] [--scale N] [--jobs N] [--build-only]
    .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/bench_pages.py
    # 10,000,000 steps, kept between runs in a persistent cluster:
    nice .venv/bin/python scripts/with_postgres.py --keep /tmp/tracer-bench-data/pg-10m \
         .venv/bin/python bench/bench_pages.py --scale 10 --jobs 2

**The database** is built through our own ingest (`ingest_paths`), so every
summary (run step counts, child_count, failed_subtree, call/link counts, seq,
position, depth) is what the store computes. It holds the bench/_data.py mix:

- runs SQLite database: 2,000 runs, 460,000 nested steps (3 % failed with varied
  errors), 460,000 calls, 230,000 links (half to 100,000 `customer` entities drawn
  log-uniformly: `cus_000000` has thousands of links); every root step has the
  subject `account:acc_main`;
- one runs database holding a single run of 100,000 steps (the newest run);
- workflow.db + events.db: 10,000 executions, ~96,000 steps, ~423,000 log rows;
- traceos JSONL: 20,000 traces, ~196,000 steps;
- 10,000 duckflux JSON files (~95,000 steps) and 5,000 greentic files (~56,000 steps).

On SQLite the database is kept in $TRACER_BENCH_DATA/pages-db-*/ and reused by the
next run (`--rebuild` to build it again); on PostgreSQL (DATABASE_URL set) it is
built every time, unless the server is a kept cluster (`with_postgres.py --keep
DIR`, which sets TRACER_PG_KEEP=DIR): then what was built is noted in DIR and
reused. `--scale N` builds N times the mix (shards 0 .. N-1 of each data set, each
from its own seed: `_data.pages_mix_paths`); `--jobs N` (or any `--scale` > 1)
builds it with `manage.py ingest --jobs N`, one command per data set, timed. A
build that stopped part-way goes on from the data sets it had not finished. The
site runs with production settings (DEBUG off, manifest static files).

**Server time** is the time Django's test `Client` takes to return the response
(in-process: URL resolving, middleware, view, queries, template rendering), the
median of N requests after 2 warm-ups. Beside it: the time spent in the database
driver during those requests and the number of queries; and the median of the
**bare SQL**, hand-written queries for the data the page shows (same rows, same
columns, same order and limits; see `cases()` or `--list`), run through the same
connection with `cursor.execute` + `fetchall`; and "its queries alone": the SELECTs
the request ran, recorded once and replayed the same way (the SQL part of its server
time; `--explain NAME` prints them with their plans). The three alternate, so they
share the load.

Targets: ≤ 50 ms median and ≤ 2x the bare SQL; the 100,000-step run's page ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import PAGES_MIX, dataset, pages_environment, pages_mix_paths  # noqa: E402

ON_POSTGRES = bool(os.environ.get("DATABASE_URL", "").startswith("postgres"))


def _early_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 steps instead")
    parser.add_argument("-n", type=int, default=20, help="requests per page (median)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--profile", default="", help="profile one request of these cases")
    parser.add_argument("--profile-sort", default="tottime", help="cumulative or tottime")
    parser.add_argument("--rebuild", action="store_true", help="build the SQLite database again")
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE first (SQLite)")
    parser.add_argument("--list", action="store_true", help="list the cases and their SQL")
    parser.add_argument("--explain", default="", help="time and EXPLAIN each query these cases ran")
    parser.add_argument("--scale", type=int, default=1, help="N times the 1,000,000-step mix")
    parser.add_argument(
        "--jobs", type=int, default=0, help="build with `manage.py ingest --jobs N` (default 2 "
        "when --scale > 1, else the in-process ingest)",
    )  # fmt: skip
    parser.add_argument(
        "--target-ms", type=float, default=0,
        help="page target (default 50 ms; 100 ms with --scale > 1, issue 13's 10 M-step target)",
    )  # fmt: skip
    parser.add_argument("--build-only", action="store_true", help="build (or reuse), then stop")
    parser.add_argument(
        "--as-is", action="store_true",
        help="measure the database as it is (no build; e.g. one still being built elsewhere)",
    )  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = _early_args()
    HOME = pages_environment(ARGS.quick, ARGS.scale)
    if HOME is not None and ARGS.rebuild:
        for leftover in HOME.glob("tracer.sqlite3*"):
            leftover.unlink()
        (HOME / ".built").unlink(missing_ok=True)
    if HOME is not None and not (HOME / ".built").exists():
        for leftover in HOME.glob("tracer.sqlite3*"):
            leftover.unlink()

import _setup  # noqa: E402, F401  (Django, migrated)
from _measure import machine_lines, median, profile_text, table  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from traces.ingest.loader import ingest_paths  # noqa: E402
from traces.models import Call, EntityCounter, EntityLink, LogEntry, Run, Step  # noqa: E402

PAGE_TARGET_S = 0.050
BIG_RUN_TARGET_S = 0.200
RATIO_TARGET = 2.0


# --- the database ---------------------------------------------------------------------------


def build_marker(quick: bool, home: Path | None, scale: int) -> Path | None:
    """Where what was built is noted: the SQLite database's folder, or a kept
    PostgreSQL cluster's (None: a throwaway server, built every time)."""
    if home is not None:
        return home / ".built"
    kept = os.environ.get("TRACER_PG_KEEP")
    if kept:
        return Path(kept) / f".built-{'quick' if quick else 'full'}-x{scale}"
    return None


def build(quick: bool, home: Path | None, scale: int = 1, jobs: int = 0) -> dict:
    import json

    marker = build_marker(quick, home, scale)
    if marker and marker.exists():
        return json.loads(marker.read_text())
    if scale > 1 or jobs:
        built = build_with_command(quick, scale, jobs or 2, marker)
        if marker:
            marker.write_text(json.dumps(built))
        return built
    built = {"ingest_seconds": {}}
    for name in PAGES_MIX:
        path, _made = dataset(name, quick, log=lambda m: print(m, file=sys.stderr))
        start = time.perf_counter()
        report = ingest_paths([path])
        took = time.perf_counter() - start
        summary = report.summary()
        assert not summary["errors"], summary["errors"][:3]
        built["ingest_seconds"][name] = round(took, 1)
        print(f"ingested {name}: {summary['steps']:,} steps in {took:.0f} s", file=sys.stderr)
    built.update(counts())
    if marker:
        marker.write_text(json.dumps(built))
    return built


def build_with_command(quick: bool, scale: int, jobs: int, marker: Path | None) -> dict:
    """The mix at `scale` times its size through `manage.py ingest --jobs N`, one
    command per data set (its shards together), each timed; the progress is noted
    beside the marker so that a stopped build goes on where it was."""
    import json
    import subprocess

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    partial = marker.with_name(marker.name + ".partial") if marker else None
    built = {"scale": scale, "jobs": jobs, "ingest_seconds": {}, "ingested": {}}
    if partial and partial.exists():
        built = json.loads(partial.read_text())
    manage = HERE.parent / "manage.py"
    for name in PAGES_MIX:
        if name in built["ingest_seconds"]:
            log(f"{name}: ingested before ({built['ingest_seconds'][name]} s), skipped")
            continue
        paths = pages_mix_paths(quick, scale, log=log, only=name)[name]
        command = [sys.executable, str(manage), "ingest", "--jobs", str(jobs), "--json"]
        log(f"ingesting {name}: {len(paths)} paths, --jobs {jobs}")
        start = time.perf_counter()
        # Its stderr (a file's error, a worker's traceback) goes to ours, as it happens.
        done = subprocess.run([*command, *map(str, paths)], stdout=subprocess.PIPE, text=True)
        took = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"ingest of {name} failed ({done.returncode}): {done.stdout[-2000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        built["ingest_seconds"][name] = round(took, 1)
        built["ingested"][name] = {k: summary.get(k) for k in ("runs", "steps", "calls", "links")}
        log(f"ingested {name}: {summary.get('steps'):,} steps in {took:.0f} s "
            f"({summary.get('steps', 0) / took:,.0f} steps/s)")  # fmt: skip
        if partial:
            partial.write_text(json.dumps(built))
    start = time.perf_counter()
    built.update(counts())
    built["count_seconds"] = round(time.perf_counter() - start, 1)
    built["build_seconds"] = round(sum(built["ingest_seconds"].values()), 1)
    built["sizes"] = database_sizes()
    log(f"built: {built}")
    return built


def database_sizes(top: int = 12) -> dict:
    """PostgreSQL: pg_database_size() and the biggest tables (with their indexes and
    TOAST); empty on SQLite."""
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        total = cursor.fetchone()[0]
        cursor.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), "
            "pg_indexes_size(c.oid), c.reltuples::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = 'public' "
            "ORDER BY pg_total_relation_size(c.oid) DESC LIMIT %s",
            [top],
        )
        tables = [
            {"table": name, "total": t, "heap": h, "indexes": i, "rows": rows}
            for name, t, h, i, rows in cursor.fetchall()
        ]
    return {"database": total, "tables": tables}


def _size(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.0f} MiB"


def counts() -> dict:
    return {
        "runs": Run.objects.count(),
        "steps": Step.objects.count(),
        "failed_steps": Step.objects.filter(status="failed").count(),
        "calls": Call.objects.count(),
        "links": EntityLink.objects.count(),
        "logs": LogEntry.objects.count(),
    }


# --- what to request ------------------------------------------------------------------------


def _one(sql: str, params=()) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@dataclass
class Targets:
    big_run: int
    big_steps: int
    typical_run: int
    wf_run: int | None  # None: no workflow run (a database still being built)
    expand_key: str
    expand_id: int
    panel_key: str
    panel_id: int
    hot_customer: str
    one_link_entity: tuple[str, str]
    failed_cursor: str
    busy_type: str
    compare_run: int = 0
    compare_big: int = 0
    searches: dict = field(default_factory=dict)  # what the search cases look for
    newest_failure: datetime | None = None  # "now" for the failing-now strip
    # The big run's timeline zoomed (§13d): (from_ms, to_ms, from, to as stored) of a
    # thousandth of its axis in the middle, and of its last hundredth.
    zoom_middle: tuple = ()
    zoom_end: tuple = ()
    # "now" a minute after the newest failure of a run whose times are estimated
    # (greentic: the file's time, the day the store was built): the strip's and the
    # failed-steps lists' windows full of failures dated by the file's time.
    newest_estimated_failure: datetime | None = None


def find_targets(client: Client) -> Targets:
    big_run, big_steps = _one(
        "SELECT id, step_count FROM traces_run ORDER BY step_count DESC, id LIMIT 1"
    )
    typical_run = _one(
        "SELECT id FROM traces_run WHERE format = 'runs' AND step_count < 1000 "
        "ORDER BY started_at DESC, id DESC LIMIT 1"
    )[0]
    wf_run = (_one(
        "SELECT id FROM traces_run WHERE format = 'workflow' "
        "ORDER BY log_count DESC, started_at DESC, id DESC LIMIT 1"
    ) or [None])[0]  # fmt: skip
    expand_id, expand_key = _one(
        "SELECT id, key FROM traces_step WHERE run_id = %s AND parent_id IS NULL "
        "ORDER BY child_count DESC, id LIMIT 1",
        [big_run],
    )
    panel_id, panel_key = _one(
        "SELECT id, key FROM traces_step WHERE run_id = %s AND depth >= 2 AND link_count > 0 "
        "ORDER BY call_count DESC, id LIMIT 1",
        [big_run],
    )
    hot = _one(
        "SELECT entity_id FROM traces_entitylink WHERE entity_type = 'customer' "
        "GROUP BY entity_id ORDER BY COUNT(*) DESC, entity_id LIMIT 1"
    )[0]
    one = _one(
        "SELECT entity_type, entity_id FROM traces_entitylink WHERE entity_type = 'transaction' "
        "ORDER BY id DESC LIMIT 1"
    )
    first = client.get("/api/steps", {"status": "failed"}).json()
    # Compared with the big run: the newest other run of its type, and another big run
    # of its type if the database has one (bench/RESULTS.md §11f says how to add it).
    same_type = (
        "SELECT id FROM traces_run WHERE type = (SELECT type FROM traces_run WHERE id = %s) "
        "AND id <> %s AND step_count {} 10000 ORDER BY started_at DESC, id DESC LIMIT 1"
    )
    compare_run = _one(same_type.format("<"), [big_run, big_run])[0]
    other_big = _one(same_type.format(">="), [big_run, big_run])
    busy_type = _one(
        "SELECT run_type FROM traces_typebucket GROUP BY run_type ORDER BY COUNT(*) DESC LIMIT 1"
    )[0]
    return Targets(
        big_run, big_steps, typical_run, wf_run, expand_key, expand_id, panel_key, panel_id,
        hot, one, first["next"], busy_type, compare_run, other_big[0] if other_big else 0,
        search_targets(typical_run, expand_id, panel_key, hot, wf_run), newest_failure(),
        *_zoom_windows(big_run), newest_failure(estimated=True),
    )  # fmt: skip


def search_targets(typical_run, expand_id, panel_key, hot, wf_run) -> dict:
    """Words as a user pastes them: ids (a run's, a step's, an entity's), a step name
    shared by thousands of steps, a word of one failure's message, a log word."""
    run_id = _one("SELECT external_id FROM traces_run WHERE id = %s", [typical_run])[0]
    name = _one("SELECT name FROM traces_step WHERE id = %s", [expand_id])[0]
    error = _one(
        "SELECT error FROM traces_step WHERE status = 'failed' AND error <> '' "
        "ORDER BY started_at DESC, id DESC LIMIT 1"
    )[0]
    found = {"run id": run_id, "step id": panel_key, "entity id": hot,
             "type:id": f"customer:{hot}", "common step name": name,
             "a failure's words": " ".join(error.split()[:3]), "no match": "zzqqxxy"}  # fmt: skip
    if wf_run:
        message = _one("SELECT message FROM traces_logentry WHERE run_id = %s ORDER BY id "
                       "LIMIT 1", [wf_run])[0]  # fmt: skip
        found["log word"] = max(message.split(), key=len)
    return found


def newest_failure(*, estimated: bool = False) -> datetime | None:
    """A minute after the newest failed step: the failing-now strip's "now" that
    shows what a store under load holds (the generated failures are not recent).
    `estimated`: of the failed steps of runs whose times are estimated (greentic's,
    which have no start: their failure is their run's time, the file's)."""
    if estimated:
        newest = _one(
            "SELECT MAX(s.failed_at) FROM traces_step s JOIN traces_run r ON r.id = s.run_id "
            "WHERE s.status = 'failed' AND r.times_estimated"
        )[0]
    else:
        newest = _one("SELECT MAX(started_at) FROM traces_step WHERE status = 'failed'")[0]
    if newest is None:
        return None
    newest = newest if isinstance(newest, datetime) else datetime.fromisoformat(str(newest))
    return newest + timedelta(minutes=1)


def _zoom_windows(run_id: int) -> tuple[tuple, tuple]:
    """Two windows of the run's time axis: (from_ms, to_ms, low, high as the database
    compares them)."""
    from traces.queries.timeline import ms_between, time_axis

    run = Run.objects.get(pk=run_id)
    start, end = time_axis(run)
    span = ms_between(start, end)
    adapt = connection.ops.adapt_datetimefield_value

    def window(lo: float, hi: float) -> tuple:
        lo, hi = round(lo, 3), round(hi, 3)
        return (lo, hi, adapt(start + timedelta(milliseconds=lo)),
                adapt(start + timedelta(milliseconds=hi)))  # fmt: skip

    return window(span * 0.5, span * 0.501), window(span * 0.99, span)


# The columns each page reads (it never reads the big JSON values of lists).
def _cols(model, prefix: str = "", exclude=()) -> str:
    names = [f.column for f in model._meta.concrete_fields if f.column not in exclude]
    return ", ".join(f"{prefix}{name}" for name in names)


RUN_VALUES = ("input", "output", "attributes", "output_counters", "completeness")
STEP_ROW = (
    "id, run_id, parent_id, key, seq, position, depth, name, type, status, raw_status, "
    "started_at, finished_at, duration_ms, attempt, retries, retry_of, loop_index, "
    "items_total, items_processed, items_succeeded, items_failed, truncated, never_closed, "
    "synthetic, child_count, failed_subtree, call_count, link_count"
)
STEP_LIST = (
    "s.id, s.run_id, s.key, s.name, s.type, s.status, s.started_at, s.duration_ms, "
    "s.entity_type, s.entity_id, r.id, r.name, r.external_id, r.format, r.type, r.status, "
    "r.started_at, substr(s.error, 1, 2000), length(s.error)"
)


@dataclass
class Case:
    name: str
    label: str
    url: str
    sql: list[tuple[str, list]]
    params: dict = field(default_factory=dict)
    htmx_target: str | None = None  # None: a full page; "": htmx without a target
    api: bool = False
    target_s: float = PAGE_TARGET_S
    now: datetime | None = None  # the server's clock during the request
    may_redirect: bool = False  # the search jumps to an exact id's page


def cases(t: Targets) -> list[Case]:
    run_cols = _cols(Run, "r.", RUN_VALUES)
    run_all = _cols(Run, "r.")
    file_cols = "f.id, f.path, f.display_name, f.format, f.size, f.mtime, f.status"
    run_row = (
        f"SELECT {run_cols}, {file_cols} FROM traces_run r "
        "LEFT JOIN traces_tracefile f ON f.id = r.source_file_id WHERE r.id = %s"
    )
    runs_page = (
        f"SELECT {_cols(Run, '', RUN_VALUES)} FROM traces_run "
        "ORDER BY listed_at DESC NULLS LAST, id DESC LIMIT 51"
    )
    runs_failed_page = (
        f"SELECT {_cols(Run, '', RUN_VALUES)} FROM traces_run WHERE status = 'failed' "
        "ORDER BY listed_at DESC NULLS LAST, id DESC LIMIT 51"
    )
    status_counts = "SELECT status, COUNT(*) FROM traces_run GROUP BY status"
    failed_status_count = (
        "SELECT status, COUNT(*) FROM traces_run WHERE status = 'failed' GROUP BY status"
    )
    run_types = "SELECT DISTINCT type FROM traces_run WHERE type <> '' ORDER BY type LIMIT 500"
    roots = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200) FROM traces_step "
        "WHERE run_id = %s AND parent_id IS NULL ORDER BY position, id LIMIT 201"
    )
    step_by_key = f"SELECT {STEP_ROW} FROM traces_step WHERE run_id = %s AND key = %s"
    children = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200) FROM traces_step "
        "WHERE run_id = %s AND parent_id = %s ORDER BY position, id LIMIT 201"
    )
    flat = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200) FROM traces_step "
        "WHERE run_id = %s ORDER BY seq, id LIMIT 301"
    )
    flat_with_parent_keys = (
        "SELECT s.id, s.key, s.seq, s.depth, s.name, s.type, s.status, s.started_at, "
        "s.finished_at, s.duration_ms, s.child_count, s.call_count, s.link_count, p.key "
        "FROM traces_step s LEFT JOIN traces_step p ON p.id = s.parent_id "
        "WHERE s.run_id = %s ORDER BY s.seq, s.id LIMIT 301"
    )
    time_bounds = "SELECT MIN(started_at), MAX(finished_at) FROM traces_step WHERE run_id = %s"
    # The critical path: a window of the steps on it, from the partial index.
    critical = (
        "SELECT id, run_id, parent_id, key, seq, depth, name, type, status, started_at, "
        "finished_at, duration_ms, critical_ms FROM traces_step "
        "WHERE run_id = %s AND critical_ms IS NOT NULL ORDER BY seq, id LIMIT 301"
    )
    panel_step = (
        f"SELECT s.*, {run_cols}, {file_cols} FROM traces_step s "
        "JOIN traces_run r ON r.id = s.run_id "
        "LEFT JOIN traces_tracefile f ON f.id = r.source_file_id "
        "WHERE s.run_id = %s AND s.key = %s"
    )
    ancestors = (
        "WITH RECURSIVE chain(id, parent_id, key, name, status, depth) AS ("
        " SELECT p.id, p.parent_id, p.key, p.name, p.status, p.depth FROM traces_step s"
        " JOIN traces_step p ON p.id = s.parent_id WHERE s.id = %s"
        " UNION ALL SELECT p.id, p.parent_id, p.key, p.name, p.status, p.depth"
        " FROM traces_step p JOIN chain c ON p.id = c.parent_id"
        ") SELECT * FROM chain"
    )
    calls = "SELECT * FROM traces_call WHERE step_id = %s ORDER BY position, id LIMIT 200"
    links = (
        "SELECT * FROM traces_entitylink WHERE step_id = %s "
        "ORDER BY link_type, entity_type, entity_id, id LIMIT 200"
    )
    step_logs = (
        "SELECT * FROM traces_logentry WHERE step_id = %s AND duplicate = false "
        "ORDER BY seq, id LIMIT 200"
    )
    panel = [
        (panel_step, [t.big_run, t.panel_key]),
        (ancestors, [t.panel_id]),
        (calls, [t.panel_id]),
        (links, [t.panel_id]),
        (step_logs, [t.panel_id]),
    ]
    failed_where = "s.synthetic = false AND s.status = 'failed'"
    failed_rows = (
        f"SELECT {STEP_LIST} FROM traces_step s JOIN traces_run r ON r.id = s.run_id "
        f"WHERE {failed_where} ORDER BY s.failed_at DESC NULLS LAST, s.id DESC LIMIT 51"
    )
    failed_rows_after = (
        f"SELECT {STEP_LIST} FROM traces_step s JOIN traces_run r ON r.id = s.run_id "
        f"WHERE {failed_where} AND (s.failed_at < %s OR (s.failed_at = %s AND s.id < %s) "
        "OR s.failed_at IS NULL) ORDER BY s.failed_at DESC NULLS LAST, s.id DESC LIMIT 51"
    )
    failed_count = (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM traces_step s WHERE {failed_where} LIMIT 10001) t"
    )
    # The causes box: the read model's failures per cause and day (formats and run
    # types summed), then the newest message of each of the top 20 causes.
    groups = (
        "SELECT cause, day, SUM(count), MIN(first_seen), MAX(last_seen) "
        "FROM traces_failurecause GROUP BY cause, day"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT cause FROM traces_failurecause GROUP BY cause "
            "ORDER BY SUM(count) DESC, cause LIMIT 20"
        )
        top_causes = [row[0] for row in cursor.fetchall()]
    examples = " UNION ALL ".join(
        "SELECT * FROM (SELECT error_cause, substr(error, 1, 500) FROM traces_step "
        "WHERE error_cause = %s AND NOT (error_cause = '') AND synthetic = false "
        f"ORDER BY failed_at DESC, id DESC LIMIT 1) AS example{index}"
        for index in range(len(top_causes))
    )
    cursor_row = _one(
        "SELECT failed_at, id FROM traces_step s WHERE s.synthetic = false "
        "AND s.status = 'failed' ORDER BY failed_at DESC NULLS LAST, id DESC LIMIT 1 OFFSET 49"
    )
    after = [cursor_row[0], cursor_row[0], cursor_row[1]]
    # A chosen cause (the most frequent): the table collapsed to it, its breakdown by
    # run type and step name from FailureSlice, its rows through its index.
    top_cause = top_causes[0] if top_causes else ""
    cause_rows = (
        f"SELECT {STEP_LIST} FROM traces_step s JOIN traces_run r ON r.id = s.run_id "
        f"WHERE {failed_where} AND s.error_cause = %s "
        "ORDER BY s.failed_at DESC NULLS LAST, s.id DESC LIMIT 51"
    )
    breakdown = (
        "SELECT run_type, step_name, SUM(count) FROM traces_failureslice WHERE cause = %s "
        "GROUP BY run_type, step_name"
    )
    week_ago = datetime.now(UTC) - timedelta(days=7)
    slots_week = (
        "SELECT cause, slot, SUM(count), MIN(first_seen), MAX(last_seen) "
        "FROM traces_failureslice WHERE slot >= %s AND slot <> %s GROUP BY cause, slot"
    )
    no_slot = datetime(1, 1, 1, tzinfo=UTC)

    def entity_sql(entity_type: str, entity_id: str, with_subjects: bool) -> list:
        key = [entity_type, entity_id]
        # Its figures are kept at ingest (EntityCounter); its lists are read newest first
        # from the (type, id, stored time, id) indexes.
        summary = (
            f"SELECT {_cols(EntityCounter)} FROM traces_entitycounter "
            "WHERE entity_type = %s AND entity_id = %s"
        )
        external = (
            "SELECT external_id FROM traces_entitylink WHERE entity_type = %s "
            "AND entity_id = %s AND external_id <> '' ORDER BY seen_at DESC, id DESC LIMIT 50"
        )
        link_page = (
            "SELECT l.id, l.link_type, l.external_id, l.created_at, s.id, s.run_id, s.key, "
            "s.name, s.status, s.started_at, s.duration_ms, r.id, r.name, r.external_id, "
            "r.status, r.format, r.started_at, l.seen_at FROM traces_entitylink l "
            "JOIN traces_step s ON s.id = l.step_id JOIN traces_run r ON r.id = l.run_id "
            "WHERE l.entity_type = %s AND l.entity_id = %s "
            "ORDER BY l.seen_at DESC NULLS LAST, l.id DESC LIMIT 51"
        )
        subject_page = (
            f"SELECT {STEP_LIST}, s.entity_seen_at FROM traces_step s "
            "JOIN traces_run r ON r.id = s.run_id WHERE s.entity_type = %s AND s.entity_id = %s "
            "ORDER BY s.entity_seen_at DESC NULLS LAST, s.id DESC LIMIT 51"
        )
        queries = [(summary, key), (external, key)]
        queries.append((link_page, key))
        if with_subjects:
            queries.append((subject_page, key))
        return queries

    logs_page = (
        "SELECT l.id, l.run_id, l.step_id, l.seq, l.time, l.level, l.message, l.fields, "
        "l.duplicate, s.id, s.key, s.name FROM traces_logentry l "
        "LEFT JOIN traces_step s ON s.id = l.step_id "
        "WHERE l.run_id = %s AND l.duplicate = false ORDER BY l.seq, l.id LIMIT 201"
    )
    levels = "SELECT DISTINCT level FROM traces_logentry WHERE run_id = %s LIMIT 50"
    entity_types = "SELECT entity_type, links, subjects FROM traces_entitytypecounter"
    entities_page = (
        f"SELECT {_cols(EntityCounter)} FROM traces_entitycounter "
        "ORDER BY entity_type, entity_id LIMIT 51"
    )
    customers_page = (
        f"SELECT {_cols(EntityCounter)} FROM traces_entitycounter WHERE entity_type = 'customer' "
        "ORDER BY entity_type, entity_id LIMIT 51"
    )
    # Two runs compared (queries/compare.py): the runs, the summary (the smaller run
    # joined to the other by path, the other's count, its first step the smaller
    # lacks), a window of each in path order.
    compare_runs = f"SELECT {_cols(Run, '', RUN_VALUES)} FROM traces_run WHERE id IN (%s, %s)"
    duration_changed = (
        "(s.duration_ms IS NOT NULL AND o.duration_ms IS NOT NULL "
        "AND ABS(s.duration_ms - o.duration_ms) >= 100 AND (o.duration_ms = 0 "
        "OR ABS(s.duration_ms - o.duration_ms) * 100.0 >= 20 * o.duration_ms))"
    )
    compare_join = (
        "SELECT COUNT(o.id), "
        "SUM(CASE WHEN o.id IS NOT NULL AND o.status <> s.status THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN o.id IS NOT NULL AND o.status = s.status AND {duration_changed} "
        "THEN 1 ELSE 0 END), "
        f"MIN(CASE WHEN o.id IS NULL OR o.status <> s.status OR {duration_changed} "
        "THEN s.path END) "
        "FROM traces_step s LEFT JOIN traces_step o ON o.run_id = %s AND o.path = s.path "
        "AND o.synthetic = false WHERE s.run_id = %s AND s.synthetic = false"
    )
    compare_first = (
        "SELECT o.path FROM traces_step o WHERE o.run_id = %s AND o.synthetic = false "
        "AND NOT EXISTS (SELECT 1 FROM traces_step s WHERE s.run_id = %s AND s.path = o.path "
        "AND s.synthetic = false) ORDER BY o.path LIMIT 1"
    )
    compare_window = (
        "SELECT path, id, key, name, type, status, duration_ms, started_at, loop_index, "
        "items_total, items_processed, items_succeeded, items_failed, child_count "
        "FROM traces_step WHERE run_id = %s AND synthetic = false ORDER BY path LIMIT 201"
    )
    small = t.compare_run
    compare_summary = [
        (compare_runs, [small, t.big_run]),
        (compare_join, [t.big_run, small]),
        (compare_first, [t.big_run, small]),
    ]
    compare_sql = [*compare_summary, (compare_window, [small]), (compare_window, [t.big_run])]
    # Two big runs: the page without the summary (it follows), then the summary alone.
    other = t.compare_big
    compare_big_sql = [
        (compare_runs, [other, t.big_run]),
        (compare_window, [other]),
        (compare_window, [t.big_run]),
    ]
    compare_big_summary = [
        (compare_runs, [other, t.big_run]),
        (compare_join, [t.big_run, other]),
        (compare_first, [t.big_run, other]),
    ]
    big_pair = {"a": other, "b": t.big_run}
    compare_big_cases = [
        Case("compare_big", f"compare two big runs ({other} and {t.big_run}), first window",
             "/compare/", compare_big_sql, params=big_pair),
        Case("compare_big_summary", "compare two big runs: the summary (htmx, after the page)",
             "/compare/", compare_big_summary, params={**big_pair, "summary": "1"},
             htmx_target="compare-summary"),
        Case("api_compare_big", "GET /api/runs/compare, two big runs (no summary)",
             "/api/runs/compare", compare_big_sql, params=big_pair, api=True),
    ] if other else []  # fmt: skip
    # Run types: RunCount's rows and each type's newest run (an index seek per type);
    # a type's trends: its last hour, its buckets of the 30 days up to it, its steps.
    type_counts = "SELECT run_type, format, status, count FROM traces_runcount WHERE run_type <> ''"
    last_runs = (
        "SELECT t.run_type, (SELECT r.id FROM traces_run r WHERE r.type = t.run_type "
        "AND r.started_at IS NOT NULL ORDER BY r.started_at DESC, r.id DESC LIMIT 1) "
        "FROM (SELECT DISTINCT run_type FROM traces_runcount WHERE run_type <> '') t"
    )
    with connection.cursor() as cursor:
        cursor.execute(last_runs)
        last_ids = [row[1] for row in cursor.fetchall() if row[1]]
    newest_runs = (
        "SELECT id, name, external_id, status, started_at, source_updated_at, times_estimated, "
        f"format, type FROM traces_run WHERE id IN ({', '.join(['%s'] * len(last_ids))})"
    )
    last_hour = _one(
        "SELECT MAX(hour) FROM traces_typebucket WHERE run_type = %s AND hour > '0001-01-01'",
        [t.busy_type],
    )[0]
    last_hour = datetime.fromisoformat(str(last_hour)).replace(tzinfo=None)
    first_day = (last_hour - timedelta(days=29)).replace(hour=0)
    bucket_rows = (
        "SELECT hour, status, bin, SUM(count) FROM traces_typebucket WHERE run_type = %s "
        "AND hour >= %s AND hour < %s GROUP BY hour, status, bin"
    )
    step_rows = (
        "SELECT name, SUM(steps), SUM(failed), SUM(timed), SUM(total_us) FROM traces_typestep "
        "WHERE run_type = %s AND day >= %s AND day <= %s GROUP BY name "
        "ORDER BY SUM(total_us) * 1.0 / SUM(timed) DESC LIMIT 10"
    )
    trend_params = [t.busy_type, str(first_day), str(last_hour + timedelta(hours=1))]
    step_params = [t.busy_type, str(first_day.date()), str(last_hour.date())]
    trends_sql = [
        (bucket_rows, trend_params), (step_rows, step_params), (step_rows, step_params),
    ]  # fmt: skip
    cus = ("customer", t.hot_customer)
    acc = ("account", "acc_main")
    big, wf = t.big_run, t.wf_run
    find_cases = run_find_cases(t, run_row)
    return [
        # --- pages and fragments ---
        Case("run_row", "floor: one runs-list row (htmx poll of a running run)",
             f"/runs/{t.typical_run}/row/",
             [(f"SELECT {_cols(Run, '', RUN_VALUES)} FROM traces_run WHERE id = %s",
               [t.typical_run])], htmx_target=""),
        Case("runs", "runs list", "/", [(runs_page, []), (status_counts, []), (run_types, [])]),
        Case("runs_failed", "runs list, status=failed", "/",
             [(runs_failed_page, []), (failed_status_count, []), (run_types, [])],
             params={"status": "failed"}),
        Case("run_typical", f"run page (runs run {t.typical_run}, tree)",
             f"/runs/{t.typical_run}/", [(run_row, [t.typical_run]), (roots, [t.typical_run])]),
        Case("run_big", f"run page, the {t.big_steps:,}-step run (tree)", f"/runs/{big}/",
             [(run_row, [big]), (roots, [big])], target_s=BIG_RUN_TARGET_S),
        Case("expand", "tree expand (htmx: a step's children)",
             f"/runs/{big}/children/{t.expand_key}/",
             [(step_by_key, [big, t.expand_key]), (children, [big, t.expand_id])],
             htmx_target=""),
        Case("timeline", f"timeline tab, the {t.big_steps:,}-step run", f"/runs/{big}/timeline/",
             [(run_row, [big]), (flat, [big]), (time_bounds, [big])]),
        Case("critical_path", f"critical path tab, the {t.big_steps:,}-step run",
             f"/runs/{big}/", [(run_row, [big]), (critical, [big])],
             params={"tab": "critical"}),
        Case("panel", "step panel (htmx)", f"/runs/{big}/steps/{t.panel_key}/", panel,
             htmx_target="step-panel"),
        Case("failed", "failed steps page (rows + error groups)", "/steps/",
             [(failed_rows, []), (failed_count, []), (groups, []), (examples, top_causes)],
             params={"status": "failed"}),
        Case("failed_cause", "failed steps, one cause chosen (collapsed box + breakdown)",
             "/steps/", [(failed_rows, []), (groups, []), (breakdown, [top_cause]),
                         (cause_rows, [top_cause])],
             params={"status": "failed", "error_group": top_cause}),
        Case("failed_1h", "failed steps, last 1 h (FailureSlice)", "/steps/",
             [(failed_rows, []), (slots_week, [week_ago, no_slot])],
             params={"status": "failed", "since": "1h"}),
        Case("failed_24h", "failed steps, last 24 h (FailureSlice)", "/steps/",
             [(failed_rows, []), (slots_week, [week_ago, no_slot])],
             params={"status": "failed", "since": "24h"}),
        Case("failed_7d", "failed steps, last 7 d (FailureSlice)", "/steps/",
             [(failed_rows, []), (slots_week, [week_ago, no_slot])],
             params={"status": "failed", "since": "7d"}),
        Case("failed_cause_7d", "failed steps, last 7 d, one cause chosen", "/steps/",
             [(cause_rows, [top_cause]), (slots_week, [week_ago, no_slot]),
              (breakdown, [top_cause])],
             params={"status": "failed", "since": "7d", "error_group": top_cause}),
        Case("failed_rows", "failed steps, page 2 (htmx rows)", "/steps/",
             [(failed_rows_after, after), (failed_count, [])],
             params={"status": "failed", "after": t.failed_cursor}, htmx_target="step-rows"),
        Case("entities", "entities list (types + first page)", "/entities/",
             [(entity_types, []), (entities_page, [])]),
        Case("entities_customer", "entities list, type=customer", "/entities/",
             [(entity_types, []), (customers_page, [])], params={"type": "customer"}),
        Case("entity_hot", f"entity page, customer {t.hot_customer} (most links)",
             f"/entities/customer/{t.hot_customer}/", entity_sql(*cus, False)),
        Case("entity_one", "entity page, a transaction (1 link)",
             f"/entities/{t.one_link_entity[0]}/{t.one_link_entity[1]}/",
             entity_sql(*t.one_link_entity, False)),
        Case("entity_subject", "entity page, account acc_main (subject of every root step)",
             "/entities/account/acc_main/", entity_sql(*acc, True)),
        Case("logs", f"logs tab (workflow run {wf})", f"/runs/{wf}/logs/",
             [(run_row, [wf]), (logs_page, [wf]), (levels, [wf])]),
        Case("compare", f"compare runs {t.compare_run} and {big} (the {t.big_steps:,}-step "
             "run), first window", "/compare/", compare_sql,
             params={"a": t.compare_run, "b": big}),
        Case("compare_summary", "compare: the summary alone (htmx; after the page when both "
             "runs are big)", "/compare/", compare_summary,
             params={"a": t.compare_run, "b": big, "summary": "1"},
             htmx_target="compare-summary"),
        Case("types", "run types list", "/types/",
             [(type_counts, []), (last_runs, []), (newest_runs, last_ids)]),
        Case("type_trends", f"type trends page ({t.busy_type}, 30 days)",
             f"/types/{t.busy_type}/", trends_sql),
        *search_cases(t),
        # --- API ---
        Case("api_runs", "GET /api/runs", "/api/runs", [(runs_page, []), (status_counts, [])],
             api=True),
        Case("api_run", "GET /api/runs/{big}", f"/api/runs/{big}",
             [(f"SELECT {run_all}, {file_cols} FROM traces_run r LEFT JOIN traces_tracefile f "
               "ON f.id = r.source_file_id WHERE r.id = %s", [big])], api=True),
        Case("api_steps", "GET /api/runs/{big}/steps (flat)", f"/api/runs/{big}/steps",
             [(flat_with_parent_keys, [big])], api=True),
        Case("api_children", "GET /api/runs/{big}/steps?parent=KEY",
             f"/api/runs/{big}/steps", [(step_by_key, [big, t.expand_key]),
                                        (children, [big, t.expand_id])],
             params={"parent": t.expand_key}, api=True),
        *zoom_cases(t, run_row),
        Case("api_timeline", "GET /api/runs/{big}/timeline", f"/api/runs/{big}/timeline",
             [(run_row, [big]), (flat, [big]), (time_bounds, [big])], api=True),
        Case("api_critical_path", "GET /api/runs/{big}/critical-path",
             f"/api/runs/{big}/critical-path", [(run_row, [big]), (critical, [big])], api=True),
        Case("api_step", "GET /api/steps/{id} (step panel)", f"/api/steps/{t.panel_id}",
             panel, api=True),
        Case("api_failed", "GET /api/steps?status=failed", "/api/steps",
             [(failed_rows, []), (failed_count, [])], params={"status": "failed"}, api=True),
        Case("api_errors", "GET /api/steps/errors (grouped)", "/api/steps/errors",
             [(groups, []), (examples, top_causes)], api=True),
        Case("api_entities", "GET /api/entities", "/api/entities",
             [(entity_types, []), (entities_page, [])], api=True),
        Case("api_entity", "GET /api/entities/customer/{hot}/steps",
             f"/api/entities/customer/{t.hot_customer}/steps", entity_sql(*cus, True), api=True),
        Case("api_compare", "GET /api/runs/compare (the big run and another of its type)",
             "/api/runs/compare", compare_sql, params={"a": t.compare_run, "b": big}, api=True),
        Case("api_logs", "GET /api/runs/{wf}/logs", f"/api/runs/{wf}/logs",
             [(logs_page, [wf]), (levels, [wf])], api=True),
        *compare_big_cases,
        Case("api_type_trends", "GET /api/types/{type}/trends",
             f"/api/types/{t.busy_type}/trends", trends_sql, api=True),
        *find_cases,
        *log_cases(t),
    ]  # fmt: skip


def log_cases(t: Targets) -> list[Case]:
    """§14c: /logs/ without words (the newest lines, through the primary key, the
    level's index or a sparse filter's), a common word narrowed by level or run type,
    and the logs tab's step picker on the big run (a skip scan of its names). Their
    bare SQL is the newest-first walk they read."""
    if t.wf_run is None:
        return []
    wf_type = Run.objects.get(pk=t.wf_run).type
    newest = "SELECT id FROM traces_logentry ORDER BY id DESC LIMIT 1001"
    errors = "SELECT id FROM traces_logentry WHERE level = %s ORDER BY id DESC LIMIT 1001"
    cases = [
        Case("logs_newest", "log search without words: the newest lines", "/logs/",
             [(newest, [])]),
        Case("logs_newest_level", "log search without words, level error", "/logs/",
             [(errors, ["error"])], params={"level": "error"}),
        Case("logs_newest_type", f"log search without words, run type {wf_type!r}", "/logs/",
             [], params={"type": wf_type}),
        Case("logs_newest_since", "log search without words, last 24 h (no line in it)",
             "/logs/", [], params={"since": "24h"}),
        Case("logs_newest_format_since", "log search without words, a format with no lines "
             "and the last 7 d", "/logs/", [], params={"format": "otlp", "since": "7d"}),
        Case("logs_newest_step", "log search without words, a step name", "/logs/", [],
             params={"step": _wf_step_name(t.wf_run)}),
        Case("logs_tab_picker", f"logs tab of the big run ({t.big_steps:,} steps): its step "
             "picker", f"/runs/{t.big_run}/logs/", []),
        Case("logs_tab_step", "logs tab of a workflow run, one step name picked (htmx rows)",
             f"/runs/{t.wf_run}/logs/", [], params={"step": _wf_step_name(t.wf_run)},
             htmx_target=""),
    ]  # fmt: skip
    if "log word" in t.searches:
        word = t.searches["log word"]
        cases += [
            Case("logs_word_level", f"log search: a common word ({word!r}), level error",
                 "/logs/", [], params={"q": word, "level": "error"}),
            Case("logs_word_type", f"log search: a common word ({word!r}), run type",
                 "/logs/", [], params={"q": word, "type": wf_type}),
            # §16b: the filters PostgreSQL tests in each id bucket of the word's lines.
            Case("logs_word_step", f"log search: a common word ({word!r}), a step name",
                 "/logs/", [], params={"q": word, "step": _wf_step_name(t.wf_run)}),
            Case("logs_word_old_hour", f"log search: a common word ({word!r}), the oldest "
                 "hour of lines", "/logs/", [], params={"q": word, "until": _oldest_hour()}),
            Case("logs_word_page", f"log search: a common word ({word!r}), a page from the "
                 "middle line on", "/logs/", [], params={"q": word, "before": _middle_line()}),
            # §17c: time ranges of more lines than SPAN (100,000) had: their id bounds.
            Case("logs_word_old_half", f"log search: a common word ({word!r}), until the "
                 "middle line's time", "/logs/", [], params={"q": word, "until": _line_time(2)}),
            Case("logs_word_mid_range", f"log search: a common word ({word!r}), the middle "
                 "half of the lines' times", "/logs/", [],
                 params={"q": word, "since": _line_time(4), "until": _line_time(4 / 3)}),
        ]  # fmt: skip
    # §17e: a word of one lexeme in about half the lines (the workflow data's), with a
    # level none of its lines has, the step name of most lines, a step name no step has.
    common, named = "completed", _most_logged_step_name()
    cases += [
        Case("logs_word_level_none", f"log search: {common!r} (~half the lines), level error "
             "(none of them)", "/logs/", [], params={"q": common, "level": "error"}),
        Case("logs_word_step_common", f"log search: {common!r}, step name {named!r} (the most "
             "lines')", "/logs/", [], params={"q": common, "step": named}),
        Case("logs_word_step_none", f"log search: {common!r}, a step name no step has",
             "/logs/", [], params={"q": common, "step": "no-such-step"}),
    ]  # fmt: skip
    # §18a: a step name of few steps, whose lines are among the oldest: the walk read
    # the word's lines of every id bucket down to them (§17f's 10 M miss, that shape);
    # now its lines are read through their steps (search/logs.py, _few_named_lines).
    few, steps = _fewest_steps_logged_name()
    # And a name of many steps none or few of which have lines (the big run's first
    # step's, a format without logs): the walk read every line of the word.
    unlogged = Step.objects.filter(run_id=t.big_run).order_by("id").values_list("name", flat=True)
    unlogged_name = unlogged.first() or "none"
    cases += [
        Case("logs_word_step_few", f"log search: {common!r}, step name {few!r} ({steps:,} "
             "steps, the oldest lines')", "/logs/", [], params={"q": common, "step": few}),
        Case("logs_word_step_unlogged", f"log search: {common!r}, step name {unlogged_name!r} "
             "(the big run's first step's)", "/logs/", [],
             params={"q": common, "step": unlogged_name}),
    ]  # fmt: skip
    return cases


def _fewest_steps_logged_name(cap: int = 100_000) -> tuple[str, int]:
    """Of the step names of the oldest 20,000 lines, the one of fewest steps, and how
    many (counted to `cap`). The generated stores name 17 steps of every workflow run
    (~5,000 steps each at 1 M); §18a's copies renamed 39 of the oldest `audit-legacy`."""
    oldest = LogEntry.objects.exclude(step=None).order_by("id")[:20_000]
    names = set(oldest.values_list("step__name", flat=True))
    counted = {name: Step.objects.filter(name=name)[:cap].count() for name in names}
    return min(counted.items(), key=lambda item: (item[1], item[0]), default=("none", 0))


def _most_logged_step_name() -> str:
    """The step name of the most log lines among the newest 20,000's."""
    newest = LogEntry.objects.exclude(step=None).order_by("-id")[:20_000]
    names = Counter(newest.values_list("step__name", flat=True))
    return names.most_common(1)[0][0] if names else "none"


def _oldest_hour() -> str:
    """An hour after the oldest line's time (the `until` of the lines' oldest hour)."""
    oldest = LogEntry.objects.exclude(time=None).order_by("time").values_list("time").first()
    end = (oldest[0] if oldest else datetime.now(UTC)) + timedelta(hours=1)
    return end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _line_time(part: float) -> str:
    """The time of the line 1/`part` of the way through the lines in time order."""
    lines = LogEntry.objects.exclude(time=None)
    at = lines.order_by("time").values_list("time", flat=True)[int(lines.count() / part)]
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _middle_line() -> int:
    last = LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 2
    return last // 2


def _wf_step_name(run_id: int) -> str:
    step = Step.objects.filter(run_id=run_id, logs__isnull=False).exclude(name="").first()
    return step.name if step else "none"


def run_find_cases(t: Targets, run_row: str) -> list[Case]:
    """Find in run on the big run (queries/find.py): the words' matches from the
    full-text index within the run's ids, counted up to 10,000, a window of 50 in run
    order, and their ancestors. The bare SQL: the same questions written by hand."""
    big = t.big_run
    if ON_POSTGRES:
        # The words in each id bucket of the run's noted range (the GIN index's
        # bucketed words, search/index.py), the phrase checked on the stored vector.
        query = "to_tsquery('simple'::regconfig, %s)"
        bound = "(SELECT step_id_{} FROM traces_run WHERE id = %s) >> 16"
        ids = (
            "SELECT id FROM traces_step WHERE run_id + 0 = %s "
            "AND tracer_bucketed_words(id, search_doc) @@ ANY(ARRAY("
            f"SELECT tracer_bucketed_query(bucket, {query}) FROM generate_series("
            f"{bound.format('min')}, {bound.format('max')}) AS bucket)) "
            f"AND search_doc @@ {query}"
        )

        def words(query: str) -> list:
            phrase = " <-> ".join(query.split())
            return [big, phrase, big, big, phrase]
    else:
        # The range of the run's step ids, as the store notes it (Run.step_id_min/max).
        bound = "(SELECT step_id_{} FROM traces_run WHERE id = %s)"
        ids = (
            "SELECT rowid FROM traces_step_search WHERE traces_step_search MATCH %s "
            f"AND rowid >= {bound.format('min')} AND rowid <= {bound.format('max')}"
        )

        def words(query: str) -> list:
            return [f'"{query}"', big, big]

    count = f"SELECT COUNT(*) FROM (SELECT id FROM traces_step WHERE id IN ({ids} LIMIT 10001))"
    if ON_POSTGRES:
        count += " AS matches"
    window = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200) FROM traces_step WHERE run_id = %s "
        f"AND id IN ({ids}) ORDER BY seq, id LIMIT 51"
    )
    failed_count = (
        "SELECT COUNT(*) FROM (SELECT id FROM traces_step WHERE run_id = %s "
        "AND failed_subtree = true AND status = 'failed' LIMIT 10001) AS matches"
    )
    failed_window = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200) FROM traces_step WHERE run_id = %s "
        "AND failed_subtree = true AND status = 'failed' ORDER BY seq, id LIMIT 51"
    )
    ancestors = (
        "WITH RECURSIVE up(id) AS (SELECT parent_id FROM traces_step WHERE run_id = %s "
        "AND id IN (" + ids + ") AND parent_id IS NOT NULL "
        "UNION SELECT s.parent_id FROM traces_step s JOIN up ON s.id = up.id "
        "WHERE s.parent_id IS NOT NULL) "
        f"SELECT {STEP_ROW} FROM traces_step WHERE id IN (SELECT id FROM up) ORDER BY seq, id"
    )
    flat = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200) FROM traces_step "
        "WHERE run_id = %s ORDER BY seq, id LIMIT 301"
    )
    among = f"SELECT id FROM traces_step WHERE run_id = %s AND id IN ({ids}) AND seq <= 301"

    def found(query: str) -> list:
        return [
            (run_row, [big]),
            (count, words(query)),
            (window, [big, *words(query)]),
            (ancestors, [big, *words(query)]),
        ]

    url = f"/runs/{big}/"
    label = f"run find, the {t.big_steps:,}-step run"
    return [
        Case("run_find_rare", f"{label}: a rare word (429: ~450 matches), tree", url,
             found("429"), params={"find": "429"}, target_s=BIG_RUN_TARGET_S),
        Case("run_find_common", f"{label}: a word in 40 % of it (fetch_charges), tree", url,
             found("fetch charges"), params={"find": "fetch_charges"},
             target_s=BIG_RUN_TARGET_S),
        Case("run_find_key", f"{label}: a step's key (1 match), tree", url, found(t.panel_key),
             params={"find": t.panel_key}, target_s=BIG_RUN_TARGET_S),
        Case("run_find_none", f"{label}: no match, tree", url, found("zzzz"),
             params={"find": "zzzz"}, target_s=BIG_RUN_TARGET_S),
        Case("run_find_failed", f"{label}: status:failed (3,069), tree", url,
             [(run_row, [big]), (failed_count, [big]), (failed_window, [big])],
             params={"find": "status:failed"}, target_s=BIG_RUN_TARGET_S),
        Case("run_find_timeline", f"{label}: upsert, timeline (its window's matches marked)",
             url, [(run_row, [big]), (count, words("upsert")), (flat, [big]),
                   (among, [big, *words("upsert")])],
             params={"find": "upsert", "tab": "timeline"}, target_s=BIG_RUN_TARGET_S),
        Case("run_find_timeline_only", f"{label}: 429, timeline of the matches only", url,
             [(run_row, [big]), (count, words("429")), (window.replace("51", "301"),
                                                          [big, *words("429")])],
             params={"find": "429", "tab": "timeline", "only": "1"},
             target_s=BIG_RUN_TARGET_S),
        Case("api_run_find", "GET /api/runs/{big}/steps?find=429", f"/api/runs/{big}/steps",
             found("429"), params={"find": "429"}, api=True, target_s=BIG_RUN_TARGET_S),
    ]  # fmt: skip


def search_cases(t: Targets) -> list[Case]:
    """The search, the log search and the failing-now strip. Their bare SQL is their
    own queries (an FTS5 or tsvector match has no simpler hand-written twin): the
    figure to read is the page's time against the 50 ms target."""
    found = [
        Case(f"search_{slug(what)}", f"search: {what} ({words!r})", "/search/", [],
             params={"q": words}, may_redirect=True)
        for what, words in t.searches.items() if what != "log word"
    ]  # fmt: skip
    found.append(
        Case(
            "api_search",
            "GET /api/search (a common step name)",
            "/api/search",
            [],
            params={"q": t.searches["common step name"]},
            api=True,
        )
    )
    if "log word" in t.searches:
        word = t.searches["log word"]
        found += [
            Case(
                "log_search",
                f"log search: a word of every run's logs ({word!r})",
                "/logs/",
                [],
                params={"q": word},
            ),
            Case("log_search_none", "log search: no match", "/logs/", [], params={"q": "zzqqxxy"}),
        ]
    if t.newest_failure:
        found.append(
            Case(
                "runs_failing_now",
                "runs list with the failing-now strip (now = a minute after the newest failure)",
                "/",
                [],
                now=t.newest_failure,
            )
        )
    found += failing_lists(t)
    return found


def failing_lists(t: Targets) -> list[Case]:
    """The failing-now strip in a day of failures of runs whose times are estimated,
    and the failed-steps lists its step counts link (`since=24h`, `times=recorded` or
    `estimated`) beside the same list of both: at the newest timed failure and at the
    newest estimated one, each window full of the one kind and empty of the other."""
    found = []
    if t.newest_estimated_failure:
        found.append(
            Case(
                "runs_failing_now_estimated",
                "runs list with the failing-now strip (now = a minute after the newest "
                "failure of estimated times)",
                "/",
                [],
                now=t.newest_estimated_failure,
            )
        )
    moments = (("", t.newest_failure), ("_at_estimated", t.newest_estimated_failure))
    for suffix, now in moments:
        if now is None:
            continue
        for times in ("", "recorded", "estimated"):
            found.append(
                Case(
                    f"failed_24h_{times or 'any'}_times{suffix}",
                    f"failed steps, last 24 h, {times or 'any'} times (now = a minute after the "
                    f"newest failure{' of estimated times' if suffix else ''})",
                    "/steps/",
                    [],
                    params={
                        "status": "failed",
                        "since": "24h",
                        **({"times": times} if times else {}),
                    },
                    now=now,
                )
            )
    return found


def slug(text: str) -> str:
    return "_".join(word for word in text.replace(":", " ").replace("'", "").split())


# --- measuring ------------------------------------------------------------------------------


def zoom_cases(t: Targets, run_row: str) -> list[Case]:
    """The timeline zoomed to a time window (§13d): the steps starting in it (and just
    before), the long and the open-ended ones begun before it, the minimap's sample of
    1,000 steps by seq and its failed steps."""
    from traces.queries.timeline import LONG_SHARE, MINIMAP_FAILED, MINIMAP_SAMPLE, time_axis

    big = t.big_run
    run = Run.objects.get(pk=big)
    start, end = time_axis(run)
    span = (end - start).total_seconds() * 1000
    short_ms = max(span / LONG_SHARE, 1.0)
    adapt = connection.ops.adapt_datetimefield_value
    still_open = "(finished_at >= %s OR finished_at IS NULL)"
    near = (
        f"SELECT {STEP_ROW}, substr(error, 1, 200), length(error) FROM traces_step "
        f"WHERE run_id = %s AND started_at >= %s AND started_at <= %s "
        f"AND (started_at >= %s OR {still_open}) ORDER BY started_at, id LIMIT 301"
    )
    long_ones = (
        f"SELECT {STEP_ROW} FROM traces_step WHERE run_id = %s AND started_at < %s "
        f"AND {still_open} AND duration_ms > %s "
        "ORDER BY duration_ms DESC, started_at DESC LIMIT 300"
    )
    unknown = (
        f"SELECT {STEP_ROW} FROM traces_step WHERE run_id = %s AND started_at < %s "
        f"AND {still_open} AND duration_ms IS NULL ORDER BY duration_ms, started_at, finished_at "
        "LIMIT 300"
    )
    stride = t.big_steps / MINIMAP_SAMPLE
    seqs = sorted({int(i * stride) + 1 for i in range(MINIMAP_SAMPLE)})
    sample = (
        "SELECT started_at FROM traces_step WHERE run_id = %s "
        f"AND seq IN ({', '.join(['%s'] * len(seqs))})"
    )
    failed = (
        "SELECT started_at FROM traces_step WHERE run_id = %s AND status = 'failed' "
        f"AND started_at IS NOT NULL ORDER BY started_at LIMIT {MINIMAP_FAILED + 1}"
    )
    minimap = [(sample, [big, *seqs]), (failed, [big])]

    def window_sql(zoom: tuple) -> list[tuple[str, list]]:
        _, _, low, high = zoom
        before = adapt(start + timedelta(milliseconds=zoom[0] - short_ms))
        return [
            (run_row, [big]),
            (near, [big, before, high, low, low]),
            (long_ones, [big, before, low, short_ms]),
            (unknown, [big, before, low]),
            *minimap,
        ]

    def params(zoom: tuple) -> dict:
        return {"from_ms": f"{zoom[0]:.3f}", "to_ms": f"{zoom[1]:.3f}"}

    whole = window_sql((0.0, span, adapt(start), adapt(end)))
    return [
        Case("timeline_whole", f"timeline tab, the {t.big_steps:,}-step run, whole run + minimap",
             f"/runs/{big}/timeline/", whole, target_s=BIG_RUN_TARGET_S),
        Case("timeline_zoom", "timeline zoomed to 1/1000 of the big run's axis, its middle",
             f"/runs/{big}/timeline/", window_sql(t.zoom_middle), params=params(t.zoom_middle)),
        Case("timeline_zoom_end", "timeline zoomed to the big run's last 1/100",
             f"/runs/{big}/timeline/", window_sql(t.zoom_end), params=params(t.zoom_end)),
        Case("timeline_zoom_htmx", "timeline zoomed (htmx swap of the tab), its middle",
             f"/runs/{big}/timeline/", window_sql(t.zoom_middle), params=params(t.zoom_middle),
             htmx_target="run-tabs"),
    ]  # fmt: skip


def request(client: Client, case: Case):
    headers = {}
    if case.htmx_target is not None:
        headers["HTTP_HX_REQUEST"] = "true"
        if case.htmx_target:
            headers["HTTP_HX_TARGET"] = case.htmx_target
    if case.now is None:
        response = client.get(case.url, case.params, **headers)
    else:
        from unittest import mock

        now = case.now if case.now.tzinfo else case.now.replace(tzinfo=UTC)
        with mock.patch("django.utils.timezone.now", return_value=now):
            response = client.get(case.url, case.params, **headers)
    if response.status_code != 200 and not (case.may_redirect and response.status_code == 302):
        raise SystemExit(f"{case.name}: {case.url} answered {response.status_code}")
    return response


def bare(queries: list[tuple[str, list]]) -> int:
    rows = 0
    with connection.cursor() as cursor:
        for sql, params in queries:
            cursor.execute(sql, params)
            rows += len(cursor.fetchall())
    return rows


class Recorder:
    """The SELECTs a request runs, with their parameters, to replay them alone."""

    def __init__(self):
        self.queries: list[tuple[str, list]] = []

    def __call__(self, execute, sql, params, many, context):
        if not many and sql.lstrip().upper().startswith(("SELECT", "WITH")):
            self.queries.append((sql, list(params or ())))
        return execute(sql, params, many, context)


@dataclass
class Result:
    case: Case
    page: float
    page_sql: float  # the page's own queries replayed: execute + fetchall
    queries: int
    bare: float
    size: int
    recorded: list = field(default_factory=list)


def measure(client: Client, case: Case, n: int) -> Result:
    """Median server time of `case`, of its own queries replayed without Django
    (the SQL part of the page: the driver's execute + fetchall, as the bare SQL is
    timed), and of the bare SQL; the three interleaved so they share the load."""
    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        response = request(client, case)
    request(client, case)
    bare_sql = case.sql or recorder.queries  # no hand-written twin: its own queries
    bare(bare_sql)
    pages, bares, replays = [], [], []
    for _ in range(n):
        start = time.perf_counter()
        request(client, case)
        pages.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare(bare_sql)
        bares.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare(recorder.queries)
        replays.append(time.perf_counter() - start)
    return Result(case, median(pages), median(replays), len(recorder.queries), median(bares),
                  len(response.content), recorder.queries)  # fmt: skip


def explain(sql: str, params: list) -> str:
    """One query: its median time (execute + fetchall, 5 runs), rows, plan and text."""
    times = []
    with connection.cursor() as cursor:
        for _ in range(5):
            start = time.perf_counter()
            cursor.execute(sql, params)
            rows = len(cursor.fetchall())
            times.append(time.perf_counter() - start)
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if ON_POSTGRES else "EXPLAIN QUERY PLAN "
        cursor.execute(prefix + sql, params)
        plan = [str(row[-1] if not ON_POSTGRES else row[0]) for row in cursor.fetchall()]
    text = sql if len(sql) < 400 else sql[:200] + " … " + sql[-180:]
    shown = [p if len(str(p)) < 60 else str(p)[:57] + "…" for p in params[:6]]
    lines = [f"{median(times) * 1000:8.2f} ms {rows:6} rows  {text}  {shown}"]
    plan = [line if len(line) < 160 else line[:150] + " …" for line in plan]
    return "\n".join(lines + [f"{'':>26}plan: {line}" for line in plan])


def in_time(result: Result) -> str:
    """Issue 13's target: the page's server time within its case's (50 ms; 100 ms at 10 M)."""
    target = result.case.target_s
    if result.page <= target:
        return "yes"
    return f"no: {result.page / target:.1f}x the {target * 1000:.0f} ms"


def near_bare(result: Result) -> str:
    """The older, stricter rule (the first benchmark's): within RATIO_TARGET of its bare SQL."""
    if result.page <= RATIO_TARGET * result.bare:
        return "yes"
    return f"no: {result.page / result.bare:.1f}x"


def verdict(result: Result) -> str:
    misses = [check(result) for check in (in_time, near_bare) if check(result) != "yes"]
    return "yes" if not misses else "; ".join(misses)


def main() -> None:
    import json

    args = ARGS
    started = time.perf_counter()
    built = {} if args.as_is else build(args.quick, HOME, args.scale, args.jobs)
    if args.build_only:
        print(json.dumps(built, indent=1))
        return
    if args.analyze or ON_POSTGRES:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()
    targets = find_targets(client)
    chosen = [c for c in cases(targets) if not args.only or c.name in args.only.split(",")]
    if targets.wf_run is None:  # the logs pages need a workflow run
        chosen = [c for c in chosen if c.name not in ("logs", "api_logs")]
    page_target = (args.target_ms or (100 if args.scale > 1 else 50)) / 1000
    for case in chosen:
        if case.target_s == PAGE_TARGET_S:
            case.target_s = page_target
    if args.list:
        for case in chosen:
            print(f"\n{case.name}: {case.url} {case.params}")
            for sql, params in case.sql:
                print(f"  {sql}  -- {params}")
        return
    results = []
    for case in chosen:
        result = measure(client, case, args.n)
        results.append(result)
        print(
            f"{case.name}: {result.page * 1000:.1f} ms (SQL {result.page_sql * 1000:.1f} ms, "
            f"{result.queries} queries), bare {result.bare * 1000:.1f} ms",
            file=sys.stderr,
        )
    data = built if "steps" in built else counts()
    print(f"\n## Pages and API at {data['steps']:,} steps ({connection.vendor})\n")
    print("\n".join(machine_lines(connection.vendor)))
    print(
        f"- command: `nice .venv/bin/python bench/bench_pages.py {' '.join(sys.argv[1:])}`"
        f"{' (via scripts/with_postgres.py)' if ON_POSTGRES else ''};"
        f" medians of {args.n} requests\n"
        f"- database: {data['runs']:,} runs, {data['steps']:,} steps"
        f" ({data['failed_steps']:,} failed), {data['calls']:,} calls, {data['links']:,} links,"
        f" {data['logs']:,} log rows; built by our ingest"
        + (f" in {sum(built['ingest_seconds'].values()):,.0f} s {built['ingest_seconds']}"
           if "ingest_seconds" in built else "")
        + (", ANALYZEd" if args.analyze or ON_POSTGRES
           else ", not ANALYZEd (as the site leaves it)")
        + "\n"
    )  # fmt: skip
    headers = ["page / endpoint", "server time", "its queries alone", "queries", "bare SQL",
               "ratio", "within its time target", f"also ≤ {RATIO_TARGET:g}x bare SQL"]  # fmt: skip
    rows = [
        [r.case.label, f"{r.page * 1000:.1f} ms", f"{r.page_sql * 1000:.1f} ms",
         str(r.queries), f"{r.bare * 1000:.2f} ms", f"{r.page / r.bare:.1f}x", in_time(r),
         near_bare(r)]
        for r in results
    ]  # fmt: skip
    print(table(headers, rows, "lrrrrrll"))
    sizes = built.get("sizes") or database_sizes()
    if sizes:
        print(f"\npg_database_size(): {_size(sizes['database'])}; the biggest tables:\n")
        print(table(["table", "rows (estimate)", "total", "heap", "indexes"], [
            [t["table"], f"{t['rows']:,}", _size(t["total"]), _size(t["heap"]),
             _size(t["indexes"])]
            for t in sizes["tables"]
        ], "lrrrr"))  # fmt: skip
    met = sum(1 for r in results if verdict(r) == "yes")
    timely = sum(1 for r in results if in_time(r) == "yes")
    print(
        f"\n{timely} of {len(results)} within their time target (issue 13's; slowest "
        f"{max(r.page for r in results) * 1000:.1f} ms); {met} of {len(results)} also within "
        f"{RATIO_TARGET:g}x their bare SQL; took {time.perf_counter() - started:.0f} s"
    )
    by_name = {r.case.name: r for r in results}
    for name in filter(None, args.explain.split(",")):
        print(f"\n### queries of: {by_name[name].case.label}\n\n```")
        for sql, params in by_name[name].recorded:
            print(explain(sql, params))
        print("```")
    for name in filter(None, args.profile.split(",")):
        case = next(c for c in cases(targets) if c.name == name)
        text = profile_text(lambda c=case: request(client, c), top=25, sort=args.profile_sort)
        print(
            f"\n### profile: {case.label} (one request, by {args.profile_sort})\n\n```\n{text}\n```"
        )


if __name__ == "__main__":
    main()
