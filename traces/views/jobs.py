"""Background ingest jobs: queued, running (with progress), done (with results)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces.models import IngestJob
from traces.tasks import job_report

from .common import fragment
from .upload import _results


@require_GET
@vary_on_headers("HX-Request")
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(IngestJob.objects.select_related("source"), pk=job_id)
    results = _results(job_report(job)) if job.status == "done" and job.results else None
    took = job.finished_at - job.started_at if job.finished_at and job.started_at else None
    context = {"section": "upload", "job": job, "results": results, "took": took}
    return render(request, fragment(request, "traces/job_detail.html", "job-status"), context)
