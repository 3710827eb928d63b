"""The JSON API's endpoints, mounted at /api/ by tracer_site/api.py; who may call
them is api_auth.py's to decide, and api_errors.py turns every error into JSON.

Each endpoint is the twin of a page: it validates the query string with the
page's own Django form and reads through the same query functions
(traces/queries/), so a filter means the same thing and gives the
same numbers on both. Lists are keyset-paginated with the pages' cursors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import wraps
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.http import JsonResponse
from django.urls import NoReverseMatch, reverse
from ninja import File, Path, Query, Router, Status, UploadedFile
from ninja.decorators import decorate_view
from ninja.errors import HttpError

from traces import queries
from traces import sources as scans
from traces.forms import (
    EntityDetailForm,
    EntityListForm,
    FileFilterForm,
    RunFilterForm,
    RunPageForm,
    RunStepsForm,
    SourceForm,
    StepListForm,
)
from traces.ingest.loader import IngestReport
from traces.models import Run, Step, TraceFile, TraceSource
from traces.models import Status as StepStatus
from traces.pagination import Page
from traces.schemas import (
    EntityList,
    EntitySteps,
    ErrorGroupsOut,
    ErrorOut,
    FileList,
    RunDetail,
    RunList,
    RunLogs,
    RunSteps,
    SourceIn,
    SourceList,
    SourceScan,
    StepDetail,
    StepList,
    Timeline,
    UploadResult,
    form_query,
)
from traces.uploads import ingest_uploads, save_uploads

router = Router()

MAX_ID = 2**63 - 1
RAW_ERRORS_SHOWN = 20


class ApiBadRequest(Exception):
    """A query parameter that does not validate: 400, with a message per parameter."""

    def __init__(self, detail: str, errors: dict | None = None):
        self.detail = detail
        self.errors = errors
        super().__init__(detail)


class ApiUnprocessable(ApiBadRequest):
    """A request body that does not validate: 422."""


def errors(*codes: int) -> dict:
    return dict.fromkeys(codes, ErrorOut)


READ = errors(400, 401)
READ_ONE = errors(400, 401, 404)


# --- parameters ------------------------------------------------------------------------------


RunQuery = form_query("RunQuery", RunFilterForm)
RunStepsQuery = form_query(
    "RunStepsQuery",
    RunStepsForm,
    only=("failed", "after", "before", "parent"),
)
TimelineQuery = form_query("TimelineQuery", RunPageForm, only=("failed", "after", "before"))
LogsQuery = form_query(
    "LogsQuery", RunPageForm, only=("level", "step", "duplicates", "after", "before")
)
STEP_PARAMS = (
    "status", "format", "run", "run_type", "name", "name_match", "error", "error_group",
    "since", "until", "after", "before",
)  # fmt: skip
StepQuery = form_query("StepQuery", StepListForm, only=STEP_PARAMS)
ERROR_PARAMS = ("format", "run", "run_type", "name", "name_match", "error", "since", "until")
ErrorsQuery = form_query("ErrorsQuery", StepListForm, only=ERROR_PARAMS)
EntityQuery = form_query("EntityQuery", EntityListForm)
EntityStepsQuery = form_query("EntityStepsQuery", EntityDetailForm)
FileQuery = form_query("FileQuery", FileFilterForm)

RunId = Path[int, {"ge": 1, "le": MAX_ID, "description": "The run's id."}]
StepId = Path[int, {"ge": 1, "le": MAX_ID, "description": "The step's id."}]
SourceId = Path[int, {"ge": 1, "le": MAX_ID, "description": "The source's id."}]


def valid(form_class: type[forms.Form], data) -> forms.Form:
    """The page's form, bound to the query string; ApiBadRequest (400) if not valid."""
    form = form_class(data)
    if not form.is_valid():
        raise ApiBadRequest(_form_message(form), _form_errors(form))
    problems = _out_of_range(form.cleaned_data)
    if problems:
        raise ApiBadRequest(_join(problems), problems)
    return form


def _form_errors(form: forms.Form) -> dict[str, list[str]]:
    return {
        name: [error["message"] for error in messages]
        for name, messages in form.errors.get_json_data().items()
    }


def _form_message(form: forms.Form) -> str:
    return _join(_form_errors(form))


