"""A run's log, a window at a time, and the levels it holds."""

from __future__ import annotations

from traces.models import LogEntry, Step
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
    step_ids: list[int] | None = None,
    text: str = "",
    duplicates: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = LOG_WINDOW,
) -> Page:
    """One window of the run's log in seq order; repeated rows only when asked;
    `step_ids` (from steps_named) keeps those steps' lines, `text` the lines whose
    message holds it (any case)."""
    logs = LogEntry.objects.filter(run_id=run_id).select_related("step").only(*LOG_ROW_FIELDS)
    if not duplicates:
        logs = logs.filter(duplicate=False)
    if level:
        logs = logs.filter(level=level)
    if step_ids is not None:
        logs = logs.filter(step_id__in=step_ids)
    if text:
        logs = logs.filter(message__icontains=text)
    return keyset_page(logs, "seq", descending=False, after=after, before=before, size=size)


def log_levels(run_id: int) -> list[str]:
    """The levels present in the run's log, for the level filter."""
    levels = LogEntry.objects.filter(run_id=run_id).order_by().values_list("level", flat=True)
    return sorted(set(levels.distinct()[:50]))


# A name repeated by more steps than this (a loop's body) keeps the first ones.
STEPS_BY_NAME = 1000


def steps_named(run_id: int, value: str) -> list[int]:
    """The run's step whose key is `value`, else its steps named `value` (a person
    picks a step by its name; a link gives its key): ids, [] when none is."""
    by_key = Step.objects.filter(run_id=run_id, key=value).values_list("pk", flat=True)
    found = list(by_key[:1])
    if not found:
        by_name = Step.objects.filter(run_id=run_id, name=value).order_by("seq")
        found = list(by_name.values_list("pk", flat=True)[:STEPS_BY_NAME])
    return found
