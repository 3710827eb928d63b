"""Ingest per format beside a raw sqlite3 `executemany` copy of the same rows.

    nice .venv/bin/python bench/bench_ingest.py [--quick] [--repeat 3] [--only runs,workflow]
         [--profile]
    .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/bench_ingest.py --quick

For each format, every repeat runs (in alternation, so both see the same load):

- **ours**: `ingest_paths([path])` into the site's database (emptied before each
  repeat: every trace table and TraceFile), exactly as `manage.py ingest` does;
- **baseline**, in a new SQLite file with `journal_mode=WAL, synchronous=NORMAL`
  (the site's own pragmas), one transaction, no secondary indexes unless said:
  - *SQLite sources* (runs, workflow): the source tables copied row for row with
    `SELECT *` + `executemany(INSERT)` in batches of 5,000 into the same DDL as the
    source (its indexes included): runs/steps/calls/step_links; workflow_executions/
    execution_steps/execution_logs + events.db's execution_events.
  - *file formats* (duckflux, greentic, traceos): each file read whole and parsed with
    `orjson.loads` (JSONL: per line), then one row per run and per step (and per log
    record) built as a plain tuple and `executemany`'d into plain tables with the
    same columns as ours (`traces_run`, `traces_step`, `traces_logentry`: every
    concrete column, `id INTEGER PRIMARY KEY`, no other index); values mapped
    field to field, JSON values dumped with `orjson.dumps`; traceos enter/exit
    records paired into one step row per enter, as we do.

- **floor** (`--floor`, SQLite): our own rows, read back after our ingest, written
  again with `executemany` (batches of 2,000, one transaction) into an empty copy of
  the store's schema: its tables with every index, CHECK and foreign key, but no
  trigger (no full-text entries) and no read model. What the SQL of a row costs in the
  schema the pages need, before anything is parsed or computed: the part of the 2x
  budget no Python can win back.

The ratio is time ours / time baseline on the same input (target: ≤ 2, "at
least half the raw copy's speed"); the CPU ratio divides the two processes' own
CPU times (`time.process_time()`), which a machine shared with other work
inflates far less than wall time (on PostgreSQL it leaves out the server's CPU:
the "server CPU" column is our connection's backend's, read from /proc, and the last
ratio adds it to ours); rows/s are given each with its own count (the workflow copy
writes events.db rows that we merge into log rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import _setup  # Django on a fresh database
import orjson
from _data import dataset
from _measure import SqlTimer, machine_lines, median, profile_text, table
from bench_ingest_runs import raw_copy
from django.db import connection
from generate import EVENTS_DDL, WORKFLOW_DDL

from traces.ingest.loader import ingest_paths
from traces.models import Call, EntityLink, LogEntry, Run, RunMinimap, Step, StepGroup, TraceFile

FORMATS = ("duckflux-files", "duckflux-big", "greentic", "traceos", "runs", "workflow")
LABELS = {
    "duckflux-files": "duckflux JSON, many small files",
    "duckflux-big": "duckflux JSON, one ~500 MB file",
    "greentic": "greentic trace.json files",
    "traceos": "traceos JSONL dump",
    "runs": "runs SQLite database",
    "workflow": "workflow.db + events.db",
}


# --- our side -------------------------------------------------------------------------------


def clear_store() -> None:
    """Empty every table an ingest writes (plain DELETEs, children first)."""
    with connection.cursor() as cursor:
        for model in (RunMinimap, StepGroup, LogEntry, EntityLink, Call, Step, Run, TraceFile):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")


def server_cpu() -> float:
    """PostgreSQL: the CPU seconds (user + system) our connection's backend has spent so
    far, from /proc (the server runs on this machine); NaN elsewhere."""
    if connection.vendor != "postgresql":
        return float("nan")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime and stime: the stat line's 14th and 15th fields (after the name's ")").
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ours(path: Path) -> tuple[float, float, dict, SqlTimer, float]:
    timer = SqlTimer()
    server = server_cpu()
    start, cpu = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(timer):
        report = ingest_paths([path])
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    server = server_cpu() - server
    summary = report.summary()
    assert not summary["errors"], summary["errors"][:3]
    return took, cpu, summary, timer, server


# --- baselines ------------------------------------------------------------------------------


def _columns(model) -> list[str]:
    return [field.column for field in model._meta.concrete_fields]


class PlainDB:
    """Plain tables with the same columns as ours, written with executemany."""

    MODELS = {"run": Run, "step": Step, "log": LogEntry}

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path)
        self.conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        self.columns = {}
        self.sql = {}
        for name, model in self.MODELS.items():
            columns = _columns(model)
            self.columns[name] = columns
            defs = ", ".join("id INTEGER PRIMARY KEY" if c == "id" else c for c in columns)
            self.conn.execute(f"CREATE TABLE {name} ({defs})")
            marks = ", ".join("?" * len(columns))
            self.sql[name] = f"INSERT INTO {name} VALUES ({marks})"
        self.next_id = dict.fromkeys(self.MODELS, 0)
        self.rows = 0

    def row(self, name: str, values: dict) -> tuple:
        self.next_id[name] += 1
        values["id"] = self.next_id[name]
        return tuple(values.get(column) for column in self.columns[name])

    def insert(self, name: str, rows: list[tuple]) -> None:
        self.conn.executemany(self.sql[name], rows)
        self.rows += len(rows)

    def close(self) -> int:
        self.conn.commit()
        self.conn.close()
        return self.rows


def _dump(value) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def baseline_duckflux(path: Path, db: PlainDB) -> None:
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    for file in files:
        doc = orjson.loads(file.read_bytes())
        ex = doc["execution"]
        run = db.row(
            "run",
            {
                "format": "duckflux", "origin": "", "external_id": ex["id"],
                "name": ex.get("workflowName") or "", "type": ex.get("workflowId") or "",
                "status": ex["status"], "raw_status": ex["status"],
                "started_at": ex.get("startedAt"), "finished_at": ex.get("finishedAt"),
                "duration_ms": ex.get("duration"), "input": _dump(ex.get("inputs")),
                "output": _dump(ex.get("output")), "attributes": "{}",
            },
        )  # fmt: skip
        db.insert("run", [run])
        run_id = run[0]
        rows = [
            db.row(
                "step",
                {
                    "run_id": run_id,
                    "key": str(s["seq"]),
                    "seq": s["seq"],
                    "position": i,
                    "depth": 0,
                    "name": s.get("name", ""),
                    "type": s.get("type", ""),
                    "status": s["status"],
                    "raw_status": s["status"],
                    "started_at": s.get("startedAt"),
                    "finished_at": s.get("finishedAt"),
                    "duration_ms": s.get("duration"),
                    "input": _dump(s.get("input")),
                    "output": _dump(s.get("output")),
                    "error": s.get("error", ""),
                    "retries": s.get("retries"),
                    "loop_index": s.get("loopIndex"),
                    "attributes": "{}",
                },
            )
            for i, s in enumerate(doc["steps"])
        ]
        db.insert("step", rows)


def baseline_greentic(path: Path, db: PlainDB) -> None:
    for file in sorted(path.rglob("trace.json")):
        doc = orjson.loads(file.read_bytes())
        steps = doc["steps"]
        failed = bool(steps and "error" in steps[-1])
        run = db.row(
            "run",
            {
                "format": "greentic", "external_id": file.stat().st_mtime_ns,
                "name": doc["flow"]["id"], "status": "failed" if failed else "succeeded",
                "attributes": _dump({"pack": doc.get("pack"), "flow": doc.get("flow")}),
            },
        )  # fmt: skip
        db.insert("run", [run])
        rows = []
        for i, s in enumerate(steps):
            error = s.get("error")
            rows.append(
                db.row(
                    "step",
                    {
                        "run_id": run[0],
                        "key": str(i),
                        "seq": i + 1,
                        "position": i,
                        "name": s["node_id"],
                        "type": s["component_id"],
                        "status": "failed" if error else "succeeded",
                        "duration_ms": s.get("duration_ms"),
                        "input": _dump(s.get("invocation_json")),
                        "error": error["message"] if error else "",
                        "attributes": _dump(
                            {
                                "operation": s.get("operation"),
                                "input_hash": s.get("input_hash"),
                                "output_hash": s.get("output_hash"),
                            }
                        ),
                    },
                )
            )
        db.insert("step", rows)


def baseline_traceos(path: Path, db: PlainDB) -> None:
    runs: dict[str, dict] = {}
    steps: dict[str, list[dict]] = {}
    open_steps: dict[tuple[str, str], dict] = {}
    with open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            trace = record["trace_id"]
            if record["type"] == "env":
                runs[trace] = {
                    "format": "traceos", "external_id": trace, "trigger": record["source"],
                    "started_at": record["ts"], "input": _dump(record["payload"]),
                    "status": "succeeded", "attributes": "{}",
                }  # fmt: skip
                continue
            node = record["node"]
            if record["status"] == "enter":
                step = {
                    "key": str(record["step_id"]), "seq": record["step_id"], "name": node,
                    "status": "running", "started_at": record["at"],
                    "input": _dump(record.get("meta")), "attributes": "{}",
                }  # fmt: skip
                steps.setdefault(trace, []).append(step)
                open_steps[(trace, node)] = step
            else:
                step = open_steps.pop((trace, node), None)
                if step is not None:
                    step["finished_at"] = record["at"]
                    step["duration_ms"] = record["at"] - step["started_at"]
                    if record["status"] == "exit":
                        step["status"], step["output"] = "succeeded", _dump(record.get("meta"))
                    else:
                        step["status"], step["error"] = "failed", _dump(record.get("meta"))
    run_rows, step_rows = [], []
    for trace, values in runs.items():
        run = db.row("run", values)
        run_rows.append(run)
        for position, step in enumerate(steps.get(trace, [])):
            step["run_id"], step["position"] = run[0], position
            step_rows.append(db.row("step", step))
    db.insert("run", run_rows)
    db.insert("step", step_rows)


def baseline_workflow(path: Path, target: Path) -> int:
    dst = sqlite3.connect(target)
    dst.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + WORKFLOW_DDL + EVENTS_DDL
    )
    rows = 0
    sources = [
        (path, ("workflow_executions", "execution_steps", "execution_logs")),
        (path.parent / "events.db", ("execution_events",)),
    ]
    for source, tables in sources:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        for name in tables:
            cursor = src.execute(f"SELECT * FROM {name}")
            marks = ", ".join("?" * len(cursor.description))
            while batch := cursor.fetchmany(5000):
                dst.executemany(f"INSERT INTO {name} VALUES ({marks})", batch)
                rows += len(batch)
        src.close()
    dst.commit()
    dst.close()
    return rows


def baseline(name: str, path: Path, scratch: Path) -> tuple[float, float, int]:
    target = scratch / f"baseline-{name}-{time.monotonic_ns()}.sqlite"
    start, cpu = time.perf_counter(), time.process_time()
    if name == "runs":
        rows = raw_copy(path, target)
    elif name == "workflow":
        rows = baseline_workflow(path, target)
    else:
        db = PlainDB(target)
        {"greentic": baseline_greentic, "traceos": baseline_traceos}.get(name, baseline_duckflux)(
            path, db
        )
        rows = db.close()
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    for leftover in scratch.glob(f"{target.name}*"):
        leftover.unlink()
    return took, cpu, rows


# --- the floor: our rows into our schema ---------------------------------------------------

# The tables an ingest writes rows to, parents first (the read models are left out).
FLOOR_TABLES = (TraceFile, Run, Step, Call, EntityLink, LogEntry)


def empty_schema_copy(scratch: Path) -> Path:
    """The emptied store's schema in a file of its own, its triggers dropped."""
    template = scratch / "floor-template.sqlite"
    with connection.cursor() as cursor:
        cursor.execute("VACUUM INTO %s", [str(template)])
    conn = sqlite3.connect(template)
    triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for (name,) in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.commit()
    conn.close()
    return template


