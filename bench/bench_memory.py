"""Peak RSS of ingesting the ~500 MB duckflux JSON file and the biggest runs
database (the pages mix's, 460,000 steps, 1.15 M rows), each in a fresh process.

    nice .venv/bin/python bench/bench_memory.py [--quick] [--repeat 3]

Each measurement is a new child process (`os.wait4` gives its own rusage, so
`ru_maxrss` is that child's peak resident set, not the parent's):

- **ingest**: Django set up on a fresh database (bench/_setup.py), then
  `ingest_paths([file])`; the same for the runs database (bench data `pages-runs`,
  2,000 runs, 460,000 steps, 460,000 calls, 230,000 links, 343 MB; its runs are
  committed in batches as they are read), and for the one-run database of the
  same mix (`pages-bigrun`: 100,000 steps in a single run);
- **baseline, idle Django**: the same set-up (Django imported, migrations run)
  and nothing else: the floor every ingest process pays;
- **context, orjson.loads**: the file read and parsed whole in memory, which is
  what a non-streaming parser would cost.

Target: each ingest stays under 300 MB RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_MB = 300
# Production settings in the children, as a deployed worker runs (TRACER_DEBUG=1 to
# measure a development checkout, whose DEBUG keeps the text of the last 9,000 statements).
CHILD_ENV = {
    "TRACER_DEBUG": "0",
    "TRACER_SECRET_KEY": "bench-only-not-secret",
    "TRACER_INGEST_IN_BACKGROUND": "0",
    **os.environ,
}


def child(mode: str, path: str) -> None:
    if mode == "orjson":
        import orjson

        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
        print(len(document["steps"]))
        return
    import _setup  # noqa: F401  (Django on a fresh database)

    if mode == "ingest":
        from traces.ingest.loader import ingest_paths

        report = ingest_paths([path])
        summary = report.summary()
        assert not summary["errors"], summary["errors"]
        print(summary["steps"])


def measure(mode: str, path: Path) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, child's output) of one child."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, str(path)],
        cwd=HERE,
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = process.stdout.read()
    err = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    took = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"child {mode} failed:\n{err.decode()}")
    return usage.ru_maxrss / 1024, took, out.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 50 MB file instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(HERE))
    from _data import dataset
    from _measure import machine_lines, median, table

    path, made = dataset("duckflux-big", args.quick, log=lambda m: print(m, file=sys.stderr))
    size_mb = path.stat().st_size / 1e6
    under, _ = dataset("duckflux-under-threshold", log=lambda m: print(m, file=sys.stderr))
    runs_db, runs_made = dataset("pages-runs", args.quick, log=lambda m: print(m, file=sys.stderr))
    big_run, big_made = dataset("pages-bigrun", args.quick, log=lambda m: print(m, file=sys.stderr))
    results: dict[str, list[tuple[float, float]]] = {
        "idle": [], "ingest": [], "orjson": [], "ingest-under": [], "ingest-runs": [],
        "ingest-bigrun": [],
    }  # fmt: skip
    inputs = {
        "ingest-under": ("ingest", under),
        "ingest-runs": ("ingest", runs_db),
        "ingest-bigrun": ("ingest", big_run),
    }
    for attempt in range(args.repeat):
        for mode in results:
            rss, took, out = measure(*inputs.get(mode, (mode, path)))
            results[mode].append((rss, took))
            print(
                f"#{attempt + 1} {mode}: {rss:.0f} MB peak RSS, {took:.1f} s ({out})",
                file=sys.stderr,
            )

    def peak(mode):
        return median([rss for rss, _ in results[mode]])

    def wall(mode):
        return median([took for _, took in results[mode]])

    ingest, idle = peak("ingest"), peak("idle")
    print("\n## Peak memory of ingesting the big duckflux JSON file\n")
    print("\n".join(machine_lines()))
    print(
        f"- command: `nice .venv/bin/python bench/bench_memory.py"
        f"{' --quick' if args.quick else ''} --repeat {args.repeat}`; medians of {args.repeat}"
        f" fresh processes each\n- file: {size_mb:,.0f} MB, {made['steps']:,} steps with"
        f" {made['spec']['payload']:,}-character string outputs\n"
    )
    rows = [
        ["ingest (`ingest_paths([file])`)", f"{ingest:,.0f} MB", f"{wall('ingest'):.1f} s"],
        ["baseline: idle Django process (set-up only)", f"{idle:,.0f} MB", f"{wall('idle'):.1f} s"],
        ["context: `orjson.loads` of the whole file", f"{peak('orjson'):,.0f} MB",
         f"{wall('orjson'):.1f} s"],
        [f"context: ingest of a {under.stat().st_size / 1e6:,.0f} MB file (under the 64 MiB"
         " streaming threshold: parsed in memory)", f"{peak('ingest-under'):,.0f} MB",
         f"{wall('ingest-under'):.1f} s"],
        [f"ingest of the runs database (`pages-runs`: {runs_made['runs']:,} runs,"
         f" {runs_made['steps']:,} steps, {runs_made['calls']:,} calls,"
         f" {runs_made['links']:,} links; {runs_db.stat().st_size / 1e6:,.0f} MB)",
         f"{peak('ingest-runs'):,.0f} MB", f"{wall('ingest-runs'):.1f} s"],
        [f"ingest of the one-run database (`pages-bigrun`: {big_made['steps']:,} steps,"
         f" {big_made['calls']:,} calls, {big_made['links']:,} links in one run)",
         f"{peak('ingest-bigrun'):,.0f} MB", f"{wall('ingest-bigrun'):.1f} s"],
    ]  # fmt: skip
    print(table(["process", "peak RSS (ru_maxrss)", "wall time"], rows))
    biggest = (
        ("the big file", ingest),
        ("the runs database", peak("ingest-runs")),
        ("the one-run database", peak("ingest-bigrun")),
    )
    for label, peak_mb in biggest:
        verdict = "met" if peak_mb < TARGET_MB else f"missed by {peak_mb - TARGET_MB:,.0f} MB"
        print(
            f"\n{label}: ingest minus idle {peak_mb - idle:,.0f} MB (ratio ingest / idle"
            f" {peak_mb / idle:.2f}x); target < {TARGET_MB} MB: {verdict}"
        )


if __name__ == "__main__":
    main()
