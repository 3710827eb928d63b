"""The read models (failure causes and slices, entity counters, run counts and each
run's summaries, trends, repeated steps, the stored times the lists order by) against
a recount of the tables they summarise, on a built database, each timed: the
definitions of traces/ingest/recount.py (`manage.py check_read_models`, the tests), so
one source of truth; plus each failed step's cause against error_cause(error), which
only Python computes.

    .venv/bin/python scripts/with_postgres.py --keep /tmp/tracer-bench-data/pg-1m \\
        .venv/bin/python bench/recount_read_models.py
    TRACER_DATA_DIR=/tmp/tracer-bench-data/pages-db-full .venv/bin/python \\
        bench/recount_read_models.py

Each check counts the read model's rows the recount lacks (wrong) and the recount's
rows it lacks (missing), every column compared: both 0 when the read model is exact.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _setup  # noqa: F401  (Django, migrated)
from _measure import machine_lines, table
from django.db import connection

from traces.ingest import recount


def failed_causes_of_their_errors() -> tuple[int, int, float]:
    """(failed steps, those whose stored cause is not error_cause(error), seconds):
    the normalisation is Python's, so the failed steps' errors are streamed to it."""
    from traces.causes import error_cause

    start = time.perf_counter()
    checked = wrong = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT error, error_cause FROM traces_step WHERE status = 'failed'")
        while batch := cursor.fetchmany(10_000):
            for error, cause in batch:
                checked += 1
                wrong += cause != error_cause(error)
    return checked, wrong, time.perf_counter() - start


def main() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM traces_step")
        steps = cursor.fetchone()[0]
    print(f"\n## Read models against a recount at {steps:,} steps ({connection.vendor})\n")
    print("\n".join(machine_lines(connection.vendor)))
    print()
    rows, exact = [], True
    for difference in recount.check():
        exact &= not difference
        stored = (
            "—"
            if isinstance(difference.read_model, recount.StoredColumn)
            else (f"{difference.rows:,}")
        )
        rows.append([difference.read_model.name, stored, f"{len(difference.wrong):,}",
                     f"{len(difference.missing):,}", f"{difference.seconds:.1f} s"])  # fmt: skip
        print(f"{difference.read_model.name}: {rows[-1][1:]}", file=sys.stderr, flush=True)
    checked, wrong, seconds = failed_causes_of_their_errors()
    exact &= wrong == 0
    rows.append([f"failed steps' causes = error_cause(error) ({checked:,} steps)", "—",
                 f"{wrong:,}", "—", f"{seconds:.1f} s"])  # fmt: skip
    headers = ["read model", "its rows", "its rows not in the recount (wrong)",
               "recount rows it lacks (missing)", "recount time"]  # fmt: skip
    print(table(headers, rows, "lrrrr"))
    print(f"\n{'every read model equals its recount' if exact else 'MISMATCH'}")
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
