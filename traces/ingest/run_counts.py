"""The runs read model (RunCount), kept by the store in the same transaction as
the Run rows it counts: a run written, rewritten with another status or type,
or deleted moves its count.

A transaction's runs are counted as they are written and the counts applied once,
just before it commits, with the other read models' in one order (read_models.py):
concurrent ingests (several workers on PostgreSQL) then hold a counter row only for
the moment before they commit, and take the rows they share in the same order, so
they never deadlock on them."""

from __future__ import annotations

from collections import Counter

from django.db import connection

from traces.models import Run, RunCount

_COUNTS = RunCount._meta.db_table
_COUNT_KEY = "format = %s AND run_type = %s AND status = %s"


def run_key(run: Run) -> tuple[str, str, str]:
    """What RunCount counts a run under."""
    return run.format, run.type, run.status


def move_run_count(counts: Counter, old: tuple | None, new: tuple) -> None:
    """A run written: counted under `new`, no longer under `old` (None: a new run)."""
    if old is not None:
        counts[old] -= 1
    counts[new] += 1


def apply_run_counts(counts: Counter) -> None:
    """Add signed counts by (format, run_type, status) to RunCount, in key order;
    a count that reaches 0 removes its row (the type choices list the rows left). One
    taken below 0 (a run subtracted twice: a bug) keeps its row, for a recount to see
    (`manage.py check_read_models`)."""
    rows = sorted((*key, n) for key, n in counts.items() if n)
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {_COUNTS} AS t (format, run_type, status, count) "
            "VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (format, run_type, status) DO UPDATE SET count = t.count + excluded.count",
            rows,
        )
        gone = [row[:3] for row in rows if row[3] < 0]
        if gone:
            cursor.executemany(f"DELETE FROM {_COUNTS} WHERE count = 0 AND {_COUNT_KEY}", gone)


def run_counts_of(run_ids: list[int]) -> Counter:
    """What these runs add to RunCount, by (format, run_type, status)."""
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT format, type, status, COUNT(*) FROM {Run._meta.db_table} "
            f"WHERE id IN ({placeholders}) GROUP BY format, type, status",
            run_ids,
        )
        return Counter({(format, run_type, status): n for format, run_type, status, n in cursor})
