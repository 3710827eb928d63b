"""The runs list."""

from __future__ import annotations

from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.forms import NewRunsForm, RunFilterForm
from traces.models import Format, Run, Status
from traces.pagination import BadCursor

from .common import bad_request, fragment


@require_GET
@vary_on_headers("HX-Request")
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    runs = queries.runs.filter_runs(form.cleaned_data)
    try:
        page = queries.runs.runs_page(runs, form.cleaned_data, form.sort_key())
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    summary = queries.runs.run_status_summary(runs, form.cleaned_data)
    context = {
        "section": "runs",
        "form": form,
        "page": page,
        "summary": summary,
        "stale_running": queries.runs.stale_among_running(runs, summary),
        "sort": form.cleaned_data.get("sort") or "-started",
        "formats": Format.choices,
        "statuses": Status.choices,
        "run_types": queries.runs.run_types(),
        # The first page watches for runs ingested after it (ids only grow).
        "newest_id": None if _paged(form) else _newest_run_id(),
        # Above the filters: a swap of the rows leaves it as it is.
        "failing": None if request.htmx else queries.failing.failing_now(timezone.now()),
    }
    return render(request, fragment(request, "traces/run_list.html", "run-rows"), context)


# Counting stops here: "1,000+ new runs" says enough, and stays an index range.
NEW_RUNS_CAP = 1000


def _paged(form: RunFilterForm) -> bool:
    return bool(form.cleaned_data.get("after") or form.cleaned_data.get("before"))


def _newest_run_id() -> int:
    return Run.objects.aggregate(newest=Max("id"))["newest"] or 0


@require_GET
def run_list_new(request: HttpRequest) -> HttpResponse:
    """How many runs matching the list's filters came in after the list was shown
    (ids above `seen`), polled by the runs list so new runs never need a reload."""
    form = NewRunsForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    seen = form.cleaned_data["seen"]
    newer = queries.runs.filter_runs(form.cleaned_data).filter(id__gt=seen)
    count = newer[: NEW_RUNS_CAP + 1].count()
    context = {
        "new_runs": min(count, NEW_RUNS_CAP),
        "more": count > NEW_RUNS_CAP,
        "newest_id": seen,
    }
    return render(request, "traces/run_list.html#new-runs", context)


@require_GET
def run_row(request: HttpRequest, run_id: int) -> HttpResponse:
    """One row of the runs table: a running run's row polls this until it ends."""
    run = get_object_or_404(queries.runs.run_list_columns(Run.objects.all()), pk=run_id)
    return render(request, "traces/run_list.html#run-row", {"run": run})
