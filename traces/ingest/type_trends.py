"""The trends read models (TypeBucket, TypeStep), kept by the store in the same
transaction as the Run and Step rows they count.

TypeBucket counts runs by (format, run type, UTC hour of the start, status,
duration bin); TypeStep sums a type's steps by (format, run type, UTC day of the
run's start, step name). A run written or rewritten is read back once (one query:
its row and its steps grouped by name, for all the runs a transaction wrote) and
its counts gathered into a `TypeTrendDeltas`; the deltas of a transaction are
applied once, in key order, just before it commits (read_models.py), as RunCount's
are. A run
deleted or about to be rewritten is read the same way before its rows go, and
subtracted.

**Percentiles.** Durations are counted in log-spaced bins: bin `i` holds the
durations in (GAMMA**(i-1), GAMMA**i] ms, GAMMA = 2**(1/16) (16 bins per doubling),
and stands for 2·GAMMA**i / (GAMMA + 1). The percentile read from the bins is the
nearest-rank one (the run at rank ceil(p·n) is found exactly), and the value given
for it is within ERROR = (GAMMA-1)/(GAMMA+1) ≈ 2.17 % of that run's true duration,
for durations between MIN_MS (1 µs) and MAX_MS (31 years); shorter ones count as
MIN_MS, longer ones as MAX_MS.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from datetime import UTC, date, datetime

from django.db import connection

from traces.causes import NO_DAY, as_utc
from traces.models import Run, Step, TypeBucket, TypeStep

BINS_PER_DOUBLING = 16
GAMMA = 2 ** (1 / BINS_PER_DOUBLING)
ERROR = (GAMMA - 1) / (GAMMA + 1)
MIN_MS = 2**-10
MAX_MS = 1e12
NO_DURATION = -32768
NO_HOUR = datetime(1, 1, 1, tzinfo=UTC)
# A step's duration counts at most this much in TypeStep's sums (about 3 years), so
# that a hostile duration cannot overflow a sum.
MAX_STEP_MS = 1e11
STEP_NAME_MAX = TypeStep._meta.get_field("name").max_length
CHUNK = 500


def duration_bin(duration_ms: float | None, status: str) -> int:
    """The bin of a run's duration; NO_DURATION without one or while it runs."""
    if duration_ms is None or status == "running" or math.isnan(duration_ms):
        return NO_DURATION
    ms = min(max(duration_ms, MIN_MS), MAX_MS)
    return math.ceil(math.log2(ms) * BINS_PER_DOUBLING - 1e-9)


def bin_value(bin: int) -> float:
    """The duration (ms) a bin stands for: within ERROR of any duration in it."""
    return 2 * GAMMA**bin / (GAMMA + 1)


def run_hour(started_at: datetime | None) -> datetime:
    if started_at is None:
        return NO_HOUR
    return as_utc(started_at).replace(minute=0, second=0, microsecond=0)


def run_day(started_at: datetime | None) -> date:
    return NO_DAY if started_at is None else as_utc(started_at).date()


def step_us(duration_ms: float) -> int:
    """A step's duration as TypeStep sums it (the SQL of _step_us_sql)."""
    if duration_ms <= 0:
        return 0
    return int(min(duration_ms, MAX_STEP_MS) * 1000)


def _step_us_sql() -> str:
    cut = (
        "FLOOR(s.duration_ms * 1000)::bigint"
        if connection.vendor == "postgresql"
        else ("CAST(s.duration_ms * 1000 AS INTEGER)")
    )
    return (
        f"CASE WHEN s.duration_ms IS NULL OR s.duration_ms <= 0 THEN 0 "
        f"WHEN s.duration_ms >= {MAX_STEP_MS!r} THEN {int(MAX_STEP_MS * 1000)} ELSE {cut} END"
    )


