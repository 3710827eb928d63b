"""Small helpers shared by the benchmark scripts (no Django at import)."""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import statistics
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "—"
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def machine_lines(vendor: str = "") -> list[str]:
    """nproc, memory, CPU model, Python, database, date, commit: the heading of every table."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    memory = _run(["free", "-h"]).splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "?"
    commit = _run(["git", "rev-parse", "--short", "HEAD"]).strip()
    dirty = " (+ uncommitted changes)" if _run(["git", "status", "--porcelain"]).strip() else ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- machine: {platform.node()}, {os.cpu_count()} cores (nproc), {total} RAM, {cpu}",
        f"- Python {platform.python_version()}, SQLite {_sqlite_version()}"
        + (f", database: {vendor}" if vendor else ""),
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}{dirty}",
        f"- load average at start (1/5/15 min): {load}"
        " (2 cores shared with other engineers' tests)",
    ]


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@contextmanager
def stopwatch(into: list[float]):
    start = time.perf_counter()
    yield
    into.append(time.perf_counter() - start)


def profile_text(function, *, top: int = 15, sort: str = "tottime") -> str:
    """Run `function()` under cProfile; the `top` entries by `sort`."""
    profiler = cProfile.Profile()
    profiler.runcall(function)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = out.getvalue()
    # Keep the table: from the header line on.
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text


class SqlTimer:
    """Counts the queries Django runs and the time spent in the database driver
    (`connection.execute_wrapper`), to split a request or an ingest into SQL and Python."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start
            self.count += 1
