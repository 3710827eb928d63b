"""Two runs compared step by step (the compare page and GET /api/runs/compare).

Steps are matched by their path (Step.path, ingest/step_paths.py: the names along
the tree, loop indexes, repeat numbers): the same path in both runs is the same
step. A window of the comparison reads each run's steps in path order from the
(run, path) index, after or before a cursor, and merges the two sorted streams:
one query per run for a window of rows, whatever the size of the runs, and no
step looked up in the other run. The summary (how many steps were added,
removed, changed) is two SQL queries over the same index. Synthetic grouping
steps (not the source's, not in Run.step_count) are left out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Q

from traces.ingest.step_paths import parts
from traces.models import Run, Step
from traces.pagination import BadCursor, decode_cursor, encode_cursor

# Rows in a window of the comparison.
PAGE_SIZE = 200
# "Changes only": how many steps (both runs) one window reads at most looking for
# changes before it stops and says how far it got (identical runs of 100,000 steps
# would otherwise be read whole for an empty page).
SCAN_LIMIT = 6000
# Steps read per query once a "changes only" window reads on.
CHUNK = 1000
# The summary joins the smaller run to the other, step by step: counted with the
# page when the smaller has at most this many steps (~10 ms), else on its own.
SUMMARY_INLINE = 20_000

CHANGES = ("added", "removed", "status", "duration", "same")
COLUMNS = (
    "path", "id", "key", "name", "type", "status", "duration_ms", "started_at", "loop_index",
    "items_total", "items_processed", "items_succeeded", "items_failed", "child_count",
)  # fmt: skip


@dataclass(frozen=True)
class Threshold:
    """A duration changed when it moved by at least `percent` % of A's and `ms`."""

    percent: float = 20.0
    ms: float = 100.0

    def changed(self, a: float | None, b: float | None) -> bool:
        if a is None or b is None:
            return False
        delta = abs(b - a)
        return delta >= self.ms and (a == 0 or delta * 100.0 >= self.percent * a)


@dataclass(slots=True)
class StepSide:
    """One run's step at a path."""

    path: str
    id: int
    key: str
    name: str
    type: str
    status: str
    duration_ms: float | None
    started_at: object
    loop_index: int | None
    items_total: int | None
    items_processed: int | None
    items_succeeded: int | None
    items_failed: int | None
    child_count: int

    @property
    def has_progress(self) -> bool:
        return self.items_total is not None or self.items_processed is not None


