"""Trace sources: directories and databases on the server that the site rescans."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces import sources as scans
from traces.access import ADD_SOURCE, CHANGE_SOURCE, DELETE_SOURCE, permission_required, refusal
from traces.forms import FileFilterForm, SourceDeleteForm, SourceForm, SourceSettingsForm
from traces.ingest.batches import retried
from traces.ingest.store import delete_runs
from traces.models import IngestJob, Run, TraceFile, TraceSource
from traces.pagination import BadCursor
from traces.tasks import enqueue_ingest

from .common import bad_request, htmx_part

# --- pages ----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def source_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and (refused := refusal(request, ADD_SOURCE)):
        return refused
    form = SourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        source = form.save()
        if form.cleaned_data["scan_now"]:
            enqueue_ingest([source.path], kind="rescan", source=source)
        return redirect(source)
    sources = _all_annotated(TraceSource.objects.all())
    context = {"section": "sources", "sources": sources, "form": form, "roots": _roots()}
    return render(request, "traces/source_list.html", context)


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def source_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    if request.method == "POST" and (refused := refusal(request, CHANGE_SOURCE)):
        return refused
    source = get_object_or_404(TraceSource, pk=source_id)
    settings_form = SourceSettingsForm(request.POST or None, instance=source)
    if request.method == "POST" and settings_form.is_valid():
        settings_form.save()
        return redirect(source)
    source = _annotated(source, _pending_jobs([source]).get(source.pk))
    part = htmx_part(request, "source-files", "source-scan")
    if part == "source-scan" and not source.busy:
        # The scan it followed has ended: its report, and the facts and files it changed.
        part = "source-scan-ended"
    files_form = FileFilterForm(request.GET)
    if not files_form.is_valid():
        return bad_request(request, "Some filters are not valid.", files_form)
    filters = files_form.cleaned_data
    try:
        page = queries.files.files_page(filters, source=source)
    except BadCursor as exc:
        return bad_request(request, str(exc), files_form)
    counts = queries.files.file_status_counts(source=source)
    source.held_elsewhere = _held_elsewhere(source.last_scan_report, counts)
    context = {
        "section": "sources",
        "source": source,
        "report": source.last_scan_report or None,
        "settings_form": settings_form,
        "page": page,
        "status": filters["status"],
        "counts": counts,
    }
    template = "traces/source_detail.html" + (f"#{part}" if part else "")
    return render(request, template, context)


@require_GET
@vary_on_headers("HX-Request")
def source_row(request: HttpRequest, source_id: int) -> HttpResponse:
    """A row of the sources list, polled while its scan is queued or running: the
    row that answers once it has ended says what the scan did, and polls no more."""
    source = get_object_or_404(TraceSource, pk=source_id)
    source = _annotated(source, _pending_jobs([source]).get(source.pk))
    if not request.htmx:
        return redirect(source)
    context = {"source": source, "just_scanned": not source.busy}
    return render(request, "traces/source_list.html#source-row", context)


@require_POST
@permission_required(CHANGE_SOURCE)
def source_rescan(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(TraceSource, pk=source_id)
    job = enqueue_ingest([source.path], kind="rescan", source=source)
    busy = job.summary.get("busy", "") if job.finished else ""
    if not request.htmx:
        return redirect(source)  # which follows the job while it runs
    source.refresh_from_db()
    context = {
        "source": _annotated(source, None if job.finished else job),
        "just_scanned": job.finished and not busy,
        "busy": busy,
    }
    return render(request, "traces/source_list.html#source-row", context)


@require_http_methods(["GET", "POST"])
@permission_required(DELETE_SOURCE)
def source_delete(request: HttpRequest, source_id: int) -> HttpResponse:
    """GET: what deleting would do, and the button; POST: delete. The source's files
    and runs stay unless asked (they are then also gone from Files and Runs)."""
    source = get_object_or_404(TraceSource, pk=source_id)
    form = SourceDeleteForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        retried(lambda: _delete_source(source, with_runs=form.cleaned_data["delete_runs"]))
        return redirect("traces:source-list")
    context = {
        "section": "sources",
        "source": source,
        "form": form,
        "run_count": Run.objects.filter(source_file__source=source).count(),
        "file_count": source.files.count(),
    }
    return render(request, "traces/source_delete.html", context)


def _delete_source(source: TraceSource, *, with_runs: bool) -> None:
    """In one transaction (retried: it may meet an ingest, see batches.retried)."""
    if with_runs:
        _delete_runs_and_files(source)
    source.delete()


def _delete_runs_and_files(source: TraceSource, batch: int = 500) -> None:
    """Forget the files too, so that adding the directory again reads them anew."""
    run_ids = list(Run.objects.filter(source_file__source=source).values_list("pk", flat=True))
    for start in range(0, len(run_ids), batch):
        delete_runs(run_ids[start : start + batch])
    source.files.all()._raw_delete(TraceFile.objects.db)


# --- helpers --------------------------------------------------------------------------------


def _roots() -> list[str]:
    return [str(root) for root in scans.source_roots()]


def _all_annotated(sources) -> list[TraceSource]:
    sources = list(sources)
    jobs = _pending_jobs(sources)
    return [_annotated(source, jobs.get(source.pk)) for source in sources]


def _pending_jobs(sources: list[TraceSource]) -> dict[int, IngestJob]:
    """The newest rescan job of each source still queued or running (one query): the
    pages follow it until it ends. A job queued longer ago than a scan may last is
    taken to have no worker (the page says so once, and stops polling)."""
    if not sources:
        return {}
    pending = IngestJob.objects.filter(
        kind=IngestJob.Kind.RESCAN,
        source__in=sources,
        status__in=(IngestJob.JobStatus.QUEUED, IngestJob.JobStatus.RUNNING),
        created_at__gte=timezone.now() - scans.SCAN_TIMEOUT,
    ).only("pk", "source_id", "status", "created_at", "files_done", "files_total")
    jobs: dict[int, IngestJob] = {}
    for job in pending.order_by("created_at", "pk"):
        jobs[job.source_id] = job  # the newest wins
    return jobs


def _annotated(source: TraceSource, pending_job: IngestJob | None = None) -> TraceSource:
    """The words the pages show about a source's schedule and state."""
    report = source.last_scan_report or {}
    source.schedule_text = _every_text(source.rescan_every)
    source.next_text = _next_text(scans.next_scan_at(source), source)
    source.scanning = _scanning(source)
    source.pending_job = pending_job
    # A scan queued for a worker or under way: the pages poll until it ends.
    source.busy = source.scanning or pending_job is not None
    source.refused = report.get("files", {}).get("refused", 0)
    source.skipped = report.get("files", {}).get("skipped", 0)
    source.scan_error = report.get("error", "")
    source.took_ms = report.get("duration_ms")
    return source


