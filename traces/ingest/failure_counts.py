"""The failure causes read models, kept by the store in the same transaction as the
failed steps they count, and taken off when runs are deleted: FailureCause (cause by
UTC day by format by run type) and FailureSlice (cause by 10-minute slot by format by run
type by step name). One gathering (`add_causes`) and one apply feed both: the
gathered dict holds FailureCause's keys (4-tuples) and FailureSlice's (5-tuples)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from traces.causes import NO_SLOT, SLOT_MINUTES, as_utc
from traces.models import SLICE_NAME_MAX, FailureCause, FailureSlice, Run, Step
from traces.pagination import keyset_page

from .upserts import earliest, latest

_CAUSES = FailureCause._meta.db_table
_SLICES = FailureSlice._meta.db_table
_CAUSE_COLUMNS = ("cause", "day", "format", "run_type")
_SLICE_COLUMNS = ("cause", "slot", "format", "run_type", "step_name")
# The columns failed_steps_recount_sql(FailureSlice) gives, in order.
SLICE_SQL_COLUMNS = ", ".join((*_SLICE_COLUMNS, "count", "first_seen", "last_seen"))


def slice_name(name) -> str:
    """What FailureSlice keeps of a step's name: its first characters, as stored."""
    if name is None:
        return ""
    text = name if isinstance(name, str) else str(name)
    return text.replace("\x00", "\ufffd")[:SLICE_NAME_MAX]


def add_causes(pending: dict[tuple, list], run: Run, causes: dict[tuple, list]) -> None:
    """Gather one run's failed steps, counted by (cause, slot, step name) as the
    store counts them, into `pending` by FailureCause's key (by day) and by
    FailureSlice's; `apply_failure_causes` writes them."""
    for (cause, slot, name), entry in causes.items():
        day = slot.date() if slot != NO_SLOT else NO_SLOT.date()
        _merge(pending, (cause, day, run.format, run.type), entry)
        _merge(pending, (cause, slot, run.format, run.type, name), entry)


def merge_causes(pending: dict[tuple, list], other: dict[tuple, list]) -> None:
    """Add gathered causes (`other`, by either read model's key) to `pending`."""
    for key, entry in other.items():
        _merge(pending, key, entry)


def _merge(pending: dict[tuple, list], key: tuple, counted: list) -> None:
    count, first, last = counted
    entry = pending.get(key)
    if entry is None:
        pending[key] = [count, first, last]
        return
    entry[0] += count
    if first is not None:
        entry[1] = first if entry[1] is None else min(entry[1], first)
        entry[2] = last if entry[2] is None else max(entry[2], last)


def remove_causes(removed: dict[tuple, list], rows: list[tuple]) -> None:
    """Gather what deleted failed steps took off (`failure_causes_of`, read before
    they went) into `removed`, keys and times as the store gathers its own."""
    for table, values, count, first, last in rows:
        cause, moment, *rest = values
        moment = _moment(moment) if table == _SLICES else _day(moment)
        first, last = (None, None) if first is None else (_moment(first), _moment(last))
        _merge(removed, (cause, moment, *rest), [count, first, last])


def apply_failure_causes(pending: dict[tuple, list], removed: dict | None = None) -> None:
    """Apply gathered causes (and those `removed`) to FailureCause and FailureSlice:
    per table, one upsert of each key's net change, rows in key order (two writers
    meet on the unique index in one order, so they cannot deadlock); then a key
    that counts nothing more (exactly 0: one below 0, counted off twice, stays for a
    recount to see) loses its row, and one that lost rows gets its bounds again from
    the steps left."""
    removed = removed or {}
    if not pending and not removed:
        return
    with connection.cursor() as cursor:
        for table, columns, parts in _MODELS:
            size = len(columns)
            keys = sorted({key for key in (*pending, *removed) if len(key) == size})
            if keys:
                _apply_table(cursor, (table, columns, parts), keys, pending, removed)


def _apply_table(cursor, model: tuple, keys: list, pending: dict, removed: dict) -> None:
    table, columns, _parts = model
    adapt_time = connection.ops.adapt_datetimefield_value
    rows, gone = [], []
    for key in keys:
        count, first, last = pending.get(key, (0, None, None))
        if key in removed:
            count -= removed[key][0]
        stored = _stored_key(table, key)
        rows.append((*stored, count, adapt_time(first), adapt_time(last)))
        if key in removed or count <= 0:
            gone.append(stored)
    cursor.executemany(_upsert_sql(table, columns), rows)
    where = " AND ".join(f"{column} = %s" for column in columns)
    if gone:
        cursor.executemany(f"DELETE FROM {table} WHERE count = 0 AND {where}", gone)
    for key in keys:
        if key in removed:
            _rebound(cursor, model, _stored_key(table, key), removed[key])