def _join(problems: dict[str, list[str]]) -> str:
    parts = [
        " ".join(messages) if name == "__all__" else f"{name}: {' '.join(messages)}"
        for name, messages in problems.items()
    ]
    return "; ".join(parts)


def _out_of_range(data: dict) -> dict[str, list[str]]:
    """Values a form accepts that no database column can hold: a 400 here rather than
    an error in the database driver. Times are moved to UTC on the way (PostgreSQL
    refuses offsets past ±16 hours, which ISO 8601 allows)."""
    problems = {}
    for name, value in data.items():
        if isinstance(value, datetime):
            try:
                data[name] = value.astimezone(UTC)
            except (OverflowError, ValueError):
                problems[name] = ["This date and time is out of range."]
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
            problems[name] = ["This number is too large."]
    return problems


def text_param(name: str, value: str) -> str:
    """A path parameter the database will be asked about: no NUL characters."""
    if "\x00" in value:
        raise ApiBadRequest(f"{name}: Null characters are not allowed.", {name: ["Null char."]})
    return value


def require(request, permission: str) -> None:
    user = request.auth
    if not getattr(user, "has_perm", None) or not user.has_perm(permission):
        raise HttpError(403, f"This needs the {permission} permission, which you do not have.")


def cursors(page: Page) -> dict:
    return {"next": page.next_cursor, "prev": page.prev_cursor}


def _or_none(*args) -> str | None:
    """A page URL, or None when a key cannot be carried by one."""
    try:
        return reverse(*args[:1], args=list(args[1:]))
    except NoReverseMatch:
        return None


def step_url(run_id: int, key: str) -> str | None:
    return _or_none("traces:step-detail", run_id, key)


# --- shapes -----------------------------------------------------------------------------------


# Step fields copied as they are: a tree/timeline row (queries.steps.STEP_ROW_FIELDS only)
# and the step's own page.
STEP_ROW_NAMES = (
    "key", "parent_id", "seq", "position", "depth", "name", "type", "status", "raw_status",
    "started_at", "finished_at", "duration_ms", "attempt", "retries", "retry_of", "loop_index",
    "truncated", "never_closed", "synthetic", "child_count", "failed_subtree", "call_count",
    "link_count",
)  # fmt: skip
STEP_DETAIL_NAMES = (
    "key", "seq", "position", "depth", "name", "type", "status", "raw_status", "started_at",
    "finished_at", "duration_ms", "attempt", "retries", "max_retries", "retry_of", "loop_index",
    "entity_type", "entity_id", "truncated", "never_closed", "synthetic", "child_count",
    "failed_subtree", "input", "output", "error",
)  # fmt: skip


def progress(item) -> dict | None:
    if not item.has_progress:
        return None
    return {
        "label": getattr(item, "progress_label", ""),
        "total": item.items_total,
        "processed": item.items_processed,
        "succeeded": item.items_succeeded,
        "failed": item.items_failed,
    }


def step_counts(run: Run) -> dict:
    return {
        "total": run.step_count,
        **{status: getattr(run, f"steps_{status}") for status in StepStatus.values},
    }


def run_item(run: Run) -> dict:
    """A runs-list row: only the columns queries.runs.run_list_columns loads."""
    return {
        "id": run.pk,
        "format": run.format,
        "external_id": run.external_id,
        "name": run.name,
        "type": run.type,
        "trigger": run.trigger,
        "actor": run.actor,
        "status": run.status,
        "raw_status": run.raw_status,
        "stale": run.is_stale,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "error": run.error,
        "steps": step_counts(run),
        "calls": run.call_count,
        "links": run.link_count,
        "logs": run.log_count,
        "max_depth": run.max_depth,
        "progress": progress(run),
        "truncated": run.truncated,
        "left_source_at": run.left_source_at,
        "times_estimated": run.times_estimated,
        "url": run.get_absolute_url(),
    }


def run_detail(run: Run) -> dict:
    source = run.source_file if run.source_file_id else None
    return {
        **run_item(run),
        "origin": run.origin,
        "output_counters": run.output_counters or {},
        "input": run.input,
        "output": run.output,
        "attributes": run.attributes or {},
        "completeness": run.completeness,
        "source_file": source
        and {
            "id": source.pk,
            "path": source.path,
            "display_name": source.display_name,
            "format": source.format,
            "status": source.status,
            "url": source.get_absolute_url(),
        },
        "source_updated_at": run.source_updated_at,
        "ingested_at": run.ingested_at,
    }


