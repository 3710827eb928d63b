"""The entities read model (EntityCounter, EntityTypeCounter), kept by the store in
the same transaction as the links and subject steps it counts, and taken off when
runs are deleted.

What a run adds to each entity (links by type, distinct steps by link type,
subject steps, distinct runs, first and last time, greatest external id) is
gathered from its rows as the store writes them (`RunEntities`), summed over a
transaction's runs and applied once, in key order, just before it commits
(`apply_entities`, read_models.py). A run is deleted whole, so what it takes off is
one GROUP BY over its rows (`entities_of`), read through the run_id indexes before
they go, and applied with the rest.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import connection

from traces.models import EntityCounter, EntityLink, EntityTypeCounter, Run, Step

from .failure_counts import may_bound
from .upserts import earliest, latest

_COUNTERS = EntityCounter._meta.db_table
_TYPES = EntityTypeCounter._meta.db_table
_LINKS = EntityLink._meta.db_table
_STEPS = Step._meta.db_table
_RUNS = Run._meta.db_table
_KEY = "entity_type = %s AND entity_id = %s"
# The figures a contribution row carries between its key and its bounds, as
# EntityCounter names them; each is added on write and subtracted on delete.
FIGURES = (
    "links", "links_read", "links_written", "links_affected", "links_other",
    "steps_read", "steps_written", "steps_affected", "steps_other", "subjects", "runs",
)  # fmt: skip
_KNOWN_TYPES = "('input', 'output', 'affected')"
# A row that counts nothing (every figure exactly 0) goes; one a bug took below 0 (a
# run subtracted twice) stays, for a recount to see (`manage.py check_read_models`).
_NOTHING = " AND ".join(f"{name} = 0" for name in FIGURES)


def _links_by_run(where: str) -> str:
    conditions = [f"link_type = '{t}'" for t in ("input", "output", "affected")]
    conditions.append(f"link_type NOT IN {_KNOWN_TYPES}")
    links = ", ".join(
        f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END) AS {name}"
        for condition, name in zip(conditions, FIGURES[1:5], strict=True)
    )
    steps = ", ".join(
        f"COUNT(DISTINCT CASE WHEN {condition} THEN step_id END) AS {name}"
        for condition, name in zip(conditions, FIGURES[5:9], strict=True)
    )
    return (
        f"SELECT entity_type, entity_id, run_id, COUNT(*) AS links, {links}, {steps}, "
        f"0 AS subjects, "
        f"MIN(seen_at) AS first_seen, MAX(seen_at) AS last_seen, MAX(external_id) AS external_id "
        f"FROM {_LINKS} WHERE {where} GROUP BY entity_type, entity_id, run_id"
    )


def _subjects_by_run(where: str) -> str:
    zeros = ", ".join(["0"] * 9)
    return (
        f"SELECT entity_type, entity_id, run_id, {zeros}, COUNT(*), "
        f"MIN(entity_seen_at), MAX(entity_seen_at), '' "
        f"FROM {_STEPS} WHERE entity_type > '' AND {where} "
        f"GROUP BY entity_type, entity_id, run_id"
    )


def recount_sql() -> str:
    """EntityCounter's rows recounted from every link and subject step, as the store
    counts a run's (recount.py)."""
    return _contributions_sql("1 = 1")


def _contributions_sql(where: str) -> str:
    """Per entity, what the rows matching `where` (over run_id) add to EntityCounter:
    (type, id, *FIGURES, first seen, last seen, greatest external id)."""
    sums = ", ".join(f"SUM(t.{name})" for name in FIGURES[:-1])
    return (
        f"SELECT t.entity_type, t.entity_id, {sums}, COUNT(DISTINCT t.run_id), "
        f"MIN(t.first_seen), MAX(t.last_seen), MAX(t.external_id) FROM ("
        f"{_links_by_run(where)} UNION ALL {_subjects_by_run(where)}"
        f") AS t GROUP BY t.entity_type, t.entity_id"
    )


