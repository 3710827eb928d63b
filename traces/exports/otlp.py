"""A run as OTLP/JSON: one ExportTraceServiceRequest with a root span for the run,
a span per step (parented along the step tree), a child span per call, logs as
span events and entity links as a span attribute.

Ids are derived from the database's: the trace id from the run's identity in its
format (an otlp run keeps its own), span ids from the step, call and run primary
keys, so exporting twice gives the same file. Fields the OTLP model has no place
for travel as `tracer.*` attributes, which the otlp ingest reads back.

The envelope (resource, scope) goes through opentelemetry-proto's classes and
protobuf's json_format; the spans, a hundred thousand in a big run, are written
as plain dicts in OTLP/JSON's form directly: building each as a protobuf Span and
turning it into a dict with `MessageToDict` (about 28 nested messages a span)
was most of the time of an export (bench/RESULTS.md §8). The rules that form
follows are protobuf's proto3 JSON mapping (json_format) with OTLP's hex ids: field
names in lowerCamelCase, fields at their default value left out (an empty
string, 0, an empty list), a field of a oneof (AnyValue's) written whenever set,
64-bit integers as strings, enums as integers. tests/test_export.py proves each
span is what `MessageToDict` gives for the same span parsed by protobuf.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import orjson

from traces.ingest.common import json_text
from traces.ingest.otlp_json import (
    MAX_STRING_CHARS,
    TRACER_FLAGS,
    TRACER_STEP_INTS,
    TRACER_STEP_TEXT,
    ExportTraceServiceRequest,
    add_attribute,
    cut,
    message_to_json,
)
from traces.models import Call, EntityLink, LogEntry, Run, Status

from .timing import Placed, in_ids, millis_to_nanos, nanos, placed_batches, rows, run_span_times

CONTENT_TYPE = "application/json"
# A call's input and output can be 100 MB each and are not exported.
_CALL_UNEXPORTED = ("id", "input", "output")
SCOPE_NAME = "tracer_site"
# Past this many log rows on one span the rest are counted in droppedEventsCount.
MAX_EVENTS_PER_SPAN = 10_000
_STEP_FIELDS = TRACER_STEP_TEXT + TRACER_STEP_INTS
_RUN_FIELDS = (
    "format",
    "external_id",
    "origin",
    "trigger",
    "actor",
    "raw_status",
    "progress_label",
    "items_total",
    "items_processed",
    "items_succeeded",
    "items_failed",
)


def filename(run: Run) -> str:
    return f"run-{run.pk}.otlp.json"


def chunks(run: Run) -> Iterator[bytes]:
    """The document in pieces: the envelope, then one span at a time."""
    head, tail = _envelope(run)
    trace_id = trace_id_of(run).hex()
    yield head + _dumps(_run_span(run, trace_id))
    for batch in placed_batches(run):
        related = _Related([placed.step.pk for placed in batch])
        for placed in batch:
            yield b"," + _dumps(_step_span(placed, trace_id, related))
        starts = {placed.step.pk: placed.start_ns for placed in batch}
        for call in related.calls:
            yield b"," + _dumps(_call_span(call, trace_id, starts[call.step_id]))
    yield tail


def trace_id_of(run: Run) -> bytes:
    if run.format == "otlp" and _is_hex_id(run.external_id, 16):
        return bytes.fromhex(run.external_id)
    return _digest("run", run.format, run.origin, run.external_id)[:16]


def span_id_of(kind: str, pk: int) -> bytes:
    return _digest(kind, pk)[:8]


@lru_cache(maxsize=4096)
def _span_id(kind: str, pk: int) -> str:
    # Cached: a parent's id is asked for by each of its children.
    return _digest(kind, pk)[:8].hex()


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode(errors="replace")).digest()


def _is_hex_id(text: str, width: int) -> bool:
    return len(text) == 2 * width and all(c in "0123456789abcdef" for c in text)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _envelope(run: Run) -> tuple[bytes, bytes]:
    """The request's JSON around its (empty) span list, split where the spans go."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    add_attribute(resource_spans.resource.attributes, "service.name", run.format)
    add_attribute(resource_spans.resource.attributes, "tracer.format", run.format)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = SCOPE_NAME
    document = message_to_json(request)
    document["resourceSpans"][0]["scopeSpans"][0]["spans"] = []
    text = _dumps(document)
    head, _, tail = text.rpartition(b'"spans":[]')
    return head + b'"spans":[', b"]" + tail


# --- OTLP/JSON values, as json_format writes them ----------------------------------------

