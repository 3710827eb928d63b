"""Ingested files: every one, ok or failed, with its error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.forms import FileFilterForm
from traces.models import TraceFile
from traces.pagination import BadCursor

from .common import bad_request, fragment


@require_GET
@vary_on_headers("HX-Request")
def file_list(request: HttpRequest) -> HttpResponse:
    form = FileFilterForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    filters = form.cleaned_data
    try:
        page = queries.files.files_page(filters)
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    context = {
        "section": "files",
        "page": page,
        "status": filters["status"],
        "counts": queries.files.file_status_counts(),
    }
    return render(request, fragment(request, "traces/file_list.html", "file-rows"), context)


@require_GET
def file_detail(request: HttpRequest, file_id: int) -> HttpResponse:
    trace_file = get_object_or_404(TraceFile, pk=file_id)
    runs = queries.runs.run_list_columns(trace_file.runs.order_by("-started_at", "-id"))[:200]
    return render(
        request,
        "traces/file_detail.html",
        {"section": "files", "file": trace_file, "runs": runs},
    )
