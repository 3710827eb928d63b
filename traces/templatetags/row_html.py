"""The rows of a run's tree and timeline, rendered in Python.

A window of a big run's tree is 200 rows and a timeline window 300; through the
template engine each row cost ~0.3 ms (55 variable lookups, an inclusion tag for
its progress bar, a dozen filters): 70-90 ms of a page whose queries take 2 ms.
format_html() halves that; its lazy-aware escaping still cost ~0.1 ms a row. So
a row here is an f-string in which every value that is not a number or one of
our own constants goes through `_e` (the stdlib's html.escape, which Django's
escape() wraps: the same output), and the markup is the templates' own, byte for
byte (tests/test_views_run_detail.py renders hostile names through it).
"""

from __future__ import annotations

from html import escape as _e
from zoneinfo import ZoneInfo

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.urls import reverse
from django.utils import dateformat
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.utils.timezone import get_current_timezone

from traces.key_urls import key_url

from .traces_extras import (
    estimated_mark,
    grouped,
    human_duration,
    progress_html,
    since,
    status_icon,
)

register = template.Library()


@register.simple_tag
def tree_level(level, selected_key=None) -> SafeString:
    """A level of the tree: its list, with its rows (`_run_tree_level.html`)."""
    parallel = " parallel-branches" if level.parallel else ""
    iterations = " iterations" if level.grouped else ""
    label = ' aria-label="parallel branches"' if level.parallel else ""
    rows = tree_rows(level, selected_key)
    return mark_safe(f'<ul class="tree{parallel}{iterations}"{label}>\n{rows}\n</ul>\n')


@register.simple_tag
def tree_rows(level, selected_key=None) -> SafeString:
    """A level's rows and its "next steps" link (`_run_tree_rows.html`)."""
    rows = "".join([_tree_row(step, selected_key) for step in level.rows])
    more = ""
    if level.more_url:
        url = _e(level.more_url)
        left = ""
        if getattr(level, "remaining", None):
            n = level.remaining
            left = f' <span class="muted">({grouped(n)} more step{"" if n == 1 else "s"})</span>'
        more = (
            f'<li class="tree-more"><a href="{url}" hx-get="{url}" hx-target="closest li">'
            "show the next steps ›</a>"  # noqa: RUF001
            f'{left} <span class="htmx-indicator muted">loading…</span></li>'
        )
    if getattr(level, "all_url", "") and level.parent is not None:
        url, pk = _e(level.all_url), level.parent.pk
        more += (
            f'<li class="tree-more find-all"><a href="{url}" hx-get="{url}"'
            f' hx-target="#kids-{pk}" hx-swap="innerHTML">'
            f"show all its {grouped(level.all_count)} steps ›</a></li>"  # noqa: RUF001
        )
    return mark_safe(f"{rows}\n{more}\n")


def _tree_row(step, selected_key) -> str:
    pk = step.pk
    selected = " selected" if step.key == selected_key else ""
    if step.child_count:
        opening = (
            f'<details class="tree-node"{_loader(step)}>\n'
            f'  <summary class="tree-row{selected}" data-row>'
        )
        closing = (
            f'</summary>\n  <div class="tree-children" id="kids-{pk}">'
            f"{_children(step, selected_key)}</div>\n</details>"
        )
    else:
        opening = f'<div class="tree-row{selected}" data-row tabindex="-1">'
        closing = "</div>"
    link = _name_link(step, step.url, 'hx-target="#step-panel" hx-push-url="true"', "step-link")
    flags = "".join(
        f'<span class="badge flag" title="{_e(why)}">{_e(flag)}</span>' for flag, why in step.flags
    )
    notes = "".join(
        f'<span title="{_e(why)}">{_e(note)}</span>' if why else f"<span>{_e(note)}</span>"
        for note, why in step.notes
    )
    return (
        f"{_iteration_heading(step)}\n"
        f'<li class="tree-item{" is-failed" if step.status == "failed" else ""}'
        f'{getattr(step, "find_class", "")}" id="node-{pk}">\n'
        f"{opening}\n"
        '  <span class="toggle" aria-hidden="true"></span>\n'
        '  <span class="label">\n'
        f"    {_badge(step.status)}\n"
        f"    {link}\n"
        f"    {_step_type(step)}\n"
        f"    {_differs(step)}\n"
        f"    {flags}\n"
        f"    {_error_head(step)}\n"
        "  </span>\n"
        '  <span class="meta">\n'
        f"    {_progress(step)}\n"
        f"    {notes}\n"
        f"    {_failed_inside(step)}\n"
        f'    <span class="dur" title="{_e(step.time_title)}">'
        f"{_e(human_duration(step.duration_ms))}</span>\n"
        "  </span>\n"
        f"{_group_lines(step)}"
        f"{closing}\n"
        "</li>"
    )


