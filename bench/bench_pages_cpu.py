"""CPU time of bench_pages.py's pages: the thread's own CPU time per request (median
and minimum of N), beside the wall time.

    nice .venv/bin/python bench/bench_pages_cpu.py [--only NAME,...] [-n 15]

On a shared VM the wall time of a request is as much the neighbours' as ours (2
cores under a load of 20-30, and host CPU steal): the CPU time the request's thread
spent is far steadier, and what a change to the code changes. It uses bench_pages's
cases and its kept SQLite database ($TRACER_BENCH_DATA/pages-db-full, or
DATABASE_URL), which it does not build: run bench_pages.py once first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import pages_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=15, help="requests per page")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    home = pages_environment(quick=False)
    if home is not None and not (home / ".built").exists():
        raise SystemExit(f"no database in {home}: run bench/bench_pages.py first")
    sys.argv = sys.argv[:1]  # bench_pages reads no arguments when imported
    import bench_pages  # after the environment: it sets Django up
    from django.core.management import call_command
    from django.test import Client

    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()
    only = set(filter(None, args.only.split(",")))
    print("| page / endpoint | CPU median | CPU min | wall median |\n| --- | ---: | ---: | ---: |")
    for case in bench_pages.cases(bench_pages.find_targets(client)):
        if only and case.name not in only:
            continue
        for _ in range(2):
            bench_pages.request(client, case)
        cpu, wall = [], []
        for _ in range(args.n):
            cpu_start, wall_start = time.thread_time(), time.perf_counter()
            bench_pages.request(client, case)
            cpu.append(time.thread_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
        print(
            f"| {case.label} | {statistics.median(cpu) * 1000:.1f} ms"
            f" | {min(cpu) * 1000:.1f} ms | {statistics.median(wall) * 1000:.1f} ms |"
        )


if __name__ == "__main__":
    main()
