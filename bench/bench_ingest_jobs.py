"""Parallel ingest: 1 vs 2 workers (`ingest --jobs 2`) over directories of small
files, beside the raw sqlite3 executemany copy of bench_ingest.py.

    nice .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/bench_ingest_jobs.py
        [--quick] [--repeat 3] [--jobs 2]

Every repeat empties the store, then runs in alternation (so all see the same load):
- **1 worker**: `ingest_paths([directory])`, as `manage.py ingest DIR` does;
- **2 workers**: `ingest_in_parallel([directory], jobs=2)`, as `manage.py ingest
  --jobs 2 DIR` does: the files listed into shares, one worker process spawned
  (its Django start-up counted: it overlaps this process's own work), both reading;
- **baseline**: bench_ingest.py's raw copy of the same rows into a new SQLite file.

The machine's load average is printed with the figures: other processes on the
same cores take from the second worker first. So is the CPU time of our Python
processes (this one, plus the spawned worker once it has ended; PostgreSQL's server
not counted): what the parallel side costs beyond the serial one, whatever the load.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

DATA_SETS = ("greentic", "duckflux-files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="workers of the parallel side")
    args = parser.parse_args()
    # Django is set up here, not on import: a spawned worker imports this module again.
    import _setup
    from _data import dataset
    from _measure import machine_lines, median, table
    from bench_ingest import LABELS, baseline, clear_store
    from django.db import connection

    from traces.ingest.loader import ingest_paths
    from traces.ingest.parallel import ingest_in_parallel

    scratch = Path(tempfile.mkdtemp(prefix="tracer-bench-baseline-", dir=_setup.WORKDIR))
    rows = []
    for name in DATA_SETS:
        path, made = dataset(name, args.quick, log=lambda m: print(m, file=sys.stderr))
        times = {"one": [], "many": [], "base": []}
        cpu = {"one": [], "many": []}
        loads = []
        for attempt in range(args.repeat):
            clear_store()
            one, counted, cpu_one = _timed(lambda p=path: ingest_paths([p]))
            clear_store()
            many, counted_many, cpu_many = _timed(
                lambda p=path: ingest_in_parallel([p], jobs=args.jobs)
            )
            cpu["one"].append(cpu_one)
            cpu["many"].append(cpu_many)
            assert counted_many == counted, (counted_many, counted)
            base, _cpu, _rows = baseline(name, path, scratch)
            loads.append(os.getloadavg()[0])
            for key, took in (("one", one), ("many", many), ("base", base)):
                times[key].append(took)
            print(
                f"{name} #{attempt + 1}: 1 worker {one:.2f} s, {args.jobs} workers {many:.2f} s,"
                f" baseline {base:.2f} s, load {loads[-1]:.2f}, Python CPU {cpu_one:.2f} s vs"
                f" {cpu_many:.2f} s",
                file=sys.stderr,
            )
        one, many, base = (median(times[key]) for key in ("one", "many", "base"))
        rows.append(
            [
                LABELS[name],
                f"{made.get('runs', 0):,} runs / {made.get('steps', 0):,} steps",
                f"{one:.2f} s ({one / base:.1f}x)",
                f"{many:.2f} s ({many / base:.1f}x)",
                f"{one / many:.2f}x",
                f"{base:.2f} s",
                f"{median(cpu['one']):.1f} s / {median(cpu['many']):.1f} s",
                f"{min(loads):.1f}-{max(loads):.1f}",
            ]
        )
    print(f"\n## Parallel ingest: 1 vs {args.jobs} workers ({connection.vendor})\n")
    print("\n".join(machine_lines(connection.vendor)))
    quick = " --quick" if args.quick else ""
    print(
        "- command: `nice .venv/bin/python scripts/with_postgres.py .venv/bin/python "
        f"bench/bench_ingest_jobs.py{quick} --repeat {args.repeat} --jobs {args.jobs}`;"
        f" medians of {args.repeat}\n"
    )
    headers = [
        "data set",
        "data",
        "1 worker (vs baseline)",
        f"{args.jobs} workers (vs baseline)",
        "speed-up",
        "baseline (raw sqlite3 copy)",
        f"Python CPU: 1 / {args.jobs} workers",
        "load avg (1 min)",
    ]
    print(table(headers, rows, align="llrrrrrr"))


def _timed(ingest) -> tuple[float, dict, float]:
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    report = ingest()
    took = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    summary = report.summary()
    assert not summary["errors"], summary["errors"][:3]
    return took, {key: summary[key] for key in ("runs", "steps", "calls", "links", "logs")}, cpu


def _cpu_seconds() -> float:
    """User + system time of this process and of its children that ended."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


if __name__ == "__main__":
    main()
