"""How fast the database takes rows, by the ways the store could send them.

    .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/bench_pg_insert.py
    .venv/bin/python bench/bench_pg_insert.py          # SQLite (no COPY there)

5,000 rows of (int, text, json) into a temp table through Django's connection:
`cursor.executemany` (what store._BulkInserter does), multi-row `INSERT … VALUES`
of 500 rows, and on PostgreSQL psycopg's `COPY`; µs per row, median of 5.
"""

from __future__ import annotations

import time

import _setup  # noqa: F401  (Django on a fresh database)
from _measure import median
from django.db import connection

ROWS = [(i, f"name {i}", '{"a": 1}') for i in range(5000)]


def executemany(cursor) -> None:
    cursor.executemany("INSERT INTO bench_t VALUES (%s, %s, %s)", ROWS)


def multi_values(cursor) -> None:
    for start in range(0, len(ROWS), 500):
        chunk = ROWS[start : start + 500]
        marks = ", ".join(["(%s, %s, %s)"] * len(chunk))
        cursor.execute(f"INSERT INTO bench_t VALUES {marks}", [v for row in chunk for v in row])


def copy(cursor) -> None:
    with cursor.cursor.copy("COPY bench_t (id, name, j) FROM STDIN") as stream:
        for row in ROWS:
            stream.write_row(row)


def main() -> None:
    postgres = connection.vendor == "postgresql"
    ways = {"Django executemany": executemany, "multi-row VALUES x500": multi_values}
    if postgres:
        ways["psycopg COPY"] = copy
    json_type = "jsonb" if postgres else "text"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE bench_t (id int, name text, j {json_type})")
        for label, way in ways.items():
            times = []
            for _ in range(5):
                cursor.execute("DELETE FROM bench_t")
                start = time.perf_counter()
                way(cursor)
                times.append(time.perf_counter() - start)
            print(f"{connection.vendor}: {label}: {median(times) * 1e6 / len(ROWS):.1f} µs/row")


if __name__ == "__main__":
    main()
