"""Ingested files: the files list (all of them, or one source's) and its counts by status."""

from __future__ import annotations

from django.db.models import Count

from traces.models import TraceFile, TraceSource
from traces.pagination import PAGE_SIZE, Page, cursors_of, keyset_page


def files_page(filters: dict, *, source: TraceSource | None = None) -> Page:
    """A page of the files list (cleaned data of FileFilterForm), most recently checked
    first, without the companions' hashes, which no list shows. Raises BadCursor."""
    files = TraceFile.objects.defer("companions")
    if source is not None:
        files = files.filter(source=source)
    if filters.get("status"):
        files = files.filter(status=filters["status"])
    return keyset_page(files, "checked_at", descending=True, **cursors_of(filters), size=PAGE_SIZE)


def file_status_counts(*, source: TraceSource | None = None) -> dict:
    files = TraceFile.objects.all() if source is None else source.files.all()
    counts = dict(files.order_by().values_list("status").annotate(n=Count("id")))
    return {"ok": counts.get("ok", 0), "error": counts.get("error", 0)}
