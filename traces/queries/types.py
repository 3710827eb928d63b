"""Run types and their trends over time, read from the read models kept at ingest:
RunCount (a type's runs by status), TypeBucket (runs by UTC hour, status and
duration bin: counts, success rate, p50/p95) and TypeStep (a type's steps by day
and name: the slowest and the most failing). See ingest/type_trends.py for the
bins and their error bound."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from django.db import connection

from traces.causes import as_utc
from traces.ingest.type_trends import (
    BINS_PER_DOUBLING,
    ERROR,
    GAMMA,
    NO_DURATION,
    NO_HOUR,
    bin_value,
    duration_bin,
)
from traces.models import Run, RunCount, TypeBucket, TypeStep

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BUCKETS = {"day": DAY, "hour": HOUR}
# The buckets shown when the URL gives no start, up to the type's last run.
DEFAULT_BUCKETS = {"day": 30, "hour": 48}
# At most this many buckets in one chart (hours: a month; days: a year and a bit).
MAX_BUCKETS = {"day": 400, "hour": 744}
STEP_ROWS = 10
# The run page compares a run with its type's succeeded runs of this long before it.
COMPARE_SPAN = timedelta(days=30)
ENDED = ("succeeded", "failed", "cancelled", "skipped")
# The order statuses are listed and stacked in.
STATUS_ORDER = ("succeeded", "failed", "cancelled", "skipped", "running", "pending")
PERCENTILE_ERROR = ERROR

_BUCKETS_TABLE = TypeBucket._meta.db_table
_STEPS_TABLE = TypeStep._meta.db_table


# Times are taken inside these bounds, so that no range computed from them leaves the
# years a datetime can hold (no run is stored outside them: NO_HOUR is year 1).
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)


def _bounded(moment: datetime | None) -> datetime | None:
    return None if moment is None else min(max(as_utc(moment), EARLIEST), LATEST)


class BadRange(ValueError):
    """A range the charts cannot show (too many buckets): a 400 with this message."""


def percentile(histogram: Counter, p: float) -> float | None:
    """The nearest-rank p-th percentile (ms) of the durations counted by bin: the bin
    of the run at rank ceil(p/100 · n), as the duration it stands for (within ERROR).
    A bin counted below 0 (a read model a bug subtracted from twice, kept for
    `check_read_models` to find) counts nothing here."""
    histogram = Counter({bin: n for bin, n in histogram.items() if n > 0})
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for bin in sorted(histogram):
        seen += histogram[bin]
        if seen >= rank:
            return bin_value(bin)
    return None  # pragma: no cover


# The runs list's colour classes (app.css) of each status.
STATUS_CLASS = {"succeeded": "c-ok", "failed": "c-fail", "running": "c-run"}


def by_status(counts: Counter) -> list[dict]:
    """The counts that are not 0, in STATUS_ORDER (then any other status), with the
    class that colours them."""
    order = [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
    return [
        {"status": status, "n": counts[status], "class": STATUS_CLASS.get(status, "c-skip")}
        for status in order
        if counts[status]
    ]


def success_rate(counts: Counter) -> float | None:
    """Succeeded among the runs that ended (not pending, not running)."""
    ended = sum(counts[status] for status in ENDED)
    return counts["succeeded"] / ended if ended else None


def _adapt(moment: datetime):
    return connection.ops.adapt_datetimefield_value(moment)


def _floor_hour(moment: datetime) -> datetime:
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def _floor(moment: datetime, bucket: str) -> datetime:
    start = _floor_hour(moment)
    return start.replace(hour=0) if bucket == "day" else start


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- the list of types -------------------------------------------------------------------


class _ByStatus:
    """Runs counted by status (`counts`): their number, success rate and bars."""

    counts: Counter

    @property
    def runs(self) -> int:
        return sum(self.counts.values())

    @property
    def success_rate(self) -> float | None:
        return success_rate(self.counts)

    @property
    def by_status(self) -> list[dict]:
        return by_status(self.counts)


@dataclass
class TypeRow(_ByStatus):
    run_type: str
    formats: list[str]
    counts: Counter
    last_run: Run | None = None


def type_list(filters: dict) -> list[TypeRow]:
    """Every run type (but the empty one) with its runs by status and its last run:
    all time from RunCount, or over `since`..`until` (whole hours) from TypeBucket."""
    format = filters.get("format")
    since, until = _bounded(filters.get("since")), _bounded(filters.get("until"))
    if since or until:
        start, end = _hour_range(since, until)
        sql = (
            f"SELECT run_type, format, status, SUM(count) FROM {_BUCKETS_TABLE} "
            "WHERE hour >= %s AND hour < %s AND hour > %s AND run_type <> ''"
        )
        params = [_adapt(start), _adapt(end), _adapt(NO_HOUR)]
        if format:
            sql, params = sql + " AND format = %s", [*params, format]
        rows = _fetch(sql + " GROUP BY run_type, format, status", params)
    else:
        counts = RunCount.objects.exclude(run_type="")
        if format:
            counts = counts.filter(format=format)
        rows = counts.values_list("run_type", "format", "status", "count")
    by_type: dict[str, TypeRow] = {}
    for run_type, run_format, status, n in rows:
        row = by_type.setdefault(run_type, TypeRow(run_type, [], Counter()))
        if run_format not in row.formats:
            row.formats.append(run_format)
        row.counts[status] += int(n)
    types = sorted(by_type.values(), key=lambda row: (row.run_type.casefold(), row.run_type))
    _add_last_runs(types, format, since, until)
    return types


def _add_last_runs(types: list[TypeRow], format, since, until) -> None:
    """Each type's newest run (in the range), one index seek per type in one query."""
    if not types:
        return
    runs = Run._meta.db_table
    where, params = ["r.type = t.run_type", "r.started_at IS NOT NULL"], []
    if format:
        where.append("r.format = %s")
        params.append(format)
    if since:
        where.append("r.started_at >= %s")
        params.append(_adapt(since))
    if until:
        where.append("r.started_at <= %s")
        params.append(_adapt(until))
    names = ", ".join(["(%s)"] * len(types))
    sql = (
        f"WITH t(run_type) AS (VALUES {names}) "
        f"SELECT t.run_type, (SELECT r.id FROM {runs} r WHERE {' AND '.join(where)} "
        "ORDER BY r.started_at DESC NULLS LAST, r.id DESC LIMIT 1) FROM t"
    )
    last = dict(_fetch(sql, [*(row.run_type for row in types), *params]))
    fields = ("id", "name", "external_id", "status", "started_at", "source_updated_at",
              "times_estimated", "format", "type")  # fmt: skip
    found = Run.objects.only(*fields).in_bulk([pk for pk in last.values() if pk])
    for row in types:
        row.last_run = found.get(last.get(row.run_type))


