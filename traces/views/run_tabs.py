"""What the run page's tabs show: the tree a level at a time, the timeline, the log.

Each is a context for its template, read a keyset window at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.functional import SimpleLazyObject

from traces import queries
from traces.forms.runs import MAX_EXPAND
from traces.key_urls import key_urls
from traces.models import Run, Step
from traces.pagination import Page
from traces.templatetags.row_html import loop_note
from traces.templatetags.traces_extras import human_duration

from . import run_find, tree_groups
from .common import mark_log_rows
from .step_panel import value_block

# A log row's fields and attributes: a window shows 200 rows.
LOG_VALUE_LIMIT = 2_000
# The narrowest timeline bar, in % of the axis.
MIN_BAR = 0.25


class BadFilter(ValueError):
    """A well-formed filter naming something the run does not have."""


# --- tree ---------------------------------------------------------------------------------


@dataclass
class TreeLevel:
    parent: Step | None
    rows: list[Step]
    more_url: str = ""
    parallel: bool = False
    grouped: bool = False
    # Its repeated names (tree_groups.GroupSummary by name); siblings after the window.
    groups: dict | None = None
    remaining: int | None = None
    # A level that shows some of its steps (find in run's): the link to all of them.
    all_url: str = ""
    all_count: int = 0


def tree_context(request: HttpRequest, run: Run, form, *, focus=None, expand=None) -> dict:
    """The roots, and below each expanded step (`?expand=key`, repeatable) its
    children: one query per expanded step, never one per step."""
    options = form.cleaned_data
    expand_keys = list(dict.fromkeys(expand if expand is not None else options["expand"]))
    wanted = set(expand_keys[:MAX_EXPAND])
    roots_after = options["after"] if focus is None else ""
    roots = tree_level(request, run.pk, None, form, after=roots_after, expand=expand_keys)
    budget = MAX_EXPAND
    pending = [roots]
    while pending:
        level = pending.pop(0)
        for step in level.rows:
            if step.key in wanted and step.child_count and budget > 0:
                budget -= 1
                after = options["after"] if focus is not None and step.pk == focus.pk else ""
                step.children_level = tree_level(
                    request, run.pk, step, form, after=after, expand=expand_keys
                )
                pending.append(step.children_level)
    return {"roots": roots}


def tree_level(
    request: HttpRequest, run_id: int, parent: Step | None, form, *, after: str = "", expand=()
) -> TreeLevel:
    failed_only = form.failed_only
    page = queries.steps.tree_level(
        run_id, parent.pk if parent else None, failed_only=failed_only, after=after or None
    )
    rows = page.items
    grouped = _mark_iterations(rows, parent, form.cleaned_data["loop"] if after else None)
    mark_tree_rows(run_id, rows, list(expand), failed_only)
    groups, size = tree_groups.decorate(run_id, parent, rows)
    level = TreeLevel(
        parent=parent,
        rows=rows,
        parallel=bool(parent and parent.type.lower() == "parallel"),
        grouped=grouped,
        groups=groups,
    )
    if page.next_cursor:
        if not failed_only:
            level.remaining = tree_groups.remaining(size, rows)
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


def mark_tree_rows(run_id: int, rows: list[Step], expand: list[str], failed_only: bool) -> None:
    """What a tree row shows besides its columns: its links, flags and notes."""
    step_url_of = key_urls("traces:step-detail", run_id)
    children_url_of = key_urls("traces:step-children", run_id)
    for step in rows:
        step.url = step_url_of(step.key)
        step.children_url = children_url_of(step.key) if step.child_count else ""
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
        notes.append(loop_note(step))
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


# --- timeline -----------------------------------------------------------------------------


def timeline_context(run: Run, form) -> dict:
    """A run with step timestamps: the steps overlapping the chosen time window
    (`from_ms`/`to_ms`, the whole run by default) with the zoom controls and the
    minimap. Without timestamps (greentic): windows in run order, end to end."""
    if not _has_step_times(run):
        return _untimed_timeline(run, form)
    options = form.cleaned_data
    start, end = queries.timeline.time_axis(run)
    span_ms = max(queries.timeline.ms_between(start, end) or 0.0, 0.0)
    from_ms, to_ms = _time_window(options, span_ms)
    window_ms = to_ms - from_ms
    found = queries.timeline.overlapping(
        run,
        from_ms,
        to_ms,
        span_ms,
        failed_only=form.failed_only,
        after=options["after"] or None,
        before=options["before"] or None,
        whole_run=window_ms >= span_ms,
    )
    rows = [*found.open_before, *found.page.items, *found.unstarted]
    # Find in run: the window's matches highlighted, the others dimmed, or (only=1)
    # left out: a time window is read by time, so its matches are picked here.
    marks = run_find.mark_timeline(run, rows, form, rows_are_matches=False)
    open_before, unstarted = found.open_before, found.unstarted
    if marks is not None and options.get("only") == "1":

        def matched(steps: list[Step]) -> list[Step]:
            return [step for step in steps if step.find_class == " find-match"]

        rows, open_before, unstarted = matched(rows), matched(open_before), matched(unstarted)
    layout = queries.timeline.lay_out(run, rows, failed_only=form.failed_only)
    # What tells repeated siblings apart, as the tree's rows show it.
    tree_groups.label_rows(run.pk, rows)
    step_url_of = key_urls("traces:step-detail", run.pk)
    base = reverse("traces:run-timeline", args=[run.pk])
    keep = {"failed": "1"} if form.failed_only else {}
    keep.update(run_find.find_keep(form))
    zoomed = window_ms < span_ms
    here = {**keep, **(_window_query(from_ms, to_ms) if zoomed else {})}
    panel_query = urlencode({"tab": "timeline", **here})
    for step, offset_ms, duration_ms in layout.items:
        step.bar = (
            None if offset_ms is None else _clipped_bar(offset_ms, duration_ms, from_ms, to_ms)
        )
        step.tip = _tip(step, offset_ms, duration_ms, True)
        step.url = step_url_of(step.key)
        step.panel_url = f"{step.url}?{panel_query}" if step.url else ""
        step.depth_class = f"depth-{min(step.depth, 12)}"
    minimap = queries.timeline.minimap(run, span_ms)
    return {
        "rows": rows,
        "timed": True,
        "zoomable": span_ms >= 2 * MIN_WINDOW_MS,
        "zoomed": zoomed,
        "span_ms": span_ms,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "window_ms": window_ms,
        "open_before": len(open_before),
        "unstarted": len(unstarted),
        # The rows listed are these, the ones that began before it and the unstarted.
        "overlapping": len(rows) - len(unstarted),
        "ticks": [
            {"label": _tick(from_ms + window_ms * frac / 4) if from_ms or frac else "0"}
            for frac in range(5)
        ],
        **_window_urls(base, here, found.page),
        "next_count": _next_count(run, found, from_ms, to_ms, form.failed_only),
        "controls": _zoom_controls(base, keep, from_ms, to_ms, span_ms),
        "minimap": _minimap_context(minimap, from_ms, to_ms, span_ms),
        "base_url": f"{base}?{urlencode(keep)}" if keep else base,
        "live": run.live_until is not None,
        "find": marks,
    }


def _has_step_times(run: Run) -> bool:
    """Whether the run's steps are on a clock: the store notes their first start;
    a run written otherwise is asked (one lookup on (run, started_at))."""
    if run.steps_started_at is not None:
        return True
    if run.started_at is None:
        return False
    return Step.objects.filter(run_id=run.pk, started_at__isnull=False).exists()


# The zoom controls: their keys (timeline.js), labels and titles.
ZOOM_CONTROLS = (
    ("in", "w", "+ zoom in", "Zoom in ×2 (w or +)"),  # noqa: RUF001
    ("out", "s", "− zoom out", "Zoom out ×2 (s or −)"),  # noqa: RUF001
    ("left", "a", "‹ earlier", "Earlier: pan left by half a window (a)"),  # noqa: RUF001
    ("right", "d", "later ›", "Later: pan right by half a window (d)"),  # noqa: RUF001
    ("reset", "0", "whole run", "Show the whole run (0)"),
)
# The narrowest window the zoom goes to, in ms.
MIN_WINDOW_MS = 1.0
MINIMAP_HEIGHT = 40


def _time_window(options: dict, span_ms: float) -> tuple[float, float]:
    """The window asked for, within the run's axis; a window that cannot be is a
    BadFilter (a 400 saying why)."""
    asked_from, asked_to = options.get("from_ms"), options.get("to_ms")
    if asked_from is None and asked_to is None:
        return 0.0, span_ms
    from_ms = 0.0 if asked_from is None else asked_from
    to_ms = span_ms if asked_to is None else min(asked_to, span_ms)
    if from_ms > span_ms:
        raise BadFilter(
            f"from_ms ({from_ms:g}) is after the end of the run's time axis ({span_ms:g} ms)."
        )
    if to_ms - from_ms < min(MIN_WINDOW_MS, span_ms) or to_ms <= from_ms:
        raise BadFilter(
            f"from_ms must be at least {MIN_WINDOW_MS:g} ms below to_ms "
            f"(the run's time axis is {span_ms:g} ms long)."
        )
    return from_ms, to_ms


def _tick(at_ms: float) -> str:
    return f"+{human_duration(at_ms)}"


def _ms(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _window_query(from_ms: float, to_ms: float) -> dict:
    return {"from_ms": _ms(from_ms), "to_ms": _ms(to_ms)}


def _zoom_controls(base: str, keep: dict, from_ms: float, to_ms: float, span_ms: float) -> list:
    """Zoom in / out (by 2, around the window's middle), pan left / right (by half a
    window), reset: each a link, or None where it cannot go further."""
    width = to_ms - from_ms
    middle = (from_ms + to_ms) / 2

    def url(lo: float, hi: float) -> str:
        lo, hi = max(lo, 0.0), min(hi, span_ms)
        query = keep if hi - lo >= span_ms else {**keep, **_window_query(lo, hi)}
        return f"{base}?{urlencode(query)}" if query else base

    half = max(width / 2, MIN_WINDOW_MS)
    out_lo = max(0.0, min(middle - width, span_ms - 2 * width))
    left_lo = max(0.0, from_ms - width / 2)
    right_hi = min(span_ms, to_ms + width / 2)
    can_zoom_in = width / 2 >= MIN_WINDOW_MS and span_ms > 0
    urls = {
        "in": url(middle - half / 2, middle + half / 2) if can_zoom_in else "",
        "out": url(out_lo, out_lo + 2 * width) if width < span_ms else "",
        "left": url(left_lo, left_lo + width) if from_ms > 0 else "",
        "right": url(right_hi - width, right_hi) if to_ms < span_ms else "",
        "reset": url(0.0, span_ms) if width < span_ms else "",
    }
    return [
        {"name": name, "key": key, "url": urls[name], "label": label, "title": title}
        for name, key, label, title in ZOOM_CONTROLS
    ]


def _minimap_context(minimap, from_ms: float, to_ms: float, span_ms: float) -> dict:
    """The minimap's SVG shapes on a viewBox 1000 wide and MINIMAP_HEIGHT high."""
    height = MINIMAP_HEIGHT - 4
    bars = [
        {
            "x": bar["x"],
            "width": bar["width"],
            "y": f"{MINIMAP_HEIGHT - float(bar['height']) * height:.2f}",
            "height": f"{float(bar['height']) * height:.2f}",
        }
        for bar in minimap.buckets
    ]
    scale = 1000 / span_ms if span_ms > 0 else 0.0
    x = from_ms * scale
    width = max((to_ms - from_ms) * scale, 2.0)
    # Each kind of shape is one <path> (a rectangle per column or tick): thousands of
    # failed steps are one element, written here rather than looped in the template.
    bar_path = " ".join(f"M{b['x']} {b['y']}h{b['width']}V{MINIMAP_HEIGHT}H{b['x']}z" for b in bars)
    failed_path = " ".join(f"M{tick} 0h1.5v{MINIMAP_HEIGHT}h-1.5z" for tick in minimap.failed)
    return {
        "bar_path": bar_path,
        "failed_path": failed_path,
        "failed": len(minimap.failed),
        "failed_capped": minimap.failed_capped,
        "sampled": minimap.sampled,
        "height": MINIMAP_HEIGHT,
        "window": {"x": f"{min(x, 1000 - width):.2f}", "width": f"{width:.2f}"},
    }