_INT64 = (-(2**63), 2**63 - 1)
# fixed64 (times): what does not fit (before 1970, after 2554) is left unset.
_FIXED64_MAX = 2**64 - 1
_KIND_INTERNAL = 1  # Span.SPAN_KIND_INTERNAL
_KIND_CLIENT = 3  # Span.SPAN_KIND_CLIENT
_STATUS_OK = 1  # Status.STATUS_CODE_OK
_STATUS_ERROR = 2  # Status.STATUS_CODE_ERROR


def _value(value: Any) -> dict:
    """An AnyValue, as otlp_json.set_value fills one: objects and lists as their JSON
    text (a hostile value can nest deeper than protobuf allows), long strings cut."""
    kind = type(value)
    if kind is str:  # most values: checked first
        return {"stringValue": _text(value)}
    if kind is bool:
        return {"boolValue": value}
    if isinstance(value, int) and not isinstance(value, bool):
        if _INT64[0] <= value <= _INT64[1]:
            return {"intValue": str(value)}
    elif isinstance(value, float) and math.isfinite(value):
        return {"doubleValue": value}
    elif isinstance(value, str):
        return {"stringValue": _text(value)}
    return {"stringValue": cut(json_text(value, ascii_only=False))}


def _text(text: str) -> str:
    """cut(), without its work for the usual short ASCII text (which it leaves as is)."""
    if len(text) <= MAX_STRING_CHARS and text.isascii():
        return text
    return cut(text)


def _attribute(attributes: list, key: str, value: Any) -> None:
    """Append a KeyValue; None is left out (as add_attribute), an empty key unwritten."""
    if value is None:
        return
    attributes.append({"key": key, "value": _value(value)} if key else {"value": _value(value)})


def _set_time(target: dict, name: str, nanos_: int | None) -> None:
    if nanos_ is not None and 0 < nanos_ <= _FIXED64_MAX:
        target[name] = str(nanos_)


def _new_span(trace_id: str, span_id: str, parent: str | None, name: str, kind: int) -> dict:
    span: dict[str, Any] = {"traceId": trace_id, "spanId": span_id}
    if parent:
        span["parentSpanId"] = parent
    name = cut(name)
    if name:
        span["name"] = name
    span["kind"] = kind
    return span


def _finish(span: dict, attributes: list, status: dict | None, events=((), 0)) -> dict:
    """The span's last fields, in field-number order as json_format writes them (the
    same bytes as before, not only the same JSON)."""
    if attributes:
        span["attributes"] = attributes
    kept, dropped = events
    if kept:
        span["events"] = kept
    if dropped:
        span["droppedEventsCount"] = dropped
    if status:
        span["status"] = status
    return span


def _status(attributes: list, status: str, error: str) -> dict | None:
    _attribute(attributes, "tracer.status", status)
    if error and status != Status.FAILED:
        _attribute(attributes, "tracer.error", error)
    if status == Status.FAILED:
        message = cut(error)
        return {"message": message, "code": _STATUS_ERROR} if message else {"code": _STATUS_ERROR}
    if status == Status.SUCCEEDED:
        return {"code": _STATUS_OK}
    return None


# --- the spans -----------------------------------------------------------------------------


def _run_span(run: Run, trace_id: str) -> dict:
    span = _new_span(
        trace_id, _span_id("run", run.pk), None, run.name or run.external_id, _KIND_INTERNAL
    )
    start, end = run_span_times(run)
    _set_time(span, "startTimeUnixNano", start)
    _set_time(span, "endTimeUnixNano", end)
    attributes: list = []
    _attribute(attributes, "tracer.record", "run")
    status = _status(attributes, run.status, run.error)
    _attribute(attributes, "tracer.run_type", run.type)
    for name in _RUN_FIELDS:
        _attribute(attributes, f"tracer.{name}", getattr(run, name) or None)
    if run.times_estimated:
        _attribute(attributes, "tracer.times_estimated", True)
    if run.output_counters:
        _attribute(attributes, "tracer.output_counters", run.output_counters)
    _own_attributes(attributes, run.attributes)
    logs = rows(LogEntry.objects.filter(run=run, step__isnull=True).order_by("seq"))
    return _finish(span, attributes, status, _events(logs.iterator(chunk_size=1000)))


