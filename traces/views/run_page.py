"""One run's page: its header, tabs (tree, timeline, logs, input/output,
attributes) and the step panel beside them.

Every part is a URL. A full request renders the whole page; an htmx request
gets only the part it swaps: the tab area, the header (polled while the run is
running), a tree level or window, the log rows, the step panel. The tree is
loaded one level at a time and every list is a keyset window, so the queries a
page makes do not grow with the number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from traces import queries
from traces.forms import RunPageForm
from traces.forms.runs import MAX_EXPAND
from traces.models import Run, Status, Step
from traces.pagination import BadCursor
from traces.templatetags.traces_extras import human_duration, pretty_json

from .common import bad_request

# Longer values are cut here, with a "show all" link (?full=<name>): never silently.
VALUE_LIMIT = 20_000
# A log row's fields and attributes: a window shows 200 rows.
LOG_VALUE_LIMIT = 2_000
# Why a step flagged `io_captured: false` has no input/output, by format.
NOT_CAPTURED = {
    "workflow": "The request had no X-Workflow-Trace: true header, so the server did not "
    "record its steps' input and output.",
}
HEADER_POLL_SECONDS = 5
# The narrowest timeline bar, in % of the axis.
MIN_BAR = 0.25


class BadFilter(ValueError):
    """A well-formed filter naming something the run does not have."""


# --- views --------------------------------------------------------------------------------


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_detail(request, run_id: int):
    return _run_page(request, run_id)


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_tree(request, run_id: int):
    """The tree tab; with `after`, an htmx request gets the next window of roots."""
    return _run_page(request, run_id, tab="tree", window_fragment=True)


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_timeline(request, run_id: int):
    return _run_page(request, run_id, tab="timeline")


@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def run_logs(request, run_id: int):
    """The logs tab; an htmx request gets only the rows (filters and pages swap them)."""
    return _run_page(request, run_id, tab="logs", window_fragment=True)


@require_GET
@vary_on_headers("HX-Request")
def step_children(request, run_id: int, key: str):
    """A step's children, one window. Without htmx: the run page with this step open."""
    form = RunPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some parameters are not valid.", form)
    parent = _get_step(run_id, key, rows_only=True)
    if not _htmx(request):
        expand = [*form.cleaned_data["expand"], *_keys(queries.steps.ancestors(parent)), key]
        return _run_page(request, run_id, tab="tree", focus=parent, expand=expand)
    try:
        level = _tree_level(request, run_id, parent, form, after=form.cleaned_data["after"])
    except BadCursor as exc:
        return bad_request(request, str(exc), form)
    template = "traces/_run_tree_rows.html" if form.cleaned_data["after"] else None
    context = {"level": level, "run_id": run_id}
    return render(request, template or "traces/_run_tree_level.html", context)


@require_GET
@vary_on_headers("HX-Request")
def step_detail(request, run_id: int, key: str):
    """The step panel: alone for htmx (into #step-panel), else the run page around it."""
    form = RunPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some parameters are not valid.", form)
    step = _get_step(run_id, key)
    chain = queries.steps.ancestors(step)
    panel = _panel_context(request, step, chain, form)
    if _htmx(request):
        return render(request, "traces/_step_panel.html", {"panel": panel, "run": step.run})
    expand = [*form.cleaned_data["expand"], *_keys(chain)]
    tab = form.cleaned_data["tab"] or "tree"
    return _run_page(request, run_id, tab=tab, expand=expand, panel=panel, run=step.run)


# --- the page -----------------------------------------------------------------------------


