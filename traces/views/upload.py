"""Upload trace files (several at once, or a zip) and see what each one gave."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers

from traces.access import UPLOAD, permission_required
from traces.forms import UploadForm
from traces.ingest.loader import format_names
from traces.ingest.report import FileResult, IngestReport
from traces.models import Run, TraceFile
from traces.tasks import job_report
from traces.uploads import UploadTooLarge, enqueue_upload, save_uploads

# Run links listed per file; the file's page has them all.
RUN_LINKS_PER_FILE = 20
RUN_COLUMNS = ("pk", "name", "external_id", "status", "format")
PAGE = "traces/upload.html"
RESULTS = "traces/_ingest_results.html"


@csrf_exempt  # the size limit is checked before anything reads the body; CSRF right after
@permission_required(UPLOAD)  # reads no body either
@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def upload(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, PAGE, _page_context(UploadForm()))
    length = _content_length(request)
    if length > settings.TRACER_MAX_UPLOAD_BYTES:
        return _too_large(request, length)
    return _receive(request)


@csrf_protect
def _receive(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_results(request, _page_context(form))
    try:
        saved = save_uploads(form.cleaned_data["files"])
    except UploadTooLarge:
        return _too_large(request, None)
    job = enqueue_upload(saved)
    if job.finished:
        return _render_results(request, _page_context(UploadForm(), job_report(job)))
    if not request.htmx:
        return redirect(job)
    return render(request, "traces/job_detail.html#job-status", {"job": job}, status=202)


def _render_results(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    template = RESULTS if request.htmx else PAGE
    return render(request, template, context, status=status)


def _content_length(request: HttpRequest) -> int:
    # As Django reads it: a missing or malformed length is an empty body.
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _too_large(request: HttpRequest, length: int | None) -> HttpResponse:
    limit = settings.TRACER_MAX_UPLOAD_BYTES
    size = f"This upload is {filesizeformat(length)}" if length else "This upload is too large"
    message = (
        f"{size}; the limit is {filesizeformat(limit)} per upload. Upload fewer files at once, "
        "or ingest big files on the server (python manage.py ingest PATH, or a source)."
    )
    context = _page_context(UploadForm()) | {"too_large": message}
    return _render_results(request, context, status=413)


def _page_context(form: UploadForm, report: IngestReport | None = None) -> dict:
    return {
        "section": "upload",
        "form": form,
        "max_bytes": settings.TRACER_MAX_UPLOAD_BYTES,
        "formats": format_names(),
        "results": _results(report) if report is not None else None,
    }


# --- what each file gave --------------------------------------------------------------------


@dataclass
class ResultRow:
    result: FileResult
    file: TraceFile | None
    added: list[Run] = field(default_factory=list)
    updated: list[Run] = field(default_factory=list)
    unchanged: list[Run] = field(default_factory=list)
    # A known file's: how many runs it holds (listed in `unchanged`, the first of them).
    held: int = 0

    @property
    def more_runs(self) -> int:
        result = self.result
        shown = len(self.added) + len(self.updated) + len(self.unchanged)
        total = len(result.runs_added) + len(result.runs_updated) + len(result.runs_unchanged)
        if result.outcome == "unchanged":
            total = self.held
        return max(total - shown, 0)


@dataclass
class Results:
    rows: list[ResultRow]
    outcomes: dict[str, int]
    runs_added: int
    runs_updated: int


def _results(report: IngestReport) -> Results:
    """The report with its runs and files loaded: two queries however many files."""
    shown = {
        id(result): _first_runs(result)
        for result in report.files
        if result.outcome in ("ingested", "unchanged")
    }
    run_ids = {pk for lists in shown.values() for ids in lists for pk in ids}
    runs = Run.objects.only(*RUN_COLUMNS).in_bulk(run_ids)
    file_ids = {result.file_id for result in report.files if result.file_id}
    files = TraceFile.objects.defer("companions").in_bulk(file_ids)
    known = {r.file_id for r in report.files if r.outcome == "unchanged" and r.file_id}
    held = _runs_held(known)

    def loaded(ids: list[int]) -> list[Run]:
        return [runs[pk] for pk in ids if pk in runs]

    rows = []
    for result in report.files:
        added, updated, unchanged = shown.get(id(result), ([], [], []))
        trace_file = files.get(result.file_id)
        row = ResultRow(result, trace_file, loaded(added), loaded(updated), loaded(unchanged))
        if result.outcome == "unchanged":
            row.unchanged = held.get(result.file_id, [])
            row.held = row.unchanged[0].held if row.unchanged else 0
        rows.append(row)
    outcomes = dict.fromkeys(("ingested", "unchanged", "failed", "skipped"), 0)
    for result in report.files:
        outcomes[result.outcome] += 1
    added = {pk for result in report.files for pk in result.runs_added}
    updated = {pk for result in report.files for pk in result.runs_updated} - added
    return Results(rows, outcomes, len(added), len(updated))


def _runs_held(file_ids: set[int]) -> dict[int, list[Run]]:
    """The first runs each known file holds (a file uploaded again is not read, so its
    result names none), not those its earlier bytes gave that it no longer holds (kept
    as history): one query however many files, RUN_LINKS_PER_FILE each."""
    if not file_ids:
        return {}
    by_file = {"partition_by": F("source_file_id")}
    runs = (
        Run.objects.filter(source_file_id__in=file_ids, left_source_at__isnull=True)
        .only(*RUN_COLUMNS, "source_file_id")
        .annotate(
            rank=Window(RowNumber(), order_by=F("id").asc(), **by_file),
            held=Window(Count("id"), **by_file),
        )
        .filter(rank__lte=RUN_LINKS_PER_FILE)
        .order_by("source_file_id", "id")
    )
    held: dict[int, list[Run]] = {}
    for run in runs:
        held.setdefault(run.source_file_id, []).append(run)
    return held


def _first_runs(result: FileResult) -> tuple[list[int], list[int], list[int]]:
    budget = RUN_LINKS_PER_FILE
    added = result.runs_added[:budget]
    updated = result.runs_updated[: budget - len(added)]
    unchanged = result.runs_unchanged[: budget - len(added) - len(updated)]
    return added, updated, unchanged