def _stored_key(table: str, key: tuple) -> tuple:
    ops = connection.ops
    adapt = ops.adapt_datetimefield_value if table == _SLICES else ops.adapt_datefield_value
    return (key[0], adapt(key[1]), *key[2:])


def _rebound(cursor, model: tuple, values: tuple, removed: list) -> None:
    """A row that lost failures: if one of them may have been its first or last
    (the kept figures still include them, or what the transaction added), its
    bounds are read again from the steps left."""
    table, columns, parts = model
    _count, first, last = removed
    key = " AND ".join(f"{column} = %s" for column in columns)
    cursor.execute(f"SELECT first_seen, last_seen FROM {table} WHERE {key}", list(values))
    kept = cursor.fetchone()
    if kept is None or not may_bound(first, last, *kept):
        return
    where = " AND ".join(f"{sql} = %s" for sql in _key_sql(parts))
    cursor.execute(_failed_steps_sql(parts, where), [False, *values])
    recount = cursor.fetchone()
    size = len(columns)
    bounds = [recount[size + 1], recount[size + 2]] if recount else [None, None]
    cursor.execute(
        f"UPDATE {table} SET first_seen = %s, last_seen = %s WHERE {key}", [*bounds, *values]
    )


def _upsert_sql(table: str, columns: tuple) -> str:
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * (len(columns) + 3))
    return (
        f"INSERT INTO {table} AS t ({names}, count, first_seen, last_seen) VALUES ({marks}) "
        f"ON CONFLICT ({names}) DO UPDATE SET count = t.count + excluded.count, "
        f"first_seen = {earliest('first_seen')}, last_seen = {latest('last_seen')}"
    )


def add_failure_causes(run: Run, causes: dict[tuple, list]) -> None:
    """Add one run's failed steps, counted by cause and day, to FailureCause now."""
    pending: dict[tuple, list] = {}
    add_causes(pending, run, causes)
    apply_failure_causes(pending)


_TIME = "COALESCE(s.started_at, r.started_at)"


def day_sql(time: str) -> str:
    """The SQL of causes.failure_day: the UTC day of a time, NO_DAY without one. On
    SQLite the text's first ten characters, as Django writes a time: date() rounds the
    seconds to milliseconds first, and gives NULL for 9999-12-31 23:59:59.9995 and
    later (a "no end" sentinel), which the ingest counts on that day."""
    if connection.vendor == "postgresql":
        return f"COALESCE(({time} AT TIME ZONE 'UTC')::date, DATE '0001-01-01')"
    return f"COALESCE(substr({time}, 1, 10), '0001-01-01')"


def slot_sql(time: str) -> str:
    """The SQL of causes.failure_slot: the start of a time's slot, NO_SLOT without one
    (on SQLite as text, as Django writes a time). Its % are doubled, as SQL given
    with parameters has them. Exact to the end of the calendar, as failure_slot is:
    PostgreSQL divides whole seconds (its numeric quotient of 253402300799.999999 / 600
    is rounded up to a whole number, whose slot is in the year 10000, an error), and
    SQLite reads the text (strftime rounds to milliseconds, NULL past 9999)."""
    seconds = SLOT_MINUTES * 60
    if connection.vendor == "postgresql":
        return (
            f"COALESCE(to_timestamp(floor(floor(extract(epoch FROM {time})) / {seconds}) "
            f"* {seconds}), TIMESTAMPTZ '0001-01-01 00:00:00+00')"
        )
    return (
        f"COALESCE(substr({time}, 1, 14) || "
        f"printf('%%02d', CAST(substr({time}, 15, 2) AS INTEGER) / {SLOT_MINUTES} * "
        f"{SLOT_MINUTES}) || ':00', '0001-01-01 00:00:00')"
    )


# Per read model: its table, key columns and the SQL of each key column over the
# failed steps (s) and their runs (r).
_MODELS = (
    (_CAUSES, _CAUSE_COLUMNS, (None, day_sql, "r.format", "r.type")),
    (
        _SLICES,
        _SLICE_COLUMNS,
        (None, slot_sql, "r.format", "r.type", f"substr(s.name, 1, {SLICE_NAME_MAX})"),
    ),
)


def _key_sql(parts: tuple) -> list[str]:
    return [
        "s.error_cause" if part is None else part(_TIME) if callable(part) else part
        for part in parts
    ]


