"""Ingested files: the files list's filter and its counts by status."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from traces.models import TraceFile


def filter_files(filters: dict) -> QuerySet:
    """Files matching the files-list filters (cleaned data of FileFilterForm), without
    their companions' hashes, which no list shows."""
    files = TraceFile.objects.defer("companions")
    if filters.get("status"):
        files = files.filter(status=filters["status"])
    return files


def file_status_counts() -> dict:
    counts = dict(TraceFile.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {"ok": counts.get("ok", 0), "error": counts.get("error", 0)}
