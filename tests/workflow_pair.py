"""A workflow.db + events.db pair written as GoCodeAlone/workflow's tracker writes
them (FORMATS.md §4), for tests that need I/O the samples do not have."""

import sqlite3
from pathlib import Path

import orjson

# FORMATS.md §4's DDL, verbatim but for the foreign keys.
WORKFLOW_DDL = """
CREATE TABLE workflow_executions (id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL,
  trigger_type TEXT NOT NULL DEFAULT 'manual', trigger_data TEXT DEFAULT '{}',
  status TEXT NOT NULL DEFAULT 'pending', output_data TEXT DEFAULT '{}',
  error_message TEXT DEFAULT '', triggered_by TEXT DEFAULT '', started_at TEXT NOT NULL,
  completed_at TEXT, duration_ms INTEGER DEFAULT 0, metadata TEXT DEFAULT '{}');
CREATE TABLE execution_steps (id TEXT PRIMARY KEY, execution_id TEXT NOT NULL,
  step_name TEXT NOT NULL, step_type TEXT NOT NULL, input_data TEXT DEFAULT '{}',
  output_data TEXT DEFAULT '{}', status TEXT NOT NULL DEFAULT 'pending',
  error_message TEXT DEFAULT '', started_at TEXT, completed_at TEXT,
  duration_ms INTEGER DEFAULT 0, sequence_num INTEGER NOT NULL, metadata TEXT DEFAULT '{}');
CREATE TABLE execution_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, workflow_id TEXT NOT NULL,
  execution_id TEXT, level TEXT NOT NULL DEFAULT 'info', message TEXT NOT NULL,
  module_name TEXT DEFAULT '', fields TEXT DEFAULT '{}', created_at TEXT NOT NULL);
"""
EVENTS_DDL = """
CREATE TABLE execution_events (id TEXT PRIMARY KEY, execution_id TEXT NOT NULL,
  sequence_num INTEGER NOT NULL, event_type TEXT NOT NULL, event_data TEXT,
  created_at TEXT NOT NULL, UNIQUE(execution_id, sequence_num));
"""
PAIR_ID = "0b1e7c1a-0000-4000-8000-000000000001"
CAPTURED = '{"capture_io":true,"explicit_trace":true}'


def go_json(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def truncate_io(data: bytes) -> bytes:
    """execution_tracker.go's truncateIO: past 10240 bytes, the first 10229 and a marker
    (a cut that can split a UTF-8 character)."""
    return data if len(data) <= 10240 else data[:10229] + b"[truncated]"


def write_pair(folder: Path, steps: list[dict], *, metadata: str = CAPTURED) -> Path:
    """workflow.db and events.db of one completed execution, as the tracker writes
    them (but for the `info` twin of each log row): each step is `{"name", "input",
    "output"}`, its I/O recorded when the metadata says captured."""
    folder.mkdir(parents=True, exist_ok=True)
    main, events = sqlite3.connect(folder / "workflow.db"), sqlite3.connect(folder / "events.db")
    main.executescript(WORKFLOW_DDL)
    events.executescript(EVENTS_DDL)
    captured = "capture_io" in metadata
    at, precise = "2026-07-16T09:00:00Z", "2026-07-16T09:00:00.{:06d}Z"
    told = [("execution.started", None, {"pipeline": "p:io", "step_count": len(steps)})]
    for index, step in enumerate(steps):
        name = step["name"]
        told.append(("step.started", name, {"index": index, "step_name": name}))
        if captured:
            told.append(("step.input_recorded", name, {"input": step["input"], "step_name": name}))
        told.append(("step.completed", name, {"elapsed": "1ms", "step_name": name}))
        if captured:
            told.append(
                ("step.output_recorded", name, {"output": step["output"], "step_name": name})
            )
        io = [truncate_io(go_json(step[k])) if captured else b"{}" for k in ("input", "output")]
        main.execute(
            "INSERT INTO execution_steps VALUES (?, ?, ?, ?, CAST(? AS TEXT), CAST(? AS TEXT), "
            "'completed', '', ?, ?, 1, ?, '{}')",
            (f"step-{index}", PAIR_ID, name, name, *io, at, at, index + 1),
        )
    told.append(("execution.completed", None, {"elapsed": "5ms", "pipeline": "p:io"}))
    for sequence, (event_type, name, data) in enumerate(told, start=1):
        # The log row of an I/O event holds the step name only.
        fields = {"step_name": name} if event_type.endswith("_recorded") else data
        main.execute(
            "INSERT INTO execution_logs (workflow_id, execution_id, level, message, module_name, "
            "fields, created_at) VALUES ('wf', ?, 'event', ?, ?, ?, ?)",
            (PAIR_ID, event_type, name or "", go_json(fields).decode(), at),
        )
        events.execute(
            "INSERT INTO execution_events VALUES (?, ?, ?, ?, ?, ?)",
            (f"ev-{sequence}", PAIR_ID, sequence, event_type, go_json(data).decode(),
             precise.format(sequence)),
        )  # fmt: skip
    main.execute(
        "INSERT INTO workflow_executions VALUES (?, 'wf', 'POST /api/v1/io', '{}', 'completed', "
        "'{}', '', '', ?, ?, 5, ?)",
        (PAIR_ID, at, at, metadata),
    )
    for conn in (main, events):
        conn.commit()
        conn.close()
    return folder / "workflow.db"
