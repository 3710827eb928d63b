"""GET /api/runs/{id}/export: a run as OTLP/JSON and as Chrome trace events; the
round trip through the otlp ingest for a run of every format; the run page's buttons."""

from __future__ import annotations

import base64
import copy
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from google.protobuf import json_format

from traces.ingest.loader import ingest_paths
from traces.ingest.otlp_json import Span, request_from_json, span_to_json
from traces.models import Call, EntityLink, Format, LogEntry, Run, Step

pytestmark = pytest.mark.django_db
SOURCE_FORMATS = [name for name in Format.values if name != "otlp"]


@pytest.fixture
def loaded(samples) -> None:
    assert ingest_paths([samples]).failed == []


def richest_run(format_name: str) -> Run:
    """The format's run with the most calls, links and steps: the most to carry over."""
    runs = Run.objects.filter(format=format_name)
    return runs.order_by("-call_count", "-link_count", "-step_count", "pk").first()


def export(client, run: Run, format_name: str) -> tuple[dict, object]:
    url = reverse("api:export_run", args=[run.pk])
    response = client.get(url, {"format": format_name})
    assert response.status_code == 200, response.content
    return json.loads(b"".join(response.streaming_content)), response


def exported_otlp(client, run: Run) -> dict:
    document, _ = export(client, run, "otlp")
    # Every export is checked against opentelemetry-proto's ExportTraceServiceRequest.
    request_from_json(json.loads(json.dumps(document)), "export")
    return document


def spans_of(document: dict) -> list[dict]:
    (resource,) = document["resourceSpans"]
    (scope,) = resource["scopeSpans"]
    return scope["spans"]


def tree(run: Run) -> dict:
    """Each step by key: its parent's key, status and duration (recorded, or between
    its start and finish)."""
    shape = {}
    for step in Step.objects.filter(run=run).select_related("parent"):
        duration = step.duration_ms
        if duration is None and step.started_at and step.finished_at:
            duration = (step.finished_at - step.started_at).total_seconds() * 1000
        parent = step.parent.key if step.parent else None
        shape[step.key] = (parent, step.status, duration)
    return shape


def assert_same_tree(original: dict, copy: dict) -> None:
    assert copy.keys() == original.keys()
    for key, (parent, status, duration) in original.items():
        copy_parent, copy_status, copy_duration = copy[key]
        assert (copy_parent, copy_status) == (parent, status), key
        if duration is None:
            assert copy_duration is None, key
        else:
            assert copy_duration == pytest.approx(duration, abs=0.001), key


@pytest.mark.parametrize("format_name", SOURCE_FORMATS)
def test_otlp_round_trip_gives_the_same_tree(client, loaded, tmp_path, format_name):
    run = richest_run(format_name)
    document = exported_otlp(client, run)
    path = tmp_path / f"run-{run.pk}.otlp.json"
    path.write_text(json.dumps(document))
    report = ingest_paths([path])
    assert report.failed == []
    (copy,) = Run.objects.filter(pk__in=report.files[0].runs_added)
    assert copy.format == "otlp" and copy.status == run.status
    assert copy.step_count == run.step_count
    assert_same_tree(tree(run), tree(copy))
    assert Call.objects.filter(run=copy).count() == run.call_count
    assert EntityLink.objects.filter(run=copy).count() == run.link_count
    assert LogEntry.objects.filter(run=copy).count() == LogEntry.objects.filter(run=run).count()
    assert copy.attributes["exported_from"]["format"] == format_name


def test_otlp_export_shape(client, loaded):
    run = richest_run("runs")
    document = exported_otlp(client, run)
    spans = spans_of(document)
    root = spans[0]
    assert "parentSpanId" not in root and root["name"] == (run.name or run.external_id)
    assert len(root["traceId"]) == 32 and all(len(span["spanId"]) == 16 for span in spans)
    assert {span["traceId"] for span in spans} == {root["traceId"]}
    assert len(spans) == 1 + run.step_count + run.call_count
    assert isinstance(root["startTimeUnixNano"], str)
    by_id = {span["spanId"]: span for span in spans}
    assert all(span["parentSpanId"] in by_id for span in spans[1:])
    failed = [span for span in spans if span.get("status", {}).get("code") == 2]
    assert len(failed) == run.steps_failed + Call.objects.filter(run=run, status="failed").count()
    assert all(span["status"]["message"] for span in failed)


