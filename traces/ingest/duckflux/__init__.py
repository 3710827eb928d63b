"""duckflux traces (runtime-js 0.7.x; FORMATS.md §1 and §6). No Django here.

One file holds one root execution, in one of three encodings of one logical
model: `<id>.json` (rewritten whole after every step), `<id>.txt` (a header,
then one block appended per finished step) and `<id>.sqlite` (tables
`executions` and `steps`). Each encoding is first read into that model (an
execution dict and step dicts with the JSON key names); one shared code path
then turns the model into records.

A step is written when it ends, so files list steps in completion order, and
there is no parent pointer: nesting is inferred from `seq`, times, completion
order and `loopIndex` (`_infer_parents`). Steps are yielded in `seq` (start)
order, which puts every container before its children.

Reading happens in two passes: the first validates every step and keeps only
what nesting needs; the second, lazy one (the run's `steps`) reads the steps
again in `seq` order. The run's `steps` must therefore be consumed before the
`parse()` generator is advanced or closed (the store does exactly that): the
SQLite snapshot and the spill file of a streamed JSON live until then.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import ijson
import orjson

from ..common import (
    SQLITE_ERRORS,
    brief,
    corrupt_sqlite,
    duration_between,
    fingerprint,
    is_sqlite,
    is_truncated,
    json_bytes,
    json_text,
    loads_json_or_text,
    normalise_name,
    open_sqlite_snapshot,
    parse_iso,
    query_readonly,
    read_head,
    sqlite_columns,
    sqlite_table_names_readonly,
    sqlite_tables,
)
from ..records import ParseError, RunRecord, Status, StepRecord

NAME = "duckflux"

# JSON files up to this size are parsed in one go; larger ones are streamed,
# with memory bounded by one step. Tests lower it to exercise the streaming path.
STREAM_THRESHOLD_BYTES = 64 * 1024 * 1024
# ijson's reads. yajl copies a token that spans reads once per read, so a long
# string costs (its size / the read size) times its size: reads grow with the file.
STREAM_READ_BYTES = (4 * 1024 * 1024, 64 * 1024 * 1024)

# duckflux truncates and rewrites JSON files and appends to TXT files while it
# runs, so a reader can catch a file half-written.
RETRY_HINT = "the file may still be being written; it will be read again when it changes"

CONTAINER_TYPES = frozenset({"loop", "parallel", "if"})

# Part of every fingerprint: bump it when parsing changes, so stored runs are re-read.
_PARSER_VERSION = 2

_RUN_STATUSES = {"success": Status.SUCCEEDED, "failure": Status.FAILED, "running": Status.RUNNING}
_STEP_STATUSES = {"success": Status.SUCCEEDED, "failure": Status.FAILED, "skipped": Status.SKIPPED}

# SQLite column (normalised) -> model field.
_EXECUTION_COLUMNS = {
    "id": "id",
    "workflowid": "workflowId",
    "workflowname": "workflowName",
    "workflowversion": "workflowVersion",
    "startedat": "startedAt",
    "finishedat": "finishedAt",
    "durationms": "duration",
    "status": "status",
    "inputs": "inputs",
    "output": "output",
}
_STEP_COLUMNS = {
    "seq": "seq",
    "name": "name",
    "type": "type",
    "startedat": "startedAt",
    "finishedat": "finishedAt",
    "durationms": "duration",
    "status": "status",
    "input": "input",
    "output": "output",
    "error": "error",
    "retries": "retries",
    "loopindex": "loopIndex",
}
# The model's fields; anything else a source has is kept in `attributes`.
_EXECUTION_FIELDS = frozenset(_EXECUTION_COLUMNS.values())
_STEP_FIELDS = frozenset(_STEP_COLUMNS.values())
# Columns holding a value that is JSON unless it was a string (stored raw).
_SQLITE_VALUE_FIELDS = frozenset({"inputs", "input", "output"})

_JSON_HEAD_RE = re.compile(rb'\s*\{\s*"execution"\s*:\s*\{\s*"id"\s*:')
_TXT_HEAD = b"# execution\nid: "
_TXT_HEADER_KEYS = ("id", "workflow", "startedAt", "status", "finishedAt", "duration")
_TXT_STEP_HEADER_RE = re.compile(r"## \[(\d+)\] (.*) \(([^()]*)\)")
# The single-line keys of a step block, after `startedAt`, in the order written.
_TXT_BLOCK_KEYS = ("finishedAt", "duration", "status", "loopIndex", "retries")
# `workflow: <name ?? id ?? "unnamed">[ (v<version>)]`. Versions are any YAML
# scalar ("1.2", 7, "beta", "rc-1"); the name may hold parentheses itself, so
# only a last group without spaces or parentheses is the version (a name like
# "Report (verified)" without a version cannot be told from one).
_TXT_WORKFLOW_RE = re.compile(r"(.*) \(v([^()\s]+)\)", re.DOTALL)

Locate = Callable[[str], str]


# --------------------------------------------------------------------------- sniff


def sniff(path: Path, head: bytes) -> bool:
    if is_sqlite(head):
        return _sniff_sqlite(Path(path))
    if head.startswith(_TXT_HEAD) or _JSON_HEAD_RE.match(head):
        return True
    return _sniff_reordered_json(Path(path), head)


def _sniff_sqlite(path: Path) -> bool:
    tables = sqlite_table_names_readonly(path)
    if not {"executions", "steps"} <= tables:
        return False
    columns = _sqlite_columns_readonly(path, ("executions", "steps"))
    return "workflowid" in columns["executions"] and {"executionid", "seq"} <= columns["steps"]


def _sqlite_columns_readonly(path: Path, tables: Iterable[str]) -> dict[str, set[str]]:
    """Normalised column names of `tables`, read without copying the database."""

    def read(conn: sqlite3.Connection) -> dict[str, set[str]]:
        return {
            table: {
                normalise_name(row[1])
                for row in conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            }
            for table in tables
        }

    return query_readonly(path, read)


def _sniff_reordered_json(path: Path, head: bytes) -> bool:
    """A small JSON trace whose keys are not in duckflux's order (re-saved by a tool)."""
    if not head.lstrip().startswith(b"{"):
        return False
    try:
        if path.stat().st_size != len(head):
            return False
        document = orjson.loads(head)
    except (OSError, orjson.JSONDecodeError):
        return False
    return (
        isinstance(document, dict)
        and isinstance(document.get("execution"), dict)
        and "id" in document["execution"]
        and isinstance(document.get("steps"), list)
    )


