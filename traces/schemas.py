"""What the JSON API answers (ninja Schemas) and the query parameters it documents.

Each object has one JSON shape, read from the model instance (or the query's row)
by the Schema itself: a run, a step, a call, a link, a log row, a file, a source,
an entity. A reference (RunRef, StepRef) is the first fields of its object's shape,
and a detail (RunDetail, StepDetail, EntityDetail) adds to its list shape, so a
field is defined once and means the same wherever it appears. The queries load
every column a shape reads (`only()`, `select_related()`, annotations), so reading
one never costs a query per row.

The query parameters are made from the pages' Django forms (`form_query`), and the
API validates `request.GET` with those same forms: a page and its API twin accept
exactly the same parameters, and the OpenAPI document says which.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django import forms
from django.urls import NoReverseMatch, reverse
from ninja import Schema
from pydantic import BeforeValidator, Field, create_model

from traces.queries.entities import LINK_VERBS, has_page
from traces.queries.timeline import ms_between

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


def _or_empty(value):
    return value or {}


# A JSON object column that may hold null: always an object in the answer.
JsonObject = Annotated[dict[str, Any], BeforeValidator(_or_empty)]


def page_url(name: str, *args) -> str | None:
    """A page's URL, or None when a key cannot be carried by one."""
    try:
        return reverse(name, args=list(args))
    except NoReverseMatch:
        return None


def step_url(run_id: int, key: str) -> str | None:
    return page_url("traces:step-detail", run_id, key)


def _progress(item):
    return item if item.has_progress else None


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, for a person to read.")
    errors: dict[str, list[str]] | None = Field(
        None, description="Per-parameter messages, when a parameter or the body is not valid."
    )


class Progress(Schema):
    """Items processed, for a run or a step that counts them."""

    label: str = Field("", alias="progress_label")
    total: int | None = Field(alias="items_total")
    processed: int | None = Field(alias="items_processed")
    succeeded: int | None = Field(alias="items_succeeded")
    failed: int | None = Field(alias="items_failed")


class StepCounts(Schema):
    """The run's steps by status (counted at ingest)."""

    total: int = Field(
        alias="step_count", description="Steps of the run (synthetic grouping steps not counted)."
    )
    pending: int = Field(alias="steps_pending")
    running: int = Field(alias="steps_running")
    succeeded: int = Field(alias="steps_succeeded")
    failed: int = Field(alias="steps_failed")
    skipped: int = Field(alias="steps_skipped")
    cancelled: int = Field(alias="steps_cancelled")


# --- references: the first fields of a run's and a step's shape ----------------------------


class RunRef(Schema):
    """A run as another object names it: the first fields of RunItem."""

    id: int
    name: str
    external_id: str
    format: str
    type: str
    status: str
    started_at: datetime | None
    url: str = Field(alias="get_absolute_url", description="The run's page.")


class StepRef(Schema):
    """A step as another object names it: the first fields of StepItem."""

    id: int
    key: str = Field(description="Stable across re-ingests; the step's page uses it.")
    name: str
    url: str | None = Field(description="The step's page.")

    @staticmethod
    def resolve_url(step) -> str | None:
        return step_url(step.run_id, step.key)


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


# --- what hangs off a step: calls, links, log rows ------------------------------------------


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
    attributes: JsonObject


class LinkOut(Schema):
    """A link between a step and an entity: in a step's answer and an entity's."""

    id: int
    link_type: str
    verb: str = Field(description="read, written, affected, or the link type itself.")
    entity_type: str
    entity_id: str
    external_id: str
    created_at: datetime | None
    when: datetime | None = Field(description="Its created_at, else its step's or run's start.")
    attributes: JsonObject
    step: StepRef
    step_status: str
    run: RunRef

    @staticmethod
    def resolve_verb(link) -> str:
        return LINK_VERBS.get(link.link_type, link.link_type)

    @staticmethod
    def resolve_when(link) -> datetime | None:
        return link.created_at or link.step.started_at or link.run.started_at

    @staticmethod
    def resolve_step_status(link) -> str:
        return link.step.status


class LogRow(Schema):
    """A line of a run's log: in the run's log and in its step's answer."""

    id: int
    seq: int
    time: datetime | None
    level: str
    message: str
    fields: Any = None
    attributes: JsonObject = Field(
        description="What else the source says of the line (workflow: the event's data and "
        "precise time)."
    )
    duplicate: bool
    step_id: int | None
    step_key: str | None
    step_name: str | None

    @staticmethod
    def resolve_step_key(entry) -> str | None:
        return entry.step.key if entry.step_id else None

    @staticmethod
    def resolve_step_name(entry) -> str | None:
        return entry.step.name if entry.step_id else None


# --- steps ---------------------------------------------------------------------------------


