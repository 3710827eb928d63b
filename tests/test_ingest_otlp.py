import json
from pathlib import Path

import pytest

from traces.ingest import detect, otlp
from traces.ingest.common import read_head
from traces.ingest.loader import ingest_paths
from traces.ingest.records import ParseError, Status
from traces.models import LogEntry, Run, Step

ORDERS = "5b8efff798038103d269b633813fc60c"
REPORT = "a1c2e3f4a5b6c7d8e9f0011223344556"
CHECKOUT = "0af7651916cd43dd8448eb211c80319c"


def parse_all(path: Path) -> dict:
    """The file's runs by trace id, their steps and logs read into lists."""
    return {run.external_id: with_lists(run) for run in otlp.parse(path)}


def with_lists(run):
    run.steps, run.logs = list(run.steps), list(run.logs)
    return run


def steps_by_name(run) -> dict:
    return {step.name: step for step in run.steps}


@pytest.mark.parametrize("name", ["collector.jsonl", "checkout.json"])
def test_samples_are_detected_as_otlp(samples, name):
    path = samples / "otlp" / name
    assert otlp.sniff(path, read_head(path))
    assert detect(path) is otlp


def test_other_formats_json_is_not_otlp(samples):
    for path in (samples / "traceos/traces.json", samples / "greentic/02-node-error/trace.json"):
        assert not otlp.sniff(path, read_head(path))


def test_sample_counts_match_the_readme(samples):
    collector = parse_all(samples / "otlp/collector.jsonl")
    checkout = parse_all(samples / "otlp/checkout.json")
    assert sorted(collector) == sorted([ORDERS, REPORT]) and list(checkout) == [CHECKOUT]
    counts = {
        key: (len(run.steps), len(run.logs), run.status)
        for key, run in (collector | checkout).items()
    }
    assert counts == {
        ORDERS: (4, 2, Status.FAILED),
        REPORT: (3, 0, Status.SUCCEEDED),
        CHECKOUT: (3, 1, Status.SUCCEEDED),
    }


def test_a_trace_split_over_lines_is_one_run_nested_by_parent_span_id(samples):
    run = parse_all(samples / "otlp/collector.jsonl")[ORDERS]
    steps = steps_by_name(run)
    assert run.name == "POST /orders" and run.duration_ms == 420.0
    assert steps["SELECT inventory"].parent_key == steps["reserve stock"].key
    assert {steps[name].parent_key for name in ("validate order", "reserve stock")} == {None}
    # Parents come before their children, siblings by start time.
    assert [step.name for step in run.steps] == [
        "validate order",
        "reserve stock",
        "SELECT inventory",
        "charge card",
    ]


def test_error_status_fails_the_step_and_the_unset_root(samples):
    run = parse_all(samples / "otlp/collector.jsonl")[ORDERS]
    charge = steps_by_name(run)["charge card"]
    assert charge.status == Status.FAILED
    assert charge.error == "card declined: insufficient funds"
    assert run.status == Status.FAILED and run.error == charge.error
    assert steps_by_name(run)["validate order"].status == Status.SUCCEEDED


def test_several_roots_are_all_steps(samples):
    run = parse_all(samples / "otlp/collector.jsonl")[REPORT]
    assert [(step.name, step.parent_key) for step in run.steps] == [
        ("load rows", None),
        ("render report", None),
        ("write pdf", "1000000000000002"),
    ]
    assert run.duration_ms == 1500.0 and run.name == "load rows"


def test_attributes_kind_and_ids_are_kept(samples):
    run = parse_all(samples / "otlp/collector.jsonl")[ORDERS]
    select = steps_by_name(run)["SELECT inventory"]
    assert select.attributes["db.system"] == "postgresql"
    assert select.attributes["otlp.kind"] == "SPAN_KIND_CLIENT"
    assert select.attributes["otlp.span_id"] == select.key == "eee19b7ec3c1b177"
    assert select.attributes["otlp.parent_span_id"] == "eee19b7ec3c1b176"
    assert run.attributes["http.response.status.code"] == 201
    assert run.attributes["resource"]["service.name"] == "orders"


def test_events_become_log_rows_on_their_step(samples):
    run = parse_all(samples / "otlp/collector.jsonl")[ORDERS]
    keys = {step.name: step.key for step in run.steps}
    assert [(log.seq, log.message, log.level, log.step_key) for log in run.logs] == [
        (1, "stock reserved", "info", keys["reserve stock"]),
        (2, "exception: card declined", "error", keys["charge card"]),
    ]
    assert run.logs[0].attributes == {"items": 3}