@register.simple_tag
def level_groups(level, limit: int = 3) -> SafeString:
    """The level's repeated names (the run's roots: above the tree), most first."""
    groups = sorted((level.groups or {}).values(), key=lambda s: (-s.group.count, s.group.name))
    lines = "".join(group_line(summary, "group-summary level") for summary in groups[:limit])
    return mark_safe(f'<p class="level-groups">{lines}</p>' if lines else "")


def loop_note(step) -> tuple[str, str]:
    """A loop iteration's index as a row shows it: (text, explanation)."""
    return f"↻ {step.loop_index}", "loop iteration"


def sibling_label(step) -> tuple[str, str]:
    """What tells a row apart from its siblings of the same name, as the tree's row
    shows it (a timeline row's, in a line): its loop index, the input field that
    differs between them, the items that failed in it. (HTML, the same as text.)"""
    parts = []
    if step.loop_index is not None:
        text, why = loop_note(step)
        parts.append((f'<span title="{why}">{_e(text)}</span>', text))
    differs = getattr(step, "differs", None)
    if differs:
        parts.append((_differs(step), f"{differs[0]}={differs[1]}"))
    if step.items_failed:
        parts.append((_failed_items(step), f"✗ {_items(step.items_failed)}"))
    return " ".join(html for html, _ in parts), " · ".join(text for _, text in parts)


def _differs(step) -> str:
    """What tells a step apart from its siblings of the same name: an input field."""
    differs = getattr(step, "differs", None)
    if not differs:
        return ""
    field, value = _e(differs[0]), _e(differs[1])
    title = f"input field {field}: the first one whose value differs between these steps"
    return f'<span class="differs mono" title="{title}">{field}={value}</span>'


def _group_lines(step) -> str:
    """The summaries of a container's repeated children: its loop's iterations, the
    names repeated under it."""
    groups = getattr(step, "groups", None)
    if not groups:
        return ""
    return "".join(group_line(summary) for summary in groups)


def group_line(summary, css: str = "group-summary") -> str:
    """One group: how many, p50 / p95 / max with a small histogram, failures, the
    slowest (a link to it)."""
    group = summary.group
    if summary.is_loop:
        head = f"↻ {grouped(group.count)} iteration{'' if group.count == 1 else 's'}"
        what = "iterations"
    else:
        name = _e(Truncator(group.name).chars(60))
        head = f"{grouped(group.count)} × <bdi>{name}</bdi>"  # noqa: RUF001
        what = "steps"
    parts = [f'<span class="group-head">{head}</span>']
    if group.timed:
        parts.append(
            f'<span title="median, 95th percentile and longest of the {grouped(group.timed)} '
            f'{what} with a duration">p50 {_e(human_duration(group.p50_ms))} · '
            f"p95 {_e(human_duration(group.p95_ms))} · max {_e(human_duration(group.max_ms))}"
            f"</span>{_histogram(summary, what)}"
        )
    if group.failed:
        failed = f"✗ {grouped(group.failed)} failed"
        if summary.failed_url:
            url = _e(summary.failed_url)
            failed = (
                f'<a href="{url}" hx-get="{url}" hx-target="#step-panel" hx-push-url="true"'
                f' title="open the first failed">{failed}</a>'
            )
        parts.append(f'<span class="c-fail">{failed}</span>')
    if group.items_failed:
        n = group.items_failed
        parts.append(f'<span class="c-fail">✗ {grouped(n)} item{"" if n == 1 else "s"}</span>')
    if summary.slowest_url:
        url = _e(summary.slowest_url)
        if summary.is_loop:
            label = f"iteration {_e(str(group.slowest_index))}"
        else:
            name = group.slowest_name or group.slowest_key
            label = f"<bdi>{_e(Truncator(name).chars(40))}</bdi>"
        parts.append(
            f'<a class="slowest" data-slowest href="{url}" hx-get="{url}"'
            f' hx-target="#step-panel" hx-push-url="true"'
            f' title="open the slowest of these {what}">slowest: {label} ›</a>'  # noqa: RUF001
        )
    return f'<span class="{css}" data-group="{_e(group.kind)}">{" · ".join(parts)}</span>\n'


