"""The API's JSON shapes: runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import Field

from .common import (
    JsonObject,
    Progress,
    RunRef,
    StepCounts,
    _progress,
)
from .files import (
    FileItem,
)

# --- runs ----------------------------------------------------------------------------------


class RunItem(RunRef):
    """A run as the runs list shows it; /api/runs/{id} adds to it (RunDetail)."""

    # Only what queries.runs.run_list_columns loads: never the run's values.
    trigger: str
    actor: str
    raw_status: str
    stale: bool = Field(
        alias="is_stale", description="Says running, but its source has been quiet too long."
    )
    finished_at: datetime | None
    duration_ms: float | None
    error: str
    steps: StepCounts
    calls: int = Field(alias="call_count")
    links: int = Field(alias="link_count")
    logs: int = Field(alias="log_count")
    max_depth: int
    progress: Progress | None
    truncated: bool
    left_source_at: datetime | None = Field(
        description="Since when its source no longer holds it (a file overwritten, rows "
        "deleted): kept as history. Null while the source holds it."
    )
    times_estimated: bool = Field(
        description="started_at, finished_at and duration_ms are estimates, not recorded "
        "(greentic: from the file's modified time; the format records no time)."
    )

    resolve_progress = staticmethod(_progress)

    @staticmethod
    def resolve_steps(run):
        return run


class RunDetail(RunItem):
    """One run: RunItem, with its values and its source file."""

    origin: str
    output_counters: JsonObject
    input: Any = None
    output: Any = None
    attributes: JsonObject
    completeness: Any = None
    source_file: FileItem | None
    source_updated_at: datetime | None
    ingested_at: datetime


class StatusSummary(Schema):
    total: int
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0


class RunList(Schema):
    count: int = Field(description="Runs matching the filters (the runs page's total).")
    summary: StatusSummary = Field(description="Matching runs by status, as the runs page.")
    items: list[RunItem]
    next: str | None = Field(description="Cursor for `?after=`: the next page.")
    prev: str | None = Field(description="Cursor for `?before=`: the previous page.")
