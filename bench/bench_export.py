"""Time and peak memory of exporting the 100,000-step run as OTLP/JSON and Chrome
trace events (traces/exports/), each in a fresh process.

    nice .venv/bin/python bench/bench_export.py [--quick] [--repeat 3]

The run is `pages-bigrun` (100,000 steps, 100,000 calls, 50,000 entity links; a
tenth with --quick), ingested once into a kept SQLite file. Each measurement is a
new child process (`os.wait4` gives its own peak RSS):

- **otlp** / **chrome**: the export's chunks consumed (what the streaming response
  sends), bytes counted;
- **baseline, idle Django**: set-up and the run fetched, nothing else: the floor;
- **baseline, rows in a list**: the run's steps and calls read into lists (values
  deferred), the least an export built in memory would hold before any span object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("idle", "rows", "otlp", "chrome")


def child(mode: str, source: str) -> None:
    """Prints: seconds spent on `mode`, its count, and this process's peak RSS in KB."""
    import _setup  # Django on the database DATABASE_URL names

    from traces.models import Call, Run, Step

    if mode == "load":
        from traces.ingest.loader import ingest_paths

        if not Run.objects.exists():
            assert ingest_paths([source]).failed == []
        print(0, Step.objects.count(), _setup.peak_rss_mb())
        return
    run = Run.objects.order_by("-step_count").first()
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "idle":
        out = run.step_count
    elif mode == "rows":
        steps = list(Step.objects.filter(run=run).defer("input", "output"))
        calls = list(Call.objects.filter(run=run).defer("input", "output"))
        out = len(steps) + len(calls)
    else:
        from traces.exports import EXPORTS

        out = sum(len(chunk) for chunk in EXPORTS[mode].chunks(run))
    cpu = time.process_time() - cpu_start
    print(f"{time.perf_counter() - start:.3f} {cpu:.3f}", out, _setup.peak_rss_mb())


def measure(mode: str, source: str, env: dict) -> tuple[float, float, int, float]:
    """(peak RSS in MB, seconds spent on `mode`, its count, CPU seconds) of one fresh
    child: the CPU time is what to compare on a loaded machine."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", mode, source],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if process.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{process.stderr}")
    if mode == "load":
        return 0.0, 0.0, int(process.stdout.split()[-2]), 0.0
    seconds, cpu, count, peak = process.stdout.split()[-4:]
    return float(peak), float(seconds), int(count), float(cpu)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 10,000-step run instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SOURCE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, str(HERE))
    from _data import DATA_ROOT, dataset
    from _measure import machine_lines, median, ms, table

    path, made = dataset("pages-bigrun", args.quick, log=lambda m: print(m, file=sys.stderr))
    home = DATA_ROOT / f"export-db-{'quick' if args.quick else 'full'}"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{home / 'db.sqlite3'}"}
    print(f"loaded: {measure('load', str(path), env)[2]:,} steps", file=sys.stderr)
    results: dict[str, list] = {mode: [] for mode in MODES}
    for attempt in range(args.repeat):
        for mode in MODES:
            results[mode].append(measure(mode, str(path), env))
            print(f"#{attempt + 1} {mode}: {results[mode][-1]}", file=sys.stderr)
    print("\n## Exporting the 100,000-step run (OTLP/JSON, Chrome trace events)\n")
    print("\n".join(machine_lines("sqlite")))
    print(
        f"- command: `nice .venv/bin/python bench/bench_export.py"
        f"{' --quick' if args.quick else ''} --repeat {args.repeat}`; medians of"
        f" {args.repeat} fresh processes each\n- run: {made['steps']:,} steps,"
        f" {made['calls']:,} calls, {made.get('links') or 0:,} entity links\n"
    )
    rows = []
    for mode in ("otlp", "chrome", "idle", "rows"):
        peak = median([rss for rss, *_ in results[mode]])
        took = median([seconds for _, seconds, *_ in results[mode]])
        cpu = median([cpu for *_, cpu in results[mode]])
        size = results[mode][0][2]
        what = f"{size / 1e6:,.1f} MB written" if mode in EXPORTED else f"{size:,} rows"
        rows.append([NAMES[mode], f"{peak:,.0f} MB", ms(took), ms(cpu), what])
    header = ["process", "peak RSS (ru_maxrss)", "time in the child", "CPU in the child"]
    print(table([*header, "output"], rows))


EXPORTED = ("otlp", "chrome")
NAMES = {
    "otlp": "export OTLP/JSON (chunks consumed)",
    "chrome": "export Chrome trace events (chunks consumed)",
    "idle": "baseline: idle Django process, the run fetched",
    "rows": "baseline: the run's steps and calls read into lists",
}


if __name__ == "__main__":
    main()