def _histogram(summary, what: str) -> str:
    group = summary.group
    if not summary.bars or group.timed < 2:
        return ""
    width = len(group.bins)
    bars = "".join(
        f'<rect x="{bar["x"]}" y="{8 - bar["height"]}" width="0.8" height="{bar["height"]}"/>'
        for bar in summary.bars
    )
    label = (
        f"durations of the {what} from {human_duration(group.min_ms)} to "
        f"{human_duration(group.max_ms)}, in {width} equal bins"
    )
    return (
        f'<svg class="group-hist" viewBox="0 0 {width} 8" preserveAspectRatio="none" role="img"'
        f' aria-label="{_e(label)}">{bars}</svg>'
    )


def _iteration_heading(step) -> str:
    if not step.group_start:
        return ""
    return (
        f'\n<li class="tree-group" id="iter-{step.pk}">'
        f"<span>iteration {_e(str(step.loop_index))}</span></li>"
    )


def _loader(step) -> str:
    if step.children_level:
        return " open"
    if step.load_url:
        return (
            f' hx-get="{_e(step.load_url)}" hx-trigger="toggle once" hx-target="#kids-{step.pk}"'
            ' hx-swap="innerHTML" hx-disinherit="hx-target hx-swap"'
        )
    return ""


def _children(step, selected_key) -> str:
    if step.children_level:
        return tree_level(step.children_level, selected_key)
    if step.expand_url:
        plural = "" if step.child_count == 1 else "s"
        return (
            f'<a class="tree-load" href="{_e(step.expand_url)}#node-{step.pk}">'
            f"show its {grouped(step.child_count)} step{plural}</a>"
        )
    return ""


def _name_link(step, url: str, attributes: str, css: str = "") -> str:
    """The step's name, a link to its panel when it has a URL."""
    name = _e(step.name or step.key)
    if not url:
        return f"<bdi>{name}</bdi>"
    url = _e(url)
    css = f'class="{css}" ' if css else ""
    return f'<a {css}data-row-link href="{url}" hx-get="{url}" {attributes}><bdi>{name}</bdi></a>'


def _step_type(step) -> str:
    if not step.type or step.type == step.name:
        return ""
    return f'<span class="step-type"><bdi>{_e(step.type)}</bdi></span>'


def _error_head(step) -> str:
    if not step.error_head:
        return ""
    quiet = "" if step.status == "failed" else " quiet"
    head = _e(Truncator(step.error_head).chars(140))
    title = "the start of this step's error"
    return f'<span class="row-error{quiet}" title="{title}">{head}</span>'


def _progress(step) -> str:
    if not step.has_progress:
        return ""
    failed = ""
    if step.items_failed:
        failed = f' <span class="c-fail">✗{grouped(step.items_failed)}</span>'
    bar = progress_html(step.items_total, step.items_succeeded, step.items_failed, label="items")
    processed, total = grouped(step.items_processed or 0), grouped(step.items_total or "?")
    return f'{bar}<span class="progress-numbers">{processed}/{total}{failed}</span>'


def _failed_inside(step) -> str:
    """What failed in a step beside its own status: its items (unless its progress
    numbers show them), or a step inside it."""
    if step.status == "failed" and (step.has_progress or not step.items_failed):
        return ""  # its badge says it failed; its progress numbers, its failed items
    if step.items_failed:
        return _failed_items(step)

    if not step.failed_subtree:
        return ""
    return '<span class="c-fail" title="a step inside this one failed">✗ inside</span>'


def _failed_items(step) -> str:
    """The items that failed in a step ("✗ 15 items"), whatever its own status."""
    if not step.items_failed:
        return ""
    items = _items(step.items_failed)
    title = "items failed in this step"
    if step.status != "failed":
        title += f", though its own status is {_e(step.status)}"
    return f'<span class="c-fail" title="{title}">✗ {items}</span>'


