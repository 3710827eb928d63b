"""OpenTelemetry traces in OTLP/JSON: what a Collector's file exporter writes (JSON
lines, each an `ExportTraceServiceRequest`) or one such JSON document. No Django here.

A trace becomes a run, its spans steps nested by `parentSpanId`. A lone root span is
the run itself (its name, times, status and events); with several roots every span
is a step. Span status gives the step's status (ERROR: failed; OK or UNSET:
succeeded, or running when the span has no end). Events become log rows,
attributes are kept, and the span's kind and ids go into its attributes.

The documents are read through the protobuf classes of `opentelemetry-proto`
(otlp_json.py), which check their shape. The site's own export (traces/exports/
otlp.py) writes what OTLP has no field for as `tracer.*` attributes; they are read
back here, so an exported run comes back with the same tree, statuses and durations.

The spans of one trace may be spread over a file's lines, so a file's spans are
held until it is read; a collector rotates its files well before that matters.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from .otlp_json import (
    TRACER_FLAGS,
    TRACER_STEP_INTS,
    TRACER_STEP_TEXT,
    OtlpError,
    Span,
    plain_attributes,
    request_from_json,
)
from .records import CallRecord, LinkRecord, LogRecord, ParseError, RunRecord, Status, StepRecord

NAME = "otlp"
PARSER_VERSION = 1

_WHITESPACE = b"\xef\xbb\xbf \t\r\n"
# ExportTraceServiceRequest has one field: a document opens with it.
_OPENING = re.compile(rb'\{\s*"resource_?[sS]pans"\s*:')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NANOS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) * 1000
_KINDS = {value: name for name, value in Span.SpanKind.items()}
_RUN_TEXT = ("trigger", "actor", "raw_status", "progress_label")
# tracer.* attributes of the run span that say where the exported run came from.
_RUN_ORIGIN = ("format", "external_id", "origin")


def sniff(path: Path, head: bytes) -> bool:
    return bool(_OPENING.match(head.lstrip(_WHITESPACE)))


def parse(path: Path) -> Iterator[RunRecord]:
    traces = _Traces()
    for where, document in _documents(Path(path).read_bytes()):
        try:
            request = request_from_json(document, where)
        except OtlpError as exc:
            raise ParseError(str(exc)) from None
        traces.add(request)
    if not traces.spans:
        raise ParseError("no spans: the file holds OTLP documents without any trace")
    for trace_id, spans in traces.spans.items():
        yield _Trace(trace_id, spans).run()


def _documents(data: bytes) -> Iterator[tuple[str, Any]]:
    """One JSON document, or JSON lines (one ExportTraceServiceRequest per line)."""
    if not data.strip(_WHITESPACE):
        raise ParseError("empty file: no OTLP documents")
    try:
        yield "document", orjson.loads(data.lstrip(b"\xef\xbb\xbf"))
        return
    except orjson.JSONDecodeError as exc:
        if "\n" not in data.strip().decode(errors="replace"):
            raise ParseError(f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"line {number}: invalid JSON: {exc.msg}") from None


@dataclass(slots=True)
class _Span:
    span: Span
    resource: dict[str, Any]
    scope: str
    order: int


class _Traces:
    """The file's spans grouped by trace id, in the order they were read."""

    def __init__(self):
        self.spans: dict[str, list[_Span]] = defaultdict(list)
        self.count = 0

    def add(self, request) -> None:
        for resource_spans in request.resource_spans:
            resource = plain_attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.count += 1
                    item = _Span(span, resource, scope_spans.scope.name, self.count)
                    self.spans[span.trace_id.hex()].append(item)