# --------------------------------------------------------------------------- parse


def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    head = read_head(path, 4096)
    if is_sqlite(head):
        yield from _parse_sqlite(path)
    elif not head.strip():
        raise ParseError(f"empty file ({RETRY_HINT})")
    elif head.lstrip()[:1] in (b"{", b"["):
        yield from _parse_json(path)
    elif head.startswith(b"# execution"):
        yield _parse_txt(path)
    else:
        raise ParseError(
            "not a duckflux trace: expected a JSON object, a '# execution' header "
            "or a SQLite database"
        )


# --------------------------------------------------------------------------- model -> records


class _Skeleton(NamedTuple):
    """What nesting needs of a step: kept for every step, unlike its payloads."""

    seq: int
    type: str
    started_at: datetime | None
    finished_at: datetime | None
    loop_index: int | None
    completion_index: int


class _StepCollector:
    """The first pass over a run's steps, in file (completion) order: validates
    every step, keeps its skeleton and hashes its content."""

    def __init__(self) -> None:
        self.skeletons: list[_Skeleton] = []
        # (seq, error) of the first failed step (by seq) that has an error.
        self.first_failure: tuple[int, str] | None = None
        self._seqs: set[int] = set()
        self._digest = hashlib.sha256()

    def add(self, raw: Any, locate: Locate) -> StepRecord:
        completion_index = len(self.skeletons)
        record = _step_record(raw, completion_index, locate)
        seq = int(record.key)
        if seq in self._seqs:
            raise ParseError(f"{locate('seq')}: seq {seq} appears twice")
        self._seqs.add(seq)
        failed = record.status == Status.FAILED and record.error
        if failed and (self.first_failure is None or seq < self.first_failure[0]):
            self.first_failure = (seq, record.error)
        self.skeletons.append(
            _Skeleton(
                seq,
                record.type,
                record.started_at,
                record.finished_at,
                record.loop_index,
                completion_index,
            )
        )
        self._digest.update(_canonical_json(raw))
        self._digest.update(b"\x1e")  # not `+`: that would copy a 100 MB step once more
        return record

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _build_run(
    path: Path,
    encoding: str,
    execution: Any,
    locate: Locate,
    collector: _StepCollector,
    load_step: Callable[[int], StepRecord],
    extra_attributes: dict[str, Any] | None = None,
) -> RunRecord:
    """The run of `execution` (model dict) whose steps `collector` has seen;
    `load_step(completion_index)` reads a step again for the lazy second pass."""
    if not isinstance(execution, dict):
        raise ParseError(f"{locate('')}: expected an object, got {_describe(execution)}")
    raw_status = _required_str(execution, "status", locate)
    status = _map_status(raw_status, _RUN_STATUSES, locate("status"))
    started = parse_iso(execution.get("startedAt"), locate("startedAt"))
    finished = parse_iso(execution.get("finishedAt"), locate("finishedAt"))
    duration = _optional_number(execution, "duration", locate)
    name = _workflow_label(execution, locate)
    attributes: dict[str, Any] = {"encoding": encoding}
    attributes.update({k: v for k, v in execution.items() if k not in _EXECUTION_FIELDS})
    attributes.update(
        {k: execution[k] for k in ("workflowId", "workflowVersion") if k in execution}
    )
    attributes.update(extra_attributes or {})
    # duckflux's execution has no error (a tool may have added one): a failed
    # run's error is then its first failed step's, by seq.
    error = execution.get("error") if isinstance(execution.get("error"), str) else ""
    if not error and status == Status.FAILED and collector.first_failure is not None:
        attributes["error_from_step"], error = collector.first_failure  # (seq, error)
    skeletons = collector.skeletons
    return RunRecord(
        format=NAME,
        external_id=_required_str(execution, "id", locate),
        name=name,
        type=name,
        status=status,
        raw_status=raw_status,
        started_at=started,
        finished_at=finished,
        # duckflux writes duration 0 while running: a placeholder, not a value.
        duration_ms=None if status == Status.RUNNING else _duration(duration, started, finished),
        input=execution.get("inputs"),
        output=execution.get("output"),
        error=error,
        source_updated_at=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
        attributes=attributes,
        fingerprint=fingerprint(
            _PARSER_VERSION, encoding, execution, collector.hexdigest(), extra_attributes
        ),
        # An old "running" snapshot must never replace the finished run.
        completeness=(1 if status in Status.TERMINAL else 0, len(skeletons)),
        steps=_steps_in_seq_order(skeletons, load_step),
    )


