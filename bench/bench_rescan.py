"""Rescanning an unchanged directory of 10,000 small trace files.

    nice .venv/bin/python bench/bench_rescan.py [--quick] [--repeat 5] [--profile]

The directory holds the duckflux data set of bench_ingest.py (10,000 JSON files
of ~10 steps, 500 to a sub-directory). After one first ingest, the same tree is
scanned again unchanged, in both ways the site does it:

- `ingest_paths([directory])`: `manage.py ingest DIR` and `--watch`;
- `sources.rescan(source)`: a TraceSource rescan (the scheduler, the button, the
  API), which plans the scan (confinement, the files unchanged by stat counted in
  one loop, sniffing of unknown files) and hands the others to the loader;

each beside the **baseline** `os.walk` + `os.stat` of every file of the same tree
(the least any rescan must do to notice a change). Target (issue 12): ≤ 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_ROOT, dataset

# The source must be inside the allowed roots, which settings read at import.
os.environ.setdefault("TRACER_SOURCE_ROOTS", str(DATA_ROOT))

import _setup  # noqa: F401  (Django on a fresh database)
from _measure import machine_lines, median, profile_text, table
from django.db import connection

from traces import sources
from traces.ingest.loader import ingest_paths
from traces.models import TraceFile, TraceSource

TARGET_S = 0.3


def walk_and_stat(top: Path) -> int:
    count = 0
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            os.stat(os.path.join(dirpath, name))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 files")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    top, made = dataset("duckflux-files", args.quick, log=lambda m: print(m, file=sys.stderr))

    start = time.perf_counter()
    first = ingest_paths([top]).summary()
    first_s = time.perf_counter() - start
    assert first["files"]["ingested"] == made["files"], first["files"]
    source = TraceSource.objects.create(path=str(top))
    # A first scan of the source: every file known (read by the ingest above) and unchanged.
    sources.rescan(source)

    walks, loader, rescans = [], [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        files = walk_and_stat(top)
        walks.append(time.perf_counter() - start)

        start = time.perf_counter()
        report = ingest_paths([top])
        loader.append(time.perf_counter() - start)
        assert report.summary()["files"]["unchanged"] == files

        source.refresh_from_db()
        start = time.perf_counter()
        summary = sources.rescan(source)
        rescans.append(time.perf_counter() - start)
        assert summary["files"]["unchanged"] == files, summary["files"]
    assert TraceFile.objects.count() == files

    walk_s = median(walks)
    print("\n## Rescan of an unchanged directory\n")
    print("\n".join(machine_lines(connection.vendor)))
    print(
        f"- command: `nice .venv/bin/python bench/bench_rescan.py"
        f"{' --quick' if args.quick else ''} --repeat {args.repeat}`; medians of {args.repeat}\n"
        f"- tree: {files:,} duckflux JSON files ({made['steps']:,} steps) in"
        f" {files // 500 or 1} directories; first ingest took {first_s:.1f} s"
        f" ({files / first_s:,.0f} files/s)\n"
    )
    rows = []
    for label, times in (
        ("`ingest_paths([dir])` (manage.py ingest)", loader),
        ("`sources.rescan(source)` (scheduler, button, API)", rescans),
    ):
        took = median(times)
        verdict = "yes" if took <= TARGET_S else f"no ({took / TARGET_S:.1f}x the target)"
        rows.append([label, f"{took * 1000:,.0f} ms", f"{walk_s * 1000:,.0f} ms",
                     f"{took / walk_s:.1f}x", verdict])  # fmt: skip
    print(
        table(
            ["unchanged rescan", "ours", "os.walk + os.stat", "ratio", f"≤ {TARGET_S:g} s"],
            rows,
            "lrrrl",
        )
    )
    if args.profile:
        text = profile_text(lambda: sources.rescan(source), top=20, sort="cumulative")
        print(f"\n### profile of one unchanged `sources.rescan` (cumulative)\n\n```\n{text}\n```")


if __name__ == "__main__":
    main()
