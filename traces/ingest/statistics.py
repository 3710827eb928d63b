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

A long ingest also refreshes them between its transactions (`BetweenBatches`), by
the rows each table changed since it was last analyzed (pg_stat_user_tables), as
autovacuum would but without its minute's wait: statistics taken when the store held
one big run (a 500 MB file's), or before it was emptied, count every step as that
run's, and planned by them the store's read-backs of the small runs it writes read
all of traces_step for each chunk (137 ms a chunk: 5,000 greentic files took 59 s
instead of 13 s, until the end's ANALYZE).

Not SQLite: its plans without statistics are the ones the pages are built for.
With them (bench_pages.py --quick --analyze) it judges the (entity_type, entity_id)
index by its average, which one entity that is the subject of every root step
ruins, and counts an entity's subject steps by scanning every run (0.3 ms -> 260 ms).
"""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError, connection

from traces.models import Call, EntityLink, FailureCause, FailureSlice, LogEntry, Run, Step

from .report import IngestReport

log = logging.getLogger(__name__)

# Rows written by one ingest (runs, steps, calls, links, log rows) from which its
# end refreshes the statistics: a small rescan costs no ANALYZE.
ANALYZE_AFTER_ROWS = 10_000
# A table is analyzed when the ingest wrote at least this share of the rows its
# statistics counted (pg_class.reltuples).
GROWTH = 0.1
# Between the transactions of one ingest, statistics are refreshed at most this often
# (an ANALYZE of the steps costs 0.2-0.9 s).
REFRESH_EVERY = 30.0
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


class BetweenBatches:
    """The statistics of one ingest's tables refreshed between its transactions, on
    PostgreSQL: those changed by GROWTH of the rows their statistics counted (and by at
    least ANALYZE_AFTER_ROWS) since they were last analyzed, at most every
    REFRESH_EVERY seconds."""

    def __init__(self):
        self._analyzed_at: float | None = None
        # The tables analyzed since the ingest's last commit (refresh_after skips them).
        self.fresh: frozenset[str] = frozenset()

    def committed(self) -> None:
        self.fresh = frozenset()

    def refresh(self) -> bool:
        """Call when no transaction is open; whether it analyzed a table.

        A table another session holds against ANALYZE is skipped, not waited for: its
        own ANALYZE (another worker of `ingest --jobs` refreshing at the same moment),
        a VACUUM, an index built concurrently. Only the tables analyzed are `fresh`."""
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return False
        now = time.monotonic()
        if self._analyzed_at is not None and now - self._analyzed_at < REFRESH_EVERY:
            return False
        try:
            return self._analyze_changed()
        except DatabaseError as exc:  # statistics are a help: never the ingest's failure
            log.warning("statistics not refreshed between transactions: %s", exc)
            self._analyzed_at = time.monotonic()
            return False

    def _analyze_changed(self) -> bool:
        tables = changed_tables()
        if not tables:
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            began = cursor.fetchone()[0]
            cursor.execute(f"ANALYZE (SKIP_LOCKED) {', '.join(tables)}")
            # Those skipped keep their last_analyze (on PostgreSQL < 15 one analyzed may
            # not show yet: left to the end's ANALYZE).
            cursor.execute(
                "SELECT relname FROM pg_stat_user_tables "
                "WHERE relname = ANY(%s) AND last_analyze >= %s",
                [tables, began],
            )
            analyzed = frozenset(name for (name,) in cursor.fetchall())
        self._analyzed_at = time.monotonic()
        self.fresh = analyzed
        return bool(analyzed)


def changed_tables() -> list[str]:
    """The trace tables changed since they were last analyzed by GROWTH of the rows
    their statistics counted, and by at least ANALYZE_AFTER_ROWS rows."""
    tables = [model._meta.db_table for model in COUNTED.values()]
    with connection.cursor() as cursor:
        if connection.pg_version >= 150000:
            # This session's counts of its last transactions are sent now, not within a
            # second or ten (the next statement reads them).
            cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
            "WHERE s.relname = ANY(%s) "
            "AND s.n_mod_since_analyze >= greatest(%s, %s * greatest(c.reltuples, 0))",
            [tables, ANALYZE_AFTER_ROWS, GROWTH],
        )
        chosen = [name for (name,) in cursor.fetchall()]
    if Step._meta.db_table in chosen:
        chosen += [model._meta.db_table for model in FOLLOW_STEPS]
    return chosen


def refresh_after(report: IngestReport, fresh: frozenset[str] = frozenset()) -> bool:
    """On PostgreSQL, ANALYZE the trace tables the ingest of `report` grew enough
    (tables_to_analyze), but those `fresh` (analyzed since its last write); whether
    it did."""
    if connection.vendor != "postgresql":
        return False
    tables = [table for table in tables_to_analyze(report) if table not in fresh]
    if not tables:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(tables)}")
    return True
