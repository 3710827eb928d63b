"""The run page's "Critical path" tab: the steps that determined when the run ended,
a window at a time, each with its own time on the path and its share of the run
(read from the model the store keeps: traces/queries/critical_path.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse

from traces import queries
from traces.key_urls import key_urls
from traces.models import Run


def critical_path_context(run: Run, form) -> dict:
    if run.critical_path_ms is None:
        return {"reason": queries.critical_path.why_none(run)}
    options = form.cleaned_data
    page, rows = queries.critical_path.path_window(
        run, after=options["after"] or None, before=options["before"] or None
    )
    step_url_of = key_urls("traces:step-detail", run.pk)
    for row in rows:
        row.url = step_url_of(row.step.key)
        row.percent = f"{row.share * 100:.1f}"
        # The share bar's width in % of its track, never invisible.
        row.bar = f"{max(min(row.share * 100, 100.0), 0.5):.3f}"
        row.depth_class = f"depth-{min(row.step.depth, 12)}"
    base = reverse("traces:run-detail", args=[run.pk])

    def window(cursor_name: str, cursor: str | None) -> str:
        return f"{base}?{urlencode({'tab': 'critical', cursor_name: cursor})}" if cursor else ""

    # The run's own part (gaps, its set-up) when the whole path is in this window.
    whole = not page.next_cursor and not page.prev_cursor
    outside = run.critical_path_ms - sum(row.self_ms for row in rows) if whole else None
    return {
        "rows": rows,
        "outside_ms": outside,
        "outside_percent": f"{outside / run.critical_path_ms * 100:.1f}"
        if outside is not None and run.critical_path_ms
        else "",
        "total_ms": run.critical_path_ms,
        "running": run.status == "running",
        "next_url": window("after", page.next_cursor),
        "prev_url": window("before", page.prev_cursor),
    }
