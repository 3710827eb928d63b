"""What a tree window shows of repeated steps (queries/groups.py reads them): on a
container row, its loop's iterations and its repeated children, each with p50 / p95
/ max, failures and a link to the slowest; on a row that repeats its siblings' name,
what tells it apart (the timeline's rows too: label_rows); below the window, how
many steps remain."""

from __future__ import annotations

from dataclasses import dataclass, field

from traces import queries
from traces.key_urls import key_urls
from traces.models import Step, StepGroup


@dataclass
class GroupSummary:
    """One group as a row shows it."""

    group: queries.groups.Group
    slowest_url: str = ""
    failed_url: str = ""
    bars: list[dict] = field(default_factory=list)

    @property
    def is_loop(self) -> bool:
        return self.group.kind == StepGroup.LOOP


def decorate(
    run_id: int, parent: Step | None, rows: list[Step]
) -> tuple[dict[str, GroupSummary], int | None]:
    """Sets `groups` (GroupSummary list) and `differs` ((field, value) or None) on each
    row; returns the level's own groups (its repeated names) by name, and how many
    steps the level has (None: not known)."""
    parent_id = parent.pk if parent else None
    under, siblings, roots = queries.groups.groups_of(run_id, parent_id, rows)
    differs = queries.groups.differing_values(rows, siblings)
    url_of = key_urls("traces:step-detail", run_id)
    for step in rows:
        step.groups = [summary(group, url_of) for group in under.get(step.pk, ())]
        step.differs = differs.get(step.pk)
    size = parent.child_count if parent is not None else roots
    return {name: summary(group, url_of) for name, group in siblings.items()}, size


def decorate_levels(run_id: int, levels: list) -> None:
    """decorate for several levels at once (find in run's: a few steps of many
    levels, each a TreeLevel), in one query and one per differing field: each row
    gets `groups` and `differs`, each level its repeated names."""
    shown = {(level.parent.pk if level.parent else None): level.rows for level in levels}
    under, siblings, differs = _read(run_id, shown)
    url_of = key_urls("traces:step-detail", run_id)
    for level in levels:
        own = siblings.get(level.parent.pk if level.parent else None, {})
        level.groups = {name: summary(group, url_of) for name, group in own.items()}
        for step in level.rows:
            step.groups = [summary(group, url_of) for group in under.get(step.pk, ())]
            step.differs = differs.get(step.pk)


def label_rows(run_id: int, rows: list[Step]) -> None:
    """What tells repeated siblings apart, on rows of many levels in any order (a
    timeline window's): each row gets `differs`, as a tree row does, in one query
    and one per differing field, whatever the window's size."""
    shown: dict[int | None, list[Step]] = {}
    for step in rows:
        shown.setdefault(step.parent_id, []).append(step)
    if not shown:
        return
    _under, _siblings, differs = _read(run_id, shown, under_rows=False)
    for step in rows:
        step.differs = differs.get(step.pk)


def _read(run_id: int, shown: dict, *, under_rows: bool = True) -> tuple[dict, dict, dict]:
    """The groups under the rows, each level's own, and what tells each row apart
    from its siblings of the same name, for rows by their parent's id."""
    under, siblings, _roots = queries.groups.groups_of_levels(run_id, shown, under_rows=under_rows)
    differs = queries.groups.differing_values_of_levels(
        [(rows, siblings.get(pk, {})) for pk, rows in shown.items()]
    )
    return under, siblings, differs


def summary(group, url_of) -> GroupSummary:
    top = max(group.bins or [0]) or 1
    bars = [
        {"x": index, "height": round(8 * n / top, 2), "n": n}
        for index, n in enumerate(group.bins or [])
        if n
    ]
    return GroupSummary(
        group=group,
        slowest_url=url_of(group.slowest_key) if group.slowest_key is not None else "",
        failed_url=url_of(group.first_failed_key) if group.first_failed_key is not None else "",
        bars=bars,
    )


def remaining(size: int | None, rows: list[Step]) -> int | None:
    """Siblings after the window's last row (positions run 0..n-1 under a parent)."""
    if size is None or not rows:
        return None
    return max(size - rows[-1].position - 1, 0)