def _failed_steps_sql(parts: tuple, where: str) -> str:
    """Failed steps (as the causes box counts them) with a read model's key and time."""
    keys = _key_sql(parts)
    names = [f"k{index}" for index in range(len(keys))]
    selected = ", ".join(f"{sql} AS {name}" for sql, name in zip(keys, names, strict=True))
    return (
        f"SELECT {selected}, COUNT(*), MIN({_TIME}), MAX({_TIME}) "
        f"FROM {Step._meta.db_table} s JOIN {Run._meta.db_table} r ON r.id = s.run_id "
        f"WHERE s.status = 'failed' AND s.synthetic = %s AND s.error_cause <> '' AND {where} "
        f"GROUP BY {', '.join(names)}"
    )


def failed_steps_recount_sql(model: type) -> str:
    """A read model's rows recounted from every failed step: (key..., count, first,
    last), for the migration that fills it and the recount script."""
    table = model._meta.db_table
    parts = next(parts for name, _columns, parts in _MODELS if name == table)
    return _failed_steps_sql(parts, "1 = 1")


def _of_run(field: str) -> Subquery:
    """A step's run's `field`, in an UPDATE of the steps."""
    return Subquery(Run.objects.filter(pk=OuterRef("run_id")).values(field))


def _failure_time(*kept: str) -> Coalesce:
    """When a failed step failed, as the ingest dates it (store._RunWriter): its start,
    else its run's; `kept` columns first, for a repair that keeps what is stored."""
    return Coalesce(*kept, "started_at", _of_run("started_at"))


def fill_failed_at() -> None:
    """Step.failed_at of every failed step, the read models' time of it (the
    migration's backfill, and a repair): failed steps only, read through the
    status index, so 10 M steps cost their few percent that failed."""
    Step.objects.filter(status="failed").update(failed_at=_failure_time())


def fill_failed_at_estimated() -> None:
    """Step.failed_at_estimated of every failed step: whether its run's times are
    estimated (0033's backfill, and a repair), as fill_failed_at does failed_at."""
    Step.objects.filter(status="failed").update(failed_at_estimated=_of_run("times_estimated"))


# Failed steps a batch of fill_missing_failed_at reads and updates.
FILL_BATCH = 5000


@dataclass
class FillBatch:
    """One batch of fill_missing_failed_at: failed steps found without their time, or
    without whether it is estimated."""

    filled: int  # given what they missed
    untimed: int  # still without a time: neither they nor their run have a start


def fill_missing_failed_at(batch_size: int = FILL_BATCH) -> Iterator[FillBatch]:
    """Step.failed_at and failed_at_estimated of the failed steps that have none:
    those an ingest by older code wrote after `migrate` (it knows no such column), which
    the failed-steps list, the failing-now strip and the causes' examples, all read by
    them, leave out or count as timed. A repair (`manage.py fill_failed_at`): it walks
    the failed steps' own index (step_failed_at, which holds both) for those missing
    either, `batch_size` at a time in its order (a filled time moves a step behind the
    walk), and gives each batch in one UPDATE only what it misses (commits between
    batches under autocommit). A step with no time to get (neither it nor its run has a
    start: the read models count it on no day either) keeps a NULL failed_at, so a
    second run finds it again and changes nothing."""
    missing = Q(failed_at__isnull=True) | Q(failed_at_estimated__isnull=True)
    steps = Step.objects.filter(missing, status="failed").only("failed_at", "failed_at_estimated")
    after = None
    while True:
        page = keyset_page(steps, "failed_at", descending=True, after=after, size=batch_size)
        if not page.items:
            return
        rows = Step.objects.filter(pk__in=[step.pk for step in page.items]).values_list(
            "pk", "failed_at", "failed_at_estimated", "started_at", "run__started_at"
        )
        wanting, untimed = [], 0
        for pk, at, estimated, started, run_started in rows:
            timeless = at is None and started is None and run_started is None
            untimed += timeless
            if estimated is None or (at is None and not timeless):
                wanting.append(pk)
        filled = 0
        if wanting:
            filled = Step.objects.filter(pk__in=wanting).update(
                failed_at=_failure_time("failed_at"),
                failed_at_estimated=Coalesce("failed_at_estimated", _of_run("times_estimated")),
            )
        yield FillBatch(filled=filled, untimed=untimed)
        if page.next_cursor is None:
            return
        after = page.next_cursor


def failure_causes_of(run_ids: list[int]) -> list[tuple]:
    """What these runs' failed steps add to the read models: (table, key, count,
    first, last) in the database's own types."""
    placeholders = ", ".join(["%s"] * len(run_ids))
    removed = []
    with connection.cursor() as cursor:
        for table, columns, parts in _MODELS:
            sql = _failed_steps_sql(parts, f"s.run_id IN ({placeholders})")
            cursor.execute(sql, [False, *run_ids])
            size = len(columns)
            removed.extend(
                (table, row[:size], row[size], row[size + 1], row[size + 2])
                for row in cursor.fetchall()
            )
    return removed


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


def _day(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value
