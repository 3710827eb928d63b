"""How many steps the timeline's "next steps" has after the window shown: a count
read from an index range and capped (REMAINING_CAP + 1 index entries at most), so
it costs the same on the 100,000-step run as on a small one. Apart from
queries/timeline.py, whose windows it counts after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from traces.models import Run, Step

from .steps import only_failed_subtrees

REMAINING_CAP = 1_000


@dataclass(frozen=True)
class Remaining:
    count: int
    capped: bool  # more than `count`: said "1,000+"


def _capped(steps) -> Remaining:
    """Counted by the database over the first REMAINING_CAP + 1 ids in the index's
    order (not the ids sent here to be counted)."""
    found = steps.values("id")[: REMAINING_CAP + 1].count()
    return Remaining(min(found, REMAINING_CAP), found > REMAINING_CAP)


def after_in_window(run: Run, last: Step, high: datetime, *, failed_only: bool) -> Remaining:
    """The steps starting after `last` (in (start, id) order, the timeline's) and no
    later than the window's end `high`: what the next windows of a time window hold
    (its steps with no start, listed at the very end of the whole run, apart)."""
    steps = Step.objects.filter(run_id=run.pk, started_at__lte=high).filter(
        Q(started_at__gt=last.started_at) | Q(started_at=last.started_at, id__gt=last.pk)
    )
    if failed_only:
        steps = only_failed_subtrees(steps)
    return _capped(steps.order_by("started_at", "id"))


def after_in_run_order(run: Run, last: Step, *, failed_only: bool) -> Remaining:
    """The steps after `last` in run order: what the next windows of a timeline with
    no times (greentic) hold."""
    steps = Step.objects.filter(run_id=run.pk, seq__gt=last.seq)
    if failed_only:
        steps = only_failed_subtrees(steps)
    return _capped(steps.order_by("seq", "id"))
