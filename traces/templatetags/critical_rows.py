"""The rows of the run page's "Critical path" tab, rendered in Python as the
timeline's are (row_html.py says why: a 300-row window through the template
engine costs more than the rest of the page). Every value that is not a number
goes through `_e`."""

from __future__ import annotations

from html import escape as _e

from django import template
from django.utils.safestring import SafeString, mark_safe

from .traces_extras import human_duration, status_icon

register = template.Library()


@register.simple_tag
def critical_rows(rows) -> SafeString:
    return mark_safe("".join([_row(row) for row in rows]))


def _row(row) -> str:
    step = row.step
    status = _e(step.status)
    url = _e(f"{row.url}?tab=critical")
    start = f"+{_e(human_duration(row.start_ms))}" if row.start_ms is not None else "—"
    return (
        f'\n      <tr class="critical-row {row.depth_class}" data-row>\n'
        f'        <td class="c-step"><span class="t-icon s-{status}" aria-label="{status}">'
        f"{_e(status_icon(step.status))}</span>\n"
        f'          <a data-row-link href="{url}" hx-get="{url}" hx-target="#step-panel"'
        f' hx-push-url="true"><bdi>{_e(step.name or step.key)}</bdi></a></td>\n'
        f'        <td class="num">{start}</td>\n'
        f'        <td class="num">{_e(human_duration(row.duration_ms))}</td>\n'
        f'        <td class="num">{_e(human_duration(row.self_ms))}</td>\n'
        '        <td class="c-share"><svg class="share-track" viewBox="0 0 100 1"'
        f' preserveAspectRatio="none" role="img" aria-label="{row.percent}% of the run">'
        f'<rect x="0" y="0" width="{row.bar}" height="1"/></svg>'
        f' <span class="num">{row.percent}%</span></td>\n'
        "      </tr>"
    )
