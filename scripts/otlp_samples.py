#!/usr/bin/env python3
"""Regenerate samples/otlp/ from the protobuf classes of `opentelemetry-proto`.

What an OpenTelemetry Collector's file exporter writes for a small service:
`collector.jsonl`, JSON lines, each an ExportTraceServiceRequest (one trace's spans
split over two lines, as a batching collector does), and `checkout.json`, a single
pretty-printed document. Run: `python scripts/otlp_samples.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from traces.ingest.otlp_json import (  # noqa: E402
    ExportTraceServiceRequest,
    Span,
    add_attribute,
    message_to_json,
    span_to_json,
)

OUT = ROOT / "samples" / "otlp"
# 2026-03-02T09:00:00Z
BASE = 1_772_442_000_000_000_000
MS = 1_000_000


def span(trace: str, span_id: str, parent: str, name: str, start_ms: int, end_ms: int, **kw):
    item = Span(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex(span_id),
        name=name,
        kind=kw.pop("kind", Span.SPAN_KIND_INTERNAL),
        start_time_unix_nano=BASE + start_ms * MS,
        end_time_unix_nano=BASE + end_ms * MS,
    )
    if parent:
        item.parent_span_id = bytes.fromhex(parent)
    if kw.pop("error", None) is not None:
        item.status.code = item.status.STATUS_CODE_ERROR
        item.status.message = kw.pop("message")
    for event_name, at_ms, attributes in kw.pop("events", ()):
        event = item.events.add(name=event_name, time_unix_nano=BASE + at_ms * MS)
        for key, value in attributes.items():
            add_attribute(event.attributes, key, value)
    for key, value in kw.items():
        add_attribute(item.attributes, key.replace("_", "."), value)
    return item


def request(service: str, spans: list[Span]) -> dict:
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    add_attribute(resource_spans.resource.attributes, "service.name", service)
    add_attribute(resource_spans.resource.attributes, "deployment.environment", "staging")
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "io.opentelemetry.flask"
    scope_spans.scope.version = "0.48b0"
    document = message_to_json(message)
    document["resourceSpans"][0]["scopeSpans"][0]["spans"] = [span_to_json(s) for s in spans]
    return document


ORDERS = "5b8efff798038103d269b633813fc60c"
REPORT = "a1c2e3f4a5b6c7d8e9f0011223344556"
CHECKOUT = "0af7651916cd43dd8448eb211c80319c"


def orders_trace() -> tuple[list[Span], list[Span]]:
    """A request whose spans reach the collector in two batches; one child fails."""
    first = [
        span(
            ORDERS,
            "eee19b7ec3c1b174",
            "",
            "POST /orders",
            0,
            420,
            kind=Span.SPAN_KIND_SERVER,
            http_request_method="POST",
            http_response_status_code=201,
        ),
        span(ORDERS, "eee19b7ec3c1b175", "eee19b7ec3c1b174", "validate order", 5, 40),
        span(
            ORDERS,
            "eee19b7ec3c1b176",
            "eee19b7ec3c1b174",
            "reserve stock",
            45,
            230,
            events=[("stock reserved", 229, {"items": 3})],
        ),
    ]
    second = [
        span(
            ORDERS,
            "eee19b7ec3c1b177",
            "eee19b7ec3c1b176",
            "SELECT inventory",
            50,
            120,
            kind=Span.SPAN_KIND_CLIENT,
            db_system="postgresql",
        ),
        span(
            ORDERS,
            "eee19b7ec3c1b178",
            "eee19b7ec3c1b174",
            "charge card",
            235,
            410,
            kind=Span.SPAN_KIND_CLIENT,
            error=True,
            message="card declined: insufficient funds",
            events=[
                (
                    "exception",
                    409,
                    {"exception.type": "PaymentError", "exception.message": "card declined"},
                )
            ],
        ),
    ]
    return first, second


def report_trace() -> list[Span]:
    """A batch job with two root spans (no lone root): both become steps."""
    return [
        span(REPORT, "1000000000000001", "", "load rows", 0, 900, rows=12000),
        span(REPORT, "1000000000000002", "", "render report", 900, 1500),
        span(REPORT, "1000000000000003", "1000000000000002", "write pdf", 1200, 1490),
    ]


def checkout_trace() -> list[Span]:
    """Three levels under a lone root, with a log event."""
    root = "b7ad6b7169203331"
    return [
        span(CHECKOUT, root, "", "checkout", 0, 300, kind=Span.SPAN_KIND_SERVER),
        span(CHECKOUT, "b7ad6b7169203332", root, "cart", 10, 60),
        span(
            CHECKOUT,
            "b7ad6b7169203333",
            root,
            "payment",
            70,
            280,
            events=[("retrying gateway", 150, {"attempt": 2})],
        ),
        span(
            CHECKOUT,
            "b7ad6b7169203334",
            "b7ad6b7169203333",
            "gateway call",
            160,
            270,
            kind=Span.SPAN_KIND_CLIENT,
        ),
    ]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    first, second = orders_trace()
    lines = [
        request("orders", first + report_trace()[:1]),
        request("orders", second + report_trace()[1:]),
    ]
    (OUT / "collector.jsonl").write_text(
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    )
    (OUT / "checkout.json").write_text(
        json.dumps(request("shop", checkout_trace()), indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
