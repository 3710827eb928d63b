"""An ingest that wrote many rows leaves PostgreSQL's statistics of the trace tables
up to date (traces/ingest/statistics.py), once at its end; a small one does not
pay for an ANALYZE, and SQLite is left without statistics (its plans are better
without them)."""

import pytest
from django.db import connection, connections

from tests.factories import make_runs, make_steps
from traces.ingest import batches, statistics
from traces.ingest.loader import ingest_paths
from traces.models import LogEntry, Run, Step, TraceFile

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
    # Whatever an earlier test's ANALYZE counted (pg_class is not rolled back).
    monkeypatch.setattr(statistics, "GROWTH", 0.0)
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
        "traces.ingest.loader.refresh_after",
        lambda report, fresh: analyzed.append(refresh(report, fresh)),
    )
    report = ingest_paths([samples])
    assert len([r for r in report.files if r.outcome == "ingested"]) > 1
    assert analyzed == [connection.vendor == "postgresql"]


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's statistics (SQLite keeps none)"
)


@postgresql_only
def test_only_the_tables_an_ingest_grew_by_a_share_are_analyzed(samples, monkeypatch):
    """A store of many steps given a few more keeps its steps' statistics (and the
    failures' read models', which follow the steps); its runs, a new share of their
    table, are analyzed; a table the ingest did not write (log lines) is left alone."""
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    monkeypatch.setattr(
        statistics,
        "counted_rows",
        lambda tables: {t: 10**9 if t == "traces_step" else 0 for t in tables},
    )
    reports = []
    statements = analyze_statements(lambda: reports.append(ingest_paths([samples / "runs"])))
    written = statistics.written_by_table(reports[0])
    assert written["traces_step"] > 0 and written["traces_run"] > 0
    assert written["traces_logentry"] == 0 and not LogEntry.objects.exists()
    assert len(statements) == 1
    analyzed = statements[0].removeprefix("ANALYZE ").split(", ")
    assert "traces_run" in analyzed
    assert not {"traces_step", "traces_failurecause", "traces_logentry"} & set(analyzed)


@postgresql_only
def test_an_ingest_into_a_store_too_large_for_it_to_move_runs_no_analyze(samples, monkeypatch):
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    monkeypatch.setattr(statistics, "counted_rows", lambda tables: dict.fromkeys(tables, 10**9))
    assert analyze_statements(lambda: ingest_paths([samples / "runs"])) == []
    assert Run.objects.exists()


@postgresql_only
def test_the_json_columns_are_left_out_of_the_statistics(samples, monkeypatch):
    """pg_storage: no query filters on a JSON value, and they are the dearest to sample;
    the steps' other columns keep theirs."""
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    monkeypatch.setattr(statistics, "GROWTH", 0.0)
    ingest_paths([samples / "runs"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT attname FROM pg_stats WHERE tablename = 'traces_step'")
        sampled = {name for (name,) in cursor.fetchall()}
    assert {"run_id", "status", "name", "search_doc"} <= sampled
    assert not {"input", "output", "attributes"} & sampled


# --- between the transactions of a long ingest -----------------------------------------------


def _stale_statistics_of_one_big_run() -> None:
    """The store's statistics taken when it held one run of 1,000 steps: planned by
    them, every run has all the steps (the samples then write more than 10 % of that)."""
    make_steps(make_runs(1)[0], 1000)
    with connection.cursor() as cursor:
        # Its inserts counted first, so that the ANALYZE leaves nothing to count.
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT 1")
        cursor.execute("ANALYZE traces_step")


def _run_id_distinct() -> float:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_distinct FROM pg_stats WHERE tablename = 'traces_step' AND attname = 'run_id'"
        )
        return cursor.fetchone()[0]


def _analyzed_between_batches(monkeypatch, samples) -> tuple[list[int], int]:
    """Ingest the samples a file a transaction, without the end's ANALYZE: how many
    files each ANALYZE found written, and how many the ingest wrote."""
    monkeypatch.setattr(batches, "MAX_FILES", 1)
    monkeypatch.setattr("traces.ingest.loader.refresh_after", lambda report, fresh: False)
    files_then: list[int] = []

    def record(execute, sql, params, many, context):
        if sql.startswith("ANALYZE"):
            files_then.append(TraceFile.objects.count())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        ingest_paths([samples])
    return files_then, TraceFile.objects.count()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_long_ingest_refreshes_stale_statistics_between_its_transactions(samples, monkeypatch):
    """Statistics of a store that held one big run count every step as that run's,
    and the store's read-backs of the small runs it writes were planned to read all
    of traces_step for each chunk (5,000 greentic files: 59 s instead of 13 s). They
    are refreshed between the ingest's transactions, not only at its end."""
    _stale_statistics_of_one_big_run()
    assert _run_id_distinct() == 1
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 50)
    monkeypatch.setattr(statistics, "REFRESH_EVERY", 0.0)
    files_then, files = _analyzed_between_batches(monkeypatch, samples)
    assert files_then and min(files_then) < files, (files_then, files)
    assert _run_id_distinct() != 1
    assert Run.objects.count() > 1


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_statistics_are_refreshed_between_transactions_at_most_every_so_often(samples, monkeypatch):
    _stale_statistics_of_one_big_run()
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    monkeypatch.setattr(statistics, "REFRESH_EVERY", 3600.0)
    files_then, files = _analyzed_between_batches(monkeypatch, samples)
    assert len(files_then) == 1 and files_then[0] < files


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_tables_changed_by_less_than_their_share_are_not_analyzed_between_transactions(
    samples, monkeypatch
):
    _stale_statistics_of_one_big_run()
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 10**9)
    monkeypatch.setattr(statistics, "REFRESH_EVERY", 0.0)
    files_then, files = _analyzed_between_batches(monkeypatch, samples)
    assert files_then == [] and files > 1
    assert _run_id_distinct() == 1