@dataclass
class _Trace:
    trace_id: str
    items: list[_Span]
    steps: list[StepRecord] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    links: list[LinkRecord] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    taken_keys: set[str] = field(default_factory=set)

    def run(self) -> RunRecord:
        by_id = self._unique_spans()
        children, roots = self._tree(by_id)
        run_span = roots[0] if len(roots) == 1 else None
        step_roots = children.pop(run_span.span.span_id, []) if run_span else roots
        keys: dict[bytes, str] = {}
        for item, parent in _depth_first(step_roots, children):
            if _is_call(item, parent, children):
                self._add_call(item, keys[parent.span.span_id])
            else:
                self._add_step(item, keys.get(parent.span.span_id) if parent else None, keys)
        if run_span is not None:
            self._add_events(run_span.span, None)
        return self._record(run_span)

    def _unique_spans(self) -> dict[bytes, _Span]:
        by_id: dict[bytes, _Span] = {}
        for item in self.items:
            if not item.span.span_id:
                raise ParseError(f"trace {self.trace_id}: a span has no spanId")
            if item.span.span_id in by_id:
                self.notes.append(f"span {item.span.span_id.hex()} repeated: the first kept")
                continue
            by_id[item.span.span_id] = item
        return by_id

    def _tree(self, by_id: dict[bytes, _Span]) -> tuple[dict, list[_Span]]:
        children: dict[bytes, list[_Span]] = defaultdict(list)
        roots: list[_Span] = []
        for item in by_id.values():
            parent = item.span.parent_span_id
            if parent and parent in by_id and parent != item.span.span_id:
                children[parent].append(item)
            else:
                if parent:
                    self.notes.append(f"span {item.span.span_id.hex()}: parent not in the file")
                roots.append(item)
        if by_id and not roots:
            raise ParseError(f"trace {self.trace_id}: its spans' parents form a cycle")
        return children, roots

    def _add_step(self, item: _Span, parent_key: str | None, keys: dict[bytes, str]) -> None:
        span = item.span
        attributes = plain_attributes(span.attributes)
        tracer = _tracer_fields(attributes)
        key = _key(tracer.get("key"), span.span_id, self.taken_keys)
        keys[span.span_id] = key
        self.taken_keys.add(key)
        step = StepRecord(key=key, name=span.name, parent_key=parent_key)
        _set_outcome(step, span, tracer)
        for name in TRACER_STEP_TEXT:
            if isinstance(tracer.get(name), str):
                setattr(step, name, tracer[name])
        for name in TRACER_STEP_INTS:
            if isinstance(tracer.get(name), int) and not isinstance(tracer[name], bool):
                setattr(step, name, tracer[name])
        for name in TRACER_FLAGS:
            setattr(step, name, tracer.get(name) is True)
        step.attributes = _kept_attributes(attributes, tracer, item)
        self.links.extend(_links(key, tracer.get("entity_links")))
        self.steps.append(step)
        self._add_events(span, key)

    def _add_call(self, item: _Span, step_key: str) -> None:
        span = item.span
        attributes = plain_attributes(span.attributes)
        tracer = _tracer_fields(attributes)
        call = CallRecord(key=_key(tracer.get("key"), span.span_id, set()), step_key=step_key)
        outcome = StepRecord(key="")
        _set_outcome(outcome, span, tracer)
        call.status, call.error = outcome.status, outcome.error
        call.started_at, call.duration_ms = outcome.started_at, outcome.duration_ms
        for name in ("tool", "operation", "raw_status", "retry_of"):
            if isinstance(tracer.get(name), str):
                setattr(call, name, tracer[name])
        if isinstance(tracer.get("attempt"), int):
            call.attempt = tracer["attempt"]
        call.attributes = _kept_attributes(attributes, tracer, item)
        self.calls.append(call)

    def _add_events(self, span: Span, step_key: str | None) -> None:
        for event in span.events:
            attributes = plain_attributes(event.attributes)
            seq = attributes.pop("log.seq", None)
            order = seq if isinstance(seq, int) and not isinstance(seq, bool) else float("inf")
            time = _time(event.time_unix_nano)
            self.events.append(
                (order, time or _EPOCH, len(self.events), event, attributes, step_key)
            )

    def _record(self, run_span: _Span | None) -> RunRecord:
        tracer: dict[str, Any] = {}
        attributes: dict[str, Any] = {"otlp.trace_id": self.trace_id}
        record = RunRecord(format=NAME, external_id=self.trace_id)
        if run_span is not None:
            own = plain_attributes(run_span.span.attributes)
            tracer = _tracer_fields(own)
            record.name = run_span.span.name
            _set_outcome(record, run_span.span, tracer)
            self._fail_on_failed_steps(record, run_span.span, tracer)
            attributes.update(_kept_attributes(own, tracer, run_span))
        else:
            self._outcome_from_steps(record)
        record.type = tracer.get("run_type") if isinstance(tracer.get("run_type"), str) else ""
        record.type = record.type or record.name
        for name in _RUN_TEXT:
            if isinstance(tracer.get(name), str):
                setattr(record, name, tracer[name])
        record.times_estimated = tracer.get("times_estimated") is True
        exported_from = {name: tracer[name] for name in _RUN_ORIGIN if name in tracer}
        if exported_from:
            attributes["exported_from"] = exported_from
        if isinstance(tracer.get("output_counters"), str):
            record.output_counters = _counters(tracer["output_counters"])
        attributes["resource"] = self.items[0].resource
        if self.notes:
            attributes["otlp.notes"] = self.notes[:100]
        record.attributes = attributes
        record.fingerprint = self._fingerprint()
        record.steps, record.calls, record.links = self.steps, self.calls, self.links
        record.logs = self._logs()
        return record

    def _fail_on_failed_steps(self, record: RunRecord, span: Span, tracer: dict) -> None:
        """A root span left UNSET (an HTTP server span, say) over a failed span: the
        run failed, as trace UIs show it."""
        if "status" in tracer or span.status.code != span.status.STATUS_CODE_UNSET:
            return
        failed = next((step for step in self.steps if step.status == Status.FAILED), None)
        if failed is not None:
            record.status, record.error = Status.FAILED, failed.error

    def _outcome_from_steps(self, record: RunRecord) -> None:
        roots = [step for step in self.steps if step.parent_key is None]
        record.name = roots[0].name if roots else self.trace_id
        statuses = {step.status for step in self.steps}
        record.status = next(
            (s for s in (Status.FAILED, Status.RUNNING) if s in statuses), Status.SUCCEEDED
        )
        starts = [step.started_at for step in self.steps if step.started_at]
        ends = [step.finished_at for step in self.steps if step.finished_at]
        record.started_at = min(starts, default=None)
        record.finished_at = max(ends, default=None) if record.status != Status.RUNNING else None
        if record.started_at and record.finished_at:
            record.duration_ms = (record.finished_at - record.started_at).total_seconds() * 1000
        failed = [step for step in self.steps if step.status == Status.FAILED]
        record.error = failed[0].error if failed else ""

    def _logs(self) -> list[LogRecord]:
        logs = []
        for seq, (_, time, _, event, attributes, step_key) in enumerate(sorted(self.events), 1):
            level = attributes.pop("log.level", None)
            fields = attributes.pop("log.fields", None)
            message = event.name
            if event.name == "exception" and "exception.message" in attributes:
                message = f"exception: {attributes['exception.message']}"
            logs.append(
                LogRecord(
                    seq=seq,
                    message=message,
                    level=level if isinstance(level, str) else _event_level(event.name),
                    time=None if time is _EPOCH and not event.time_unix_nano else time,
                    step_key=step_key,
                    fields=_json_or_text(fields),
                    duplicate=attributes.pop("tracer.duplicate", None) is True,
                    attributes=attributes,
                )
            )
        return logs

    def _fingerprint(self) -> str:
        digest = hashlib.sha256(str(PARSER_VERSION).encode())
        for item in sorted(self.items, key=lambda item: item.span.span_id):
            digest.update(item.span.SerializeToString(deterministic=True))
            digest.update(orjson.dumps(item.resource, option=orjson.OPT_SORT_KEYS, default=str))
        return digest.hexdigest()


