"""Log lines across runs: every word of a query in the message, newest first,
narrowed by level, step name, run type and time; through the full-text index of
log messages (index.LOGS), counted up to COUNT_CAP."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from traces.models import LogEntry
from traces.queries.logs import LOG_ROW_FIELDS

from .index import LOGS, fts_query, pg_match
from .query import COUNT_CAP, words_of

PAGE = 50


@dataclass
class LogHits:
    items: list[LogEntry]
    count: int  # up to COUNT_CAP, from `before` on
    capped: bool
    older: int | None  # the cursor of the next (older) page


def search_logs(query: str, filters: dict, *, size: int = PAGE) -> LogHits:
    """`filters`: cleaned data of LogSearchForm (level, step, type, since, until, before)."""
    words = words_of(query)
    if not words:
        return LogHits([], 0, False, None)
    ids = _matching_log_ids(words, filters)
    shown = ids[:size]
    rows = LogEntry.objects.filter(pk__in=shown).select_related("step", "run")
    by_id = {row.pk: row for row in rows.only(*LOG_ROW_FIELDS, *_RUN_FIELDS)}
    items = [by_id[pk] for pk in shown if pk in by_id]
    more = len(ids) > size
    return LogHits(
        items, min(len(ids), COUNT_CAP), len(ids) > COUNT_CAP, shown[-1] if more else None
    )


_RUN_FIELDS = ("run__id", "run__name", "run__external_id", "run__format", "run__type")


def _matching_log_ids(words: list[str], filters: dict) -> list[int]:
    where, params = _filters_sql(filters)
    table, run_table = LogEntry._meta.db_table, "traces_run"
    join = f"JOIN {run_table} AS run ON run.id = line.run_id" if filters.get("type") else ""
    step_join = "JOIN traces_step AS step ON step.id = line.step_id" if filters.get("step") else ""
    limit = f"LIMIT {COUNT_CAP + 1}"
    if connection.vendor == "postgresql":
        match = pg_match(LOGS, words)
        sql = (
            f"SELECT line.id FROM {table} AS line {join} {step_join} "
            f"WHERE {match}{where} ORDER BY line.id DESC {limit}"
        )
        params = [*words, *params]
    else:
        # FTS5 takes its table's own name, not an alias, left of MATCH.
        sql = (
            f"SELECT line.id FROM {LOGS.fts} "
            f"JOIN {table} AS line ON line.id = {LOGS.fts}.rowid {join} {step_join} "
            f"WHERE {LOGS.fts} MATCH %s{where} "
            f"ORDER BY {LOGS.fts}.rowid DESC {limit}"
        )
        params = [fts_query(words), *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _filters_sql(filters: dict) -> tuple[str, list]:
    clauses, params = [], []
    for name, sql in (
        ("level", "line.level = %s"),
        ("step", "step.name = %s"),
        ("type", "run.type = %s"),
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
