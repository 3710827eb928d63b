"""Uploads, and the directories and databases on the server that the site rescans."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from ninja import File, Path, Router, Status, UploadedFile
from ninja.decorators import decorate_view
from ninja.errors import HttpError

from traces import sources as scans
from traces.forms import SourceForm
from traces.ingest.report import IngestReport
from traces.models import TraceSource
from traces.schemas import ErrorOut, SourceIn, SourceList, SourceScan, UploadResult
from traces.uploads import ingest_uploads, save_uploads

from .common import MAX_ID, READ, ApiUnprocessable, errors, form_errors, form_message, require

router = Router()

SourceId = Path[int, {"ge": 1, "le": MAX_ID, "description": "The source's id."}]


def refuse_oversized(run):
    """Answer 413 from the Content-Length alone, before anything reads the body
    (authentication included: a session's CSRF check would parse it)."""

    @wraps(run)
    def checked(request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.TRACER_MAX_UPLOAD_BYTES
        if length > limit:
            detail = f"The upload is {length:,} bytes; the limit is {limit:,} bytes."
            return JsonResponse({"detail": detail}, status=413)
        return run(request, *args, **kwargs)

    return checked


@router.post(
    "/uploads",
    response={200: UploadResult, 422: UploadResult | ErrorOut, **errors(400, 401, 403, 413)},
    tags=["uploads"],
    summary="Upload trace files or a zip",
)
@decorate_view(refuse_oversized)
def upload(request, files: File[list[UploadedFile]]):
    """Upload trace files, or a zip of them, under the multipart field `files`
    (repeat it for several). Needs the traces.add_tracefile permission. Answers the
    `ingest --json` summary plus one result per file (a zip: per member); 422 when
    no file gave a trace (each result says why)."""
    require(request, "traces.add_tracefile")
    report = ingest_uploads(save_uploads(files))
    body = upload_result(report)
    took = any(result.outcome in ("ingested", "unchanged") for result in report.files)
    return Status(200 if took else 422, body)


def upload_result(report: IngestReport) -> dict:
    summary = report.summary()
    results = []
    for result in report.files:
        file_url = reverse("traces:file-detail", args=[result.file_id]) if result.file_id else None
        results.append({**result.as_dict(), "file_id": result.file_id, "file_url": file_url})
    counts = summary["files"]
    detail = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n) or "no files"
    if not any(counts[name] for name in ("ingested", "unchanged")):
        reasons = "; ".join(_named(r.display_name, r.error) for r in report.files if r.error)
        detail = f"No trace was read ({detail})" + (f": {reasons}" if reasons else ".")
    return {**summary, "detail": detail, "results": results}


def _named(name: str, error: str) -> str:
    """The loader's messages usually start with the file's name already."""
    return error if error.startswith(name) else f"{name}: {error}"


@router.get("/sources", response={200: SourceList, **READ}, tags=["sources"], summary="Sources")
def list_sources(request):
    """Directories and databases on the server that the site rescans."""
    return {
        "roots": [str(root) for root in scans.source_roots()],
        "items": TraceSource.objects.all(),
    }


@router.post(
    "/sources",
    response={201: SourceScan, **errors(400, 401, 403, 422)},
    tags=["sources"],
    summary="Add a source",
)
def add_source(request, body: SourceIn):
    """Add a source (a path inside the allowed roots) and, unless `scan_now` is false,
    scan it. Needs the traces.add_tracesource permission."""
    require(request, "traces.add_tracesource")
    form = SourceForm(
        {
            "path": body.path,
            "label": body.label,
            "every": "" if body.every is None else body.every,
            "mirror_deletions": body.mirror_deletions,
            "scan_now": body.scan_now,
        }
    )
    if not form.is_valid():
        raise ApiUnprocessable(form_message(form), form_errors(form))
    source = form.save()
    scan = scans.rescan(source) if form.cleaned_data["scan_now"] else None
    source.refresh_from_db()
    return Status(201, {"source": source, "scan": scan})


@router.post(
    "/sources/{source_id}/rescan",
    response={200: SourceScan, **errors(400, 401, 403, 404, 409)},
    tags=["sources"],
    summary="Rescan a source now",
)
def rescan_source(request, source_id: SourceId):
    """Scan a source now. Needs the traces.change_tracesource permission; 409 while
    another scan of it runs."""
    require(request, "traces.change_tracesource")
    source = TraceSource.objects.filter(pk=source_id).first()
    if source is None:
        raise HttpError(404, f"No source with id {source_id}.")
    try:
        scan = scans.rescan(source)
    except scans.ScanInProgress as exc:
        raise HttpError(409, str(exc)) from None
    source.refresh_from_db()
    return {"source": source, "scan": scan}