def _depth_first(roots: list[_Span], children: dict) -> Iterator[tuple[_Span, _Span | None]]:
    """(span, parent) with parents first, siblings by start time; no recursion (a
    trace can be deeper than Python's stack)."""
    stack = [(item, None) for item in reversed(_by_start(roots))]
    while stack:
        item, parent = stack.pop()
        yield item, parent
        below = children.get(item.span.span_id, ())
        stack.extend((child, item) for child in reversed(_by_start(below)))


def _by_start(items) -> list[_Span]:
    return sorted(items, key=lambda item: (item.span.start_time_unix_nano, item.order))


def _is_call(item: _Span, parent: _Span | None, children: dict) -> bool:
    """Our export's call spans: leaves marked as calls, under a step."""
    if parent is None or item.span.span_id in children:
        return False
    return any(
        kv.key == "tracer.record" and kv.value.string_value == "call" for kv in item.span.attributes
    )


def _tracer_fields(attributes: dict[str, Any]) -> dict[str, Any]:
    """Our export's `tracer.*` attributes, taken out of `attributes`."""
    names = [key for key in attributes if key.startswith("tracer.")]
    return {name.removeprefix("tracer."): attributes.pop(name) for name in names}


def _kept_attributes(attributes: dict[str, Any], tracer: dict, item: _Span) -> dict[str, Any]:
    span = item.span
    kept = {
        (key.removeprefix("source.") if key.startswith("source.tracer.") else key): value
        for key, value in attributes.items()
    }
    kept["otlp.span_id"] = span.span_id.hex()
    if span.parent_span_id:
        kept["otlp.parent_span_id"] = span.parent_span_id.hex()
    kept["otlp.kind"] = _KINDS.get(span.kind, str(span.kind))
    if span.trace_state:
        kept["otlp.trace_state"] = span.trace_state
    if item.scope:
        kept["otlp.scope"] = item.scope
    for name in ("dropped_attributes_count", "dropped_events_count", "dropped_links_count"):
        if getattr(span, name):
            kept[f"otlp.{name}"] = getattr(span, name)
    if span.links:
        kept["otlp.links"] = [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in span.links
        ]
    unread = {key: value for key, value in tracer.items() if key not in _READ_TRACER_FIELDS}
    if unread:
        kept["tracer"] = unread
    return kept