def _workflow_label(execution: dict[str, Any], locate: Locate) -> str:
    """`workflowName ?? workflowId ?? "unnamed"`: all the TXT writer keeps, so
    it names the run (and its type) in every encoding, and one workflow gets
    one run type whichever encoding wrote it."""
    name = _optional_str(execution, "workflowName", locate)
    workflow_id = _optional_str(execution, "workflowId", locate)
    if execution.get("workflowName") is not None:
        return name
    if execution.get("workflowId") is not None:
        return workflow_id
    return "unnamed"


def _step_record(raw: Any, completion_index: int, locate: Locate) -> StepRecord:
    if not isinstance(raw, dict):
        raise ParseError(f"{locate('')}: expected an object, got {_describe(raw)}")
    seq = _required_int(raw, "seq", locate)
    raw_status = _required_str(raw, "status", locate)
    started = parse_iso(raw.get("startedAt"), locate("startedAt"))
    finished = parse_iso(raw.get("finishedAt"), locate("finishedAt"))
    attributes: dict[str, Any] = {k: v for k, v in raw.items() if k not in _STEP_FIELDS}
    attributes["completion_index"] = completion_index
    record = StepRecord(
        key=str(seq),
        name=_optional_str(raw, "name", locate),
        type=_optional_str(raw, "type", locate),
        status=_map_status(raw_status, _STEP_STATUSES, locate("status")),
        raw_status=raw_status,
        started_at=started,
        finished_at=finished,
        duration_ms=_duration(_optional_number(raw, "duration", locate), started, finished),
        input=raw.get("input"),
        output=raw.get("output"),
        error=_error_text(raw.get("error")),
        retries=_optional_int(raw, "retries", locate),
        loop_index=_optional_int(raw, "loopIndex", locate),
        attributes=attributes,
    )
    # duckflux cuts an input/output over 1,000,000 bytes into a string with this marker.
    truncated_fields = [field for field in ("input", "output") if is_truncated(raw.get(field))]
    if truncated_fields:
        record.truncated = True
        attributes["truncated_fields"] = truncated_fields
    return record


def _steps_in_seq_order(
    skeletons: list[_Skeleton], load_step: Callable[[int], StepRecord]
) -> Iterator[StepRecord]:
    parents = _infer_parents(skeletons)
    for skeleton in sorted(skeletons, key=lambda s: s.seq):
        record = load_step(skeleton.completion_index)
        parent = parents[skeleton.seq]
        record.parent_key = None if parent is None else str(parent)
        yield record


# --------------------------------------------------------------------------- nesting


def _infer_parents(skeletons: Iterable[_Skeleton]) -> dict[int, int | None]:
    """seq -> the seq of the container the step ran in (FORMATS.md §6).

    Walks the steps in start order with the containers still open; a step's
    parent is the latest-started open container that can hold it. Containers
    are only dropped once they ended before the step started: with parallel
    branches the container on top need not be the one a step belongs to.
    """
    parents: dict[int, int | None] = {}
    open_containers: list[_Skeleton] = []
    for step in sorted(skeletons, key=lambda s: s.seq):
        open_containers = [c for c in open_containers if not _ended_before(c, step)]
        parent = next((c for c in reversed(open_containers) if _can_hold(c, step)), None)
        parents[step.seq] = None if parent is None else parent.seq
        if step.type in CONTAINER_TYPES:
            open_containers.append(step)
    return parents


def _ended_before(container: _Skeleton, step: _Skeleton) -> bool:
    if container.finished_at is None or step.started_at is None:
        return False
    return container.finished_at < step.started_at


def _can_hold(container: _Skeleton, step: _Skeleton) -> bool:
    # A container is written when it ends, after everything inside it: this
    # settles the millisecond ties between a container's end and the next step.
    if step.completion_index > container.completion_index:
        return False
    if not _within(container, step):
        return False
    # loopIndex is the innermost loop's iteration, set on everything inside a
    # loop (a loop step itself carries its outer loop's index).
    if step.loop_index is None:
        return container.type != "loop" and container.loop_index is None
    if container.type == "loop":
        return True
    return container.loop_index == step.loop_index


