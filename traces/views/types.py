"""Run types: the list (runs, success rate, last run per type) and one type's
trends (runs per day or hour by status, success rate, p50/p95 durations, its
slowest and most failing steps), drawn as SVG on the server: no script, no
inline style (the charts take their colours from static/traces/charts.css)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from traces import queries
from traces.forms.types import TypeListForm, TypeTrendsForm
from traces.models import Run
from traces.queries.types import STATUS_ORDER, BadRange, Trends
from traces.templatetags.traces_extras import human_duration

from .common import bad_request

WIDTH, HEIGHT = 860, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 10, 22


def type_url(run_type: str) -> str:
    """A type's page; "" for a type no URL can carry (a line break in its name)."""
    try:
        return reverse("traces:type-detail", args=[run_type]) if run_type else ""
    except NoReverseMatch:
        return ""


@require_GET
def type_list(request: HttpRequest) -> HttpResponse:
    form = TypeListForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    types = queries.types.type_list(form.cleaned_data)
    kept = _kept(request, ("format", "since", "until"))
    for row in types:
        row.url = type_url(row.run_type) + (f"?{kept}" if kept else "")
    context = {"section": "types", "form": form, "types": types}
    return render(request, "traces/types.html", context)


@require_GET
def type_detail(request: HttpRequest, run_type: str) -> HttpResponse:
    if "\x00" in run_type or not queries.types.type_exists(run_type):
        context = {"section": "types", "run_type": run_type}
        return render(request, "traces/types_missing.html", context, status=404)
    form = TypeTrendsForm(request.GET)
    if not form.is_valid():
        return bad_request(request, "Some filters are not valid.", form)
    data = form.cleaned_data
    try:
        trend = queries.types.trends(run_type, data)
    except BadRange as exc:
        return bad_request(request, str(exc), form)
    steps = queries.types.type_steps(run_type, trend, data.get("format"))
    runs_query = {"type": run_type, "format": data.get("format") or "",
                  "status": data.get("status") or ""}  # fmt: skip
    context = {
        "section": "types",
        "form": form,
        "run_type": run_type,
        "trend": trend,
        "bucket": trend.bucket,
        "charts": charts(trend, runs_query) if trend.buckets else None,
        "steps": steps,
        "steps_url": _steps_url(run_type, data.get("format")),
        "runs_url": _runs_url(runs_query, trend.start, trend.end),
        "error_percent": _error_percent(),
    }
    return render(request, "traces/types_detail.html", context)


