"""Ingest of a big @systemoperator/runs database vs a raw sqlite3 copy of the same rows.

    .venv/bin/python bench/bench_ingest_runs.py [--steps 50000 --calls 100000 --runs 500]

Prints the ingest time beside a raw `sqlite3` `executemany` copy of the same
rows into an empty database (the floor for "read every row and write it
again"), then the incremental re-sync after a few runs change, and the
unchanged re-scan.
"""

import argparse
import sqlite3
import time

import _setup
from generate_runs_db import DDL, generate_runs_db

from traces.ingest.loader import ingest_paths
from traces.models import Run

TABLES = ("runs", "steps", "calls", "step_links")


def raw_copy(source, target) -> int:
    rows = 0
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    dst.executescript(DDL)
    for table in TABLES:
        cursor = src.execute(f"SELECT * FROM {table}")
        width = len(cursor.description)
        marks = ", ".join("?" * width)
        while batch := cursor.fetchmany(5000):
            dst.executemany(f"INSERT INTO {table} VALUES ({marks})", batch)
            rows += len(batch)
    dst.commit()
    src.close()
    dst.close()
    return rows


def change_some_runs(path, count: int) -> None:
    conn = sqlite3.connect(path)
    ids = [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY id LIMIT ?", (count,))]
    for run_id in ids:
        conn.execute(
            "UPDATE steps SET status = 'completed', updated_at = '2030-01-01T00:00:00.000Z' "
            "WHERE id = (SELECT id FROM steps WHERE run_id = ? LIMIT 1)",
            (run_id,),
        )
        conn.execute("UPDATE runs SET updated_at = '2030-01-01' WHERE id = ?", (run_id,))
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    source = _setup.WORKDIR / "runs.sqlite"
    generate_runs_db(source, runs=args.runs, steps=args.steps, calls=args.calls)

    start = time.perf_counter()
    copied = raw_copy(source, _setup.WORKDIR / "raw-copy.sqlite")
    raw = time.perf_counter() - start

    start = time.perf_counter()
    report = ingest_paths([source])
    ours = time.perf_counter() - start
    assert not report.failed, report.failed
    summary = report.summary()

    change_some_runs(source, 3)
    start = time.perf_counter()
    resync = ingest_paths([source])
    resync_time = time.perf_counter() - start
    assert len(resync.run_ids()) == 3, resync.run_ids()

    start = time.perf_counter()
    unchanged = ingest_paths([source])
    unchanged_time = time.perf_counter() - start
    assert unchanged.summary()["files"]["unchanged"] == 1

    print(
        f"\nsource: {summary['runs']} runs, {summary['steps']} steps, {summary['calls']} calls, "
        f"{summary['links']} links ({copied} rows); Run rows in db: {Run.objects.count()}"
    )
    _setup.report(
        "runs database ingest",
        [
            ("full ingest", ours, raw, "raw sqlite3 executemany copy"),
            ("re-sync after 3 runs changed", resync_time, raw, "raw copy"),
            ("re-scan, file unchanged", unchanged_time, None, ""),
        ],
    )
    print(f"\npeak RSS: {_setup.peak_rss_mb():.0f} MB")
    rows_per_s = copied / ours
    print(f"ingest speed: {rows_per_s:,.0f} rows/s (raw copy {copied / raw:,.0f} rows/s)")


if __name__ == "__main__":
    main()