def type_exists(run_type: str) -> bool:
    return RunCount.objects.filter(run_type=run_type).exclude(run_type="").exists()


# --- one type's trends -------------------------------------------------------------------


@dataclass
class Bucket(_ByStatus):
    start: datetime
    end: datetime
    counts: Counter = field(default_factory=Counter)
    histogram: Counter = field(default_factory=Counter)

    @cached_property
    def p50_ms(self) -> float | None:
        return percentile(self.histogram, 50)

    @cached_property
    def p95_ms(self) -> float | None:
        return percentile(self.histogram, 95)


@dataclass
class Trends:
    run_type: str
    bucket: str
    start: datetime | None
    end: datetime | None
    buckets: list[Bucket]
    total: Bucket | None
    error: float = PERCENTILE_ERROR


def trends(run_type: str, filters: dict) -> Trends:
    """`run_type`'s runs per bucket (`bucket`: day or hour, UTC) by status, with the
    p50/p95 of their durations, over `since`..`until` (whole hours; by default the
    DEFAULT_BUCKETS up to its last run), for one `format` and `status` if given.
    Raises BadRange for more than MAX_BUCKETS buckets."""
    bucket = filters.get("bucket") or "day"
    format, status = filters.get("format"), filters.get("status")
    since, until = _bounded(filters.get("since")), _bounded(filters.get("until"))
    if until is None:
        last = _last_hour(run_type, format)
        if last is None and since is None:
            return Trends(run_type, bucket, None, None, [], None)
        until = max(last or since, since or last) + HOUR - timedelta(microseconds=1)
    step = BUCKETS[bucket]
    if since is None:
        since = _floor(until, bucket) - (DEFAULT_BUCKETS[bucket] - 1) * step
    start, end = _floor(since, bucket), _floor_hour(until) + HOUR
    count = math.ceil((end - start) / step)
    if count > MAX_BUCKETS[bucket]:
        raise BadRange(
            f"That is {count:,} {bucket}s: a chart shows at most {MAX_BUCKETS[bucket]} "
            f"(bucket=hour for up to {MAX_BUCKETS['hour'] // 24} days, bucket=day for longer)."
        )
    buckets = [Bucket(start + i * step, min(start + (i + 1) * step, end)) for i in range(count)]
    # Grouped by bucket in the database, as text (no time parsed per row).
    key_format = "%Y-%m-%d" if bucket == "day" else "%Y-%m-%d %H"
    index_of = {each.start.strftime(key_format): i for i, each in enumerate(buckets)}
    sql = (
        f"SELECT {_bucket_key_sql(bucket)} AS bucket, status, bin, SUM(count) "
        f"FROM {_BUCKETS_TABLE} WHERE run_type = %s AND hour >= %s AND hour < %s AND hour > %s"
    )
    params = [run_type, _adapt(start), _adapt(end), _adapt(NO_HOUR)]
    for name, value in (("format", format), ("status", status)):
        if value:
            sql, params = sql + f" AND {name} = %s", [*params, value]
    total = Bucket(start, end)
    for key, run_status, bin, n in _fetch(sql + " GROUP BY bucket, status, bin", params):
        target = buckets[index_of[key]]
        for each in (target, total):
            each.counts[run_status] += n
            if bin != NO_DURATION:
                each.histogram[bin] += n
    return Trends(run_type, bucket, start, end, buckets, total)


