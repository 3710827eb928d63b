"""Runs: the runs list, one run, and one run's steps (flat or a tree level), timeline
and log."""

from __future__ import annotations

from ninja import Path, Query, Router
from ninja.errors import HttpError

from traces import queries
from traces.forms import RunFilterForm, RunPageForm, RunStepsForm
from traces.models import Run, Step
from traces.schemas import RunDetail, RunList, RunLogs, RunSteps, Timeline, form_query, step_url

from . import items as items_of
from .common import MAX_ID, READ, READ_ONE, ApiBadRequest, cursors, valid

router = Router()


RunQuery = form_query("RunQuery", RunFilterForm)
RunStepsQuery = form_query(
    "RunStepsQuery",
    RunStepsForm,
    only=("failed", "after", "before", "parent", "find"),
)
TimelineQuery = form_query("TimelineQuery", RunPageForm, only=("failed", "after", "before"))
LogsQuery = form_query(
    "LogsQuery", RunPageForm, only=("level", "step", "q", "duplicates", "after", "before")
)

RunId = Path[int, {"ge": 1, "le": MAX_ID, "description": "The run's id."}]


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


@router.get(
    "/runs", response={200: RunList, **READ}, tags=["runs"], summary="Runs: filtered, sorted, paged"
)
def list_runs(request, filters: Query[RunQuery]):
    """Runs, newest first by default: the runs page's filters and sort keys."""
    form = valid(RunFilterForm, request.GET)
    runs = queries.runs.filter_runs(form.cleaned_data)
    page = queries.runs.runs_page(runs, form.cleaned_data, form.sort_key())
    summary = queries.runs.run_status_summary(runs, form.cleaned_data)
    return {
        "count": summary["total"],
        "summary": summary,
        "items": page.items,
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
    return get_run(run_id, with_values=True)


@router.get(
    "/runs/{run_id}/steps",
    response={200: RunSteps, **READ_ONE},
    tags=["runs"],
    summary="A run's steps: flat in order, or one tree level",
)
def run_steps(request, run_id: RunId, filters: Query[RunStepsQuery]):
    """The run's steps flat in seq order (parents before children), a window at a time;
    or, with `parent=<key>`, that step's children in order (`parent=` empty: the roots),
    paged forward with `after`. `failed=1` keeps failed steps and their ancestors.
    `find=` (find in run: words of a step's name, key, type or error, `word*` for a
    word's start, and `status:NAME`): the matching steps in order, 50 a page, with
    their count and the ancestors of the page's matches."""
    form = valid(RunStepsForm, request.GET)
    data = form.cleaned_data
    run = get_run(run_id)
    if data["find"]:
        return _found(request, run, form)
    if "parent" in request.GET:
        return _tree_level(request, run, data, form.failed_only)
    page = queries.timeline.timeline_window(
        run_id,
        failed_only=form.failed_only,
        after=data["after"] or None,
        before=data["before"] or None,
    )
    return _steps_answer(request, run, None, page)


def _found(request, run: Run, form):
    if "parent" in request.GET:
        message = "give `find` or `parent`, not both"
        raise ApiBadRequest(f"parent: {message}", {"parent": [message]})
    data, find = form.cleaned_data, form.found
    counted = queries.find.count(run, find, failed_only=form.failed_only)
    page = queries.find.window(
        run,
        find,
        counted=counted,
        failed_only=form.failed_only,
        after=data["after"] or None,
        before=data["before"] or None,
    )
    ancestors = queries.find.ancestors_of(page.items)
    body = {
        "run_id": run.pk,
        "parent": None,
        **items_of.page_of(page, items_of.step_items(page.items, run)),
        **_FOUND_NONE,
        "find": data["find"],
        "count": counted[0],
        "count_capped": counted[1],
        "ancestors": items_of.step_items(ancestors, run),
    }
    return items_of.answer(request, body)


# RunSteps' find fields, null in a list without one.
_FOUND_NONE = {"find": None, "count": None, "count_capped": None, "ancestors": None}


def _tree_level(request, run: Run, data: dict, failed_only: bool):
    if data["before"]:
        message = "one level pages forward only: use `after` with `parent`"
        raise ApiBadRequest(f"before: {message}", {"before": [message]})
    key = data["parent"]
    parent = step_in_run(run.pk, key, "parent") if key else None
    page = queries.steps.tree_level(
        run.pk, parent.pk if parent else None, failed_only=failed_only, after=data["after"] or None
    )
    return _steps_answer(request, run, key or None, page)


def _steps_answer(request, run: Run, parent: str | None, page):
    """RunSteps, its items built as plain dicts (api.items: no validation per item)."""
    items = items_of.step_items(page.items, run)
    body = {"run_id": run.pk, "parent": parent, **items_of.page_of(page, items), **_FOUND_NONE}
    return items_of.answer(request, body)


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
    body = {"run_id": run_id, **_lay_out(run, page.items, form.failed_only), **cursors(page)}
    return items_of.answer(request, body)  # 300 rows: plain dicts (api.items)


def _lay_out(run: Run, rows: list[Step], failed_only: bool) -> dict:
    layout = queries.timeline.lay_out(run, rows, failed_only=failed_only)
    return {
        "timed": layout.timed,
        "start": layout.start,
        "span_ms": float(layout.span_ms),
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
            "offset_ms": items_of.as_float(offset),
            "duration_ms": items_of.as_float(duration),
            "url": step_url(step.run_id, step.key),
        }
        for step, offset, duration in placed
    ]


@router.get(
    "/runs/{run_id}/logs", response={200: RunLogs, **READ_ONE}, tags=["runs"], summary="A run's log"
)
def run_logs(request, run_id: RunId, filters: Query[LogsQuery]):
    """The run's log in order, as the logs tab: one level, one step (by key, or
    every step of that name), lines whose message holds `q`, and repeated rows only
    with `duplicates=1`. A step the run does not have is a 400."""
    form = valid(RunPageForm, request.GET)
    data = form.cleaned_data
    ensure_run(run_id)
    step_ids = queries.logs.steps_named(run_id, data["step"]) if data["step"] else None
    if step_ids == []:
        step_in_run(run_id, data["step"], "step")  # says which parameter names no step
    page = queries.logs.run_logs(
        run_id,
        level=data["level"],
        step_ids=step_ids,
        text=data["q"],
        duplicates=data["duplicates"] == "1",
        after=data["after"] or None,
        before=data["before"] or None,
    )
    return {
        "run_id": run_id,
        "levels": queries.logs.log_levels(run_id),
        "items": page.items,
        **cursors(page),
    }
