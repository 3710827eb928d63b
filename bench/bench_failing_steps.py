"""The failing-now strip's failed-step count on a 1 M-step bench database: the count
before its split (one walk of step_failed_at), this one (failed steps of runs whose
times are estimated apart, by Step.failed_at_estimated, in that index), and the same
split read from each step's run by a join (the alternative the column replaced),
alternating, medians. Three windows: 24 h to a minute after the newest timed failure,
24 h to a minute after the newest failure of estimated times, and 300 days (the cap).

    TRACER_BENCH_DATA=/tmp/tracer-bench-data nice .venv/bin/python bench/bench_failing_steps.py
    .venv/bin/python scripts/with_postgres.py --keep DIR \
        .venv/bin/python bench/bench_failing_steps.py

SQLite: the database bench_pages.py built (pages-db-full); PostgreSQL: DATABASE_URL."""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    DATA = Path(os.environ.get("TRACER_BENCH_DATA", "/tmp/tracer-bench-data"))
    os.environ["DATABASE_URL"] = f"sqlite:///{DATA / 'pages-db-full' / 'tracer.sqlite3'}"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # (Django, migrated)
from django.db import connection
from django.db.models import Count, F, Q

from traces.causes import slot_start
from traces.models import Status, Step
from traces.queries.failing import STEP_COUNT_CAP, failed_steps

RUNS = 41


def newest(estimated: bool) -> datetime:
    sql = (
        "SELECT MAX(s.failed_at) FROM traces_step s JOIN traces_run r ON r.id = s.run_id "
        "WHERE s.status = 'failed' AND r.times_estimated"
        if estimated
        else "SELECT MAX(started_at) FROM traces_step WHERE status = 'failed'"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)) + timedelta(minutes=1)


def _recent(day_ago):
    return Step.objects.filter(
        status=Status.FAILED, failed_at__gte=day_ago, synthetic=False
    ).order_by(F("failed_at").desc(nulls_last=True))


def unsplit(hour_ago, day_ago) -> dict:
    """The count before the split (main 3a605bd)."""
    hour = Q(failed_at__gte=hour_ago)
    return (
        _recent(day_ago)
        .values("failed_at")[: STEP_COUNT_CAP + 1]
        .aggregate(day=Count("failed_at"), hour=Count("failed_at", filter=hour))
    )


def joined(hour_ago, day_ago) -> dict:
    """The split read from each step's run."""
    rows = _recent(day_ago).values("failed_at", estimated=F("run__times_estimated"))
    hour, recorded = Q(failed_at__gte=hour_ago), Q(estimated=False)
    return rows[: STEP_COUNT_CAP + 1].aggregate(
        day=Count("failed_at", filter=recorded),
        hour=Count("failed_at", filter=recorded & hour),
        estimated_day=Count("failed_at", filter=~recorded),
        estimated_hour=Count("failed_at", filter=~recorded & hour),
    )


def main() -> None:
    print(f"{_setup.machine()}; {RUNS} alternated runs each, medians")
    windows = (
        ("timed window (24 h)", newest(False), timedelta(days=1)),
        ("estimated window (24 h)", newest(True), timedelta(days=1)),
        ("at the cap (300 days)", newest(False), timedelta(days=300)),
    )
    ways = (
        ("before the split", unsplit),
        ("split, index alone", failed_steps),
        ("split, join", joined),
    )
    for label, now, span in windows:
        bounds = slot_start(now - timedelta(hours=1)), slot_start(now - span)
        times: dict[str, list[float]] = {name: [] for name, _ in ways}
        for _ in range(RUNS):
            for name, read in ways:
                start = time.perf_counter()
                read(*bounds)
                times[name].append((time.perf_counter() - start) * 1000)
        medians = ", ".join(f"{name} {statistics.median(ms):.2f} ms" for name, ms in times.items())
        print(f"{label}, now {now:%Y-%m-%d %H:%M}: {medians}")
        print(f"    {failed_steps(*bounds)}")


if __name__ == "__main__":
    main()
