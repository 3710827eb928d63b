"""Where an ingest's database time goes, statement by statement.

    .venv/bin/python bench/ingest_statements.py traceos [--quick]
    .venv/bin/python scripts/with_postgres.py \
        .venv/bin/python bench/ingest_statements.py runs --quick

Ingests one bench data set (bench/_data.py) into a fresh database and prints, for the
ten statements that took longest in total, their time, calls, rows and time per row
(`connection.execute_wrapper`, so executemany counts each row).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import _setup  # noqa: F401  (Django on a fresh database)
from _data import SPECS, dataset
from django.db import connection

from traces.ingest.loader import ingest_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(SPECS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    path, _made = dataset(args.name, args.quick)
    stats: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])

    def wrapper(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = stats[sql[:90]]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
            entry[2] += len(params) if many else 1

    start = time.perf_counter()
    with connection.execute_wrapper(wrapper):
        ingest_paths([path])
    total = time.perf_counter() - start
    in_sql = sum(entry[1] for entry in stats.values())
    print(f"{args.name} on {connection.vendor}: {total:.2f} s, of which {in_sql:.2f} s in SQL")
    ranked = sorted(stats.items(), key=lambda item: -item[1][1])[:10]
    for sql, (calls, seconds, rows) in ranked:
        per_row = seconds / rows * 1e6
        print(f"{seconds:7.2f} s {calls:7,} calls {rows:9,} rows {per_row:8.0f} µs/row  {sql}")


if __name__ == "__main__":
    main()
