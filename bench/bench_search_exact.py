"""The search's exact-id lookup (traces/search/exact.py) beside the whole search it
is part of, on bench_pages.py's database (1 M steps; SQLite's kept file unless
DATABASE_URL is set), alternating, median of 21 calls each:

    nice .venv/bin/python bench/bench_search_exact.py QUERY ...

Prints a Markdown row a query: the whole search() (full-text matches, entities and
the exact lookup), the exact lookup alone, its share, and how many exact matches."""

import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _data import pages_environment  # noqa: E402

pages_environment(quick=False)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracer_site.settings")
import django  # noqa: E402

django.setup()
from traces.search.exact import exact_matches  # noqa: E402
from traces.search.query import search  # noqa: E402

N = 21
print("| query | search() | exact lookup | share | exact matches |")
print("| --- | ---: | ---: | ---: | ---: |")
for q in sys.argv[1:]:
    whole, exact = [], []
    for _ in range(N):
        t = time.perf_counter()
        search(q)
        whole.append(time.perf_counter() - t)
        t = time.perf_counter()
        found = exact_matches(q)
        exact.append(time.perf_counter() - t)
    w, e = statistics.median(whole) * 1000, statistics.median(exact) * 1000
    print(f"| {q!r} | {w:.2f} ms | {e:.2f} ms | {e / w:.0%} | {len(found.all)} |")
