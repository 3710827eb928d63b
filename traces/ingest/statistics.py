"""The planner's statistics after a large ingest.

A database built by one big ingest (a first import, a new source of thousands of
files) has none, or the ones of its empty tables: PostgreSQL's autovacuum catches
up only minutes later, and until then it plans a run of 100,000 steps as a run of
a few. So an ingest that wrote many rows ANALYZEs the trace tables once, at its
end (never per file), on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

from django.db import connection

from traces.models import Call, EntityLink, FailureCause, LogEntry, Run, Step

from .report import IngestReport

# Rows written by one ingest (runs, steps, calls, links, log rows) from which its
# end refreshes the statistics: a small rescan costs no ANALYZE.
ANALYZE_AFTER_ROWS = 10_000
TRACE_MODELS = (Run, Step, Call, EntityLink, LogEntry, FailureCause)


def rows_written(report: IngestReport) -> int:
    return sum(sum(result.counts.values()) for result in report.files)


def refresh_after(report: IngestReport) -> bool:
    """ANALYZE the trace tables if the ingest of `report` wrote many rows; whether it did."""
    if rows_written(report) < ANALYZE_AFTER_ROWS:
        return False
    tables = [model._meta.db_table for model in TRACE_MODELS]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {', '.join(tables)}")
        else:
            for table in tables:
                cursor.execute(f'ANALYZE "{table}"')
    return True
