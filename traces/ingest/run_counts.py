"""The runs read model (RunCount), kept by the store in the same transaction as
the Run rows it counts: a run written, rewritten with another status or type,
or deleted moves its count."""

from __future__ import annotations

from django.db import connection

from traces.models import Run, RunCount

_COUNTS = RunCount._meta.db_table
_COUNT_KEY = "format = %s AND run_type = %s AND status = %s"


def run_key(run: Run) -> tuple[str, str, str]:
    """What RunCount counts a run under."""
    return run.format, run.type, run.status


def move_run_count(old: tuple | None, new: tuple) -> None:
    """A run written: counted under `new`, no longer under `old` (None: a new run)."""
    if old == new:
        return
    if old is not None:
        subtract_run_counts([(*old, 1)])
    add_run_counts([(*new, 1)])


def add_run_counts(rows: list[tuple]) -> None:
    """Add (format, run_type, status, count) rows to RunCount."""
    sql = (
        f"INSERT INTO {_COUNTS} AS t (format, run_type, status, count) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (format, run_type, status) DO UPDATE SET count = t.count + excluded.count"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, sorted(rows))


def run_counts_of(run_ids: list[int]) -> list[tuple]:
    """What these runs add to RunCount: (format, run_type, status, count) rows."""
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT format, type, status, COUNT(*) FROM {Run._meta.db_table} "
            f"WHERE id IN ({placeholders}) GROUP BY format, type, status",
            run_ids,
        )
        return cursor.fetchall()


def subtract_run_counts(rows: list[tuple]) -> None:
    """Take (format, run_type, status, count) rows off RunCount; a count that
    reaches 0 removes its row (the type choices list the rows left)."""
    if not rows:
        return
    rows = sorted(rows)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {_COUNTS} SET count = count - %s WHERE {_COUNT_KEY}",
            [(count, *key) for *key, count in rows],
        )
        cursor.executemany(
            f"DELETE FROM {_COUNTS} WHERE count <= 0 AND {_COUNT_KEY}", [row[:3] for row in rows]
        )
