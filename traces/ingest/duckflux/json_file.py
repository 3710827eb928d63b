"""duckflux's JSON encoding: `<id>.json`, rewritten whole after every step.

Files up to `STREAM_THRESHOLD_BYTES` are read in one go; larger ones are
streamed with ijson, each step spilled to a temporary file for the second pass.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from ..common import brief, wrong_type
from ..records import ParseError, RunRecord, StepRecord
from .model import RETRY_HINT, StepCollector, build_run, dotted_locator, step_record

# JSON files up to this size are parsed in one go; larger ones are streamed,
# with memory bounded by one step. Tests lower it to exercise the streaming path.
STREAM_THRESHOLD_BYTES = 64 * 1024 * 1024
# ijson's reads. yajl copies a token that spans reads once per read, so a long
# string costs (its size / the read size) times its size: reads grow with the file.
STREAM_READ_BYTES = (4 * 1024 * 1024, 64 * 1024 * 1024)
_JSON_HEAD_RE = re.compile(rb'\s*\{\s*"execution"\s*:\s*\{\s*"id"\s*:')


def sniff(path: Path, head: bytes) -> bool:
    return bool(_JSON_HEAD_RE.match(head)) or _sniff_reordered(path, head)


def _sniff_reordered(path: Path, head: bytes) -> bool:
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


def parse(path: Path) -> Iterator[RunRecord]:
    if path.stat().st_size > STREAM_THRESHOLD_BYTES:
        yield from _parse_json_streaming(path)
    else:
        yield _parse_json_in_memory(path)


def _parse_json_in_memory(path: Path) -> RunRecord:
    document = _load_json(path.read_bytes())
    if not isinstance(document, dict):
        raise wrong_type("top level", "an object", document)
    if "execution" not in document:
        raise ParseError("not a duckflux trace: no 'execution' key")
    if "steps" not in document:
        raise ParseError("steps: missing")
    steps = document["steps"]
    if not isinstance(steps, list):
        raise wrong_type("steps", "a list", steps)
    collector = StepCollector()
    records = [collector.add(raw, dotted_locator(f"steps[{i}]")) for i, raw in enumerate(steps)]
    return build_run(
        path,
        "json",
        document["execution"],
        dotted_locator("execution"),
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


def _top_level_extras(extras: dict[str, Any]) -> dict[str, Any]:
    return {"top_level": extras} if extras else {}


def _parse_json_streaming(path: Path) -> Iterator[RunRecord]:
    with open(path, "rb") as handle, tempfile.TemporaryFile(prefix="duckflux-steps-") as spill:
        spilled = _SpilledSteps(spill)
        collector = StepCollector()

        def on_step(index: int, raw: Any) -> None:
            collector.add(raw, dotted_locator(f"steps[{index}]"))
            spilled.append(raw, f"steps[{index}]")

        def load_step(index: int) -> StepRecord:
            return step_record(spilled.get(index), index, dotted_locator(f"steps[{index}]"))

        execution, extras = _scan_json_stream(handle, on_step)
        yield build_run(
            path,
            "json",
            execution,
            dotted_locator("execution"),
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
    return kinds.get(event) or brief(value, style="typed")


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