def _run_page(
    request,
    run_id: int,
    *,
    tab: str | None = None,
    window_fragment: bool = False,
    focus: Step | None = None,
    expand: list[str] | None = None,
    panel: dict | None = None,
    run: Run | None = None,
):
    form = RunPageForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some parameters are not valid.", form)
    options = form.cleaned_data
    tab = tab or options["tab"] or "tree"
    want_json = options["format"] == "json"
    needs_values = want_json or tab in ("io", "attributes")
    if run is None or needs_values:
        run = _get_run(run_id, with_values=needs_values)
    if want_json:
        return JsonResponse(queries.runs.run_as_dict(run), json_dumps_params={"indent": 2})
    target = request.htmx.target if _htmx(request) else None
    if target == "run-header":
        return _header_response(request, run)
    if target == "step-panel":
        return render(request, "traces/run_detail.html#empty-panel", {"run": run})
    try:
        context = _page_context(request, run, form, tab, focus=focus, expand=expand)
    except (BadCursor, BadFilter) as exc:
        return bad_request(request, str(exc), form)
    context["panel"] = panel
    context["selected_key"] = panel["step"].key if panel else None
    return render(request, _template(request, tab, options, window_fragment), context)


def _template(request, tab: str, options: dict, window_fragment: bool) -> str:
    page = "traces/run_detail.html"
    if not _htmx(request):
        return page
    if window_fragment and tab == "tree" and options["after"]:
        return "traces/_run_tree_rows.html"
    if window_fragment and tab == "logs":
        return "traces/_run_logs.html#log-rows"
    return f"{page}#run-tabs"


def _page_context(request, run: Run, form, tab: str, *, focus=None, expand=None) -> dict:
    options = form.cleaned_data
    context = {
        "section": "runs",
        "run": run,
        "run_id": run.pk,
        "tab": tab,
        "tabs": _tab_links(run, form),
        "failed_only": form.failed_only,
        "pills": _pill_links(run, tab) if tab in ("tree", "timeline") else None,
        "share_url": request.build_absolute_uri(run.get_absolute_url()),
        "header": _header_context(run),
    }
    if tab == "tree":
        context["tree"] = _tree_context(request, run, form, focus=focus, expand=expand)
        # The rows template renders one level; a window request names it `level`.
        context["level"] = context["tree"]["roots"]
    elif tab == "timeline":
        context["timeline"] = _timeline_context(run, form)
    elif tab == "logs":
        context["logs"] = _logs_context(request, run, form)
    elif tab == "io":
        full = set(options["full"])
        context["values"] = [
            _value_block(request, "run-input", run.input, "Input", full, "input"),
            _value_block(request, "run-output", run.output, "Output", full, "output"),
        ]
    elif tab == "attributes":
        full = set(options["full"])
        context["values"] = [
            _value_block(
                request, "run-attributes", run.attributes, "Attributes", full, "attributes"
            )
        ]
    return context


def _tab_links(run: Run, form) -> list[dict]:
    base = reverse("traces:run-detail", args=[run.pk])
    labels = {
        "tree": "Tree",
        "timeline": "Timeline",
        "logs": f"Logs ({run.log_count:,})" if run.log_count else "Logs",
        "io": "Input / Output",
        "attributes": "Attributes",
    }
    keep = {"failed": "1"} if form.failed_only else {}
    titles = {"logs": f"{run.log_count:,} log lines, repeated ones included"}
    links = []
    for name, label in labels.items():
        query = {"tab": name, **(keep if name in ("tree", "timeline") else {})}
        url = f"{base}?{urlencode(query)}"
        links.append({"name": name, "label": label, "url": url, "title": titles.get(name, "")})
    return links


