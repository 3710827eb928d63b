"""A run's critical path (traces/critical_path.py), the twin of the run page's
"Critical path" tab: the same read model, the same windows."""

from __future__ import annotations

from ninja import Field, Query, Router, Schema

from traces import queries
from traces.forms import RunPageForm
from traces.schemas import form_query

from .common import READ_ONE, cursors, valid
from .runs import RunId, get_run

router = Router()

PathQuery = form_query("CriticalPathQuery", RunPageForm, only=("after", "before"))


class CriticalStep(Schema):
    id: int
    key: str
    name: str
    start_ms: float | None = Field(description="From the run's start.")
    duration_ms: float | None = Field(description="The step's whole duration.")
    self_ms: float = Field(
        description="Its own time on the path: not covered by a child on the path "
        "(0 when its children fill its part)."
    )
    share: float = Field(description="self_ms as a share of total_ms (0 to 1).")


class CriticalPathOut(Schema):
    run_id: int
    total_ms: float | None = Field(
        description="The path's length: the run's duration on its steps' clock; null: no path."
    )
    reason: str | None = Field(description="Why the run has no critical path (null if it has).")
    steps: list[CriticalStep] = Field(
        description="The steps on the path in run order (parents first), a window at a time."
    )
    next: str | None
    prev: str | None


@router.get(
    "/runs/{run_id}/critical-path",
    response={200: CriticalPathOut, **READ_ONE},
    tags=["runs"],
    summary="The chain of steps that determined when a run ended",
)
def critical_path(request, run_id: RunId, filters: Query[PathQuery]):
    """The run's critical path, as Jaeger computes it: from the run's end, the step
    that finished last, into its children the same way, then back to the step that
    finished before it started, and so on. Each step with its own time on the path
    (`self_ms`) and that as a share of the whole. A run whose source records no
    start times (greentic: its times are estimated) has none: `reason` says so."""
    data = valid(RunPageForm, request.GET).cleaned_data
    run = get_run(run_id)
    if run.critical_path_ms is None:
        reason = queries.critical_path.why_none(run)
        return {"run_id": run_id, "total_ms": None, "reason": reason, "steps": [], "next": None,
                "prev": None}  # fmt: skip
    page, rows = queries.critical_path.path_window(
        run, after=data["after"] or None, before=data["before"] or None
    )
    steps = [
        {
            "id": row.step.pk,
            "key": row.step.key,
            "name": row.step.name,
            "start_ms": row.start_ms,
            "duration_ms": row.duration_ms,
            "self_ms": row.self_ms,
            "share": row.share,
        }
        for row in rows
    ]
    return {"run_id": run_id, "total_ms": run.critical_path_ms, "reason": None, "steps": steps,
            **cursors(page)}  # fmt: skip