def run_ref(run: Run) -> dict:
    return {
        "id": run.pk,
        "name": run.name,
        "external_id": run.external_id,
        "format": run.format,
        "type": run.type,
        "status": run.status,
        "started_at": run.started_at,
        "url": run.get_absolute_url(),
    }


def step_row(step: Step, parent_key: str | None) -> dict:
    """A tree or timeline row: only queries.steps.STEP_ROW_FIELDS (no deferred loads)."""
    return {
        **{name: getattr(step, name) for name in STEP_ROW_NAMES},
        "id": step.pk,
        "parent_key": parent_key,
        "progress": progress(step),
        "error": step.error_head or "",
        "url": step_url(step.run_id, step.key),
    }


def step_item(step: Step) -> dict:
    """A steps-across-runs row: only queries.steps.step_list_columns and the error head."""
    return {
        "id": step.pk,
        "key": step.key,
        "name": step.name,
        "type": step.type,
        "status": step.status,
        "started_at": step.started_at,
        "duration_ms": step.duration_ms,
        "entity_type": step.entity_type,
        "entity_id": step.entity_id,
        "error": step.error_head or "",
        "error_truncated": (step.error_length or 0) > len(step.error_head or ""),
        "run": run_ref(step.run),
        "url": step_url(step.run_id, step.key),
    }


def log_row(entry) -> dict:
    return {
        "id": entry.pk,
        "seq": entry.seq,
        "time": entry.time,
        "level": entry.level,
        "message": entry.message,
        "fields": entry.fields,
        "attributes": entry.attributes or {},
        "duplicate": entry.duplicate,
        "step_id": entry.step_id,
        "step_key": entry.step.key if entry.step_id else None,
        "step_name": entry.step.name if entry.step_id else None,
    }


def get_run(run_id: int, *, with_values: bool = False) -> Run:
    try:
        return queries.runs.run_for_page(run_id, with_values=with_values)
    except Run.DoesNotExist:
        raise HttpError(404, f"No run with id {run_id}.") from None


def ensure_run(run_id: int) -> None:
    if not Run.objects.filter(pk=run_id).exists():
        raise HttpError(404, f"No run with id {run_id}.")


def step_in_run(run_id: int, key: str, parameter: str) -> Step:
    """A step named by a query parameter: a bad key is a bad filter (400), as on the page."""
    try:
        return queries.steps.step_by_key(run_id, key, rows_only=True)
    except Step.DoesNotExist:
        message = f"this run has no step with key {key!r}"
        raise ApiBadRequest(f"{parameter}: {message}", {parameter: [message]}) from None


# --- runs -------------------------------------------------------------------------------------


@router.get(
    "/runs", response={200: RunList, **READ}, tags=["runs"], summary="Runs: filtered, sorted, paged"
)
def list_runs(request, filters: Query[RunQuery]):
    """Runs, newest first by default: the runs page's filters and sort keys."""
    form = valid(RunFilterForm, request.GET)
    runs = queries.runs.filter_runs(form.cleaned_data)
    page = queries.runs.runs_page(runs, form.cleaned_data, form.sort_key())
    summary = queries.runs.run_status_summary(runs)
    return {
        "count": summary["total"],
        "summary": summary,
        "items": [run_item(run) for run in page.items],
        **cursors(page),
    }


@router.get(
    "/runs/{run_id}",
    response={200: RunDetail, **READ_ONE},
    tags=["runs"],
    summary="One run with its counters",
)
def run(request, run_id: RunId):
    """One run with its counters, progress, error, values and source file."""
    return run_detail(get_run(run_id, with_values=True))


@router.get(
    "/runs/{run_id}/steps",
    response={200: RunSteps, **READ_ONE},
    tags=["runs"],
    summary="A run's steps: flat in order, or one tree level",
)
def run_steps(request, run_id: RunId, filters: Query[RunStepsQuery]):
    """The run's steps flat in seq order (parents before children), a window at a time;
    or, with `parent=<key>`, that step's children in order (`parent=` empty: the roots),
    paged forward with `after`. `failed=1` keeps failed steps and their ancestors."""
    form = valid(RunStepsForm, request.GET)
    data = form.cleaned_data
    ensure_run(run_id)
    if "parent" in request.GET:
        return _tree_level(run_id, data, form.failed_only)
    page = queries.timeline.timeline_window(
        run_id,
        failed_only=form.failed_only,
        after=data["after"] or None,
        before=data["before"] or None,
    )
    parent_ids = {step.parent_id for step in page.items if step.parent_id}
    keys = dict(Step.objects.filter(pk__in=parent_ids).values_list("id", "key"))
    return {
        "run_id": run_id,
        "parent": None,
        "items": [step_row(step, keys.get(step.parent_id)) for step in page.items],
        **cursors(page),
    }


