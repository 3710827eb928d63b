"""Two runs compared: GET /api/runs/compare, the twin of the compare page (its form,
its queries, the same rows and summary)."""

from __future__ import annotations

from ninja import Query, Router
from ninja.errors import HttpError

from traces import queries
from traces.forms import CompareForm
from traces.ingest.step_paths import readable
from traces.pagination import BadCursor
from traces.queries.compare import Threshold, cursor_at
from traces.schemas import form_query
from traces.schemas.compare import CompareRuns, compare_steps
from traces.views.compare import CompareError, chosen_runs

from .common import READ_ONE, ApiBadRequest, valid

router = Router()

# The form's `with_` field is the `with` parameter (a Python keyword).
CompareQuery = form_query(
    "CompareQuery",
    CompareForm,
    only=("a", "b", "percent", "ms", "changes", "summary", "after", "before"),
    **{
        "with": {
            "type": "string",
            "enum": ["", "previous"],
            "description": "previous: A is the run of B's type that started last before B",
        }
    },
)


@router.get(
    "/runs/compare",
    response={200: CompareRuns, **READ_ONE},
    tags=["runs"],
    summary="Two runs compared step by step",
)
def compare_runs(request, filters: Query[CompareQuery]):
    """Runs A and B (`a`, `b`; or `b` and `with=previous`: the run of B's type that
    started before it), their steps aligned by path in path order, a window of 200
    at a time (`after`/`before` cursors; `changes=1`: only the steps added, removed,
    or whose status or duration changed), and a summary over both whole runs: when
    one of them has at most 20,000 steps, or with `summary=1` (it reads both runs'
    steps: ~0.1 s for two of 100,000); else `summary` is null."""
    form = valid(CompareForm, request.GET)
    try:
        a, b = chosen_runs(form)
    except CompareError as exc:
        raise HttpError(exc.status, str(exc)) from None
    percent, ms = form.threshold_values()
    threshold = Threshold(percent=percent, ms=ms)
    data = form.cleaned_data
    summary = None
    if form.summary_asked or queries.compare.summary_is_cheap(a, b):
        summary = queries.compare.compare_summary(a, b, threshold)
    first = summary["first_divergence"] if summary else None
    after, before = data["after"] or None, data["before"] or None
    if form.changes_only and not (after or before) and first is not None:
        after = cursor_at(first)
    try:
        page = queries.compare.compare_page(
            a.pk, b.pk, threshold, changes_only=form.changes_only, after=after, before=before
        )
    except BadCursor as exc:
        raise ApiBadRequest(f"after: {exc}", {"after": [str(exc)]}) from None
    if after and not data["after"]:
        page.prev_cursor = None  # it starts at the first change: none before it
    return {
        "a": a,
        "b": b,
        "threshold": {"percent": percent, "ms": ms},
        "summary": {
            **summary,
            "first_divergence": readable(first) if first is not None else None,
            "first_divergence_cursor": cursor_at(first) if first is not None else None,
        }
        if summary
        else None,
        "steps": compare_steps(page.rows, a.pk, b.pk),
        "next": page.next_cursor,
        "prev": page.prev_cursor,
    }
