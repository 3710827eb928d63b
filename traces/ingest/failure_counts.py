"""The failure causes read model (FailureCause), kept by the store in the same
transaction as the failed steps it counts, and taken off when runs are deleted."""

from __future__ import annotations

from datetime import date, datetime

from django.db import connection

from traces.causes import as_utc
from traces.models import FailureCause, Run, Step

from .upserts import earliest, latest

_CAUSES = FailureCause._meta.db_table
_CAUSE_KEY = "cause = %s AND day = %s AND format = %s AND run_type = %s"


def add_causes(pending: dict[tuple, list], run: Run, causes: dict[tuple, list]) -> None:
    """Gather one run's failed steps, counted by (cause, day) as the store counts
    them, into `pending` by FailureCause's key; `apply_failure_causes` writes them."""
    for (cause, day), entry in causes.items():
        _add_entry(pending, (cause, day, run.format, run.type), entry)


def merge_causes(pending: dict[tuple, list], other: dict[tuple, list]) -> None:
    """Add gathered causes (`other`, by FailureCause's key) to `pending`."""
    for key, entry in other.items():
        _add_entry(pending, key, entry)


def _add_entry(pending: dict[tuple, list], key: tuple, entry: list) -> None:
    count, first, last = entry
    kept = pending.get(key)
    if kept is None:
        pending[key] = [count, first, last]
        return
    kept[0] += count
    if first is not None:
        kept[1] = first if kept[1] is None else min(kept[1], first)
        kept[2] = last if kept[2] is None else max(kept[2], last)


def remove_causes(removed: dict[tuple, list], rows: list[tuple]) -> None:
    """Gather what deleted failed steps took off (`failure_causes_of`, read before
    they went) into `removed`, keys and times as the store gathers its own."""
    for cause, day, format, run_type, count, first, last in rows:
        day = date.fromisoformat(day) if isinstance(day, str) else day
        first, last = (None, None) if first is None else (_moment(first), _moment(last))
        _add_entry(removed, (cause, day, format, run_type), [count, first, last])


def apply_failure_causes(pending: dict[tuple, list], removed: dict | None = None) -> None:
    """Apply gathered causes (and those `removed`) to FailureCause: one upsert of
    each key's net change, rows in key order (two writers meet on the unique index
    in one order, so they cannot deadlock); then a key that counts nothing more
    loses its row, and one that lost rows gets its bounds again from the steps left."""
    removed = removed or {}
    if not pending and not removed:
        return
    ops = connection.ops
    sql = (
        f"INSERT INTO {_CAUSES} AS t (cause, day, format, run_type, count, first_seen, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (cause, day, format, run_type) DO UPDATE SET count = t.count + "
        f"excluded.count, first_seen = {earliest('first_seen')}, last_seen = {latest('last_seen')}"
    )
    rows, gone = [], []
    for key in sorted(pending.keys() | removed.keys()):
        cause, day, format, run_type = key
        count, first, last = pending.get(key, (0, None, None))
        if key in removed:
            count -= removed[key][0]
        stored_key = (cause, ops.adapt_datefield_value(day), format, run_type)
        rows.append(
            (
                *stored_key,
                count,
                ops.adapt_datetimefield_value(first),
                ops.adapt_datetimefield_value(last),
            )
        )
        if key in removed or count <= 0:
            gone.append(stored_key)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        if gone:
            cursor.executemany(f"DELETE FROM {_CAUSES} WHERE count <= 0 AND {_CAUSE_KEY}", gone)
        for key in sorted(removed):
            _rebound(cursor, key, removed[key])


def _rebound(cursor, key: tuple, removed: list) -> None:
    """A cause that lost failures: if one of them may have been its first or last
    (the kept figures still include them, or what the transaction added), its
    bounds are read again from the steps left."""
    cause, day, format, run_type = key
    day = connection.ops.adapt_datefield_value(day)
    _count, first, last = removed
    cursor.execute(
        f"SELECT first_seen, last_seen FROM {_CAUSES} WHERE {_CAUSE_KEY}",
        [cause, day, format, run_type],
    )
    kept = cursor.fetchone()
    if kept is None or not may_bound(first, last, *kept):
        return
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
