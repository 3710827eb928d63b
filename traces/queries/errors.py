"""Failures grouped by cause (Step.error_cause, the normalised message computed at
ingest), with each group's counts per day for its sparkline. The steps page and
/api/steps/errors both read them here.

Filters the read models answer are read from them, never the steps: format, run
type and whole UTC days from FailureCause (a row per cause, day, format and run
type); the same with an exact step name, or a range on 10-minute slots (the page's
"last 1 h / 24 h / 7 d", snapped to a slot), from FailureSlice (a row per cause,
slot, format, run type and step name). Any other filter (a text, a run, a time
inside a slot) groups the matching failed steps by their indexed cause in SQL. All
are exact: no raw message is read to group.

A chosen cause's breakdown by run type and step name is read from FailureSlice
likewise (or grouped over its failed steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import (
    Count,
    DateField,
    DateTimeField,
    F,
    Func,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Substr

from traces.causes import NO_DAY, NO_SLOT, SLOT, slot_end, slot_start
from traces.models import SLICE_NAME_MAX, FailureCause, FailureSlice, Status, Step

from .steps import filter_steps, step_time

TOP_ERROR_GROUPS = 20
# What a group shows of its example message.
EXAMPLE_CHARS = 500

# The steps-page filters FailureCause can answer; any other one set means grouping
# the failed steps themselves. Paging, the chosen cause and the grouping switch
# change what the page shows, not which failures are grouped.
_ANSWERED = {"format", "run_type", "since", "until"}
_NOT_FILTERS = {"status", "error_group", "group", "after", "before", "name_match", "relative"}
# Where the groups come from: the read model by day, by slot, or the steps.
DAYS, SLOTS, STEPS = "days", "slots", "steps"
# A range up to this long grouped over the steps is bucketed by slot, not by day.
SLOTTED_SPAN = timedelta(days=8)
# How many run types and step names a cause's breakdown lists.
BREAKDOWN_TOP = 10


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
    source: str  # DAYS (FailureCause), SLOTS (FailureSlice) or STEPS (grouped)
    spark_unit: str = ""
    chosen: str = ""  # a chosen cause: drawn (and given its example) even if not on top

    @property
    def from_read_model(self) -> bool:
        return self.source != STEPS

    @property
    def top(self) -> list[ErrorGroup]:
        top = self.groups[:TOP_ERROR_GROUPS]
        chosen = self.find(self.chosen) if self.chosen else None
        if chosen is not None and all(group is not chosen for group in top):
            top.append(chosen)
        return top

    @property
    def steps_read(self) -> int:
        return sum(group.count for group in self.groups)

    def find(self, text: str) -> ErrorGroup | None:
        return next((group for group in self.groups if group.text == text), None)


def failure_groups(filters: dict, *, details: bool = True, chosen: str = "") -> ErrorGroups:
    """The failed steps matching the steps-page filters (cleaned data of StepListForm;
    its `status` and `error_group` are ignored) grouped by cause, most frequent
    first; with `details`, the top groups' sparklines and example messages."""
    source = groups_source(filters)
    if source == DAYS:
        rows = _read_model_days(filters)
    elif source == SLOTS:
        rows = _read_model_slots(filters)
    else:
        rows = _failed_step_days(filters, by_slot=_short_range(filters))
    result = ErrorGroups(groups=_groups_of(rows), source=source, chosen=chosen)
    if details:
        add_sparklines(result, filters)
        add_examples(result.top)
    return result


def read_model_answers(filters: dict) -> bool:
    """Whether a read model holds the answer for these filters."""
    return groups_source(filters) != STEPS


def groups_source(filters: dict) -> str:
    """Which read model answers these filters: DAYS for format, run type and a
    range of whole UTC days (from a midnight, to a day's last instant); SLOTS for
    those with an exact step name or a range of whole slots; else STEPS."""
    by_name = False
    for name, value in filters.items():
        if value in (None, "") or name in _NOT_FILTERS:
            continue
        if name == "name" and _slice_name_answers(filters):
            by_name = True
            continue
        if name not in _ANSWERED:
            return STEPS
    since, until = filters.get("since"), filters.get("until")
    whole_days = (since is None or _is_midnight(since)) and (until is None or _is_day_end(until))
    # A relative range ("last 24 h") is drawn by the hour or finer: by slot, also when
    # its first slot starts at a midnight (from 00:00 to 00:10 UTC).
    if whole_days and not by_name and not filters.get("relative"):
        return DAYS
    if (since is None or _is_slot_start(since)) and (until is None or _is_slot_end(until)):
        return SLOTS
    return STEPS


def _slice_name_answers(filters: dict) -> bool:
    """An exact step name FailureSlice keeps whole."""
    return filters.get("name_match") == "exact" and len(filters["name"]) < SLICE_NAME_MAX