def _items(n: int) -> str:
    return f"{grouped(n)} item{'s' if n != 1 else ''}"


_CRITICAL_MARK = ' <span class="t-critical" title="on the critical path">◆</span>'


@register.simple_tag
def timeline_rows(rows, selected_key=None) -> SafeString:
    """The rows of a timeline window (in `_run_timeline.html`)."""
    return mark_safe("".join([_timeline_row(step, selected_key) for step in rows]))


def _timeline_row(step, selected_key) -> str:
    status, tip = _e(step.status), _e(step.tip)
    bar = ""
    if step.bar:
        # Numbers formatted by the view (run_tabs._bar): nothing in them to escape.
        bar = (
            f'<rect class="{status}" x="{step.bar["x"]}" y="0"'
            f' width="{step.bar["width"]}" height="1"/>'
        )
    url = getattr(step, "panel_url", None)
    if url is None:
        url = f"{step.url}?tab=timeline" if step.url else ""
    link = _name_link(step, url, 'hx-target="#step-panel"')
    selected = " selected" if step.key == selected_key else ""
    # On the run's critical path: marked by a class and a sign, not by colour alone.
    critical = step.critical_ms is not None
    if critical:
        selected += " critical"
        tip = f"{tip} · on the critical path"
    name = _e(step.name or step.key)
    # A step with steps inside: a toggle that hides them (timeline.js), in this window.
    fold = (
        f'<button type="button" class="t-fold" data-fold aria-expanded="true"'
        f' aria-label="Hide the steps inside {name}" title="Hide / show the steps inside">'
        "</button>"
        if step.child_count
        else '<span class="t-fold-none"></span>'
    )
    parent = getattr(step, "parent_key", None)
    parent_attr = f' data-parent="{_e(parent)}"' if parent is not None else ""
    # Repeated siblings told apart as the tree tells them; the label's title (it may be
    # cut short) and the bar's tip say it whole.
    (label, said), title = sibling_label(step), name
    if label:
        said = _e(said)
        title, tip = f"{name} · {said}", f"{tip} · {said}"
        label = f' <span class="t-sib">{label}</span>'
    return (
        f'\n    <li class="timeline-row {step.depth_class}{selected}'
        f'{getattr(step, "find_class", "")}" data-row tabindex="-1"'
        f' data-tip="{tip}" data-key="{_e(step.key)}"{parent_attr}>\n'
        f'      <span class="t-label" title="{title}">{fold}'
        f'<span class="t-icon s-{status}" aria-label="{status}">{status_icon(step.status)}'
        "</span>\n"
        f"        {link}{_CRITICAL_MARK if critical else ''}{label}</span>\n"
        '      <svg class="timeline-track" viewBox="0 0 100 1" preserveAspectRatio="none"'
        f' role="img" aria-label="{tip}">{bar}</svg>\n'
        f'      <span class="num t-dur">{human_duration(step.duration_ms)}</span>\n'
        "    </li>\n    "
    )


# --- an entity's links (entity_detail.html): 50 rows over many runs ---------------------

_LINK_VERBS = {"input": "read", "output": "written", "affected": "affected"}


@register.simple_tag
def entity_link_rows(links) -> SafeString:
    """The rows of an entity's links table: the template's markup, each value escaped
    (a row through the template engine cost ~0.35 ms: two {% url %}, two dates)."""
    rows = [_entity_link_row(link) for link in links]
    if not rows:
        return mark_safe('<tr><td colspan="4" class="empty">No links on this page.</td></tr>')
    return mark_safe("\n".join(rows))


def _entity_link_row(link) -> str:
    kind = link.link_type
    verb = _LINK_VERBS.get(kind) or f"<bdi>{_e(kind)}</bdi>"
    external = ""
    if link.external_id:
        external = f' · <bdi class="mono">{_e(Truncator(link.external_id).chars(40))}</bdi>'
    return (
        '<tr data-row tabindex="-1">'
        f'<td class="nowrap"><span class="link-verb {_e(kind)}" title="link type: {_e(kind)}">'
        f"{verb}</span>"
        f'<div class="muted">{_e(Truncator(kind).chars(30))}{external}</div></td>'
        f'<td class="name">{_step_cell(link.step)}</td>'
        f'<td class="name">{_run_cell(link.run)}</td>'
        f"{_when_cell(link.when)}</tr>"
    )


