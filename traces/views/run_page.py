"""One run's page: its header, tabs (tree, timeline, logs, input/output,
attributes) and the step panel beside them. Here are its URLs and the page around
the parts; what the tabs show is in run_tabs.py, the step panel in step_panel.py.

Every part is a URL. A full request renders the whole page; an htmx request
gets only the part it swaps: the tab area, the header (polled while the run is
running), a tree level or window, the log rows, the step panel. The tree is
loaded one level at a time and every list is a keyset window, so the queries a
page makes do not grow with the number of steps.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from traces import queries
from traces.forms import RunPageForm
from traces.models import Run, Status, Step
from traces.pagination import BadCursor
from traces.templatetags.traces_extras import pretty_json

from .common import bad_request, htmx_part
from .critical_path import critical_path_context
from .run_find import find_bar, find_keep, find_tree
from .run_tabs import BadFilter, logs_context, timeline_context, tree_context, tree_level
from .step_panel import panel_context, value_block

HEADER_POLL_SECONDS = 5


# --- views --------------------------------------------------------------------------------

PAGE = "traces/run_detail.html"
# The page's parts an htmx request may target (the first unless it names another): the
# tab area (tabs, pills, the timeline's pages), the polled header, the emptied panel.
PARTS = ("run-tabs", "run-header", "step-panel")
# The windows a tab's own URL serves before its parts: the next roots of the tree, the
# log's rows (its filters and pages).
WINDOWS = {"tree-rows": "traces/_run_tree_rows.html", "log-rows": "traces/_run_logs.html#log-rows"}


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    return _run_page(request, run_id)


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_tree(request: HttpRequest, run_id: int) -> HttpResponse:
    """The tree tab; with `after`, an htmx request gets the next window of roots."""
    return _run_page(request, run_id, tab="tree", window="tree-rows")


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_timeline(request: HttpRequest, run_id: int) -> HttpResponse:
    return _run_page(request, run_id, tab="timeline")


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_logs(request: HttpRequest, run_id: int) -> HttpResponse:
    """The logs tab; an htmx request gets only the rows (filters and pages swap them)."""
    return _run_page(request, run_id, tab="logs", window="log-rows")


@require_GET
@vary_on_headers("HX-Request")
def step_children(request: HttpRequest, run_id: int, key: str) -> HttpResponse:
    """A step's children, one window. Without htmx: the run page with this step open."""
    form = RunPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some parameters are not valid.", form)
    parent = _get_step(run_id, key, rows_only=True)
    if htmx_part(request, "tree-level") is None:
        expand = [*form.cleaned_data["expand"], *_keys(queries.steps.ancestors(parent)), key]
        return _run_page(request, run_id, tab="tree", focus=parent, expand=expand)
    try:
        level = tree_level(request, run_id, parent, form, after=form.cleaned_data["after"])
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    template = "traces/_run_tree_rows.html" if form.cleaned_data["after"] else None
    context = {"level": level, "run_id": run_id}
    return render(request, template or "traces/_run_tree_level.html", context)


@require_GET
@vary_on_headers("HX-Request")
def step_detail(request: HttpRequest, run_id: int, key: str) -> HttpResponse:
    """The step panel: alone for htmx (into #step-panel), else the run page around it."""
    form = RunPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some parameters are not valid.", form)
    step = _get_step(run_id, key)
    chain = queries.steps.ancestors(step)
    panel = panel_context(request, step, chain, form)
    if htmx_part(request, "step-panel"):
        return render(request, "traces/_step_panel.html", {"panel": panel, "run": step.run})
    expand = [*form.cleaned_data["expand"], *_keys(chain)]
    tab = form.cleaned_data["tab"] or "tree"
    return _run_page(request, run_id, tab=tab, expand=expand, panel=panel, run=step.run)


# --- the page -----------------------------------------------------------------------------


def _run_page(
    request: HttpRequest,
    run_id: int,
    *,
    tab: str | None = None,
    window: str | None = None,
    focus: Step | None = None,
    expand: list[str] | None = None,
    panel: dict | None = None,
    run: Run | None = None,
) -> HttpResponse:
    """The run page, or the part of it an htmx request swaps: `window` (a key of
    WINDOWS) is the part the calling URL serves by default. `?format=json`, from
    the page's former JSON export, is sent on to the API's run."""
    form = RunPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some parameters are not valid.", form)
    options = form.cleaned_data
    if options["format"] == "json":
        return redirect("api:run", run_id)
    tab = tab or options["tab"] or "tree"
    if window == "tree-rows" and not options["after"]:
        window = None  # the first window of roots is the whole tab
    part = htmx_part(request, *([window] if window else []), *PARTS)
    needs_values = tab in ("io", "attributes")
    if run is None or needs_values:
        run = _get_run(run_id, with_values=needs_values)
    if part == "run-header":
        return _header_response(request, run)
    if part == "step-panel":
        return render(request, f"{PAGE}#empty-panel", {"run": run})
    try:
        context = _page_context(request, run, form, tab, focus=focus, expand=expand)
    except (BadCursor, BadFilter) as exc:
        return bad_request(request, str(exc), form)
    context["panel"] = panel
    context["selected_key"] = panel["step"].key if panel else None
    template = WINDOWS.get(part) or (f"{PAGE}#{part}" if part else PAGE)
    return render(request, template, context)


