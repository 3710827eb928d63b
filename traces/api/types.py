"""Run types and their trends: the twins of /types/ and /types/<type>/."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse
from ninja import Query, Router
from ninja.errors import HttpError

from traces import queries
from traces.forms.types import TypeListForm, TypeTrendsForm
from traces.queries.types import BadRange
from traces.schemas import form_query
from traces.schemas.types import TypeList, TypeTrends
from traces.views.types import type_url

from .common import READ, READ_ONE, ApiBadRequest, text_param, valid

router = Router()

TypeListQuery = form_query("TypeListQuery", TypeListForm)
TrendsQuery = form_query("TrendsQuery", TypeTrendsForm)


@router.get("/types", response={200: TypeList, **READ}, tags=["types"], summary="Run types")
def list_types(request, filters: Query[TypeListQuery]):
    """Every run type with its runs by status, success rate and newest run: all time,
    or those started in `since`..`until` (whole hours)."""
    data = valid(TypeListForm, request.GET).cleaned_data
    rows = queries.types.type_list(data)
    for row in rows:
        row.url = type_url(row.run_type)
        row.trends_url = _trends_url(row.run_type)
    return {"items": rows}


def _trends_url(run_type: str) -> str:
    try:
        return reverse("api:type_trends", args=[run_type])
    except NoReverseMatch:  # a line break in its name
        return ""


@router.get(
    "/types/{path:run_type}/trends",
    response={200: TypeTrends, **READ_ONE},
    tags=["types"],
    summary="A run type's trends: runs per day or hour by status, p50/p95 durations",
    url_name="type_trends",
)
def type_trends(request, run_type: str, filters: Query[TrendsQuery]):
    """The type's runs per bucket (`bucket=day|hour`, UTC) by status, with their success
    rate and p50/p95 durations, over `since`..`until` (whole hours; by default the 30
    days, or 48 hours, up to its last run), and its slowest and most failing steps.
    The type may contain `/`."""
    run_type = text_param("run_type", run_type)
    data = valid(TypeTrendsForm, request.GET).cleaned_data
    if not queries.types.type_exists(run_type):
        raise HttpError(404, f"No run has the type {run_type!r}.")
    try:
        trend = queries.types.trends(run_type, data)
    except BadRange as exc:
        raise ApiBadRequest(str(exc), {"since": [str(exc)]}) from None
    steps = queries.types.type_steps(run_type, trend, data.get("format"))
    total = trend.total
    return {
        "type": run_type,
        "bucket": trend.bucket,
        "since": trend.start,
        "until": trend.end,
        "runs": total.runs if total else 0,
        "counts": dict(total.counts) if total else {},
        "success_rate": total.success_rate if total else None,
        "p50_ms": total.p50_ms if total else None,
        "p95_ms": total.p95_ms if total else None,
        "percentile_error": trend.error,
        "buckets": [_bucket(b) for b in trend.buckets],
        "slowest_steps": steps["slowest"],
        "failing_steps": steps["failing"],
    }


def _bucket(bucket) -> dict:
    return {
        "start": bucket.start,
        "end": bucket.end,
        "runs": bucket.runs,
        "counts": dict(bucket.counts),
        "success_rate": bucket.success_rate,
        "p50_ms": bucket.p50_ms,
        "p95_ms": bucket.p95_ms,
    }