def _step_cell(step) -> str:
    href = key_url("traces:step-detail", step.run_id, step.key)
    return f'<span class="step-cell">{_badge(step.status)} {_step_link(step, href)}</span>'


def _step_link(step, href: str) -> str:
    """The step's name, a plain link to its page when it has a URL (no htmx)."""
    name = f"<bdi>{_e(step.name or step.key)}</bdi>"
    return f'<a data-row-link href="{_e(href)}">{name}</a>' if href else name


def _run_cell(run) -> str:
    href = reverse("traces:run-detail", args=[run.pk])
    status = _e(run.status)
    return (
        f'<a href="{href}"><bdi>{_e(run.name or run.external_id)}</bdi></a>'
        f'<div class="muted">{status_icon(run.status)} {status} · {_e(run.format)}</div>'
    )


def _when_cell(when, note: str = "", gap: str = "") -> str:
    if not when:
        return '<td class="nowrap" title="">—</td>'
    ago = f'<div class="muted">{since(when)}{note}</div>'
    return f'<td class="nowrap" title="{_date(when, EXACT)}">{_date(when, SECOND)}{gap}{ago}</td>'


@register.simple_tag
def entity_subject_rows(steps) -> SafeString:
    """The rows of an entity's subject steps (steps whose own subject it is): the
    template's markup, each value escaped."""
    rows = [_entity_subject_row(step) for step in steps]
    if not rows:
        return mark_safe('<tr><td colspan="5" class="empty">No steps on this page.</td></tr>')
    return mark_safe("\n".join(rows))


def _entity_subject_row(step) -> str:
    error = ""
    if step.error_head:
        error = f"<bdi>{_e(Truncator(step.error_head).chars(200))}</bdi>"
    return (
        '<tr data-row tabindex="-1">'
        f'<td class="name">{_step_cell(step)}</td>'
        f'<td class="name">{_run_cell(step.run)}</td>'
        f'<td class="error-cell">{error}</td>'
        f"{_when_cell(step.when)}"
        f'<td class="num">{human_duration(step.duration_ms)}</td></tr>'
    )


# --- the search page (search.html): the newest 20 runs and 20 steps -----------------------


@register.simple_tag
def search_run_rows(runs) -> SafeString:
    """The search's run rows: the template's markup, each value escaped."""
    return mark_safe("".join(_search_run_row(run) for run in runs))


def _search_run_row(run) -> str:
    ids = _e(run.external_id)
    kind = f"<bdi>{_e(run.type)}</bdi>" if run.type else "—"
    actor = f'<div class="muted"><bdi>{_e(run.actor)}</bdi></div>' if run.actor else ""
    started = "—"
    if run.started_at:
        started = f"{estimated_mark(run)}{_date(run.started_at, SECOND)}"
    return (
        '\n      <tr data-row tabindex="-1">\n'
        f'        <td class="status-cell">{_status(run.status, run.is_stale)}</td>\n'
        f'        <td class="name lead">{_exact(run)}<a data-row-link '
        f'href="{_e(run.get_absolute_url())}"><bdi>{_e(run.name or run.external_id)}</bdi></a>'
        f'<div class="muted mono" title="{ids}"><bdi>{_e(Truncator(run.external_id).chars(60))}'
        "</bdi></div></td>\n"
        f'        <td data-label="Format">{_e(run.format)}</td>\n'
        f'        <td class="name" data-label="Type">{kind}{actor}</td>\n'
        f'        <td class="nowrap" data-label="Started" title="{_date(run.started_at, EXACT)}">'
        f"{started}</td>\n"
        f'        <td class="muted" data-label="Matched in">{_e(run.matched_in)}</td>\n'
        "      </tr>"
    )


@register.simple_tag
def search_step_rows(steps) -> SafeString:
    """The search's step rows (each with its `url`, "" for none): the template's markup,
    each value escaped (through the template engine ~0.25 ms a row)."""
    return mark_safe("".join(_search_step_row(step) for step in steps))