_READ_TRACER_FIELDS = {
    "record",
    "key",
    "status",
    "error",
    "times_estimated",
    "entity_links",
    "run_type",
    "output_counters",
    "tool",
    "operation",
    *TRACER_STEP_TEXT,
    *TRACER_STEP_INTS,
    *TRACER_FLAGS,
    *_RUN_TEXT,
}


def _set_outcome(record: Any, span: Span, tracer: dict[str, Any]) -> None:
    """Status, error and times of a step, call or run from its span."""
    start, end = _time(span.start_time_unix_nano), _time(span.end_time_unix_nano)
    record.started_at, record.finished_at = start, end
    if start and end and span.end_time_unix_nano >= span.start_time_unix_nano:
        record.duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000
    status = tracer.get("status")
    if status not in Status.ALL:
        status = _status_of(span)
    record.status = status
    if status == Status.FAILED:
        record.error = span.status.message or _exception_message(span)
    if isinstance(tracer.get("error"), str) and not record.error:
        record.error = tracer["error"]


def _status_of(span: Span) -> str:
    if span.status.code == span.status.STATUS_CODE_ERROR:
        return Status.FAILED
    if span.status.code == span.status.STATUS_CODE_UNSET and not span.end_time_unix_nano:
        return Status.RUNNING
    return Status.SUCCEEDED


def _exception_message(span: Span) -> str:
    for event in span.events:
        if event.name == "exception":
            message = plain_attributes(event.attributes).get("exception.message")
            if isinstance(message, str):
                return message
    return ""


def _time(nanos: int) -> datetime | None:
    if not nanos or nanos > _MAX_NANOS:
        return None
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _key(wanted: Any, span_id: bytes, taken: set[str]) -> str:
    """Our export's step key when it is one and still free, else the span id."""
    if isinstance(wanted, str) and wanted and len(wanted) <= 255 and wanted not in taken:
        return wanted
    return span_id.hex()


def _links(step_key: str, raw: Any) -> Iterator[LinkRecord]:
    if not isinstance(raw, list):
        return
    for link in raw:
        if not isinstance(link, dict):
            continue
        parts = [link.get(name) for name in ("link_type", "entity_type", "entity_id")]
        if all(isinstance(part, str) and part for part in parts):
            external = link.get("external_id")
            yield LinkRecord(
                step_key, *parts, external_id=external if isinstance(external, str) else ""
            )


def _counters(text: str) -> dict[str, float]:
    value = _json_or_text(text)
    if not isinstance(value, dict):
        return {}
    return {
        str(name): number
        for name, number in value.items()
        if isinstance(number, int | float) and not isinstance(number, bool)
    }


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _event_level(name: str) -> str:
    return "error" if name == "exception" else "info"
