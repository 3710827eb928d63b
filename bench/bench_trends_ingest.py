"""What keeping the trends read models (TypeBucket, TypeStep) costs an ingest: the same
files ingested with the store's trends hooks on and off, in alternation (so both see
the same load), on a fresh database each time.

    nice .venv/bin/python bench/bench_trends_ingest.py [--quick] [--repeat 3] [--only a,b]
    .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/bench_trends_ingest.py

"Off" replaces TypeTrendDeltas.add/remove/apply by no-ops: the ingest is then what it
was before the read models. The ratio is on / off (wall and CPU time of this process).
"""

from __future__ import annotations

import argparse
import sys
import time
from unittest import mock

import _setup  # noqa: F401  (Django on a fresh database)
from _data import dataset
from _measure import machine_lines, median, table
from django.db import connection

from traces.ingest.loader import ingest_paths
from traces.ingest.type_trends import TypeTrendDeltas
from traces.models import (
    Call,
    EntityCounter,
    EntityLink,
    EntityTypeCounter,
    FailureCause,
    LogEntry,
    Run,
    RunCount,
    Step,
    TraceFile,
    TypeBucket,
    TypeStep,
)

FORMATS = ("duckflux-files", "traceos", "runs", "workflow")
TABLES = (LogEntry, EntityLink, Call, Step, Run, TraceFile, RunCount, FailureCause,
          EntityCounter, EntityTypeCounter, TypeBucket, TypeStep)  # fmt: skip


def clear() -> None:
    with connection.cursor() as cursor:
        for model in TABLES:
            cursor.execute(f"DELETE FROM {model._meta.db_table}")


def ingest(path, hooks: bool) -> tuple[float, float, int]:
    clear()
    patches = []
    if not hooks:
        patches = [mock.patch.object(TypeTrendDeltas, name, lambda *a, **k: None)
                   for name in ("add", "remove", "apply")]  # fmt: skip
    for patch in patches:
        patch.start()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        report = ingest_paths([path])
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        for patch in patches:
            patch.stop()
    assert not report.summary()["errors"]
    return took, cpu, Step.objects.count()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    chosen = [f for f in FORMATS if not args.only or f in args.only.split(",")]
    rows = []
    for name in chosen:
        path, _made = dataset(name, args.quick, log=lambda m: print(m, file=sys.stderr))
        times = {True: [], False: []}
        steps = 0
        for _ in range(args.repeat):
            for hooks in (False, True):
                took, cpu, steps = ingest(path, hooks)
                times[hooks].append((took, cpu))
                print(f"{name} hooks={hooks}: {took:.2f} s (cpu {cpu:.2f} s)", file=sys.stderr)
        off = [median([t for t, _ in times[False]]), median([c for _, c in times[False]])]
        on = [median([t for t, _ in times[True]]), median([c for _, c in times[True]])]
        rows.append([name, f"{steps:,}", f"{off[0]:.2f} s", f"{on[0]:.2f} s",
                     f"{on[0] / off[0]:.2f}x", f"{on[1] / off[1]:.2f}x"])  # fmt: skip
    print("\n".join(machine_lines(connection.vendor)))
    print(f"- command: `nice .venv/bin/python bench/bench_trends_ingest.py"
          f"{' --quick' if args.quick else ''} --repeat {args.repeat}`; medians\n")  # fmt: skip
    headers = ["data", "steps", "without trends", "with trends", "wall ratio", "CPU ratio"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
