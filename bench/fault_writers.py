"""Trace writers that misbehave the way real tracers do, for the fault tests
(tests/test_faults.py) and the load benchmark. No Django here: they only write files.

    python bench/fault_writers.py runs-db PATH --seconds 3 [--seed 0]

`runs-db` is a @systemoperator/runs tracker in another process: it inserts runs
and steps and finishes runs, each change in its own IMMEDIATE transaction, in the
default rollback-journal mode (as better-sqlite3 opens a file), for a bounded time.
It prints one JSON line at the end: what the database holds.

`rewrite_duckflux` (imported, not a command) rewrites a duckflux JSON trace whole
again and again (truncate, then write in two parts, as the runtime's un-awaited
writes do), so a reader sometimes finds it empty or cut in half.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_runs_db import DDL

STEP_TYPES = ("fetch", "transform", "load", "notify")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- duckflux: a JSON file rewritten whole, hundreds of times -------------------------------


def duckflux_states(final: dict, rewrites: int) -> list[dict]:
    """The successive files of one execution: running with more and more finished
    steps (the runtime writes one after every step), then the final file."""
    steps = final["steps"]
    states = []
    for index in range(rewrites - 1):
        shown = steps[: len(steps) * index // max(rewrites - 1, 1)]
        execution = dict(final["execution"], status="running", finishedAt="", duration=0)
        execution["output"] = None
        states.append({"execution": execution, "steps": shown})
    states.append(final)
    return states


def rewrite_duckflux(
    path: Path, final: dict, *, rewrites: int, pause: float, rng: random.Random
) -> int:
    """Rewrite `path` `rewrites` times, ending with `final`; the file is truncated
    first and written in two parts with a short gap, so readers catch it empty or
    half-written now and then. Returns the number of writes."""
    for state in duckflux_states(final, rewrites):
        text = json.dumps(state, indent=2)
        cut = rng.randrange(1, len(text))
        with open(path, "w", encoding="utf-8") as handle:  # truncates: empty until written
            handle.write(text[:cut])
            handle.flush()
            time.sleep(pause * rng.random())
            handle.write(text[cut:])
        time.sleep(pause * rng.random())
    return rewrites


# --- runs: another process writing the database while it is re-synced -------------------------


class RunsWriter:
    def __init__(self, path: Path, seed: int):
        self.rng = random.Random(seed)
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.conn.executescript(DDL)
        self.open_runs: list[str] = []
        self.serial = 0

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:08d}{self.rng.randrange(16**6):06x}"

    def start_run(self) -> None:
        run_id, now = self._id("run_"), _now()
        with self._transaction():
            self.conn.execute(
                "INSERT INTO runs (id, run_type, trigger, actor_type, status, started_at, "
                "input, created_at, updated_at) VALUES (?, 'sync', 'cron', 'system', 'running', "
                "?, '{}', ?, ?)",
                (run_id, now, now, now),
            )
            for index in range(self.rng.randint(1, 4)):
                self._add_step(run_id, index, "completed" if index else "running", now)
        self.open_runs.append(run_id)

    def advance_run(self) -> None:
        """One more step in a running run, or finish it (completed or failed)."""
        run_id = self.rng.choice(self.open_runs)
        now = _now()
        with self._transaction():
            (count,) = self.conn.execute(
                "SELECT COUNT(*) FROM steps WHERE run_id = ?", (run_id,)
            ).fetchone()
            if self.rng.random() < 0.5:
                self._add_step(run_id, count, "running", now)
                return
            failed = self.rng.random() < 0.25
            self.conn.execute(
                "UPDATE steps SET status = ?, completed_at = ?, updated_at = ? "
                "WHERE run_id = ? AND status = 'running'",
                ("failed" if failed else "completed", now, now, run_id),
            )
            self.conn.execute(
                "UPDATE runs SET status = ?, completed_at = ?, updated_at = ?, error = ? "
                "WHERE id = ?",
                ("failed" if failed else "completed", now, now, "boom" if failed else None, run_id),
            )
        self.open_runs.remove(run_id)

    def _add_step(self, run_id: str, index: int, status: str, now: str) -> None:
        self.conn.execute(
            "INSERT INTO steps (id, run_id, step_index, actor_type, step_type, status, attempt, "
            "started_at, completed_at, created_at, updated_at) "
            "VALUES (?, ?, ?, 'system', ?, ?, 1, ?, ?, ?, ?)",
            (
                self._id("step_"),
                run_id,
                index,
                STEP_TYPES[index % len(STEP_TYPES)],
                status,
                now,
                now if status == "completed" else None,
                now,
                now,
            ),
        )

    def _transaction(self):
        conn = self.conn

        class Transaction:
            def __enter__(self):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, exc, tb):
                conn.execute("ROLLBACK" if kind else "COMMIT")

        return Transaction()

    def run(self, seconds: float, pause: float) -> dict:
        deadline = time.monotonic() + seconds
        changes = 0
        while time.monotonic() < deadline:
            if not self.open_runs or self.rng.random() < 0.4:
                self.start_run()
            else:
                self.advance_run()
            changes += 1
            time.sleep(pause * self.rng.random())
        return {"changes": changes, **snapshot(self.conn)}


def snapshot(conn: sqlite3.Connection) -> dict:
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    steps = conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    return {"runs": runs, "steps": steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs-db", help="write a runs database for a while")
    runs.add_argument("path", type=Path)
    runs.add_argument("--seconds", type=float, default=3.0)
    runs.add_argument("--pause", type=float, default=0.01, help="most seconds between changes")
    runs.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = RunsWriter(args.path, args.seed).run(args.seconds, args.pause)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
