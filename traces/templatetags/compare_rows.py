"""The rows of a comparison of two runs (compare.html), rendered in Python as
row_html.py renders the tree's: a window is 200 rows, and through the template
engine each row cost a fraction of a millisecond. Every value that is not a
number or one of our constants goes through `_e` (html.escape)."""

from __future__ import annotations

import json
from html import escape as _e

from django import template
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from traces.ingest.step_paths import label, readable
from traces.key_urls import key_url

from .traces_extras import grouped, human_duration, status_icon

register = template.Library()

CHANGE_LABELS = {
    "added": ("+ only in B", "this step is in run B, not in run A"),
    "removed": ("\N{MINUS SIGN} only in A", "this step is in run A, not in run B"),
    "status": ("status", "its status changed"),
    "same": ("", ""),
}
# Indentation classes: deeper steps are indented as the deepest of these.
MAX_DEPTH_CLASS = 8


@register.simple_tag
def compare_rows(page, a_id: int, b_id: int, first_divergence=None) -> SafeString:
    rows = [_row(row, a_id, b_id, first_divergence) for row in page.rows]
    if not rows:
        empty = "No steps here." if not page.cut_short else "No changes among these steps."
        return mark_safe(f'<tr><td colspan="5" class="empty">{empty}</td></tr>')
    return mark_safe("\n".join(rows))


def _row(row, a_id, b_id, first) -> str:
    change = row.change
    anchor = ' id="first-divergence"' if first is not None and row.path == first else ""
    depth = min(row.depth, MAX_DEPTH_CLASS)
    parts = row.parts
    own = parts[-1] if parts else {"name": "", "loop": None, "repeat": 1, "cut": False}
    ancestry = " / ".join(label(part) for part in parts[:-1])
    return (
        f'<tr class="cmp-row ch-{change}" data-row tabindex="-1"{anchor}>'
        f"<td>{_change(row)}</td>"
        f'<td class="name cmp-name d-{depth}" title="{_e(ancestry)}">{_name(own)}</td>'
        f"<td>{_side(row.a, a_id, opens=row.b is None)}</td>"
        f"<td>{_side(row.b, b_id, opens=row.b is not None)}</td>"
        f'<td class="num">{_delta(row)}</td></tr>'
    )


def _change(row) -> str:
    if row.change == "duration":
        slower = (row.delta_ms or 0) > 0
        text, why = ("slower", "took longer in B") if slower else ("faster", "took less in B")
        return f'<span class="change duration" title="{why}">{text}</span>'
    text, why = CHANGE_LABELS[row.change]
    if not text:
        return '<span class="change same" title="the same in both runs">=</span>'
    return f'<span class="change {row.change}" title="{why}">{text}</span>'


def _name(part: dict) -> str:
    loop = ""
    if part["loop"] is not None:
        loop = f'<span class="badge flag" title="loop iteration">↻ {part["loop"]}</span> '
    repeat = ""
    if part["repeat"] > 1:
        title = "the same name again among its siblings"
        repeat = f' <span class="muted" title="{title}">#{part["repeat"]}</span>'
    cut = ' <span class="muted" title="a very deep path, shortened">…</span>' if part["cut"] else ""
    return f"{loop}<bdi>{_e(part['name'] or '(no name)')}</bdi>{repeat}{cut}"


def _side(step, run_id: int, *, opens: bool = False) -> str:
    """A run's step: its status and duration, a link to it (`opens`: the one Enter
    follows on the row, B's where B has the step)."""
    if step is None:
        return '<span class="muted">—</span>'
    status = _e(step.status)
    badge = f'<span class="badge {status}">{status_icon(step.status)} {status}</span>'
    duration = _e(human_duration(step.duration_ms))
    href = key_url("traces:step-detail", run_id, step.key)
    follow = " data-row-link" if opens else ""
    shown = f'<a{follow} href="{_e(href)}">{duration}</a>' if href else duration
    items = ""
    if step.has_progress:
        processed, total = grouped(step.items_processed or 0), grouped(step.items_total or "?")
        failed = (
            f' <span class="c-fail">✗{grouped(step.items_failed)}</span>'
            if step.items_failed
            else ""
        )
        title = "items processed / total"
        items = (
            f' <span class="progress-numbers" title="{title}">{processed}/{total}{failed}</span>'
        )
    return f'<span class="cmp-side">{badge} {shown}{items}</span>'


def _delta(row) -> str:
    delta = row.delta_ms
    if delta is None:
        return ""
    sign = "+" if delta > 0 else "\N{MINUS SIGN}" if delta < 0 else "±"
    text = f"{sign}{human_duration(abs(delta))}"
    percent = row.delta_percent
    if percent is not None:
        text += f" ({sign}{abs(percent):.0f} %)"
    return _e(text)


@register.filter
def readable_path(path: str) -> str:
    """A stored step path as a person reads it (`fetch / [3] upsert #2`)."""
    return readable(path or "")


@register.filter
def counter_value(value) -> str:
    """An output counter as the run page shows it: numbers grouped, anything else as JSON."""
    if value is None:
        return "—"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return grouped(value) if isinstance(value, int) else f"{value:,}"
    return Truncator(json.dumps(value, default=str, ensure_ascii=False)).chars(80)


@register.filter
def signed(delta, kind: str = "") -> str:
    """B - A with its sign (+, minus, ±0); `kind` "duration" as a duration."""
    if delta is None:
        return ""
    if delta == 0:
        return "±0"
    sign = "+" if delta > 0 else "\N{MINUS SIGN}"
    if kind == "duration":
        return f"{sign}{human_duration(abs(delta))}"
    return f"{sign}{counter_value(abs(delta))}"
