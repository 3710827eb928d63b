"""Run types and their trends (GET /api/types, /api/types/{type}/trends)."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from .common import RunRef


class TypeItem(Schema):
    type: str = Field(alias="run_type")
    formats: list[str]
    runs: int
    counts: dict[str, int] = Field(description="Runs by status.")
    success_rate: float | None = Field(
        description="Succeeded among the runs that ended (0 to 1); null if none ended."
    )
    last_run: RunRef | None = Field(description="Its newest run (in the range, if one is given).")
    url: str = Field(description="The type's trends page.")
    trends_url: str = Field(description="Its trends in the API.")


class TypeList(Schema):
    items: list[TypeItem]


class TrendBucket(Schema):
    start: datetime
    end: datetime = Field(description="Exclusive.")
    runs: int
    counts: dict[str, int] = Field(description="Runs started in the bucket, by status.")
    success_rate: float | None
    p50_ms: float | None = Field(description="Median duration of its runs that have one.")
    p95_ms: float | None


class StepStat(Schema):
    name: str = Field(description="The step name (its first 200 characters).")
    steps: int
    failed: int
    mean_ms: float | None
    total_ms: float
    failure_rate: float


class TypeTrends(Schema):
    type: str
    bucket: str = Field(description="day or hour (UTC).")
    since: datetime | None = Field(description="The first bucket's start (null: no run).")
    until: datetime | None = Field(description="The last bucket's end, exclusive.")
    runs: int
    counts: dict[str, int]
    success_rate: float | None
    p50_ms: float | None = Field(description="Over the whole range.")
    p95_ms: float | None
    percentile_error: float = Field(
        description="Percentiles are nearest-rank, read from log-spaced bins: each is "
        "within this fraction of a run's true duration."
    )
    buckets: list[TrendBucket]
    slowest_steps: list[StepStat] = Field(description="By mean duration.")
    failing_steps: list[StepStat] = Field(description="By failures.")
