"""The failing-now strip's runs query on the 1 M-step SQLite bench database: failed
runs only (as before the strip counted failed items) against this one (failed runs
and runs with failed items, a union of two index ranges), alternating, medians; and
each query's plan.

    TRACER_BENCH_DATA=/tmp/tracer-bench-data nice .venv/bin/python \
        bench/bench_failing_items.py [--items-now]

`--items-now`: the strip's clock a minute after the newest run with failed items
(else after the newest failed run). Run bench_pages.py first: it builds the
database and applies the migrations."""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

DATA = Path(os.environ.get("TRACER_BENCH_DATA", "/tmp/tracer-bench-data"))
os.environ["DATABASE_URL"] = f"sqlite:///{DATA / 'pages-db-full' / 'tracer.sqlite3'}"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402, F401  (Django, migrated)
from django.db import connection  # noqa: E402
from django.db.models import Count, Q  # noqa: E402

from traces.models import Run, Status  # noqa: E402
from traces.queries import failing  # noqa: E402


def main() -> None:
    newest = Run.objects.filter(
        failing.ITEMS_FAILED if "--items-now" in sys.argv else Q(status="failed")
    )
    now = newest.order_by("-started_at").values_list("started_at", flat=True).first()
    now += timedelta(minutes=1)
    hour, day = now - timedelta(hours=1), now - timedelta(hours=24)

    def failed_only():
        runs = Run.objects.filter(status=Status.FAILED, started_at__gte=day).values("type")
        hourly = Count("id", filter=Q(started_at__gte=hour))
        return list(runs.annotate(last_day=Count("id"), last_hour=hourly).order_by())

    def with_items():
        return failing.failing_types(hour, day)

    before, after = [], []
    for _ in range(60):
        for read, times in ((failed_only, before), (with_items, after)):
            start = time.perf_counter()
            read()
            times.append(time.perf_counter() - start)
    rows = with_items()
    print(f"now {now:%Y-%m-%d %H:%M}: {len(rows)} types, "
          f"{sum(r.item_runs_day for r in rows)} runs with failed items in the day")  # fmt: skip
    old, new = statistics.median(before) * 1000, statistics.median(after) * 1000
    print(f"failed runs only: {old:.2f} ms; with failed items: {new:.2f} ms; ratio {new / old:.2f}")
    with connection.cursor() as cursor:
        sql, params = Run.objects.filter(
            failing.ITEMS_FAILED, started_at__gte=day
        ).query.sql_with_params()
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        print("runs with failed items:", [row[-1] for row in cursor.fetchall()])


if __name__ == "__main__":
    main()
