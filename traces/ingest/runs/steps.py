"""A run's step tree: parents first, every step exactly once, whatever `parent_step_id` says."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..common import duration_between, loads_json_or_text
from ..records import StepRecord
from ..sqlite_layout import (
    BATCH,
    Snapshot,
    Table,
    as_float,
    as_int,
    as_text,
    chunks,
    column_set,
    extra_values,
    fetch_rows,
    jsonable,
    lenient_time,
    normalise_status,
    placeholders,
    select_list,
    sqlite_guard,
)
from .layout import Layout

_STEP_COLUMNS = column_set(
    "id runid parentstepid stepindex actortype actorid steptype status entitytype entityid "
    "context input output itemstotal itemsprocessed itemssucceeded itemsfailed attempt retryof "
    "maxretries error startedat completedat durationms createdat updatedat"
)


@sqlite_guard
def run_steps(snap: Snapshot, lay: Layout, run_id: Any) -> Iterator[StepRecord]:
    conn = snap.check()
    s = lay.steps
    if not s.has("run_id"):
        return
    pairs = step_skeleton(conn, s, f"{s.col('run_id')} = ?", (run_id,))
    placed = Forest(pairs, lambda parent: outside_parent(conn, s, parent)).order()
    yield from step_records(conn, s, placed)


def step_skeleton(conn: sqlite3.Connection, s: Table, where: str, params: Sequence) -> list[tuple]:
    """(id, parent_step_id) of the matching steps, siblings in their order. Only
    these two values per step are held in memory; full rows are read in batches."""
    order = f"{s.col('step_index')}, {s.col('created_at')}, {s.col('id')}"
    cursor = conn.execute(
        f"SELECT {s.col('id')}, {s.col('parent_step_id')} FROM {s.sql} "
        f"WHERE {where} ORDER BY {order}",
        tuple(params),
    )
    pairs: list[tuple] = []
    while batch := cursor.fetchmany(BATCH * 4):
        pairs.extend(batch)
    return pairs


def outside_parent(conn: sqlite3.Connection, s: Table, parent: str) -> str:
    row = conn.execute(
        f"SELECT {s.col('run_id')} FROM {s.sql} WHERE {s.col('id')} = ? LIMIT 1", (parent,)
    ).fetchone()
    if row is None:
        return f"parent step {parent} does not exist"
    if row[0] is None:
        return f"parent step {parent} is a standalone step"
    return f"parent step {parent} belongs to run {as_text(row[0])}"


@dataclass(frozen=True, slots=True)
class Placed:
    """A step's place in the yielded tree."""

    original: Any  # the id as stored, to query by
    key: str
    parent_key: str | None
    problem: str = ""
    declared_parent: str | None = None


class Forest:
    """Orders steps parents first (depth-first, siblings in their order).

    A step whose parent is missing, elsewhere, itself, or part of a
    parent_step_id cycle becomes a root with the reason in `problem`: every
    step comes out exactly once, and the walk always ends."""

    def __init__(self, pairs: list[tuple], outside: Callable[[str], str]):
        self.nodes: dict[str, tuple[Any, str | None]] = {}
        for original, parent in pairs:
            parent_key = None if parent is None or parent == "" else as_text(parent)
            self.nodes.setdefault(as_text(original), (original, parent_key))
        self.children: dict[str, list[str]] = defaultdict(list)
        self.roots: list[str] = []
        self.problems: dict[str, str] = {}
        for key, (_, parent) in self.nodes.items():
            if parent is None:
                self.roots.append(key)
            elif parent == key:
                self._break(key, "step is its own parent")
            elif parent not in self.nodes:
                self._break(key, outside(parent))
            else:
                self.children[parent].append(key)

    def _break(self, key: str, problem: str) -> None:
        self.roots.append(key)
        self.problems[key] = problem

    def order(self) -> list[Placed]:
        placed: list[Placed] = []
        visited: set[str] = set()
        for root in self.roots:
            self._walk(root, placed, visited)
        for key in self.nodes:
            if key not in visited:
                member = self._cycle_member(key)
                self.problems[member] = (
                    f"parent_step_id cycle: parent {self.nodes[member][1]} is also a descendant"
                )
                self._walk(member, placed, visited)
        return placed

    def groups(self) -> list[list[Placed]]:
        """The order split into one list per root (a root and its subtree)."""
        groups: list[list[Placed]] = []
        for item in self.order():
            if item.parent_key is None:
                groups.append([])
            groups[-1].append(item)
        return groups

    def _walk(self, root: str, placed: list[Placed], visited: set[str]) -> None:
        stack = [root]
        while stack:
            key = stack.pop()
            if key in visited:
                continue
            visited.add(key)
            original, parent = self.nodes[key]
            if key == root:
                problem = self.problems.get(key, "")
                placed.append(Placed(original, key, None, problem, parent if problem else None))
            else:
                placed.append(Placed(original, key, parent))
            stack.extend(reversed([c for c in self.children.get(key, ()) if c not in visited]))

    def _cycle_member(self, key: str) -> str:
        # Unvisited steps all have unvisited parents in the set: walking up must loop.
        seen: set[str] = set()
        while key not in seen:
            seen.add(key)
            key = self.nodes[key][1]
        return key


