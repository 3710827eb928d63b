"""Runs: the runs list's filters, columns and summaries, and one run for its page."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum

from traces.models import Run, RunCount
from traces.pagination import PAGE_SIZE, Page, cursors_of, keyset_page

RUN_VALUE_FIELDS = ("input", "output", "attributes", "completeness")
# What a row of steps or links across runs shows of its run.
RUN_REF_FIELDS = ("id", "name", "external_id", "format", "type", "status", "started_at")


def filter_runs(filters: dict) -> QuerySet:
    """Runs matching the runs-list filters (cleaned data of RunFilterForm)."""
    runs = Run.objects.all()
    status = filters.get("status")
    if status == "stale":
        runs = runs.stale()
    elif status == "items":
        runs = runs.filter(steps_items_failed__gt=0)
    elif status:
        runs = runs.filter(status=status)
    if filters.get("format"):
        runs = runs.filter(format=filters["format"])
    if filters.get("type"):
        runs = runs.filter(type=filters["type"])
    if filters.get("in_source"):
        runs = runs.filter(left_source_at__isnull=filters["in_source"] == "yes")
    # A recorded start is the list's order (Run.listed_at): the time range bounds the
    # walk of its index rather than filtering every row it passes. Estimated times
    # are listed by id after the others (listed_at NULL): the same indexes' NULL range.
    started = "started_at"
    if filters.get("times") == "recorded":
        runs = runs.filter(listed_at__isnull=False)
        started = "listed_at"
    elif filters.get("times") == "estimated":
        runs = runs.filter(listed_at__isnull=True, times_estimated=True)
    if filters.get("since"):
        runs = runs.filter(**{f"{started}__gte": filters["since"]})
    if filters.get("until"):
        runs = runs.filter(**{f"{started}__lte": filters["until"]})
    if filters.get("q"):
        text = filters["q"]
        runs = runs.filter(
            Q(name__icontains=text)
            | Q(external_id__icontains=text)
            | Q(error__icontains=text)
            | Q(trigger__icontains=text)
        )
    return runs


def run_list_columns(runs: QuerySet) -> QuerySet:
    """Only what the runs table shows: never the big input/output/attributes."""
    return runs.defer("input", "output", "attributes", "output_counters", "completeness")


def runs_page(runs: QuerySet, filters: dict, sort: tuple[str, bool]) -> Page:
    """A page of the runs table: `runs` (from filter_runs) in `sort` order
    (RunFilterForm.sort_key), from the filters' cursor. Raises BadCursor."""
    field, descending = sort
    return keyset_page(
        run_list_columns(runs),
        field,
        descending=descending,
        **cursors_of(filters),
        size=PAGE_SIZE,
    )


# The filters RunCount holds: a list filtered by no others reads its summary there.
COUNTED_FILTERS = {"status": "status", "format": "format", "type": "run_type"}
# Filters that choose no runs (the sort, the page).
PAGING_FILTERS = ("sort", "after", "before")


def run_status_summary(runs: QuerySet, filters: dict) -> dict:
    """The matching runs by status, and their total: `runs` (filter_runs(filters))
    counted, or the RunCount rows that hold the same runs when `filters` are only
    those it counts by (the unfiltered list, a status, a format, a type)."""
    chosen = {
        name: value for name, value in filters.items() if value and name not in PAGING_FILTERS
    }
    if chosen.keys() <= COUNTED_FILTERS.keys() and chosen.get("status") not in ("stale", "items"):
        counters = RunCount.objects.filter(
            **{COUNTED_FILTERS[name]: value for name, value in chosen.items()}
        )
        counts = dict(counters.order_by().values_list("status").annotate(n=Sum("count")))
    else:
        counts = dict(runs.order_by().values_list("status").annotate(n=Count("id")))
    return {"total": sum(counts.values()), **counts}


def stale_among_running(runs: QuerySet, summary: dict) -> int:
    """How many of the matching runs that say "running" are stale: asked only when
    some are running (a walk of the running runs, not of the list)."""
    return runs.stale().count() if summary.get("running") else 0


def run_types() -> list[str]:
    """The run types stored (the runs and steps lists' type choices), from RunCount."""
    types = RunCount.objects.exclude(run_type="").order_by("run_type")
    return list(types.values_list("run_type", flat=True).distinct()[:500])


def run_for_page(run_id: int, *, with_values: bool = False) -> Run:
    """The run with its summaries; its input/output/attributes only when asked."""
    runs = Run.objects.select_related("source_file")
    if not with_values:
        runs = runs.defer(*RUN_VALUE_FIELDS)
    return runs.get(pk=run_id)