def test_otlp_export_is_the_same_twice(client, loaded):
    run = richest_run("workflow")
    assert exported_otlp(client, run) == exported_otlp(client, run)


def test_logs_become_events_on_their_step(client, loaded):
    run = richest_run("workflow")
    spans = spans_of(exported_otlp(client, run))
    events = sum(len(span.get("events", ())) for span in spans)
    assert events == LogEntry.objects.filter(run=run).count() > 0


def test_estimated_times_are_said_so(client, loaded):
    run = Run.objects.filter(format="greentic").first()
    spans = spans_of(exported_otlp(client, run))
    flags = [
        {attr["key"]: attr["value"] for attr in span["attributes"]}.get("tracer.times_estimated")
        for span in spans
    ]
    assert flags == [{"boolValue": True}] * len(spans)
    # laid end to end from the run's start
    assert spans[1]["startTimeUnixNano"] == spans[0]["startTimeUnixNano"]


def test_export_is_a_download_named_by_the_run(client, loaded):
    run = richest_run("duckflux")
    for format_name, suffix in (("otlp", "otlp.json"), ("chrome", "chrome.json")):
        _, response = export(client, run, format_name)
        assert response["Content-Type"] == "application/json"
        assert response["Content-Disposition"] == (f'attachment; filename="run-{run.pk}.{suffix}"')


def test_export_refuses_an_unknown_format_and_run(client, loaded):
    run = Run.objects.first()
    url = reverse("api:export_run", args=[run.pk])
    response = client.get(url, {"format": "zipkin"})
    assert response.status_code == 400 and "format" in response.json()["detail"]
    assert client.get(reverse("api:export_run", args=[10**9])).status_code == 404


# --- Chrome trace events ------------------------------------------------------------


