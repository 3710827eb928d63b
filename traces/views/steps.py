"""Steps across runs: the failed-steps page, with failures grouped by cause."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.forms import StepListForm
from traces.models import Format, Run, Status
from traces.pagination import BadCursor

from .common import bad_request, fragment, htmx_part

TEMPLATE = "traces/step_list.html"
# The page's swappable parts, outermost first: links that change a hidden filter
# (an error group, a run) swap the whole page part with its form; the form swaps
# the results (groups and rows); the pager swaps only the rows.
PARTS = ("step-page", "step-results", "step-rows")


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def step_list(request: HttpRequest) -> HttpResponse:
    form = StepListForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    filters = form.filters
    part = htmx_part(request, *PARTS)
    # Paging through the rows needs no groups: a chosen cause is a column's value.
    groups = breakdown = None
    if form.shows_error_groups and part != "step-rows":
        groups = queries.errors.failure_groups(filters, chosen=filters["error_group"])
    selected_group = groups.find(filters["error_group"]) if groups else None
    if selected_group is not None:
        breakdown = queries.errors.cause_breakdown(filters, selected_group.text)
    steps = queries.steps.filter_steps(filters)
    try:
        page = queries.steps.steps_page(steps, filters)
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    count, more = _listed_count(steps, filters, groups, selected_group)
    context = {
        "section": "steps",
        "form": form,
        "page": page,
        "count": count,
        "count_capped": more,
        "groups": groups,
        "spark_rows": _spark_rows(groups, selected_group) if groups else [],
        "selected_group": selected_group,
        "breakdown": breakdown,
        "range_since": filters["since"],
        "range_until": filters["until"],
        "error_group": filters["error_group"],
        "selected_run": _selected_run(filters["run"]) if part != "step-rows" else None,
        "run_types": queries.runs.run_types() if part in (None, "step-page") else [],
        "formats": Format.choices,
        "statuses": Status.choices,
    }
    return render(request, fragment(request, TEMPLATE, *PARTS), context)


def _listed_count(steps, filters: dict, groups, selected_group) -> tuple[int, bool]:
    """The rows' count: a chosen cause's count when the groups were made over these
    very rows (failed steps, no time range: the box counts a failure on its run's
    time when it has none), else counted up to COUNT_CAP."""
    grouped_rows = groups and filters["status"] == Status.FAILED and filters["error_group"]
    if grouped_rows and not (filters["since"] or filters["until"]):
        return (selected_group.count if selected_group else 0), False
    return queries.steps.capped_count(steps)


def _selected_run(run_id: int | None) -> Run | None:
    if not run_id:
        return None
    return Run.objects.only("id", "name", "external_id").filter(pk=run_id).first()


SPARK_HEIGHT = 16


def _spark_rows(groups, selected_group=None) -> list[dict]:
    """The top groups with their sparkline bars as SVG geometry (no style=, CSP);
    only the chosen one's when a cause is chosen (the table collapses to it)."""
    rows = []
    for group in [selected_group] if selected_group else groups.top:
        peak = max((bucket["n"] for bucket in group.spark), default=0) or 1
        bars = []
        for index, bucket in enumerate(group.spark):
            height = SPARK_HEIGHT * bucket["n"] / peak if bucket["n"] else 0
            bars.append(
                {
                    "x": index,
                    "y": f"{SPARK_HEIGHT - height:.2f}",
                    "height": f"{height:.2f}",
                    "at": bucket["at"],
                    "n": bucket["n"],
                }
            )
        # One bucket is no line: the page says "within one hour" instead.
        rows.append({"group": group, "bars": bars if len(bars) > 1 else [], "width": len(bars)})
    return rows