def _search_step_row(step) -> str:
    name = f"<bdi>{_e(step.name or step.key)}</bdi>"
    if step.url:
        name = f'<a data-row-link href="{_e(step.url)}">{name}</a>'
    error = ""
    if step.error_head:
        head = _e(Truncator(step.error_head).chars(140))
        error = f'<div class="muted error-cell"><bdi>{head}</bdi></div>'
    run = step.run
    kind = f" · <bdi>{_e(run.type)}</bdi>" if run.type else ""
    started = _date(step.started_at, SECOND) if step.started_at else "—"
    return (
        '\n      <tr data-row tabindex="-1">\n'
        f'        <td class="status-cell">{_status(step.status)}</td>\n'
        f'        <td class="name lead">{_exact(step)}{name}<div class="muted mono" '
        f'title="{_e(step.key)}"><bdi>{_e(Truncator(step.key).chars(60))}</bdi></div>\n'
        f"          {error}</td>\n"
        f'        <td class="name" data-label="Run"><a href="{_e(run.get_absolute_url())}">'
        f"<bdi>{_e(run.name or run.external_id)}</bdi></a>"
        f'<div class="muted">{_e(run.format)}{kind}</div></td>\n'
        f'        <td class="nowrap" data-label="Started" title="{_date(step.started_at, EXACT)}">'
        f"{started}</td>\n"
        f'        <td class="muted" data-label="Matched in">{_e(step.matched_in)}</td>\n'
        "      </tr>"
    )


def _exact(found) -> str:
    return '<span class="badge flag">exact</span> ' if getattr(found, "exact", False) else ""


def _status(status: str, stale: bool = False) -> str:
    """traces/_status.html."""
    if stale:
        return (
            '<span class="badge stale" title="says running, but its source has not changed '
            f'for a while">{status_icon("stale")} stale</span>'
        )
    return _badge(status)


# --- the steps list (step_list.html): 50 rows over many runs ------------------------------


@register.simple_tag
def step_list_rows(steps) -> SafeString:
    """The rows of the steps list (failed steps across runs): the template's markup,
    each value escaped (through the template engine a row cost ~0.6 ms)."""
    rows = [_step_list_row(step) for step in steps]
    if not rows:
        empty = "No steps match these filters."
        return mark_safe(f'<tr><td colspan="7" class="empty">{empty}</td></tr>')
    return mark_safe("\n".join(rows))


def _step_list_row(step) -> str:
    href = key_url("traces:step-detail", step.run_id, step.key)
    run = step.run
    run_type = f" · <bdi>{_e(Truncator(run.type).chars(60))}</bdi>" if run.type else ""
    run_href = reverse("traces:run-detail", args=[step.run_id])
    return (
        f'<tr data-row tabindex="-1" id="step-{step.pk}">'
        f"<td>{_badge(step.status)}</td>"
        f'<td class="name step-name">{_step_link(step, href)}</td>'
        f'<td class="name muted"><bdi>{_e(step.type or "—")}</bdi></td>'
        f'<td class="name"><a href="{run_href}"><bdi>{_e(run.name or run.external_id)}</bdi></a>'
        f'<div class="muted">{_e(run.format)}{run_type}</div></td>'
        f'<td class="error-cell">{_error_cell(step, href)}</td>'
        f"{_when_cell(step.started_at or run.started_at, _run_start_note(step), ' ')}"
        f'<td class="num">{human_duration(step.duration_ms)}</td></tr>'
    )


def _run_start_note(step) -> str:
    return "" if step.started_at else " · run start"


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{status_icon(status)} {_e(status)}</span>'


def _error_cell(step, href: str) -> str:
    head, length = step.error_head or "", step.error_length or 0
    if length <= 200:
        return f"<bdi>{_e(head)}</bdi>" if head else ""
    cut = "…" if length > len(head) else ""
    whole = ""
    if cut and href:
        whole = (
            f'<a href="{_e(href)}">whole error ({intcomma(length)} characters) '
            "in the step panel ›</a>"  # noqa: RUF001
        )
    return (
        f'<details class="error-more"><summary><bdi>{_e(Truncator(head).chars(200))}</bdi>'
        f'</summary><div class="error-text"><bdi>{_e(head)}</bdi>{cut}</div>{whole}</details>'
    )