# A step row as read: these columns, then the table's others (`select_list`).
_STEP_ROW = (
    "id", "step_type", "status", "started_at", "completed_at", "duration_ms", "input", "output",
    "error", "attempt", "retry_of", "max_retries", "items_total", "items_processed",
    "items_succeeded", "items_failed", "entity_type", "entity_id", "actor_type", "actor_id",
    "step_index", "created_at", "updated_at", "context",
)  # fmt: skip
_OWN = len(_STEP_ROW)


def step_records(conn: sqlite3.Connection, s: Table, placed: list[Placed]) -> Iterator:
    columns, extras = select_list(s, _STEP_ROW, _STEP_COLUMNS)
    head = f"SELECT {columns} FROM {s.sql} WHERE {s.col('id')} IN "
    for chunk in chunks(placed):
        sql = head + f"({placeholders(len(chunk))})"
        rows: dict[str, tuple] = {}
        for row in fetch_rows(conn.execute(sql, [p.original for p in chunk])):
            rows.setdefault(as_text(row[0]), row)
        for item in chunk:
            row = rows.get(item.key)
            if row is not None:
                yield _step_record(extras, row, item)


def _step_record(extras: list[str], row: tuple, placed: Placed) -> StepRecord:
    (_id, step_type, status, started, completed, duration, input_, output, error, attempt,
     retry_of, max_retries, total, processed, succeeded, failed, entity_type, entity_id,
     actor_type, actor_id, step_index, created, updated, context) = row[:_OWN]  # fmt: skip
    attrs: dict[str, Any] = {
        "actor": actor_text(actor_type, actor_id),
        "actor_type": jsonable(actor_type),
        "actor_id": jsonable(actor_id),
        "step_index": jsonable(step_index),
        "created_at": jsonable(created),
        "updated_at": jsonable(updated),
    }
    context, _ = loads_json_or_text(context)
    if context is not None:
        attrs["context"] = context
    if placed.problem:
        attrs["parent_problem"] = placed.problem
        attrs["parent_step_id"] = placed.declared_parent
    if extras:
        attrs.update(extra_values(extras, row[_OWN:]))
    step_type = as_text(step_type)
    return StepRecord(
        key=placed.key,
        name=step_type,
        type=step_type,
        parent_key=placed.parent_key,
        **outcome(status, started, completed, duration, input_, output, error, attrs),
        # Numbers are integers or absent; as_int() for anything else.
        attempt=attempt if type(attempt) is int else as_int(attempt),
        retry_of=as_text(retry_of),
        max_retries=max_retries if type(max_retries) is int else as_int(max_retries),
        items_total=total if type(total) is int else as_int(total),
        items_processed=processed if type(processed) is int else as_int(processed),
        items_succeeded=succeeded if type(succeeded) is int else as_int(succeeded),
        items_failed=failed if type(failed) is int else as_int(failed),
        entity_type=as_text(entity_type),
        entity_id=as_text(entity_id),
        attributes=attrs,
    )


def actor_of(row: dict) -> str:
    return actor_text(row.get("actortype"), row.get("actorid"))


def actor_text(actor_type: Any, actor_id: Any) -> str:
    kind, ident = as_text(actor_type), as_text(actor_id)
    return f"{kind}:{ident}" if kind and ident else kind or ident


def outcome(
    status: Any,
    started: Any,
    completed: Any,
    duration: Any,
    input_: Any,
    output: Any,
    error: Any,
    attrs: dict,
) -> dict[str, Any]:
    """What a runs row and a steps row both tell, from their columns of that name,
    as record fields; unreadable times go to `attrs`."""
    started = lenient_time(started, attrs, "started_at")
    finished = lenient_time(completed, attrs, "completed_at")
    duration = as_float(duration)
    input_, input_cut = loads_json_or_text(input_)
    output, output_cut = loads_json_or_text(output)
    return {
        "status": normalise_status(status),
        "raw_status": as_text(status),
        "started_at": started,
        "finished_at": finished,
        "duration_ms": duration if duration is not None else duration_between(started, finished),
        "input": input_,
        "output": output,
        "error": as_text(error),
        "truncated": input_cut or output_cut,
    }


@sqlite_guard
def group_steps(snap: Snapshot, lay: Layout, group: list[Placed]) -> Iterator[StepRecord]:
    yield from step_records(snap.check(), lay.steps, group)
