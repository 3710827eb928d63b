"""Log lines across runs, newest first: those holding every word of a query,
through the full-text index of log messages (index.LOGS), or without words the
newest lines; narrowed by level, step name, format, run type and time; counted up
to COUNT_CAP.

With words, on PostgreSQL, the lines are read a bucket of ids at a time, newest
first (newest.py), the filters tested in each bucket (the level inside the index);
a filter that keeps at most SPARSE lines (a time range, the runs of a format or
type) reads those lines instead and tests the words on each, and a time range of
at most SPAN lines bounds the buckets to its lines' ids. SQLite reads FTS5's
matches newest first (its rowid order)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from traces.models import LogEntry
from traces.queries.logs import LOG_ROW_FIELDS

from .index import LOGS, fts_query, pg_phrase_match
from .newest import Among, newest_matches
from .query import COUNT_CAP, words_of

PAGE = 50


@dataclass
class LogHits:
    items: list[LogEntry]
    count: int  # up to COUNT_CAP, from `before` on; without words, the lines listed
    capped: bool  # more than COUNT_CAP; without words, more than a page
    older: int | None  # the cursor of the next (older) page


def search_logs(query: str, filters: dict, *, size: int = PAGE) -> LogHits:
    """`filters`: cleaned data of LogSearchForm (level, step, format, type, since,
    until, before); a query without words lists the newest lines."""
    words = words_of(query)
    if words:
        ids, matches = _matching_log_ids(words, filters, size + 1)
        count, capped = min(matches, COUNT_CAP), matches > COUNT_CAP
    else:
        # Without words only a page is read: a count would walk 20 times as far.
        ids = _newest_log_ids(filters, size + 1)
        count, capped = min(len(ids), size), len(ids) > size
    shown = ids[:size]
    rows = LogEntry.objects.filter(pk__in=shown).select_related("step", "run")
    by_id = {row.pk: row for row in rows.only(*LOG_ROW_FIELDS, *_RUN_FIELDS)}
    items = [by_id[pk] for pk in shown if pk in by_id]
    more = len(ids) > size
    return LogHits(items, count, capped, shown[-1] if more else None)


_RUN_FIELDS = ("run__id", "run__name", "run__external_id", "run__format", "run__type")


def _matching_log_ids(words: list[str], filters: dict, limit: int) -> tuple[list[int], int]:
    """Ids of the newest `limit` lines holding the words that pass the filters, and
    how many do: all of them when at most COUNT_CAP, else more."""
    of_runs = filters.get("type") or filters.get("format")
    join = "JOIN traces_run AS run ON run.id = line.run_id" if of_runs else ""
    step_join = "JOIN traces_step AS step ON step.id = line.step_id" if filters.get("step") else ""
    joins, table = f"{join} {step_join}", LogEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return _pg_matching_log_ids(cursor, words, filters, joins, limit)
        where, params = _filters_sql(filters)
        # FTS5 takes its table's own name, not an alias, left of MATCH.
        cursor.execute(
            f"SELECT line.id FROM {LOGS.fts} "
            f"JOIN {table} AS line ON line.id = {LOGS.fts}.rowid {joins} "
            f"WHERE {LOGS.fts} MATCH %s{where} "
            f"ORDER BY {LOGS.fts}.rowid DESC LIMIT {COUNT_CAP + 1}",
            [fts_query(words), *params],
        )
        ids = [row[0] for row in cursor.fetchall()]
        return ids[:limit], len(ids)


def _pg_matching_log_ids(
    cursor, words: list[str], filters: dict, joins: str, limit: int
) -> tuple[list[int], int]:
    runs_where, runs_params = _runs_filter(filters)
    few_runs = bool(runs_where) and _few_runs_lines(runs_where, runs_params)
    timed = None if few_runs else _time_lines(filters, SPAN)
    if few_runs or (timed is not None and timed[0] <= SPARSE):
        # At most SPARSE lines pass the filters: read through their index (log_time,
        # the runs' log_run_seq), each is tested for the words (its vector computed
        # once, ~5 µs). Materialized, so the planner cannot read the words' whole
        # posting list from the GIN index instead (a phrase, it guesses, matches one
        # row).
        where, params = _filters_sql(filters)
        match, matched = pg_phrase_match("passed.document", words)
        cursor.execute(
            f"WITH passed AS MATERIALIZED (SELECT line.id, {LOGS.pg_document('line.')} "
            f"AS document FROM {LogEntry._meta.db_table} AS line {joins} WHERE true{where}) "
            f"SELECT id FROM passed WHERE {match} ORDER BY id DESC LIMIT {COUNT_CAP + 1}",
            [*params, *matched],
        )
        ids = [row[0] for row in cursor.fetchall()]
        return ids[:limit], len(ids)
    before, after = filters.get("before"), None
    if timed is not None and timed[0] <= SPAN:
        # The time range's lines lie between these ids: the buckets outside hold none.
        lines, lowest, highest = timed
        if not lines:
            return [], 0
        before, after = min(before or highest + 1, highest + 1), lowest
    where, params = _filters_sql({**filters, "before": None})
    among = Among("line", joins, where, tuple(params), before, after)
    return newest_matches(cursor, LOGS, words, limit, COUNT_CAP, among)


def _filters_sql(filters: dict) -> tuple[str, list]:
    clauses, params = [], []
    for name, sql in (
        ("level", "line.level = %s"),
        ("step", "step.name = %s"),
        ("type", "run.type = %s"),
        ("format", "run.format = %s"),
        ("since", "line.time >= %s"),
        ("until", "line.time <= %s"),
        ("before", "line.id < %s"),
    ):
        value = filters.get(name)
        if value not in (None, ""):
            clauses.append(sql)
            params.append(_adapted(name, value))
    return "".join(f" AND {clause}" for clause in clauses), params


def _adapted(name: str, value):
    if name in ("since", "until"):
        return connection.ops.adapt_datetimefield_value(value)
    return value


# Without words: the newest lines (by id, the order they were written) that pass the
# filters. Lines are read newest first through the primary key, or the level's index,
# until a page passes; when the time range holds at most SPARSE lines (counted from
# log_time), or the runs of the format and type are at most SPARSE_RUNS runs with at most
# SPARSE lines (summed from their log_count), those lines are read through their index
# instead and sorted, so a filter that keeps few of millions of lines does not walk them
# all. PostgreSQL's planner weighs it itself with its statistics; SQLite is told which
# index to take.
SPARSE = 5000
SPARSE_RUNS = 100
# PostgreSQL, words and a time range of more lines than SPARSE: when it holds at most
# SPAN lines (their ids read from log_time, ~5 ms), the id buckets walked are those
# between its lowest and highest id.
SPAN = 100_000


def _newest_log_ids(filters: dict, limit: int) -> list[int]:
    table = LogEntry._meta.db_table
    sqlite = connection.vendor == "sqlite"
    runs_where, runs_params = _runs_filter(filters)
    driver = _sparse_driver(filters, runs_where, runs_params) if sqlite else ""
    # SQLite: `+column` keeps a clause off an index, so the walk stays in id order.
    walk = "+" if sqlite and not driver else ""
    clauses, params = [], []
    if runs_where:
        clauses.append(f"{walk}line.run_id IN (SELECT id FROM traces_run AS run {runs_where})")
        params += runs_params
    for name, sql in (
        ("level", "line.level = %s"),
        ("step", "step.name = %s"),
        ("since", f"{walk}line.time >= %s"),
        ("until", f"{walk}line.time <= %s"),
        ("before", "line.id < %s"),
    ):
        value = filters.get(name)
        if value not in (None, ""):
            clauses.append(sql)
            params.append(_adapted(name, value))
    step_join = "JOIN traces_step AS step ON step.id = line.step_id" if filters.get("step") else ""
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    indexed = f"INDEXED BY {driver}" if driver else ""
    sql = (
        f"SELECT line.id FROM {table} AS line {indexed} {step_join} {where} "
        f"ORDER BY line.id DESC LIMIT {int(limit)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _runs_filter(filters: dict) -> tuple[str, list]:
    """The WHERE of the runs of the chosen format and type ("" when neither is)."""
    clauses = [(name, filters.get(name)) for name in ("format", "type") if filters.get(name)]
    if not clauses:
        return "", []
    where = " AND ".join(f"run.{name} = %s" for name, _ in clauses)
    return f"WHERE {where}", [value for _, value in clauses]


def _sparse_driver(filters: dict, runs_where: str, runs_params: list) -> str:
    """SQLite: the index to read the lines through when a filter keeps at most
    SPARSE of them, else "" (the newest-first walk)."""
    if runs_where and _few_runs_lines(runs_where, runs_params):
        return "log_run_seq"
    timed = _time_lines(filters, SPARSE)
    if timed is not None and timed[0] <= SPARSE:
        return "log_time"
    return ""


def _few_runs_lines(runs_where: str, runs_params: list) -> bool:
    """The runs of the format and type are at most SPARSE_RUNS, with at most SPARSE
    lines (summed from their log_count)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT log_count FROM traces_run AS run {runs_where} AND log_count > 0 "
            f"LIMIT {SPARSE_RUNS + 1}",
            runs_params,
        )
        counts = [row[0] for row in cursor.fetchall()]
    return len(counts) <= SPARSE_RUNS and sum(counts) <= SPARSE


def _time_lines(filters: dict, limit: int) -> tuple[int, int | None, int | None] | None:
    """The lines of the time range (since, until), read from log_time up to `limit`
    + 1 of them: how many, their lowest and highest id; None without a time filter."""
    times = [(name, filters.get(name)) for name in ("since", "until") if filters.get(name)]
    if not times:
        return None
    where = " AND ".join(f"time {'>=' if name == 'since' else '<='} %s" for name, _ in times)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), MIN(id), MAX(id) FROM (SELECT id FROM "
            f"{LogEntry._meta.db_table} WHERE {where} LIMIT {int(limit) + 1}) AS timed",
            [_adapted(name, value) for name, value in times],
        )
        return cursor.fetchone()