def test_samples_ingest_into_the_database(samples, db):
    report = ingest_paths([samples / "otlp"])
    assert report.failed == []
    assert Run.objects.filter(format="otlp").count() == 3
    assert Step.objects.filter(run__format="otlp").count() == 10
    assert LogEntry.objects.filter(run__format="otlp").count() == 3
    orders = Run.objects.get(external_id=ORDERS)
    select = orders.steps.get(name="SELECT inventory")
    assert (select.parent.name, select.depth) == ("reserve stock", 1)
    assert orders.steps_failed == 1 and orders.status == "failed"


def test_reingesting_the_samples_changes_nothing(samples, db):
    ingest_paths([samples / "otlp"])
    report = ingest_paths([samples / "otlp"])
    assert report.summary()["runs"] == 0


def write(tmp_path: Path, text: str, name: str = "spans.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def span_document(**span) -> dict:
    base = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "s"}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [base | span]}]}]}


def nested_value(depth: int) -> dict:
    value: dict = {"stringValue": "bottom"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return {"key": "n", "value": value}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"resourceSpans": [}', "invalid JSON"),
        ('{"resourceSpans": []}\n{"resourceSpans": [}\n', "line 2: invalid JSON"),
        ('{"resourceSpans": 5}', "document.resourceSpans: expected a list, got 5"),
        (
            json.dumps(span_document(kind=[2])),
            r"spans\[0\]\.kind: expected an enum value, got a list",
        ),
        (
            '{"resourceSpans": [{"resource": 5}]}',
            "resourceSpans\\[0\\].resource: expected an object",
        ),
        (json.dumps(span_document(spanId="xyz")), "spanId: expected 16 hex digits"),
        (json.dumps(span_document(traceId="ab" * 8)), "traceId: expected 32 hex digits"),
        (
            json.dumps(span_document(startTimeUnixNano="soon")),
            "not an OTLP trace export: resourceSpans.scopeSpans.spans.startTimeUnixNano: "
            "invalid literal",
        ),
        # protobuf's reason comes after a chain of 150 fields: said first, the path cut
        (json.dumps(span_document(attributes=[nested_value(50)])), "….*Message too deep"),
        (
            json.dumps(span_document(endTimeUnixNano=str(2**64))),
            "spans.endTimeUnixNano: Value out of range",
        ),
        ('{"resourceSpans": []}', "no spans"),
        ("  \n", "empty file"),
    ],
)
def test_bad_input_is_a_parse_error_naming_the_reason(tmp_path, text, reason):
    with pytest.raises(ParseError, match=reason) as raised:
        list(otlp.parse(write(tmp_path, text)))
    assert len(str(raised.value)) < 400


def test_a_bad_file_fails_alone_with_its_reason(tmp_path, db):
    write(tmp_path, json.dumps(span_document(spanId="xyz")), "bad.json")
    write(tmp_path, json.dumps(span_document()), "good.json")
    report = ingest_paths([tmp_path])
    (failed,) = report.failed
    assert failed.display_name.endswith("bad.json")
    assert "spanId: expected 16 hex digits" in failed.error
    assert Run.objects.get().external_id == "ab" * 16


def test_a_span_without_end_is_running_and_a_missing_parent_is_noted(tmp_path):
    document = span_document(startTimeUnixNano="1772442000000000000", parentSpanId="ef" * 8)
    (run,) = parse_all(write(tmp_path, json.dumps(document))).values()
    # the lone root (its parent is not in the file) is the run itself
    assert run.status == Status.RUNNING and run.finished_at is None
    assert run.attributes["otlp.notes"] == [f"span {'cd' * 8}: parent not in the file"]


def test_a_deep_trace_is_read_without_recursion(tmp_path):
    spans = [
        {"traceId": "ab" * 16, "spanId": f"{n + 1:016x}", "name": f"level {n}"}
        | ({"parentSpanId": f"{n:016x}"} if n else {})
        for n in range(5000)
    ]
    document = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    (run,) = parse_all(write(tmp_path, json.dumps(document))).values()
    assert len(run.steps) == 4999 and run.steps[-1].parent_key == run.steps[-2].key