def _tree_level(run_id: int, data: dict, failed_only: bool) -> dict:
    if data["before"]:
        message = "one level pages forward only: use `after` with `parent`"
        raise ApiBadRequest(f"before: {message}", {"before": [message]})
    key = data["parent"]
    parent = step_in_run(run_id, key, "parent") if key else None
    page = queries.steps.tree_level(
        run_id, parent.pk if parent else None, failed_only=failed_only, after=data["after"] or None
    )
    return {
        "run_id": run_id,
        "parent": key or None,
        "items": [step_row(step, key or None) for step in page.items],
        **cursors(page),
    }


@router.get(
    "/runs/{run_id}/timeline",
    response={200: Timeline, **READ_ONE},
    tags=["runs"],
    summary="A run's steps on its time axis",
)
def run_timeline(request, run_id: RunId, filters: Query[TimelineQuery]):
    """A window of the run's steps in seq order, placed on the run's time axis:
    `offset_ms` from the axis start and `duration_ms`. Steps without timestamps
    (greentic) are laid end to end by duration, as on the page."""
    form = valid(RunPageForm, request.GET)
    data = form.cleaned_data
    run = get_run(run_id)
    page = queries.timeline.timeline_window(
        run_id,
        failed_only=form.failed_only,
        after=data["after"] or None,
        before=data["before"] or None,
    )
    return {"run_id": run_id, **_lay_out(run, page.items, form.failed_only), **cursors(page)}


def _lay_out(run: Run, rows: list[Step], failed_only: bool) -> dict:
    layout = queries.timeline.lay_out(run, rows, failed_only=failed_only)
    return {
        "timed": layout.timed,
        "start": layout.start,
        "span_ms": layout.span_ms,
        "items": _rows(layout.items),
    }


def _rows(placed: list[tuple[Step, float | None, float | None]]) -> list[dict]:
    return [
        {
            "id": step.pk,
            "key": step.key,
            "parent_id": step.parent_id,
            "seq": step.seq,
            "depth": step.depth,
            "name": step.name,
            "type": step.type,
            "status": step.status,
            "started_at": step.started_at,
            "finished_at": step.finished_at,
            "offset_ms": offset,
            "duration_ms": duration,
            "url": step_url(step.run_id, step.key),
        }
        for step, offset, duration in placed
    ]


@router.get(
    "/runs/{run_id}/logs", response={200: RunLogs, **READ_ONE}, tags=["runs"], summary="A run's log"
)
def run_logs(request, run_id: RunId, filters: Query[LogsQuery]):
    """The run's log in order, as the logs tab: one level, one step (by key), and
    repeated rows only with `duplicates=1`."""
    form = valid(RunPageForm, request.GET)
    data = form.cleaned_data
    ensure_run(run_id)
    step = step_in_run(run_id, data["step"], "step") if data["step"] else None
    page = queries.logs.run_logs(
        run_id,
        level=data["level"],
        step_id=step.pk if step else None,
        duplicates=data["duplicates"] == "1",
        after=data["after"] or None,
        before=data["before"] or None,
    )
    return {
        "run_id": run_id,
        "levels": queries.logs.log_levels(run_id),
        "items": [log_row(entry) for entry in page.items],
        **cursors(page),
    }


# --- steps across runs ------------------------------------------------------------------------


@router.get(
    "/steps",
    response={200: StepList, **READ},
    tags=["steps"],
    summary="Steps across runs (status=failed: failed steps)",
)
def list_steps(request, filters: Query[StepQuery]):
    """Steps across runs, newest first: the steps page's filters. `status=failed` is
    the failed-steps view; `error_group=<text>` (a group's `text` from /api/steps/errors)
    narrows to one cause."""
    form = valid(StepListForm, request.GET)
    data = form.cleaned_data
    raw_errors = None
    if data["error_group"]:
        group = queries.errors.failure_groups(data, sparklines=False).find(data["error_group"])
        raw_errors = group.raw_errors if group else []
    steps = queries.steps.filter_steps(data, raw_errors=raw_errors)
    page = queries.steps.steps_page(steps, data)
    count, capped = queries.steps.capped_count(steps)
    return {
        "count": count,
        "count_capped": capped,
        "items": [step_item(step) for step in page.items],
        **cursors(page),
    }


