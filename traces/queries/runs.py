"""Read queries shared by the pages, the API and the commands."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from traces.models import Run, Step, TraceFile


def trace_totals(*, raw: bool = False) -> dict:
    """Everything in the database, counted by format (and status)."""
    status_field = "raw_status" if raw else "status"
    runs: dict = defaultdict(dict)
    for row in Run.objects.values("format", status_field).annotate(n=Count("id")).order_by():
        runs[row["format"]][row[status_field]] = row["n"]
    steps: dict = defaultdict(dict)
    step_rows = (
        Step.objects.filter(synthetic=False)
        .values("run__format", status_field)
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in step_rows:
        steps[row["run__format"]][row[status_field]] = row["n"]
    sums = (
        Run.objects.values("format")
        .annotate(calls=Sum("call_count"), links=Sum("link_count"), logs=Sum("log_count"))
        .order_by()
    )
    files = dict(TraceFile.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {
        "runs": dict(runs),
        "steps": dict(steps),
        "calls": {row["format"]: row["calls"] or 0 for row in sums},
        "links": {row["format"]: row["links"] or 0 for row in sums},
        "logs": {row["format"]: row["logs"] or 0 for row in sums},
        "files": {"ok": files.get("ok", 0), "error": files.get("error", 0)},
    }


# --- runs ---------------------------------------------------------------------------------


def filter_runs(filters: dict) -> QuerySet:
    """Runs matching the runs-list filters (cleaned data of RunFilterForm)."""
    runs = Run.objects.all()
    status = filters.get("status")
    if status == "stale":
        runs = runs.filter(status="running", source_updated_at__lt=stale_cutoff())
    elif status:
        runs = runs.filter(status=status)
    if filters.get("format"):
        runs = runs.filter(format=filters["format"])
    if filters.get("type"):
        runs = runs.filter(type=filters["type"])
    if filters.get("in_source"):
        runs = runs.filter(left_source_at__isnull=filters["in_source"] == "yes")
    if filters.get("since"):
        runs = runs.filter(started_at__gte=filters["since"])
    if filters.get("until"):
        runs = runs.filter(started_at__lte=filters["until"])
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


def stale_cutoff():
    return timezone.now() - settings.TRACER_STALE_AFTER


def run_status_summary(runs: QuerySet) -> dict:
    counts = dict(runs.order_by().values_list("status").annotate(n=Count("id")))
    return {"total": sum(counts.values()), **counts}


def run_types() -> list[str]:
    types = Run.objects.exclude(type="").order_by("type").values_list("type", flat=True)
    return list(types.distinct()[:500])


# --- files --------------------------------------------------------------------------------


def filter_files(filters: dict) -> QuerySet:
    """Files matching the files-list filters (cleaned data of FileFilterForm), without
    their companions' hashes, which no list shows."""
    files = TraceFile.objects.defer("companions")
    if filters.get("status"):
        files = files.filter(status=filters["status"])
    return files


def file_status_counts() -> dict:
    counts = dict(TraceFile.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {"ok": counts.get("ok", 0), "error": counts.get("error", 0)}
