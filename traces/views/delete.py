"""Deleting a run: a confirmation page (GET) and the deletion itself (POST)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from traces.access import DELETE_RUN, permission_required
from traces.ingest.batches import retried
from traces.ingest.store import delete_runs
from traces.models import Run


@require_http_methods(["GET", "POST"])
@permission_required(DELETE_RUN)
def run_delete(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run and everything under it go in one transaction: a reader sees the
    run whole or not at all. Its source file stays, so the run comes back only
    when that file changes and is ingested again."""
    run = get_object_or_404(Run.objects.select_related("source_file"), pk=run_id)
    if request.method == "GET":
        return render(request, "traces/run_delete.html", {"section": "runs", "run": run})
    retried(lambda: delete_runs([run.pk]))  # met an ingest (a deadlock): again
    if request.htmx:
        return HttpResponseClientRedirect(reverse("traces:run-list"))
    return redirect("traces:run-list")
