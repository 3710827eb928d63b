"""Log lines across runs, newest first: those holding every word of a query,
through the full-text index of log messages (index.LOGS), or without words the
newest lines; narrowed by level, step name, format, run type and time; counted up
to COUNT_CAP.

With words, on PostgreSQL, the lines are read a bucket of ids at a time, newest
first (newest.py), the filters tested in each bucket (the level inside the index);
a filter that keeps at most SPARSE lines (a time range, the runs of a format or
type) reads those lines instead and tests the words on each, and a wider time range
bounds the buckets to the ids its lines lie between (_id_bounds). SQLite reads FTS5's
matches newest first (its rowid order), between those ids too, the level matched
inside FTS5 (its column beside the message). On both, a step name whose steps with
lines are few, with few lines (_named_steps_with_lines), reads those lines through
their step's index and tests the words on each, wherever in id order they lie."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from traces.models import LogEntry
from traces.queries.logs import LOG_ROW_FIELDS

from .index import COARSE_BITS, FINE_BITS, LOGS, fts_key_match, fts_query, pg_phrase_match
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
    joins = "JOIN traces_run AS run ON run.id = line.run_id" if of_runs else ""
    table = LogEntry._meta.db_table
    with connection.cursor() as cursor:
        named = _named_steps_with_lines(cursor, filters["step"]) if filters.get("step") else None
        if named is not None:
            return _named_matching_log_ids(cursor, words, filters, joins, limit, named)
        if connection.vendor == "postgresql":
            return _pg_matching_log_ids(cursor, words, filters, joins, limit)
        where, params = _filters_sql(filters)
        # The ids the page's cursor and the time range bound read from FTS5 as its
        # rowids (its matches are read newest first, as far as the filters need).
        ids, bounds = _id_bounds_sql(f"{LOGS.fts}.rowid", filters)
        # The level and the step's name matched inside FTS5 too (their columns,
        # migrations 0041 and 0043): FTS5 then reads the word's matches among the
        # level's (the name's) lines, not each of a common word's 200,000 matches
        # joined to its line for its level (~300 ms at 1 M steps when none has it).
        # Their exact tests stay in `where`.
        named_match = fts_key_match(LOGS, "step_name", filters.get("step"))
        match = fts_query(words, LOGS.columns) + fts_key_match(LOGS, "level", filters.get("level"))
        matched, match_params = "%s", [match + named_match]
        if filters.get("step") and not named_match:
            # A name FTS5 may make no token of (no ASCII letter or digit): no step of
            # that name (one probe of step_name, before FTS5 reads), and the words
            # are ANDed to a phrase of no token, which FTS5 matches to no line, so
            # none of a common word's 200,000 matches is read and tested.
            matched = (
                "%s || (CASE WHEN EXISTS (SELECT 1 FROM traces_step AS named "
                "WHERE named.name = %s) THEN '' ELSE ' AND \"\"' END)"
            )
            match_params.append(filters["step"])
        # FTS5 takes its table's own name, not an alias, left of MATCH.
        cursor.execute(
            f"SELECT line.id FROM {LOGS.fts} "
            f"JOIN {table} AS line ON line.id = {LOGS.fts}.rowid {joins} "
            f"WHERE {LOGS.fts} MATCH {matched}{ids}{where} "
            f"ORDER BY {LOGS.fts}.rowid DESC LIMIT {COUNT_CAP + 1}",
            [*match_params, *bounds, *params],
        )
        ids = [row[0] for row in cursor.fetchall()]
        return ids[:limit], len(ids)


# A step name whose steps with lines are few, with at most NAMED_LINES lines: those
# lines are read through log_step_seq and the words tested on each (PostgreSQL: its
# vector computed, ~5 µs; SQLite: a probe of FTS5 by rowid, ~17 µs), instead of the
# word's lines read newest first and joined to their step until a page passes, which
# reads every line of a common word when few or none are the name's (~300 ms at 1 M
# steps on SQLite; ~1 s on PostgreSQL for `completed` and a name of 221,000 steps
# without lines). The name's steps with lines are found by a leapfrog of two indexes,
# step_name's ids of the name and log_step_seq's ids of steps with lines, each hop a
# few probes: a hop finds a step of both, or skips a stretch of the name's steps
# without lines; at most NAMED_STEPS hops (a hop ~40 µs on PostgreSQL, a recursive
# CTE's subplans; ~5 µs on SQLite: ≤ ~20 ms). Else (many of them, or interleaved with
# the name's steps without lines at more than NAMED_STEPS places) the walk, as any
# filter's.
NAMED_STEPS = 500
NAMED_LINES = 1000


def _named_steps_with_lines(cursor, name: str) -> list[int] | None:
    """Ids of the steps named `name` that have lines, when at most NAMED_STEPS hops
    find them all and they have at most NAMED_LINES lines; else None."""
    table = LogEntry._meta.db_table
    sqlite = connection.vendor == "sqlite"
    # Each hop: from `at`, a step of the name, the lowest step with lines from it on
    # (`lined`, one probe: PostgreSQL's LATERAL, else a subquery SQLite evaluates
    # again); `at` has lines if that is `at` itself (they are counted: `found`); the
    # next `at` is the name's lowest step from `lined` on, past `at`. NULL: no more.
    lowest = f"SELECT min(step_id) FROM {table} WHERE step_id >= hop.at"
    lined, edge = f"({lowest})", ""
    if not sqlite:
        lined, edge = "edge.lined", f"CROSS JOIN LATERAL ({lowest}) AS edge(lined)"
    own = (
        f"(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE step_id = hop.at "
        f"LIMIT {NAMED_LINES + 1}) AS own)"
    )
    ids = "group_concat(matched)" if sqlite else "string_agg(matched::text, ',')"
    # First the lines of the name's first NAMED_LINES + 1 steps, counted to
    # NAMED_LINES + 1: more, and the hops are not made (a common name: ~0.5 ms).
    first = (
        f"(SELECT count(*) FROM (SELECT 1 FROM (SELECT id FROM traces_step WHERE name = %s "
        f"LIMIT {NAMED_LINES + 1}) AS named JOIN {table} AS line ON line.step_id = named.id "
        f"LIMIT {NAMED_LINES + 1}) AS lines) <= {NAMED_LINES}"
    )
    start = "SELECT min(id) FROM traces_step WHERE name = %s"
    cursor.execute(
        f"WITH RECURSIVE hop(at, matched, found, hops) AS ("
        f"SELECT ({start}), CAST(NULL AS bigint), CAST(0 AS bigint), 0 "
        f"UNION ALL SELECT ({start} AND id >= {lined} + "
        f"CASE WHEN {lined} = hop.at THEN 1 ELSE 0 END), "
        f"CASE WHEN {lined} = hop.at THEN hop.at END, "
        f"hop.found + CASE WHEN {lined} = hop.at THEN {own} ELSE 0 END, hop.hops + 1 "
        f"FROM hop {edge} WHERE hop.at IS NOT NULL AND hop.hops < {NAMED_STEPS} "
        f"AND hop.found <= {NAMED_LINES}), "
        f"few(yes) AS (SELECT {first}) "
        f"SELECT CASE WHEN (SELECT yes FROM few) THEN (SELECT count(*) FROM hop WHERE at IS NULL) "
        f"ELSE 0 END, CASE WHEN (SELECT yes FROM few) THEN (SELECT max(found) FROM hop) END, "
        f"CASE WHEN (SELECT yes FROM few) THEN (SELECT {ids} FROM hop) END",
        [name, name, name],
    )
    ended, lines, found = cursor.fetchone()
    if not ended or lines > NAMED_LINES:
        return None
    return [int(pk) for pk in found.split(",")] if found else []


def _named_matching_log_ids(
    cursor, words: list[str], filters: dict, join: str, limit: int, steps: list[int]
) -> tuple[list[int], int]:
    """_matching_log_ids over the few lines of `steps`, the name's steps with lines
    (_named_steps_with_lines): read through log_step_seq, the other filters tested,
    then the words; newest first, the count to COUNT_CAP + 1."""
    if not steps:
        return [], 0
    table, sqlite = LogEntry._meta.db_table, connection.vendor == "sqlite"
    where, params = _filters_sql({**filters, "step": None})
    if not sqlite:
        # Materialized: the words tested on the lines the filters kept, never the
        # word's posting list read from the GIN index (a phrase, it guesses, is rare).
        match, matched = pg_phrase_match("passed.document", words)
        cursor.execute(
            f"WITH passed AS MATERIALIZED (SELECT line.id, {LOGS.pg_document('line.')} "
            f"AS document FROM {table} AS line {join} WHERE line.step_id = ANY(%s){where}) "
            f"SELECT id FROM passed WHERE {match} ORDER BY id DESC LIMIT {COUNT_CAP + 1}",
            [steps, *params, *matched],
        )
    else:
        # Each line that passes probes FTS5 for its rowid and the words (`=M1`),
        # the words alone: a level in the probe (a posting list of 200,000 lines)
        # cost ~2 ms a probe; the level is tested on the line (`where`).
        listed = ", ".join(["%s"] * len(steps))
        cursor.execute(
            f"SELECT line.id FROM {table} AS line INDEXED BY log_step_seq {join} "
            f"WHERE line.step_id IN ({listed}){where} AND EXISTS (SELECT 1 FROM "
            f"{LOGS.fts} WHERE {LOGS.fts} MATCH %s AND {LOGS.fts}.rowid = line.id) "
            f"ORDER BY line.id DESC LIMIT {COUNT_CAP + 1}",
            [*steps, *params, fts_query(words, LOGS.columns)],
        )
    ids = [row[0] for row in cursor.fetchall()]
    return ids[:limit], len(ids)


def _pg_matching_log_ids(
    cursor, words: list[str], filters: dict, joins: str, limit: int
) -> tuple[list[int], int]:
    runs_where, runs_params = _runs_filter(filters)
    few_runs = bool(runs_where) and _few_runs_lines(runs_where, runs_params)
    timed = None if few_runs else _time_span(filters)
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
    if timed is not None:
        # The time range's lines lie between these ids: the buckets outside hold none.
        _, lowest, highest = timed
        if highest is None or lowest is None:
            return [], 0
        before, after = min(before or highest + 1, highest + 1), lowest
    where, params = _filters_sql({**filters, "before": None}, tested=True)
    among = Among("line", joins, where, tuple(params), before, after)
    return newest_matches(cursor, LOGS, words, limit, COUNT_CAP, among)


def _filters_sql(filters: dict, tested: bool = False) -> tuple[str, list]:
    """The filters as SQL ANDed to a WHERE, and their parameters. `tested`: the time
    range is tested on each line read (`IS TRUE`: as a plain range, PostgreSQL reads
    the log_time index's bitmap of every line of the range, 200,000 at 1 M steps,
    ANDed to each id bucket's lines holding the words: ~15 ms a bucket)."""
    clauses, params = [], []
    test = "({}) IS TRUE" if tested else "{}"
    for name, sql in (
        ("level", "line.level = %s"),
        ("step", "line.step_name = %s"),
        ("type", "run.type = %s"),
        ("format", "run.format = %s"),
        ("since", test.format("line.time >= %s")),
        ("until", test.format("line.time <= %s")),
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
        # SQLite: not from step_name, the name's steps' lines all read and sorted.
        ("step", f"{walk}step.name = %s"),
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
    if timed is not None and timed <= SPARSE:
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


def _time_span(filters: dict) -> tuple[int, int | None, int | None] | None:
    """PostgreSQL, words: the lines of the time range (since, until), read from
    log_time up to SPARSE + 1 of them, how many; and ids all its lines lie between (see
    _id_bounds); None without a time filter."""
    if not (filters.get("since") or filters.get("until")):
        return None
    where, params = _time_sql(filters)
    (lowest, highest), bounds = _id_bounds(filters)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM {LogEntry._meta.db_table} "
            f"WHERE {where} LIMIT {SPARSE + 1}) AS timed), {lowest}, {highest}",
            [*params, *bounds],
        )
        return cursor.fetchone()


def _id_bounds_sql(rowid: str, filters: dict) -> tuple[str, list]:
    """SQLite: " AND ..." bounding `rowid` (SQL of a line's id) to the lines below
    the page's cursor and, in a time range, between its lines' bounds (_id_bounds)."""
    clauses, params = [], []
    if filters.get("before"):
        clauses, params = [f"{rowid} < %s"], [filters["before"]]
    if filters.get("since") or filters.get("until"):
        (lowest, highest), bounds = _id_bounds(filters)
        clauses += [f"{rowid} >= {lowest}", f"{rowid} <= {highest}"]
        params += bounds
    return "".join(f" AND {clause}" for clause in clauses), params


def _id_bounds(filters: dict) -> tuple[tuple[str, str], list]:
    """SQL of two ids the lines of the time range (since, until) lie between, and
    their parameters: the lowest id of the lines from `since` on, the highest of the
    lines up to `until` (NULL: no such line; 0 or the newest id without that end).

    Log lines are written in about time order, not exactly (a run's lines together, an
    old file ingested late), so each is found from the buckets' times: the highest
    coarse id bucket (65,536 ids) whose first time is at most `until`, then its highest
    fine bucket (1,024 ids) whose first time is, then the highest id of that fine
    bucket's lines up to `until` (the lowest from `since`, by last times). Each bucket's
    time is one probe of log_bucket_time or log_fine_time: ~70 probes at 1 M steps,
    ~130 at 10 M, and at most 1,024 index entries read."""
    table, bounds, params = LogEntry._meta.db_table, [], []
    fine = COARSE_BITS - FINE_BITS
    for name, side, default in (
        ("since", ("min", "max", ">="), "0"),
        ("until", ("max", "min", "<="), f"(SELECT max(id) FROM {table})"),
    ):
        value = filters.get(name)
        if not value:
            bounds.append(default)
            continue
        pick, _, compare = side
        every = (
            f"(SELECT min(id) FROM {table}) >> {COARSE_BITS}",
            f"number < (SELECT max(id) FROM {table}) >> {COARSE_BITS}",
        )
        coarse = _edge_bucket(side, COARSE_BITS, *every)
        within = (f"{coarse} << {fine}", f"(number + 1) >> {fine} = number >> {fine}")
        # `+ 0`: the fine bucket's lines in the range read from its index, not the
        # table's ids walked from the newest down until one is in the range.
        bounds.append(
            f"(SELECT {pick}(line.id + 0) FROM {table} AS line WHERE (line.id >> "
            f"{FINE_BITS}) = {_edge_bucket(side, FINE_BITS, *within)} "
            f"AND line.time {compare} %s)"
        )
        params += [_adapted(name, value)] * 3
    return (bounds[0], bounds[1]), params


def _edge_bucket(side: tuple[str, str, str], bits: int, start: str, more: str) -> str:
    """SQL: the highest (lowest) bucket of `bits` from `start` up while `more` holding
    a line up to (from) the time of the `%s` after it: `side` is (max, min, <=) or
    (min, max, >=), each bucket's first (last) time read from its index."""
    pick, first, compare = side
    return (
        f"(WITH RECURSIVE bucket(number) AS (SELECT {start} UNION ALL SELECT number + 1 "
        f"FROM bucket WHERE {more}) SELECT {pick}(number) FROM bucket WHERE (SELECT "
        f"{first}(edge.time) FROM {LogEntry._meta.db_table} AS edge WHERE (edge.id >> {bits}) "
        f"= bucket.number) {compare} %s)"
    )


def _time_sql(filters: dict) -> tuple[str, list]:
    times = [(name, filters.get(name)) for name in ("since", "until") if filters.get(name)]
    where = " AND ".join(f"time {'>=' if name == 'since' else '<='} %s" for name, _ in times)
    return where, [_adapted(name, value) for name, value in times]


def _time_lines(filters: dict, limit: int) -> int | None:
    """How many lines the time range (since, until) holds, read from log_time up to
    `limit` + 1 of them; None without a time filter."""
    if not (filters.get("since") or filters.get("until")):
        return None
    where, params = _time_sql(filters)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM (SELECT id FROM {LogEntry._meta.db_table} "
            f"WHERE {where} LIMIT {int(limit) + 1}) AS timed",
            params,
        )
        return cursor.fetchone()[0]