def _clipped_bar(offset_ms: float, duration_ms: float | None, lo: float, hi: float) -> dict:
    """x and width (% of the window [lo, hi]) of the part of a step inside it; a
    step of no length is still a visible tick (MIN_BAR)."""
    width_ms = hi - lo
    scale = 100.0 / width_ms if width_ms > 0 else 0.0
    end_ms = offset_ms + (duration_ms or 0.0)
    left, right = max(offset_ms, lo), min(end_ms, hi)
    x = min(max((left - lo) * scale, 0.0), 100.0)
    width = max((right - left) * scale, MIN_BAR)
    x = min(x, 100.0 - width)
    return {"x": f"{x:.3f}", "width": f"{width:.3f}", "duration_ms": duration_ms}


def _untimed_timeline(run: Run, form) -> dict:
    options = form.cleaned_data
    page = queries.timeline.timeline_window(
        run.pk,
        failed_only=form.failed_only,
        after=options["after"] or None,
        before=options["before"] or None,
        find=form.found if options.get("only") == "1" else None,
    )
    rows = page.items
    layout = queries.timeline.lay_out(run, rows, failed_only=form.failed_only)
    tree_groups.label_rows(run.pk, rows)
    span_ms = layout.span_ms
    step_url_of = key_urls("traces:step-detail", run.pk)
    for step, offset_ms, duration_ms in layout.items:
        step.bar = None if offset_ms is None else _bar(offset_ms, duration_ms or 0.0, span_ms)
        step.tip = _tip(step, offset_ms, duration_ms, layout.timed)
        step.url = step_url_of(step.key)
        step.panel_url = f"{step.url}?tab=timeline" if step.url else ""
        step.depth_class = f"depth-{min(step.depth, 12)}"
    base = reverse("traces:run-timeline", args=[run.pk])
    keep = {"failed": "1"} if form.failed_only else {}
    keep.update(run_find.find_keep(form))
    return {
        "rows": rows,
        "timed": layout.timed,
        "zoomable": False,
        "span_ms": span_ms,
        "ticks": [
            {"label": human_duration(span_ms * frac / 4) if frac else "0"} for frac in range(5)
        ],
        **_window_urls(base, keep, page),
        "next_count": queries.timeline_count.after_in_run_order(
            run, rows[-1], failed_only=form.failed_only
        )
        if page.next_cursor and rows and not form.found
        else None,
        "first_seq": rows[0].seq if rows else None,
        "last_seq": rows[-1].seq if rows else None,
        "find": run_find.mark_timeline(run, rows, form),
    }