@require_GET
def type_compare(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run page's line comparing the run's duration with its type's (loaded lazily,
    so the run page itself reads nothing more); a running run's duration so far
    (until its last write once it is stale), labelled so."""
    run = get_object_or_404(
        Run.objects.only(
            "id", "type", "format", "status", "started_at", "duration_ms", "source_updated_at"
        ),
        pk=run_id,
    )
    so_far_ms = None
    until = run.live_until
    if run.duration_ms is None and until is not None and run.started_at is not None:
        so_far_ms = max((until - run.started_at).total_seconds() * 1000, 0.0)
    comparison = queries.types.duration_comparison(run, so_far_ms)
    url = type_url(run.type)
    url = f"{url}?{urlencode({'format': run.format})}" if url else ""
    context = {
        "comparison": comparison,
        "type_url": url,
        "error_percent": _error_percent(),
        "so_far": ""
        if so_far_ms is None
        else ("until its last write" if run.is_stale else "so far"),
    }
    return render(request, "traces/types_compare.html", context)


def _error_percent() -> str:
    return f"{queries.types.PERCENTILE_ERROR * 100:.1f}"


def _kept(request: HttpRequest, names: tuple[str, ...]) -> str:
    return urlencode([(name, request.GET[name]) for name in names if request.GET.get(name)])


def _runs_url(query: dict, start, end) -> str:
    params = {name: value for name, value in query.items() if value}
    if start is not None:
        params["since"] = start.strftime("%Y-%m-%dT%H:%M")
        params["until"] = (end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    return reverse("traces:run-list") + "?" + urlencode(params)


def _steps_url(run_type: str, format: str | None) -> str:
    params = {"run_type": run_type, "name_match": "exact"}
    if format:
        params["format"] = format
    return reverse("traces:step-list") + "?" + urlencode(params)


# --- the charts ----------------------------------------------------------------------------


@dataclass
class Chart:
    """An SVG chart's geometry: every number and label computed here, so the template
    only writes elements (escaped) with classes."""

    id: str
    title: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    ticks: list[dict] = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    legend: list[dict] = field(default_factory=list)
    body: str = ""
    # Said under a chart with nothing to draw.
    empty: str = ""


def charts(trend: Trends, runs_query: dict) -> list[Chart]:
    n = len(trend.buckets)
    slot = (WIDTH - LEFT - RIGHT) / n
    fmt = "%Y-%m-%d" if trend.bucket == "day" else "%Y-%m-%d %H:00"
    names = [bucket.start.strftime(fmt) for bucket in trend.buckets]
    # The axis's labels: shorter for hours ("09-20 03h"), as many as fit.
    short = "%Y-%m-%d" if trend.bucket == "day" else "%m-%d %Hh"
    axis = [bucket.start.strftime(short) for bucket in trend.buckets]
    made = [
        _runs_chart(trend, slot, names, axis, runs_query),
        _duration_chart(trend, slot, names, axis),
        _rate_chart(trend, slot, names, axis),
    ]
    for chart in made:
        chart.body = svg_body(chart)
    return made


def svg_body(chart: Chart) -> str:
    """The chart's elements, written here rather than in the template (a few hundred
    elements: the template engine would spend more than the queries); every text is
    escaped by format_html, every number is one we computed."""
    parts = [
        format_html('<g class="grid">{}</g>', format_html_join(
            "", '<line x1="{}" x2="{}" y1="{}" y2="{}"/>',
            ((LEFT, chart.width, tick["y"], tick["y"]) for tick in chart.ticks))),
        format_html('<g class="axis">{}{}</g>', format_html_join(
            "", '<text x="{}" y="{}" class="tick-y">{}</text>',
            ((LEFT - 6, tick["y"], tick["label"]) for tick in chart.ticks)),
            format_html_join("", '<text x="{}" y="{}" class="tick-x">{}</text>',
            ((label["x"], chart.height, label["text"]) for label in chart.labels))),
    ]  # fmt: skip
    for bar in chart.bars:
        rects = format_html_join(
            "", '<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>',
            ((r["class"], bar["x"], r["y"], bar["width"], r["height"]) for r in bar["rects"]),
        )  # fmt: skip
        parts.append(
            format_html('<a href="{}" class="bar"><title>{}</title>{}</a>', bar["url"],
                        bar["title"], rects)
        )  # fmt: skip
    parts += [
        format_html('<polyline class="{}" points="{}"/>', line["class"], line["points"])
        for line in chart.lines
    ]
    parts += [
        format_html('<circle class="{}" cx="{}" cy="{}" r="3"><title>{}</title></circle>',
                    point["class"], point["x"], point["y"], point["title"])
        for point in chart.points
    ]  # fmt: skip
    return mark_safe("".join(parts))  # each part made by format_html


def _x(index: int, slot: float) -> float:
    return round(LEFT + index * slot, 2)


def _y(value: float, top: float) -> float:
    inner = HEIGHT - TOP - BOTTOM
    return round(HEIGHT - BOTTOM - (value / top * inner if top else 0), 2)


def _ticks(top: float, label, fractions=(0, 0.5, 1)) -> list[dict]:
    return [{"y": _y(top * f, top), "label": label(top * f)} for f in fractions]


def _x_labels(names: list[str], slot: float) -> list[dict]:
    every = max(1, math.ceil(len(names) / 8))
    return [
        {"x": round(_x(i, slot) + slot / 2, 2), "text": name}
        for i, name in enumerate(names)
        if i % every == 0
    ]


def _runs_chart(trend: Trends, slot: float, names, axis, runs_query: dict) -> Chart:
    most = max((bucket.runs for bucket in trend.buckets), default=0) or 1
    # Counts are whole: an even top puts a whole number at the middle tick.
    top = most + most % 2 if most > 1 else 1
    present = [s for s in STATUS_ORDER if trend.total.counts[s]]
    chart = Chart(
        "chart-runs",
        f"Runs per {trend.bucket} by status",
        f"{_count(trend.total.runs, 'run')} in {_count(len(names), trend.bucket)}, the most in one "
        f"{trend.bucket}: {most:,}. Each bar links to its runs.",
        ticks=_ticks(top, lambda v: f"{v:,.0f}", (0, 0.5, 1) if top > 1 else (0, 1)),
        labels=_x_labels(axis, slot),
        legend=[{"name": status, "class": f"bar-{status}"} for status in present],
    )
    width = round(max(slot * 0.8, 1), 2)
    for index, bucket in enumerate(trend.buckets):
        if not bucket.runs:
            continue
        base, rects = 0, []
        for status in STATUS_ORDER:
            count = bucket.counts[status]
            if not count:
                continue
            y = _y(base + count, top)
            rects.append({"class": f"bar-{status}", "y": y, "height": round(_y(base, top) - y, 2)})
            base += count
        summary = ", ".join(f"{bucket.counts[s]:,} {s}" for s in STATUS_ORDER if bucket.counts[s])
        chart.bars.append(
            {
                "x": _x(index, slot) + round(slot * 0.1, 2),
                "width": width,
                "rects": rects,
                "title": f"{names[index]}: {summary}",
                "url": _runs_url(runs_query, bucket.start, bucket.end),
            }
        )
    return chart


def _duration_chart(trend: Trends, slot: float, names, axis) -> Chart:
    series = {"p50": [b.p50_ms for b in trend.buckets], "p95": [b.p95_ms for b in trend.buckets]}
    top = max((v for values in series.values() for v in values if v is not None), default=0)
    top = top or 1
    chart = Chart(
        "chart-duration",
        f"Duration per {trend.bucket}: p50 and p95",
        f"Overall p50 {human_duration(trend.total.p50_ms)}, p95 "
        f"{human_duration(trend.total.p95_ms)}; each value within "
        f"{trend.error * 100:.1f}% (log-spaced bins).",
        ticks=_ticks(top, human_duration),
        labels=_x_labels(axis, slot),
        legend=[{"name": "p50", "class": "line-p50"}, {"name": "p95", "class": "line-p95"}],
    )
    for name, values in series.items():
        _add_series(chart, f"line-{name}", name, values, slot, names, top, human_duration)
    if trend.total.p50_ms is None:
        chart.empty = "No run in this range has a duration (a running run has none yet)."
    return chart


def _rate_chart(trend: Trends, slot: float, names, axis) -> Chart:
    values = [b.success_rate * 100 if b.success_rate is not None else None for b in trend.buckets]
    rate = trend.total.success_rate
    chart = Chart(
        "chart-rate",
        f"Success rate per {trend.bucket}",
        "Succeeded among the runs that ended: "
        + (f"{rate * 100:.1f}% overall." if rate is not None else "no run ended."),
        ticks=_ticks(100, lambda v: f"{v:.0f}%"),
        labels=_x_labels(axis, slot),
        legend=[{"name": "success rate", "class": "line-rate"}],
    )
    _add_series(chart, "line-rate", "success rate", values, slot, names, 100, _percent)
    if rate is None:
        chart.empty = "No run in this range has ended."
    return chart


def _percent(value: float) -> str:
    return f"{value:.1f}%"


def _add_series(chart, css, label, values, slot, names, top, show) -> None:
    """A line through the buckets that have a value (broken where one has none), and a
    point per value with its title."""
    segment: list[str] = []
    for index, value in enumerate([*values, None]):
        if value is None:
            if segment:
                chart.lines.append({"class": css, "points": " ".join(segment)})
            segment = []
            continue
        x, y = round(_x(index, slot) + slot / 2, 2), _y(value, top)
        segment.append(f"{x},{y}")
        chart.points.append(
            {"class": css, "x": x, "y": y, "title": f"{names[index]}: {label} {show(value)}"}
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
