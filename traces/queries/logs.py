"""A run's log, a window at a time, and the levels it holds."""

from __future__ import annotations

from traces.models import LogEntry
from traces.pagination import Page, keyset_page

LOG_WINDOW = 200
LOG_ROW_FIELDS = (
    "id", "run_id", "step_id", "seq", "time", "level", "message", "fields", "duplicate",
    "attributes", "step__id", "step__key", "step__name",
)  # fmt: skip


def run_logs(
    run_id: int,
    *,
    level: str = "",
    step_id: int | None = None,
    duplicates: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = LOG_WINDOW,
) -> Page:
    """One window of the run's log in seq order; repeated rows only when asked."""
    logs = LogEntry.objects.filter(run_id=run_id).select_related("step").only(*LOG_ROW_FIELDS)
    if not duplicates:
        logs = logs.filter(duplicate=False)
    if level:
        logs = logs.filter(level=level)
    if step_id is not None:
        logs = logs.filter(step_id=step_id)
    return keyset_page(logs, "seq", descending=False, after=after, before=before, size=size)


def log_levels(run_id: int) -> list[str]:
    """The levels present in the run's log, for the level filter."""
    levels = LogEntry.objects.filter(run_id=run_id).order_by().values_list("level", flat=True)
    return sorted(set(levels.distinct()[:50]))
