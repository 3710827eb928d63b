"""What the JSON API answers (ninja Schemas) and the query parameters it documents.

The query parameters are made from the pages' Django forms (`form_query`), and the
API validates `request.GET` with those same forms: a page and its API twin accept
exactly the same parameters, and the OpenAPI document says which.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from ninja import Schema
from pydantic import Field, create_model

# --- query parameters from Django forms -------------------------------------------------

CURSOR_HELP = "A `next` or `prev` cursor from the previous answer."


def form_query(
    name: str, form_class: type[forms.Form], only: tuple[str, ...] = (), **extra: dict
) -> type[Schema]:
    """A Schema with one optional string field per form field (or per field in `only`),
    documented as the form validates it: choices as an enum, integers as integers.

    The fields stay strings on purpose: the view validates `request.GET` with the form
    itself, so the documentation can never accept what the form refuses or the reverse.
    `extra` adds parameters the form does not have, as JSON schema dicts."""
    form = form_class()
    fields: dict[str, Any] = {}
    for field_name, field in form.fields.items():
        if only and field_name not in only:
            continue
        fields[field_name] = _query_field(field_name, _field_schema(field_name, field))
    for field_name, schema in extra.items():
        fields[field_name] = _query_field(field_name, schema)
    return create_model(name, __base__=Schema, **fields)


def _query_field(name: str, schema: dict):
    def replace(generated: dict) -> None:
        generated.clear()
        generated.update(schema)

    return (str, Field("", json_schema_extra=replace))


def _field_schema(name: str, field: forms.Field) -> dict:
    description = str(field.help_text or field.label or name.replace("_", " ").capitalize())
    if name in ("after", "before") or name.endswith(("_after", "_before")):
        description = CURSOR_HELP
    schema: dict[str, Any] = {"type": "string", "description": description}
    if isinstance(field, forms.ChoiceField):
        schema["enum"] = [str(value) for value, _label in field.choices]
    elif isinstance(field, forms.IntegerField):
        schema = {"type": "integer", "description": description}
        if field.min_value is not None:
            schema["minimum"] = field.min_value
        schema["maximum"] = field.max_value if field.max_value is not None else 2**63 - 1
    elif isinstance(field, forms.DateTimeField):
        schema["description"] = f"{description}: ISO 8601 date and time, e.g. 2026-11-01T12:00:00Z"
        schema["format"] = "date-time"
    elif isinstance(field, forms.CharField) and field.max_length:
        schema["maxLength"] = field.max_length
    return schema


# --- common ------------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, for a person to read.")
    errors: dict[str, list[str]] | None = Field(
        None, description="Per-parameter messages, when a parameter or the body is not valid."
    )


class Progress(Schema):
    label: str = ""
    total: int | None
    processed: int | None
    succeeded: int | None
    failed: int | None


class StepCounts(Schema):
    total: int = Field(description="Steps of the run (synthetic grouping steps not counted).")
    pending: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int


# --- runs --------------------------------------------------------------------------------


class RunRef(Schema):
    id: int
    name: str
    external_id: str
    format: str
    type: str = ""
    status: str
    started_at: datetime | None
    url: str


class RunItem(Schema):
    id: int
    format: str
    external_id: str
    name: str
    type: str
    trigger: str
    actor: str
    status: str
    raw_status: str
    stale: bool = Field(description="Says running, but its source has been quiet too long.")
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: str
    steps: StepCounts
    calls: int
    links: int
    logs: int
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
    url: str = Field(description="The run's page.")


class SourceFileRef(Schema):
    id: int
    path: str
    display_name: str
    format: str
    status: str
    url: str


class RunDetail(RunItem):
    origin: str
    output_counters: dict[str, Any]
    input: Any = None
    output: Any = None
    attributes: dict[str, Any]
    completeness: Any = None
    source_file: SourceFileRef | None
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


# --- one run's steps, timeline, logs ------------------------------------------------------


class StepRow(Schema):
    id: int
    key: str = Field(description="Stable across re-ingests; the step's page uses it.")
    parent_id: int | None
    parent_key: str | None
    seq: int
    position: int
    depth: int
    name: str
    type: str
    status: str
    raw_status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    attempt: int | None
    retries: int | None
    retry_of: str
    loop_index: int | None
    progress: Progress | None
    truncated: bool
    never_closed: bool
    synthetic: bool
    child_count: int
    failed_subtree: bool
    call_count: int
    link_count: int
    error: str = Field(description="The error's first 200 characters (all of it: /api/steps/{id}).")
    url: str | None


class RunSteps(Schema):
    run_id: int
    parent: str | None = Field(
        description="The parent key when listing one level (`?parent=`), else null."
    )
    items: list[StepRow]
    next: str | None
    prev: str | None


class TimelineRow(Schema):
    id: int
    key: str
    parent_id: int | None
    seq: int
    depth: int
    name: str
    type: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    offset_ms: float | None = Field(description="Start, in ms from the start of the axis.")
    duration_ms: float | None
    url: str | None


class Timeline(Schema):
    run_id: int
    timed: bool = Field(
        description="Steps carry start times; if not, they are laid end to end by duration."
    )
    start: datetime | None = Field(description="Start of the axis (the run's start).")
    span_ms: float = Field(description="Length of the axis in ms.")
    items: list[TimelineRow]
    next: str | None
    prev: str | None


class LogRow(Schema):
    id: int
    seq: int
    time: datetime | None
    level: str
    message: str
    fields: Any = None
    attributes: dict[str, Any] = Field(
        description="What else the source says of the line (workflow: the event's data and "
        "precise time)."
    )
    duplicate: bool
    step_id: int | None
    step_key: str | None
    step_name: str | None


class RunLogs(Schema):
    run_id: int
    levels: list[str] = Field(description="Levels present in the run's log.")
    items: list[LogRow]
    next: str | None
    prev: str | None


# --- steps across runs ---------------------------------------------------------------------


class StepItem(Schema):
    id: int
    key: str
    name: str
    type: str
    status: str
    started_at: datetime | None
    duration_ms: float | None
    entity_type: str
    entity_id: str
    error: str = Field(description="The error's first 2,000 characters.")
    error_truncated: bool
    run: RunRef
    url: str | None


class StepList(Schema):
    count: int = Field(description="Matching steps, counted up to 10,000.")
    count_capped: bool = Field(description="There are more than `count`.")
    items: list[StepItem]
    next: str | None
    prev: str | None


class CallOut(Schema):
    id: int
    key: str
    position: int
    tool: str
    operation: str
    status: str
    raw_status: str
    attempt: int | None
    retry_of: str
    started_at: datetime | None
    duration_ms: float | None
    input: Any = None
    output: Any = None
    error: str
    attributes: dict[str, Any]


class LinkOut(Schema):
    id: int
    link_type: str
    entity_type: str
    entity_id: str
    external_id: str
    created_at: datetime | None
    attributes: dict[str, Any]


class StepRef(Schema):
    id: int
    key: str
    name: str
    url: str | None


class StepDetail(Schema):
    id: int
    key: str
    run: RunRef
    parent_key: str | None
    ancestors: list[StepRef] = Field(description="Root first.")
    seq: int
    position: int
    depth: int
    name: str
    type: str
    status: str
    raw_status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    offset_ms: float | None = Field(description="Start, in ms after the run's start.")
    attempt: int | None
    retries: int | None
    max_retries: int | None
    retry_of: str
    loop_index: int | None
    progress: Progress | None
    entity_type: str
    entity_id: str
    truncated: bool
    never_closed: bool
    synthetic: bool
    child_count: int
    failed_subtree: bool
    input: Any = None
    output: Any = None
    error: str
    attributes: dict[str, Any]
    calls: list[CallOut]
    calls_more: int = Field(description="Calls not listed (the list stops at 200).")
    links: list[LinkOut]
    links_more: int
    logs: list[LogRow] = Field(description="The step's log (no repeated rows), at most 200.")
    logs_limited: bool
    url: str | None


class SparkPoint(Schema):
    at: datetime
    n: int


class ErrorGroupOut(Schema):
    text: str = Field(description="The normalised message: the group's name.")
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example: str
    raw_errors: list[str] = Field(description="Distinct raw messages, most frequent first.")
    raw_errors_more: int
    spark: list[SparkPoint] = Field(description="Counts over time (top 20 groups only).")
    steps: str = Field(description="The API URL of the group's failed steps.")


class ErrorGroupsOut(Schema):
    groups: list[ErrorGroupOut]
    capped: bool = Field(description="More distinct messages than were read: counts are partial.")
    messages_read: int
    steps_read: int
    spark_unit: str


# --- entities ------------------------------------------------------------------------------


class EntityType(Schema):
    type: str
    links: int
    subjects: int
    total: int


class EntityItem(Schema):
    entity_type: str
    entity_id: str
    external_id: str
    links: int
    read: int
    written: int
    affected: int
    other: int
    subjects: int
    runs: int
    last_seen: datetime | None
    steps: str | None = Field(description="The API URL of the steps that touched it.")


class EntityList(Schema):
    types: list[EntityType]
    items: list[EntityItem]
    next: str | None
    prev: str | None


class EntitySummaryOut(Schema):
    entity_type: str
    entity_id: str
    external_ids: list[str]
    links: int
    read: int
    written: int
    affected: int
    other: int
    subjects: int
    runs: int


class EntityLinkItem(Schema):
    id: int
    link_type: str
    verb: str = Field(description="read, written, affected, or the link type itself.")
    external_id: str
    when: datetime | None
    step: StepRef
    step_status: str
    run: RunRef


class EntityLinkPage(Schema):
    items: list[EntityLinkItem]
    next: str | None = Field(description="Cursor for `?after=`.")
    prev: str | None = Field(description="Cursor for `?before=`.")


class EntitySubjectPage(Schema):
    items: list[StepItem]
    next: str | None = Field(description="Cursor for `?subject_after=`.")
    prev: str | None = Field(description="Cursor for `?subject_before=`.")


class EntitySteps(Schema):
    entity: EntitySummaryOut
    links: EntityLinkPage = Field(description="Steps linked to it (read, wrote, affected).")
    subjects: EntitySubjectPage = Field(description="Steps whose own subject it is.")


# --- files, uploads, sources ---------------------------------------------------------------


class FileItem(Schema):
    id: int
    path: str
    display_name: str
    format: str
    size: int
    status: str
    error: str
    produced: dict[str, Any]
    uploaded: bool
    source_id: int | None
    first_seen_at: datetime
    ingested_at: datetime | None
    checked_at: datetime
    url: str


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
    last_scan_report: dict[str, Any]
    url: str


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