def _is_slot_start(moment: datetime) -> bool:
    moment = moment.astimezone(UTC)
    return slot_start(moment) == moment


def _is_slot_end(moment: datetime) -> bool:
    return slot_end(moment) == moment.astimezone(UTC)


def _short_range(filters: dict) -> bool:
    since = filters.get("since")
    if since is None:
        return False
    return (filters.get("until") or datetime.now(UTC)) - since <= SLOTTED_SPAN


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


def _read_model_slots(filters: dict) -> QuerySet:
    """(cause, day, n, first, last) rows from FailureSlice, `day` a slot's start."""
    slices = _slices(filters)
    return (
        slices.values("cause", day=F("slot"))
        .annotate(n=Sum("count"), first=Min("first_seen"), last=Max("last_seen"))
        .order_by()
    )


def _slices(filters: dict) -> QuerySet:
    slices = FailureSlice.objects.all()
    if filters.get("format"):
        slices = slices.filter(format=filters["format"])
    if filters.get("run_type"):
        slices = slices.filter(run_type=filters["run_type"])
    if filters.get("name"):
        slices = slices.filter(step_name=filters["name"])
    since, until = filters.get("since"), filters.get("until")
    if since:
        slices = slices.filter(slot__gte=slot_start(since.astimezone(UTC)))
    if until:
        slices = slices.filter(slot__lte=until)
    if since or until:
        slices = slices.exclude(slot=NO_SLOT)
    return slices


