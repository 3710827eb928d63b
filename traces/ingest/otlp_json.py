"""OTLP/JSON through the real protobuf classes of `opentelemetry-proto`. No Django here.

protobuf's `json_format` writes and reads the proto3 JSON mapping, which OTLP/JSON
follows with one difference: trace and span ids are hex, not base64. The functions
here convert the ids on the way in and out, so every OTLP document the site writes
or reads passes through `ExportTraceServiceRequest` and its schema, never through
one written from memory. Enums are written as integers, as OTLP/JSON asks.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .common import brief, json_text

__all__ = [
    "TRACER_FLAGS",
    "TRACER_STEP_INTS",
    "TRACER_STEP_TEXT",
    "ExportTraceServiceRequest",
    "OtlpError",
    "Span",
    "Status",
    "add_attribute",
    "cut",
    "message_to_json",
    "plain_attributes",
    "plain_value",
    "request_from_json",
    "span_to_json",
]

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
_INT64 = (-(2**63), 2**63 - 1)
# A longer string attribute is cut: a trace value can be 100 MB.
MAX_STRING_CHARS = 65536
CUT_MARK = "…[cut]"
# The step fields OTLP has no place for, written by traces/exports/otlp.py as
# `tracer.<field>` attributes and read back by otlp.py.
TRACER_STEP_TEXT = ("type", "raw_status", "retry_of", "entity_type", "entity_id")
TRACER_STEP_INTS = (
    "attempt",
    "retries",
    "max_retries",
    "loop_index",
    "items_total",
    "items_processed",
    "items_succeeded",
    "items_failed",
)
TRACER_FLAGS = ("truncated", "never_closed", "synthetic")
_ID_WIDTHS = {"traceId": TRACE_ID_BYTES, "spanId": SPAN_ID_BYTES, "parentSpanId": SPAN_ID_BYTES}


class OtlpError(ValueError):
    """A document that is not OTLP/JSON, with a message naming where and why."""


def span_to_json(span: Span) -> dict[str, Any]:
    """A Span as an OTLP/JSON object (hex ids, integer enums, 64-bit numbers as strings)."""
    data = json_format.MessageToDict(span, use_integers_for_enums=True)
    _ids_to_hex(data)
    for link in data.get("links", ()):
        _ids_to_hex(link)
    return data


def message_to_json(message: Message) -> dict[str, Any]:
    """Any OTLP message without spans (resource, scope) as OTLP/JSON."""
    return json_format.MessageToDict(message, use_integers_for_enums=True)


def request_from_json(document: Any, where: str = "") -> ExportTraceServiceRequest:
    """An `ExportTraceServiceRequest` from a parsed OTLP/JSON document; OtlpError if
    it is not one (wrong shape, bad ids). Unknown fields are ignored, as OTLP asks of
    receivers. The document's ids are converted in place."""
    prefix = f"{where}: " if where else ""
    if not isinstance(document, dict):
        raise OtlpError(f"{prefix}expected a JSON object with 'resourceSpans'")
    if "resourceSpans" not in document and "resource_spans" not in document:
        raise OtlpError(f"{prefix}no 'resourceSpans' key: not an OTLP trace export")
    _check_json_types(document, ExportTraceServiceRequest.DESCRIPTOR, where or "document")
    _ids_to_base64(document, where or "document")
    try:
        return json_format.ParseDict(
            document, ExportTraceServiceRequest(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise OtlpError(f"{prefix}not an OTLP trace export: {_first_line(exc)}") from None


_INTEGERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def _check_json_types(document: Any, descriptor: Descriptor, where: str) -> None:
    """The JSON type of every known field, judged by the message descriptors: protobuf's
    own parser reports a wrong type in Python's words ("'float' object is not
    iterable"), not the document's. Iterative: AnyValue nests without bound."""
    stack = [(document, descriptor, where)]
    while stack:
        value, message, here = stack.pop()
        if not isinstance(value, dict):
            raise _wrong(here, "an object", value)
        for key, item in value.items():
            field = message.fields_by_camelcase_name.get(key) or message.fields_by_name.get(key)
            if field is None or item is None:  # unknown fields are ignored; null is the default
                continue
            name = f"{here}.{key}"
            if _is_repeated(field):
                if not isinstance(item, list):
                    raise _wrong(name, "a list", item)
                items = [(element, f"{name}[{index}]") for index, element in enumerate(item)]
            else:
                items = [(item, name)]
            for element, element_where in items:
                if field.message_type is not None:
                    stack.append((element, field.message_type, element_where))
                else:
                    _check_scalar(field, element, element_where)


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)
    return repeated if isinstance(repeated, bool) else field.label == field.LABEL_REPEATED


def _check_scalar(field: FieldDescriptor, value: Any, where: str) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if field.type in _INTEGERS or field.type in _FLOATS:
        ok, expected = number or isinstance(value, str), "a number"
    elif field.type == FieldDescriptor.TYPE_ENUM:
        ok, expected = number or isinstance(value, str), "an enum value"
    elif field.type == FieldDescriptor.TYPE_BOOL:
        ok, expected = isinstance(value, bool), "a boolean"
    else:
        ok, expected = isinstance(value, str), "a string"
    if not ok:
        raise _wrong(where, expected, value)


def _wrong(where: str, expected: str, value: Any) -> OtlpError:
    return OtlpError(f"{where}: expected {expected}, got {brief(value, 40, style='typed')}")


def add_attribute(attributes, key: str, value: Any) -> None:
    """Append `key: value` to a repeated KeyValue field; None is left out. Objects
    and lists go as their JSON text (a hostile value can nest deeper than protobuf
    allows), long strings are cut."""
    if value is None:
        return
    attribute: KeyValue = attributes.add(key=key)
    set_value(attribute.value, value)


def set_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        target.int_value = value
    elif isinstance(value, float) and math.isfinite(value):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = cut(value)
    else:
        target.string_value = cut(json_text(value, ascii_only=False))


def cut(text: str) -> str:
    """Text a protobuf string field takes: at most MAX_STRING_CHARS characters, and
    valid UTF-8 (a lone surrogate from a hostile trace becomes "?")."""
    if len(text) > MAX_STRING_CHARS:
        text = text[:MAX_STRING_CHARS] + CUT_MARK
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode(errors="replace").decode()
    return text


def plain_value(value: AnyValue) -> Any:
    """An AnyValue as plain Python (nesting is bounded by protobuf's parse limit)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [plain_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: plain_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def plain_attributes(attributes) -> dict[str, Any]:
    return {item.key: plain_value(item.value) for item in attributes}


def _ids_to_hex(data: dict[str, Any]) -> None:
    for key in _ID_WIDTHS:
        if key in data:
            data[key] = base64.b64decode(data[key]).hex()


def _ids_to_base64(document: dict[str, Any], where: str) -> None:
    """Hex ids to the base64 protobuf's JSON parser reads, checked on the way."""
    for r, resource in enumerate(_items(document, "resourceSpans")):
        for s, scope in enumerate(_items(resource, "scopeSpans")):
            for n, span in enumerate(_items(scope, "spans")):
                here = f"{where} resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                _id_to_base64(span, here)
                for k, link in enumerate(_items(span, "links")):
                    _id_to_base64(link, f"{here}.links[{k}]")


def _items(container: Any, key: str) -> list:
    value = container.get(key, []) if isinstance(container, dict) else []
    return value if isinstance(value, list) else []


def _id_to_base64(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        return
    for key, width in _ID_WIDTHS.items():
        if key not in data:
            continue
        value = data[key]
        if value == "" and key == "parentSpanId":
            continue
        if not isinstance(value, str) or len(value) != 2 * width or not _is_hex(value):
            shown = json_text(value)[:60]
            raise OtlpError(f"{where}.{key}: expected {2 * width} hex digits, got {shown}")
        data[key] = base64.b64encode(bytes.fromhex(value)).decode()


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)


# protobuf nests its reason in one "Failed to parse X field: " per level.
_FIELD_CHAIN = re.compile(r"Failed to parse (\w+) field: ")


def _first_line(exc: Exception) -> str:
    """The reason in a line: protobuf's chain of fields as a path before it (a value
    nested past protobuf's 100 levels has the reason after 2,000 characters of it)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    fields = _FIELD_CHAIN.findall(text)
    if fields:
        path = ".".join(fields)
        if len(path) > 120:
            path = f"{path[:50]}…{path[-60:]}"
        text = f"{path}: {_FIELD_CHAIN.sub('', text).rstrip('.')}"
    return text[:300]