def _step_span(placed: Placed, trace_id: str, related: _Related) -> dict:
    step = placed.step
    parent = _span_id("step", step.parent_id) if step.parent_id else _span_id("run", step.run_id)
    span_id = _span_id("step", step.pk)
    span = _new_span(trace_id, span_id, parent, step.name or step.key, _KIND_INTERNAL)
    _set_time(span, "startTimeUnixNano", placed.start_ns)
    _set_time(span, "endTimeUnixNano", placed.end_ns)
    attributes: list = []
    _attribute(attributes, "tracer.record", "step")
    _attribute(attributes, "tracer.key", step.key)
    status = _status(attributes, step.status, step.error)
    for name in _STEP_FIELDS:
        value = getattr(step, name)
        _attribute(attributes, f"tracer.{name}", None if value == "" else value)
    for flag in TRACER_FLAGS:
        if getattr(step, flag):
            _attribute(attributes, f"tracer.{flag}", True)
    if placed.estimated:
        _attribute(attributes, "tracer.times_estimated", True)
    _add_links(attributes, related.links.get(step.pk, ()))
    _own_attributes(attributes, step.attributes)
    events = _events(related.logs.get(step.pk, ()), related.dropped.get(step.pk, 0))
    return _finish(span, attributes, status, events)


def _call_span(call, trace_id: str, step_start: int | None) -> dict:
    name = " ".join(part for part in (call.tool, call.operation) if part) or call.key
    span = _new_span(
        trace_id, _span_id("call", call.pk), _span_id("step", call.step_id), name, _KIND_CLIENT
    )
    start = nanos(call.started_at)
    if start is None:
        start = step_start
    duration = millis_to_nanos(call.duration_ms)
    end = start + duration if start is not None and duration is not None else None
    _set_time(span, "startTimeUnixNano", start)
    _set_time(span, "endTimeUnixNano", end)
    attributes: list = []
    _attribute(attributes, "tracer.record", "call")
    _attribute(attributes, "tracer.key", call.key)
    status = _status(attributes, call.status, call.error)
    for name in ("tool", "operation", "raw_status", "attempt", "retry_of"):
        value = getattr(call, name)
        _attribute(attributes, f"tracer.{name}", None if value == "" else value)
    _own_attributes(attributes, call.attributes)
    return _finish(span, attributes, status)


def _own_attributes(attributes: list, own: Any) -> None:
    """The source's own attributes, under their own keys (the `tracer.` ones are ours)."""
    if not isinstance(own, dict):
        return
    for key, value in own.items():
        name = str(key)
        _attribute(attributes, f"source.{name}" if name.startswith("tracer.") else name, value)


def _add_links(attributes: list, links) -> None:
    if not links:
        return
    items = []
    for link in links:
        fields: list = []
        _attribute(fields, "link_type", link.link_type)
        _attribute(fields, "entity_type", link.entity_type)
        _attribute(fields, "entity_id", link.entity_id)
        _attribute(fields, "external_id", link.external_id or None)
        items.append({"kvlistValue": {"values": fields}})
    attributes.append({"key": "tracer.entity_links", "value": {"arrayValue": {"values": items}}})


def _events(logs, dropped: int = 0) -> tuple[list, int]:
    """The log rows as span events, and how many past MAX_EVENTS_PER_SPAN were dropped."""
    events = []
    for log in logs:
        if len(events) >= MAX_EVENTS_PER_SPAN:
            dropped += 1
            continue
        event: dict[str, Any] = {}
        _set_time(event, "timeUnixNano", nanos(log.time))
        name = cut(log.message)
        if name:
            event["name"] = name
        attributes: list = []
        _attribute(attributes, "log.seq", log.seq)
        _attribute(attributes, "log.level", log.level or None)
        _attribute(attributes, "log.fields", log.fields)
        if log.duplicate:
            _attribute(attributes, "tracer.duplicate", True)
        event["attributes"] = attributes
        events.append(event)
    return events, dropped


class _Related:
    """The logs, entity links and calls of one batch of steps, by step id; a step's
    logs past MAX_EVENTS_PER_SPAN are only counted."""

    def __init__(self, step_ids: list[int]):
        self.calls: list = []
        self.logs: dict[int, list] = defaultdict(list)
        self.dropped: dict[int, int] = defaultdict(int)
        self.links: dict[int, list] = defaultdict(list)
        if not step_ids:
            return
        logs = LogEntry.objects.extra(where=[in_ids("step_id", step_ids)])
        for log in rows(logs.order_by("step_id", "seq")).iterator(chunk_size=1000):
            kept = self.logs[log.step_id]
            if len(kept) < MAX_EVENTS_PER_SPAN:
                kept.append(log)
            else:
                self.dropped[log.step_id] += 1
        links = EntityLink.objects.extra(where=[in_ids("step_id", step_ids)]).order_by("pk")
        for link in rows(links):
            self.links[link.step_id].append(link)
        calls = Call.objects.extra(where=[in_ids("step_id", step_ids)])
        self.calls = list(rows(calls.order_by("step_id", "position"), exclude=_CALL_UNEXPORTED))