def _within(container: _Skeleton, step: _Skeleton) -> bool:
    if container.started_at and step.started_at and step.started_at < container.started_at:
        return False
    return not (
        container.finished_at and step.finished_at and step.finished_at > container.finished_at
    )


# --------------------------------------------------------------------------- JSON


def _parse_json(path: Path) -> Iterator[RunRecord]:
    if path.stat().st_size > STREAM_THRESHOLD_BYTES:
        yield from _parse_json_streaming(path)
    else:
        yield _parse_json_in_memory(path)


def _parse_json_in_memory(path: Path) -> RunRecord:
    document = _load_json(path.read_bytes())
    if not isinstance(document, dict):
        raise ParseError(f"top level: expected an object, got {_describe(document)}")
    if "execution" not in document:
        raise ParseError("not a duckflux trace: no 'execution' key")
    if "steps" not in document:
        raise ParseError("steps: missing")
    steps = document["steps"]
    if not isinstance(steps, list):
        raise ParseError(f"steps: expected a list, got {_describe(steps)}")
    collector = _StepCollector()
    records = [collector.add(raw, _json_locator(f"steps[{i}]")) for i, raw in enumerate(steps)]
    return _build_run(
        path,
        "json",
        document["execution"],
        _json_locator("execution"),
        collector,
        records.__getitem__,
        _top_level_extras({k: v for k, v in document.items() if k not in ("execution", "steps")}),
    )


def _load_json(data: bytes) -> Any:
    if not data.strip():
        raise ParseError(f"empty file ({RETRY_HINT})")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _json_error(exc, data) from None


def _json_error(exc: orjson.JSONDecodeError, data: bytes) -> ParseError:
    if "UTF-8" in exc.msg:  # orjson reports encoding errors at position 0
        return _utf8_error(data, exc.msg)
    where = f"line {exc.lineno}, column {exc.colno} (byte {exc.pos})"
    # A prefix of a valid document always fails at its end.
    if exc.pos >= len(data.rstrip()):
        return ParseError(f"truncated JSON at {where} ({RETRY_HINT})")
    return ParseError(f"invalid JSON at {where}: {exc.msg} ({RETRY_HINT})")


def _utf8_error(data: bytes, message: str) -> ParseError:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f"line {line} (byte {exc.start})"
        if exc.end >= len(data) and exc.reason == "unexpected end of data":
            return ParseError(f"truncated JSON at {where}, inside a character ({RETRY_HINT})")
        return ParseError(f"invalid UTF-8 at {where}: {exc.reason}")
    return ParseError(f"invalid JSON: {message}")


def _json_locator(prefix: str) -> Locate:
    return lambda field: f"{prefix}.{field}" if field else prefix


def _top_level_extras(extras: dict[str, Any]) -> dict[str, Any]:
    return {"top_level": extras} if extras else {}


def _parse_json_streaming(path: Path) -> Iterator[RunRecord]:
    with open(path, "rb") as handle, tempfile.TemporaryFile(prefix="duckflux-steps-") as spill:
        spilled = _SpilledSteps(spill)
        collector = _StepCollector()

        def on_step(index: int, raw: Any) -> None:
            collector.add(raw, _json_locator(f"steps[{index}]"))
            spilled.append(raw, f"steps[{index}]")

        def load_step(index: int) -> StepRecord:
            return _step_record(spilled.get(index), index, _json_locator(f"steps[{index}]"))

        execution, extras = _scan_json_stream(handle, on_step)
        yield _build_run(
            path,
            "json",
            execution,
            _json_locator("execution"),
            collector,
            load_step,
            _top_level_extras(extras),
        )