def check_nesting(events: list[dict]) -> None:
    """On each track, events nest: each starts after the previous ended or ends
    inside the one still open (what Perfetto needs to draw them)."""
    by_track = defaultdict(list)
    for event in events:
        by_track[event["tid"]].append(event)
    for track in by_track.values():
        open_ends: list[float] = []
        for event in sorted(track, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"]:
                open_ends.pop()
            end = event["ts"] + event["dur"]
            assert not open_ends or end <= open_ends[-1] + 1e-6, event
            open_ends.append(end)


@pytest.mark.parametrize("format_name", SOURCE_FORMATS)
def test_chrome_export_has_an_event_per_timed_step_nested_per_track(client, loaded, format_name):
    run = richest_run(format_name)
    document, _ = export(client, run, "chrome")
    assert set(document) == {"displayTimeUnit", "traceEvents"}
    complete = [event for event in document["traceEvents"] if event["ph"] == "X"]
    assert all(set(event) >= {"name", "ts", "dur", "pid", "tid", "args"} for event in complete)
    placed = Step.objects.filter(run=run).exclude(started_at=None, duration_ms=None).count()
    assert len(complete) == placed + 1
    check_nesting(complete)
    tracks = {event["tid"] for event in complete}
    names = {e["tid"] for e in document["traceEvents"] if e["name"] == "thread_name"}
    assert tracks <= names


def test_chrome_parallel_branches_get_tracks_of_their_own(client):
    """A sibling overlapping another opens a track; a child stays on its parent's."""
    run = Run.objects.create(format="runs", external_id="parallel", status="succeeded")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steps = {}
    for seq, (key, parent, start_s, duration_s) in enumerate(
        (("a", None, 0, 10), ("c", "a", 1, 2), ("b", None, 5, 10))
    ):
        steps[key] = Step.objects.create(
            run=run,
            key=key,
            name=key,
            seq=seq,
            position=seq,
            parent=steps.get(parent),
            status="succeeded",
            started_at=t0 + timedelta(seconds=start_s),
            duration_ms=duration_s * 1000,
        )
    document, _ = export(client, run, "chrome")
    complete = [event for event in document["traceEvents"] if event["ph"] == "X"]
    tids = {event["name"]: event["tid"] for event in complete}
    assert tids["a"] == tids["c"] != tids["b"]
    check_nesting(complete)


# --- the run page's buttons ---------------------------------------------------------


def test_run_page_has_both_download_buttons(client, loaded):
    run = richest_run("traceos")
    page = client.get(run.get_absolute_url()).content.decode()
    for format_name in ("otlp", "chrome"):
        href = f"{reverse('api:export_run', args=[run.pk])}?format={format_name}"
        assert f'href="{href}" download data-export="{format_name}"' in page


# --- hostile and unfinished runs ----------------------------------------------------


def round_trip(client, run: Run, tmp_path) -> Run:
    path = tmp_path / f"run-{run.pk}.otlp.json"
    path.write_text(json.dumps(exported_otlp(client, run)))
    report = ingest_paths([path])
    assert report.failed == []
    return Run.objects.get(pk__in=report.files[0].runs_added)


def test_a_running_run_comes_back_running(client, loaded, tmp_path):
    run = Run.objects.get(format="traceos", status="running")
    copy = round_trip(client, run, tmp_path)
    assert copy.status == "running" and copy.finished_at is None
    assert_same_tree(tree(run), tree(copy))


def test_a_deep_tree_and_hostile_values_survive_the_round_trip(client, tmp_path):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    run = Run.objects.create(
        format="runs", external_id="</script><b>", name="<img src=x onerror=alert(1)>"
    )
    deep: list = []  # deeper than protobuf's 100 levels; as deep as the JSONField takes
    for _ in range(500):
        deep = [deep]
    parent = None
    for seq in range(1500):
        parent = Step.objects.create(
            run=run,
            key=f"k{seq}",
            name=f"\u202e<b>{seq}",
            seq=seq,
            position=0,
            depth=seq,
            parent=parent,
            status="succeeded",
            started_at=t0 + timedelta(microseconds=seq),
            duration_ms=1.0,
            attributes={"blob": "x" * 1_000_000, "deep": deep} if seq == 1 else {},
        )
    copy = round_trip(client, run, tmp_path)
    assert_same_tree(tree(run), tree(copy))
    step = copy.steps.get(key="k1")
    assert len(step.attributes["blob"]) < 70_000 and step.attributes["blob"].endswith("…[cut]")
    assert step.attributes["deep"].startswith("[[[[")
    assert copy.name == run.name
    chrome, _ = export(client, run, "chrome")
    check_nesting([event for event in chrome["traceEvents"] if event["ph"] == "X"])


def test_an_otlp_run_keeps_its_trace_id(client, samples):
    ingest_paths([samples / "otlp" / "checkout.json"])
    run = Run.objects.get(format="otlp")
    spans = spans_of(exported_otlp(client, run))
    assert {span["traceId"] for span in spans} == {run.external_id}
    assert spans[0]["kind"] == 1 and spans[0]["name"] == "checkout"


# --- the spans written directly are protobuf's own JSON --------------------------------


def canonical(span: dict) -> dict:
    """The span parsed by opentelemetry-proto's Span class (json_format.ParseDict) and
    written back by json_format.MessageToDict: what the exporter wrote through
    protobuf before it wrote spans directly. A field at its default, a number where
    protobuf writes a string, a misnamed or unknown field: any of them differs."""
    document = copy.deepcopy(span)
    for item in (document, *document.get("links", ())):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in item:
                item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()
    message = json_format.ParseDict(document, Span())
    return span_to_json(message)


def assert_spans_are_protobufs_json(document: dict) -> None:
    spans = spans_of(document)
    assert spans
    for span in spans:
        again = canonical(span)
        assert span == again
        # and in protobuf's field order: the same bytes as MessageToDict's
        assert json.dumps(span) == json.dumps(again)


@pytest.mark.parametrize("format_name", Format.values)
def test_every_span_is_what_message_to_dict_gives(client, loaded, format_name):
    run = richest_run(format_name)
    assert_spans_are_protobufs_json(exported_otlp(client, run))


def test_hostile_values_are_written_as_protobuf_writes_them(client):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    run = Run.objects.create(
        format="runs",
        external_id="hostile",
        name="",  # no name: the span has none (the external id stands in)
        status="failed",
        error="",
        started_at=datetime(1, 1, 1, tzinfo=UTC),  # before 1970: no start
        finished_at=datetime(9999, 12, 31, tzinfo=UTC),  # past fixed64: no end
        attributes={
            "": "empty key",
            "tracer.status": "shadowed",
            "big": 2**70,
            "small": -(2**63),
            "zero": 0,
            "false": False,
            "empty": "",
            "float": 2.0,
            "negative zero": -0.0,
            "list": [],
            "dict": {"a": [1, {"b": None}]},
            "control": 'a\x01b\u2028c"d\\\\e',
            "long": "é" * 70_000,
        },
        output_counters={"ok": 1},
    )
    step = Step.objects.create(
        run=run, key="", name="", seq=0, position=0, status="failed", error="",
        started_at=datetime(1970, 1, 1, tzinfo=UTC), duration_ms=0.0,
        attributes={"x": None, "y": [None]}, attempt=0, retries=-1,
    )  # fmt: skip
    Step.objects.create(
        run=run, key="b", name="\u202e<b>", seq=1, position=1, status="cancelled",
        error="why\nnot", started_at=t0, duration_ms=1e-7, never_closed=True,
    )  # fmt: skip
    LogEntry.objects.create(run=run, step=step, seq=0, message="", fields={"": ""})
    LogEntry.objects.create(run=run, step=None, seq=1, message="m", level="", time=t0)
    EntityLink.objects.create(
        run=run, step=step, link_type="", entity_type="t", entity_id="", external_id=""
    )
    Call.objects.create(
        run=run, step=step, key="c", position=0, status="succeeded", duration_ms=5.5,
        attributes={"n": 1},
    )  # fmt: skip
    run.call_count, run.link_count = 1, 1
    run.save()
    assert_spans_are_protobufs_json(exported_otlp(client, run))


@pytest.mark.parametrize("format_name", ["otlp", "chrome"])
def test_an_export_reads_a_fixed_number_of_queries_per_batch(client, format_name):
    """Steps, and their logs, links and calls, are read a batch of 900 steps at a time:
    a run of 800 steps costs the queries of a run of 3."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from traces.exports.timing import BATCH

    counts = []
    for steps in (3, BATCH - 100):
        run = Run.objects.create(format="runs", external_id=f"q{steps}", name="q")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        made = Step.objects.bulk_create(
            Step(run=run, key=f"k{i}", name="s", seq=i, position=i, status="failed",
                 started_at=t0 + timedelta(seconds=i), duration_ms=5.0)
            for i in range(steps)
        )  # fmt: skip
        LogEntry.objects.bulk_create(
            LogEntry(run=run, step=step, seq=i, message="m") for i, step in enumerate(made)
        )
        Call.objects.bulk_create(
            Call(run=run, step=step, key="c", position=0, status="succeeded") for step in made
        )
        with CaptureQueriesContext(connection) as queries:
            export(client, run, format_name)
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 8


def test_an_otlp_run_exported_and_read_again_keeps_its_tree(client, samples, tmp_path):
    """The sixth format's round trip: its export has its trace id, so read again from
    another file it is found as the same trace."""
    ingest_paths([samples / "otlp"])
    run = Run.objects.filter(format="otlp").order_by("-step_count").first()
    before = tree(run)
    runs = Run.objects.count()
    path = tmp_path / f"run-{run.pk}.otlp.json"
    path.write_text(json.dumps(exported_otlp(client, run)))
    report = ingest_paths([path])
    assert report.failed == []
    copies = Run.objects.filter(format="otlp", external_id=run.external_id)
    assert Run.objects.count() - runs == copies.count() - 1
    for again in copies:
        assert_same_tree(before, tree(again))
