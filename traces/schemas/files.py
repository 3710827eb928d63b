"""The API's JSON shapes: files."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import Field

from .common import JsonObject

# --- files ---------------------------------------------------------------------------------


class FileItem(Schema):
    """An ingested file: in /api/files, and as a run's `source_file`."""

    id: int
    path: str
    display_name: str
    format: str
    size: int
    status: str
    error: str
    produced: JsonObject
    uploaded: bool
    source_id: int | None
    first_seen_at: datetime
    ingested_at: datetime | None
    checked_at: datetime
    url: str = Field(alias="get_absolute_url")


# --- files, uploads, sources ---------------------------------------------------------------


class FileCounts(Schema):
    ok: int
    error: int


class FileList(Schema):
    counts: FileCounts
    items: list[FileItem]
    next: str | None
    prev: str | None


class OutcomeCounts(Schema):
    ingested: int
    unchanged: int
    failed: int
    skipped: int


class PathError(Schema):
    path: str
    error: str


class PathReason(Schema):
    path: str
    reason: str


class FileResultOut(Schema):
    path: str = Field(description="The name it was uploaded as (a zip member: archive!/member).")
    outcome: str = Field(description="ingested, unchanged, failed or skipped.")
    format: str
    error: str = Field(description="Why it failed or was skipped.")
    runs_added: list[int]
    runs_updated: list[int]
    runs_unchanged: list[int]
    steps: int
    calls: int
    links: int
    logs: int
    file_id: int | None
    file_url: str | None
    same_as: str = Field(
        "",
        description="Unchanged because an earlier upload (or an earlier file of this one) has "
        "the same bytes: its name; file_id and file_url are that file's, whose runs it holds.",
    )


class UploadResult(Schema):
    """The `ingest --json` document, plus one result per file."""

    detail: str = Field(description="One line: what the upload gave (and why not, if nothing).")
    files: OutcomeCounts
    runs: int
    steps: int
    calls: int
    links: int
    logs: int
    errors: list[PathError]
    skipped: list[PathReason]
    results: list[FileResultOut]


class SourceOut(Schema):
    id: int
    path: str
    label: str
    enabled: bool
    mirror_deletions: bool = Field(
        description="Runs the source no longer holds are deleted (false: kept, marked left)."
    )
    rescan_every_minutes: int | None
    created_at: datetime
    last_scan_started_at: datetime | None
    last_scan_finished_at: datetime | None
    files_found: int
    files_failed: int
    last_scan_report: JsonObject
    url: str = Field(alias="get_absolute_url")

    @staticmethod
    def resolve_rescan_every_minutes(source) -> int | None:
        every = source.rescan_every
        return int(every.total_seconds() // 60) if every else None


class SourceList(Schema):
    roots: list[str] = Field(description="Directories a source must be inside.")
    items: list[SourceOut]


class SourceIn(Schema):
    path: str = Field(description="Absolute path of a directory or database inside a root.")
    label: str = ""
    every: int | None = Field(None, description="Rescan every N minutes; null: on demand only.")
    mirror_deletions: bool = Field(
        False,
        description="Delete runs the source no longer holds (an overwritten file's earlier "
        "runs, rows its writer deleted). False: keep them, marked with `left_source_at`.",
    )
    scan_now: bool = True


class SourceScan(Schema):
    source: SourceOut
    scan: dict[str, Any] | None = Field(
        description="What the scan found (as `ingest --json`, plus refused paths), if one ran."
    )
