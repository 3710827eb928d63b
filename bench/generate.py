"""Generate large trace data in every format (FORMATS.md) for the benchmarks.

    python bench/generate.py duckflux-big  /tmp/big.json --steps 50000 --payload 10000
    python bench/generate.py duckflux-dir  /tmp/duckflux --files 10000 --steps 10
    python bench/generate.py greentic-dir  /tmp/greentic --files 2000
    python bench/generate.py traceos       /tmp/traces.jsonl --traces 20000 --steps 10
    python bench/generate.py workflow      /tmp/wf --executions 10000 --steps 10
    python bench/generate.py runs          /tmp/runs.sqlite --runs 500 --steps 50000 --calls 100000

Everything is written streaming or with `executemany`, from a seeded
`random.Random`: the same arguments give the same bytes (file mtimes aside).
Failed steps carry varied error messages (`error_message()`): a few causes
dominate, each with particulars (ids, numbers, hosts) that make thousands of
distinct raw messages, as real stores have.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

try:  # as a script (bench/ on sys.path) or as a module of the `bench` package
    from generate_runs_db import generate_runs_db, iso
except ImportError:  # pragma: no cover
    from bench.generate_runs_db import generate_runs_db, iso

BASE_MS = 1_772_430_000_000  # 2026-03-02T05:40:00Z
_HEX = "0123456789abcdef"
_B36 = string.digits + string.ascii_lowercase


# --- shared -------------------------------------------------------------------------------


def rng_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(_HEX, k=n))


_TABLES = ("facts", "orders", "invoices", "line_items", "customers")
_HOSTS = ("api.stripe.com", "orders.internal", "inventory.internal", "s3.amazonaws.com")


def error_message(rng: random.Random) -> str:
    """A failure message: ~12 causes with skewed frequencies, each with particulars."""
    roll = rng.random()
    if roll < 0.22:
        table = rng.choice(_TABLES)
        return (
            f'duplicate key value violates unique constraint "{table}_pkey" '
            f"Key (id)=(tx_{_hex(rng, 12)}) already exists"
        )
    if roll < 0.38:
        return f"429 Too Many Requests: rate limit exceeded, retry after {rng.randint(1, 90)}s"
    if roll < 0.50:
        return f"operation timed out after {rng.choice((300, 1000, 5000, 30000))}ms"
    if roll < 0.60:
        return f"connect ECONNREFUSED 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}:5432"
    if roll < 0.68:
        return (
            f"insufficient stock for sku SKU-{rng.randint(1000, 9999)}: "
            f"requested {rng.randint(2, 9)}, available {rng.randint(0, 1)}"
        )
    if roll < 0.75:
        return f"exit code {rng.choice((1, 2, 127, 137))}"
    if roll < 0.81:
        return (
            f"HTTP 503 Service Unavailable from https://{rng.choice(_HOSTS)}/v1/orders/"
            f"{rng_uuid(rng)}"
        )
    if roll < 0.86:
        return f'ERROR: relation "{rng.choice(_TABLES)}" does not exist'
    if roll < 0.90:
        return (
            "Traceback (most recent call last):\n"
            f'  File "/app/etl/load.py", line {rng.randint(10, 400)}, in load_rows\n'
            "    value = float(row[column])\n"
            f"ValueError: could not convert string to float: 'N/A' (row {rng.randint(1, 10**6)})"
        )
    if roll < 0.94:
        return (
            f"payment ch_{_hex(rng, 14)} declined: card_declined (insufficient_funds) "
            f"for customer cus_{rng.randint(1, 99999):05d}"
        )
    if roll < 0.97:
        return "invalid payload for provider.invoke"
    # The long tail: rare causes, each its own group.
    state = rng.choice(("paused", "archived", "locked"))
    return f"unexpected state {state} in stage {rng.choice(string.ascii_uppercase)}"


def _text_block(rng: random.Random, size: int) -> str:
    """Printable text (no newline) of about `size` characters, to slice payloads from."""
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(500)]
    out, length = [], 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


# --- duckflux JSON (FORMATS.md §1) ----------------------------------------------------------


@dataclass(slots=True)
class _DuckStep:
    seq: int
    name: str
    type: str
    start: int
    end: int
    status: str
    loop_index: int | None = None
    retries: int | None = None


def _duckflux_plan(rng: random.Random, count: int, start: int, failure_rate: float):
    """The steps of one execution in completion order: plain steps, loops (a
    container written after its iterations' children) and parallel blocks
    (branches in finishing order, then the container). Returns (steps, end)."""
    steps: list[_DuckStep] = []
    seq, clock = 0, start

    def status() -> str:
        roll = rng.random()
        if roll < failure_rate:
            return "failure"
        return "skipped" if roll < failure_rate + 0.02 else "success"

    while len(steps) < count:
        left = count - len(steps)
        roll = rng.random()
        if roll < 0.08 and left >= 4:  # a loop of 1-step iterations
            seq += 1
            loop_seq, loop_start = seq, clock
            iterations = min(rng.randint(2, 6), left - 1)
            for index in range(iterations):
                seq += 1
                took = rng.randint(1, 40)
                steps.append(
                    _DuckStep(seq, "fetch_page", "http", clock, clock + took, "success", index)
                )
                clock += took
            steps.append(_DuckStep(loop_seq, "pages", "loop", loop_start, clock, "success"))
        elif roll < 0.12 and left >= 4:  # parallel branches
            seq += 1
            par_seq, par_start = seq, clock
            branches = []
            for branch in range(min(rng.randint(2, 3), left - 1)):
                seq += 1
                took = rng.randint(1, 60)
                branches.append(
                    _DuckStep(seq, f"branch_{branch}", "exec", clock, clock + took, status())
                )
            branches.sort(key=lambda s: (s.end, s.seq))
            steps.extend(branches)
            clock = branches[-1].end
            steps.append(_DuckStep(par_seq, "parallel", "parallel", par_start, clock, "success"))
        else:
            seq += 1
            took = rng.randint(1, 200)
            kind = rng.choice(("exec", "exec", "http", "set", "emit"))
            step = _DuckStep(seq, rng.choice(("extract", "transform", "load", "notify")), kind,
                             clock, clock + took, status())  # fmt: skip
            if step.status == "success" and rng.random() < 0.03:
                step.retries = rng.randint(1, 3)
            steps.append(step)
            clock += took + rng.randint(0, 3)
    return steps, clock


def _duckflux_step(rng, plan: _DuckStep, payload: str | None) -> dict:
    step: dict = {
        "seq": plan.seq,
        "name": plan.name,
        "type": plan.type,
        "startedAt": iso(plan.start),
        "finishedAt": iso(plan.end),
        "duration": plan.end - plan.start,
        "status": plan.status,
    }
    if plan.status == "skipped":
        step["duration"] = 0
        return step
    if plan.type not in ("loop", "parallel"):
        step["input"] = {"offset": plan.seq * 50, "limit": 50}
    if plan.status == "failure":
        step["error"] = error_message(rng)
    elif payload is not None:
        step["output"] = payload
    elif plan.type not in ("loop", "parallel"):
        step["output"] = {"rows": rng.randint(0, 5000), "ok": True}
    if plan.retries:
        step["retries"] = plan.retries
    if plan.loop_index is not None:
        step["loopIndex"] = plan.loop_index
    return step


def _execution(rng, run_id: str, start: int, end: int, plan: list[_DuckStep]) -> dict:
    failed = any(step.status == "failure" for step in plan)
    workflow = rng.choice(("etl-nightly", "sync-orders", "export-report"))
    return {
        "id": run_id,
        "workflowId": workflow,
        "workflowName": workflow.replace("-", " ").title(),
        "workflowVersion": rng.randint(1, 9),
        "startedAt": iso(start),
        "finishedAt": iso(end),
        "duration": (end - start) + rng.random(),
        "status": "failure" if failed else "success",
        "inputs": {"date": "2026-03-01"},
        "output": None if failed else {"rows": rng.randint(0, 10**6)},
    }


def _indent(data: bytes, spaces: int) -> bytes:
    return data.replace(b"\n", b"\n" + b" " * spaces)


def write_duckflux_json(
    path: str | Path,
    *,
    steps: int,
    payload_bytes: int = 0,
    failure_rate: float = 0.03,
    seed: int = 0,
    start_ms: int = BASE_MS,
) -> dict:
    """One duckflux `<id>.json` as `JSON.stringify(trace, null, 2)` writes it, streamed
    step by step (a 500 MB file never sits in memory). With `payload_bytes`, every
    successful step's output is a string that long (stdout that is not JSON)."""
    rng = random.Random(seed)
    run_id = rng_uuid(rng)
    plan, end = _duckflux_plan(rng, steps, start_ms, failure_rate)
    execution = _execution(rng, run_id, start_ms, end, plan)
    block = _text_block(rng, payload_bytes * 2) if payload_bytes else ""
    path = Path(path)
    if path.is_dir():
        path = path / f"{run_id}.json"
    option = orjson.OPT_INDENT_2
    with open(path, "wb", buffering=1 << 20) as handle:
        handle.write(b'{\n  "execution": ')
        handle.write(_indent(orjson.dumps(execution, option=option), 2))
        handle.write(b',\n  "steps": [')
        for index, item in enumerate(plan):
            payload = None
            if payload_bytes:
                offset = rng.randrange(payload_bytes)
                payload = block[offset : offset + payload_bytes] + "\n"
            data = orjson.dumps(_duckflux_step(rng, item, payload), option=option)
            handle.write(b"\n    " if index == 0 else b",\n    ")
            handle.write(_indent(data, 4))
        handle.write(b"\n  ]\n}" if plan else b"]\n}")
    return {"path": str(path), "runs": 1, "steps": len(plan), "bytes": path.stat().st_size}


def write_duckflux_dir(
    directory: str | Path,
    *,
    files: int,
    steps: int = 10,
    failure_rate: float = 0.03,
    seed: int = 0,
    per_folder: int = 500,
) -> dict:
    """`files` small duckflux JSON traces, `per_folder` to a sub-directory."""
    directory = Path(directory)
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        folder = directory / f"d{index // per_folder:04d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        count = max(1, steps + rng.randint(-steps // 3, steps // 3))
        made = write_duckflux_json(
            folder,
            steps=count,
            failure_rate=failure_rate,
            seed=rng.getrandbits(64),
            start_ms=BASE_MS + index * 60_000,
        )
        total += made["steps"]
    return {"path": str(directory), "files": files, "runs": files, "steps": total}


# --- greentic trace.json (FORMATS.md §5) -------------------------------------------------------

_COMPONENTS = (
    ("component.exec", "process"),
    ("ai.greentic.llm-router", "classify"),
    ("provider.invoke", "orders.get"),
    ("provider.invoke", "crm.lookup"),
    ("emit.response", "unknown"),
    ("session.wait", "unknown"),
)


def _greentic_trace(rng: random.Random, failure_rate: float) -> dict:
    count = rng.choice((3, 5, 8, 12, 20, 20))
    failed = rng.random() < failure_rate
    steps = []
    for index in range(count):
        component, operation = rng.choice(_COMPONENTS)
        step = {
            "node_id": f"node_{index}",
            "component_id": component,
            "operation": operation,
            "input_hash": {"algorithm": "blake3", "value": _hex(rng, 64)},
        }
        last = index == count - 1
        if not (failed and last):
            step["output_hash"] = {"algorithm": "blake3", "value": _hex(rng, 64)}
        step["duration_ms"] = rng.randint(0, 1500)
        if failed and last:
            step["error"] = {
                "code": "node_error",
                "message": f"component {component} failed: {error_message(rng)}",
                "details": None,
            }
        steps.append(step)
    return {
        "trace_version": 1,
        "runner_version": "0.4.59",
        "pack": {"pack_ref": rng.choice(("support-bot", "oci://ghcr.io/acme/billing:1.2"))},
        "flow": {"id": rng.choice(("support_bot.triage", "billing.refund")), "version": "1.4.0"},
        "steps": steps,
    }


def write_greentic_dir(
    directory: str | Path, *, files: int, failure_rate: float = 0.5, seed: int = 0
) -> dict:
    """`files` greentic `trace.json` files, one per sub-directory (every invocation
    of the runner writes the same name)."""
    directory = Path(directory)
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        folder = directory / f"g{index // 1000:03d}" / f"run{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        trace = _greentic_trace(rng, failure_rate)
        total += len(trace["steps"])
        (folder / "trace.json").write_bytes(orjson.dumps(trace, option=orjson.OPT_INDENT_2))
    return {"path": str(directory), "files": files, "runs": files, "steps": total}


# --- traceos JSONL dump (FORMATS.md §2) ----------------------------------------------------------


def _traceos_trace(rng: random.Random, steps: int, start: int, failure_rate: float) -> list[dict]:
    """One trace's records: env, then a `handler` step around `steps - 1` child
    nodes (some with a nested `db.*` node). A failing child ends the trace with
    `error`: the handler is never closed."""
    ms36 = "".join(rng.choices(_B36, k=11))
    trace_id, env_id = f"tr_{start}_{ms36}", f"env_{start}_{''.join(rng.choices(_B36, k=11))}"
    records: list[dict] = [
        {
            "type": "env",
            "env_id": env_id,
            "trace_id": trace_id,
            "ts": start,
            "source": rng.choice(("webhook", "cron", "api")),
            "payload": {"event": "invoice.paid", "invoice_id": f"in_{rng.randint(1, 10**6)}"},
        }
    ]
    clock, step_id = start, 0

    def record(node: str, status: str, meta=None) -> None:
        nonlocal step_id
        step_id += 1
        item = {
            "type": "step",
            "trace_id": trace_id,
            "env_id": env_id,
            "step_id": step_id,
            "at": clock,
            "node": node,
            "status": status,
        }
        if meta is not None:
            item["meta"] = meta
        records.append(item)

    record("handler", "enter", {"route": "/webhooks/stripe"})
    made = 1
    fail_at = rng.randrange(1, steps) if steps > 1 and rng.random() < failure_rate else -1
    while made < steps:
        node = rng.choice(("parse", "validate", "persist", "notify", "fetch.upstream"))
        record(node, "enter", {"attempt": 1})
        made += 1
        nested = made < steps and rng.random() < 0.3
        if nested:
            clock += rng.randint(0, 3)
            record("db.insert", "enter", {"sql": "INSERT INTO invoices ..."})
            made += 1
            clock += rng.randint(1, 20)
            record("db.insert", "exit", {"rows": 1})
        clock += rng.randint(1, 30)
        if made - 1 >= fail_at > 0:
            meta = error_message(rng) if rng.random() < 0.5 else {"message": error_message(rng)}
            record(node, "error", meta)
            return records  # terminal: the handler stays open
        record(node, "exit", {"ok": True})
    clock += 1
    record("handler", "exit", {"status": 200})
    return records


def write_traceos_jsonl(
    path: str | Path,
    *,
    traces: int,
    steps: int = 10,
    failure_rate: float = 0.05,
    concurrency: int = 4,
    seed: int = 0,
) -> dict:
    """A `getAllTraces()` dump as JSONL: the records of `concurrency` traces at a
    time interleaved (each trace's own records stay in order)."""
    rng = random.Random(seed)
    path = Path(path)
    total_steps = 0
    with open(path, "wb", buffering=1 << 20) as handle:
        for first in range(0, traces, concurrency):
            group = []
            for index in range(first, min(first + concurrency, traces)):
                records = _traceos_trace(rng, steps, BASE_MS + index * 500, failure_rate)
                total_steps += sum(1 for r in records if r.get("status") == "enter")
                group.append(records)
            cursors = [0] * len(group)
            while any(c < len(g) for c, g in zip(cursors, group, strict=True)):
                for which, records in enumerate(group):
                    take = rng.randint(1, 3)
                    for item in records[cursors[which] : cursors[which] + take]:
                        handle.write(orjson.dumps(item) + b"\n")
                    cursors[which] += take
    return {"path": str(path), "runs": traces, "steps": total_steps}


# --- workflow-go workflow.db + events.db (FORMATS.md §4) ----------------------------------

WORKFLOW_DDL = """
CREATE TABLE companies (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL, owner_id TEXT NOT NULL DEFAULT '',
    parent_id TEXT, is_system INTEGER NOT NULL DEFAULT 0, metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE projects (
    id TEXT PRIMARY KEY, company_id TEXT NOT NULL, name TEXT NOT NULL, slug TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', is_system INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE workflows (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, slug TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', config_yaml TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 1, status TEXT NOT NULL DEFAULT 'draft',
    is_system INTEGER NOT NULL DEFAULT 0, created_by TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    workspace_dir TEXT DEFAULT '');
CREATE TABLE IF NOT EXISTS workflow_executions (
    id            TEXT PRIMARY KEY,
    workflow_id   TEXT NOT NULL,
    trigger_type  TEXT NOT NULL DEFAULT 'manual',
    trigger_data  TEXT DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'pending',
    output_data   TEXT DEFAULT '{}',
    error_message TEXT DEFAULT '',
    triggered_by  TEXT DEFAULT '',
    started_at    TEXT NOT NULL,
    completed_at  TEXT,
    duration_ms   INTEGER DEFAULT 0,
    metadata      TEXT DEFAULT '{}',
    FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS execution_steps (
    id            TEXT PRIMARY KEY,
    execution_id  TEXT NOT NULL,
    step_name     TEXT NOT NULL,
    step_type     TEXT NOT NULL,
    input_data    TEXT DEFAULT '{}',
    output_data   TEXT DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'pending',
    error_message TEXT DEFAULT '',
    started_at    TEXT,
    completed_at  TEXT,
    duration_ms   INTEGER DEFAULT 0,
    sequence_num  INTEGER NOT NULL,
    metadata      TEXT DEFAULT '{}',
    FOREIGN KEY (execution_id) REFERENCES workflow_executions(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS execution_logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id  TEXT NOT NULL,
    execution_id TEXT,
    level        TEXT NOT NULL DEFAULT 'info',
    message      TEXT NOT NULL,
    module_name  TEXT DEFAULT '',
    fields       TEXT DEFAULT '{}',
    created_at   TEXT NOT NULL,
    FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE CASCADE
);
"""

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS execution_events (
    id            TEXT PRIMARY KEY,
    execution_id  TEXT NOT NULL,
    sequence_num  INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    event_data    TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE(execution_id, sequence_num)
);
CREATE INDEX IF NOT EXISTS idx_execution_events_execution_id ON execution_events(execution_id);
CREATE INDEX IF NOT EXISTS idx_execution_events_event_type ON execution_events(event_type);
CREATE INDEX IF NOT EXISTS idx_execution_events_created_at ON execution_events(created_at);
"""

ADMIN_WORKFLOW = "35bf992d-c9e9-4616-a12e-7696a6cecc1b"
_PIPELINES = {
    "orders-commands:orders": (
        "POST /api/v1/orders",
        ("parse-request", "validate-order", "check-customer", "reserve-stock", "charge-card",
         "create-order", "publish-event", "send-email", "audit", "respond"),
    ),
    "orders-queries:{id}": (
        "GET /api/v1/orders/ord_{n}",
        ("parse-request", "check-scope", "check-cache", "load-order", "load-lines",
         "load-customer", "render", "cache-store", "audit", "respond"),
    ),
}  # fmt: skip


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(ms: int, rng: random.Random) -> str:
    base = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    nanos = f"{(ms % 1000) * 1_000_000 + rng.randrange(1_000_000):09d}".rstrip("0")
    return f"{base}.{nanos}Z" if nanos else f"{base}Z"


def _go_json(data: dict) -> str:
    text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _go_elapsed(ms: int, rng: random.Random) -> str:
    if ms == 0:
        return f"{rng.randint(50, 999)}.{rng.randint(100, 999)}µs"
    if ms < 1000:
        return f"{ms}.{rng.randint(100000, 999999)}ms"
    return f"{ms / 1000:.6f}s".rstrip("0")


@dataclass
class _WorkflowWriter:
    wf: sqlite3.Connection
    ev: sqlite3.Connection
    rng: random.Random
    executions: list
    steps: list
    logs: list
    events: list

    def flush(self) -> None:
        self.wf.executemany(
            f"INSERT INTO workflow_executions VALUES ({_marks(12)})", self.executions
        )
        self.wf.executemany(f"INSERT INTO execution_steps VALUES ({_marks(13)})", self.steps)
        self.wf.executemany(
            "INSERT INTO execution_logs (workflow_id, execution_id, level, message, module_name, "
            "fields, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.logs,
        )
        self.ev.executemany(f"INSERT INTO execution_events VALUES ({_marks(6)})", self.events)
        for rows in (self.executions, self.steps, self.logs, self.events):
            rows.clear()


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def write_workflow_dbs(
    directory: str | Path,
    *,
    executions: int,
    steps: int = 10,
    failure_rate: float = 0.1,
    seed: int = 0,
) -> dict:
    """`workflow.db` and `events.db` in `directory` as GoCodeAlone/workflow writes them:
    executions of two route pipelines, their steps by sequence_num, two log rows per
    event (info/error, then the `event` repeat) and one events.db row per event."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = directory / "workflow.db", directory / "events.db"
    for path in paths:
        path.unlink(missing_ok=True)
    wf, ev = sqlite3.connect(paths[0]), sqlite3.connect(paths[1])
    wf.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + WORKFLOW_DDL)
    ev.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + EVENTS_DDL)
    seeded = "2026-07-16T08:59:41Z"
    wf.execute(
        "INSERT INTO workflows (id, project_id, name, slug, description, version, status, "
        "is_system, created_by, updated_by, created_at, updated_at) "
        "VALUES (?, ?, 'Admin Configuration', 'admin-configuration', "
        "'System administration config', 1, 'active', 1, 'system', 'system', ?, ?)",
        (ADMIN_WORKFLOW, "78e51061-7311-48a3-82ce-6f447ed4d57b", seeded, seeded),
    )
    writer = _WorkflowWriter(wf, ev, rng, [], [], [], [])
    made = {"runs": executions, "steps": 0, "logs": 0, "events": 0}
    for index in range(executions):
        counts = _workflow_execution(writer, index, steps, failure_rate)
        for name, value in counts.items():
            made[name] += value
        if len(writer.logs) > 20_000:
            writer.flush()
    writer.flush()
    for conn in (wf, ev):
        conn.commit()
        conn.close()
    return {"path": str(paths[0]), **made}


