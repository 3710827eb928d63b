"""Repeated steps of a run's tree, read from the StepGroup read model (kept at
ingest by ingest/step_groups.py): a window's container rows get their children's
summaries (a loop's iterations, the names repeated under them), and its rows that
repeat a sibling's name get what tells them apart. Each is one indexed query for
the window, whatever its size and the run's.

Both are plain SQL read into small records: through the ORM (a 200-id `IN`, a
select_related, model instances, a JSON key transform) they cost several times
their queries on the 100,000-step run's page."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection

from traces.ingest.step_groups import MIN_ITERATIONS, PLAIN_FIELD
from traces.models import Step, StepGroup

# The groups a container row shows (its loop first, then its most repeated names).
SHOWN_PER_ROW = 2
# Input fields looked up for one window (one query each); a level has one or two.
MAX_FIELDS = 3
# What a row shows of a field's value.
VALUE_CHARS = 40

_COLUMNS = (
    "parent_id", "kind", "name", "count", "failed", "items_failed", "timed", "min_ms",
    "p50_ms", "p95_ms", "max_ms", "bins", "slowest_id", "slowest_index", "first_failed_id",
    "differs_by",
)  # fmt: skip


@dataclass(slots=True)
class Group:
    """A StepGroup row as a tree window shows it, with its steps' keys."""

    parent_id: int | None
    kind: str
    name: str
    count: int
    failed: int
    items_failed: int
    timed: int
    min_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    bins: list
    slowest_id: int | None
    slowest_index: int | None
    first_failed_id: int | None
    differs_by: str
    slowest_key: str | None = None
    slowest_name: str | None = None
    first_failed_key: str | None = None


def groups_of(
    run_id: int, parent_id: int | None, rows: list[Step]
) -> tuple[dict[int, list[Group]], dict[str, Group], int | None]:
    """The groups under the window's rows, by row id (as shown, at most SHOWN_PER_ROW
    each), the window's own level's groups (its siblings) by name, and for the roots
    of a run with more than a window of them, how many there are."""
    under, siblings, roots = groups_of_levels(run_id, {parent_id: rows})
    return under, siblings.get(parent_id, {}), roots


def groups_of_levels(
    run_id: int, levels: dict[int | None, list[Step]], *, under_rows: bool = True
) -> tuple[dict[int, list[Group]], dict[int | None, dict[str, Group]], int | None]:
    """groups_of for several levels at once (find in run shows a few steps of many
    levels): the groups under their rows by row id, each level's own groups by its
    parent's id (None: the roots) then name, the roots' count. One query. Without
    `under_rows` (the timeline's, which shows no container's summary), only the
    levels' own groups."""
    rows = [step for level in levels.values() for step in level] if under_rows else []
    containers = {step.pk for step in rows if step.child_count >= MIN_ITERATIONS}
    parents = {pk for pk in levels if pk is not None}
    wanted = sorted(parents | containers)
    # The roots' run as a subquery's value: PostgreSQL then expects a run's average
    # share of the groups there, a few, as there are; with the run's own id it
    # multiplied the big run's share of the table by the share of roots' groups in it
    # (~600 of the 100,000-step run's 2), and read every run's groups by a parallel seq
    # scan (15-35 ms at 1 M steps, §16c). The parents' ids give a fair estimate (and
    # with the run's average, the index's range would be the run's alone).
    clauses = ["g.run_id = (SELECT %s) AND g.parent_id IS NULL"] if None in levels else []
    if wanted:
        clauses.append(f"g.run_id = %s AND g.parent_id IN ({', '.join(['%s'] * len(wanted))})")
    if not clauses:
        return {}, {}, None
    columns = ", ".join(f"g.{c}" for c in _COLUMNS)
    steps = Step._meta.db_table
    # One SELECT per kind of parent, glued by UNION ALL: each reads its range of the
    # (run, parent) index. Joined by OR, PostgreSQL may read the whole table instead
    # (a parallel seq scan of every run's groups, 76 ms at 1 M steps: §15d).
    sql = " UNION ALL ".join(
        f"SELECT {columns}, s.key, s.name, f.key FROM {StepGroup._meta.db_table} g "
        f"LEFT JOIN {steps} s ON s.id = g.slowest_id "
        f"LEFT JOIN {steps} f ON f.id = g.first_failed_id "
        f"WHERE {clause}"
        for clause in clauses
    )
    params: list = [run_id] if None in levels else []
    if wanted:
        params += [run_id, *wanted]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    under: dict[int, list[Group]] = defaultdict(list)
    siblings: dict[int | None, dict[str, Group]] = defaultdict(dict)
    roots = None
    for row in found:
        group = Group(*row)
        if isinstance(group.bins, str):
            group.bins = json.loads(group.bins)
        if group.kind == StepGroup.ROOT:
            roots = group.count
            continue
        # A step can be both a level's parent and a row of the level above.
        if group.parent_id in levels and group.kind == StepGroup.NAME:
            siblings[group.parent_id][group.name] = group
        if group.parent_id in containers:
            under[group.parent_id].append(group)
    for pk, groups in under.items():
        groups.sort(key=lambda g: (g.kind != StepGroup.LOOP, -g.count, g.name))
        under[pk] = groups[:SHOWN_PER_ROW]
    return dict(under), dict(siblings), roots


def differing_values(rows: list[Step], siblings: dict[str, Group]) -> dict[int, tuple]:
    """For the rows of a repeated name whose group has a field that tells its steps
    apart: (field, its value as text) by row id. One query per field."""
    return differing_values_of_levels([(rows, siblings)])


def differing_values_of_levels(levels: list[tuple[list[Step], dict[str, Group]]]) -> dict:
    """differing_values for several levels (each its rows and its groups by name):
    still one query per field, whatever the levels."""
    by_field: dict[str, list[int]] = defaultdict(list)
    for rows, siblings in levels:
        for step in rows:
            group = siblings.get(step.name)
            if group is not None and group.differs_by and PLAIN_FIELD.fullmatch(group.differs_by):
                by_field[group.differs_by].append(step.pk)
    values: dict[int, tuple] = {}
    for field in sorted(by_field)[:MAX_FIELDS]:
        ids = by_field[field]
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {_field_text()} FROM {Step._meta.db_table} WHERE id IN ({marks})",
                [*_field_params(field), *ids],
            )
            for pk, value in cursor.fetchall():
                values[pk] = (field, "null" if value is None else str(value)[:VALUE_CHARS])
    return values


def _field_text() -> str:
    """A top-level input field as text, as Django's KeyTextTransform reads it."""
    if connection.vendor == "postgresql":
        return "input ->> %s"
    return (
        "CASE WHEN json_type(input, %s) IN ('true', 'false', 'null') "
        "THEN json_type(input, %s) ELSE json_extract(input, %s) END"
    )


def _field_params(field: str) -> list[str]:
    if connection.vendor == "postgresql":
        return [field]
    path = f'$."{field}"'
    return [path, path, path]
