"""Shared set-up for benchmark scripts: Django, with production settings, on a fresh
database in a temp dir.

Import this first in a benchmark script. `DATABASE_URL` chooses the database
as for the site (default: a new SQLite file in the temp dir)."""

from __future__ import annotations

import atexit
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORKDIR = Path(tempfile.mkdtemp(prefix="tracer-bench-"))
# A run's scratch store goes with it (hundreds of runs filled the disk); the data sets
# in $TRACER_BENCH_DATA are kept. TRACER_BENCH_KEEP_WORKDIR=1 keeps it to look into.
if os.environ.get("TRACER_BENCH_KEEP_WORKDIR") != "1":
    atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracer_site.settings")
os.environ.setdefault("TRACER_DATA_DIR", str(WORKDIR / "data"))
# Production settings, as a deployed site and its workers run (TRACER_DEBUG=1 to
# measure the development settings): with DEBUG on, Django keeps every statement it
# runs, and on SQLite quotes each one's parameters again for that record.
os.environ.setdefault("TRACER_DEBUG", "0")
os.environ.setdefault("TRACER_SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("TRACER_SSL_REDIRECT", "0")
os.environ.setdefault("TRACER_SECURE_COOKIES", "0")
os.environ.setdefault("TRACER_HSTS_SECONDS", "0")
os.environ.setdefault("TRACER_ALLOWED_HOSTS", "testserver,localhost")
(WORKDIR / "data").mkdir(exist_ok=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

call_command("migrate", verbosity=0)


@contextmanager
def timed(results: dict, name: str):
    start = time.perf_counter()
    yield
    results[name] = time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return (
        f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"{connection.vendor} · {datetime.now(UTC):%Y-%m-%d}"
    )


def report(title: str, rows: list[tuple[str, float, float | None, str]]) -> None:
    """rows: (what, ours seconds, baseline seconds or None, baseline name)."""
    print(f"\n## {title}\n{machine()}\n")
    print("| measure | ours | baseline | ratio (ours / baseline) |")
    print("| --- | ---: | ---: | ---: |")
    for what, ours, base, base_name in rows:
        if base:
            base_text = f"{base * 1000:.1f} ms ({base_name})"
            print(f"| {what} | {ours * 1000:.1f} ms | {base_text} | {ours / base:.2f}x |")
        else:
            print(f"| {what} | {ours * 1000:.1f} ms | — | — |")
