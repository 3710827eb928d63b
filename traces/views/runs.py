"""The runs list."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.forms import RunFilterForm
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
    }
    return render(request, fragment(request, "traces/run_list.html", "run-rows"), context)


@require_GET
def run_row(request: HttpRequest, run_id: int) -> HttpResponse:
    """One row of the runs table: a running run's row polls this until it ends."""
    run = get_object_or_404(queries.runs.run_list_columns(Run.objects.all()), pk=run_id)
    return render(request, "traces/run_list.html#run-row", {"run": run})
