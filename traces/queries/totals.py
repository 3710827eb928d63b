"""Everything in the database, counted: the `tracestats` command and the loader's tests."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, Sum

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