class StepItem(StepRef):
    """A step in every list: a run's steps, steps across runs, an entity's subject
    steps; /api/steps/{id} adds to it (StepDetail)."""

    # The row queries (queries.steps.step_rows and step_list_columns) load these
    # columns and annotate parent_key, error_head and error_length; a list's own run
    # is given to its steps (api.runs.in_run).
    run: RunRef
    parent_id: int | None
    parent_key: str | None
    seq: int
    position: int
    depth: int
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
    entity_type: str
    entity_id: str
    truncated: bool
    never_closed: bool
    synthetic: bool
    child_count: int
    failed_subtree: bool
    call_count: int
    link_count: int
    error: str = Field(
        description="The error's head in a list: its first 200 characters in a run's steps, "
        "2,000 across runs; all of it in /api/steps/{id}."
    )
    error_truncated: bool = Field(description="`error` is the head of a longer message.")

    resolve_progress = staticmethod(_progress)

    @staticmethod
    def resolve_error(step) -> str:
        head = getattr(step, "error_head", None)
        return step.error if head is None else head

    @staticmethod
    def resolve_error_truncated(step) -> bool:
        head = getattr(step, "error_head", None)
        return head is not None and step.error_length > len(head)


class StepDetail(StepItem):
    """One step: StepItem, with its values, its ancestors and its first calls, links
    and log rows."""

    # The lists and ancestors are given to the step by api.steps.with_panel.
    ancestors: list[StepRef] = Field(description="Root first.")
    offset_ms: float | None = Field(description="Start, in ms after the run's start.")
    max_retries: int | None
    input: Any = None
    output: Any = None
    attributes: JsonObject
    calls: list[CallOut] = Field(alias="panel_calls")
    calls_more: int = Field(description="Calls not listed (the list stops at 200).")
    links: list[LinkOut] = Field(alias="panel_links")
    links_more: int
    logs: list[LogRow] = Field(
        alias="panel_logs", description="The step's log (no repeated rows), at most 200."
    )
    logs_limited: bool

    @staticmethod
    def resolve_parent_key(step) -> str | None:
        return step.ancestors[-1].key if step.ancestors else None

    @staticmethod
    def resolve_offset_ms(step) -> float | None:
        return ms_between(step.run.started_at, step.started_at)

    @staticmethod
    def resolve_calls_more(step) -> int:
        return max(step.call_count - len(step.panel_calls), 0)

    @staticmethod
    def resolve_links_more(step) -> int:
        return max(step.link_count - len(step.panel_links), 0)


class RunSteps(Schema):
    run_id: int
    parent: str | None = Field(
        description="The parent key when listing one level (`?parent=`), else null."
    )
    items: list[StepItem]
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


class RunLogs(Schema):
    run_id: int
    levels: list[str] = Field(description="Levels present in the run's log.")
    items: list[LogRow]
    next: str | None
    prev: str | None


class StepList(Schema):
    count: int = Field(description="Matching steps, counted up to 10,000.")
    count_capped: bool = Field(description="There are more than `count`.")
    items: list[StepItem]
    next: str | None
    prev: str | None


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
    """An entity (what steps read, write or act on), as the entities list shows it."""

    # From queries.entities.EntityRow (the list) and EntitySummary (EntityDetail).
    entity_type: str
    entity_id: str
    external_id: str
    links: int
    read: int = Field(
        description="Links that read it (in an entity's own answer: distinct steps); written, "
        "affected and other likewise."
    )
    written: int
    affected: int
    other: int
    subjects: int
    runs: int
    last_seen: datetime | None
    steps: str | None = Field(description="The API URL of the steps that touched it.")

    @staticmethod
    def resolve_steps(entity) -> str | None:
        if not has_page(entity.entity_type, entity.entity_id):
            return None
        return page_url("api:entity_steps", entity.entity_type, entity.entity_id)


class EntityDetail(EntityItem):
    """One entity: EntityItem, with some of its external ids."""

    external_ids: list[str]


class EntityList(Schema):
    types: list[EntityType]
    items: list[EntityItem]
    next: str | None
    prev: str | None


class EntityLinkPage(Schema):
    items: list[LinkOut]
    next: str | None = Field(description="Cursor for `?after=`.")
    prev: str | None = Field(description="Cursor for `?before=`.")


class EntitySubjectPage(Schema):
    items: list[StepItem]
    next: str | None = Field(description="Cursor for `?subject_after=`.")
    prev: str | None = Field(description="Cursor for `?subject_before=`.")


class EntitySteps(Schema):
    entity: EntityDetail
    links: EntityLinkPage = Field(description="Steps linked to it (read, wrote, affected).")
    subjects: EntitySubjectPage = Field(description="Steps whose own subject it is.")


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
