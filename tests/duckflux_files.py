"""duckflux traces built for the tests, and helpers to read them back.

The TXT and SQLite builders follow duckflux's own writers
(`packages/core/src/tracer/writers/{txt,sqlite}.ts`), so a JSON sample rendered
through them must parse to the same steps as the JSON itself.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from traces.ingest import duckflux
from traces.ingest.records import RunRecord, Status, StepRecord

DUCKFLUX = Path(__file__).resolve().parent.parent / "samples" / "duckflux"
MANIFEST = json.loads((DUCKFLUX / "manifest.json").read_text())
TRACE_DIRS = ("json", "txt", "sqlite", "running-snapshot")
STATUSES = {
    "success": Status.SUCCEEDED,
    "failure": Status.FAILED,
    "skipped": Status.SKIPPED,
    "running": Status.RUNNING,
}

LOOP_FILES = [e["file"] for e in MANIFEST if e["workflow"] == "03-loop-iterations.flow.yaml"]
PARALLEL_FILES = [e["file"] for e in MANIFEST if e["workflow"] == "04-parallel-branches.flow.yaml"]
FLAT_FILES = [
    e["file"]
    for e in MANIFEST
    if e["workflow"] is None or e["workflow"].startswith(("01", "02", "05", "06"))
]
JSON_FILES = [e["file"] for e in MANIFEST if e["format"] == "json"]
SNAPSHOTS = [e["file"] for e in MANIFEST if e["file"].startswith("running-snapshot/")]
SQLITE_DDL = """
CREATE TABLE executions (
  id TEXT PRIMARY KEY, workflow_id TEXT, workflow_name TEXT, workflow_version TEXT,
  started_at TEXT NOT NULL, finished_at TEXT, duration_ms INTEGER, status TEXT NOT NULL,
  inputs TEXT, output TEXT);
CREATE TABLE steps (
  id INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL REFERENCES executions(id),
  seq INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, started_at TEXT,
  finished_at TEXT, duration_ms INTEGER, status TEXT NOT NULL, input TEXT, output TEXT,
  error TEXT, retries INTEGER, loop_index INTEGER);
"""


def parse_one(path: Path) -> RunRecord:
    """The file's single run, its lazy steps read while the parser is still open."""
    runs = []
    for run in duckflux.parse(path):
        run.steps = list(run.steps)
        runs.append(run)
    assert len(runs) == 1
    return runs[0]


def run_fields(run: RunRecord) -> dict[str, Any]:
    skip = {"steps", "calls", "links", "logs"}
    return {f.name: getattr(run, f.name) for f in fields(run) if f.name not in skip}


def step_view(step: StepRecord) -> dict[str, Any]:
    """A step without what depends on the encoding (SQLite's row id)."""
    view = {f.name: getattr(step, f.name) for f in fields(step)}
    view["attributes"] = {k: v for k, v in step.attributes.items() if k != "row_id"}
    return view


def parents(run: RunRecord) -> dict[int, int | None]:
    return {int(s.key): None if s.parent_key is None else int(s.parent_key) for s in run.steps}


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def txt_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def txt_block(step: dict[str, Any]) -> str:
    lines = [
        f"## [{step['seq']}] {step['name']} ({step['type']})",
        f"startedAt: {step['startedAt']}",
    ]
    if step.get("finishedAt"):
        lines.append(f"finishedAt: {step['finishedAt']}")
    if "duration" in step:
        lines.append(f"duration: {step['duration']}ms")
    lines.append(f"status: {step['status']}")
    if "loopIndex" in step:
        lines.append(f"loopIndex: {step['loopIndex']}")
    if step.get("retries", 0) > 0:
        lines.append(f"retries: {step['retries']}")
    lines.append(f"input: {txt_value(step.get('input'))}")
    lines.append(f"output: {txt_value(step.get('output'))}")
    if step.get("error"):
        lines.append(f"error: {step['error']}")
    lines.append("")
    return "\n".join(lines)


