"""Steps across runs, their failures grouped by error, and one step with what hangs
off it."""

from __future__ import annotations

from urllib.parse import quote_plus, urlencode

from django.urls import reverse
from ninja import Path, Query, Router
from ninja.errors import HttpError

from traces import queries
from traces.forms import StepListForm
from traces.models import Status as StepStatus
from traces.models import Step
from traces.schemas import ErrorGroupsOut, StepDetail, StepList, form_query

from . import items as items_of
from .common import MAX_ID, READ, READ_ONE, valid

router = Router()

STEP_PARAMS = (
    "status", "format", "run", "run_type", "times", "name", "name_match", "error",
    "error_group", "since", "until", "after", "before",
)  # fmt: skip
StepQuery = form_query("StepQuery", StepListForm, only=STEP_PARAMS)
ERROR_PARAMS = (
    "format", "run", "run_type", "times", "name", "name_match", "error", "since", "until",
)  # fmt: skip
ErrorsQuery = form_query("ErrorsQuery", StepListForm, only=ERROR_PARAMS)

StepId = Path[int, {"ge": 1, "le": MAX_ID, "description": "The step's id."}]


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
    # form.filters, as the steps page and /steps/errors: a relative range starts at its
    # first 10-minute slot, so a cause's `steps` link lists what its count counted.
    data = valid(StepListForm, request.GET).filters
    steps = queries.steps.filter_steps(data)
    page = queries.steps.steps_page(steps, data)
    count, capped = queries.steps.capped_count(steps)
    items = items_of.step_items(page.items)
    return items_of.answer(
        request, {"count": count, "count_capped": capped, **items_of.page_of(page, items)}
    )


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
    result = queries.errors.failure_groups(form.filters)
    keep = {name: request.GET[name] for name in ERROR_PARAMS if request.GET.get(name)}
    steps_url = f"{reverse('api:list_steps')}?{urlencode({**keep, 'status': StepStatus.FAILED})}"
    # Hundreds of causes and their sparklines' points: plain dicts (api.items).
    return items_of.answer(
        request,
        {
            "groups": [_error_group(group, steps_url) for group in result.groups],
            "steps_read": result.steps_read,
            "from_read_model": result.from_read_model,
            "spark_unit": result.spark_unit,
        },
    )


def _error_group(group: queries.errors.ErrorGroup, steps_url: str) -> dict:
    """An ErrorGroupOut."""
    return {
        "text": group.text,
        "count": group.count,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "example": group.example,
        "spark": [{"at": point["at"], "n": point["n"]} for point in group.spark],
        "steps": f"{steps_url}&error_group={quote_plus(group.text)}",
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
    return with_panel(queries.steps.step_by_key(*found))


def with_panel(step: Step) -> Step:
    """The step with what its panel lists (StepDetail reads them): its ancestors and
    its first calls, entity links and log rows."""
    step.ancestors = queries.steps.ancestors(step)
    step.panel_calls = queries.steps.step_calls(step) if step.call_count else []
    step.panel_links = queries.steps.step_links(step) if step.link_count else []
    for link in step.panel_links:
        link.run = step.run  # the step's own run: no query per link
    step.panel_logs = queries.steps.step_logs(step)
    step.logs_limited = len(step.panel_logs) >= queries.steps.PANEL_LIMIT
    return step
