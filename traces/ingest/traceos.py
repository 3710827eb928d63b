"""@traceos/execution-tracer dumps (FORMATS.md §2, §6). No Django here.

The tracer keeps its records in memory; the dashboard reads dumps of
`getAllTraces()` (a JSON array or JSON lines) and `replay(id)` arrays. Dumps
are cumulative and may overlap, so records are deduplicated by
(trace_id, type, step_id) and a run's fingerprint depends on its records
only, never on the file they came from.

A dump can hold records the real tracer would have refused (hand-edited or
forged files): those are flagged as warnings on the run, never crashed on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .common import (
    _MAX_EPOCH_MS,
    _MIN_EPOCH_MS,
    brief,
    duration_between,
    fingerprint,
    json_text,
    parse_epoch_ms,
)
from .records import LogRecord, ParseError, RunRecord, Status, StepRecord

NAME = "traceos"

_WHITESPACE = b"\xef\xbb\xbf \t\r\n"
_HEAD_SIZE = 65536
_TYPE_RE = re.compile(r'"type"\s*:\s*"(env|step)"')
_TRACE_ID_RE = re.compile(r'"trace_id"\s*:\s*"')
_ENV_KEYS = {"type", "env_id", "trace_id", "ts", "source", "payload"}
_STEP_KEYS = frozenset({"type", "trace_id", "env_id", "step_id", "at", "node", "status", "meta"})
_STEP_STATUSES = ("enter", "exit", "error")
_ABSENT = object()
_from_epoch = datetime.fromtimestamp


# --- sniffing -------------------------------------------------------------------


# A dump is recognised by one of its first records: the very first may be damaged.
_SNIFF_RECORDS = 5


def sniff(path: Path, head: bytes) -> bool:
    text = head.lstrip(_WHITESPACE).decode("utf-8", errors="replace")
    if text.startswith("["):
        values = _first_values(text[1:])
    elif text.startswith("{"):
        if "\n" in text:
            lines = [line for line in text.split("\n")[:-1] if line.strip()]
            values = [_first_value(line) for line in lines[:_SNIFF_RECORDS]]
            # A first line that is not a whole object: pretty JSON, not JSON lines.
            return isinstance(values[0], dict) and any(map(_looks_like_record, values))
        values = [_first_value(text)]
    else:
        return False
    if values[0] is _ABSENT:
        # The first record is longer than the head: judge by its keys alone.
        return len(head) >= _HEAD_SIZE and bool(_TYPE_RE.search(text) and _TRACE_ID_RE.search(text))
    return any(map(_looks_like_record, values))


def _first_value(text: str) -> Any:
    values = _first_values(text, 1)
    return values[0] if values else _ABSENT


def _first_values(text: str, count: int = _SNIFF_RECORDS) -> list[Any]:
    """Up to `count` comma-separated JSON values at the start of `text` (the
    inside of an array); `[_ABSENT]` when not even the first is complete."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while len(values) < count:
        index = len(text) - len(text[index:].lstrip(" \t\r\n,"))
        try:
            value, index = decoder.raw_decode(text, index)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            break
        values.append(value)
    return values or [_ABSENT]


def _looks_like_record(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in ("env", "step")
        and isinstance(value.get("trace_id"), str)
    )


# --- reading the file -----------------------------------------------------------


@dataclass
class _Dump:
    """The file's (where, value) items, and what was wrong with the file as a whole."""

    items: list[tuple[str, Any]]
    # A cut last line; noted on every run.
    notes: list[str] = field(default_factory=list)
    # Items that belong to no trace; noted on every run and logged as warnings.
    skipped: list[str] = field(default_factory=list)
    # When the dump was written (its file's mtime): a trace in it was in memory then.
    written: datetime | None = None


def _read(data: bytes) -> _Dump:
    text = data.lstrip(_WHITESPACE)
    if not text:
        raise ParseError("empty file: no traceos records")
    if text.startswith(b"["):
        return _read_array(data)
    if text.startswith(b"{"):
        return _read_lines(data)
    raise ParseError("expected a JSON array or JSON lines of traceos records")


def _read_array(data: bytes) -> _Dump:
    try:
        value = orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise ParseError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    return _Dump([(f"record {index + 1}", item) for index, item in enumerate(value)])


