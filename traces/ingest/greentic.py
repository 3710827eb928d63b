"""greentic runner `trace.json` files (FORMATS.md §5). No Django here.

One file is one run. The format has no run id and no timestamps: the run is
identified by the SHA-256 of the file's bytes and dated by the file's mtime,
so times are approximate and flagged as such.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from .common import brief, wrong_type
from .records import LogRecord, ParseError, RunRecord, Status, StepRecord

NAME = "greentic"

# The runner keeps only the last DEFAULT_BUFFER_SIZE steps.
BUFFER_SIZE = 20

_ENVELOPE_KEYS = {"trace_version", "runner_version", "git_sha", "pack", "flow", "steps"}
_STEP_KEYS = {
    "node_id",
    "component_id",
    "operation",
    "input_hash",
    "invocation_json",
    "output_hash",
    "duration_ms",
    "validation_issues",
    "error",
}
_HASH_KEYS = ("input_hash", "output_hash")
_KEY_RE = re.compile(rb'"(trace_version|flow)"\s*:')


def sniff(path: Path, head: bytes) -> bool:
    # The runner writes `<name>.tmp` and renames it: a .tmp file is a write in progress.
    if Path(path).suffix == ".tmp":
        return False
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"{"):
        return False
    return {match.group(1) for match in _KEY_RE.finditer(text)} == {b"trace_version", b"flow"}


def parsed_whole(path: Path, head: bytes, size: int) -> bool:
    """`parse()` reads a trace whole: its records may be kept after it is done."""
    return True


def parse(path: Path) -> Iterator[RunRecord]:
    path = Path(path)
    data = path.read_bytes()
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    envelope = _load(data, path)
    digest = hashlib.sha256(data).hexdigest()
    del data  # not held while the store writes the run: a trace can be 100 MB
    yield _run(envelope, digest, mtime)


def _load(data: bytes, path: Path) -> dict[str, Any]:
    try:
        envelope = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        hint = (
            "this .tmp file is a write in progress; read the renamed file instead"
            if path.suffix == ".tmp"
            else "the runner writes a trace to <name>.tmp and renames it when complete, "
            "so a .tmp file beside it is a write in progress; this file itself is damaged"
        )
        where = "empty file" if not data.strip() else f"line {exc.lineno}, column {exc.colno}"
        raise ParseError(f"invalid JSON at {where}: {exc.msg} ({hint})") from None
    if not isinstance(envelope, dict):
        raise ParseError(f"expected a JSON object, got {brief(envelope, 40, style='typed')}")
    for key in ("trace_version", "flow"):
        if key not in envelope:
            raise ParseError(f"not a greentic trace: no {key!r} key")
    return envelope


def _run(envelope: dict[str, Any], digest: str, mtime: datetime) -> RunRecord:
    flow = _object(envelope["flow"], "flow")
    flow_id = _text(flow.get("id"), "flow.id")
    raw_steps = envelope.get("steps", [])
    if not isinstance(raw_steps, list):
        raise wrong_type("steps", "a list", raw_steps, 40)
    steps = [_step(index, raw) for index, raw in enumerate(raw_steps)]
    total_ms = sum(step.duration_ms or 0 for step in steps)
    failed = [step for step in steps if step.status == Status.FAILED]
    truncated = len(steps) >= BUFFER_SIZE
    attributes = _run_attributes(envelope, flow, truncated)
    started = _start(mtime, total_ms, attributes)
    return RunRecord(
        format=NAME,
        external_id=digest,
        name=flow_id,
        type=flow_id,
        status=Status.FAILED if failed else Status.SUCCEEDED,
        raw_status=failed[-1].raw_status if failed else "",
        started_at=started,
        finished_at=mtime,
        duration_ms=total_ms,
        error=_run_error(failed[-1]) if failed else "",
        source_updated_at=mtime,
        truncated=truncated,
        times_estimated=True,
        attributes=attributes,
        fingerprint=digest,
        completeness=None,
        steps=steps,
        logs=_issue_logs(steps),
    )


def _start(mtime: datetime, total_ms: int, attributes: dict[str, Any]) -> datetime | None:
    """The file's mtime less the steps' durations, when that is a date at all."""
    try:
        return mtime - timedelta(milliseconds=total_ms)
    except OverflowError:
        attributes["start_unknown"] = f"the steps' durations ({total_ms} ms) end before year 1"
        return None


def _run_attributes(envelope: dict[str, Any], flow: dict[str, Any], truncated: bool) -> dict:
    attributes: dict[str, Any] = {"trace_version": envelope["trace_version"]}
    for key in ("runner_version", "git_sha"):
        if key in envelope:
            attributes[key] = envelope[key]
    if "pack" in envelope:
        attributes["pack"] = _object(envelope["pack"], "pack")
    attributes["flow_version"] = flow.get("version")
    extra = {key: value for key, value in envelope.items() if key not in _ENVELOPE_KEYS}
    extra.update({f"flow.{k}": v for k, v in flow.items() if k not in ("id", "version")})
    if extra:
        attributes["extra"] = extra
    if truncated:
        attributes["truncated_reason"] = (
            f"the runner keeps only the last {BUFFER_SIZE} steps; earlier steps may be missing"
        )
    return attributes


# The run's error repeats its failing step's: past this length it is cut there
# (the step keeps all of it), so a huge message is not held and stored twice.
RUN_ERROR_CHARS = 65536


def _run_error(step: StepRecord) -> str:
    code = step.attributes.get("error_code")
    message = step.error
    if len(message) > RUN_ERROR_CHARS:
        message = message[:RUN_ERROR_CHARS] + "… (cut: the failing step has the whole message)"
    return f"{code}: {message}" if code else message


def _step(index: int, raw: Any) -> StepRecord:
    where = f"steps[{index}]"
    raw = _object(raw, where)
    for key in ("node_id", "duration_ms"):
        if key not in raw:
            raise ParseError(f"{where}.{key}: missing")
    attributes = _step_attributes(raw, where)
    error = _error(raw.get("error"), where, attributes)
    invocation = attributes.get("invocation_json")
    return StepRecord(
        key=str(index),
        name=_text(raw["node_id"], f"{where}.node_id"),
        type=_text(raw.get("component_id", ""), f"{where}.component_id"),
        status=Status.FAILED if error is not None else Status.SUCCEEDED,
        raw_status=attributes.get("error_code", "") if error is not None else "",
        duration_ms=_duration(raw["duration_ms"], f"{where}.duration_ms"),
        input=invocation.get("payload") if invocation else None,
        error=error or "",
        attributes=attributes,
    )


def _step_attributes(raw: dict[str, Any], where: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if "operation" in raw:
        attributes["operation"] = _text(raw["operation"], f"{where}.operation")
    for key in _HASH_KEYS:
        if key in raw:
            attributes[key] = _object(raw[key], f"{where}.{key}")
    if "invocation_json" in raw:
        attributes["invocation_json"] = _object(raw["invocation_json"], f"{where}.invocation_json")
    if "validation_issues" in raw:
        attributes["validation_issues"] = _issues(raw["validation_issues"], where)
    extra = {key: value for key, value in raw.items() if key not in _STEP_KEYS}
    if extra:
        attributes["extra"] = extra
    return attributes


def _error(raw: Any, where: str, attributes: dict[str, Any]) -> str | None:
    """The step's error message, or None; code and details go to `attributes`."""
    if raw is None:
        return None
    raw = _object(raw, f"{where}.error")
    attributes["error_code"] = _text(raw.get("code", ""), f"{where}.error.code")
    attributes["error_details"] = raw.get("details")
    extra = {k: v for k, v in raw.items() if k not in ("code", "message", "details")}
    if extra:
        attributes["error_extra"] = extra
    return _text(raw.get("message", ""), f"{where}.error.message")


def _issues(raw: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise wrong_type(f"{where}.validation_issues", "a list", raw, 40)
    return [_object(issue, f"{where}.validation_issues[{i}]") for i, issue in enumerate(raw)]


def _issue_logs(steps: list[StepRecord]) -> list[LogRecord]:
    logs: list[LogRecord] = []
    for step in steps:
        for issue in step.attributes.get("validation_issues", ()):
            message = (
                f"{issue.get('code', '?')} at {issue.get('path', '?')}: {issue.get('message', '')}"
            )
            logs.append(
                LogRecord(
                    seq=len(logs) + 1,
                    message=message,
                    level="warning",
                    step_key=step.key,
                    fields=issue,
                )
            )
    return logs


def _duration(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise wrong_type(where, "a non-negative integer", value, 40)
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wrong_type(where, "an object", value, 40)
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(where, "a string", value, 40)
    return value