def stored_rows() -> list[tuple[str, list[tuple]]]:
    """Every row our ingest stored in FLOOR_TABLES, in id order, each table named
    with its stored columns."""
    tables = []
    with connection.cursor() as cursor:
        for model in FLOOR_TABLES:
            table_name = model._meta.db_table
            # Stored columns only: table_info leaves out the generated ones.
            cursor.execute(f"PRAGMA table_info({table_name})")
            columns = ", ".join(f'"{row[1]}"' for row in cursor.fetchall())
            cursor.execute(f"SELECT {columns} FROM {table_name} ORDER BY id")
            tables.append((f"{table_name} ({columns})", cursor.fetchall()))
    return tables


def floor(template: Path, tables: list[tuple[str, list[tuple]]], scratch: Path):
    """Write `tables` into a fresh copy of `template`: (wall, CPU) seconds."""
    target = scratch / f"floor-{time.monotonic_ns()}.sqlite"
    shutil.copyfile(template, target)
    start, cpu = time.perf_counter(), time.process_time()
    conn = sqlite3.connect(target, isolation_level=None)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN IMMEDIATE")
    for table_name, rows in tables:
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            sql = f"INSERT INTO {table_name} VALUES ({marks})"
            for at in range(0, len(rows), 2000):
                conn.executemany(sql, rows[at : at + 2000])
    conn.execute("COMMIT")
    conn.close()
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    for leftover in scratch.glob(f"{target.name}*"):
        leftover.unlink()
    return took, cpu


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated: " + ", ".join(FORMATS))
    parser.add_argument("--profile", action="store_true", help="also profile one ingest each")
    parser.add_argument("--profile-sort", default="cumulative", help="cumulative or tottime")
    parser.add_argument(
        "--floor", action="store_true", help="SQLite: also our rows into our schema (see above)"
    )
    args = parser.parse_args()
    if args.floor and connection.vendor != "sqlite":
        parser.error("--floor measures SQLite")
    chosen = [f for f in FORMATS if not args.only or f in args.only.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="tracer-bench-baseline-", dir=_setup.WORKDIR))
    results = []
    profiles = {}
    for name in chosen:
        path, made = dataset(name, args.quick, log=lambda m: print(m, file=sys.stderr))
        our_times, base_times, sql_times, our_rows, base_rows = [], [], [], 0, 0
        our_cpu, base_cpu, server_times, floor_cpu = [], [], [], []
        for attempt in range(args.repeat):
            clear_store()
            template = empty_schema_copy(scratch) if args.floor else None
            took, cpu, summary, timer, server = ours(path)
            if template is not None:
                floor_cpu.append(floor(template, stored_rows(), scratch)[1])
                template.unlink()
            our_times.append(took)
            our_cpu.append(cpu)
            server_times.append(server)
            sql_times.append(timer.seconds)
            our_rows = sum(summary[k] for k in ("runs", "steps", "calls", "links", "logs"))
            base_took, cpu, base_rows = baseline(name, path, scratch)
            base_times.append(base_took)
            base_cpu.append(cpu)
            print(
                f"{name} #{attempt + 1}: ours {took:.2f} s ({our_rows:,} rows, SQL "
                f"{timer.seconds:.2f} s in {timer.count:,} statements; CPU {our_cpu[-1]:.2f} s, "
                f"server CPU {server:.2f} s), baseline "
                f"{base_took:.2f} s ({base_rows:,} rows)",
                file=sys.stderr,
            )
        if args.profile:
            clear_store()
            profiles[name] = profile_text(
                lambda p=path: ingest_paths([p]), top=30, sort=args.profile_sort
            )
        ours_s, base_s = median(our_times), median(base_times)
        size = made.get("bytes") or _size(path)
        results.append(
            [
                LABELS[name],
                f"{made.get('runs', 0):,} runs / {made.get('steps', 0):,} steps"
                f" / {size / 1e6:,.0f} MB",
                f"{ours_s:.2f} s",
                f"{our_rows / ours_s:,.0f}",
                f"{median(sql_times) / ours_s:.0%}",
                f"{base_s:.2f} s",
                f"{base_rows / base_s:,.0f}",
                f"{ours_s / base_s:.2f}x",
                f"{median(our_cpu) / median(base_cpu):.2f}x",
                f"{median(server_times):.2f} s",
                f"{(median(our_cpu) + median(server_times)) / median(base_cpu):.2f}x",
                "yes" if ours_s <= 2 * base_s else f"no ({ours_s / base_s / 2:.1f}x over)",
            ]
            + ([f"{median(floor_cpu) / median(base_cpu):.2f}x"] if args.floor else [])
        )
    print(f"\n## Ingest per format vs a raw sqlite3 executemany copy ({connection.vendor})\n")
    print("\n".join(machine_lines(connection.vendor)))
    print(
        f"- command: `nice .venv/bin/python bench/bench_ingest.py"
        f"{' --quick' if args.quick else ''}{' --floor' if args.floor else ''} --repeat "
        f"{args.repeat}`; medians of {args.repeat}\n"
    )
    headers = [
        "format",
        "data",
        "ours",
        "ours rows/s",
        "ours: share in SQL",
        "baseline",
        "baseline rows/s",
        "time ratio",
        "CPU ratio",
        "server CPU",
        "CPU ratio with the server's",
        "≥ ½ raw speed",
    ]
    if args.floor:
        headers.append("floor: our rows into our schema, CPU ratio")
    print(table(headers, results, "llrrrrrrrrrl" + "r" * args.floor))
    for name, text in profiles.items():
        print(f"\n### profile: {name} (by {args.profile_sort})\n\n```\n{text}\n```")


def _size(path: Path) -> int:
    if path.is_file():
        size = path.stat().st_size
        events = path.parent / "events.db"
        return size + (events.stat().st_size if path.name == "workflow.db" else 0)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    main()