def _read_lines(data: bytes) -> _Dump:
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    dump = _Dump([])
    items, loads = dump.items, orjson.loads
    for number, line in enumerate(lines, 1):
        try:
            items.append((f"line {number}", loads(line)))
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                continue  # blank lines are not records
            if any(later.strip() for later in lines[number:]):
                raise ParseError(
                    f"line {number}: invalid JSON at column {exc.colno}: {exc.msg}"
                ) from None
            # A dump caught mid-write ends in a partial line; the rest is sound.
            dump.notes.append(f"line {number} is incomplete (dump cut mid-write) and was skipped")
    return dump


# --- grouping and deduplication -------------------------------------------------


@dataclass(slots=True)
class _Trace:
    trace_id: str
    # dedup key -> (where, record); the first record of a key wins.
    records: dict[tuple, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    # The kept step records by step_id, and the keys of the kept "other" records.
    steps: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    others: list[tuple] = field(default_factory=list)

    def add(self, where: str, record: dict[str, Any]) -> None:
        key = _dedup_key(record)
        kept = self.records.get(key)
        if kept is None:
            self.records[key] = (where, record)
            if key[0] == "step":
                self.steps[key[1]] = (where, record)
            elif key[0] == "other":
                self.others.append(key)
        elif kept[1] == record:
            self.duplicates += 1
        else:
            self.conflicts.append({"key": list(key), "kept": kept[0], "dropped": record})


def _dedup_key(record: dict[str, Any]) -> tuple:
    kind = record.get("type")
    if kind == "step":
        step_id = record.get("step_id")
        if type(step_id) is int or _is_int(step_id):
            return ("step", step_id)
    elif kind == "env":
        return ("env", 0)
    # Unknown types and step records without a usable step_id: unique by content.
    return ("other", json_text(record, sort_keys=True))


def _group(dump: _Dump) -> dict[str, _Trace]:
    traces: dict[str, _Trace] = {}
    skipped = dump.skipped
    for where, value in dump.items:
        if not isinstance(value, dict):
            shown = brief(value, 40, style="json")
            skipped.append(f"{where}: skipped, expected an object, got {shown}")
            continue
        trace_id = value.get("trace_id")
        if not isinstance(trace_id, str) or not trace_id:
            skipped.append(f"{where}: skipped, no trace_id")
            continue
        trace = traces.get(trace_id)
        if trace is None:
            trace = traces[trace_id] = _Trace(trace_id)
        trace.add(where, value)
    if skipped and not traces:
        raise ParseError(f"no valid traceos record; {'; '.join(skipped[:3])}")
    return traces


# --- the state machine ----------------------------------------------------------


@dataclass
class _Violation:
    message: str
    time: datetime | None = None
    step_key: str | None = None


@dataclass
class _Walk:
    """Pairs enter with exit/error records of one trace, in step_id order."""

    steps: list[StepRecord] = field(default_factory=list)
    open: list[StepRecord] = field(default_factory=list)
    violations: list[_Violation] = field(default_factory=list)
    after_error: list[dict[str, Any]] = field(default_factory=list)
    error: StepRecord | None = None
    error_at: datetime | None = None
    last_at: datetime | None = None

    def feed(self, record: dict[str, Any], at: datetime) -> None:
        step_id = record["step_id"]
        if self.error is not None:
            self.after_error.append(record)
            self.flag(
                f"step {step_id} comes after the trace's error; the tracer records nothing then", at
            )
            return
        self.last_at = at
        if record["status"] == "enter":
            self._enter(record, at)
        else:
            self._close(record, at)

    def flag(self, message: str, at: datetime | None = None, key: str | None = None) -> None:
        self.violations.append(_Violation(message, at, key))

    def _enter(self, record: dict[str, Any], at: datetime) -> None:
        node = record["node"]
        if self.open and node in [step.name for step in self.open]:
            self.flag(f"step {record['step_id']}: node {brief(node)} entered again while open", at)
        step = StepRecord(
            key=str(record["step_id"]),
            name=node,
            status=Status.RUNNING,
            raw_status="enter",
            parent_key=self.open[-1].key if self.open else None,
            started_at=at,
            input=record.get("meta"),
        )
        _note_record(step, record, "enter")
        self.open.append(step)
        self.steps.append(step)

    def _close(self, record: dict[str, Any], at: datetime) -> None:
        node = record["node"]
        # Overlap is legal (enter A, enter B, exit A): close the node wherever it is.
        open_ = self.open
        for index in range(len(open_) - 1, -1, -1):
            if open_[index].name == node:
                step = open_.pop(index)
                break
        else:
            step = self._orphan(record, at)
        _finish(step, record, at)
        if record["status"] == "error":
            self.error, self.error_at = step, at

    def _orphan(self, record: dict[str, Any], at: datetime) -> StepRecord:
        key = str(record["step_id"])
        node, status = brief(record["node"]), record["status"]
        self.flag(f"step {key}: node {node} {status}s without enter", at, key)
        step = StepRecord(
            key=key,
            name=record["node"],
            parent_key=self.open[-1].key if self.open else None,
            attributes={"without_enter": True},
        )
        self.steps.append(step)
        return step

    def end(self) -> None:
        """After an error the trace is terminal: nothing still open will ever close."""
        if self.error is None:
            return
        for step in self.open:
            step.status = Status.FAILED
            step.finished_at = self.error_at
            step.duration_ms = duration_between(step.started_at, step.finished_at)
            step.never_closed = True
            step.attributes["closed_by_trace_error"] = True
        self.open = []


def _finish(step: StepRecord, record: dict[str, Any], at: datetime) -> None:
    status = record["status"]
    step.raw_status = status
    step.finished_at = at
    step.duration_ms = duration_between(step.started_at, at)
    step.attributes["close_step_id"] = record["step_id"]
    _note_record(step, record, status)
    meta = record.get("meta", _ABSENT)
    if status == "exit":
        step.status = Status.SUCCEEDED
        step.output = None if meta is _ABSENT else meta
        return
    step.status = Status.FAILED
    step.error = _error_text(meta)
    if meta is not _ABSENT and not isinstance(meta, str):
        step.attributes["error_meta"] = meta


def _note_record(step: StepRecord, record: dict[str, Any], status: str) -> None:
    # `meta` absent and `meta: null` both read as None: keep which one it was.
    if "meta" not in record:
        step.attributes.setdefault("meta_absent", []).append(status)
    if not _STEP_KEYS.issuperset(record):
        extra = {key: value for key, value in record.items() if key not in _STEP_KEYS}
        step.attributes.setdefault("extra", {})[status] = extra


def _error_text(meta: Any) -> str:
    if meta is _ABSENT:
        return ""
    if isinstance(meta, str):
        return meta
    return json_text(meta, ascii_only=False)


# --- building runs --------------------------------------------------------------


def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    dump = _read(path.read_bytes())
    dump.written = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    for trace in _group(dump).values():
        yield _run(trace, dump)


def _run(trace: _Trace, dump: _Dump) -> RunRecord:
    env_where, env = trace.records.get(("env", 0), ("", None))
    walk = _Walk()
    started = _check_env(env, env_where, walk)
    for _where, record, at in _valid_steps(trace, env, walk):
        walk.feed(record, at)
    walk.end()
    for where, record in _others(trace):
        walk.flag(f"{where}: {_other_reason(record)}")
    for conflict in trace.conflicts:
        walk.flag(
            f"duplicate {_key_text(conflict['key'])} with other content; kept {conflict['kept']}"
        )
    if started is None and walk.steps:
        started = walk.steps[0].started_at or walk.steps[0].finished_at
    return _run_record(trace, env or {}, walk, started, dump)


def _check_env(env: dict | None, where: str, walk: _Walk) -> datetime | None:
    """Flags what the env record lacks; returns its `ts`."""
    if env is None:
        walk.flag("no env record for this trace")
        return None
    for key in ("env_id", "ts", "source", "payload"):
        if key not in env:
            walk.flag(f"{where}: env record has no {key!r}")
    return parse_epoch_ms(env.get("ts"), f"{where}: ts")


def _valid_steps(
    trace: _Trace, env: dict | None, walk: _Walk
) -> Iterator[tuple[str, dict[str, Any], datetime]]:
    expected = 1
    env_id = env.get("env_id") if env else None
    steps = trace.steps
    for step_id in sorted(steps):
        where, record = steps[step_id]
        at = record.get("at")
        # Most times are integer epoch milliseconds in range: read here, the rest
        # (and every error) by parse_epoch_ms.
        if type(at) is int and _MIN_EPOCH_MS <= at <= _MAX_EPOCH_MS:
            at = _from_epoch(at / 1000, UTC)
        else:
            at = parse_epoch_ms(at, f"{where}: at")
        if step_id != expected:
            walk.flag(f"{where}: step_id out of sequence, expected {expected}, got {step_id}", at)
        expected = step_id + 1
        if env_id is not None and record.get("env_id") != env_id:
            theirs, ours = brief(record.get("env_id")), brief(env_id)
            walk.flag(f"{where}: env_id {theirs} is not the trace's {ours}", at)
        problem = _step_problem(record, at)
        if problem:
            walk.flag(f"{where}: {problem}; record ignored", at)
            continue
        yield where, record, at


def _step_problem(record: dict[str, Any], at: datetime | None) -> str:
    if at is None:
        return "step record has no 'at'"
    if not isinstance(record.get("node"), str):
        return "step record has no 'node'"
    if record.get("status") not in _STEP_STATUSES:
        return f"unknown step status {brief(record.get('status'), 40, style='json')}"
    return ""


def _others(trace: _Trace) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in trace.others:
        yield trace.records[key]


def _other_reason(record: dict[str, Any]) -> str:
    if record.get("type") == "step":
        step_id = brief(record.get("step_id"), 40, style="json")
        return f"step record without an integer step_id ({step_id}); ignored"
    return f"record of unknown type {brief(record.get('type'), 40, style='json')}; ignored"


def _run_record(
    trace: _Trace, env: dict, walk: _Walk, started: datetime | None, dump: _Dump
) -> RunRecord:
    status = _run_status(walk)
    finished = None if status == Status.RUNNING else (walk.last_at or started)
    step_count = len(trace.steps)
    return RunRecord(
        format=NAME,
        external_id=trace.trace_id,
        name=walk.steps[0].name if walk.steps else trace.trace_id,
        type=_source(env),
        trigger=_source(env),
        status=status,
        started_at=started,
        finished_at=finished,
        duration_ms=duration_between(started, finished),
        input=env.get("payload"),
        error=f"{walk.error.name}: {walk.error.error}" if walk.error else "",
        source_updated_at=_last_activity(status, walk.last_at or started, dump.written),
        attributes=_attributes(trace, env, walk, dump.notes + dump.skipped),
        fingerprint=fingerprint(*(trace.records[key][1] for key in sorted(trace.records))),
        completeness=(step_count,),
        steps=walk.steps,
        logs=_logs(walk, dump.skipped),
    )


def _last_activity(status: str, last_record: datetime | None, written: datetime | None):
    """An in-flight trace was alive when the dump holding it was written, however
    old its last record (a long step records nothing until it exits): it is
    judged stale from the dump's mtime. A trace that ended was last active at
    its last record."""
    if status != Status.RUNNING or written is None:
        return last_record
    return max(written, last_record) if last_record else written


def _run_status(walk: _Walk) -> str:
    if walk.error is not None:
        return Status.FAILED
    return Status.RUNNING if walk.open else Status.SUCCEEDED


def _source(env: dict[str, Any]) -> str:
    source = env.get("source", "")
    return source if isinstance(source, str) else brief(source, 40, style="json")


def _attributes(
    trace: _Trace, env: dict[str, Any], walk: _Walk, notes: list[str]
) -> dict[str, Any]:
    attributes: dict[str, Any] = {"env_id": env.get("env_id")}
    extra = {key: value for key, value in env.items() if key not in _ENV_KEYS}
    optional = {
        "extra": extra,
        "file_notes": notes,
        "violations": [violation.message for violation in walk.violations],
        "conflicts": trace.conflicts,
        "duplicates_dropped": trace.duplicates,
        "after_error": walk.after_error,
        "ignored_records": [record for _, record in _others(trace)],
    }
    attributes.update({key: value for key, value in optional.items() if value})
    return attributes


def _logs(walk: _Walk, skipped: list[str]) -> list[LogRecord]:
    messages = [_Violation(message) for message in skipped] + walk.violations
    return [
        LogRecord(
            seq=seq,
            message=violation.message,
            level="warning",
            time=violation.time,
            step_key=violation.step_key,
        )
        for seq, violation in enumerate(messages, 1)
    ]


# --- small helpers --------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key_text(key: list) -> str:
    return "env record" if key[0] == "env" else f"step_id {key[1]}"