def _page_context(
    request: HttpRequest, run: Run, form, tab: str, *, focus=None, expand=None
) -> dict:
    options = form.cleaned_data
    context = {
        "section": "runs",
        "run": run,
        "run_id": run.pk,
        "tab": tab,
        "tabs": _tab_links(run, form),
        "failed_only": form.failed_only,
        "pills": _pill_links(run, tab, find_keep(form)) if tab in ("tree", "timeline") else None,
        "share_url": request.build_absolute_uri(run.get_absolute_url()),
        "header": _header_context(run),
    }
    if tab in ("tree", "timeline"):
        context["find"] = find_bar(run, form, tab)
    if tab == "tree" and context["find"]["active"]:
        context["tree"] = find_tree(run, form, context["find"])
        context["level"] = context["tree"]["roots"]
    elif tab == "tree":
        context["tree"] = tree_context(request, run, form, focus=focus, expand=expand)
        # The rows template renders one level; a window request names it `level`.
        context["level"] = context["tree"]["roots"]
    elif tab == "timeline":
        context["timeline"] = timeline_context(run, form)
    elif tab == "critical":
        context["critical"] = critical_path_context(run, form)
    elif tab == "logs":
        context["logs"] = logs_context(request, run, form)
    elif tab == "io":
        full = set(options["full"])
        context["values"] = [
            value_block(request, "run-input", run.input, "Input", full, "input"),
            value_block(request, "run-output", run.output, "Output", full, "output"),
        ]
    elif tab == "attributes":
        full = set(options["full"])
        context["values"] = [
            value_block(request, "run-attributes", run.attributes, "Attributes", full, "attributes")
        ]
    return context


def _tab_links(run: Run, form) -> list[dict]:
    base = reverse("traces:run-detail", args=[run.pk])
    labels = {
        "tree": "Tree",
        "timeline": "Timeline",
        "critical": "Critical path",
        "logs": f"Logs ({run.log_count:,})" if run.log_count else "Logs",
        "io": "Input / Output",
        "attributes": "Attributes",
    }
    keep = {"failed": "1"} if form.failed_only else {}
    keep.update(find_keep(form))
    titles = {"logs": f"{run.log_count:,} log lines, repeated ones included"}
    links = []
    for name, label in labels.items():
        query = {"tab": name, **(keep if name in ("tree", "timeline") else {})}
        url = f"{base}?{urlencode(query)}"
        links.append({"name": name, "label": label, "url": url, "title": titles.get(name, "")})
    return links


def _pill_links(run: Run, tab: str, keep: dict) -> list[dict]:
    base = reverse("traces:run-detail", args=[run.pk])
    return [
        {"label": "all", "url": f"{base}?{urlencode({'tab': tab, **keep})}", "failed": False},
        {
            "label": "failed only",
            "url": f"{base}?{urlencode({'tab': tab, 'failed': '1', **keep})}",
            "failed": True,
        },
    ]


# --- header -------------------------------------------------------------------------------


def _header_context(run: Run) -> dict:
    until = run.live_until
    running = run.status == Status.RUNNING and not run.is_stale
    elapsed = None
    if until is not None and run.started_at:
        elapsed = max((until - run.started_at).total_seconds() * 1000, 0.0)
    return {
        "live": running,
        "elapsed_ms": elapsed,
        "elapsed_note": "so far" if running else "until its last write",
        # Its duration (or, while it runs, its duration so far) against its type's.
        "type_compare": bool(run.type) and (run.duration_ms is not None or elapsed is not None),
        # "compare with previous" only when there is one: the first run of its type
        # has none. One indexed lookup (the runs of its type or name before it), made
        # when the header is drawn (the template calls it), not for a tab's swap.
        "has_previous": lambda: _has_previous(run),
        # Numbers as the source wrote them; anything else is shown as text.
        "counters": [
            {"name": name, "value": value if _is_number(value) else pretty_json(value)}
            for name, value in (run.output_counters or {}).items()
        ],
        "poll_seconds": HEADER_POLL_SECONDS,
    }


def _has_previous(run: Run) -> bool:
    return bool(run.type or run.name) and queries.compare.previous_run(run) is not None


def _header_response(request: HttpRequest, run: Run) -> HttpResponse:
    """The polled header; once the run has ended, the last swap stops the polling."""
    context = {
        "run": run,
        "header": _header_context(run),
        "share_url": request.build_absolute_uri(run.get_absolute_url()),
        "ended_while_watching": request.GET.get("was") == "running"
        and run.status != Status.RUNNING,
    }
    response = render(request, f"{PAGE}#run-header", context)
    if not context["header"]["live"]:
        stop = HttpResponseStopPolling(response.content)
        stop["Content-Type"] = response["Content-Type"]
        return stop
    return response


# --- helpers ------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get_run(run_id: int, *, with_values: bool = False) -> Run:
    try:
        return queries.runs.run_for_page(run_id, with_values=with_values)
    except Run.DoesNotExist:
        raise Http404("No run with this id.") from None


def _get_step(run_id: int, key: str, *, rows_only: bool = False) -> Step:
    try:
        return queries.steps.step_by_key(run_id, key, rows_only=rows_only)
    except Step.DoesNotExist:
        raise Http404("No step with this key in this run.") from None


def _keys(steps: list[Step]) -> list[str]:
    return [step.key for step in steps]
