"""The API's JSON shapes: two runs compared."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import BaseModel, Field

from traces.ingest.step_paths import readable

from .common import step_url
from .runs import RunItem


class CompareSide(BaseModel):
    """A run's step at a path (a plain pydantic model, as CompareStep)."""

    id: int
    key: str
    name: str
    type: str
    status: str
    started_at: datetime | None
    duration_ms: float | None
    loop_index: int | None
    items_total: int | None
    items_processed: int | None
    items_succeeded: int | None
    items_failed: int | None
    child_count: int
    url: str | None = Field(None, description="The step's page.")


class CompareStep(BaseModel):
    """A path and its step in each run. Plain pydantic models, validated from plain
    dicts in pydantic's core: through ninja's Schema (its getter wraps every value)
    200 rows of nested fields cost more than the rest of the request."""

    path: str = Field(
        description="The names along the tree down to the step, ` / ` between them: a "
        "loop iteration's step starts with `[index]`, a name repeated among siblings ends "
        "with `#n`. The same path in both runs is the same step."
    )
    depth: int
    a: CompareSide | None = Field(description="The step in run A; null: only in B.")
    b: CompareSide | None = Field(description="The step in run B; null: only in A.")
    change: str = Field(
        description="added (only in B), removed (only in A), status (changed), "
        "duration (moved past the threshold), same."
    )
    delta_ms: float | None = Field(description="B's duration minus A's.")
    delta_percent: float | None = Field(description="delta_ms as a percentage of A's.")


class CompareSummary(Schema):
    """Counted over both whole runs."""

    a_steps: int
    b_steps: int
    matched: int = Field(description="Paths in both runs.")
    added: int
    removed: int
    status: int
    duration: int
    same: int
    first_divergence: str | None = Field(
        description="The first path (in path order) whose step differs; null: none does."
    )
    first_divergence_cursor: str | None = Field(
        description="`after=` this cursor: the window that starts at the first divergence."
    )


class CompareThreshold(Schema):
    percent: float
    ms: float


class CompareRuns(Schema):
    a: RunItem
    b: RunItem
    threshold: CompareThreshold = Field(
        description="A duration changed when it moved by at least `percent` % of A's "
        "and by at least `ms` milliseconds."
    )
    summary: CompareSummary | None = Field(
        description="Null when both runs have more than 20,000 steps: ask with `summary=1`."
    )
    steps: list[CompareStep]
    next: str | None = Field(description="Cursor for `?after=`: the next window.")
    prev: str | None = Field(description="Cursor for `?before=`: the previous window.")


def compare_steps(rows, a_id: int, b_id: int) -> list[dict]:
    return [
        {
            "path": readable(row.path),
            "depth": row.depth,
            "a": _side(row.a, a_id),
            "b": _side(row.b, b_id),
            "change": row.change,
            "delta_ms": row.delta_ms,
            "delta_percent": row.delta_percent,
        }
        for row in rows
    ]


SIDE_FIELDS = tuple(name for name in CompareSide.model_fields if name != "url")


def _side(step, run_id: int) -> dict | None:
    if step is None:
        return None
    fields = {name: getattr(step, name) for name in SIDE_FIELDS}
    return {**fields, "url": step_url(run_id, step.key)}