def txt_trace(document: dict[str, Any], late: int = 0) -> str:
    """`document` (the JSON model) as duckflux's TXT writer writes it. With
    `late`, the last `late` step blocks lose the finalize race and land after
    the output section (FORMATS.md §1, "Finalize race")."""
    execution = document["execution"]
    version = execution.get("workflowVersion")
    label = next(
        (execution[k] for k in ("workflowName", "workflowId") if execution.get(k) is not None),
        "unnamed",
    )
    label += f" (v{version})" if version is not None else ""
    header = [
        "# execution",
        f"id: {execution['id']}",
        f"workflow: {label}",
        f"startedAt: {execution['startedAt']}",
        "status: running",
        "",
        "# inputs",
        txt_value(execution.get("inputs")),
        "",
        "# steps",
        "",
    ]
    blocks = [txt_block(step) for step in document["steps"]]
    on_time, behind = blocks[: len(blocks) - late], blocks[len(blocks) - late :]
    text = "\n".join(header) + "".join(on_time)
    if execution["status"] == "running":
        return text + "".join(behind)
    text += "\n".join(["# output", txt_value(execution.get("output")), ""]) + "".join(behind)
    final = (
        f"status: {execution['status']}\nfinishedAt: {execution['finishedAt']}\n"
        f"duration: {execution['duration']}ms"
    )
    return re.sub(r"^status: running$", lambda _m: final, text, count=1, flags=re.MULTILINE)


TXT_BLOCK_START = re.compile(r"^## \[\d+\] .* \([a-z]+\)\nstartedAt: ", re.MULTILINE)


def lose_the_race(text: str, late: int) -> str:
    """A finished TXT file (without look-alike lines in values) as the writer
    leaves it when its last `late` step blocks are appended after `# output`."""
    section = text.rindex("\n# output\n") + 1
    starts = [m.start() for m in TXT_BLOCK_START.finditer(text, 0, section)]
    cut = starts[-late]
    return text[:cut] + text[section:] + text[cut:section]


def sql_value(value: Any) -> Any:
    # Strings are stored raw, everything else as compact JSON.
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def write_sqlite(path: Path, document: dict[str, Any]) -> Path:
    """`document` (the JSON model) as duckflux's SQLite writer stores it."""
    execution = document["execution"]
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_DDL)
    version = execution.get("workflowVersion")
    running = execution["status"] == "running"
    conn.execute(
        "INSERT INTO executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            execution["id"],
            execution.get("workflowId"),
            execution.get("workflowName"),
            None if version is None else str(version),
            execution["startedAt"],
            None if running else execution["finishedAt"],
            None if running else round(execution["duration"]),
            execution["status"],
            sql_value(execution.get("inputs")),
            None if running else sql_value(execution.get("output")),
        ),
    )
    for step in document["steps"]:
        conn.execute(
            "INSERT INTO steps (execution_id, seq, name, type, started_at, finished_at,"
            " duration_ms, status, input, output, error, retries, loop_index)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                execution["id"],
                step["seq"],
                step["name"],
                step["type"],
                step["startedAt"],
                step.get("finishedAt"),
                step.get("duration"),
                step["status"],
                sql_value(step.get("input")),
                sql_value(step.get("output")),
                step.get("error"),
                step.get("retries") or None,
                step.get("loopIndex"),
            ),
        )
    conn.commit()
    conn.close()
    return path


def three_encodings(directory: Path, document: dict[str, Any]) -> list[Path]:
    """`document` (the JSON model) written as JSON, TXT and SQLite."""
    txt = directory / "trace.txt"
    txt.write_text(txt_trace(document))
    return [
        write_json(directory / "trace.json", document),
        txt,
        write_sqlite(directory / "trace.sqlite", document),
    ]


BASE_TIME = datetime(2026, 11, 21, 19, 0, 0, tzinfo=UTC)


def at(ms: int) -> str:
    return (BASE_TIME + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


def step(seq: int, kind: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    """A step of the JSON model, `start`/`end` in ms after BASE_TIME."""
    record = {
        "seq": seq,
        "name": extra.pop("name", kind),
        "type": kind,
        "startedAt": at(start),
        "finishedAt": at(end),
        "duration": end - start,
        "status": extra.pop("status", "success"),
    }
    record.update(extra)
    return record


def trace(steps: list[dict[str, Any]], **execution: Any) -> dict[str, Any]:
    """A finished JSON document; `steps` in completion (file) order."""
    header = {
        "id": "00000000-0000-4000-8000-000000000001",
        "workflowId": "synthetic",
        "workflowName": "Synthetic",
        "startedAt": at(0),
        "finishedAt": at(1000),
        "duration": 1000.5,
        "status": "success",
        "inputs": {},
        "output": None,
    }
    header.update(execution)
    return {"execution": header, "steps": steps}