def _bucket_key_sql(bucket: str) -> str:
    """The UTC day ("2026-03-02") or hour ("2026-03-02 05") of TypeBucket.hour, as text."""
    if connection.vendor == "postgresql":
        pattern = "YYYY-MM-DD" if bucket == "day" else "YYYY-MM-DD HH24"
        return f"to_char(hour AT TIME ZONE 'UTC', '{pattern}')"
    return f"substr(hour, 1, {10 if bucket == 'day' else 13})"  # stored as "YYYY-MM-DD HH:MM:SS"


def _last_hour(run_type: str, format: str | None) -> datetime | None:
    sql = f"SELECT MAX(hour) FROM {_BUCKETS_TABLE} WHERE run_type = %s AND hour > %s"
    params = [run_type, _adapt(NO_HOUR)]
    if format:
        sql, params = sql + " AND format = %s", [*params, format]
    value = _fetch(sql, params)[0][0]
    return _moment(value) if value is not None else None


def _hour_range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    start = _floor_hour(since) if since else NO_HOUR + HOUR
    end = _floor_hour(until) + HOUR if until else LATEST
    return start, end


def _moment(value) -> datetime:
    # SQLite gives a computed time (MAX) as text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


# --- a type's steps ----------------------------------------------------------------------


@dataclass
class StepRow:
    name: str
    steps: int
    failed: int
    timed: int
    total_us: int

    @property
    def mean_ms(self) -> float | None:
        return self.total_us / self.timed / 1000 if self.timed else None

    @property
    def total_ms(self) -> float:
        return self.total_us / 1000

    @property
    def failure_rate(self) -> float:
        return self.failed / self.steps if self.steps else 0.0