@dataclass(slots=True)
class Row:
    """A path and its step in A and in B (None where that run has none)."""

    path: str
    a: StepSide | None
    b: StepSide | None
    change: str

    @property
    def parts(self) -> list[dict]:
        return parts(self.path)

    @property
    def depth(self) -> int:
        return self.path.count("\x01")

    @property
    def delta_ms(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        if self.a.duration_ms is None or self.b.duration_ms is None:
            return None
        return self.b.duration_ms - self.a.duration_ms

    @property
    def delta_percent(self) -> float | None:
        delta = self.delta_ms
        if delta is None or not self.a.duration_ms:
            return None
        return delta * 100.0 / self.a.duration_ms


@dataclass
class ComparePage:
    rows: list[Row]
    next_cursor: str | None
    prev_cursor: str | None
    # Steps read from both runs for this window.
    scanned: int
    # "Changes only" stopped at SCAN_LIMIT before filling the window.
    cut_short: bool


def classify(a: StepSide | None, b: StepSide | None, threshold: Threshold) -> str:
    if a is None:
        return "added"
    if b is None:
        return "removed"
    if a.status != b.status:
        return "status"
    if threshold.changed(a.duration_ms, b.duration_ms):
        return "duration"
    return "same"


# --- cursors ------------------------------------------------------------------------------

# A cursor is a path and whether the window starts at it (1: the first divergence's
# link) or strictly past it (0: the pages' next / previous links).
_PATH_FIELD = Step._meta.get_field("path")


def cursor_past(path: str) -> str:
    return encode_cursor(path, 0)


def cursor_at(path: str) -> str:
    return encode_cursor(path, 1)


def _decode(cursor: str) -> tuple[str, bool]:
    path, flag = decode_cursor(cursor, _PATH_FIELD)
    if path is None or flag not in (0, 1):
        raise BadCursor()
    return path, flag == 1


# --- the merge ----------------------------------------------------------------------------


class _Stream:
    """One run's steps in path order (or reversed) past a bound, read a chunk at a time."""

    def __init__(self, run_id: int, bound, inclusive: bool, descending: bool, chunk: int):
        self.run_id = run_id
        self.bound = bound
        self.inclusive = inclusive
        self.descending = descending
        self.chunk = chunk
        self.buffer: deque = deque()
        self.done = False

    def peek(self) -> StepSide | None:
        if not self.buffer and not self.done:
            self._fetch()
        return self.buffer[0] if self.buffer else None

    def pop(self) -> StepSide:
        return self.buffer.popleft()

    def _fetch(self) -> None:
        # A synthetic grouping step is no step of the source's (Run.step_count).
        steps = Step.objects.filter(run_id=self.run_id, synthetic=False)
        if self.bound is not None:
            lookup = ("lt", "lte") if self.descending else ("gt", "gte")
            steps = steps.filter(**{f"path__{lookup[self.inclusive]}": self.bound})
        steps = steps.order_by("-path" if self.descending else "path")
        rows = list(steps.values_list(*COLUMNS)[: self.chunk])
        self.done = len(rows) < self.chunk
        if rows:
            self.bound, self.inclusive = rows[-1][0], False
        self.buffer.extend(StepSide(*row) for row in rows)


def compare_page(
    a_id: int,
    b_id: int,
    threshold: Threshold,
    *,
    changes_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
    scan_limit: int = SCAN_LIMIT,
) -> ComparePage:
    """A window of the two runs' steps side by side, in path order, after or before
    a cursor (`changes_only`: the rows whose change is not "same"). Raises BadCursor."""
    backwards = before is not None
    bound, inclusive = (
        _decode(before if backwards else after) if (before or after) else (None, False)
    )
    inclusive = inclusive and not backwards
    streams = [_Stream(run_id, bound, inclusive, backwards, size + 1) for run_id in (a_id, b_id)]
    rows, scanned, last_path, cut = _merge(*streams, threshold, changes_only, size, scan_limit)
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    first, last = (rows[0].path, rows[-1].path) if rows else (None, None)
    if backwards:
        prev_path = last_path if cut else (first if more else None)
        # Forward again from the last row shown (none shown: from where this began).
        next_cursor = cursor_past(last) if last is not None else cursor_at(bound)
    else:
        next_path = last_path if cut else (last if more else None)
        next_cursor = cursor_past(next_path) if next_path is not None else None
        prev_path = first if after else None
    return ComparePage(
        rows=rows,
        next_cursor=next_cursor,
        prev_cursor=cursor_past(prev_path) if prev_path is not None else None,
        scanned=scanned,
        cut_short=cut,
    )


def _merge(a, b, threshold, changes_only, size, scan_limit):
    """Up to size + 1 rows from the two streams; with `changes_only`, stop (cut) once
    `scan_limit` steps were read. Returns (rows, steps read, last path read, cut)."""
    rows: list[Row] = []
    scanned = 0
    last_path = None
    descending = a.descending
    while len(rows) <= size:
        if changes_only and scanned >= scan_limit:
            return rows, scanned, last_path, True
        head_a, head_b = a.peek(), b.peek()
        if head_a is None and head_b is None:
            break
        if head_b is None or (
            head_a is not None
            and head_a.path != head_b.path
            and (head_a.path < head_b.path) != descending
        ):
            step_a, step_b = a.pop(), None
        elif head_a is None or head_a.path != head_b.path:
            step_a, step_b = None, b.pop()
        else:
            step_a, step_b = a.pop(), b.pop()
        path = (step_a or step_b).path
        scanned += (step_a is not None) + (step_b is not None)
        last_path = path
        change = classify(step_a, step_b, threshold)
        if changes_only and change == "same":
            if scanned > size:  # read on in bigger chunks
                a.chunk = b.chunk = CHUNK
            continue
        rows.append(Row(path, step_a, step_b, change))
    return rows, scanned, last_path, False


# --- the summary --------------------------------------------------------------------------


def summary_is_cheap(a: Run, b: Run) -> bool:
    return min(a.step_count, b.step_count) <= SUMMARY_INLINE


def compare_summary(a: Run, b: Run, threshold: Threshold) -> dict:
    """How the two runs' steps differ, counted over both whole runs, and the first
    path (in path order) where they diverge. The runs' step counts are their read
    model's (Run.step_count), so the summary joins the smaller run to the other by
    path and reads nothing else of the bigger one but its first step the smaller
    lacks, when it comes before the first divergence found. Two big runs on
    PostgreSQL: one merge of both runs' steps in path order instead (_merged_counts)."""
    limits = [threshold.ms, threshold.percent]
    if connection.vendor == "postgresql" and not summary_is_cheap(a, b):
        matched, status_changed, duration_changed, first = _merged_counts(a, b, limits)
    else:
        matched, status_changed, duration_changed, first = _joined_counts(a, b, limits)
    status_changed, duration_changed = status_changed or 0, duration_changed or 0
    return {
        "a_steps": a.step_count,
        "b_steps": b.step_count,
        "matched": matched,
        "added": b.step_count - matched,
        "removed": a.step_count - matched,
        "status": status_changed,
        "duration": duration_changed,
        "same": matched - status_changed - duration_changed,
        "first_divergence": first,
    }


def _duration_changed(x: str, y: str) -> str:
    """SQL: step `y`'s duration moved from A's step `x`'s by the threshold (its
    parameters: ms, then percent)."""
    return (
        f"({x}.duration_ms IS NOT NULL AND {y}.duration_ms IS NOT NULL"
        f" AND ABS({y}.duration_ms - {x}.duration_ms) >= %s"
        f" AND ({x}.duration_ms = 0"
        f" OR ABS({y}.duration_ms - {x}.duration_ms) * 100.0 >= %s * {x}.duration_ms))"
    )


def _joined_counts(a: Run, b: Run, limits: list) -> tuple:
    """(matched, status changed, duration changed, first divergence): the smaller
    run's steps each looked up in the other's by path (index-only), then the other's
    first step the smaller lacks, if it comes before the first divergence found."""
    table = Step._meta.db_table
    small, other = (a, b) if a.step_count <= b.step_count else (b, a)
    x, y = ("s", "o") if small is a else ("o", "s")
    duration = _duration_changed(x, y)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(o.id),"
            " SUM(CASE WHEN o.id IS NOT NULL AND o.status <> s.status THEN 1 ELSE 0 END),"
            f" SUM(CASE WHEN o.id IS NOT NULL AND o.status = s.status AND {duration}"
            " THEN 1 ELSE 0 END),"
            f" MIN(CASE WHEN o.id IS NULL OR o.status <> s.status OR {duration}"
            " THEN s.path END)"
            f" FROM {table} s LEFT JOIN {table} o"
            f" ON o.run_id = %s AND o.path = s.path AND o.synthetic = %s"
            " WHERE s.run_id = %s AND s.synthetic = %s",
            [*limits, *limits, other.pk, False, small.pk, False],
        )
        matched, status_changed, duration_changed, first = cursor.fetchone()
        if other.step_count > matched:
            # The other run's first step the small one lacks, if it comes before `first`.
            before_first = " AND o.path < %s" if first is not None else ""
            cursor.execute(
                f"SELECT o.path FROM {table} o WHERE o.run_id = %s{before_first}"
                " AND o.synthetic = %s"
                f" AND NOT EXISTS (SELECT 1 FROM {table} s"
                " WHERE s.run_id = %s AND s.path = o.path AND s.synthetic = %s)"
                " ORDER BY o.path LIMIT 1",
                [other.pk, *([first] if first is not None else []), False, small.pk, False],
            )
            found = cursor.fetchone()
            if found is not None:
                first = found[0]
    return matched, status_changed, duration_changed, first


