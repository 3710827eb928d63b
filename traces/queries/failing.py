"""What is failing now: the runs list's strip of recent failures by run type.

Failed runs, and runs whose steps' items failed (the runs format's `items_failed`,
whatever the run's and the steps' own status: a succeeded run that lost 15 items
is failing too), with their failed items; then failed steps. Each question is an
index range over the recent past (runs by status and start, runs with failed items
by start, failed steps by their failure's time), so it costs what the window holds,
not the store's size; the step count stops at a cap, so a failure storm reads a bounded
range. What a run's steps lost is Run.steps_items_failed, kept at ingest with the
run's row (ingest.store), so the strip counts no step to know it.

Runs whose times are estimated (Run.times_estimated, greentic: the file's modified
time) are counted apart: a folder of old files copied an hour ago would otherwise
read as a burst of failures in the last hour. Each number links to the runs list
filtered by `times=recorded` or `times=estimated`, which lists what it counts. Their
failed steps likewise: a greentic step has no start, so its failure is dated by its
run's time, the file's; they are counted apart by the flag each keeps of its run's
(Step.failed_at_estimated, in the failed steps' index) and linked to the failed-steps
list's own `times=` filter.

The failed steps' windows start where the failed-steps list starts `since=1h` and
`since=24h`: at the first 10-minute slot they reach into (StepListForm.filters, so
that the causes box is read from its read model by slot), so a step count is what its
link lists. The runs list takes its `since` as it is, and so do the runs' numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import CharField, Count, F, Func, IntegerField, Q, Sum, Value
from django.db.models.expressions import RawSQL

from traces.causes import slot_start
from traces.models import Run, Status, Step

# The two windows, as the time filters write them (`since=1h`).
WINDOWS = (("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)))
STEP_COUNT_CAP = 10_000
# Runs whose steps' items failed: the condition of the partial index
# run_items_failed_started, which the strip's range reads.
# Its 0 is written in the SQL, not a parameter: SQLite takes a partial index only for
# a condition it can read in the query's text.
ITEMS_FAILED = Q(steps_items_failed__gt=RawSQL("0", ()))


@dataclass(frozen=True)
class FailingType:
    run_type: str
    # Failed runs (their own status), of recorded times.
    last_hour: int
    last_day: int
    # Runs (of any status) whose steps' items failed, and how many items.
    item_runs_hour: int = 0
    item_runs_day: int = 0
    items_hour: int = 0
    items_day: int = 0
    # The same of the runs whose times are estimated (the file's time), counted apart
    # (None in that part itself).
    estimated: FailingType | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, column) for column in _COLUMNS)


@dataclass(frozen=True)
class FailingNow:
    types: list[FailingType]
    # Failed steps of runs whose times are recorded, in the last hour and day.
    steps_last_hour: int
    steps_last_day: int
    # More failed steps in the last day than the cap (the numbers are of the newest),
    # and in the last hour too.
    steps_capped: bool
    # Failed steps of runs whose times are estimated (dated by the file's time),
    # counted apart.
    estimated_steps_hour: int = 0
    estimated_steps_day: int = 0
    steps_hour_capped: bool = False
    cap: int = STEP_COUNT_CAP

    @property
    def quiet(self) -> bool:
        return not self.types and not self.any_steps

    @property
    def any_steps(self) -> bool:
        """A failed step in the last day, of recorded or estimated times."""
        return bool(self.steps_last_day or self.estimated_steps_day)

    @property
    def runs_last_day(self) -> int:
        """Failed runs in the last day, of recorded or estimated times."""
        return sum(row.last_day + row.estimated.last_day for row in self.types)

    @property
    def has_estimated(self) -> bool:
        """Some runs counted are of estimated times (counted apart)."""
        return any(row.estimated.any for row in self.types)

    @property
    def items_last_hour(self) -> int:
        return sum(row.items_hour for row in self.types)

    @property
    def items_last_day(self) -> int:
        return sum(row.items_day for row in self.types)

    @property
    def estimated_items_hour(self) -> int:
        return sum(row.estimated.items_hour for row in self.types)

    @property
    def estimated_items_day(self) -> int:
        return sum(row.estimated.items_day for row in self.types)

    @property
    def has_items(self) -> bool:
        return any(row.item_runs_day or row.estimated.item_runs_day for row in self.types)


def failing_now(now: datetime) -> FailingNow:
    """Failed runs started in the last hour and day by run type, with the runs of
    the same windows whose steps' items failed (most failing first), and the failed
    steps of the same windows (from their first slot) by their failure's time; those
    of runs whose times are estimated apart."""
    hour_ago, day_ago = now - WINDOWS[0][1], now - WINDOWS[1][1]
    types = failing_types(hour_ago, day_ago)
    return FailingNow(types, **failed_steps(slot_start(hour_ago), slot_start(day_ago)))


def failed_steps(hour_ago: datetime, day_ago: datetime) -> dict:
    """Failed steps since `day_ago` (and `hour_ago`) as the failed-steps list counts
    them (no synthetic grouping steps; by the failure's time, its run's for a step
    without a start), those of runs whose times are recorded and of runs whose times
    are estimated (Step.failed_at_estimated) apart. One walk of the step_failed_at
    index over the window, which holds all it reads; past the cap, the newest are
    kept, so the last hour's counts are exact up to the cap too, and each count is a
    true lower bound past it."""
    recent_steps = Step.objects.filter(
        status=Status.FAILED, failed_at__gte=day_ago, synthetic=False
    ).order_by(F("failed_at").desc(nulls_last=True))
    newest = recent_steps.values("failed_at", "failed_at_estimated")
    hour, estimated = Q(failed_at__gte=hour_ago), Q(failed_at_estimated=True)
    counts = newest[: STEP_COUNT_CAP + 1].aggregate(
        day=Count("failed_at", filter=~estimated),
        hour=Count("failed_at", filter=~estimated & hour),
        estimated_day=Count("failed_at", filter=estimated),
        estimated_hour=Count("failed_at", filter=estimated & hour),
    )
    capped = {
        window: counts[window] + counts[f"estimated_{window}"] > STEP_COUNT_CAP
        for window in ("day", "hour")
    }
    for window, over in capped.items():
        if over:  # the cap's one more row, read to know there are more: not shown
            kind = window if counts[window] else f"estimated_{window}"
            counts[kind] -= 1
    return {
        "steps_last_hour": counts["hour"],
        "steps_last_day": counts["day"],
        "estimated_steps_hour": counts["estimated_hour"],
        "estimated_steps_day": counts["estimated_day"],
        "steps_capped": capped["day"],
        "steps_hour_capped": capped["hour"],
    }


class _GroupedType(Func):
    """A run's type to group by, which SQLite must not read from the run_type_listed
    index (`+type`): without statistics it would walk every run in type order
    rather than the window's few in the partial index."""

    template = "%(expressions)s"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, template="+%(expressions)s", **extra)


