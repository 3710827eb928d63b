"""An ingest that wrote many rows leaves PostgreSQL's statistics of the trace tables
up to date (traces/ingest/statistics.py), once at its end; a small one does not
pay for an ANALYZE, and SQLite is left without statistics (its plans are better
without them)."""

import pytest
from django.db import connection

from traces.ingest import statistics
from traces.ingest.loader import ingest_paths
from traces.models import Step

pytestmark = pytest.mark.django_db


def rows_counted_by_statistics(table: str) -> int | None:
    """How many rows the planner's statistics say `table` has; None: it has none."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # pg_statistic is written in the test's transaction (pg_class.reltuples is
            # not: it would keep what an earlier test's ANALYZE found).
            cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = %s", [table])
            if not cursor.fetchone()[0]:
                return None
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
            return int(cursor.fetchone()[0])
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is None:
            return None
        # One row per index, each starting with its row count (a partial index has fewer).
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s", [table])
        counts = [int(stat.split()[0]) for (stat,) in cursor.fetchall()]
        return max(counts, default=None)


def analyze_statements(read) -> list[str]:
    statements = []

    def record(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("ANALYZE"):
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        read()
    return statements


def test_a_large_ingest_refreshes_the_statistics_on_postgresql_only(samples, monkeypatch):
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 100)
    reports = []
    statements = analyze_statements(lambda: reports.append(ingest_paths([samples / "runs"])))
    assert statistics.rows_written(reports[0]) >= 100
    if connection.vendor == "postgresql":
        assert len(statements) == 1
        assert rows_counted_by_statistics("traces_step") == Step.objects.count() > 0
    else:
        assert statements == []
        assert rows_counted_by_statistics("traces_step") is None


def test_a_small_ingest_leaves_the_statistics_alone(samples, monkeypatch):
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 100_000)
    assert analyze_statements(lambda: ingest_paths([samples / "runs"])) == []
    assert Step.objects.exists()


def test_the_statistics_are_refreshed_once_per_ingest_not_per_file(samples, monkeypatch):
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    analyzed = []
    refresh = statistics.refresh_after
    monkeypatch.setattr(
        "traces.ingest.loader.refresh_after", lambda report: analyzed.append(refresh(report))
    )
    report = ingest_paths([samples])
    assert len([r for r in report.files if r.outcome == "ingested"]) > 1
    assert analyzed == [connection.vendor == "postgresql"]
