"""What the steps' search index costs a row at insert on PostgreSQL: the expression
GIN index of 0015 (key, name, type, error) against 0026's stored vector (those and
the attribute and input values) kept by a trigger, with a GIN index on it; beside no
index and a GENERATED ... STORED column of the same vector. Copies of the newest N
real step rows are inserted into each (INSERT ... SELECT, alternating, R repeats);
the server's own time is what is compared.

    python scripts/with_postgres.py --keep DIR python bench/bench_pg_search_vector.py [N] [R]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from traces.search import index

COLUMNS = "id, key, name, type, error, attributes, input"


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        cursor = connection.cursor()
        tables = {
            "no search index": "bench_sv_none",
            "0015 expression index": "bench_sv_old",
            "0026 trigger + stored vector": "bench_sv_new",
            "generated stored vector": "bench_sv_gen",
        }
        for table in ("bench_sv_src", *tables.values()):
            cursor.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        cursor.execute(
            f"CREATE TABLE bench_sv_src AS SELECT {COLUMNS} FROM traces_step "
            f"ORDER BY id DESC LIMIT {rows}"
        )
        for table in tables.values():
            cursor.execute(f"CREATE TABLE {table} (LIKE bench_sv_src)")
        old = index.SearchedTable(
            "bench_sv_old", ("key", "name", "type", "error"), "", "bench_sv_old_gin", True
        )
        cursor.execute(index.pg_create(old)[0])
        new = index.SearchedTable(
            "bench_sv_new", index.STEPS.columns, "", "bench_sv_new_gin", True,
            values=index.STEPS.values, pg_column="search_doc",
        )  # fmt: skip
        for statement in index.pg_create(new):
            cursor.execute(statement)
        expression = new.pg_expression()
        cursor.execute(
            f"ALTER TABLE bench_sv_gen ADD COLUMN search_doc tsvector "
            f"GENERATED ALWAYS AS ({expression}) STORED"
        )
        cursor.execute("CREATE INDEX bench_sv_gen_gin ON bench_sv_gen USING gin (search_doc)")
        times: dict[str, list[float]] = {label: [] for label in tables}
        for _ in range(repeats):
            for label, table in tables.items():
                cursor.execute(f"TRUNCATE {table}")
                start = time.perf_counter()
                cursor.execute(
                    f"INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM bench_sv_src"
                )
                times[label].append(time.perf_counter() - start)
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('bench_sv_new'))")
        size_new = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('bench_sv_old'))")
        size_old = cursor.fetchone()[0]
        for table in ("bench_sv_src", *tables.values()):
            cursor.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    base = statistics.median(times["no search index"])
    print(f"{rows:,} step rows inserted, median of {repeats}:\n")
    print("| table | time | per row | over no index |")
    print("| --- | ---: | ---: | ---: |")
    for label, measured in times.items():
        median = statistics.median(measured)
        print(
            f"| {label} | {median * 1000:,.0f} ms | {median / rows * 1e6:.1f} µs | "
            f"{(median - base) / rows * 1e6:+.1f} µs |"
        )
    print(f"\ntotal size: 0015's table {size_old}, 0026's {size_new}")


if __name__ == "__main__":
    main()