def _failed_step_days(filters: dict, *, by_slot: bool = False) -> QuerySet:
    """(cause, day, n, first, last) rows grouped over the matching failed steps by
    their indexed cause (`day` a slot's start with `by_slot`). The time range
    applies to a failure's time (its start, else its run's), as the read models
    count it, so all sources give the same groups."""
    failed = filter_steps(
        {**filters, "status": Status.FAILED, "error_group": "", "since": None, "until": None}
    )
    when = step_time()
    failed = failed.annotate(when=when).filter(_day_range(filters, "when", as_days=False))
    bucket = _utc_slot(when) if by_slot else _utc_day(when)
    return (
        failed.order_by()
        .values(cause=F("error_cause"), day=bucket)
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
    """The UTC day of a time, NO_DAY without one (failure_counts' SQL, so the steps
    grouped here fall on the read model's days: on SQLite the text's first ten
    characters, read in C with no callback into Python, and exact to the calendar's
    last instant, where date() rounds to milliseconds and gives NULL)."""
    return _failure_counts_sql("day_sql", expression, DateField())


def _utc_slot(expression):
    """The start of a time's slot (failure_counts' SQL; on SQLite as text)."""
    return _failure_counts_sql("slot_sql", expression, DateTimeField())


def _failure_counts_sql(name: str, expression, output_field):
    from traces.ingest import failure_counts

    sql = getattr(failure_counts, name)("{time}")
    template = sql.replace("%", "%%").replace("{time}", "%(expressions)s")
    return Func(expression, template=template, output_field=output_field)


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
        if day not in (NO_DAY, NO_SLOT):
            group.days[day] = group.days.get(day, 0) + n
    as_first, as_last = _converter(rows, "first"), _converter(rows, "last")
    for cause, group in groups.items():
        first, last = bounds[cause]
        group.first_seen = as_first(first) if first is not None else None
        group.last_seen = as_last(last) if last is not None else None
    return sorted(groups.values(), key=lambda group: (-group.count, group.text))


def _as_date(value) -> date | datetime:
    """A day or a slot as Django's converters give it (SQLite keeps them as ISO text,
    times in UTC without an offset)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return value
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


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


# --- a cause's breakdown --------------------------------------------------------------------


@dataclass
class Breakdown:
    """A cause's failures by run type and by step name (the first 100 characters),
    most first; `more_*` how many of each are not listed."""

    run_types: list[tuple[str, int]]
    step_names: list[tuple[str, int]]
    more_types: int = 0
    more_names: int = 0


def cause_breakdown(filters: dict, cause: str) -> Breakdown:
    """The chosen cause's failures matching the filters, counted by run type and by
    step name: one query, from FailureSlice when the read models answer the
    filters, else grouped over its failed steps."""
    if groups_source(filters) == STEPS:
        failed = filter_steps({**filters, "status": Status.FAILED, "error_group": cause})
        when = step_time()
        failed = failed.annotate(when=when).filter(_day_range(filters, "when", as_days=False))
        rows = (
            failed.order_by()
            .values_list("run__type", Substr("name", 1, SLICE_NAME_MAX))
            .annotate(n=Count("id"))
        )
    else:
        rows = (
            _slices(filters)
            .filter(cause=cause)
            .order_by()
            .values_list("run_type", "step_name")
            .annotate(n=Sum("count"))
        )
    by_type: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for run_type, name, n in rows:
        by_type[run_type] = by_type.get(run_type, 0) + n
        by_name[name] = by_name.get(name, 0) + n
    types, names = _most(by_type), _most(by_name)
    return Breakdown(
        run_types=types[:BREAKDOWN_TOP],
        step_names=names[:BREAKDOWN_TOP],
        more_types=max(len(types) - BREAKDOWN_TOP, 0),
        more_names=max(len(names) - BREAKDOWN_TOP, 0),
    )


def _most(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


# --- examples ------------------------------------------------------------------------------


def add_examples(groups: list[ErrorGroup]) -> None:
    """Each group's newest raw message, in one query: per cause, the first entry of
    the (error_cause, failed_at, id) index, whatever the number of failures. The
    index's condition is written as the index has it, so SQLite uses that index."""
    if not groups:
        return
    table = Step._meta.db_table
    probe = (
        f"SELECT * FROM (SELECT error_cause, substr(error, 1, {EXAMPLE_CHARS}) FROM {table} "
        "WHERE error_cause = %s AND NOT (error_cause = '') AND synthetic = %s "
        "ORDER BY failed_at DESC NULLS LAST, id DESC LIMIT 1) AS example{}"
    )
    sql = " UNION ALL ".join(probe.format(index) for index in range(len(groups)))
    params = [value for group in groups for value in (group.text, False)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        examples = dict(cursor.fetchall())
    for group in groups:
        group.example = examples.get(group.text) or ""


# --- sparklines ----------------------------------------------------------------------------

# Sparkline buckets: the finest unit that keeps the line at most SPARK_MAX bars over
# the chosen range (the whole history without one). Failures counted by day (the
# FailureCause read model) are drawn per day at the finest; by slot, per 10 minutes.
SPARK_MAX = 48
_SPARK_UNITS = (
    ("10 min", SLOT),
    ("hour", timedelta(hours=1)),
    ("4 hours", timedelta(hours=4)),
    ("day", timedelta(days=1)),
    ("week", timedelta(weeks=1)),
    ("month", timedelta(days=31)),
    ("year", timedelta(days=366)),
)
_BY_DAY = 3  # the first unit of failures counted by day


def add_sparklines(result: ErrorGroups, filters: dict | None = None) -> None:
    """The top groups' failures per bucket over the filters' time range (to now
    without an end), or over the days they failed on without one: no query, the
    groups hold their days or slots."""
    top = result.top
    keys = [key for group in top for key in group.days]
    since, until = (filters or {}).get("since"), (filters or {}).get("until")
    if not keys and since is None:
        return
    by_day = any(not isinstance(key, datetime) for key in keys)
    moments = [_moment(key) for key in keys]
    start = since.astimezone(UTC) if since else min(moments)
    if until:
        end = until.astimezone(UTC)
    elif since:
        end = max([datetime.now(UTC), *moments])
    else:
        end = max(moments)
    finest = _BY_DAY if by_day or result.source == DAYS else 0
    units = _SPARK_UNITS[finest:]
    unit = next((name for name, size in units if (end - start) / size < SPARK_MAX), "year")
    axis = _bucket_axis(start, end, unit)
    for group in top:
        buckets: dict[datetime, int] = {}
        for key, count in group.days.items():
            at = _truncate(_moment(key), unit)
            buckets[at] = buckets.get(at, 0) + count
        group.spark = [{"at": at, "n": buckets.get(at, 0)} for at in axis]
    result.spark_unit = unit


def _moment(key: date | datetime) -> datetime:
    return key if isinstance(key, datetime) else _midnight(key)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _bucket_axis(start: datetime, end: datetime, unit: str) -> list[datetime]:
    """Every bucket start from start to end (the calendar's last bucket ends it: a
    failure dated 9999-12-31, a "no end" sentinel, has no next one)."""
    axis = []
    current = _truncate(start, unit)
    while current <= end and len(axis) <= SPARK_MAX * 2:
        axis.append(current)
        try:
            current = _next_bucket(current, unit)
        except (OverflowError, ValueError):
            break
    return axis


def _truncate(moment: datetime, unit: str) -> datetime:
    if unit == "10 min":
        return slot_start(moment)
    hour = moment.replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return hour
    if unit == "4 hours":
        return hour.replace(hour=hour.hour - hour.hour % 4)
    day = hour.replace(hour=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    day = day.replace(day=1)
    return day if unit == "month" else day.replace(month=1)


def _next_bucket(moment: datetime, unit: str) -> datetime:
    if unit not in ("month", "year"):
        return moment + dict(_SPARK_UNITS)[unit]
    if unit == "month":
        return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)
    return moment.replace(year=moment.year + 1)