def _merged_counts(a: Run, b: Run, limits: list) -> tuple:
    """_joined_counts for two big runs on PostgreSQL: both runs' steps read in path
    order from the (run, path) index and merged (a FULL JOIN: the steps of either
    run alone are counted in the same pass), so the cost is the two runs' sizes.

    The join's lookups in the other run (an index descent per step, 100,000 of them)
    were what PostgreSQL chose, and above its JIT threshold (an estimate that grows
    with the whole table) it compiled the query first: 1.2 s at 1 M steps, 783 ms
    at 10 M (bench/RESULTS.md §15d). Each side is ordered in a subquery that is not
    pulled up (OFFSET 0), so the planner merges the two index walks unsorted (else
    it sorts both, on disk)."""
    table = Step._meta.db_table
    side = (
        f"(SELECT path, status, duration_ms FROM {table} WHERE run_id = %s AND synthetic = %s"
        " ORDER BY path OFFSET 0)"
    )
    duration = _duration_changed("s", "o")
    # No JIT: the site's connections have it off (settings).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SUM(CASE WHEN s.path IS NOT NULL AND o.path IS NOT NULL THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN o.status <> s.status THEN 1 ELSE 0 END),"
            f" SUM(CASE WHEN o.status = s.status AND {duration} THEN 1 ELSE 0 END),"
            " MIN(CASE WHEN s.path IS NULL OR o.path IS NULL OR o.status <> s.status"
            f" OR {duration} THEN COALESCE(s.path, o.path) END)"
            f" FROM {side} s FULL JOIN {side} o ON o.path = s.path",
            [*limits, *limits, a.pk, False, b.pk, False],
        )
        matched, status_changed, duration_changed, first = cursor.fetchone()
    return matched or 0, status_changed, duration_changed, first


