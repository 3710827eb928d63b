"""A run as OTLP/JSON: one ExportTraceServiceRequest with a root span for the run,
a span per step (parented along the step tree), a child span per call, logs as
span events and entity links as a span attribute.

Ids are derived from the database's: the trace id from the run's identity in its
format (an otlp run keeps its own), span ids from the step, call and run primary
keys, so exporting twice gives the same file. Fields the OTLP model has no place
for travel as `tracer.*` attributes, which the otlp ingest reads back.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson

from traces.ingest.otlp_json import (
    TRACER_FLAGS,
    TRACER_STEP_INTS,
    TRACER_STEP_TEXT,
    ExportTraceServiceRequest,
    Span,
    add_attribute,
    cut,
    message_to_json,
    span_to_json,
)
from traces.models import Call, EntityLink, LogEntry, Run, Status

from .timing import Placed, millis_to_nanos, nanos, placed_batches, run_span_times

CONTENT_TYPE = "application/json"
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
    trace_id = trace_id_of(run)
    yield head + _dumps(span_to_json(_run_span(run, trace_id)))
    for batch in placed_batches(run):
        related = _Related([placed.step.pk for placed in batch])
        for placed in batch:
            yield b"," + _dumps(span_to_json(_step_span(placed, trace_id, related)))
        starts = {placed.step.pk: placed.start_ns for placed in batch}
        for call in related.calls:
            yield b"," + _dumps(span_to_json(_call_span(call, trace_id, starts[call.step_id])))
    yield tail


def trace_id_of(run: Run) -> bytes:
    if run.format == "otlp" and _is_hex_id(run.external_id, 16):
        return bytes.fromhex(run.external_id)
    return _digest("run", run.format, run.origin, run.external_id)[:16]


def span_id_of(kind: str, pk: int) -> bytes:
    return _digest(kind, pk)[:8]


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


def _new_span(trace_id: bytes, span_id: bytes, parent: bytes | None, name: str) -> Span:
    span = Span(trace_id=trace_id, span_id=span_id, name=cut(name))
    if parent:
        span.parent_span_id = parent
    return span


def _set_times(span: Span, start: int | None, end: int | None) -> None:
    # fixed64 fields: a time before 1970 (a hostile trace's year 1) is left unset.
    if start is not None and start >= 0:
        span.start_time_unix_nano = start
    if end is not None and end >= 0:
        span.end_time_unix_nano = end


def _set_status(span: Span, status: str, error: str) -> None:
    add_attribute(span.attributes, "tracer.status", status)
    if status == Status.FAILED:
        span.status.code = span.status.STATUS_CODE_ERROR
        span.status.message = cut(error)
    elif status == Status.SUCCEEDED:
        span.status.code = span.status.STATUS_CODE_OK
    if error and status != Status.FAILED:
        add_attribute(span.attributes, "tracer.error", error)


def _run_span(run: Run, trace_id: bytes) -> Span:
    span = _new_span(trace_id, span_id_of("run", run.pk), None, run.name or run.external_id)
    span.kind = Span.SPAN_KIND_INTERNAL
    _set_times(span, *run_span_times(run))
    add_attribute(span.attributes, "tracer.record", "run")
    _set_status(span, run.status, run.error)
    add_attribute(span.attributes, "tracer.run_type", run.type)
    for field in _RUN_FIELDS:
        add_attribute(span.attributes, f"tracer.{field}", getattr(run, field) or None)
    if run.times_estimated:
        add_attribute(span.attributes, "tracer.times_estimated", True)
    if run.output_counters:
        add_attribute(span.attributes, "tracer.output_counters", run.output_counters)
    _add_own_attributes(span, run.attributes)
    logs = LogEntry.objects.filter(run=run, step__isnull=True).order_by("seq")
    _add_events(span, logs.iterator(chunk_size=1000))
    return span


def _step_span(placed: Placed, trace_id: bytes, related: _Related) -> Span:
    step = placed.step
    parent = span_id_of("step", step.parent_id) if step.parent_id else None
    span = _new_span(trace_id, span_id_of("step", step.pk), parent, step.name or step.key)
    if parent is None:
        span.parent_span_id = span_id_of("run", step.run_id)
    span.kind = Span.SPAN_KIND_INTERNAL
    _set_times(span, placed.start_ns, placed.end_ns)
    add_attribute(span.attributes, "tracer.record", "step")
    add_attribute(span.attributes, "tracer.key", step.key)
    _set_status(span, step.status, step.error)
    for field in _STEP_FIELDS:
        value = getattr(step, field)
        add_attribute(span.attributes, f"tracer.{field}", None if value == "" else value)
    for flag in TRACER_FLAGS:
        if getattr(step, flag):
            add_attribute(span.attributes, f"tracer.{flag}", True)
    if placed.estimated:
        add_attribute(span.attributes, "tracer.times_estimated", True)
    _add_links(span, related.links.get(step.pk, ()))
    _add_own_attributes(span, step.attributes)
    _add_events(span, related.logs.get(step.pk, ()), related.dropped.get(step.pk, 0))
    return span


def _call_span(call: Call, trace_id: bytes, step_start: int | None) -> Span:
    name = " ".join(part for part in (call.tool, call.operation) if part) or call.key
    span = _new_span(trace_id, span_id_of("call", call.pk), span_id_of("step", call.step_id), name)
    span.kind = Span.SPAN_KIND_CLIENT
    start = nanos(call.started_at)
    if start is None:
        start = step_start
    duration = millis_to_nanos(call.duration_ms)
    end = start + duration if start is not None and duration is not None else None
    _set_times(span, start, end)
    add_attribute(span.attributes, "tracer.record", "call")
    add_attribute(span.attributes, "tracer.key", call.key)
    _set_status(span, call.status, call.error)
    for field in ("tool", "operation", "raw_status", "attempt", "retry_of"):
        value = getattr(call, field)
        add_attribute(span.attributes, f"tracer.{field}", None if value == "" else value)
    _add_own_attributes(span, call.attributes)
    return span


def _add_own_attributes(span: Span, attributes: Any) -> None:
    """The source's own attributes, under their own keys (the `tracer.` ones are ours)."""
    if not isinstance(attributes, dict):
        return
    for key, value in attributes.items():
        name = str(key)
        add_attribute(
            span.attributes, f"source.{name}" if name.startswith("tracer.") else name, value
        )


