"""Failures grouped by cause (Step.error_cause, the normalised message computed at
ingest), with each group's counts per day for its sparkline. The steps page and
/api/steps/errors both read them here.

Filters the read model answers (format, run type, whole UTC days) are read from
FailureCause: a row per cause, day, format and run type, never the steps. Any other
filter (a text, a run, a step name, a time inside a day) groups the matching failed
steps by their indexed cause in SQL. Both are exact: no raw message is read to group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import Count, DateField, F, Func, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from traces.causes import NO_DAY
from traces.models import FailureCause, Status, Step

from .steps import filter_steps, step_time

TOP_ERROR_GROUPS = 20
# What a group shows of its example message.
EXAMPLE_CHARS = 500

# The steps-page filters FailureCause can answer; any other one set means grouping
# the failed steps themselves. Paging, the chosen cause and the grouping switch
# change what the page shows, not which failures are grouped.
_ANSWERED = {"format", "run_type", "since", "until"}
_NOT_FILTERS = {"status", "error_group", "group", "after", "before", "name_match"}


@dataclass
class ErrorGroup:
    text: str  # the cause: the group's name and its URL parameter (error_group)
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    example: str = ""  # the newest raw message of this cause (top groups only)
    days: dict[date, int] = field(default_factory=dict)  # failures per UTC day
    spark: list[dict] = field(default_factory=list)


@dataclass
class ErrorGroups:
    groups: list[ErrorGroup]  # every cause found, most frequent first
    from_read_model: bool  # read from FailureCause (else grouped over the steps)
    spark_unit: str = ""

    @property
    def top(self) -> list[ErrorGroup]:
        return self.groups[:TOP_ERROR_GROUPS]

    @property
    def steps_read(self) -> int:
        return sum(group.count for group in self.groups)

    def find(self, text: str) -> ErrorGroup | None:
        return next((group for group in self.groups if group.text == text), None)


def failure_groups(filters: dict, *, details: bool = True) -> ErrorGroups:
    """The failed steps matching the steps-page filters (cleaned data of StepListForm;
    its `status` and `error_group` are ignored) grouped by cause, most frequent
    first; with `details`, the top groups' sparklines and example messages."""
    from_read_model = read_model_answers(filters)
    rows = _read_model_days(filters) if from_read_model else _failed_step_days(filters)
    result = ErrorGroups(groups=_groups_of(rows), from_read_model=from_read_model)
    if details:
        add_sparklines(result)
        add_examples(result.top)
    return result


def read_model_answers(filters: dict) -> bool:
    """Whether FailureCause holds the answer for these filters: only format, run type
    and a time range of whole UTC days (from a midnight, to a day's last instant)."""
    for name, value in filters.items():
        if value in (None, "") or name in _NOT_FILTERS:
            continue
        if name not in _ANSWERED:
            return False
    since, until = filters.get("since"), filters.get("until")
    return (since is None or _is_midnight(since)) and (until is None or _is_day_end(until))


def _is_midnight(moment: datetime) -> bool:
    return moment.astimezone(UTC).timetz() == time(0, tzinfo=UTC)


def _is_day_end(moment: datetime) -> bool:
    return moment.astimezone(UTC).timetz() == time.max.replace(tzinfo=UTC)


# --- the failures per cause and day, from either source -------------------------------


def _read_model_days(filters: dict) -> QuerySet:
    """(cause, day, n, first, last) rows from FailureCause, formats and types summed."""
    causes = FailureCause.objects.all()
    if filters.get("format"):
        causes = causes.filter(format=filters["format"])
    if filters.get("run_type"):
        causes = causes.filter(run_type=filters["run_type"])
    causes = causes.filter(_day_range(filters, "day"))
    return (
        causes.values("cause", "day")
        .annotate(n=Sum("count"), first=Min("first_seen"), last=Max("last_seen"))
        .order_by()
    )


def _failed_step_days(filters: dict) -> QuerySet:
    """(cause, day, n, first, last) rows grouped over the matching failed steps by
    their indexed cause. The time range applies to a failure's time (its start, else
    its run's), as FailureCause counts it, so both sources give the same groups."""
    failed = filter_steps(
        {**filters, "status": Status.FAILED, "error_group": "", "since": None, "until": None}
    )
    when = step_time()
    failed = failed.annotate(when=when).filter(_day_range(filters, "when", as_days=False))
    return (
        failed.order_by()
        .values(cause=F("error_cause"), day=_utc_day(when))
        .annotate(n=Count("id"), first=Min(when), last=Max(when))
    )


def _day_range(filters: dict, column: str, *, as_days: bool = True) -> Q:
    """The time range as a condition on a day column (whole days: the read model),
    or on a time; a range leaves out failures without a time (FailureCause's NO_DAY)."""
    since, until = filters.get("since"), filters.get("until")
    condition = Q()
    if since:
        condition &= Q(**{f"{column}__gte": since.astimezone(UTC).date() if as_days else since})
    if until:
        condition &= Q(**{f"{column}__lte": until.astimezone(UTC).date() if as_days else until})
    if as_days and (since or until):
        condition &= ~Q(**{column: NO_DAY})
    return condition