@router.get(
    "/steps/errors",
    response={200: ErrorGroupsOut, **READ},
    tags=["steps"],
    summary="Failed steps grouped by error",
)
def step_errors(request, filters: Query[ErrorsQuery]):
    """Failed steps grouped by normalised error, most frequent first: the steps page's
    groups, with the same filters."""
    form = valid(StepListForm, request.GET)
    data = form.cleaned_data
    result = queries.errors.failure_groups(data)
    keep = {name: request.GET[name] for name in ERROR_PARAMS if request.GET.get(name)}
    return {
        "groups": [_error_group(group, keep) for group in result.groups],
        "capped": result.capped,
        "messages_read": result.messages_read,
        "steps_read": result.steps_read,
        "spark_unit": result.spark_unit,
    }


def _error_group(group: queries.errors.ErrorGroup, keep: dict) -> dict:
    query = urlencode({**keep, "status": StepStatus.FAILED, "error_group": group.text})
    return {
        "text": group.text,
        "count": group.count,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "example": group.example,
        "raw_errors": group.raw_errors[:RAW_ERRORS_SHOWN],
        "raw_errors_more": max(len(group.raw_errors) - RAW_ERRORS_SHOWN, 0),
        "spark": group.spark,
        "steps": f"{reverse('api:list_steps')}?{query}",
    }


@router.get(
    "/steps/{step_id}",
    response={200: StepDetail, **READ_ONE},
    tags=["steps"],
    summary="One step with calls, links and log",
)
def step(request, step_id: StepId):
    """One step with its values, ancestors, calls, entity links and log (as its panel)."""
    found = Step.objects.filter(pk=step_id).values_list("run_id", "key").first()
    if found is None:
        raise HttpError(404, f"No step with id {step_id}.")
    step = queries.steps.step_by_key(*found)
    chain = queries.steps.ancestors(step)
    calls = queries.steps.step_calls(step) if step.call_count else []
    links = queries.steps.step_links(step) if step.link_count else []
    logs = queries.steps.step_logs(step)
    return {
        **{name: getattr(step, name) for name in STEP_DETAIL_NAMES},
        "id": step.pk,
        "run": run_ref(step.run),
        "parent_key": chain[-1].key if chain else None,
        "ancestors": [
            {"id": a.pk, "key": a.key, "name": a.name, "url": step_url(a.run_id, a.key)}
            for a in chain
        ],
        "offset_ms": queries.timeline.ms_between(step.run.started_at, step.started_at),
        "progress": progress(step),
        "attributes": step.attributes or {},
        "calls": [_call(call) for call in calls],
        "calls_more": max(step.call_count - len(calls), 0),
        "links": [_link(link) for link in links],
        "links_more": max(step.link_count - len(links), 0),
        "logs": [log_row(entry) for entry in logs],
        "logs_limited": len(logs) >= queries.steps.PANEL_LIMIT,
        "url": step_url(step.run_id, step.key),
    }


def _call(call) -> dict:
    fields = (
        "key", "position", "tool", "operation", "status", "raw_status", "attempt", "retry_of",
        "started_at", "duration_ms", "input", "output", "error",
    )  # fmt: skip
    return {
        "id": call.pk,
        **{name: getattr(call, name) for name in fields},
        "attributes": call.attributes or {},
    }


def _link(link) -> dict:
    fields = ("link_type", "entity_type", "entity_id", "external_id", "created_at")
    return {
        "id": link.pk,
        **{name: getattr(link, name) for name in fields},
        "attributes": link.attributes or {},
    }


# --- entities ---------------------------------------------------------------------------------


