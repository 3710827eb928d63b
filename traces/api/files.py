"""Ingested files."""

from __future__ import annotations

from ninja import Query, Router

from traces import queries
from traces.forms import FileFilterForm
from traces.schemas import FileList, form_query

from .common import READ, cursors, valid

router = Router()

FileQuery = form_query("FileQuery", FileFilterForm)


@router.get("/files", response={200: FileList, **READ}, tags=["files"], summary="Ingested files")
def list_files(request, filters: Query[FileQuery]):
    """Every ingested file, ok or failed with its error, most recently checked first."""
    data = valid(FileFilterForm, request.GET).cleaned_data
    page = queries.files.files_page(data)
    return {
        "counts": queries.files.file_status_counts(),
        "items": page.items,
        **cursors(page),
    }