def entities_of(run_ids: list[int]) -> list[tuple]:
    """What these runs add to EntityCounter, one row per entity they reach."""
    if not run_ids:
        return []
    placeholders = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(_contributions_sql(f"run_id IN ({placeholders})"), [*run_ids, *run_ids])
        return cursor.fetchall()


_KINDS = {"input": 0, "output": 1, "affected": 2}  # any other link type: 3
_FIRST, _LAST, _EXTERNAL = len(FIGURES), len(FIGURES) + 1, len(FIGURES) + 2


class RunEntities:
    """What one run adds to the read model, gathered from its link and subject-step
    rows as they are written (the values as stored), as `entities_of` would read
    them back: per entity, its links by type, its distinct steps by link type, its
    subject steps, one run, its first and last time and its external ids."""

    __slots__ = ("entities",)

    def __init__(self):
        # (type, id) -> [links by kind (4), {(kind, step id)}, subjects, first, last, {external id}]
        self.entities: dict[tuple[str, str], list] = {}

    def link(self, entity_type, entity_id, link_type, step_id, seen_at, external_id) -> None:
        entry = self._entry(entity_type, entity_id)
        kind = _KINDS.get(link_type, 3)
        entry[kind] += 1
        entry[4].add((kind, step_id))
        self._seen(entry, seen_at)
        if external_id:
            entry[8].add(external_id)

    def subject(self, entity_type, entity_id, seen_at) -> None:
        entry = self._entry(entity_type, entity_id)
        entry[5] += 1
        self._seen(entry, seen_at)

    def _entry(self, entity_type, entity_id) -> list:
        key = (entity_type, entity_id)
        entry = self.entities.get(key)
        if entry is None:
            entry = self.entities[key] = [0, 0, 0, 0, set(), 0, None, None, set()]
        return entry

    @staticmethod
    def _seen(entry: list, seen_at) -> None:
        if seen_at is None:
            return
        if entry[6] is None or seen_at < entry[6]:
            entry[6] = seen_at
        if entry[7] is None or seen_at > entry[7]:
            entry[7] = seen_at

    def gather_into(self, pending: dict[tuple, list]) -> None:
        """Add this run to `pending` (per entity: *FIGURES, first, last, {external id}),
        which `apply_entities` writes."""
        for key, values in self.entities.items():
            read, written, affected, other, steps, subjects, first, last, external = values
            by_kind = [0, 0, 0, 0]
            for kind, _step in steps:
                by_kind[kind] += 1
            figures = (read + written + affected + other, read, written, affected, other,
                       *by_kind, subjects, 1)  # fmt: skip
            _add_entry(pending, key, [*figures, first, last, external])


def merge_entities(pending: dict[tuple, list], other: dict[tuple, list]) -> None:
    """Add gathered entities (`other`, as `gather_into` makes them) to `pending`."""
    for key, entry in other.items():
        _add_entry(pending, key, entry)


def _add_entry(pending: dict[tuple, list], key: tuple, entry: list) -> None:
    kept = pending.get(key)
    if kept is None:
        pending[key] = [*entry[:_EXTERNAL], set(entry[_EXTERNAL])]
        return
    _add_figures(kept, entry)
    kept[_EXTERNAL] |= entry[_EXTERNAL]


def _add_figures(kept: list, entry: list) -> None:
    for index in range(_FIRST):
        kept[index] += entry[index]
    first, last = entry[_FIRST], entry[_LAST]
    if first is not None:
        if kept[_FIRST] is None or first < kept[_FIRST]:
            kept[_FIRST] = first
        if kept[_LAST] is None or last > kept[_LAST]:
            kept[_LAST] = last


def remove_entities(removed: dict[tuple, list], rows: list[tuple]) -> None:
    """Gather what deleted runs took off (`entities_of`, read before their rows
    went) into `removed`: per entity, *FIGURES, first, last, greatest external id."""
    figures = len(FIGURES)
    for row in rows:
        # PostgreSQL's SUM of a bigint is a Decimal: the figures as ints, as added.
        taken = [int(value) for value in row[2 : 2 + figures]] + list(row[2 + figures :])
        merge_removed_entities(removed, {(row[0], row[1]): taken})