@router.get(
    "/entities",
    response={200: EntityList, **READ},
    tags=["entities"],
    summary="Entities and entity types",
)
def list_entities(request, filters: Query[EntityQuery]):
    """Entity types with their counts, and entities in (type, id) order: `type` keeps
    one type, `q` searches ids and external ids."""
    form = valid(EntityListForm, request.GET)
    data = form.cleaned_data
    page = queries.entities.entity_page(data)
    return {
        "types": queries.entities.entity_type_counts(),
        "items": [_entity(row) for row in page.items],
        "next": page.next_cursor,
        "prev": page.prev_cursor,
    }


def _entity(row: queries.entities.EntityRow) -> dict:
    fields = (
        "entity_type", "entity_id", "external_id", "links", "read", "written", "affected",
        "other", "subjects", "runs", "last_seen",
    )  # fmt: skip
    steps = None
    if row.linkable:
        steps = _or_none("api:entity_steps", row.entity_type, row.entity_id)
    return {**{name: getattr(row, name) for name in fields}, "steps": steps}


@router.get(
    "/entities/{entity_type}/{path:entity_id}/steps",
    response={200: EntitySteps, **READ_ONE},
    tags=["entities"],
    summary="Steps that touched an entity",
)
def entity_steps(request, entity_type: str, entity_id: str, filters: Query[EntityStepsQuery]):
    """Every step that touched the entity, newest first: through links (read, written,
    affected; paged with `after`/`before`) and as its own subject (paged with
    `subject_after`/`subject_before`). The id may contain `/`."""
    entity_type = text_param("entity_type", entity_type)
    entity_id = text_param("entity_id", entity_id)
    data = valid(EntityDetailForm, request.GET).cleaned_data
    summary = queries.entities.entity_summary(entity_type, entity_id)
    if not summary.exists:
        raise HttpError(404, f"No step touched {entity_type} {entity_id}.")
    links = queries.entities.links_page(entity_type, entity_id, data)
    subjects = queries.entities.subjects_page(entity_type, entity_id, data)
    return {
        "entity": vars(summary),
        "links": {"items": [_entity_link(link) for link in links.items], **cursors(links)},
        "subjects": {"items": [step_item(s) for s in subjects.items], **cursors(subjects)},
    }


def _entity_link(link) -> dict:
    step = link.step
    return {
        "id": link.pk,
        "link_type": link.link_type,
        "verb": queries.entities.LINK_VERBS.get(link.link_type, link.link_type),
        "external_id": link.external_id,
        "when": link.when,
        "step": {
            "id": step.pk,
            "key": step.key,
            "name": step.name,
            "url": step_url(step.run_id, step.key),
        },
        "step_status": step.status,
        "run": run_ref(link.run),
    }


# --- files, uploads, sources -------------------------------------------------------------------


@router.get("/files", response={200: FileList, **READ}, tags=["files"], summary="Ingested files")
def list_files(request, filters: Query[FileQuery]):
    """Every ingested file, ok or failed with its error, most recently checked first."""
    data = valid(FileFilterForm, request.GET).cleaned_data
    page = queries.files.files_page(data)
    return {
        "counts": queries.files.file_status_counts(),
        "items": [_file(trace_file) for trace_file in page.items],
        **cursors(page),
    }


def _file(trace_file: TraceFile) -> dict:
    fields = (
        "path", "display_name", "format", "size", "status", "error", "uploaded", "source_id",
        "first_seen_at", "ingested_at", "checked_at",
    )  # fmt: skip
    return {
        "id": trace_file.pk,
        **{name: getattr(trace_file, name) for name in fields},
        "produced": trace_file.produced or {},
        "url": trace_file.get_absolute_url(),
    }


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
        "items": [_source(source) for source in TraceSource.objects.all()],
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
        raise ApiUnprocessable(_form_message(form), _form_errors(form))
    source = form.save()
    scan = scans.rescan(source) if form.cleaned_data["scan_now"] else None
    source.refresh_from_db()
    return Status(201, {"source": _source(source), "scan": scan})


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
    return {"source": _source(source), "scan": scan}


def _source(source: TraceSource) -> dict:
    fields = (
        "path", "label", "enabled", "mirror_deletions", "created_at", "last_scan_started_at",
        "last_scan_finished_at", "files_found", "files_failed",
    )  # fmt: skip
    every = source.rescan_every
    return {
        "id": source.pk,
        **{name: getattr(source, name) for name in fields},
        "rescan_every_minutes": int(every.total_seconds() // 60) if every else None,
        "last_scan_report": source.last_scan_report or {},
        "url": source.get_absolute_url(),
    }
