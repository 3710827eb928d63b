"""The zoomed timeline's reads on the 100,000-step run of the pages database (§13d):
queries.timeline.overlapping (a window's steps) and minimap, each the best of N calls,
beside the tree's first window of roots (queries.steps.tree_level) in the same run, a
baseline for a machine whose load varies by the minute.

    nice .venv/bin/python bench/bench_zoom.py [-n 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import pages_environment  # noqa: E402

pages_environment(quick=False)

import _setup  # noqa: E402, F401  (Django, migrated)
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from traces import queries  # noqa: E402
from traces.models import Run  # noqa: E402


def best(call, n: int) -> tuple[float, int]:
    times = []
    for _ in range(n):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return min(times) * 1000, len(captured)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=7)
    n = parser.parse_args().n
    run = Run.objects.order_by("-step_count", "id").first()
    start, end = queries.timeline.time_axis(run)
    span = queries.timeline.ms_between(start, end)
    cases = {
        "tree roots, first window (baseline)": lambda: list(
            queries.steps.tree_level(run.pk, None).items
        ),
        "window: the whole run": lambda: queries.timeline.overlapping(run, 0, span, span),
        "window: 1/1000 in the middle": lambda: queries.timeline.overlapping(
            run, span * 0.5, span * 0.501, span
        ),
        "window: the last 1/100": lambda: queries.timeline.overlapping(
            run, span * 0.99, span, span
        ),
        "window: 1/1000 in the middle, failed only": lambda: queries.timeline.overlapping(
            run, span * 0.5, span * 0.501, span, failed_only=True
        ),
        "minimap (1,000-step sample + failed ticks)": lambda: queries.timeline.minimap(run, span),
    }
    print(f"run {run.pk}: {run.step_count:,} steps, axis {span / 1000:,.0f} s; best of {n}")
    print("| read | time | queries | vs baseline |\n| --- | ---: | ---: | ---: |")
    base = None
    for label, call in cases.items():
        ms, count = best(call, n)
        base = base or ms
        print(f"| {label} | {ms:.2f} ms | {count} | {ms / base:.1f}x |")


if __name__ == "__main__":
    main()
