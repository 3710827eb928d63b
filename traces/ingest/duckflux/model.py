"""duckflux's logical model, shared by its three encodings, and how it becomes records.

Each encoding reads a run into the model: an execution dict and step dicts
with the JSON key names. `StepCollector` is the first pass over the steps,
`build_run` makes the run; its steps come out in `seq` order, read again
through the encoding's `load_step` (see `nesting`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..common import (
    brief,
    duration_between,
    fingerprint,
    is_truncated,
    json_bytes,
    json_text,
    loads_json_or_text,
    parse_iso,
    utc_iso,
    wrong_type,
)
from ..records import ParseError, RunRecord, Status, StepRecord
from .nesting import Skeleton, steps_in_seq_order

NAME = "duckflux"
# duckflux truncates and rewrites JSON files and appends to TXT files while it
# runs, so a reader can catch a file half-written.
RETRY_HINT = "the file may still be being written; it will be read again when it changes"

# Bump it when parsing changes: the loader reads unchanged files again, and, as part
# of every fingerprint, their stored runs are rewritten.
PARSER_VERSION = 3

_RUN_STATUSES = {"success": Status.SUCCEEDED, "failure": Status.FAILED, "running": Status.RUNNING}
_STEP_STATUSES = {"success": Status.SUCCEEDED, "failure": Status.FAILED, "skipped": Status.SKIPPED}

# SQLite column (normalised) -> model field.
EXECUTION_COLUMNS = {
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
STEP_COLUMNS = {
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
_EXECUTION_FIELDS = frozenset(EXECUTION_COLUMNS.values())
_STEP_FIELDS = frozenset(STEP_COLUMNS.values())

Locate = Callable[[str], str]


class StepCollector:
    """The first pass over a run's steps, in file (completion) order: validates
    every step, keeps its skeleton and hashes its content."""

    def __init__(self) -> None:
        self.skeletons: list[Skeleton] = []
        # (seq, error) of the first failed step (by seq) that has an error.
        self.first_failure: tuple[int, str] | None = None
        self._seqs: set[int] = set()
        self._digest = hashlib.sha256()

    def add(self, raw: Any, locate: Locate) -> StepRecord:
        completion_index = len(self.skeletons)
        record = step_record(raw, completion_index, locate)
        seq = int(record.key)
        if seq in self._seqs:
            raise ParseError(f"{locate('seq')}: seq {seq} appears twice")
        self._seqs.add(seq)
        failed = record.status == Status.FAILED and record.error
        if failed and (self.first_failure is None or seq < self.first_failure[0]):
            self.first_failure = (seq, record.error)
        self.skeletons.append(
            Skeleton(
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


def build_run(
    path: Path,
    encoding: str,
    execution: Any,
    locate: Locate,
    collector: StepCollector,
    load_step: Callable[[int], StepRecord],
    extra_attributes: dict[str, Any] | None = None,
) -> RunRecord:
    """The run of `execution` (model dict) whose steps `collector` has seen;
    `load_step(completion_index)` reads a step again for the lazy second pass."""
    if not isinstance(execution, dict):
        raise wrong_type(locate(""), "an object", execution)
    raw_status = required_str(execution, "status", locate)
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
        external_id=required_str(execution, "id", locate),
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
            PARSER_VERSION, encoding, execution, collector.hexdigest(), extra_attributes
        ),
        # An old "running" snapshot must never replace the finished run.
        completeness=(1 if status in Status.TERMINAL else 0, len(skeletons)),
        steps=steps_in_seq_order(skeletons, load_step),
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


def step_record(raw: Any, completion_index: int, locate: Locate) -> StepRecord:
    # The usual types are checked inline (a 10-step file's steps are most of its
    # parse); anything else goes through the checks that name what is wrong.
    if type(raw) is not dict:
        raise wrong_type(locate(""), "an object", raw)
    get = raw.get
    seq = get("seq")
    if type(seq) is not int:
        seq = _required_int(raw, "seq", locate)
    raw_status = get("status")
    if type(raw_status) is not str:
        raw_status = required_str(raw, "status", locate)
    started = _time(get("startedAt"), "startedAt", locate)
    finished = _time(get("finishedAt"), "finishedAt", locate)
    # Checked in the order a file's first error has always been reported in.
    name, kind = get("name", ""), get("type", "")
    if type(name) is not str:
        name = _optional_str(raw, "name", locate)
    if type(kind) is not str:
        kind = _optional_str(raw, "type", locate)
    status = _STEP_STATUSES.get(raw_status) or _map_status(
        raw_status, _STEP_STATUSES, locate("status")
    )
    retries, loop_index, duration = get("retries"), get("loopIndex"), get("duration")
    if type(duration) is not int:
        duration = _optional_number(raw, "duration", locate)
    if retries is not None and type(retries) is not int:
        retries = _optional_int(raw, "retries", locate)
    if loop_index is not None and type(loop_index) is not int:
        loop_index = _optional_int(raw, "loopIndex", locate)
    attributes: dict[str, Any] = {k: v for k, v in raw.items() if k not in _STEP_FIELDS}
    attributes["completion_index"] = completion_index
    step_input, output, error = get("input"), get("output"), get("error")
    record = StepRecord(
        key=str(seq),
        name=name,
        type=kind,
        status=status,
        raw_status=raw_status,
        started_at=started,
        finished_at=finished,
        duration_ms=_duration(duration, started, finished),
        input=step_input,
        output=output,
        error=error if type(error) is str else _error_text(error),
        retries=retries,
        loop_index=loop_index,
        attributes=attributes,
    )
    # duckflux cuts an input/output over 1,000,000 bytes into a string with this marker.
    truncated_fields = [
        field
        for field, value in (("input", step_input), ("output", output))
        if type(value) is str and is_truncated(value)
    ]
    if truncated_fields:
        record.truncated = True
        attributes["truncated_fields"] = truncated_fields
    return record


def _time(value: Any, key: str, locate: Locate) -> datetime | None:
    """A step's time; where it is (`locate(key)`) made only for an error message."""
    if value is None:
        return None
    return utc_iso(value) or parse_iso(value, locate(key))


