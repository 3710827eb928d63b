"""The failure causes read model (FailureCause), kept by the store in the same
transaction as the failed steps it counts, and taken off when runs are deleted."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from traces.causes import as_utc
from traces.models import FailureCause, Run, Step

from .upserts import earliest, latest

_CAUSES = FailureCause._meta.db_table
_CAUSE_KEY = "cause = %s AND day = %s AND format = %s AND run_type = %s"


def add_causes(pending: dict[tuple, list], run: Run, causes: dict[tuple, list]) -> None:
    """Gather one run's failed steps, counted by (cause, day) as the store counts
    them, into `pending` by FailureCause's key; `apply_failure_causes` writes them."""
    for (cause, day), (count, first, last) in causes.items():
        key = (cause, day, run.format, run.type)
        entry = pending.get(key)
        if entry is None:
            pending[key] = [count, first, last]
            continue
        entry[0] += count
        if first is not None:
            entry[1] = first if entry[1] is None else min(entry[1], first)
            entry[2] = last if entry[2] is None else max(entry[2], last)


def apply_failure_causes(pending: dict[tuple, list]) -> None:
    """Add gathered causes to FailureCause: one statement, rows in key order (two
    writers meet on the unique index in one order, so they cannot deadlock)."""
    if not pending:
        return
    ops = connection.ops
    sql = (
        f"INSERT INTO {_CAUSES} AS t (cause, day, format, run_type, count, first_seen, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (cause, day, format, run_type) DO UPDATE SET count = t.count + "
        f"excluded.count, first_seen = {earliest('first_seen')}, last_seen = {latest('last_seen')}"
    )
    rows = [
        (
            cause,
            ops.adapt_datefield_value(day),
            format,
            run_type,
            count,
            ops.adapt_datetimefield_value(first),
            ops.adapt_datetimefield_value(last),
        )
        for (cause, day, format, run_type), (count, first, last) in sorted(pending.items())
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def add_failure_causes(run: Run, causes: dict[tuple, list]) -> None:
    """Add one run's failed steps, counted by cause and day, to FailureCause now."""
    pending: dict[tuple, list] = {}
    add_causes(pending, run, causes)
    apply_failure_causes(pending)


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