def merge_removed_entities(removed: dict[tuple, list], other: dict[tuple, list]) -> None:
    for key, entry in other.items():
        kept = removed.get(key)
        if kept is None:
            removed[key] = list(entry)
            continue
        _add_figures(kept, entry)
        kept[_EXTERNAL] = max(kept[_EXTERNAL] or "", entry[_EXTERNAL] or "")


def apply_entities(pending: dict[tuple, list], removed: dict | None = None) -> None:
    """Apply gathered entities (and those `removed`) to EntityCounter, then
    EntityTypeCounter: one upsert of each key's net change, rows in key order (two
    writers meet on the unique indexes in one order). The greatest external id is
    the database's to choose (its collation orders text): an entity with several
    gets one row more for each other one. Then an entity left counting nothing
    (every figure exactly 0; one below 0 stays, for a recount to see) loses its
    row, and one whose first or last time or external id may have come from the
    deleted rows gets them again from the rows left."""
    removed = removed or {}
    if not pending and not removed:
        return
    figures = ", ".join(FIGURES)
    sums = ", ".join(f"{name} = t.{name} + excluded.{name}" for name in FIGURES)
    sql = (
        f"INSERT INTO {_COUNTERS} AS t (entity_type, entity_id, {figures}, first_seen, "
        f"last_seen, external_id) VALUES ({', '.join(['%s'] * (len(FIGURES) + 5))}) "
        f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET {sums}, "
        f"first_seen = {earliest('first_seen')}, last_seen = {latest('last_seen')}, "
        f"external_id = {latest('external_id')}"
    )
    rows, none = [], (0,) * len(FIGURES)
    for key in sorted(pending.keys() | removed.keys()):
        entry = pending.get(key)
        if entry is None:
            net, bounds, external = [0] * len(FIGURES), (None, None), [""]
        else:
            net, bounds = list(entry[:_FIRST]), (entry[_FIRST], entry[_LAST])
            external = sorted(entry[_EXTERNAL]) or [""]
        if key in removed:
            net = [value - taken for value, taken in zip(net, removed[key][:_FIRST], strict=True)]
        rows.append((*key, *net, *bounds, external[0]))
        rows += [(*key, *none, None, None, other) for other in external[1:]]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement: executemany's one execution a row cost ~300 µs a row
            # of the server's (bench/RESULTS.md §16e).
            cursor.execute(_pg_upsert_sql(), [list(column) for column in zip(*rows, strict=True)])
        else:
            cursor.executemany(sql, rows)
        if removed:
            cursor.executemany(
                f"DELETE FROM {_COUNTERS} WHERE {_NOTHING} AND {_KEY}",
                sorted(removed),
            )
        for key in sorted(removed):
            _rebound(cursor, (*key, *removed[key][_FIRST:]))
    _add_to_types(rows, emptied=bool(removed))


def _pg_upsert_sql() -> str:
    """PostgreSQL: `apply_entities`' upsert of all its rows in one statement, from
    one array a column. A key's rows (one more for each other external id) are
    summed into one, as the upserts one after the other would sum them, and keys
    are taken in the rows' order (ORDINALITY): the same order of locks as before."""
    names = ["entity_type", "entity_id", *FIGURES, "first_seen", "last_seen", "external_id"]
    types = ["text", "text", *["integer"] * len(FIGURES), "timestamptz", "timestamptz", "text"]
    arrays = ", ".join(f"%s::{type_}[]" for type_ in types)
    figures = ", ".join(f"SUM({name})" for name in FIGURES)
    sums = ", ".join(f"{name} = t.{name} + excluded.{name}" for name in FIGURES)
    return (
        f"INSERT INTO {_COUNTERS} AS t ({', '.join(names)}) "
        f"SELECT entity_type, entity_id, {figures}, MIN(first_seen), MAX(last_seen), "
        f"MAX(external_id) FROM unnest({arrays}) WITH ORDINALITY AS u({', '.join(names)}, n) "
        "GROUP BY entity_type, entity_id ORDER BY MIN(n) "
        f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET {sums}, "
        f"first_seen = {earliest('first_seen')}, last_seen = {latest('last_seen')}, "
        f"external_id = {latest('external_id')}"
    )


