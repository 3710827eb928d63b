"""A run's steps on its time axis: a window in seq order, and each step's offset and
duration in milliseconds (`lay_out`), computed once for the page and the API alike.

A format that records durations but no timestamps (greentic) has its steps laid end
to end in order, by duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
from django.db import connection
from django.db.models import BooleanField, F, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from traces.models import Run, RunMinimap, Status, Step
from traces.pagination import Page, keyset_page

from .find import few_matches
from .find import matching as find_matching
from .rows import fast_rows
from .steps import only_failed_subtrees, step_rows

TIMELINE_WINDOW = 300


def timeline_window(
    run_id: int,
    *,
    failed_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = TIMELINE_WINDOW,
    find=None,
) -> Page:
    """One window of the run's steps in seq order (parents before children); with
    `find` (a queries.find.Find), of the steps it matches."""
    if find is None:
        steps = Step.objects.filter(run_id=run_id)
    else:
        steps = find_matching(run_id, find, from_matches=few_matches(run_id, find))
    if failed_only:
        steps = only_failed_subtrees(steps)
    return keyset_page(
        step_rows(steps), "seq", descending=False, after=after, before=before, size=size
    )


def time_axis(run: Run) -> tuple:
    """(start, end) of the run's time axis: its own times, else its steps' (their
    earliest start and latest finish, stored at ingest); a running run's axis
    reaches its live_until (now, or the last write of a stale run)."""
    start = run.started_at or run.steps_started_at
    end = run.finished_at or run.steps_finished_at
    until = run.live_until
    if until is not None:
        end = max(end or until, until)
    return start, end or start


def duration_sums(run_id: int, *, before_seq: int, failed_only: bool = False) -> dict:
    """For runs without step timestamps: the summed durations of all steps and of
    those before `before_seq`, to lay steps end to end. One aggregate."""
    steps = Step.objects.filter(run_id=run_id)
    if failed_only:
        steps = only_failed_subtrees(steps)
    sums = steps.aggregate(
        total=Sum("duration_ms"), before=Sum("duration_ms", filter=Q(seq__lt=before_seq))
    )
    return {"total": sums["total"] or 0.0, "before": sums["before"] or 0.0}


class Placed(NamedTuple):
    step: Step
    offset_ms: float | None  # from the axis's start; None: the step has no start time
    duration_ms: float | None  # None: neither recorded nor derivable


@dataclass
class Layout:
    timed: bool  # on the run's clock; False: laid end to end by duration
    start: datetime | None  # the axis's start (None when laid end to end)
    span_ms: float  # the axis's length, as it is (0 for a run that took no time)
    items: list[Placed]


def lay_out(run: Run, steps: list[Step], *, failed_only: bool = False) -> Layout:
    """A window of the run's steps (in seq order) placed on its time axis, in
    milliseconds. With timestamps, on the run's clock: a step still running lasts
    until its run's live_until (now, or a stale run's last write). Without, end to
    end by duration, after the steps before the window (one aggregate)."""
    if any(step.started_at for step in steps):
        start, end = time_axis(run)
        until = run.live_until or timezone.now()
        items = [
            Placed(step, ms_between(start, step.started_at), _duration(step, until))
            for step in steps
        ]
        return Layout(True, start, max(ms_between(start, end) or 0.0, 0.0), items)
    if not steps:
        return Layout(False, None, 0.0, [])
    sums = duration_sums(run.pk, before_seq=steps[0].seq, failed_only=failed_only)
    offset, items = sums["before"], []
    for step in steps:
        items.append(Placed(step, offset, step.duration_ms))
        offset += step.duration_ms or 0.0
    return Layout(False, None, sums["total"], items)


def _duration(step: Step, until: datetime) -> float | None:
    if step.duration_ms is not None:
        return step.duration_ms
    if step.started_at and step.finished_at:
        return ms_between(step.started_at, step.finished_at)
    if step.started_at and step.status == Status.RUNNING:
        return max(ms_between(step.started_at, until), 0.0)
    return None


def ms_between(start: datetime | None, moment: datetime | None) -> float | None:
    """Milliseconds from `start` to `moment`; None when either is unknown."""
    if start is None or moment is None:
        return None
    return (moment - start).total_seconds() * 1000


# --- zoom: the steps that overlap a time window, and the whole run's minimap ------------

# A step shorter than span / LONG_SHARE is "short": those open at the window's start
# are found in a bounded range of the (run, started_at) index; the longer ones (few:
# siblings do not overlap, so each depth holds at most LONG_SHARE of them) through
# the (run, duration_ms) index.
LONG_SHARE = 256
# The minimap: its buckets, and the steps sampled to estimate their density.
MINIMAP_BUCKETS = 200
MINIMAP_SAMPLE = 1_000
MINIMAP_FAILED = 5_000


@dataclass
class TimeWindow:
    """The steps overlapping [from_ms, to_ms] (ms from the axis's start), in start
    order: those that began before the window and still ran in it (`open_before`,
    on the first page only), then a keyset page of those starting inside it."""

    open_before: list[Step]
    page: Page
    # The whole run's last page only: its steps with no start time (no bar), in seq order.
    unstarted: list[Step]


def window_bounds(run: Run, from_ms: float, to_ms: float) -> tuple[datetime, datetime]:
    start, _ = time_axis(run)
    return start + timedelta(milliseconds=from_ms), start + timedelta(milliseconds=to_ms)


def overlapping(
    run: Run,
    from_ms: float,
    to_ms: float,
    span_ms: float,
    *,
    failed_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = TIMELINE_WINDOW,
    whole_run: bool = False,
) -> TimeWindow:
    """The run's steps whose time overlaps the window, keyset-paginated in start
    order. Three bounded index reads whatever the run's size: the steps starting in
    [from - span/LONG_SHARE, to] ((run, started_at, id)), and on the first page the
    long steps and those of no duration that began before and still ran at `from`
    ((run, duration_ms, started_at))."""
    low, high = window_bounds(run, from_ms, to_ms)
    short = timedelta(milliseconds=max(span_ms / LONG_SHARE, 1.0))
    steps = Step.objects.filter(run_id=run.pk)
    if failed_only:
        steps = only_failed_subtrees(steps)
    # Maybe open at `low` (the steps before `low` from (run, duration_ms, started_at,
    # finished_at) alone; those near it are read from the table for the page); a step with
    # no end is then kept if it is running or its duration reaches `low` (is_open).
    maybe_open = Q(finished_at__gte=low) | Q(finished_at__isnull=True)
    near = steps.filter(started_at__gte=low - short, started_at__lte=high).filter(
        Q(started_at__gte=low) | maybe_open
    )
    page = keyset_page(
        window_rows(near), "started_at", descending=False, after=after, before=before, size=size
    )
    until = run.live_until or timezone.now()
    page.items = [step for step in page.items if _is_open(step, low, until)]
    open_before: list[Step] = []
    # None can have begun before `low - short` when the run's first step start (kept
    # with the run at ingest) is not before it: the whole run's first page, two
    # queries fewer.
    first = run.steps_started_at
    if page.prev_cursor is None and (first is None or first < low - short):
        earlier = steps.filter(started_at__lt=low - short).filter(maybe_open)
        # The longest first: ordered by (run, duration_ms) itself, not by start (SQLite
        # would walk (run, started_at) from the run's start to keep that order).
        long_ones = earlier.filter(duration_ms__gt=short.total_seconds() * 1000).order_by(
            "-duration_ms", "-started_at"
        )
        # In (run, duration_ms, started_at, finished_at) order, duration_ms (all NULL
        # here) included: PostgreSQL does not take IS NULL for an equality that fixes the
        # order, and SQLite, ordered by start alone, walks (run, started_at) instead.
        unknown = earlier.filter(duration_ms__isnull=True).order_by(
            "duration_ms", "started_at", "finished_at"
        )
        found = {}
        for queryset in (long_ones, unknown):
            for step in window_rows(queryset)[:size]:
                if _is_open(step, low, until):
                    found[step.pk] = step
        open_before = sorted(found.values(), key=lambda s: (s.started_at, s.pk))[:size]
    unstarted: list[Step] = []
    if whole_run and page.next_cursor is None:
        unstarted = list(
            window_rows(steps.filter(started_at__isnull=True)).order_by("seq", "id")[:size]
        )
    return TimeWindow(open_before, page, unstarted)


# What a time window's row shows (row_html.timeline_rows, the sibling labels, the bar and
# its tip): not the tree row's every column (step_rows), nor its error's head and length.
WINDOW_ROW_FIELDS = (
    "id", "run_id", "parent_id", "key", "seq", "depth", "name", "status", "started_at",
    "finished_at", "duration_ms", "loop_index", "items_failed", "child_count", "critical_ms",
)  # fmt: skip


def window_rows(queryset: QuerySet) -> QuerySet:
    """A time window's rows: WINDOW_ROW_FIELDS and the parent's key (~40 % of the CPU
    time of step_rows' 301 rows to read)."""
    return fast_rows(queryset.only(*WINDOW_ROW_FIELDS).annotate(parent_key=F("parent__key")))


def _is_open(step: Step, low: datetime, until: datetime) -> bool:
    """Whether a step the indexes kept reaches `low`: it starts there or later, or it
    ends there or later (its end, its duration, or now for a running step)."""
    if step.started_at >= low or step.finished_at is not None:
        return True
    end = _duration(step, until)
    return end is not None and step.started_at + timedelta(milliseconds=end) >= low


@dataclass
class Minimap:
    buckets: list[dict]  # {"x", "width", "height"}: density of step starts, 0..1 high
    failed: list[float]  # x (0..1000) of failed steps' starts
    failed_capped: bool
    sampled: int  # how many steps the density was estimated from (0: exact, none)
    exact: bool


def minimap(run: Run, span_ms: float, *, buckets: int = MINIMAP_BUCKETS) -> Minimap:
    """The density of the whole run's step starts over its time axis, in `buckets`
    columns, and the failed steps as ticks. Cheap at any size: the density comes from
    at most MINIMAP_SAMPLE steps spread evenly over the run's seq, exact for a run
    that small; the failed steps from the (run, status, started_at) index of the failed
    ones, at most MINIMAP_FAILED of them. A bigger run's starts are one row the store
    kept (RunMinimap), read from the steps (sampled_starts, failed_starts) only when
    it has none for the run's step count."""
    start, _ = time_axis(run)
    if start is None or span_ms <= 0:
        return Minimap([], [], False, 0, True)
    # Steps are numbered 1..step_count in seq (the store's count, kept with the run).
    top = run.step_count or 0
    exact = top <= MINIMAP_SAMPLE
    stored = None if exact else stored_starts(run.pk, top)
    if stored is None:
        stored = sampled_starts(run.pk, top), failed_starts(run.pk)
    sampled, failed = stored
    origin = ms_between(_EPOCH, start)
    starts = [ms - origin for ms in sampled]
    counts = [0] * buckets
    last = buckets - 1
    for offset in starts:
        at = int(offset / span_ms * buckets)
        counts[0 if at < 0 else last if at > last else at] += 1
    peak = max(counts) or 1
    width = 1000 / buckets
    bars = [
        {"x": f"{i * width:.2f}", "width": f"{width:.2f}", "height": f"{count / peak:.3f}"}
        for i, count in enumerate(counts)
        if count
    ]
    capped = len(failed) > MINIMAP_FAILED
    ticks = tick_places(failed[:MINIMAP_FAILED], origin, span_ms)
    return Minimap(bars, ticks, capped, 0 if exact else len(starts), exact)


def stored_starts(run_id: int, step_count: int) -> tuple[list[float], list[float]] | None:
    """The minimap's sampled and failed starts the store kept for the run at this step
    count (RunMinimap), or None. Their JSON read with orjson (the same floats: both
    parse a float's shortest text exactly), not the JSONField's json.loads (~0.7 ms
    for the 100,000-step run's 4,000 starts, ~0.1 with orjson)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT starts, failed FROM {RunMinimap._meta.db_table} "
            "WHERE run_id = %s AND step_count = %s",
            [run_id, step_count],
        )
        row = cursor.fetchone()
    return None if row is None else (orjson.loads(row[0]), orjson.loads(row[1]))


def sample_seqs(step_count: int) -> list[int]:
    """The seqs of the MINIMAP_SAMPLE steps spread evenly over a run of more steps."""
    stride = step_count / MINIMAP_SAMPLE
    return sorted({int(i * stride) + 1 for i in range(MINIMAP_SAMPLE)})


def sampled_starts(run_id: int, step_count: int) -> list[float]:
    """The start times (ms since the epoch) of the run's steps the minimap samples:
    all of a run of at most MINIMAP_SAMPLE steps, else those of sample_seqs()."""
    steps = Step.objects.filter(run_id=run_id)
    if step_count > MINIMAP_SAMPLE:
        # Through (run, seq, id): a filter on started_at here would have SQLite walk
        # (run, started_at) instead, the whole run.
        sample = sample_seqs(step_count)
        if connection.vendor == "postgresql":
            # One array, not 1,000 parameters: the same index probes, without the
            # statement's 1,000 placeholders to build, bind and plan (~1 ms of planning).
            steps = steps.filter(seq_in_array(sample))
        else:
            # The list written out at once: `seq__in` had the ORM prepare each of the
            # 1,000 values (~2 ms).
            steps = steps.filter(seq_in_list(sample))
    # No filter on started_at (SQLite would walk (run, started_at), the whole run).
    return _epoch_ms(steps)


def failed_starts(run_id: int) -> list[float]:
    """The start times (ms since the epoch) of the run's first MINIMAP_FAILED + 1
    failed steps in start order: from (run, status, started_at) WHERE status =
    'failed' alone (its own condition)."""
    failed_rows = Step.objects.filter(
        run_id=run_id, status=Status.FAILED, started_at__isnull=False
    ).order_by("started_at")
    return _epoch_ms(failed_rows, MINIMAP_FAILED + 1)


def tick_places(starts: list[float], origin: float, span_ms: float) -> list[float]:
    """Where starts (ms since the epoch) fall on the minimap's 0..1000, to a tenth,
    each place once, in order: round(min(max((ms - origin) / span_ms, 0.0), 1.0) *
    1000, 1), the clamps written inline (min() and max() were half of ~2 ms for
    3,000 failed steps)."""
    places = set()
    add = places.add
    for ms in starts:
        at = (ms - origin) / span_ms
        add(round((0.0 if at < 0.0 else 1.0 if at > 1.0 else at) * 1000, 1))
    return sorted(places)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seq_in_array(seqs: list[int]) -> RawSQL:
    """PostgreSQL: `seq = ANY(%s)`, the list one int[] parameter."""
    return RawSQL('"traces_step"."seq" = ANY(%s::int[])', [seqs], output_field=BooleanField())


def seq_in_list(seqs: list[int]) -> RawSQL:
    """SQLite: `seq IN (%s, ...)`, a placeholder per seq."""
    marks = ", ".join(["%s"] * len(seqs))
    return RawSQL(f'"traces_step"."seq" IN ({marks})', seqs, output_field=BooleanField())


def _epoch_ms(steps, limit: int | None = None) -> list[float]:
    """The steps' start times as ms since the epoch, computed by the database: a
    time made a datetime by Django costs ~5 µs a row, thousands per minimap."""
    if connection.vendor == "postgresql":
        # As float8, cast from the exact numeric (correctly rounded, as float() of the
        # Decimal was): a numeric column costs its text and a Decimal per row (~1 µs
        # each, and 3 ms more of the server's time for 3,000 failed steps).
        epoch = "(extract(epoch FROM started_at) * 1000.0)::float8"
    else:
        epoch = "(julianday(started_at) - 2440587.5) * 86400000.0"
    query = steps.annotate(ms=RawSQL(epoch, [])).values_list("ms", flat=True)[:limit]
    return [float(ms) for ms in query if ms is not None]