def _workflow_execution(w: _WorkflowWriter, index: int, steps: int, failure_rate: float) -> dict:
    rng = w.rng
    pipeline = rng.choice(list(_PIPELINES))
    trigger, names = _PIPELINES[pipeline]
    if steps <= len(names):
        names = names[:steps]
    else:
        names = [*names, *(f"step-{i}" for i in range(len(names), steps))]
    exec_id = rng_uuid(rng)
    start = BASE_MS + index * 7_000 + rng.randrange(1000)
    fail_at = rng.randrange(len(names)) if rng.random() < failure_rate else -1
    user = rng.choice(("alice@acme.io", "bob@acme.io", "carol@acme.io", ""))
    event_seq = 0
    log_rows = 0
    clock = start

    def event(kind: str, data: dict, level: str, message: str, module: str = "") -> None:
        nonlocal event_seq, log_rows
        event_seq += 1
        log_rows += 1 if level == "event" else 2
        fields = _go_json(data)
        when = _rfc3339(clock)
        w.logs.append((ADMIN_WORKFLOW, exec_id, level, message, module, fields, when))
        if level != "event":
            w.logs.append((ADMIN_WORKFLOW, exec_id, "event", kind, module, fields, when))
        nano = _rfc3339_nano(clock, rng)
        w.events.append((rng_uuid(rng), exec_id, event_seq, kind, fields, nano))

    event("execution.started", {"pipeline": pipeline, "step_count": len(names)}, "info",
          f"Execution started: pipeline={pipeline}")  # fmt: skip
    error = ""
    made = 0
    for number, name in enumerate(names, start=1):
        step_start = clock
        event("step.started", {"index": number - 1, "step_name": name}, "info",
              f"Step started: {name}", name)  # fmt: skip
        took = rng.choice((0, 0, 1, 2, 5, 12, 40))
        clock += took
        elapsed = _go_elapsed(took, rng)
        failed = number - 1 == fail_at
        made += 1
        message = error_message(rng) if failed else ""
        w.steps.append((
            rng_uuid(rng), exec_id, name, name, "{}", "{}", "failed" if failed else "completed",
            message, _rfc3339(step_start), _rfc3339(clock), took, number, "{}",
        ))  # fmt: skip
        if failed:
            event("step.failed", {"elapsed": elapsed, "error": message, "step_name": name},
                  "error", f"step.failed: {message}", name)  # fmt: skip
            error = f'step "{name}" failed: {message}'
            break
        event("step.completed", {"elapsed": elapsed, "step_name": name}, "info",
              f"Step completed: {name} ({elapsed})", name)  # fmt: skip
    total = clock - start
    if error:
        event("execution.failed", {"elapsed": _go_elapsed(total, rng), "error": error}, "error",
              f"execution.failed: {error}")  # fmt: skip
    else:
        elapsed = _go_elapsed(total, rng)
        event("execution.completed", {"elapsed": elapsed, "pipeline": pipeline}, "info",
              f"Execution completed ({elapsed})")  # fmt: skip
    metadata = '{"config_version":"sha256:' + "0e873a" + "0" * 58 + '"}'
    w.executions.append((
        exec_id, ADMIN_WORKFLOW, trigger.replace("{n}", _hex(rng, 10)), "{}",
        "failed" if error else "completed", "{}", error, user, _rfc3339(start), _rfc3339(clock),
        total, metadata,
    ))  # fmt: skip
    return {"steps": made, "logs": log_rows, "events": event_seq}


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "kind",
        choices=("duckflux-big", "duckflux-dir", "greentic-dir", "traceos", "workflow", "runs"),
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument(
        "--payload", type=int, default=10_000, help="duckflux-big: bytes per output"
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.kind == "duckflux-big":
        made = write_duckflux_json(
            args.path, steps=args.steps or 50_000, payload_bytes=args.payload, seed=args.seed
        )
    elif args.kind == "duckflux-dir":
        made = write_duckflux_dir(
            args.path, files=args.files, steps=args.steps or 10, seed=args.seed
        )
    elif args.kind == "greentic-dir":
        made = write_greentic_dir(args.path, files=args.files, seed=args.seed)
    elif args.kind == "traceos":
        made = write_traceos_jsonl(
            args.path, traces=args.traces, steps=args.steps or 10, seed=args.seed
        )
    elif args.kind == "workflow":
        made = write_workflow_dbs(
            args.path, executions=args.executions, steps=args.steps or 10, seed=args.seed
        )
    else:
        made = generate_runs_db(
            args.path, runs=args.runs, steps=args.steps or 50_000, calls=args.calls, seed=args.seed
        )
    print(f"{args.kind}: {made} in {time.perf_counter() - began:.1f} s")


def iter_duckflux_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.rglob("*.json"))


if __name__ == "__main__":
    main()
