"""Failures grouped by cause: error messages normalised (their particulars replaced
by placeholders), failed steps grouped by the result, and each group's counts over
time for its sparkline. The steps page and /api/steps/errors both read them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Count, DateTimeField, Func, Max, Min, QuerySet, Value
from django.db.models.functions import Trunc

from traces.causes import NO_MESSAGE, normalise_error
from traces.models import Status

from .steps import filter_steps, step_time

# Distinct raw error messages one grouping reads (most frequent first): bounds the
# work and the memory whatever the number of failed steps.
ERROR_GROUP_CAP = 1000
TOP_ERROR_GROUPS = 20


# --- failures grouped by normalised error ----------------------------------------------


@dataclass
class ErrorGroup:
    text: str  # the normalised message: the group's name and its URL parameter
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    raw_errors: list[str] = field(default_factory=list)  # most frequent first
    spark: list[dict] = field(default_factory=list)

    @property
    def example(self) -> str:
        return self.raw_errors[0] if self.raw_errors else ""


@dataclass
class ErrorGroups:
    groups: list[ErrorGroup]  # every group found, most frequent first
    capped: bool  # more distinct messages than ERROR_GROUP_CAP: counts are partial
    messages_read: int
    spark_unit: str = ""

    @property
    def top(self) -> list[ErrorGroup]:
        return self.groups[:TOP_ERROR_GROUPS]

    @property
    def steps_read(self) -> int:
        return sum(group.count for group in self.groups)

    def find(self, text: str) -> ErrorGroup | None:
        return next((group for group in self.groups if group.text == text), None)


def failure_groups(filters: dict, *, sparklines: bool = True) -> ErrorGroups:
    """The failed steps matching the steps-page filters (cleaned data of StepListForm;
    its `status` is ignored), grouped by normalised error; the top groups with their
    sparklines unless `sparklines` is false (paging needs only a group's messages)."""
    failed = filter_steps({**filters, "status": Status.FAILED})
    result = error_groups(failed)
    if sparklines:
        add_sparklines(result, failed)
    return result


def error_groups(failed_steps: QuerySet, *, cap: int | None = None) -> ErrorGroups:
    """Failed steps grouped by normalised error, most frequent first.

    The database groups by the raw message (COUNT/MIN/MAX, the `cap` most frequent);
    Python merges raw messages that normalise alike. So 100,000 failed steps cost one
    aggregate query and at most `cap` rows, never 100,000 model instances.
    """
    cap = cap or ERROR_GROUP_CAP
    rows = list(
        failed_steps.order_by()
        .values("error")
        .annotate(n=Count("id"), first=Min(step_time()), last=Max(step_time()))
        .order_by("-n", "error")[: cap + 1]
    )
    capped = len(rows) > cap
    groups: dict[str, ErrorGroup] = {}
    for row in rows[:cap]:
        text = normalise_error(row["error"]) or NO_MESSAGE
        group = groups.setdefault(text, ErrorGroup(text=text))
        group.count += row["n"]
        group.raw_errors.append(row["error"])
        group.first_seen = _earliest(group.first_seen, row["first"])
        group.last_seen = _latest(group.last_seen, row["last"])
    ordered = sorted(groups.values(), key=lambda group: (-group.count, group.text))
    return ErrorGroups(groups=ordered, capped=capped, messages_read=min(len(rows), cap))


def _earliest(a, b):
    return b if a is None else a if b is None else min(a, b)


def _latest(a, b):
    return b if a is None else a if b is None else max(a, b)


# Sparkline buckets: the finest unit that keeps the line at most SPARK_MAX bars.
SPARK_MAX = 48
_SPARK_UNITS = (
    ("hour", timedelta(hours=1)),
    ("day", timedelta(days=1)),
    ("week", timedelta(weeks=1)),
    ("month", timedelta(days=31)),
    ("year", timedelta(days=366)),
)


def add_sparklines(result: ErrorGroups, failed_steps: QuerySet) -> None:
    """Counts over time for the top groups, in one aggregate query."""
    top = result.top
    times = [t for group in top for t in (group.first_seen, group.last_seen) if t]
    if not times:
        return
    start, end = min(times), max(times)
    unit = next((name for name, size in _SPARK_UNITS if (end - start) / size < SPARK_MAX), "year")
    raw_to_group = {raw: group for group in top for raw in group.raw_errors}
    counts = (
        failed_steps.filter(error__in=list(raw_to_group))
        .order_by()
        .values("error", bucket=_bucket(step_time(), unit))
        .annotate(n=Count("id"))
    )
    per_group: dict[str, dict[datetime, int]] = {}
    for row in counts:
        if row["bucket"] is None:
            continue
        buckets = per_group.setdefault(raw_to_group[row["error"]].text, {})
        buckets[row["bucket"]] = buckets.get(row["bucket"], 0) + row["n"]
    axis = _bucket_axis(start, end, unit)
    for group in top:
        buckets = per_group.get(group.text, {})
        group.spark = [{"at": at, "n": buckets.get(at, 0)} for at in axis]
    result.spark_unit = unit


# SQLite has no date_trunc: Django's Trunc calls back into Python for every row,
# which costs seconds over 100,000 failures; strftime does it in C.
_SQLITE_BUCKETS = {
    "hour": ("%Y-%m-%d %H:00:00", ()),
    "day": ("%Y-%m-%d 00:00:00", ()),
    "week": ("%Y-%m-%d 00:00:00", ("weekday 0", "-6 days")),  # the Monday
    "month": ("%Y-%m-01 00:00:00", ()),
    "year": ("%Y-01-01 00:00:00", ()),
}


def _bucket(expression, unit: str):
    """The start of the UTC hour/day/week/month/year holding a time."""
    if connection.vendor == "sqlite":
        pattern, modifiers = _SQLITE_BUCKETS[unit]
        arguments = [Value(pattern), expression, *(Value(m) for m in modifiers)]
        return Func(*arguments, function="strftime", output_field=DateTimeField())
    return Trunc(expression, unit, tzinfo=UTC)


def _bucket_axis(start: datetime, end: datetime, unit: str) -> list[datetime]:
    """Every bucket start from start to end, as the database truncates them."""
    axis = []
    current = _truncate(start, unit)
    while current <= end and len(axis) <= SPARK_MAX * 2:
        axis.append(current)
        current = _next_bucket(current, unit)
    return axis


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return moment
    moment = moment.replace(hour=0)
    if unit == "day":
        return moment
    if unit == "week":
        return moment - timedelta(days=moment.weekday())
    moment = moment.replace(day=1)
    return moment if unit == "month" else moment.replace(month=1)


def _next_bucket(moment: datetime, unit: str) -> datetime:
    if unit in ("hour", "day", "week"):
        return moment + dict(_SPARK_UNITS)[unit]
    if unit == "month":
        return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)
    return moment.replace(year=moment.year + 1)