# --- the failure causes box (step_list.html): 20 causes, a sparkline of up to 48 bars each


@register.simple_tag(takes_context=True)
def cause_rows(context, spark_rows, error_group: str, spark_unit: str) -> SafeString:
    """The rows of the causes table: the template's markup, each value escaped (through
    the template engine the box cost ~0.5 ms a cause: a {% querystring %}, a loop over
    its bars, five dates). A cause's link is what {% querystring %} gives."""
    query = context.request.GET
    return mark_safe(
        "\n".join(_cause_row(row, query, error_group, spark_unit) for row in spark_rows)
    )


def _cause_row(row: dict, query, error_group: str, spark_unit: str) -> str:
    group = row["group"]
    href = _e(
        _querystring(
            query, error_group=group.text, status="failed", after=None, before=None, group=None
        )
    )
    selected = ' class="selected" aria-current="true"' if group.text == error_group else ""
    example = ""
    if group.example and group.example != group.text:
        example = (
            f'<div class="muted">e.g. <bdi>{_e(Truncator(group.example).chars(120))}</bdi></div>'
        )
    name = f"<code><bdi>{_e(group.text)}</bdi></code>"
    return (
        f"<tr{selected}>"
        f'<td class="num">{grouped(group.count)}</td>'
        f'<td class="name"><a href="{href}" hx-get="{href}">{name}</a>{example}</td>'
        f"<td>{_spark(row, group, spark_unit)}</td>"
        f"{_since_cell(group.first_seen)}{_since_cell(group.last_seen)}</tr>"
    )


def _since_cell(when) -> str:
    return f'<td class="nowrap" title="{_date(when, EXACT)}">{_e(since(when))}</td>'


def _spark(row: dict, group, spark_unit: str) -> str:
    if not row["bars"]:
        if group.first_seen and spark_unit:
            return f'<span class="muted">within one {_e(spark_unit)}</span>'
        return '<span class="muted">—</span>'
    bars = "".join(
        f'<rect x="{_e(str(bar["x"]))}" y="{_e(str(bar["y"]))}" width="0.8"'
        f' height="{_e(str(bar["height"]))}">'
        f"<title>{_date(bar['at'], MINUTE)} · {_e(str(bar['n']))}</title></rect>"
        for bar in row["bars"]
        if bar["n"]
    )
    label = (
        f"{_e(str(group.count))} failure{'' if group.count == 1 else 's'}"
        f" from {_date(group.first_seen, MINUTE)}"
        f" to {_date(group.last_seen, MINUTE)}"
    )
    return (
        f'<svg class="spark" viewBox="0 0 {_e(str(row["width"]))} 16" preserveAspectRatio="none"'
        f' role="img" aria-label="{label}">{bars}</svg>'
    )


UTC_ZONE = ZoneInfo("UTC")
# The `date` filter's formats the rows use.
EXACT = "Y-m-d H:i:s.u e"
SECOND = "Y-m-d H:i:s"
MINUTE = "Y-m-d H:i"


def _date(when, format: str) -> str:
    """What the `date` filter shows of a time in the current time zone, escaped; ""
    for None. dateformat.format() costs ~20 us a call, a row has two or three: in
    UTC (the site's default zone, which has no ambiguous times) the three formats
    are written here, in any other zone dateformat writes them."""
    if not when:
        return ""
    zone = get_current_timezone()
    if when.utcoffset() is None:
        local = when
    else:
        local = when.astimezone(zone)
        if zone is UTC_ZONE:
            return _utc_text(local, format)
    return _e(dateformat.format(local, format))


def _utc_text(moment, format: str) -> str:
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f" {moment.hour:02d}:{moment.minute:02d}"
    )
    if format == MINUTE:
        return text
    text = f"{text}:{moment.second:02d}"
    if format == SECOND:
        return text
    return f"{text}.{moment.microsecond:06d} {_e(moment.tzname() or '')}"


def _querystring(query, **changes) -> str:
    """What {% querystring %} gives for these changes to the request's query."""
    params = query.copy()
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    if not params and not query:
        return ""
    return f"?{params.urlencode()}"