def _utc_day(expression):
    """The UTC day of a time. SQLite keeps times as UTC text, so date() reads it in C
    (Django's TruncDate would call back into Python for every row)."""
    if connection.vendor == "sqlite":
        return Func(expression, function="date", output_field=DateField())
    return TruncDate(expression, tzinfo=UTC)


def _groups_of(rows: QuerySet) -> list[ErrorGroup]:
    """The causes of (cause, day, n, first, last) rows, most frequent first.

    The rows are read as the database gives them, not through the model's converters:
    of hundreds of rows (a cause per day), only each cause's earliest and latest time
    become datetimes (on SQLite, times are text that sorts as they do, which is how
    its MIN() and MAX() compared them; PostgreSQL gives datetimes)."""
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        fetched = cursor.fetchall()
    cause_at, day_at, n_at, first_at, last_at = (
        names.index(name) for name in ("cause", "day", "n", "first", "last")
    )
    groups: dict[str, ErrorGroup] = {}
    bounds: dict[str, list] = {}
    days: dict = {}
    for row in fetched:
        cause, n = row[cause_at], row[n_at]
        group = groups.get(cause)
        if group is None:
            group = groups[cause] = ErrorGroup(text=cause)
            bounds[cause] = [None, None]
        group.count += n
        edge = bounds[cause]
        first, last = row[first_at], row[last_at]
        if first is not None and (edge[0] is None or first < edge[0]):
            edge[0] = first
        if last is not None and (edge[1] is None or last > edge[1]):
            edge[1] = last
        raw_day = row[day_at]
        if raw_day is None:
            continue
        day = days.get(raw_day)
        if day is None:
            day = days[raw_day] = _as_date(raw_day)
        if day != NO_DAY:
            group.days[day] = group.days.get(day, 0) + n
    as_first, as_last = _converter(rows, "first"), _converter(rows, "last")
    for cause, group in groups.items():
        first, last = bounds[cause]
        group.first_seen = as_first(first) if first is not None else None
        group.last_seen = as_last(last) if last is not None else None
    return sorted(groups.values(), key=lambda group: (-group.count, group.text))


def _as_date(value) -> date:
    """A day as Django's converters give it (SQLite keeps days as ISO text)."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def _converter(rows: QuerySet, name: str):
    """What Django's converters make of an annotation's raw value."""
    expression = rows.query.annotation_select[name]
    converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(
        connection
    )

    def convert(value):
        for converter in converters:
            value = converter(value, expression, connection)
        return value

    return convert


# --- examples ------------------------------------------------------------------------------


def add_examples(groups: list[ErrorGroup]) -> None:
    """Each group's newest raw message, in one query: per cause, the first entry of
    the (error_cause, started_at, id) index, whatever the number of failures. The
    index's condition is written as the index has it, so SQLite uses that index."""
    if not groups:
        return
    table = Step._meta.db_table
    probe = (
        f"SELECT * FROM (SELECT error_cause, substr(error, 1, {EXAMPLE_CHARS}) FROM {table} "
        "WHERE error_cause = %s AND NOT (error_cause = '') AND synthetic = %s "
        "ORDER BY started_at DESC, id DESC LIMIT 1) AS example{}"
    )
    sql = " UNION ALL ".join(probe.format(index) for index in range(len(groups)))
    params = [value for group in groups for value in (group.text, False)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        examples = dict(cursor.fetchall())
    for group in groups:
        group.example = examples.get(group.text) or ""


# --- sparklines ----------------------------------------------------------------------------

# Sparkline buckets: the finest unit that keeps the line at most SPARK_MAX bars. The
# read model counts per day, so a day is the finest.
SPARK_MAX = 48
_SPARK_UNITS = (
    ("day", timedelta(days=1)),
    ("week", timedelta(weeks=1)),
    ("month", timedelta(days=31)),
    ("year", timedelta(days=366)),
)


def add_sparklines(result: ErrorGroups) -> None:
    """The top groups' failures per day, per week, month or year (no query: the
    groups hold their days)."""
    top = result.top
    days = [day for group in top for day in group.days]
    if not days:
        return
    start, end = _midnight(min(days)), _midnight(max(days))
    unit = next((name for name, size in _SPARK_UNITS if (end - start) / size < SPARK_MAX), "year")
    axis = _bucket_axis(start, end, unit)
    for group in top:
        buckets: dict[datetime, int] = {}
        for day, count in group.days.items():
            at = _truncate(_midnight(day), unit)
            buckets[at] = buckets.get(at, 0) + count
        group.spark = [{"at": at, "n": buckets.get(at, 0)} for at in axis]
    result.spark_unit = unit


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _bucket_axis(start: datetime, end: datetime, unit: str) -> list[datetime]:
    """Every bucket start from start to end."""
    axis = []
    current = _truncate(start, unit)
    while current <= end and len(axis) <= SPARK_MAX * 2:
        axis.append(current)
        current = _next_bucket(current, unit)
    return axis


def _truncate(moment: datetime, unit: str) -> datetime:
    if unit == "day":
        return moment
    if unit == "week":
        return moment - timedelta(days=moment.weekday())
    moment = moment.replace(day=1)
    return moment if unit == "month" else moment.replace(month=1)


def _next_bucket(moment: datetime, unit: str) -> datetime:
    if unit in ("day", "week"):
        return moment + dict(_SPARK_UNITS)[unit]
    if unit == "month":
        return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)
    return moment.replace(year=moment.year + 1)
