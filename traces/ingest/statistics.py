"""PostgreSQL's planner statistics after a large ingest.

A database built by one big ingest (a first import, a new source of thousands of
files) has the statistics of its empty tables: autovacuum catches up only minutes
later, and until then PostgreSQL plans a run of 100,000 steps as a run of a few.
So an ingest that wrote many rows ANALYZEs the trace tables once, at its end
(never per file): those it grew by GROWTH of the rows their statistics counted
(PostgreSQL's own autovacuum_analyze_scale_factor), or that have none yet. Its
ANALYZE samples 30,000 rows a table whatever their number (0.2-0.9 s), so a store
of 1 M steps given 20,000 more keeps its statistics, as autovacuum would keep them:
a new run's steps are then counted as an average run's until enough rows came (a
new run is no value of the statistics' most common ones, analyzed or not, unless it
is a large share of its table). The JSON columns are left out of it (pg_storage).

Not SQLite: its plans without statistics are the ones the pages are built for.
With them (bench_pages.py --quick --analyze) it judges the (entity_type, entity_id)
index by its average, which one entity that is the subject of every root step
ruins, and counts an entity's subject steps by scanning every run (0.3 ms -> 260 ms).
"""

from __future__ import annotations

from django.db import connection

from traces.models import Call, EntityLink, FailureCause, FailureSlice, LogEntry, Run, Step

from .report import IngestReport

# Rows written by one ingest (runs, steps, calls, links, log rows) from which its
# end refreshes the statistics: a small rescan costs no ANALYZE.
ANALYZE_AFTER_ROWS = 10_000
# A table is analyzed when the ingest wrote at least this share of the rows its
# statistics counted (pg_class.reltuples).
GROWTH = 0.1
# The report's counts and the tables they were written to; the failures' read models
# follow the steps.
COUNTED = {"runs": Run, "steps": Step, "calls": Call, "links": EntityLink, "logs": LogEntry}
FOLLOW_STEPS = (FailureCause, FailureSlice)


def rows_written(report: IngestReport) -> int:
    return sum(sum(result.counts.values()) for result in report.files)


def written_by_table(report: IngestReport) -> dict[str, int]:
    return {
        model._meta.db_table: sum(result.counts[name] for result in report.files)
        for name, model in COUNTED.items()
    }


def tables_to_analyze(report: IngestReport) -> list[str]:
    """The trace tables the ingest of `report` grew enough for their statistics to be
    taken again (none if it wrote fewer than ANALYZE_AFTER_ROWS rows)."""
    if rows_written(report) < ANALYZE_AFTER_ROWS:
        return []
    written = {table: rows for table, rows in written_by_table(report).items() if rows}
    counted = counted_rows(list(written))
    chosen = [table for table, rows in written.items() if rows >= GROWTH * counted[table]]
    if Step._meta.db_table in chosen:
        chosen += [model._meta.db_table for model in FOLLOW_STEPS]
    return chosen


def counted_rows(tables: list[str]) -> dict[str, float]:
    """The rows each table's statistics counted (pg_class.reltuples; 0 for a table
    never analyzed nor vacuumed, -1 there)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, (SELECT greatest(reltuples, 0) FROM pg_class "
            "WHERE oid = to_regclass(name)) FROM unnest(%s::text[]) AS name",
            [tables],
        )
        return {table: rows or 0 for table, rows in cursor.fetchall()}


def refresh_after(report: IngestReport) -> bool:
    """On PostgreSQL, ANALYZE the trace tables the ingest of `report` grew enough
    (tables_to_analyze); whether it did."""
    if connection.vendor != "postgresql":
        return False
    tables = tables_to_analyze(report)
    if not tables:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(tables)}")
    return True