def _held_elsewhere(report: dict | None, counts: dict) -> int:
    """Trace files the last scan found that another source holds (sources that overlap):
    counted in its report, listed on the other source's page."""
    files = (report or {}).get("files", {})
    read = sum(files.get(outcome, 0) for outcome in ("ingested", "unchanged", "failed"))
    return max(read - counts["ok"] - counts["error"], 0)


def _scanning(source: TraceSource) -> bool:
    started, finished = source.last_scan_started_at, source.last_scan_finished_at
    if started is None or (finished is not None and finished >= started):
        return False
    return timezone.now() - started < scans.SCAN_TIMEOUT


def _every_text(every: timedelta | None) -> str:
    if every is None:
        return "on demand"
    minutes = int(every.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes >= size and minutes % size == 0:
            return f"every {minutes // size} {unit}"
    return f"every {minutes} min"


def _next_text(when: datetime | None, source: TraceSource) -> str:
    if when is None:
        return "disabled" if not source.enabled and source.rescan_every else ""
    seconds = (when - timezone.now()).total_seconds()
    if seconds <= 0:
        return "due now"
    minutes = int(seconds // 60)
    if minutes < 1:
        return "next in under a minute"
    if minutes < 120:
        return f"next in {minutes} min"
    return f"next in {minutes // 60} h"