def _add_links(span: Span, links) -> None:
    if not links:
        return
    attribute = span.attributes.add(key="tracer.entity_links")
    for link in links:
        item = attribute.value.array_value.values.add().kvlist_value.values
        add_attribute(item, "link_type", link.link_type)
        add_attribute(item, "entity_type", link.entity_type)
        add_attribute(item, "entity_id", link.entity_id)
        add_attribute(item, "external_id", link.external_id or None)


def _add_events(span: Span, logs, dropped: int = 0) -> None:
    for log in logs:
        if len(span.events) >= MAX_EVENTS_PER_SPAN:
            dropped += 1
            continue
        event = span.events.add(name=cut(log.message))
        time = nanos(log.time)
        if time is not None and time >= 0:
            event.time_unix_nano = time
        add_attribute(event.attributes, "log.seq", log.seq)
        add_attribute(event.attributes, "log.level", log.level or None)
        add_attribute(event.attributes, "log.fields", log.fields)
        if log.duplicate:
            add_attribute(event.attributes, "tracer.duplicate", True)
    span.dropped_events_count = dropped


class _Related:
    """The logs, entity links and calls of one batch of steps, by step id; a step's
    logs past MAX_EVENTS_PER_SPAN are only counted."""

    def __init__(self, step_ids: list[int]):
        self.logs: dict[int, list[LogEntry]] = defaultdict(list)
        self.dropped: dict[int, int] = defaultdict(int)
        logs = LogEntry.objects.filter(step_id__in=step_ids).order_by("step_id", "seq")
        for log in logs.iterator(chunk_size=1000):
            kept = self.logs[log.step_id]
            if len(kept) < MAX_EVENTS_PER_SPAN:
                kept.append(log)
            else:
                self.dropped[log.step_id] += 1
        self.links: dict[int, list[EntityLink]] = defaultdict(list)
        for link in EntityLink.objects.filter(step_id__in=step_ids).order_by("pk"):
            self.links[link.step_id].append(link)
        calls = Call.objects.filter(step_id__in=step_ids).defer("input", "output")
        self.calls = list(calls.order_by("step_id", "position"))
