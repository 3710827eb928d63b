"""The repeated steps read model (StepGroup), kept by the store in the same
transaction as the Step rows it summarises.

Under each parent (and among the run's roots) the children of one name, when
there are at least MIN_GROUP of them, and a loop's iterations (its children
grouped by loop index, at least MIN_ITERATIONS of them): how many, how many
failed, their failed items, p50 / p95 / max duration, a small histogram, the
slowest and the first failed, and the first input field that tells the steps
apart. The tree's container rows show it, so a loop of 40,000 iterations is one
row with its figures, read from an index.

A run's groups are its own rows (no counter shared with other runs), so they are
not moved by deltas: a run written is read back once when the transaction ends
(`StepGroups.add`, then `apply` in RunIndex.settle, one query per CHUNK runs) and
its groups inserted whole; a run rewritten or deleted loses them with its steps
(store.delete_run_children). The percentiles are exact (nearest rank), since the
whole group is at hand when it is counted.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import datetime

from django.db import connection

from traces.models import Step, StepGroup

from .inserters import copy_rows
from .type_trends import _chunk_size

MIN_GROUP = 3
MIN_ITERATIONS = 2
# A run with more roots than a tree window has a "root" row counting them (all, the
# synthetic ones too: they have positions), so the tree can say how many remain.
COUNT_ROOTS_ABOVE = 200
# The histogram's equal bins from the fastest to the slowest.
BINS = 12
# Steps of a group whose inputs are compared for the field that tells them apart.
DIFF_SAMPLE = 20
# Groups of one transaction's runs whose inputs are read, at most.
DIFF_GROUPS = 500
NAME_MAX = StepGroup._meta.get_field("name").max_length
FIELD_MAX = StepGroup._meta.get_field("differs_by").max_length
# Input fields a row's value is read back by (queries/groups.py, a JSON path).
PLAIN_FIELD = re.compile(r"[\w .:@/-]{1,200}")
# A group's figures, summed or compared, held to what the columns hold.
MAX_INT32 = 2**31 - 1
MAX_MS = 1e15

_STEPS = Step._meta.db_table
_GROUPS = StepGroup._meta.db_table
_COLUMNS = (
    "run_id", "parent_id", "kind", "name", "count", "failed", "items_failed", "timed",
    "min_ms", "p50_ms", "p95_ms", "max_ms", "bins", "slowest_id", "slowest_index",
    "first_failed_id", "differs_by",
)  # fmt: skip


class StepGroups:
    """The runs a transaction wrote, whose groups are counted when it ends."""

    def __init__(self):
        self.written: set[int] = set()

    def add(self, run_ids: list[int]) -> None:
        """These runs are counted as they stand when the transaction ends."""
        self.written.update(run_ids)

    def apply(self) -> None:
        """Count the written runs' groups and store them (their old rows go first)."""
        run_ids = sorted(self.written)
        self.written.clear()
        size = _chunk_size()
        for start in range(0, len(run_ids), size):
            chunk = run_ids[start : start + size]
            rows = gather(chunk)
            placeholders = ", ".join(["%s"] * len(chunk))
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {_GROUPS} WHERE run_id IN ({placeholders})", chunk)
                if rows:
                    _insert(cursor, rows)


def _insert(cursor, rows: list[tuple]) -> None:
    columns = ", ".join(_COLUMNS)
    if connection.vendor == "postgresql":
        copy_rows(cursor, f"COPY {_GROUPS} ({columns}) FROM STDIN", rows)
        return
    values = ", ".join(["%s"] * len(_COLUMNS))
    cursor.executemany(f"INSERT INTO {_GROUPS} ({columns}) VALUES ({values})", rows)


def _times_sql() -> str:
    """The steps' start and finish as read back: on SQLite as their text (what
    `_moment` reads when a loop's iteration needs them), not made datetimes by
    Django's converter for every step read (~5 µs a time, most never looked at)."""
    if connection.vendor == "sqlite":
        return "CAST(started_at AS TEXT), CAST(finished_at AS TEXT)"
    return "started_at, finished_at"


