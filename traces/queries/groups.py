"""Repeated steps of a run's tree, read from the StepGroup read model (kept at
ingest by ingest/step_groups.py): a window's container rows get their children's
summaries (a loop's iterations, the names repeated under them), and its rows that
repeat a sibling's name get what tells them apart. Each is one indexed query for
the window, whatever its size and the run's."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform

from traces.ingest.step_groups import MIN_ITERATIONS
from traces.models import Step, StepGroup

# The groups a container row shows (its loop first, then its most repeated names).
SHOWN_PER_ROW = 2
# Input fields looked up for one window (one query each); a level has one or two.
MAX_FIELDS = 3
# What a row shows of a field's value.
VALUE_CHARS = 40


def groups_of(
    run_id: int, parent_id: int | None, rows: list[Step]
) -> tuple[dict, dict, int | None]:
    """The groups under the window's rows, by row id (as shown, at most SHOWN_PER_ROW
    each), the window's own level's groups (its siblings) by name, and for the roots
    of a run with more than a window of them, how many there are."""
    containers = [step.pk for step in rows if step.child_count >= MIN_ITERATIONS]
    level = Q(parent__isnull=True) if parent_id is None else Q(parent_id=parent_id)
    found = (
        StepGroup.objects.filter(Q(parent_id__in=containers) | level, run_id=run_id)
        .select_related("slowest", "first_failed")
        .only(
            *(f.attname for f in StepGroup._meta.concrete_fields),
            "slowest__key",
            "slowest__name",
            "first_failed__key",
        )
    )
    under: dict[int, list[StepGroup]] = defaultdict(list)
    siblings: dict[str, StepGroup] = {}
    roots = None
    for group in found:
        if group.kind == StepGroup.ROOT:
            roots = group.count
        elif group.parent_id == parent_id and group.kind == StepGroup.NAME:
            siblings[group.name] = group
        if group.parent_id in containers and group.parent_id != parent_id:
            under[group.parent_id].append(group)
    for pk, groups in under.items():
        groups.sort(key=lambda g: (g.kind != StepGroup.LOOP, -g.count, g.name))
        under[pk] = groups[:SHOWN_PER_ROW]
    return dict(under), siblings, roots


def differing_values(rows: list[Step], siblings: dict[str, StepGroup]) -> dict[int, tuple]:
    """For the rows of a repeated name whose group has a field that tells its steps
    apart: (field, its value as text) by row id. One query per field."""
    by_field: dict[str, list[int]] = defaultdict(list)
    for step in rows:
        group = siblings.get(step.name)
        if group is not None and group.differs_by:
            by_field[group.differs_by].append(step.pk)
    values: dict[int, tuple] = {}
    for field in sorted(by_field)[:MAX_FIELDS]:
        found = (
            Step.objects.filter(pk__in=by_field[field])
            .annotate(value=KeyTextTransform(field, "input"))
            .values_list("pk", "value")
        )
        for pk, value in found:
            values[pk] = (field, "null" if value is None else str(value)[:VALUE_CHARS])
    return values