class _SpilledSteps:
    """The steps of a streamed JSON file, kept on disk one compact JSON each,
    so the second pass can read them in seq order without holding payloads."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._spans: list[tuple[int, int]] = []
        self._end = 0

    def append(self, raw: Any, where: str) -> None:
        try:
            data = orjson.dumps(raw)
        except orjson.JSONEncodeError as exc:
            raise ParseError(f"{where}: {exc}") from None
        self._handle.seek(self._end)
        self._handle.write(data)
        self._spans.append((self._end, len(data)))
        self._end += len(data)

    def get(self, index: int) -> Any:
        offset, size = self._spans[index]
        self._handle.seek(offset)
        return orjson.loads(self._handle.read(size))


def _scan_json_stream(
    handle: IO[bytes], on_step: Callable[[int, Any], None]
) -> tuple[Any, dict[str, Any]]:
    """One streaming pass: returns (execution, other top-level fields) and hands
    every item of `steps` to `on_step` as it is read."""
    size = os.fstat(handle.fileno()).st_size
    low, high = STREAM_READ_BYTES
    events = ijson.parse(handle, use_float=True, buf_size=min(max(size // 32, low), high))
    try:
        execution, extras, has_steps = _walk_top_level(events, on_step)
        for _event in events:  # only whitespace may follow; ijson raises on anything else
            pass
    except ijson.JSONError as exc:
        raise _stream_error(exc, handle) from None
    if execution is None:
        raise ParseError("not a duckflux trace: no 'execution' key")
    if not has_steps:
        raise ParseError("steps: missing")
    return execution, extras


def _walk_top_level(
    events: Iterator[tuple[str, str, Any]], on_step: Callable[[int, Any], None]
) -> tuple[Any, dict[str, Any], bool]:
    _prefix, event, value = _next_event(events)
    if event != "start_map":
        raise ParseError(f"top level: expected an object, got {_event_kind(event, value)}")
    execution, extras, has_steps = None, {}, False
    while True:
        _prefix, event, key = _next_event(events)
        if event == "end_map":
            return execution, extras, has_steps
        if key == "steps":
            _walk_steps(events, on_step)
            has_steps = True
        elif key == "execution":
            execution = _build_value(events)
        else:
            extras[key] = _build_value(events)


def _walk_steps(
    events: Iterator[tuple[str, str, Any]], on_step: Callable[[int, Any], None]
) -> None:
    _prefix, event, value = _next_event(events)
    if event != "start_array":
        raise ParseError(f"steps: expected a list, got {_event_kind(event, value)}")
    index = 0
    while True:
        _prefix, event, value = _next_event(events)
        if event == "end_array":
            return
        on_step(index, _build_value(events, (event, value)))
        index += 1


def _build_value(
    events: Iterator[tuple[str, str, Any]], first: tuple[str, Any] | None = None
) -> Any:
    """The JSON value that starts with `first` (or the next event), from its events."""
    event, value = first if first is not None else _next_event(events)[1:]
    builder = ijson.ObjectBuilder()
    depth = 0
    while True:
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        if depth == 0:
            return builder.value
        _prefix, event, value = _next_event(events)


def _next_event(events: Iterator[tuple[str, str, Any]]) -> tuple[str, str, Any]:
    # ijson raises on a premature end itself; this only guards the contract.
    item = next(events, None)
    if item is None:
        raise ParseError(f"truncated JSON at the end of the file ({RETRY_HINT})")
    return item


def _event_kind(event: str, value: Any) -> str:
    kinds = {"start_map": "an object", "start_array": "a list"}
    return kinds.get(event) or _describe(value)


def _stream_error(exc: Exception, handle: IO[bytes]) -> ParseError:
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    size = os.fstat(handle.fileno()).st_size
    if "premature EOF" in message or "Incomplete" in message:
        lines = _count_lines(handle) + 1
        return ParseError(f"truncated JSON at line {lines} (byte {size}) ({RETRY_HINT})")
    # ijson reads in chunks: the offset is where the reader was, not exact.
    return ParseError(f"invalid JSON near byte {handle.tell()}: {message} ({RETRY_HINT})")


def _count_lines(handle: IO[bytes]) -> int:
    handle.seek(0)
    return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


# --------------------------------------------------------------------------- TXT


def _parse_txt(path: Path) -> RunRecord:
    text = path.read_bytes().decode("utf-8", errors="replace")
    # Every write (header, step block, output section) ends with "\n".
    if not text.endswith("\n"):
        line = text.count("\n") + 1
        raise ParseError(f"line {line} is cut off ({RETRY_HINT})")
    # Dropping the file's last "\n" makes a value at the end of the file read
    # like one in the middle (each value is followed by "\n" and a key line).
    lines = text[:-1].split("\n")
    header, header_lines, inputs_text, steps_line = _txt_header(lines)
    starts = _txt_block_starts(lines, steps_line + 1)
    # Finalize appends the output section, then writes the final status: while
    # the header says running there is no section (after a crash between the
    # two, the section is read as part of the last step's output).
    finished = header.get("status") in ("success", "failure")
    output_line = _txt_output_line(lines, starts, steps_line) if finished else None
    # The output section ends the block before it; blocks whose write was late
    # follow it (FORMATS.md §1, "Finalize race").
    bounds = starts if output_line is None else sorted([*starts, output_line])
    # Blocks follow `# steps` directly: anything else there is a broken block.
    if (bounds[0] if bounds else len(lines)) > steps_line + 1:
        hint = "" if bounds else f" ({RETRY_HINT})"
        raise ParseError(f"line {steps_line + 2}: expected a step block '## [<seq>] ...'{hint}")
    end_of = dict(itertools.pairwise([*bounds, len(lines)]))
    collector = _StepCollector()
    records = [
        collector.add(*_txt_step(lines, start, end_of[start], at_eof=end_of[start] == len(lines)))
        for start in starts
    ]
    extras: dict[str, Any] = {"workflowLabel": header.get("workflow", "")}
    output = None
    if output_line is not None:
        output = _txt_value("\n".join(lines[output_line + 1 : end_of[output_line]]))
    elif finished:
        # Finished without the section: the output is unknown, which null would hide.
        extras["output_missing"] = True
    execution = _txt_execution(header, header_lines, inputs_text, output)
    return _build_run(
        path,
        "txt",
        execution,
        _line_locator(header_lines, 0),
        collector,
        records.__getitem__,
        extras,
    )


def _txt_header(lines: list[str]) -> tuple[dict[str, str], dict[str, int], str, int]:
    """(header values, their line indexes, the inputs text, the index of `# steps`)."""
    if lines[0] != "# execution":
        raise ParseError("line 1: expected '# execution'")
    values: dict[str, str] = {}
    line_of: dict[str, int] = {}
    index, last_key = 1, None
    while index < len(lines) and lines[index] != "":
        key, sep, value = lines[index].partition(": ")
        if sep and key in _TXT_HEADER_KEYS and key not in values:
            values[key], line_of[key], last_key = value, index, key
        elif last_key is not None:  # a workflow name with a line break
            values[last_key] += "\n" + lines[index]
        else:
            raise ParseError(f"line {index + 1}: expected 'id: <execution id>'")
        index += 1
    if "id" not in values:
        raise ParseError("line 2: expected 'id: <execution id>'")
    if index + 1 >= len(lines):
        raise ParseError(f"the header is cut off after line {index} ({RETRY_HINT})")
    if lines[index + 1] != "# inputs":
        raise ParseError(f"line {index + 2}: expected '# inputs'")
    # `# inputs`, the value (one line at least), a blank line, `# steps`.
    steps_line = next(
        (k for k in range(index + 4, len(lines)) if lines[k] == "# steps" and lines[k - 1] == ""),
        None,
    )
    if steps_line is None:
        raise ParseError(f"no '# steps' line after the inputs ({RETRY_HINT})")
    return values, line_of, "\n".join(lines[index + 2 : steps_line - 1]), steps_line


def _txt_block_starts(lines: list[str], start: int) -> list[int]:
    # A value can contain a line like `## [99] fake_step (exec)`; a real block
    # header is always followed by its `startedAt:` line.
    return [
        i
        for i in range(start, len(lines) - 1)
        if lines[i + 1].startswith("startedAt: ") and _TXT_STEP_HEADER_RE.fullmatch(lines[i])
    ]


def _txt_output_line(lines: list[str], starts: list[int], steps_line: int) -> int | None:
    """The index of the `# output` line of a finished file, None when it has none.

    Finalize appends the section after the blocks written so far, and blocks
    still being written land after it (FORMATS.md §1, "Finalize race"). Values
    can hold `# output` lines too. Without the race the section is after the
    last block, where the last such line is taken (a string output can hold
    one as well). A line before the last block is taken when no line after it
    can end that block, or when it ends a block whose output reads as JSON or
    `none`: the writer puts the section right after such an output, while a
    string is just as likely to hold the line as to be cut there.
    """
    candidates = [i for i in range(steps_line + 1, len(lines)) if lines[i] == "# output"]
    last_start = starts[-1] if starts else steps_line
    before = [i for i in candidates if i < last_start]
    if not before:
        return candidates[-1] if candidates else None
    options = [candidates[-1]] if candidates[-1] > last_start else []
    # Between two blocks only the first line can end the block's output as
    # JSON; else the last one is taken, as after the last block.
    by_block: dict[int, list[int]] = {}
    for index in before:
        by_block.setdefault(bisect.bisect(starts, index), []).append(index)
    for group in reversed(by_block.values()):
        options += [group[-1]] if len(group) == 1 else [group[-1], group[0]]
    scores = {index: _txt_output_score(lines, starts, steps_line, index) for index in options}
    best = max(options, key=scores.__getitem__)  # on a tie, the first option
    # Lines before the last block that cannot be the section are inside values.
    return None if scores[best] < 0 and best < last_start else best


def _txt_output_score(lines: list[str], starts: list[int], steps_line: int, index: int) -> int:
    """1 when an output section at `index` would end a block whose output reads
    as JSON or `none` (or follow `# steps`), 0 when it would cut a string, -1
    when the section cannot be there."""
    block = bisect.bisect(starts, index)
    end = starts[block] if block < len(starts) else len(lines)
    if end == index + 1:  # the section has at least one line of value
        return -1
    if block == 0:  # right after `# steps`: every block came late
        return 1 if index == steps_line + 1 else -1
    try:
        raw, _locate = _txt_step(lines, starts[block - 1], index, at_eof=False)
    except ParseError:
        return -1
    # An error is text: the section would cut it, wherever it stands.
    return int("error" not in raw and not isinstance(raw["output"], str))


def _txt_step(
    lines: list[str], start: int, end: int, *, at_eof: bool
) -> tuple[dict[str, Any], Locate]:
    """The model dict of the block in lines[start:end] and a locator for its fields."""
    header = _TXT_STEP_HEADER_RE.fullmatch(lines[start])
    assert header is not None  # _txt_block_starts only returns matching lines
    raw: dict[str, Any] = {"seq": int(header[1]), "name": header[2], "type": header[3]}
    line_of = {"seq": start, "name": start, "type": start}
    index = start + 1
    for key in ("startedAt", *_TXT_BLOCK_KEYS):
        if index < end and lines[index].startswith(key + ": "):
            raw[key], line_of[key] = lines[index][len(key) + 2 :], index
            index += 1
    incomplete = ParseError(
        f"line {start + 1}: step block [{raw['seq']}] is incomplete"
        + (f" ({RETRY_HINT})" if at_eof else "")
    )
    if "status" not in raw or index >= end or not lines[index].startswith("input: "):
        raise incomplete
    input_at = index
    split = _txt_split_block(lines, input_at, end, raw["status"])
    if split is None:
        raise incomplete
    output_at, error_at = split
    raw["input"] = _txt_value(_txt_text(lines, input_at, output_at))
    raw["output"] = _txt_value(_txt_text(lines, output_at, end if error_at is None else error_at))
    line_of.update(input=input_at, output=output_at)
    if error_at is not None:
        raw["error"], line_of["error"] = _txt_text(lines, error_at, end), error_at
    locate = _line_locator(line_of, start)
    _convert_txt_scalars(raw, locate)
    return raw, locate


def _txt_split_block(
    lines: list[str], input_at: int, end: int, status: str
) -> tuple[int, int | None] | None:
    """(the `output:` line, the `error:` line or None) of a block whose `input:`
    is at `input_at`; None when the block has no `output:` line.

    String values are written raw and can hold lines like `output: ` or
    `error: `. JSON text cannot, so after a JSON input the first `output: `
    line is the real one. After a string input (often the previous step's
    output: hostile lines travel down the chain) the real one is preferably
    the one followed by a JSON or `none` output, which failed and skipped
    steps always have. A string input and a string output stay ambiguous.
    """
    candidates = [i for i in range(input_at + 1, end) if lines[i].startswith("output: ")]
    if not candidates:
        return None

    def error_line(output_at: int) -> int | None:
        # Only failed and skipped steps have an error: in a success's output an
        # `error: ` line is just output.
        if status == "success":
            return None
        return _first_line(lines, "error: ", output_at + 1, end)

    def output_is_json(output_at: int) -> bool:
        error_at = error_line(output_at)
        return _is_json_or_none(_txt_text(lines, output_at, end if error_at is None else error_at))

    chosen = candidates[0]
    if not _is_json_or_none(_txt_text(lines, input_at, chosen)):
        chosen = next((c for c in candidates if output_is_json(c)), chosen)
    return chosen, error_line(chosen)


def _convert_txt_scalars(raw: dict[str, Any], locate: Locate) -> None:
    if "duration" in raw:
        raw["duration"] = _txt_number(raw["duration"], locate("duration"))
    for key in ("loopIndex", "retries"):
        if key in raw:
            try:
                raw[key] = int(raw[key])
            except ValueError:
                raise ParseError(
                    f"{locate(key)}: expected an integer, got {brief(raw[key])}"
                ) from None


def _txt_execution(
    header: dict[str, str], header_lines: dict[str, int], inputs_text: str, output: Any
) -> dict[str, Any]:
    locate = _line_locator(header_lines, 0)
    label = header.get("workflow", "")
    match = _TXT_WORKFLOW_RE.fullmatch(label)
    execution: dict[str, Any] = {
        "id": header["id"],
        "workflowName": match[1] if match else label,
        "startedAt": header.get("startedAt"),
        "finishedAt": header.get("finishedAt"),
        "duration": None,
        "status": header.get("status"),
        "inputs": _txt_value(inputs_text),
        "output": output,
    }
    if match:
        execution["workflowVersion"] = match[2]
    if "duration" in header:
        execution["duration"] = _txt_number(header["duration"], locate("duration"))
    return execution


def _first_line(lines: list[str], prefix: str, start: int, end: int) -> int | None:
    return next((i for i in range(start, end) if lines[i].startswith(prefix)), None)


def _txt_text(lines: list[str], start: int, end: int) -> str:
    """The value of the `key: value` line at `start`, running up to line `end`."""
    first = lines[start].partition(": ")[2]
    return "\n".join([first, *lines[start + 1 : end]])


def _txt_value(text: str) -> Any:
    # Strings are written raw, everything else as JSON, null as `none`.
    return None if text == "none" else _decode_text_value(text)


def _txt_number(text: str, where: str) -> int | float:
    body = text.removesuffix("ms")
    try:
        return int(body)
    except ValueError:
        pass
    try:
        value = float(body)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ParseError(f"{where}: expected a duration in ms, got {brief(text)}")
    return value


def _is_json_or_none(text: str) -> bool:
    if text == "none":
        return True
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _line_locator(line_of: dict[str, int], default: int) -> Locate:
    return lambda field: f"line {line_of.get(field, default) + 1} ({field or 'header'})"


# --------------------------------------------------------------------------- SQLite


def _parse_sqlite(path: Path) -> Iterator[RunRecord]:
    try:
        yield from _read_sqlite(path)
    except SQLITE_ERRORS as exc:  # a corrupt page met while reading rows
        raise corrupt_sqlite(exc) from exc


def _read_sqlite(path: Path) -> Iterator[RunRecord]:
    with open_sqlite_snapshot(path) as conn:
        tables = sqlite_tables(conn)
        for table in ("executions", "steps"):
            if table not in tables:
                raise ParseError(f"table '{table}' is missing")
        executions, steps = tables["executions"], tables["steps"]
        rows = conn.execute(f'SELECT * FROM "{executions}" ORDER BY rowid').fetchall()
        if not rows:
            raise ParseError(f"no execution row in table '{executions}' ({RETRY_HINT})")
        execution_id_column = sqlite_columns(conn, steps).get("executionid")
        if execution_id_column is None:
            raise ParseError(f"table '{steps}' has no execution_id column")
        for row in rows:
            yield _sqlite_run(path, conn, row, steps, execution_id_column)


def _sqlite_run(
    path: Path, conn: sqlite3.Connection, row: sqlite3.Row, steps: str, id_column: str
) -> RunRecord:
    execution = _sqlite_model(row, _EXECUTION_COLUMNS)
    locate = _json_locator(f"executions row {brief(execution.get('id'))}")
    run_id = _required_str(execution, "id", locate)
    query = f'SELECT rowid AS "_duckflux_rowid", * FROM "{steps}"'
    collector = _StepCollector()
    rowids: list[int] = []
    # steps.id is the completion order: the writer inserts a step when it ends.
    for step_row in conn.execute(f'{query} WHERE "{id_column}" = ? ORDER BY rowid', (run_id,)):
        rowids.append(step_row["_duckflux_rowid"])
        collector.add(_sqlite_step(step_row), _json_locator(f"steps row {rowids[-1]}"))

    def load_step(index: int) -> StepRecord:
        try:
            step_row = conn.execute(f"{query} WHERE rowid = ?", (rowids[index],)).fetchone()
        except SQLITE_ERRORS as exc:  # read lazily, outside _parse_sqlite
            raise corrupt_sqlite(exc) from exc
        if step_row is None:  # found by the scan, not by its rowid: a damaged index
            raise ParseError(f"corrupt SQLite database: steps row {rowids[index]} is unreadable")
        locate = _json_locator(f"steps row {rowids[index]}")
        return _step_record(_sqlite_step(step_row), index, locate)

    return _build_run(path, "sqlite", execution, locate, collector, load_step)


def _sqlite_step(row: sqlite3.Row) -> dict[str, Any]:
    raw = _sqlite_model(row, _STEP_COLUMNS, skip=("executionid", "_duckflux_rowid"))
    if "id" in raw:  # the autoincrement id: completion order, kept as an attribute
        raw["row_id"] = raw.pop("id")
    return raw


def _sqlite_model(
    row: sqlite3.Row, fields: dict[str, str], skip: Iterable[str] = ()
) -> dict[str, Any]:
    """A row as a model dict; columns the model does not know keep their names."""
    model: dict[str, Any] = {}
    columns: list[str] = row.keys()  # iterating a Row gives its values, not its keys
    for column in columns:
        normalised = normalise_name(column)
        if normalised in skip or column in skip:
            continue
        field = fields.get(normalised, column)
        value = row[column]
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        model[field] = _decode_text_value(value) if field in _SQLITE_VALUE_FIELDS else value
    return model


# --------------------------------------------------------------------------- values


def _decode_text_value(text: Any) -> Any:
    """A value written as raw text if it was a string and as JSON otherwise.

    JSON that decodes to a string cannot have been written by duckflux (it
    never quotes strings), so such text is the string itself, quotes included.
    """
    value, _truncated = loads_json_or_text(text)
    return text if isinstance(value, str) else value


def _canonical_json(value: Any) -> bytes:
    return json_bytes(value, sort_keys=True)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _map_status(word: str, table: dict[str, str], where: str) -> str:
    try:
        return table[word]
    except KeyError:
        known = ", ".join(table)
        raise ParseError(f"{where}: unknown status {brief(word)} (expected {known})") from None


def _required_str(raw: dict[str, Any], key: str, locate: Locate) -> str:
    value = raw.get(key)
    if value is None:
        raise ParseError(f"{locate(key)}: missing")
    if not isinstance(value, str):
        raise ParseError(f"{locate(key)}: expected a string, got {_describe(value)}")
    return value


def _optional_str(raw: dict[str, Any], key: str, locate: Locate) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"{locate(key)}: expected a string, got {_describe(value)}")
    return value


def _required_int(raw: dict[str, Any], key: str, locate: Locate) -> int:
    value = _optional_int(raw, key, locate)
    if value is None:
        raise ParseError(f"{locate(key)}: missing")
    return value


def _optional_int(raw: dict[str, Any], key: str, locate: Locate) -> int | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParseError(f"{locate(key)}: expected an integer, got {_describe(value)}")
    return value


def _optional_number(raw: dict[str, Any], key: str, locate: Locate) -> int | float | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ParseError(f"{locate(key)}: expected a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParseError(f"{locate(key)}: expected a finite number, got {value}")
    return value


def _duration(
    value: int | float | None, started: datetime | None, finished: datetime | None
) -> float | None:
    return float(value) if value is not None else duration_between(started, finished)


def _error_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json_text(value, ascii_only=False)
