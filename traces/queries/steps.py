"""Steps: one run's tree a level at a time, one step by key with its ancestors and
what hangs off it (calls, links, log), and steps across runs (the steps page).

Every function reads a bounded window through an index, so a run of 100,000
steps, or a database of 1,000,000, costs what 100 cost.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce, Length, Substr

from traces.models import Call, EntityLink, LogEntry, Status, Step
from traces.pagination import PAGE_SIZE, Page, cursors_of, encode_cursor, keyset_page

from .rows import fast_rows
from .runs import RUN_REF_FIELDS, RUN_VALUE_FIELDS

TREE_WINDOW = 200
PANEL_LIMIT = 200
MAX_ANCESTORS = 64
# What a tree or timeline row shows of an error.
ERROR_HEAD = 200
# Counts above this are shown as "10,000+": an exact count of a million rows is a
# full scan for a number nobody reads digit by digit.
COUNT_CAP = 10_000
# What the steps table shows of an error; the step panel shows all of it.
ERROR_HEAD_CHARS = 2000

# A step's row in every list (a tree level, the timeline, the steps across runs, an
# entity's subjects) never needs the big values (input, output, attributes, error).
STEP_ROW_FIELDS = (
    "id", "run_id", "parent_id", "key", "seq", "position", "depth", "name", "type", "status",
    "raw_status", "started_at", "finished_at", "duration_ms", "attempt", "retries", "retry_of",
    "loop_index", "items_total", "items_processed", "items_succeeded", "items_failed",
    "truncated", "never_closed", "synthetic", "child_count", "failed_subtree", "call_count",
    "link_count", "entity_type", "entity_id", "critical_ms",
)  # fmt: skip


# --- one run's tree ----------------------------------------------------------------------


def step_rows(queryset: QuerySet) -> QuerySet:
    """Row columns, the parent's key, and the head of the error (never the whole of a
    long one) with its length."""
    return fast_rows(
        queryset.only(*STEP_ROW_FIELDS).annotate(
            parent_key=F("parent__key"),
            error_head=Substr("error", 1, ERROR_HEAD),
            error_length=Length("error"),
        )
    )


def only_failed_subtrees(steps: QuerySet) -> QuerySet:
    """Steps that failed or hold a failure. Written `IN (true)` because SQLite
    uses the (run, failed_subtree, seq) index for an equality but not for the
    bare boolean column Django emits for `failed_subtree=True`."""
    return steps.filter(failed_subtree__in=[True])


def tree_level(
    run_id: int,
    parent_id: int | None,
    *,
    failed_only: bool = False,
    after: str | None = None,
    size: int = TREE_WINDOW,
) -> Page:
    """One window of a step's children (or of the run's roots) in position order,
    keyset-paginated. Raises BadCursor for a broken `after`.

    Failed-only windows go by seq, which orders siblings as position does (both
    follow the source's order), so the (run, failed_subtree, seq) index finds the
    few failed roots of a huge run without walking all of its roots."""
    steps = Step.objects.filter(run_id=run_id, parent_id=parent_id)
    order = "position"
    if failed_only:
        steps = only_failed_subtrees(steps)
        order = "seq" if parent_id is None else "position"
    return keyset_page(step_rows(steps), order, descending=False, after=after, size=size)


def step_by_key(run_id: int, key: str, *, rows_only: bool = False) -> Step:
    """One step of a run by its stable key, with its run's header columns."""
    steps = Step.objects.filter(run_id=run_id, key=key)
    if rows_only:
        return step_rows(steps).get()
    steps = steps.select_related("run", "run__source_file")
    return steps.defer(*(f"run__{f}" for f in RUN_VALUE_FIELDS)).get()


def ancestors(step: Step) -> list[Step]:
    """The step's ancestors, root first: one query per level, at most MAX_ANCESTORS."""
    chain: list[Step] = []
    parent_id = step.parent_id
    while parent_id is not None and len(chain) < MAX_ANCESTORS:
        parent = step_rows(Step.objects.filter(pk=parent_id)).first()
        if parent is None:
            break
        chain.append(parent)
        parent_id = parent.parent_id
    chain.reverse()
    return chain


def step_calls(step: Step, limit: int = PANEL_LIMIT) -> list[Call]:
    return list(step.calls.order_by("position", "id")[:limit])


def step_links(step: Step, limit: int = PANEL_LIMIT) -> list[EntityLink]:
    return list(step.links.order_by("link_type", "entity_type", "entity_id", "id")[:limit])


def step_logs(step: Step, limit: int = PANEL_LIMIT) -> list[LogEntry]:
    return list(step.logs.filter(duplicate=False).order_by("seq", "id")[:limit])


# --- steps across runs -----------------------------------------------------------------


def filter_steps(filters: dict) -> QuerySet:
    """Steps matching the steps-page filters (cleaned data of StepListForm).

    `error_group` is a failure cause (Step.error_cause, see errors.failure_groups),
    read through the (error_cause, failed_at, id) index. Synthetic grouping steps
    are left out: the source never had them.

    Only a failed step has a cause (ingest gives one to those alone), so with a
    cause chosen `status = 'failed'` is not written: PostgreSQL takes the two for
    independent, expects a cause's thousands of steps to be a few dozen failed ones,
    and reads them all through both indexes to sort them (355 ms at 10 M steps,
    bench/RESULTS.md §15d) instead of walking the cause's index for a page.
    """
    steps = Step.objects.filter(synthetic=False)
    status = filters.get("status")
    if status and not (status == Status.FAILED and filters.get("error_group")):
        steps = steps.filter(status=status)
    if filters.get("format"):
        steps = steps.filter(run__format=filters["format"])
    if filters.get("run_type"):
        steps = steps.filter(run__type=filters["run_type"])
    # Steps of runs whose times are estimated (the file's time), or of the others: the
    # failing-now strip counts failed ones apart, by the flag each keeps of its run's,
    # in their index; steps of any status by their run's.
    if filters.get("times"):
        estimated = filters["times"] == "estimated"
        if sorted_by(filters) == "failed_at":
            # One test of the index's column (a step written before 0033 has none: its
            # time counts as recorded); `exclude` wrote `NOT (e AND e IS NOT NULL)`, which
            # PostgreSQL split into two bitmap scans read through the table (18-22 ms for
            # a day's failures at 10 M steps, against 4.5 from the index alone).
            flag = Coalesce("failed_at_estimated", Value(False))
            steps = steps.alias(failed_at_estimated_flag=flag).filter(
                failed_at_estimated_flag=estimated
            )
        else:
            steps = steps.filter(run__times_estimated=estimated)
    if filters.get("run"):
        steps = steps.filter(run_id=filters["run"])
    if filters.get("name"):
        lookup = "name" if filters.get("name_match") == "exact" else "name__icontains"
        steps = steps.filter(**{lookup: filters["name"]})
    if filters.get("error"):
        steps = steps.filter(error__icontains=filters["error"])
    # Failed steps (or a cause's) are ranged by their failure's time, as the causes
    # box counts them: a step without a start is there on its run's time.
    time = sorted_by(filters)
    if filters.get("since"):
        steps = steps.filter(**{f"{time}__gte": filters["since"]})
    if filters.get("until"):
        steps = steps.filter(**{f"{time}__lte": filters["until"]})
    if filters.get("error_group"):
        # Written out as the index's condition, so SQLite uses that partial index.
        steps = steps.filter(error_cause=filters["error_group"]).exclude(error_cause="")
    return steps


def sorted_by(filters: dict) -> str:
    """The time the steps list ranges and sorts by: a failure's (Step.failed_at, its
    start else its run's) for failed steps or a cause's, else the step's start."""
    failed = filters.get("status") == Status.FAILED or filters.get("error_group")
    return "failed_at" if failed else "started_at"


def step_list_columns(steps: QuerySet) -> QuerySet:
    """What the steps table shows: the step, its parent's key, its run, and the head of
    its error."""
    return (
        steps.select_related("run")
        .only(*STEP_ROW_FIELDS, "failed_at", *(f"run__{name}" for name in RUN_REF_FIELDS))
        .annotate(
            parent_key=F("parent__key"),
            error_head=Substr("error", 1, ERROR_HEAD_CHARS),
            error_length=Length("error"),
        )
    )


def steps_page(steps: QuerySet, filters: dict) -> Page:
    """A page of the steps table: `steps` (from filter_steps) newest first, from the
    filters' cursor. Raises BadCursor."""
    return newest_steps_page(
        step_list_columns(steps),
        # A cause's steps are failed ones (only they have one): one walk of its index.
        status=filters.get("status") or (Status.FAILED if filters.get("error_group") else ""),
        time=sorted_by(filters),
        **cursors_of(filters),
        size=PAGE_SIZE,
    )


def newest_steps_page(
    steps: QuerySet,
    *,
    status: str = "",
    time: str = "started_at",
    after=None,
    before=None,
    size: int = 50,
) -> Page:
    """A page of steps newest first (`time`, then id), read from the
    (status, -started_at, -id) index, or failed ones by failed_at from theirs.

    Without a status filter, one index walk per status, merged: still a few rows
    read per status instead of sorting every step in the database.
    """
    if status:
        return keyset_page(steps, time, descending=True, after=after, before=before, size=size)
    pages = [
        keyset_page(
            steps.filter(status=value), "started_at", descending=True,
            after=after, before=before, size=size,
        )
        for value in Status.values
    ]  # fmt: skip
    return _merge_pages(pages, size=size, backwards=before is not None, had_cursor=bool(after))


def _newest_first(step) -> tuple:
    # NULL start times come last, as in the index walk.
    return (step.started_at is not None, step.started_at or datetime.min, step.pk)


def _merge_pages(pages: list[Page], *, size: int, backwards: bool, had_cursor: bool) -> Page:
    rows = sorted((row for page in pages for row in page.items), key=_newest_first, reverse=True)
    if backwards:
        more = len(rows) > size or any(page.prev_cursor for page in pages)
        rows = rows[-size:]
        has_prev, has_next = more, True
    else:
        more = len(rows) > size or any(page.next_cursor for page in pages)
        rows = rows[:size]
        has_prev, has_next = had_cursor, more
    return Page(
        items=rows,
        next_cursor=_step_cursor(rows[-1]) if rows and has_next else None,
        prev_cursor=_step_cursor(rows[0]) if rows and has_prev else None,
    )


def _step_cursor(step) -> str:
    return encode_cursor(step.started_at, step.pk)


def capped_count(queryset: QuerySet, cap: int | None = None) -> tuple[int, bool]:
    """How many rows, counting at most `cap` (and whether there are more)."""
    cap = cap or COUNT_CAP
    count = queryset.order_by().values("pk")[: cap + 1].count()
    return min(count, cap), count > cap


def step_time():
    """A failed step's time, or its run's when the source gives the step none
    (Step.failed_at, stored at ingest as the read models date it)."""
    return F("failed_at")