# --- the two runs -------------------------------------------------------------------------

# A compared run's columns: all but its big values (its output counters are shown).
RUN_DEFERRED = ("input", "output", "attributes", "completeness")


def runs_by_id(*run_ids: int) -> dict[int, Run]:
    """The runs of these ids that exist, in one query."""
    return Run.objects.defer(*RUN_DEFERRED).in_bulk(run_ids)


def previous_run(run: Run) -> Run | None:
    """The run of `run`'s format and type (its name when it has no type) that started
    last before it: what "compare with the previous run" compares it with."""
    runs = Run.objects.defer(*RUN_DEFERRED).filter(format=run.format).exclude(pk=run.pk)
    runs = runs.filter(type=run.type) if run.type else runs.filter(type="", name=run.name)
    if run.started_at is None:
        runs = runs.filter(started_at__isnull=True, id__lt=run.pk)
        return runs.order_by("-id").first()
    earlier = Q(started_at__lt=run.started_at) | Q(started_at=run.started_at, id__lt=run.pk)
    return runs.filter(earlier).order_by(F("started_at").desc(nulls_last=True), "-id").first()


def older_first(first: Run, second: Run) -> tuple[Run, Run]:
    """Two runs chosen together (the runs list's checkboxes) as A and B: the one
    that started first is A."""

    def moment(run):
        return (run.started_at is not None, run.started_at or 0, run.pk)

    return (first, second) if moment(first) <= moment(second) else (second, first)


def counter_rows(a: Run, b: Run) -> list[dict]:
    """The two runs' output counters side by side (A's order, then B's own), with
    B - A where both are numbers."""
    left, right = a.output_counters or {}, b.output_counters or {}
    names = [*left, *(name for name in right if name not in left)]
    return [
        {
            "name": name,
            "a": left.get(name),
            "b": right.get(name),
            "delta": _delta(left.get(name), right.get(name)),
        }
        for name in names
    ]


PROGRESS_FIELDS = (
    ("steps", "step_count"),
    ("succeeded", "steps_succeeded"),
    ("failed", "steps_failed"),
    ("running", "steps_running"),
    ("pending", "steps_pending"),
    ("skipped", "steps_skipped"),
    ("cancelled", "steps_cancelled"),
    ("items total", "items_total"),
    ("items processed", "items_processed"),
    ("items succeeded", "items_succeeded"),
    ("items failed", "items_failed"),
    ("duration", "duration_ms"),
)


def progress_rows(a: Run, b: Run) -> list[dict]:
    """The runs' step counts, item counters and durations side by side (statuses and
    counters that are zero or absent in both are left out)."""
    rows = []
    for label, name in PROGRESS_FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        if name not in ("step_count", "duration_ms") and not left and not right:
            continue  # a status neither run has, counters neither keeps
        rows.append(
            {"name": label, "field": name, "a": left, "b": right, "delta": _delta(left, right)}
        )
    return rows


def _delta(a, b):
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return b - a if numbers else None