def test_sqlite_keeps_no_statistics_between_transactions(samples, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plans without statistics")
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    monkeypatch.setattr(statistics, "REFRESH_EVERY", 0.0)
    assert statistics.BetweenBatches().refresh() is False
    assert rows_counted_by_statistics("traces_step") is None


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_ends_analyze_skips_the_tables_analyzed_since_the_last_commit(samples, monkeypatch):
    """A refresh between transactions after the last one (a big file's) leaves the
    end's ANALYZE only the tables it did not take: none analyzed twice in a row."""
    monkeypatch.setattr(statistics, "ANALYZE_AFTER_ROWS", 1)
    monkeypatch.setattr(statistics, "GROWTH", 0.0)
    steps = ["traces_step", "traces_failurecause", "traces_failureslice"]
    monkeypatch.setattr(statistics, "changed_tables", lambda: steps)
    between = statistics.BetweenBatches()
    assert analyze_statements(between.refresh) == [f"ANALYZE (SKIP_LOCKED) {', '.join(steps)}"]
    assert between.fresh == frozenset(steps)
    report = ingest_paths([samples / "runs"])
    statements = analyze_statements(lambda: statistics.refresh_after(report, between.fresh))
    assert len(statements) == 1
    analyzed = set(statements[0].removeprefix("ANALYZE ").split(", "))
    assert analyzed == {"traces_run", "traces_call", "traces_entitylink"}
    between.committed()
    assert between.fresh == frozenset()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_refresh_between_transactions_never_waits_for_another_sessions_analyze(monkeypatch):
    """A table another session holds against ANALYZE (its own ANALYZE: another worker
    of `ingest --jobs` refreshing at the same moment; a VACUUM; an index built
    concurrently) is skipped, not waited for: the ingest goes on, its other tables
    analyzed (only they skipped by the end's ANALYZE)."""
    monkeypatch.setattr(statistics, "changed_tables", lambda: ["traces_step", "traces_run"])
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE traces_step IN SHARE UPDATE EXCLUSIVE MODE")
            with connection.cursor() as ours:
                ours.execute("SET lock_timeout = 3000")  # a wait fails the test, not hangs
            between = statistics.BetweenBatches()
            try:
                assert between.refresh()
            finally:
                with connection.cursor() as ours:
                    ours.execute("SET lock_timeout = DEFAULT")
    finally:
        other.close()
    assert rows_counted_by_statistics("traces_run") is not None
    assert between.fresh == {"traces_run"}  # the steps' left to the end's ANALYZE


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_refresh_between_transactions_that_fails_never_fails_the_ingest(
    samples, monkeypatch, caplog
):
    """A deployment's statement_timeout, a permission: the statistics are a help, the
    ingest goes on and the error is logged."""
    monkeypatch.setattr(batches, "MAX_FILES", 1)
    monkeypatch.setattr(statistics, "REFRESH_EVERY", 0.0)

    def failing():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    monkeypatch.setattr(statistics, "changed_tables", failing)
    report = ingest_paths([samples])
    assert report.files and not report.failed
    assert "statistics not refreshed between transactions" in caplog.text
