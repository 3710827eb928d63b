"""Read queries of one run's page: its tree one level at a time, its timeline and
logs in windows, one step with what hangs off it.

Every function reads a bounded window through an index, so a run of 100,000
steps costs what a run of 100 costs. They return model instances, querysets or
plain dicts and know nothing of HTTP, so the API can reuse them.
"""

from __future__ import annotations

from django.db.models import Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Substr

from traces.models import Call, EntityLink, LogEntry, Run, Step
from traces.pagination import Page, keyset_page

TREE_WINDOW = 200
TIMELINE_WINDOW = 300
LOG_WINDOW = 200
PANEL_LIMIT = 200
MAX_ANCESTORS = 64
ERROR_HEAD = 200

# A tree or timeline row never needs the big values (input, output, attributes, error).
STEP_ROW_FIELDS = (
    "id", "run_id", "parent_id", "key", "seq", "position", "depth", "name", "type", "status",
    "raw_status", "started_at", "finished_at", "duration_ms", "attempt", "retries", "retry_of",
    "loop_index", "items_total", "items_processed", "items_succeeded", "items_failed",
    "truncated", "never_closed", "synthetic", "child_count", "failed_subtree", "call_count",
    "link_count",
)  # fmt: skip
RUN_VALUE_FIELDS = ("input", "output", "attributes", "completeness")
LOG_ROW_FIELDS = (
    "id", "run_id", "step_id", "seq", "time", "level", "message", "fields", "duplicate",
    "attributes", "step__id", "step__key", "step__name",
)  # fmt: skip


def run_for_page(run_id: int, *, with_values: bool = False) -> Run:
    """The run with its summaries; its input/output/attributes only when asked."""
    runs = Run.objects.select_related("source_file")
    if not with_values:
        runs = runs.defer(*RUN_VALUE_FIELDS)
    return runs.get(pk=run_id)


def step_rows(queryset: QuerySet) -> QuerySet:
    """Row columns, plus the head of the error (never the whole of a long one)."""
    return queryset.only(*STEP_ROW_FIELDS).annotate(error_head=Substr("error", 1, ERROR_HEAD))


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


def timeline_window(
    run_id: int,
    *,
    failed_only: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = TIMELINE_WINDOW,
) -> Page:
    """One window of the run's steps in seq order (parents before children)."""
    steps = Step.objects.filter(run_id=run_id)
    if failed_only:
        steps = only_failed_subtrees(steps)
    return keyset_page(
        step_rows(steps), "seq", descending=False, after=after, before=before, size=size
    )


def step_time_bounds(run_id: int) -> dict:
    """Earliest start and latest finish among the run's steps (for runs that record
    no times of their own). One aggregate over the run's steps."""
    return Step.objects.filter(run_id=run_id).aggregate(
        first_start=Min("started_at"), last_finish=Max("finished_at")
    )


def time_axis(run: Run) -> tuple:
    """(start, end) of the run's time axis: its own times, else its steps' (one
    aggregate); a running run's axis reaches its live_until (now, or the last
    write of a stale run)."""
    start, end = run.started_at, run.finished_at
    if start is None or end is None:
        bounds = step_time_bounds(run.pk)
        start = start or bounds["first_start"]
        end = end or bounds["last_finish"]
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


def step_calls(step: Step, limit: int = PANEL_LIMIT) -> list[Call]:
    return list(step.calls.order_by("position", "id")[:limit])


def step_links(step: Step, limit: int = PANEL_LIMIT) -> list[EntityLink]:
    return list(step.links.order_by("link_type", "entity_type", "entity_id", "id")[:limit])


def step_logs(step: Step, limit: int = PANEL_LIMIT) -> list[LogEntry]:
    return list(step.logs.filter(duplicate=False).order_by("seq", "id")[:limit])


def run_logs(
    run_id: int,
    *,
    level: str = "",
    step_id: int | None = None,
    duplicates: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = LOG_WINDOW,
) -> Page:
    """One window of the run's log in seq order; repeated rows only when asked."""
    logs = LogEntry.objects.filter(run_id=run_id).select_related("step").only(*LOG_ROW_FIELDS)
    if not duplicates:
        logs = logs.filter(duplicate=False)
    if level:
        logs = logs.filter(level=level)
    if step_id is not None:
        logs = logs.filter(step_id=step_id)
    return keyset_page(logs, "seq", descending=False, after=after, before=before, size=size)


def log_levels(run_id: int) -> list[str]:
    """The levels present in the run's log, for the level filter."""
    levels = LogEntry.objects.filter(run_id=run_id).order_by().values_list("level", flat=True)
    return sorted(set(levels.distinct()[:50]))


RUN_JSON_FIELDS = (
    "id", "format", "origin", "external_id", "name", "type", "trigger", "actor", "status",
    "raw_status", "started_at", "finished_at", "duration_ms", "error", "output_counters",
    "progress_label", "items_total", "items_processed", "items_succeeded", "items_failed",
    "truncated", "step_count", "steps_pending", "steps_running", "steps_succeeded",
    "steps_failed", "steps_skipped", "steps_cancelled", "call_count", "link_count", "log_count",
    "max_depth", "source_updated_at", "left_source_at", "ingested_at", "input", "output",
    "attributes", "times_estimated",
)  # fmt: skip


def run_as_dict(run: Run) -> dict:
    """The run's own fields (no steps) as JSON-ready values."""
    data = {}
    for name in RUN_JSON_FIELDS:
        value = getattr(run, name)
        data[name] = value.isoformat() if hasattr(value, "isoformat") else value
    data["is_stale"] = run.is_stale
    data["source_file"] = run.source_file.path if run.source_file_id else None
    return data
