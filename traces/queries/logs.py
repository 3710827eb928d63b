"""A run's log, a window at a time, the levels it holds and its step names."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, QuerySet

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
    step_ids: list[int] | QuerySet | None = None,
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


def repeated_lines(run_id: int) -> int:
    """How many of the run's lines repeat an earlier one (the rows the tab hides
    until asked): with Run.log_count, what reconciles "Logs (N)" with the rows listed."""
    return LogEntry.objects.filter(run_id=run_id, duplicate=True).count()


def steps_named(run_id: int, value: str) -> list[int] | QuerySet:
    """The run's step whose key is `value`, else every step named `value` (a person
    picks a step by its name; a link gives its key): their ids (a subquery for a
    name, however many steps have it), [] when none is."""
    by_key = Step.objects.filter(run_id=run_id, key=value).values_list("pk", flat=True)
    found = list(by_key[:1])
    if found:
        return found
    by_name = Step.objects.filter(run_id=run_id, name=value).values_list("pk", flat=True)
    return by_name if by_name.exists() else []


# The step picker suggests at most this many names, counts each name's steps up to
# STEPS_COUNTED ("1,000+"), and each name's lines only in a run of at most
# LINES_BY_NAME lines (its lines' steps are read to count them).
STEP_NAMES = 500
STEPS_COUNTED = 1000
LINES_BY_NAME = 5_000


@dataclass
class StepName:
    name: str
    steps: int  # up to STEPS_COUNTED + 1
    lines: int | None  # the lines the tab lists (repeats left out); None: not counted

    @property
    def steps_capped(self) -> bool:
        return self.steps > STEPS_COUNTED

    @property
    def steps_shown(self) -> int:
        return min(self.steps, STEPS_COUNTED)


def step_names(run_id: int, log_count: int) -> list[StepName]:
    """The run's step names for the logs tab's picker: those with log lines first
    (when counted), then the others, each by name. The names come from the (run,
    name) index one at a time (a skip scan: the 100,000-step run has 4 names), each
    counted up to STEPS_COUNTED, so the read does not grow with the run."""
    table = Step._meta.db_table
    sql = (
        f"WITH RECURSIVE names(name) AS ("
        f" SELECT MIN(name) FROM {table} WHERE run_id = %s AND name > ''"
        f" UNION ALL"
        f" SELECT (SELECT MIN(s.name) FROM {table} AS s"
        f"  WHERE s.run_id = %s AND s.name > names.name)"
        f" FROM names WHERE names.name IS NOT NULL)"
        f" SELECT name, (SELECT COUNT(*) FROM (SELECT 1 FROM {table} AS s"
        f"  WHERE s.run_id = %s AND s.name = names.name LIMIT {STEPS_COUNTED + 1}) AS capped)"
        f" FROM names WHERE name IS NOT NULL LIMIT {STEP_NAMES}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id, run_id, run_id])
        named = cursor.fetchall()
    lines: dict[str, int] | None = None
    if log_count <= LINES_BY_NAME:
        by_name = (
            LogEntry.objects.filter(run_id=run_id, duplicate=False, step__isnull=False)
            .order_by()
            .values_list("step__name")
            .annotate(lines=Count("*"))
        )
        lines = dict(by_name)
    names = [
        StepName(name, steps, None if lines is None else lines.get(name, 0))
        for name, steps in named
    ]
    return sorted(names, key=lambda each: (not each.lines, each.name))