def dotted_locator(prefix: str) -> Locate:
    return lambda field: f"{prefix}.{field}" if field else prefix


def decode_text_value(text: Any) -> Any:
    """A value written as raw text if it was a string and as JSON otherwise.

    JSON that decodes to a string cannot have been written by duckflux (it
    never quotes strings), so such text is the string itself, quotes included.
    """
    value, _truncated = loads_json_or_text(text)
    return text if isinstance(value, str) else value


def _canonical_json(value: Any) -> bytes:
    return json_bytes(value, sort_keys=True)


def _map_status(word: str, table: dict[str, str], where: str) -> str:
    try:
        return table[word]
    except KeyError:
        known = ", ".join(table)
        raise ParseError(f"{where}: unknown status {brief(word)} (expected {known})") from None


def required_str(raw: dict[str, Any], key: str, locate: Locate) -> str:
    value = raw.get(key)
    if value is None:
        raise ParseError(f"{locate(key)}: missing")
    if not isinstance(value, str):
        raise wrong_type(locate(key), "a string", value)
    return value


def _optional_str(raw: dict[str, Any], key: str, locate: Locate) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise wrong_type(locate(key), "a string", value)
    return value


def _required_int(raw: dict[str, Any], key: str, locate: Locate) -> int:
    value = _optional_int(raw, key, locate)
    if value is None:
        raise ParseError(f"{locate(key)}: missing")
    return value


def _optional_int(raw: dict[str, Any], key: str, locate: Locate) -> int | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise wrong_type(locate(key), "an integer", value)
    return value


def _optional_number(raw: dict[str, Any], key: str, locate: Locate) -> int | float | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise wrong_type(locate(key), "a number", value)
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
