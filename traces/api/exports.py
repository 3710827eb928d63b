"""One run as a file for other tools: OTLP/JSON or Chrome trace events (traces/exports/)."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from ninja import Query, Router

from traces.exports import EXPORTS
from traces.forms import RunExportForm
from traces.schemas import form_query

from .common import READ_ONE, valid
from .runs import RunId, get_run

router = Router()

ExportQuery = form_query("ExportQuery", RunExportForm)


@router.get(
    "/runs/{run_id}/export",
    response={200: dict[str, Any], **READ_ONE},
    tags=["runs"],
    summary="A run as OTLP/JSON or Chrome trace events, as a download",
)
def export_run(request, run_id: RunId, filters: Query[ExportQuery]):
    """The run as an attachment: `format=otlp` (default), an OpenTelemetry
    `ExportTraceServiceRequest` in OTLP/JSON with a root span for the run and a span
    per step and call; `format=chrome`, trace-event JSON that Perfetto opens.
    Streamed: a run of any size."""
    exporter = EXPORTS[valid(RunExportForm, request.GET).cleaned_data["format"] or "otlp"]
    run = get_run(run_id)
    response = StreamingHttpResponse(exporter.chunks(run), content_type=exporter.CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{exporter.filename(run)}"'
    return response