def _next_count(run: Run, found, from_ms: float, to_ms: float, failed_only: bool):
    """How many steps "next steps" leads to (capped), when there are more."""
    if not found.page.next_cursor or not found.page.items:
        return None
    _low, high = queries.timeline.window_bounds(run, from_ms, to_ms)
    last = found.page.items[-1]
    return queries.timeline_count.after_in_window(run, last, high, failed_only=failed_only)


def _window_urls(base: str, keep: dict, page: Page) -> dict:
    """Links to the windows after and before this one, with the tab's filters."""
    return {
        "next_url": f"{base}?{urlencode({**keep, 'after': page.next_cursor})}"
        if page.next_cursor
        else "",
        "prev_url": f"{base}?{urlencode({**keep, 'before': page.prev_cursor})}"
        if page.prev_cursor
        else "",
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


def logs_context(request: HttpRequest, run: Run, form) -> dict:
    options = form.cleaned_data
    full = set(options["full"])
    step_ids = queries.logs.steps_named(run.pk, options["step"]) if options["step"] else None
    duplicates = options["duplicates"] == "1"
    page = queries.logs.run_logs(
        run.pk,
        level=options["level"],
        step_ids=step_ids,
        text=options["q"],
        duplicates=duplicates,
        after=options["after"] or None,
        before=options["before"] or None,
    )
    mark_log_rows(page.items)
    for entry in page.items:
        entry.data = _log_data(request, entry, full)
    # Read only when shown: the form's list and levels are not in a rows-only swap.
    names = SimpleLazyObject(lambda: queries.logs.step_names(run.pk, run.log_count))
    repeated = queries.logs.repeated_lines(run.pk) if run.log_count else 0
    base = reverse("traces:run-logs", args=[run.pk])
    keep = {
        name: value
        for name, value in (
            ("level", options["level"]),
            ("step", options["step"]),
            ("q", options["q"]),
            ("duplicates", "1" if duplicates else ""),
        )
        if value
    }
    toggle = {**keep, "duplicates": "" if duplicates else "1"}
    return {
        "page": page,
        "levels": SimpleLazyObject(lambda: queries.logs.log_levels(run.pk)),
        "level": options["level"],
        "step": options["step"],
        # A step asked for that the run does not have: said beside the form, not an
        # error, with the run's names that hold its words.
        "no_such_step": step_ids == [],
        "step_names": names,
        "like": _names_like(options["step"], names) if step_ids == [] else [],
        # "Logs (N)" reconciled: N lines = those listed + the repeats hidden.
        "repeated": repeated,
        "listed": run.log_count - repeated,
        "text": options["q"],
        "duplicates": duplicates,
        "url": base,
        **_window_urls(base, keep, page),
        "toggle_url": f"{base}?{urlencode({k: v for k, v in toggle.items() if v})}",
    }


def _names_like(value: str, names: list) -> list[str]:
    """The step names holding the words of `value` (any case), for "no such step"."""
    words = value.casefold().split()
    return [each.name for each in names if all(w in each.name.casefold() for w in words)][:5]


def _log_data(request: HttpRequest, entry, full: set) -> list[dict]:
    """A log row's fields and attributes (where e.g. workflow keeps the event's
    data and precise time), each cut at LOG_VALUE_LIMIT ("show all" = logs)."""
    named = (("fields", entry.fields), ("attributes", entry.attributes or None))
    blocks = [
        value_block(request, f"log-{entry.pk}-{label}", value, label, full, "logs", LOG_VALUE_LIMIT)
        for label, value in named
    ]
    return [block for block in blocks if block["present"]]
