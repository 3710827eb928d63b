"""Formatting for trace pages: durations, statuses, JSON values, progress."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from traces.forms.common import TIME_PRESETS

register = template.Library()

STATUS_ICONS = {
    "succeeded": "✓",
    "failed": "✗",
    "running": "◐",
    "pending": "○",
    "skipped": "⤼",
    "cancelled": "⊘",
    "stale": "⚠",
    "ok": "✓",
    "error": "✗",
}


@register.filter
def human_duration(ms) -> str:
    """850ms, 8.7s, 4m 12s, 2h 5m: the runs package's own formatting."""
    if ms is None or ms == "":
        return "—"
    ms = float(ms)
    if ms < 1:
        return f"{ms:.2f}ms" if ms else "0ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


@register.filter
def seconds(value) -> str:
    """How long a job or a scan took, in seconds (milliseconds or a timedelta):
    "0.2 s", "8.7 s", "42 s", "4 min 12 s"."""
    if value is None or value == "":
        return "—"
    total = value.total_seconds() if isinstance(value, timedelta) else float(value) / 1000
    if total < 0.05:
        return "under 0.1 s"
    if total < 10:
        return f"{total:.1f} s"
    if total < 60:
        return f"{total:.0f} s"
    minutes, rest = divmod(round(total), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


# Fields of a filter form that order, page or jump: what "Filters (n)" does not count.
NOT_FILTERS = frozenset({"sort", "after", "before", "page", "seen", "jump", "tab"})


@register.simple_tag
def filter_count(form) -> int:
    """How many of a filter form's fields the request set: the n of "Filters (n)"."""
    data = getattr(form, "data", None) or {}
    values = data.getlist if hasattr(data, "getlist") else lambda name: [data.get(name)]
    count = 0
    for name, field in form.fields.items():
        # A choice's first option is its default ("contains"): choosing it filters nothing.
        choices = list(getattr(field, "choices", ()))[:1]
        default = str(choices[0][0]) if choices else ""
        given = {str(value or "").strip() for value in values(name)} - {"", default}
        count += name not in NOT_FILTERS and bool(given)
    return count


ESTIMATED_TITLE = "estimated from the file's modified time; the format records no time"


@register.simple_tag
def estimated_title() -> str:
    """Why a time is marked "≈" (ESTIMATED_TITLE), for a title or a note."""
    return ESTIMATED_TITLE


@register.simple_tag
def estimated_mark(run) -> str:
    """A "≈" with its explanation, put before a run's time or duration that is an
    estimate (Run.times_estimated); nothing for a run whose times are recorded."""
    if not run.times_estimated:
        return ""
    return format_html('<span class="estimated" title="{}">≈</span> ', ESTIMATED_TITLE)


@register.filter
def clock_ms(value: datetime | None) -> str:
    """A time of day to the millisecond, in the site's time zone: 12:00:00.042 (the
    date filter has no millisecond format)."""
    if value is None:
        return ""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"


@register.simple_tag
def time_presets() -> tuple[tuple[str, str], ...]:
    """The relative time ranges a time filter offers: (value, label)."""
    return TIME_PRESETS


@register.filter
def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "•")


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for display; strings are shown as they are."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.filter
def percent(part, whole) -> float:
    try:
        part, whole = float(part or 0), float(whole or 0)
    except (TypeError, ValueError):
        return 0.0
    if whole <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * part / whole))


@register.filter
def since(value: datetime | None) -> str:
    """'3 min ago'-style, short."""
    if value is None:
        return "—"
    seconds = (timezone.now() - value).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


@register.simple_tag
def progress_bar(total, succeeded=0, failed=0, running=0, wide=False, label=""):
    """A stacked bar (SVG, so no inline style is needed) with its numbers beside it."""
    return progress_html(total, succeeded, failed, running, wide=wide, label=label)


def progress_html(total, succeeded=0, failed=0, running=0, *, wide=False, label="") -> str:
    """progress_bar's markup, also for the rows rendered in Python (row_html.py)."""
    total = int(total or 0)
    succeeded, failed, running = int(succeeded or 0), int(failed or 0), int(running or 0)
    scale = max(total, succeeded + failed + running, 1)
    rects = []
    offset = 0.0
    for css, count in (("p-ok", succeeded), ("p-fail", failed), ("p-run", running)):
        width = 100.0 * count / scale
        if width > 0:
            rects.append(
                f'<rect class="{css}" x="{offset:.3f}" y="0" width="{width:.3f}" height="1"/>'
            )
        offset += width
    return mark_safe(
        '<span class="progress-row">\n'
        f'  <svg class="progress{" wide" if wide else ""}" viewBox="0 0 100 1"'
        ' preserveAspectRatio="none" role="img"'
        f' aria-label="{escape(label or "progress")}: {succeeded} succeeded, {failed} failed,'
        f' {running} in progress of {total}">\n'
        f"    {''.join(rects)}\n"
        "  </svg>\n"
        "</span>\n"
    )


def grouped(value) -> str:
    """What the intcomma filter shows (en-us: USE_I18N is off), for the rows rendered
    in Python: an integer's digits grouped by commas, at a fraction of its cost."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return escape(intcomma(value))