def gather(run_ids: list[int]) -> list[tuple]:
    """The StepGroup rows of these runs (as _COLUMNS), counted from their steps."""
    placeholders = ", ".join(["%s"] * len(run_ids))
    sql = (
        "SELECT run_id, id, parent_id, name, status, duration_ms, items_failed, loop_index, "
        f"{_times_sql()}, synthetic FROM {_STEPS} WHERE run_id IN ({placeholders})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, run_ids)
        steps = cursor.fetchall()
    steps.sort(key=lambda row: row[1])  # by id: the source's order
    loop_index_of = {row[1]: row[7] for row in steps}
    by_name: dict[tuple, list] = defaultdict(list)
    indexed: dict[tuple, list] = defaultdict(list)
    roots: dict[int, int] = defaultdict(int)
    for row in steps:
        run_id, _id, parent_id, name, *_, loop_index, _start, _finish, synthetic = row
        if parent_id is None:
            roots[run_id] += 1
        if synthetic:
            continue
        by_name[(run_id, parent_id, name[:NAME_MAX])].append(row)
        if loop_index is not None:
            indexed[(run_id, parent_id)].append(row)
    rows: list[list] = [
        [run_id, None, StepGroup.ROOT, "", n, 0, 0, 0, None, None, None, None, "[]", None,
         None, None, ""]
        for run_id, n in roots.items()
        if n > COUNT_ROOTS_ABOVE
    ]  # fmt: skip
    to_compare: list[tuple[list, list]] = []
    for (run_id, parent_id, name), members in by_name.items():
        if len(members) < MIN_GROUP:
            continue
        row = _name_row(run_id, parent_id, name, members)
        rows.append(row)
        if len({m[7] for m in members}) <= 1 and len(to_compare) < DIFF_GROUPS:
            to_compare.append((row, [m[1] for m in members[:DIFF_SAMPLE]]))
    for (run_id, parent_id), members in indexed.items():
        # Children that merely inherit their parent's index are one iteration's steps.
        inherited = parent_id is not None and all(
            m[7] == loop_index_of.get(parent_id) for m in members
        )
        if not inherited:
            row = _loop_row(run_id, parent_id, members)
            if row is not None:
                rows.append(row)
    _find_differences(to_compare)
    return [tuple(row) for row in rows]


def _name_row(run_id: int, parent_id: int | None, name: str, members: list) -> list:
    failed = [m for m in members if m[4] == "failed" or _items(m[6])]
    durations = [(_ms(m[5]), m[1], m[7]) for m in members if _ms(m[5]) is not None]
    return _row(run_id, parent_id, StepGroup.NAME, name, len(members), failed, members, durations)


def _loop_row(run_id: int, parent_id: int | None, members: list) -> list | None:
    """The iterations under a parent: its children by loop index."""
    iterations: dict[int, list] = defaultdict(list)
    for m in members:
        iterations[m[7]].append(m)
    if len(iterations) < MIN_ITERATIONS:
        return None
    failed, durations = [], []
    for loop_index, steps in sorted(iterations.items()):
        first = steps[0]
        if any(m[4] == "failed" or _items(m[6]) for m in steps):
            failed.append(next(m for m in steps if m[4] == "failed" or _items(m[6])))
        took = _iteration_ms(steps)
        if took is not None:
            durations.append((took, first[1], loop_index))
    return _row(run_id, parent_id, StepGroup.LOOP, "", len(iterations), failed, members, durations)


def _row(run_id, parent_id, kind, name, count, failed, members, durations) -> list:
    """A group's row: its counts, and its durations' figures and slowest."""
    items_failed = min(sum(_items(m[6]) for m in members), 2**63 - 1)
    ordered = sorted(d[0] for d in durations)
    slowest = max(durations, key=lambda d: d[0], default=None)
    low, high = (ordered[0], ordered[-1]) if ordered else (None, None)
    return [
        run_id, parent_id, kind, name, min(count, MAX_INT32), min(len(failed), MAX_INT32),
        items_failed, min(len(ordered), MAX_INT32), low, percentile(ordered, 0.5),
        percentile(ordered, 0.95), high, _json_bins(histogram(ordered)),
        slowest[1] if slowest else None, slowest[2] if slowest else None,
        failed[0][1] if failed else None, "",
    ]  # fmt: skip


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values: the value at rank ceil(q·n)."""
    if not ordered:
        return None
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def histogram(ordered: list[float]) -> list[int]:
    """Counts of the sorted values in BINS equal bins from the first to the last."""
    if not ordered:
        return []
    low, high = ordered[0], ordered[-1]
    counts = [0] * BINS
    width = (high - low) / BINS
    for value in ordered:
        index = int((value - low) / width) if width > 0 else 0
        counts[min(index, BINS - 1)] += 1
    return counts


def _json_bins(counts: list[int]) -> str:
    return "[" + ",".join(str(n) for n in counts) + "]"


def _ms(value) -> float | None:
    if value is None or math.isnan(value):
        return None
    return min(max(float(value), 0.0), MAX_MS)


def _items(value) -> int:
    return value if type(value) is int and value > 0 else 0


def _iteration_ms(steps: list) -> float | None:
    """An iteration's time: from its first start to its last finish, else the sum of
    its steps' durations."""
    starts = [t for t in (_moment(m[8]) for m in steps) if t is not None]
    finishes = [t for t in (_moment(m[9]) for m in steps) if t is not None]
    if starts and finishes and max(finishes) >= min(starts):
        return _ms((max(finishes) - min(starts)).total_seconds() * 1000)
    known = [_ms(m[5]) for m in steps if _ms(m[5]) is not None]
    return sum(known) if known else None


def _moment(value) -> datetime | None:
    # A raw SQLite cursor may give a time as text.
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _find_differences(groups: list[tuple[list, list]]) -> None:
    """Each group's first input field (in its first step's order) whose value is not
    the same in all of its first DIFF_SAMPLE steps: one query for them all."""
    ids = [step_id for _row, sample in groups for step_id in sample]
    if not ids:
        return
    inputs: dict[int, object] = {}
    size = _chunk_size()
    field = Step._meta.get_field("input")
    with connection.cursor() as cursor:
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT id, input FROM {_STEPS} WHERE id IN ({placeholders})", chunk)
            for step_id, value in cursor.fetchall():
                inputs[step_id] = field.from_db_value(value, None, connection)
    for row, sample in groups:
        row[-1] = differing_field([inputs.get(step_id) for step_id in sample])


def differing_field(values: list) -> str:
    """The first key of the first dict whose value is not the same in every dict (of
    the keys a JSON path reads back the same on every database: PLAIN_FIELD)."""
    dicts = [v for v in values if isinstance(v, dict)]
    if len(dicts) < 2 or len(dicts) < len(values):
        return ""
    missing = object()
    for key in dicts[0]:
        if not PLAIN_FIELD.fullmatch(key):
            continue
        first = dicts[0][key]
        if any(d.get(key, missing) != first for d in dicts[1:]):
            return str(key)[:FIELD_MAX]
    return ""


def rebuild() -> None:
    """Count every stored run again (the migration that adds the read model)."""
    from traces.models import Run

    StepGroup.objects.all().delete()
    run_ids = list(Run.objects.order_by("pk").values_list("pk", flat=True))
    groups = StepGroups()
    for start in range(0, len(run_ids), 50):
        groups.add(run_ids[start : start + 50])
        groups.apply()
