"""What is failing now: the runs list's strip of recent failures by run type.

Both questions are index ranges over the recent past (runs by status and start,
steps by status and start), so they cost what the window holds, not the store's
size; the step count stops at a cap, so a failure storm reads a bounded range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Q

from traces.models import Run, Status, Step

# The two windows, as the time filters write them (`since=1h`).
WINDOWS = (("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)))
STEP_COUNT_CAP = 10_000


@dataclass(frozen=True)
class FailingType:
    run_type: str
    last_hour: int
    last_day: int


@dataclass(frozen=True)
class FailingNow:
    types: list[FailingType]
    steps_last_hour: int
    steps_last_day: int
    steps_capped: bool
    cap: int = STEP_COUNT_CAP

    @property
    def quiet(self) -> bool:
        return not self.types and not self.steps_last_day


def failing_now(now: datetime) -> FailingNow:
    """Failed runs started in the last hour and day, by run type (most failing
    first), and the failed steps started in the same windows."""
    hour_ago, day_ago = now - WINDOWS[0][1], now - WINDOWS[1][1]
    rows = (
        Run.objects.filter(status=Status.FAILED, started_at__gte=day_ago)
        .values("type")
        .annotate(last_day=Count("id"), last_hour=Count("id", filter=Q(started_at__gte=hour_ago)))
        .order_by("-last_hour", "-last_day", "type")
    )
    types = [FailingType(row["type"], row["last_hour"], row["last_day"]) for row in rows]
    # As the failed-steps list counts them (no synthetic grouping steps); past the
    # cap, the newest are kept, so the last hour's count is exact up to the cap too.
    recent_steps = Step.objects.filter(
        status=Status.FAILED, started_at__gte=day_ago, synthetic=False
    ).order_by(F("started_at").desc(nulls_last=True))
    steps = recent_steps.values("started_at")[: STEP_COUNT_CAP + 1].aggregate(
        day=Count("started_at"), hour=Count("started_at", filter=Q(started_at__gte=hour_ago))
    )
    day = min(steps["day"], STEP_COUNT_CAP)
    hour = min(steps["hour"], STEP_COUNT_CAP)
    return FailingNow(types, hour, day, steps["day"] > STEP_COUNT_CAP)