_COLUMNS = ("last_day", "last_hour", "item_runs_day", "item_runs_hour", "items_day", "items_hour")


def failing_types(hour_ago: datetime, day_ago: datetime) -> list[FailingType]:
    """By run type: failed runs, and runs with failed items and their items, started
    since `day_ago` (and `hour_ago`), those of recorded times and (FailingType.estimated)
    those of estimated ones apart. One query, the union of two index ranges
    (run_status_started, run_items_failed_started): a run both failed and with
    failed items counts in both, as what each number links to lists it."""
    hour = Q(started_at__gte=hour_ago)
    zero = Value(0, output_field=IntegerField())
    failed = (
        Run.objects.filter(status=Status.FAILED, started_at__gte=day_ago)
        .values(run_type=_GroupedType(F("type")), estimated=F("times_estimated"))
        .annotate(
            last_day=Count("id"),
            last_hour=Count("id", filter=hour),
            item_runs_day=zero,
            item_runs_hour=zero,
            items_day=zero,
            items_hour=zero,
        )
        .order_by()
    )
    items = (
        Run.objects.filter(ITEMS_FAILED, started_at__gte=day_ago)
        .values(run_type=_GroupedType(F("type")), estimated=F("times_estimated"))
        .annotate(
            last_day=zero,
            last_hour=zero,
            item_runs_day=Count("id"),
            item_runs_hour=Count("id", filter=hour),
            items_day=Sum("steps_items_failed"),
            items_hour=Sum("steps_items_failed", filter=hour, default=0),
        )
        .order_by()
    )
    counts: dict[tuple[str, bool], dict[str, int]] = {}
    for row in failed.union(items, all=True):
        part = (row["run_type"], bool(row["estimated"]))
        kept = counts.setdefault(part, dict.fromkeys(_COLUMNS, 0))
        for column in _COLUMNS:
            kept[column] += row[column] or 0
    rows = [
        FailingType(
            run_type,
            **counts.get((run_type, False), dict.fromkeys(_COLUMNS, 0)),
            estimated=FailingType(
                run_type, **counts.get((run_type, True), dict.fromkeys(_COLUMNS, 0))
            ),
        )
        for run_type in sorted({run_type for run_type, _ in counts})
    ]
    # Most failing first: failed runs, then runs with failed items; of recorded
    # times first, then of estimated ones.
    return sorted(rows, key=lambda row: (*_most_first(row), *_most_first(row.estimated)))


def _most_first(row: FailingType) -> tuple[int, ...]:
    return (-row.last_hour, -row.last_day, -row.item_runs_hour, -row.item_runs_day)
