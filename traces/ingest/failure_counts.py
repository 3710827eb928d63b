"""The failure causes read model (FailureCause), kept by the store in the same
transaction as the failed steps it counts, and taken off when runs are deleted."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from traces.causes import as_utc
from traces.models import FailureCause, Run, Step

_CAUSES = FailureCause._meta.db_table
_CAUSE_KEY = "cause = %s AND day = %s AND format = %s AND run_type = %s"


def add_failure_causes(run: Run, causes: dict[tuple, list]) -> None:
    """Add one run's failed steps, counted by cause and day, to FailureCause."""
    if not causes:
        return
    ops = connection.ops
    if connection.vendor == "postgresql":
        earliest, latest = (
            "LEAST(t.first_seen, excluded.first_seen)",
            "GREATEST(t.last_seen, excluded.last_seen)",
        )
    else:  # SQLite's min() and max() of two values are NULL if either is
        earliest = "COALESCE(min(t.first_seen, excluded.first_seen), excluded.first_seen)"
        latest = "COALESCE(max(t.last_seen, excluded.last_seen), excluded.last_seen)"
    sql = (
        f"INSERT INTO {_CAUSES} AS t (cause, day, format, run_type, count, first_seen, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (cause, day, format, run_type) DO UPDATE SET "
        f"count = t.count + excluded.count, first_seen = {earliest}, last_seen = {latest}"
    )
    rows = [
        (
            cause,
            ops.adapt_datefield_value(day),
            run.format,
            run.type,
            count,
            ops.adapt_datetimefield_value(first),
            ops.adapt_datetimefield_value(last),
        )
        for (cause, day), (count, first, last) in sorted(causes.items(), key=_by_key)
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _by_key(item):
    (cause, day), _counts = item
    return cause, day


def _cause_day_sql(time: str) -> str:
    """The SQL of causes.failure_day: the UTC day of a time, NO_DAY without one."""
    if connection.vendor == "postgresql":
        return f"COALESCE(({time} AT TIME ZONE 'UTC')::date, DATE '0001-01-01')"
    return f"COALESCE(date({time}), '0001-01-01')"


def _failed_steps_sql(where: str) -> str:
    """Failed steps (as the causes box counts them) with their cause's key and time."""
    time = "COALESCE(s.started_at, r.started_at)"
    return (
        f"SELECT s.error_cause, {_cause_day_sql(time)} AS day, r.format, r.type, "
        f"COUNT(*), MIN({time}), MAX({time}) "
        f"FROM {Step._meta.db_table} s JOIN {Run._meta.db_table} r ON r.id = s.run_id "
        f"WHERE s.status = 'failed' AND s.synthetic = %s AND s.error_cause <> '' AND {where} "
        "GROUP BY s.error_cause, day, r.format, r.type"
    )


def failure_causes_of(run_ids: list[int]) -> list[tuple]:
    """What these runs' failed steps add to FailureCause: (cause, day, format,
    run_type, count, first, last) in the database's own types."""
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(_failed_steps_sql(f"s.run_id IN ({placeholders})"), [False, *run_ids])
        return cursor.fetchall()


def subtract_failure_causes(removed: list[tuple]) -> None:
    """Take deleted failed steps off FailureCause (their steps already deleted): a
    count that reaches 0 removes its row; a row that lost its first or last
    failure gets its bounds again from the steps left."""
    if not removed:
        return
    keys = [row[:4] for row in removed]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {_CAUSES} SET count = count - %s WHERE {_CAUSE_KEY}",
            [(row[4], *row[:4]) for row in removed],
        )
        cursor.executemany(f"DELETE FROM {_CAUSES} WHERE count <= 0 AND {_CAUSE_KEY}", keys)
        for cause, day, format, run_type, _count, first, last in removed:
            cursor.execute(
                f"SELECT first_seen, last_seen FROM {_CAUSES} WHERE {_CAUSE_KEY}",
                [cause, day, format, run_type],
            )
            kept = cursor.fetchone()
            if kept is None or not may_bound(first, last, *kept):
                continue
            where = (
                f"s.error_cause = %s AND r.format = %s AND r.type = %s "
                f"AND {_cause_day_sql('COALESCE(s.started_at, r.started_at)')} = %s"
            )
            cursor.execute(_failed_steps_sql(where), [False, cause, format, run_type, day])
            recount = cursor.fetchone()
            cursor.execute(
                f"UPDATE {_CAUSES} SET first_seen = %s, last_seen = %s WHERE {_CAUSE_KEY}",
                [recount[5], recount[6], cause, day, format, run_type]
                if recount
                else [None, None, cause, day, format, run_type],
            )


def may_bound(first, last, kept_first, kept_last) -> bool:
    """Whether deleted rows held a kept row's first or last time (then its bounds
    are read again). Times compare as the database returned them."""
    if first is None or kept_first is None:
        return False
    first, last, kept_first, kept_last = map(_moment, (first, last, kept_first, kept_last))
    return first <= kept_first or last >= kept_last


def _moment(value) -> datetime:
    # SQLite gives computed times (MIN of a COALESCE) as text, columns as datetimes.
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
