"""Two runs compared: `/compare/?a=<id>&b=<id>` (or `?b=<id>&with=previous`, or the
runs list's two checked rows, `?run=<id>&run=<id>`).

Their steps are aligned by path (queries/compare.py) and shown a window at a
time: which are only in A, only in B, whose status changed and whose duration
moved past the threshold, beside the two runs' counters and the first point
where they diverge. An htmx request for the next or previous window gets the
rows alone.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from traces import queries
from traces.forms import CompareForm
from traces.forms.common import MAX_ID
from traces.pagination import BadCursor
from traces.queries.compare import Threshold, cursor_at

from .common import bad_request, htmx_part

PAGE = "traces/compare.html"


class CompareError(Exception):
    """A comparison that cannot be made: a message for the user and its status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def compare(request: HttpRequest) -> HttpResponse:
    if "run" in request.GET:
        return _from_selection(request)
    if not any(request.GET.get(name) for name in ("a", "b", "with")):
        return render(request, PAGE, {"section": "runs", "form": CompareForm(), "empty": True})
    form = CompareForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "These runs cannot be compared.", form)
    try:
        a, b = chosen_runs(form)
    except CompareError as exc:
        return _problem(request, str(exc), exc.status, form)
    part = htmx_part(request, "compare-rows", "compare-summary")
    if part == "compare-summary":
        return render(request, f"{PAGE}#compare-summary", summary_context(form, a, b))
    try:
        context = compare_context(request, form, a, b, summary=part is None)
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    template = f"{PAGE}#{part}" if part else PAGE
    return render(request, template, context)


def chosen_runs(form: CompareForm):
    """Runs A and B the form names (CompareError when it names no such run)."""
    data = form.cleaned_data
    found = queries.compare.runs_by_id(*(i for i in (data["a"], data["b"]) if i is not None))
    b = found.get(data["b"])
    if b is None:
        raise CompareError(f"There is no run B with id {data['b']}.", 404)
    if data["with_"] == "previous":
        a = queries.compare.previous_run(b)
        if a is None:
            kind = f"type “{b.type}”" if b.type else f"name “{b.name or b.external_id}”"
            raise CompareError(
                f"Run {b.pk} is the first {b.format} run of its {kind}: "
                "there is no earlier run to compare it with.",
                404,
            )
        return a, b
    a = found.get(data["a"])
    if a is None:
        raise CompareError(f"There is no run A with id {data['a']}.", 404)
    return a, b


def compare_context(request: HttpRequest, form: CompareForm, a, b, *, summary: bool) -> dict:
    """The page's context; `summary`: count the changes too (a whole page), now if
    that is cheap or asked for (`summary=1`), else the page loads it after."""
    data = form.cleaned_data
    threshold = _threshold(form)
    after, before = data["after"] or None, data["before"] or None
    context = {}
    if summary and (form.summary_asked or queries.compare.summary_is_cheap(a, b)):
        context = summary_context(form, a, b)
        first = context["first_divergence"]
        # "Changes only" from the start begins at the first change: no reading of
        # the identical steps before it.
        if form.changes_only and not (after or before) and first is not None:
            after = cursor_at(first)
    page = queries.compare.compare_page(
        a.pk, b.pk, threshold, changes_only=form.changes_only, after=after, before=before
    )
    if after and not data["after"]:
        page.prev_cursor = None  # it starts at the first change: none before it
    base = _base(form, a, b)
    url = reverse("traces:compare")
    return {
        "section": "runs",
        "form": form,
        "a": a,
        "b": b,
        "percent": base["percent"],
        "ms": base["ms"],
        "changes_only": form.changes_only,
        "summary": None,
        "first_divergence": None,
        "summary_url": f"{url}?{urlencode({**base, 'summary': '1'})}" if summary else None,
        **context,
        "page": page,
        "page_links": _page_links(url, base, page),
        "counters": queries.compare.counter_rows(a, b),
        "progress": queries.compare.progress_rows(a, b),
        "swap_url": f"{url}?{urlencode({**base, 'a': b.pk, 'b': a.pk})}",
        "all_url": f"{url}?{urlencode({k: v for k, v in base.items() if k != 'changes'})}",
        "changes_url": f"{url}?{urlencode({**base, 'changes': '1'})}",
    }


def summary_context(form: CompareForm, a, b) -> dict:
    """The summary box: the changes counted over both runs, the first divergence."""
    totals = queries.compare.compare_summary(a, b, _threshold(form))
    base = _base(form, a, b)
    return {
        "a": a,
        "b": b,
        "percent": base["percent"],
        "ms": base["ms"],
        "summary": totals,
        "first_divergence": totals["first_divergence"],
        "first_url": _first_url(reverse("traces:compare"), base, totals),
    }


def _threshold(form: CompareForm) -> Threshold:
    percent, ms = form.threshold_values()
    return Threshold(percent=percent, ms=ms)


def _base(form: CompareForm, a, b) -> dict:
    """The query string every link of the page keeps."""
    percent, ms = form.threshold_values()
    base = {"a": a.pk, "b": b.pk, "percent": _number(percent), "ms": _number(ms)}
    if form.changes_only:
        base["changes"] = "1"
    return base


def _first_url(url: str, base: dict, totals: dict | None) -> str | None:
    if not totals or totals["first_divergence"] is None:
        return None
    query = urlencode({**base, "after": cursor_at(totals["first_divergence"])})
    return f"{url}?{query}#first-divergence"


def _page_links(url: str, base: dict, page) -> dict:
    links = {}
    if page.prev_cursor:
        links["prev"] = f"{url}?{urlencode({**base, 'before': page.prev_cursor})}"
    if page.next_cursor:
        links["next"] = f"{url}?{urlencode({**base, 'after': page.next_cursor})}"
    return links


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _from_selection(request: HttpRequest) -> HttpResponse:
    """The runs list's checked rows: exactly two runs, the one that started first as A."""
    chosen = request.GET.getlist("run")
    if len(chosen) != 2:
        return _problem(
            request,
            f"Select exactly two runs to compare (you selected {len(chosen)}).",
            400,
        )
    try:
        ids = [int(value) for value in chosen]
    except ValueError:
        return _problem(request, "A run id is a whole number, like 42.", 400)
    if not all(1 <= i <= MAX_ID for i in ids):
        return _problem(request, "No run has such an id.", 404)
    if ids[0] == ids[1]:
        return _problem(request, "Select two different runs to compare.", 400)
    found = queries.compare.runs_by_id(*ids)
    missing = [i for i in ids if i not in found]
    if missing:
        return _problem(request, f"There is no run with id {missing[0]}.", 404)
    a, b = queries.compare.older_first(found[ids[0]], found[ids[1]])
    form = CompareForm({"a": a.pk, "b": b.pk})
    form.is_valid()
    return render(request, PAGE, compare_context(request, form, a, b, summary=True))


def _problem(request: HttpRequest, message: str, status: int, form=None) -> HttpResponse:
    response = bad_request(request, message, form)
    response.status_code = status
    return response
