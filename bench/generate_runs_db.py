"""Write a large @systemoperator/runs database (FORMATS.md §3.3) for benchmarks and tests.

    python bench/generate_runs_db.py /tmp/runs-big.sqlite --runs 500 --steps 50000 --calls 100000

Runs hold nested steps (up to four levels) with progress counters, calls with
errors and retries (`attempt` 2+, `retry_of`), entity links, failed runs with
skipped steps after the failure, and a few runs still running. The same seed
gives the same database.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DDL = """
CREATE TABLE runs (
  id TEXT PRIMARY KEY, run_type TEXT NOT NULL, trigger TEXT NOT NULL, actor_type TEXT NOT NULL,
  actor_id TEXT, status TEXT NOT NULL, current_step TEXT, started_at TEXT, completed_at TEXT,
  duration_ms INTEGER, input TEXT, output TEXT, error TEXT, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE steps (
  id TEXT PRIMARY KEY, run_id TEXT REFERENCES runs(id), parent_step_id TEXT REFERENCES steps(id),
  step_index INTEGER NOT NULL, actor_type TEXT NOT NULL, actor_id TEXT, step_type TEXT NOT NULL,
  status TEXT NOT NULL, entity_type TEXT, entity_id TEXT, context TEXT, input TEXT, output TEXT,
  items_total INTEGER, items_processed INTEGER, items_succeeded INTEGER, items_failed INTEGER,
  attempt INTEGER NOT NULL, retry_of TEXT REFERENCES steps(id), max_retries INTEGER, error TEXT,
  started_at TEXT, completed_at TEXT, duration_ms INTEGER, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE calls (
  id TEXT PRIMARY KEY, step_id TEXT NOT NULL REFERENCES steps(id), tool TEXT NOT NULL,
  operation TEXT NOT NULL, input TEXT, output TEXT, status TEXT NOT NULL, error TEXT,
  attempt INTEGER NOT NULL, retry_of TEXT REFERENCES calls(id), duration_ms INTEGER,
  metadata TEXT, created_at TEXT NOT NULL
);
CREATE TABLE step_links (
  id TEXT PRIMARY KEY, step_id TEXT NOT NULL REFERENCES steps(id), link_type TEXT NOT NULL,
  entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, external_id TEXT, created_at TEXT NOT NULL
);
CREATE INDEX idx_steps_run ON steps(run_id);
CREATE INDEX idx_steps_parent ON steps(parent_step_id);
CREATE INDEX idx_calls_step ON calls(step_id);
CREATE INDEX idx_step_links_step ON step_links(step_id);
CREATE INDEX idx_step_links_entity ON step_links(entity_type, entity_id);
"""

BASE_MS = 1_772_430_000_000  # 2026-03-02T05:40:00Z
STEP_TYPES = ("fetch_charges", "process_charges", "upsert_batch", "build_view", "reconcile")
TOOLS = (("stripe_api", "GET /v1/charges"), ("postgres", "INSERT ... ON CONFLICT"), ("s3", "PUT"))
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MAX_DEPTH = 3


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _Ids:
    """ULID-like ids: time-ordered, 26 Crockford characters, reproducible."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def __call__(self, ms: int) -> str:
        head = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
        return head + "".join(self.rng.choices(_CROCKFORD, k=16))


@dataclass(slots=True)
class Options:
    """Opt-in realism for benchmarks; the defaults give the same database as before.

    step_failure_rate: extra steps failed at random in any run (the run keeps its status);
    error: None = one fixed message, else a function (rng) -> message for failed steps;
    entity_pool: half of the links go to `customer` entities drawn from this many ids,
    log-uniformly, so a few customers have thousands of links (hot entity pages)."""

    step_failure_rate: float = 0.0
    error: object = None
    entity_pool: int | None = None


_DEFAULT = Options()


@dataclass(slots=True)
class _Step:
    id: str
    run_id: str
    start: int | None
    end: int | None
    status: str


def generate_runs_db(
    path: str | Path,
    *,
    runs: int = 500,
    steps: int = 50_000,
    calls: int = 100_000,
    links: int | None = None,
    seed: int = 0,
    options: Options | None = None,
    start_ms: int | None = None,
) -> dict[str, int]:
    """Write the database at `path` (replacing it) and return the row counts."""
    options = options or _DEFAULT
    path = Path(path)
    path.unlink(missing_ok=True)
    rng = random.Random(seed)
    ids = _Ids(rng)
    conn = sqlite3.connect(path)
    try:
        conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + DDL)
        made = _write_runs_and_steps(conn, rng, ids, runs, steps, options, start_ms or BASE_MS)
        callable_steps = [s for s in made if s.start is not None]
        n_calls = _write_calls(conn, rng, ids, callable_steps, calls)
        n_links = _write_links(
            conn, rng, ids, callable_steps, steps if links is None else links, options
        )
        conn.commit()
    finally:
        conn.close()
    return {"runs": runs, "steps": len(made), "calls": n_calls, "links": n_links}


# --- runs and steps -------------------------------------------------------------------------


def _run_statuses(rng: random.Random, runs: int) -> list[str]:
    statuses = ["failed" if rng.random() < 0.1 else "completed" for _ in range(runs)]
    for index in range(min(runs, max(1, runs // 50))):
        statuses[-1 - index] = "running"  # the newest runs are still going
    return statuses


def _write_runs_and_steps(conn, rng, ids, runs: int, steps: int, options, base: int) -> list[_Step]:
    made: list[_Step] = []
    run_rows, step_rows = [], []
    for index, status in enumerate(_run_statuses(rng, runs)):
        count = steps // runs + (1 if index < steps % runs else 0)
        start = base + index * 90_000
        run_id = ids(start)
        rows, infos, end = _run_steps(rng, ids, run_id, status, start, count, options)
        step_rows.extend(rows)
        made.extend(infos)
        run_rows.append(_run_row(rng, run_id, status, start, end, rows))
    conn.executemany(f"INSERT INTO runs VALUES ({_marks(15)})", run_rows)
    conn.executemany(f"INSERT INTO steps VALUES ({_marks(26)})", step_rows)
    return made


def _run_row(rng, run_id: str, status: str, start: int, end: int, step_rows: list) -> tuple:
    fetched = rng.randint(50, 500)
    failed = rng.randint(0, 5)
    output = f'{{"fetched":{fetched},"inserted":{fetched - failed},"failed":{failed}}}'
    done = status != "running"
    current = step_rows[-1][6] if step_rows and not done else None
    error = "a step failed: duplicate key value" if status == "failed" else None
    return (
        run_id,
        rng.choice(("sync_stripe", "materialize_view", "export_csv")),
        rng.choice(("cron", "manual", "user")),
        "system",
        None,
        status,
        current,
        iso(start),
        iso(end) if done else None,
        end - start if done else None,
        '{"since":"2026-03-01T00:00:00.000Z"}',
        output,
        error,
        iso(start - 5),
        iso(end),
    )


def _run_steps(rng, ids, run_id: str, status: str, start: int, count: int, options=_DEFAULT):
    """Rows and summaries of one run's steps, created one after the other."""
    fail_at = rng.randrange(count // 2, count) if status == "failed" and count else -1
    rows, infos, depth, children = [], [], {}, {}
    clock = start
    for position in range(count):
        parent = _pick_parent(rng, infos, depth)
        step_id = ids(clock)
        depth[step_id] = 0 if parent is None else depth[parent] + 1
        index = children.get(parent, 0)
        children[parent] = index + 1
        kind = _step_status(status, position, count, fail_at)
        if options.step_failure_rate and kind == "completed":
            kind = "failed" if rng.random() < options.step_failure_rate else kind
        took = rng.randint(20, 3000)
        info = _Step(step_id, run_id, None if kind == "skipped" else clock, None, kind)
        if kind in ("completed", "failed"):
            info.end = clock + took
        kind_name = STEP_TYPES[depth[step_id]]
        rows.append(_step_row(rng, info, parent, index, clock, took, kind_name, options))
        infos.append(info)
        clock += took + rng.randint(0, 50)
    return rows, infos, clock


def _pick_parent(rng, infos: list[_Step], depth: dict) -> str | None:
    if not infos or rng.random() < 0.3:
        return None
    candidate = rng.choice(infos[-8:]).id
    return candidate if depth[candidate] < _MAX_DEPTH else None


def _step_status(run_status: str, position: int, count: int, fail_at: int) -> str:
    if run_status == "running" and position == count - 1:
        return "running"
    if run_status == "failed" and position >= fail_at:
        return "failed" if position == fail_at else "skipped"
    return "completed"


def _step_row(
    rng, info: _Step, parent, index: int, clock: int, took: int, kind: str, options=_DEFAULT
) -> tuple:
    total = rng.randint(50, 500) if parent is None else None
    processed = total if total is not None and info.status == "completed" else None
    if total is not None and processed is None:
        processed = rng.randint(0, total)
    failed = min(rng.randint(0, 5), processed) if processed is not None else None
    succeeded = processed - failed if processed is not None else None
    skipped = info.status == "skipped"
    output = '{"reason":"previous step failed"}' if skipped else '{"ok":true}'
    return (
        info.id,
        info.run_id,
        parent,
        index,
        "system",
        None,
        kind,
        info.status,
        "account" if parent is None else None,
        "acc_main" if parent is None else None,
        '{"page_size":100}',
        f'{{"offset":{index * 50}}}',
        output if info.status != "running" else None,
        total,
        processed,
        succeeded,
        failed,
        1,
        None,
        3 if parent is None else None,
        _error(rng, options) if info.status == "failed" else None,
        None if skipped else iso(clock),
        iso(info.end) if info.end is not None else (iso(clock) if skipped else None),
        took if info.end is not None else None,
        iso(clock),
        iso(info.end or clock),
    )


def _error(rng, options: Options) -> str:
    if options.error is None:
        return "duplicate key value violates unique constraint"
    return options.error(rng)


# --- calls and links ------------------------------------------------------------------------


def _spread(rng: random.Random, total: int, buckets: int) -> list[int]:
    counts = [0] * buckets
    for _ in range(total if buckets else 0):
        counts[rng.randrange(buckets)] += 1
    return counts


def _write_calls(conn, rng, ids, targets: list[_Step], calls: int) -> int:
    rows = _call_rows(rng, ids, targets, _spread(rng, calls, len(targets)))
    cursor = conn.executemany(f"INSERT INTO calls VALUES ({_marks(13)})", rows)
    return cursor.rowcount


def _call_rows(rng, ids, targets: list[_Step], counts: list[int]) -> Iterator[tuple]:
    for step, count in zip(targets, counts, strict=True):
        clock, previous = step.start, None
        for number in range(count):
            tool, operation = rng.choice(TOOLS)
            last_of_running = step.status == "running" and number == count - 1
            status = "running" if last_of_running else _call_status(rng)
            attempt = previous[1] + 1 if previous else 1
            call_id = ids(clock)
            took = rng.randint(5, 900)
            yield (
                call_id,
                step.id,
                tool,
                operation,
                '{"limit":100}',
                '{"count":100}' if status == "success" else None,
                status,
                "429 Too Many Requests" if status == "error" else None,
                attempt,
                previous[0] if previous else None,
                None if status == "running" else took,
                '{"request_id":"req_x"}',
                iso(clock),
            )
            previous = (call_id, attempt) if status == "error" else None
            clock += took + 1


def _call_status(rng: random.Random) -> str:
    return "error" if rng.random() < 0.08 else "success"


def _write_links(conn, rng, ids, targets: list[_Step], links: int, options=_DEFAULT) -> int:
    rows = _link_rows(rng, ids, targets, _spread(rng, links, len(targets)), options)
    cursor = conn.executemany(f"INSERT INTO step_links VALUES ({_marks(7)})", rows)
    return cursor.rowcount


def _link_rows(
    rng, ids, targets: list[_Step], counts: list[int], options=_DEFAULT
) -> Iterator[tuple]:
    pool = options.entity_pool
    for step, count in zip(targets, counts, strict=True):
        when = iso(step.end or step.start)
        for _ in range(count):
            if pool and rng.random() < 0.5:
                number = int(pool ** rng.random()) - 1
                verb = rng.choice(("input", "output", "affected"))
                entity = (verb, "customer", f"cus_{number:06d}", f"stripe_cus_{number}")
                yield (ids(step.start), step.id, *entity, when)
                continue
            code = "".join(rng.choices(string.hexdigits.lower(), k=12))
            if rng.random() < 0.75:
                entity = ("output", "transaction", f"tx_{code}", f"ch_{code}")
            else:
                entity = ("input", "stripe_page", f"page_{code}", None)
            yield (ids(step.start), step.id, *entity, when)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--links", type=int, default=None, help="default: as many as steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    counts = generate_runs_db(
        args.path,
        runs=args.runs,
        steps=args.steps,
        calls=args.calls,
        links=args.links,
        seed=args.seed,
    )
    took = time.perf_counter() - began
    print(f"{args.path}: {counts} in {took:.1f} s")


if __name__ == "__main__":
    main()