class TypeTrendDeltas:
    """The changes a transaction makes to TypeBucket and TypeStep, applied at its end."""

    def __init__(self):
        self.buckets: Counter = Counter()
        # (format, run_type, day, name) -> [steps, failed, timed, total_us]
        self.steps: defaultdict = defaultdict(lambda: [0, 0, 0, 0])
        # Runs written in this transaction, read back (all at once) when it ends.
        self.written: set[int] = set()

    def add(self, run_ids: list[int]) -> None:
        """These runs are counted as they stand when the transaction ends."""
        self.written.update(run_ids)

    def remove(self, run_ids: list[int]) -> None:
        """These runs, as stored now, are no longer counted (about to be deleted or
        rewritten). A run written earlier in this transaction was not counted yet:
        it stays to be counted as it will stand (a file that gives a run twice)."""
        self._gather([pk for pk in run_ids if pk not in self.written], -1)

    def _gather(self, run_ids: list[int], sign: int) -> None:
        size = _chunk_size()
        for start in range(0, len(run_ids), size):
            chunk = run_ids[start : start + size]
            placeholders = ", ".join(["%s"] * len(chunk))
            sql = (
                f"SELECT r.id, r.format, r.type, r.status, r.started_at, r.duration_ms, s.name, "
                f"COUNT(s.id), SUM(CASE WHEN s.status = 'failed' THEN 1 ELSE 0 END), "
                f"COUNT(s.duration_ms), SUM({_step_us_sql()}) "
                f"FROM {Run._meta.db_table} r LEFT JOIN {Step._meta.db_table} s "
                f"ON s.run_id = r.id AND s.synthetic = %s "
                f"WHERE r.id IN ({placeholders}) GROUP BY r.id, s.name"
            )
            with connection.cursor() as cursor:
                cursor.execute(sql, [False, *chunk])
                rows = cursor.fetchall()
            counted = set()
            for run_id, format, run_type, status, started, duration, name, *sums in rows:
                started = _moment(started)
                if run_id not in counted:
                    counted.add(run_id)
                    bin = duration_bin(duration, status)
                    self.buckets[(run_type, run_hour(started), format, status, bin)] += sign
                if sums[0]:
                    name = (name or "")[:STEP_NAME_MAX]
                    entry = self.steps[(run_type, run_day(started), format, name)]
                    for index, value in enumerate(sums):
                        entry[index] += sign * int(value or 0)

    def __bool__(self) -> bool:
        return bool(self.written or any(self.buckets.values()) or self.steps)

    def gather_written(self) -> None:
        """Count the runs written so far as they stand now (their rows are in)."""
        self._gather(sorted(self.written), 1)
        self.written.clear()

    def merge(self, other: TypeTrendDeltas) -> None:
        """Add `other`'s changes to these (its written runs counted already)."""
        other.gather_written()
        self.buckets.update(other.buckets)
        for key, values in other.steps.items():
            entry = self.steps[key]
            for index, value in enumerate(values):
                entry[index] += value

    def clear(self) -> None:
        self.written.clear()
        self.buckets.clear()
        self.steps.clear()

    def apply(self) -> None:
        """Add the gathered changes, in key order; rows counting nothing go. They are
        forgotten once written (not before: a failed apply can be tried again)."""
        self.gather_written()
        self._write()
        self.clear()

    def _write(self) -> None:
        ops = connection.ops
        buckets = sorted((key, n) for key, n in self.buckets.items() if n)
        steps = sorted((key, v) for key, v in self.steps.items() if any(v))
        if not buckets and not steps:
            return
        with connection.cursor() as cursor:
            if buckets:
                rows = [
                    (run_type, ops.adapt_datetimefield_value(hour), format, status, bin, n)
                    for (run_type, hour, format, status, bin), n in buckets
                ]
                _add_counts(cursor, TypeBucket, BUCKET_KEY, ("count",), rows)
            if steps:
                rows = [
                    (run_type, ops.adapt_datefield_value(day), format, name, *values)
                    for (run_type, day, format, name), values in steps
                ]
                _add_counts(cursor, TypeStep, STEP_KEY, STEP_COUNTS, rows)


BUCKET_KEY = ("run_type", "hour", "format", "status", "bin")
STEP_KEY = ("run_type", "day", "format", "name")
STEP_COUNTS = ("steps", "failed", "timed", "total_us")


def _add_counts(cursor, model, key: tuple, counts: tuple, rows: list[tuple]) -> None:
    """Add each row's counts (`key` columns, then `counts`; one row a key, in key
    order) to the model's table; rows a negative delta left counting nothing (every
    count exactly 0) go. One taken below 0 (a run subtracted twice: a bug) stays, for
    a recount to see (`manage.py check_read_models`)."""
    table, columns = model._meta.db_table, (*key, *counts)
    added = ", ".join(f"{name} = t.{name} + excluded.{name}" for name in counts)
    conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {added}"
    if connection.vendor == "postgresql":
        # One statement, one array a column, the rows taken in their order (the
        # locks' order): executemany is one execution a row (bench/RESULTS.md §16e).
        arrays = ", ".join(
            f"%s::{model._meta.get_field(name).db_type(connection)}[]" for name in columns
        )
        values = [list(column) for column in zip(*rows, strict=True)]
        for index in range(len(key), len(columns)):  # a SUM read back is a Decimal
            values[index] = [int(value) for value in values[index]]
        cursor.execute(
            f"INSERT INTO {table} AS t ({', '.join(columns)}) "
            f"SELECT {', '.join(columns)} FROM unnest({arrays}) WITH ORDINALITY "
            f"AS u({', '.join(columns)}, n) ORDER BY n {conflict}",
            values,
        )
    else:
        cursor.executemany(
            f"INSERT INTO {table} AS t ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) {conflict}",
            rows,
        )
    gone = [row[: len(key)] for row in rows if row[len(key)] < 0]
    if gone:
        where = " AND ".join(f"{name} = %s" for name in (*counts, *key))
        zeros = (0,) * len(counts)
        cursor.executemany(f"DELETE FROM {table} WHERE {where}", [(*zeros, *row) for row in gone])


def _chunk_size() -> int:
    """Ids one statement may name: CHUNK, or fewer where SQLite allows fewer variables."""
    if connection.vendor != "sqlite":
        return CHUNK
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(CHUNK, limit - 1))


def remove_runs(run_ids: list[int]) -> None:
    """Runs about to be deleted: taken off the trends now."""
    if run_ids:
        deltas = TypeTrendDeltas()
        deltas.remove(run_ids)
        deltas.apply()


def rebuild() -> None:
    """Count every stored run again (the migration that adds the read models)."""
    TypeBucket.objects.all().delete()
    TypeStep.objects.all().delete()
    run_ids = list(Run.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(run_ids), CHUNK * 10):
        deltas = TypeTrendDeltas()
        deltas.add(run_ids[start : start + CHUNK * 10])
        deltas.apply()


def _moment(value) -> datetime | None:
    # A raw SQLite cursor may give a time as text.
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