def _add_to_types(rows: list[tuple], *, emptied: bool) -> None:
    """Add the net changes of `rows` (EntityCounter's) to EntityTypeCounter, types in
    order; `emptied`: some were taken off, and a type counting nothing more goes."""
    links_at, subjects_at = 2 + FIGURES.index("links"), 2 + FIGURES.index("subjects")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        totals[row[0]][0] += row[links_at]
        totals[row[0]][1] += row[subjects_at]
    values = [(t, links, subjects) for t, (links, subjects) in sorted(totals.items())]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {_TYPES} AS t (entity_type, links, subjects) VALUES (%s, %s, %s) "
            "ON CONFLICT (entity_type) DO UPDATE SET links = t.links + excluded.links, "
            "subjects = t.subjects + excluded.subjects",
            values,
        )
        if emptied:
            cursor.executemany(
                f"DELETE FROM {_TYPES} WHERE entity_type = %s AND links = 0 AND subjects = 0",
                [(t,) for t in sorted(totals)],
            )


def _rebound(cursor, removed: tuple) -> None:
    entity_type, entity_id = removed[:2]
    first, last, external_id = removed[-3:]
    cursor.execute(
        f"SELECT first_seen, last_seen, external_id FROM {_COUNTERS} WHERE {_KEY}",
        [entity_type, entity_id],
    )
    kept = cursor.fetchone()
    if kept is None or not _may_bound(first, last, external_id, *kept):
        return
    cursor.execute(_bounds_sql(), [entity_type, entity_id, entity_type, entity_id])
    cursor.execute(
        f"UPDATE {_COUNTERS} SET first_seen = %s, last_seen = %s, external_id = %s WHERE {_KEY}",
        [*cursor.fetchone(), entity_type, entity_id],
    )


def _bounds_sql() -> str:
    """An entity's first and last time and greatest external id, from its rows."""
    return (
        "SELECT MIN(u.seen_at), MAX(u.seen_at), COALESCE(MAX(u.external_id), '') FROM ("
        f"SELECT seen_at, external_id FROM {_LINKS} WHERE {_KEY} UNION ALL "
        f"SELECT entity_seen_at, '' FROM {_STEPS} WHERE {_KEY}) AS u"
    )


def _may_bound(first, last, external_id, kept_first, kept_last, kept_external_id) -> bool:
    """Whether deleted rows held a kept entity's first or last time or its external id."""
    # The kept figures still include the deleted rows: a bound came from them if equal.
    if external_id and external_id == kept_external_id:
        return True
    return may_bound(first, last, kept_first, kept_last)


def rebuild() -> None:
    """The read model recomputed from every link and subject step (the migration's
    backfill, and a repair): the stored times first, then the counters."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_LINKS} SET seen_at = COALESCE(created_at, "
            f"(SELECT s.started_at FROM {_STEPS} s WHERE s.id = {_LINKS}.step_id), "
            f"(SELECT r.started_at FROM {_RUNS} r WHERE r.id = {_LINKS}.run_id))"
        )
        cursor.execute(
            f"UPDATE {_STEPS} SET entity_seen_at = COALESCE(started_at, "
            f"(SELECT r.started_at FROM {_RUNS} r WHERE r.id = {_STEPS}.run_id)) "
            "WHERE entity_type <> ''"
        )
        cursor.execute(f"DELETE FROM {_COUNTERS}")
        cursor.execute(f"DELETE FROM {_TYPES}")
        figures = ", ".join(FIGURES)
        cursor.execute(
            f"INSERT INTO {_COUNTERS} (entity_type, entity_id, {figures}, first_seen, "
            f"last_seen, external_id) {_contributions_sql('1 = 1')}"
        )
        cursor.execute(
            f"INSERT INTO {_TYPES} (entity_type, links, subjects) "
            f"SELECT entity_type, SUM(links), SUM(subjects) FROM {_COUNTERS} GROUP BY entity_type"
        )
