#!/usr/bin/env bash
# Every benchmark, in order, on demand (never part of the test run).
#
#   bench/run_all.sh [--quick] [--postgres]
#
# --quick: a tenth of the sizes (100,000 steps instead of 1,000,000; minutes, not an hour).
# --postgres: also the ingest and page benchmarks on a throwaway PostgreSQL server
#             (scripts/with_postgres.py).
# Every script prints its Markdown table(s) on stdout (progress on stderr); the
# figures go into bench/RESULTS.md by hand, with the machine and the date they print.
# Generated data is kept in $TRACER_BENCH_DATA (default /tmp/tracer-bench-data) and
# reused; delete it to start over. Each command runs under `nice`: the 2 cores are shared.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
QUICK=()
POSTGRES=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=(--quick) ;;
    --postgres) POSTGRES=1 ;;
    *) echo "usage: bench/run_all.sh [--quick] [--postgres]" >&2; exit 2 ;;
  esac
done

run() {
  echo "+ $*" >&2
  nice -n 10 "$@"
}

run "$PY" bench/_data.py "${QUICK[@]}"
run "$PY" bench/bench_ingest.py "${QUICK[@]}" --profile
if [[ ${#QUICK[@]} -eq 0 ]]; then
  run "$PY" bench/bench_ingest_runs.py
else
  run "$PY" bench/bench_ingest_runs.py --runs 50 --steps 5000 --calls 10000
fi
run "$PY" bench/bench_memory.py "${QUICK[@]}"
run "$PY" bench/bench_rescan.py "${QUICK[@]}" --profile
run "$PY" bench/bench_pages.py "${QUICK[@]}" --profile run_big,failed
run "$PY" bench/bench_datasette.py "${QUICK[@]}"
run "$PY" bench/bench_export.py "${QUICK[@]}" --repeat 1

if [[ $POSTGRES -eq 1 ]]; then
  run "$PY" scripts/with_postgres.py "$PY" bench/bench_pg_insert.py
  run "$PY" scripts/with_postgres.py "$PY" bench/bench_ingest.py "${QUICK[@]}" --repeat 1
  run "$PY" scripts/with_postgres.py "$PY" bench/bench_pages.py "${QUICK[@]}"
fi
