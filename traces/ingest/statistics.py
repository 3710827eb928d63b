"""PostgreSQL's planner statistics after a large ingest.

A database built by one big ingest (a first import, a new source of thousands of
files) has the statistics of its empty tables: autovacuum catches up only minutes
later, and until then PostgreSQL plans a run of 100,000 steps as a run of a few.
So an ingest that wrote many rows ANALYZEs the trace tables once, at its end
(never per file).

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
TRACE_MODELS = (Run, Step, Call, EntityLink, LogEntry, FailureCause, FailureSlice)


def rows_written(report: IngestReport) -> int:
    return sum(sum(result.counts.values()) for result in report.files)


def refresh_after(report: IngestReport) -> bool:
    """On PostgreSQL, ANALYZE the trace tables if the ingest of `report` wrote many
    rows; whether it did."""
    if connection.vendor != "postgresql" or rows_written(report) < ANALYZE_AFTER_ROWS:
        return False
    tables = ", ".join(model._meta.db_table for model in TRACE_MODELS)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables}")
    return True