def _pill_links(run: Run, tab: str) -> list[dict]:
    base = reverse("traces:run-detail", args=[run.pk])
    return [
        {"label": "all", "url": f"{base}?{urlencode({'tab': tab})}", "failed": False},
        {
            "label": "failed only",
            "url": f"{base}?{urlencode({'tab': tab, 'failed': '1'})}",
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
        # Numbers as the source wrote them; anything else is shown as text.
        "counters": [
            {"name": name, "value": value if _is_number(value) else pretty_json(value)}
            for name, value in (run.output_counters or {}).items()
        ],
        "poll_seconds": HEADER_POLL_SECONDS,
    }


def _header_response(request, run: Run):
    """The polled header; once the run has ended, the last swap stops the polling."""
    context = {
        "run": run,
        "header": _header_context(run),
        "share_url": request.build_absolute_uri(run.get_absolute_url()),
        "ended_while_watching": request.GET.get("was") == "running"
        and run.status != Status.RUNNING,
    }
    response = render(request, "traces/run_detail.html#run-header", context)
    if not context["header"]["live"]:
        stop = HttpResponseStopPolling(response.content)
        stop["Content-Type"] = response["Content-Type"]
        return stop
    return response


# --- tree ---------------------------------------------------------------------------------


@dataclass
class TreeLevel:
    parent: Step | None
    rows: list[Step]
    more_url: str = ""
    parallel: bool = False
    grouped: bool = False


def _tree_context(request, run: Run, form, *, focus=None, expand=None) -> dict:
    """The roots, and below each expanded step (`?expand=key`, repeatable) its
    children: one query per expanded step, never one per step."""
    options = form.cleaned_data
    expand_keys = list(dict.fromkeys(expand if expand is not None else options["expand"]))
    wanted = set(expand_keys[:MAX_EXPAND])
    roots_after = options["after"] if focus is None else ""
    roots = _tree_level(request, run.pk, None, form, after=roots_after, expand=expand_keys)
    budget = MAX_EXPAND
    pending = [roots]
    while pending:
        level = pending.pop(0)
        for step in level.rows:
            if step.key in wanted and step.child_count and budget > 0:
                budget -= 1
                after = options["after"] if focus is not None and step.pk == focus.pk else ""
                step.children_level = _tree_level(
                    request, run.pk, step, form, after=after, expand=expand_keys
                )
                pending.append(step.children_level)
    return {"roots": roots}


def _tree_level(
    request, run_id: int, parent: Step | None, form, *, after: str = "", expand=()
) -> TreeLevel:
    failed_only = form.failed_only
    page = queries.steps.tree_level(
        run_id, parent.pk if parent else None, failed_only=failed_only, after=after or None
    )
    rows = page.items
    grouped = _mark_iterations(rows, parent, form.cleaned_data["loop"] if after else None)
    expand = list(expand)
    for step in rows:
        step.url = _step_url(run_id, step.key)
        step.children_url = _children_url(run_id, step.key) if step.child_count else ""
        step.expand_url = _expand_url(step.children_url, expand, failed_only)
        step.load_url = (
            f"{step.children_url}?failed=1"
            if failed_only and step.children_url
            else step.children_url
        )
        step.children_level = None
        step.flags = _row_flags(step)
        step.notes = _row_notes(step)
        step.time_title = (
            f"started {step.started_at.isoformat(sep=' ')}"
            if step.started_at
            else "no start time recorded"
        )
    level = TreeLevel(
        parent=parent,
        rows=rows,
        parallel=bool(parent and parent.type.lower() == "parallel"),
        grouped=grouped,
    )
    if page.next_cursor:
        query = {"after": page.next_cursor}
        if failed_only:
            query["failed"] = "1"
        if grouped and rows[-1].loop_index is not None:
            query["loop"] = rows[-1].loop_index
        base = (
            _children_url(run_id, parent.key)
            if parent
            else reverse("traces:run-tree", args=[run_id])
        )
        level.more_url = f"{base}?{urlencode(query)}"
    return level


def _row_flags(step: Step) -> list[tuple[str, str]]:
    flags = []
    if step.never_closed:
        flags.append(("never closed", "the source never recorded this step's end"))
    if step.truncated:
        flags.append(("truncated", "the source cut some of this step's values short"))
    if step.synthetic:
        flags.append(("group", "a grouping step added to show the source's nesting"))
    return flags


def _row_notes(step: Step) -> list[tuple[str, str]]:
    """The small facts on the right of a tree row, as (text, explanation)."""
    notes = []
    if step.loop_index is not None:
        notes.append((f"↻ {step.loop_index}", "loop iteration"))
    if step.attempt and step.attempt > 1:
        notes.append((f"attempt {step.attempt}", ""))
    if step.retries:
        notes.append((f"{step.retries} retr{'y' if step.retries == 1 else 'ies'}", ""))
    if step.child_count:
        notes.append((_count(step.child_count, "step"), "steps directly inside this one"))
    if step.call_count:
        notes.append((_count(step.call_count, "call"), ""))
    if step.link_count:
        notes.append((_count(step.link_count, "link"), "entity links"))
    return notes


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _mark_iterations(rows: list[Step], parent: Step | None, previous: int | None) -> bool:
    """Loop iterations get an "iteration n" heading where the index changes. Not
    when every child merely inherits its parent's index (a step inside one iteration)."""
    indexed = [step.loop_index for step in rows if step.loop_index is not None]
    inherited = parent is not None and all(i == parent.loop_index for i in indexed)
    grouped = bool(indexed) and not inherited
    for step in rows:
        step.group_start = grouped and step.loop_index is not None and step.loop_index != previous
        previous = step.loop_index
    return grouped


# --- timeline -----------------------------------------------------------------------------


def _timeline_context(run: Run, form) -> dict:
    options = form.cleaned_data
    page = queries.timeline.timeline_window(
        run.pk,
        failed_only=form.failed_only,
        after=options["after"] or None,
        before=options["before"] or None,
    )
    rows = page.items
    layout = queries.timeline.lay_out(run, rows, failed_only=form.failed_only)
    span_ms = layout.span_ms
    for step, offset_ms, duration_ms in layout.items:
        step.bar = None if offset_ms is None else _bar(offset_ms, duration_ms or 0.0, span_ms)
        step.tip = _tip(step, offset_ms, duration_ms, layout.timed)
        step.url = _step_url(run.pk, step.key)
        step.depth_class = f"depth-{min(step.depth, 12)}"
    base = reverse("traces:run-timeline", args=[run.pk])
    keep = {"failed": "1"} if form.failed_only else {}
    return {
        "rows": rows,
        "timed": layout.timed,
        "span_ms": span_ms,
        "ticks": [
            {"label": human_duration(span_ms * frac / 4) if frac else "0"} for frac in range(5)
        ],
        "next_url": f"{base}?{urlencode({**keep, 'after': page.next_cursor})}"
        if page.next_cursor
        else "",
        "prev_url": f"{base}?{urlencode({**keep, 'before': page.prev_cursor})}"
        if page.prev_cursor
        else "",
        "first_seq": rows[0].seq if rows else None,
        "last_seq": rows[-1].seq if rows else None,
    }


def _bar(offset_ms: float, duration_ms: float, span_ms: float) -> dict:
    """x and width of a bar as % of the span. The one place a minimum applies: a
    zero-length step, or any step of a run that took no time, is still a visible tick."""
    scale = 100.0 / span_ms if span_ms > 0 else 0.0
    x = min(max(offset_ms * scale, 0.0), 100.0)
    width = min(max(duration_ms * scale, MIN_BAR), max(100.0 - x, MIN_BAR))
    x = min(x, 100.0 - width)
    return {"x": f"{x:.3f}", "width": f"{width:.3f}", "duration_ms": duration_ms}


def _tip(step: Step, offset_ms: float | None, duration_ms: float | None, timed: bool) -> str:
    name = f"{step.name or step.key} · {step.status}"
    if not timed:
        took = human_duration(duration_ms) if duration_ms is not None else "no duration"
        return f"{name} · #{step.seq} · {took}"
    if offset_ms is None:
        return f"{name} · no start time recorded"
    return f"{name} · starts +{human_duration(offset_ms)} · {human_duration(duration_ms)}"


# --- logs ---------------------------------------------------------------------------------

LEVEL_CLASSES = {
    "error": "failed", "fatal": "failed", "critical": "failed", "err": "failed",
    "warning": "running", "warn": "running",
    "info": "pending", "notice": "pending",
    "debug": "skipped", "trace": "skipped",
}  # fmt: skip


def _logs_context(request, run: Run, form) -> dict:
    options = form.cleaned_data
    full = set(options["full"])
    step = None
    if options["step"]:
        step = Step.objects.filter(run_id=run.pk, key=options["step"]).only("id", "key", "name")
        step = step.first()
        if step is None:
            raise BadFilter(f"this run has no step with key {options['step']!r}")
    duplicates = options["duplicates"] == "1"
    page = queries.logs.run_logs(
        run.pk,
        level=options["level"],
        step_id=step.pk if step else None,
        duplicates=duplicates,
        after=options["after"] or None,
        before=options["before"] or None,
    )
    for entry in page.items:
        entry.level_class = LEVEL_CLASSES.get(entry.level.lower(), "flag")
        entry.step_url = _step_url(run.pk, entry.step.key) if entry.step_id else ""
        entry.data = _log_data(request, entry, full)
    base = reverse("traces:run-logs", args=[run.pk])
    keep = {
        name: value
        for name, value in (
            ("level", options["level"]),
            ("step", options["step"]),
            ("duplicates", "1" if duplicates else ""),
        )
        if value
    }
    toggle = {**keep, "duplicates": "" if duplicates else "1"}
    return {
        "page": page,
        "levels": queries.logs.log_levels(run.pk),
        "level": options["level"],
        "step": step,
        "step_key": options["step"],
        "duplicates": duplicates,
        "url": base,
        "next_url": f"{base}?{urlencode({**keep, 'after': page.next_cursor})}"
        if page.next_cursor
        else "",
        "prev_url": f"{base}?{urlencode({**keep, 'before': page.prev_cursor})}"
        if page.prev_cursor
        else "",
        "toggle_url": f"{base}?{urlencode({k: v for k, v in toggle.items() if v})}",
    }


def _log_data(request, entry, full: set) -> list[dict]:
    """A log row's fields and attributes (where e.g. workflow keeps the event's
    data and precise time), each cut at LOG_VALUE_LIMIT ("show all" = logs)."""
    named = (("fields", entry.fields), ("attributes", entry.attributes or None))
    blocks = [
        _value_block(
            request, f"log-{entry.pk}-{label}", value, label, full, "logs", LOG_VALUE_LIMIT
        )
        for label, value in named
    ]
    return [block for block in blocks if block["present"]]


# --- step panel ---------------------------------------------------------------------------


def _panel_context(request, step: Step, chain: list[Step], form) -> dict:
    run_id = step.run_id
    full = set(form.cleaned_data["full"])
    calls = queries.steps.step_calls(step) if step.call_count else []
    for call in calls:
        call.values = _call_values(request, call, full)
    links = queries.steps.step_links(step) if step.link_count else []
    for link in links:
        link.url = _entity_url(link.entity_type, link.entity_id)
    logs = queries.steps.step_logs(step)
    for entry in logs:
        entry.level_class = LEVEL_CLASSES.get(entry.level.lower(), "flag")
    attributes = dict(step.attributes or {})
    truncated_fields = attributes.get("truncated_fields") or []
    values = [
        _value_block(request, "step-input", step.input, "Input", full, "input"),
        _value_block(request, "step-output", step.output, "Output", full, "output"),
    ]
    not_captured = ""
    if attributes.get("io_captured") is False:
        not_captured = NOT_CAPTURED.get(step.run.format, "The source did not record them.")
        for block in values:
            if not block["present"]:
                block["absent"] = "not captured"
    return {
        "step": step,
        "ancestors": [(a, _step_url(run_id, a.key)) for a in chain],
        "url": _step_url(run_id, step.key),
        "close_url": reverse("traces:run-detail", args=[run_id])
        + (f"?tab={form.cleaned_data['tab']}" if form.cleaned_data["tab"] else ""),
        "retry_of_url": _step_url(run_id, step.retry_of) if step.retry_of else "",
        "entity_url": _entity_url(step.entity_type, step.entity_id),
        "progress": _progress(step, step.run),
        "offset_ms": queries.timeline.ms_between(step.run.started_at, step.started_at),
        "values": values,
        "not_captured": not_captured,
        "error": _value_block(request, "step-error", step.error or None, "Error", full, "error"),
        "truncated_fields": truncated_fields if isinstance(truncated_fields, list) else [],
        "attributes": [
            _attribute(request, index, name, value, full)
            for index, (name, value) in enumerate(attributes.items())
            if name not in ("truncated_fields", "io_captured")  # said above the attributes
        ],
        "calls": calls,
        "calls_more": max(step.call_count - len(calls), 0),
        "links": links,
        "links_more": max(step.link_count - len(links), 0),
        "logs": logs,
        "logs_url": f"{reverse('traces:run-logs', args=[run_id])}?{urlencode({'step': step.key})}",
        "logs_limited": len(logs) >= queries.steps.PANEL_LIMIT,
    }


def _call_values(request, call, full: set) -> list[dict]:
    """A call's input, output and attributes, each cut like a step's ("show all" = calls)."""
    named = (
        ("in", call.input, "input"),
        ("out", call.output, "output"),
        ("attr", call.attributes or None, "attributes"),
    )
    blocks = [
        _value_block(request, f"call-{call.pk}-{suffix}", value, label, full, "calls")
        for suffix, value, label in named
    ]
    return [block for block in blocks if block["present"]]


def _attribute(request, index: int, name: str, value, full: set) -> dict:
    if isinstance(value, dict | list):
        dom_id = f"step-attr-{index}-{slugify(name)}"
        block = _value_block(request, dom_id, value, name, full, "attributes")
        return {"name": name, "block": block}
    return {"name": name, "text": "" if value is None else str(value)}


def _progress(step: Step, run: Run) -> dict | None:
    if not step.has_progress:
        return None
    processed = step.items_processed or 0
    info = {"processed": processed, "total": step.items_total, "rate": None, "eta_ms": None}
    # A stale run's clock stopped at its last write: its rate is measured until then,
    # and it has no time left to estimate.
    until = run.live_until
    if step.status == Status.RUNNING and step.started_at and processed and until:
        elapsed_s = (until - step.started_at).total_seconds()
        if elapsed_s > 0:
            info["rate"] = processed / elapsed_s
            if step.items_total and step.items_total > processed and not run.is_stale:
                info["eta_ms"] = (step.items_total - processed) / info["rate"] * 1000
    return info


# --- values -------------------------------------------------------------------------------


def _value_block(
    request, dom_id: str, value, label: str, full: set, full_key: str, limit: int = VALUE_LIMIT
) -> dict:
    """A JSON value pretty-printed; past `limit` characters cut, with a link
    that shows it all (`?full=<full_key>`)."""
    if value is None:
        return {"present": False, "label": label, "id": dom_id}
    text = pretty_json(value)
    cut = full_key not in full and len(text) > limit
    query = request.GET.copy()
    query.setlist("full", sorted({*query.getlist("full"), full_key}))
    return {
        "present": True,
        "id": dom_id,
        "label": label,
        "text": text[:limit] if cut else text,
        "size": len(text),
        "cut": cut,
        "limit": limit,
        "full_url": f"{request.path}?{query.urlencode()}",
    }


# --- helpers ------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _htmx(request) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


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


def _step_url(run_id: int, key: str) -> str:
    """Keys may hold `/` (the URL takes a path); a key no URL can carry gets no link."""
    try:
        return reverse("traces:step-detail", args=[run_id, key])
    except NoReverseMatch:
        return ""


def _children_url(run_id: int, key: str) -> str:
    try:
        return reverse("traces:step-children", args=[run_id, key])
    except NoReverseMatch:
        return ""


def _expand_url(children_url: str, expand: list[str], failed_only: bool) -> str:
    if not children_url:
        return ""
    query = [("expand", key) for key in expand[: MAX_EXPAND - 1]]
    if failed_only:
        query.append(("failed", "1"))
    return f"{children_url}?{urlencode(query)}" if query else children_url


def _entity_url(entity_type: str, entity_id: str) -> str:
    # A type holding "/" would be read back from its URL as another type and id.
    if not queries.entities.has_page(entity_type, entity_id):
        return ""
    try:
        return reverse("traces:entity-detail", args=[entity_type, entity_id])
    except NoReverseMatch:
        return ""