def type_steps(run_type: str, trend: Trends, format: str | None) -> dict[str, list[StepRow]]:
    """The type's slowest steps (by mean duration) and most failing steps (by failures),
    STEP_ROWS each, among the steps of its runs started in the trend's days."""
    if trend.start is None:
        return {"slowest": [], "failing": []}
    where = "run_type = %s AND day >= %s AND day <= %s"
    first, last = trend.start.date(), (trend.end - timedelta(microseconds=1)).date()
    params = [run_type, connection.ops.adapt_datefield_value(first),
              connection.ops.adapt_datefield_value(last)]  # fmt: skip
    if format:
        where, params = where + " AND format = %s", [*params, format]
    select = (
        "SELECT name, SUM(steps), SUM(failed), SUM(timed), SUM(total_us) "
        f"FROM {_STEPS_TABLE} WHERE {where} GROUP BY name"
    )
    slowest = _fetch(
        f"{select} HAVING SUM(timed) > 0 ORDER BY SUM(total_us) * 1.0 / SUM(timed) DESC, name "
        f"LIMIT {STEP_ROWS}",
        params,
    )
    failing = _fetch(
        f"{select} HAVING SUM(failed) > 0 ORDER BY SUM(failed) DESC, name LIMIT {STEP_ROWS}",
        params,
    )
    as_rows = lambda rows: [StepRow(r[0], *(int(v) for v in r[1:])) for r in rows]  # noqa: E731
    return {"slowest": as_rows(slowest), "failing": as_rows(failing)}


# --- one run against its type ------------------------------------------------------------


@dataclass
class Comparison:
    run_type: str
    format: str
    duration_ms: float
    p50_ms: float
    p95_ms: float
    runs: int
    # Its duration's bin beyond the p95's: compared as counted, not as the bins' values.
    above_p95: bool
    error: float = PERCENTILE_ERROR

    @property
    def ratio(self) -> float:
        return self.duration_ms / self.p50_ms if self.p50_ms else 0.0


def duration_comparison(run: Run, so_far_ms: float | None = None) -> Comparison | None:
    """How the run's duration (or `so_far_ms`, a running run's duration so far)
    compares with its type's succeeded runs (same format) started in the
    COMPARE_SPAN up to it; None without a duration, type or start."""
    duration = run.duration_ms if so_far_ms is None else so_far_ms
    if duration is None or not run.type or run.started_at is None:
        return None
    end = _floor_hour(run.started_at) + HOUR
    rows = _fetch(
        f"SELECT bin, SUM(count) FROM {_BUCKETS_TABLE} WHERE run_type = %s AND hour >= %s "
        "AND hour < %s AND hour > %s AND format = %s AND status = 'succeeded' AND bin <> %s "
        "GROUP BY bin",
        [run.type, _adapt(end - COMPARE_SPAN), _adapt(end), _adapt(NO_HOUR), run.format,
         NO_DURATION],
    )  # fmt: skip
    histogram = Counter({bin: n for bin, n in rows if n > 0})  # none below 0: see percentile
    if not histogram:
        return None
    p95 = percentile(histogram, 95)
    # A duration so far is binned as if it ended now (a running run's has no bin).
    status = run.status if so_far_ms is None else "succeeded"
    return Comparison(
        run.type, run.format, duration, percentile(histogram, 50), p95,
        sum(histogram.values()), duration_bin(duration, status) > _bin_of(p95),
    )  # fmt: skip


def _bin_of(value_ms: float) -> int:
    """The bin whose value this is (bin_value's inverse)."""
    return round(math.log2(value_ms * (GAMMA + 1) / 2) * BINS_PER_DOUBLING)
