"""Ingested files: every one, ok or failed, with its error."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.models import TraceFile
from traces.pagination import BadCursor, keyset_page

from .common import PAGE_SIZE, bad_request, fragment


@require_GET
@vary_on_headers("HX-Request")
def file_list(request):
    status = request.GET.get("status", "")
    if status not in ("", "ok", "error"):
        return bad_request(request, f"status must be ok or error, not {status!r}")
    files = TraceFile.objects.select_related("source").order_by("-checked_at", "-id")
    if status:
        files = files.filter(status=status)
    try:
        page = keyset_page(
            files,
            "checked_at",
            descending=True,
            after=request.GET.get("after") or None,
            before=request.GET.get("before") or None,
            size=PAGE_SIZE,
        )
    except BadCursor as exc:
        return bad_request(request, str(exc))
    context = {
        "section": "files",
        "page": page,
        "status": status,
        "counts": queries.file_status_counts(),
    }
    return render(request, fragment(request, "traces/file_list.html", "file-rows"), context)


@require_GET
def file_detail(request, file_id: int):
    trace_file = get_object_or_404(TraceFile, pk=file_id)
    runs = queries.run_list_columns(trace_file.runs.order_by("-started_at", "-id"))[:200]
    return render(
        request,
        "traces/file_detail.html",
        {"section": "files", "file": trace_file, "runs": runs},
    )
