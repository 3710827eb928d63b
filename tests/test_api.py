"""The JSON API (/api/): every endpoint against its page's numbers, pagination,
the auth matrix, uploads, sources, and errors that are always JSON."""

import io
import json
import zipfile
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import count_entities, make_runs, make_steps
from tests.workflow_pair import PAIR_ID, write_pair
from traces import queries
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.models import (
    ApiToken,
    EntityLink,
    LogEntry,
    Run,
    Step,
    TraceFile,
    TraceSource,
)
from traces.pagination import encode_cursor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def upload_dir(settings, tmp_path):
    settings.TRACER_UPLOAD_DIR = tmp_path / "uploads"
    return settings.TRACER_UPLOAD_DIR


@pytest.fixture
def loaded(samples):
    report = ingest_paths([samples])
    assert report.failed == []
    return report


def get(client, url, params=None, **kwargs):
    response = client.get(url, params or {}, **kwargs)
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response


def user_with(django_user_model, *codenames, name="ci"):
    user = django_user_model.objects.create_user(name, password="pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def bearer(user, name="ci") -> dict:
    _row, token = ApiToken.issue(user, name=name)
    return {"Authorization": f"Bearer {token}"}


def walk(client, url, params=None, *, key="next", param="after"):
    """Every page of a list, following its cursors."""
    params = dict(params or {})
    pages = []
    while True:
        body = get(client, url, params).json()
        pages.append(body)
        if not body[key]:
            return pages
        params[param] = body[key]


# --- runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [{}, {"status": "failed"}, {"status": "running"}, {"format": "duckflux"}, {"q": "sync"}],
)
def test_runs_list_matches_the_runs_page(client, loaded, query):
    page = client.get(reverse("traces:run-list"), query)
    body = get(client, "/api/runs", query).json()
    assert body["count"] == page.context["summary"]["total"]
    assert body["summary"]["total"] == body["count"]
    assert [item["id"] for item in body["items"]] == [r.pk for r in page.context["page"].items]


def test_failed_runs_count_equals_the_page_summary(client, loaded):
    page_summary = client.get(reverse("traces:run-list"), {"status": "failed"}).context["summary"]
    body = get(client, "/api/runs", {"status": "failed"}).json()
    assert body["count"] == page_summary["failed"] == Run.objects.filter(status="failed").count()
    assert {item["status"] for item in body["items"]} == {"failed"}


def test_run_items_carry_their_counts(client):
    run = make_runs(1, step_count=7, steps_succeeded=5)[0]
    Run.objects.filter(pk=run.pk).update(steps_failed=2, call_count=4, link_count=3, log_count=9)
    item = get(client, "/api/runs").json()["items"][0]
    assert item["steps"] == {
        "total": 7, "pending": 0, "running": 0, "succeeded": 5, "failed": 2, "skipped": 0,
        "cancelled": 0, "items_failed": 0,
    }  # fmt: skip
    assert (item["calls"], item["links"], item["logs"]) == (4, 3, 9)
    assert item["url"] == reverse("traces:run-detail", args=[run.pk])


def test_stale_runs_are_marked_and_filterable(client, settings):
    settings.TRACER_STALE_AFTER = timedelta(minutes=10)
    make_runs(1, status="running", name="live")
    make_runs(1, status="running", name="quiet")
    now = timezone.now()
    Run.objects.filter(name="live").update(source_updated_at=now)
    Run.objects.filter(name="quiet").update(source_updated_at=now - timedelta(hours=1))
    body = get(client, "/api/runs", {"status": "stale"}).json()
    assert [(item["name"], item["stale"]) for item in body["items"]] == [("quiet", True)]


def test_runs_no_longer_in_their_source_carry_the_time_and_are_filterable(client):
    make_runs(2, name="current")
    history = make_runs(1, name="history")[0]
    left = timezone.now().replace(microsecond=0) - timedelta(days=2)
    Run.objects.filter(pk=history.pk).update(left_source_at=left)
    items = {item["name"]: item for item in get(client, "/api/runs").json()["items"]}
    assert items["current"]["left_source_at"] is None
    assert datetime.fromisoformat(items["history"]["left_source_at"]) == left
    body = get(client, "/api/runs", {"in_source": "no"}).json()
    assert body["count"] == 1 and [item["id"] for item in body["items"]] == [history.pk]
    page = client.get(reverse("traces:run-list"), {"in_source": "no"})
    assert [run.pk for run in page.context["page"].items] == [history.pk]
    assert get(client, "/api/runs", {"in_source": "yes"}).json()["count"] == 2
    detail = get(client, f"/api/runs/{history.pk}").json()
    assert datetime.fromisoformat(detail["left_source_at"]) == left
    refused = get(client, "/api/runs", {"in_source": "left"})
    assert refused.status_code == 400 and "in_source" in refused.json()["errors"]


def test_runs_say_whether_their_times_are_estimated(client, samples):
    ingest_paths([samples / "greentic"])
    make_runs(1, name="recorded")
    items = get(client, "/api/runs").json()["items"]
    assert {(item["format"], item["times_estimated"]) for item in items} == {
        ("greentic", True),
        ("runs", False),
    }
    for run in Run.objects.all():
        detail = get(client, f"/api/runs/{run.pk}").json()
        assert detail["times_estimated"] is (run.format == "greentic")


@pytest.mark.parametrize("stale", [True, False], ids=["stale", "live"])
def test_a_stale_runs_timeline_stops_at_its_last_write(client, settings, stale):
    settings.TRACER_STALE_AFTER = timedelta(seconds=600)
    now = timezone.now()
    written = now - timedelta(hours=1) if stale else now
    (run,) = make_runs(1, status="running")
    Run.objects.filter(pk=run.pk).update(
        started_at=now - timedelta(hours=2), duration_ms=None, source_updated_at=written
    )
    (step,) = make_steps(run, 1, status="running")
    Step.objects.filter(pk=step.pk).update(started_at=now - timedelta(minutes=90), duration_ms=None)
    body = get(client, f"/api/runs/{run.pk}/timeline").json()
    assert abs(body["span_ms"] - (1 if stale else 2) * 3_600_000) < 5000
    assert abs(body["items"][0]["duration_ms"] - (30 if stale else 90) * 60_000) < 5000


def test_runs_are_paged_with_the_pages_cursors_in_every_sort(client):
    make_runs(120)
    for sort in ("-started", "duration", "name"):
        pages = walk(client, "/api/runs", {"sort": sort})
        ids = [item["id"] for page in pages for item in page["items"]]
        assert len(pages) == 3 and sorted(ids) == sorted(Run.objects.values_list("pk", flat=True))
        page_ids = [r.pk for r in client.get("/", {"sort": sort}).context["page"].items]
        assert ids[:50] == page_ids
    last = pages[-1]
    back = get(client, "/api/runs", {"sort": "name", "before": last["prev"]}).json()
    assert back["items"] == pages[1]["items"]


def test_runs_time_range_and_bad_filters(client):
    runs = make_runs(5)
    since = runs[2].started_at.isoformat()
    body = get(client, "/api/runs", {"since": since, "sort": "started"}).json()
    assert [item["name"] for item in body["items"]] == ["run 2", "run 3", "run 4"]
    for query, name in [
        ({"status": "exploded"}, "status"),
        ({"sort": "colour"}, "sort"),
        ({"since": "yesterday"}, "since"),
        ({"since": "0001-01-01T00:00:00+23:59"}, "since"),
        ({"after": "not-a-cursor"}, "cursor"),
    ]:
        response = get(client, "/api/runs", query)
        assert response.status_code == 400, query
        assert name in response.json()["errors"] and response.json()["detail"]
    cursor = encode_cursor(runs[0].started_at, runs[0].pk)
    for query, message in [
        ({"since": "2026-03-02", "until": "2026-03-01"}, "“From” is after “To”."),
        ({"after": cursor, "before": cursor}, "Give one page cursor, not both."),
    ]:
        response = get(client, "/api/runs", query)
        assert response.status_code == 400, query
        assert response.json()["errors"] == {"__all__": [message]}


def test_run_detail_has_counters_progress_values_and_source(client, loaded):
    run = Run.objects.exclude(output_counters={}).exclude(items_total=None).first()
    body = get(client, f"/api/runs/{run.pk}").json()
    assert body["output_counters"] == run.output_counters
    assert body["progress"]["total"] == run.items_total
    assert body["steps"]["total"] == run.step_count
    assert body["attributes"] == run.attributes
    assert body["source_file"]["path"] == run.source_file.path
    assert body["source_file"]["url"] == reverse("traces:file-detail", args=[run.source_file_id])


def test_unknown_and_malformed_run_ids(client):
    assert get(client, "/api/runs/424242").status_code == 404
    assert get(client, "/api/runs/424242").json() == {"detail": "No run with id 424242."}
    for bad in ("abc", "0", "-1", str(2**70)):
        assert get(client, f"/api/runs/{bad}").status_code == 400, bad


# --- one run's steps, timeline, logs ---------------------------------------------------------


def test_run_steps_are_flat_in_seq_order_with_parent_keys(client, loaded):
    run = Run.objects.filter(max_depth__gt=0).order_by("-step_count").first()
    body = get(client, f"/api/runs/{run.pk}/steps").json()
    steps = {step.pk: step for step in Step.objects.filter(run=run).select_related("parent")}
    assert [item["seq"] for item in body["items"]] == sorted(s.seq for s in steps.values())
    for item in body["items"]:
        parent = steps[item["id"]].parent
        assert item["parent_key"] == (parent.key if parent else None)
        assert item["parent_id"] == (parent.pk if parent else None)


def test_run_steps_are_paged_by_window(client):
    run = make_runs(1)[0]
    make_steps(run, 450)
    pages = walk(client, f"/api/runs/{run.pk}/steps")
    assert [len(page["items"]) for page in pages] == [300, 150]
    seqs = [item["seq"] for page in pages for item in page["items"]]
    assert seqs == list(range(1, 451))
    back = get(client, f"/api/runs/{run.pk}/steps", {"before": pages[1]["prev"]}).json()
    assert back["items"] == pages[0]["items"]


def test_run_steps_one_level_at_a_time(client):
    run = make_runs(1)[0]
    roots = make_steps(run, 3)
    make_steps(run, 2, parent=roots[1], start=10)
    top = get(client, f"/api/runs/{run.pk}/steps", {"parent": ""}).json()
    assert [item["key"] for item in top["items"]] == [s.key for s in roots]
    assert top["parent"] is None
    below = get(client, f"/api/runs/{run.pk}/steps", {"parent": roots[1].key}).json()
    assert [item["parent_key"] for item in below["items"]] == [roots[1].key] * 2
    assert below["parent"] == roots[1].key
    assert get(client, f"/api/runs/{run.pk}/steps", {"parent": "nope"}).status_code == 400
    back = get(client, f"/api/runs/{run.pk}/steps", {"parent": "", "before": "x"})
    assert back.status_code == 400 and "before" in back.json()["errors"]


def test_run_steps_failed_only_keeps_the_path_to_failures(client):
    run = make_runs(1)[0]
    make_steps(run, 2)
    failed = make_steps(run, 1, status="failed", start=2)
    Step.objects.filter(pk=failed[0].pk).update(error="boom " * 100)
    body = get(client, f"/api/runs/{run.pk}/steps", {"failed": "1"}).json()
    assert [item["id"] for item in body["items"]] == [failed[0].pk]
    assert body["items"][0]["error"] == ("boom " * 100)[:200]
    assert get(client, f"/api/runs/{run.pk}/steps", {"failed": "yes"}).status_code == 400


def test_timeline_places_steps_on_the_run_axis(client):
    run = make_runs(1)[0]
    Run.objects.filter(pk=run.pk).update(finished_at=run.started_at + timedelta(seconds=5))
    steps = make_steps(run, 3)
    body = get(client, f"/api/runs/{run.pk}/timeline").json()
    assert body["timed"] is True
    offsets = [item["offset_ms"] for item in body["items"]]
    start = run.started_at
    assert offsets == [(s.started_at - start).total_seconds() * 1000 for s in steps]
    assert [item["duration_ms"] for item in body["items"]] == [100.0] * 3
    assert body["span_ms"] == 5000.0
    assert body["start"].startswith(run.started_at.isoformat()[:19])


def test_timeline_without_timestamps_lays_steps_end_to_end(client, samples):
    ingest_paths([samples / "greentic"])
    run = Run.objects.filter(format="greentic").order_by("-step_count").first()
    body = get(client, f"/api/runs/{run.pk}/timeline").json()
    assert body["timed"] is False
    expected, offset = [], 0.0
    for step in Step.objects.filter(run=run).order_by("seq"):
        expected.append(offset)
        offset += step.duration_ms or 0.0
    assert [item["offset_ms"] for item in body["items"]] == expected
    assert body["span_ms"] == offset


def timeline_run(kind: str) -> Run:
    """timed: 3 steps on a 5 s axis, one of them instant, one with no start time;
    end to end: no timestamps, durations 100, 0, 300, 100 ms; sub-millisecond: a run
    and its one step that took 0.5 ms."""
    (run,) = make_runs(1)
    start = run.started_at
    if kind == "sub-millisecond":
        Run.objects.filter(pk=run.pk).update(finished_at=start + timedelta(microseconds=500))
        (step,) = make_steps(run, 1)
        Step.objects.filter(pk=step.pk).update(duration_ms=0.5)
    elif kind == "timed":
        Run.objects.filter(pk=run.pk).update(finished_at=start + timedelta(seconds=5))
        steps = make_steps(run, 4)
        Step.objects.filter(pk=steps[1].pk).update(duration_ms=0.0)
        Step.objects.filter(pk=steps[3].pk).update(started_at=None)
    else:
        steps = make_steps(run, 4)
        for step, duration in zip(steps, (100.0, 0.0, 300.0, 100.0), strict=True):
            Step.objects.filter(pk=step.pk).update(started_at=None, duration_ms=duration)
        # As the store writes a run whose steps have no start time.
        Run.objects.filter(pk=run.pk).update(steps_started_at=None, steps_finished_at=None)
    return Run.objects.get(pk=run.pk)


@pytest.mark.parametrize(
    ("kind", "span_ms"), [("timed", 5000.0), ("end to end", 500.0), ("sub-millisecond", 0.5)]
)
def test_the_timeline_page_draws_the_apis_layout(client, kind, span_ms):
    """One layout: the page's bars are the API's milliseconds as % of the same span.
    The span is the run's own, however short; only the page's bars have a minimum width."""
    run = timeline_run(kind)
    body = get(client, f"/api/runs/{run.pk}/timeline").json()
    url = reverse("traces:run-timeline", args=[run.pk])
    timeline = client.get(url, headers={"HX-Request": "true"}).context["timeline"]
    assert body["span_ms"] == timeline["span_ms"] == span_ms
    assert body["timed"] is timeline["timed"] is (kind != "end to end")
    bars = {step.key: step.bar for step in timeline["rows"]}
    assert list(bars) == [item["key"] for item in body["items"]]
    for item in body["items"]:
        bar = bars[item["key"]]
        if item["offset_ms"] is None:
            assert bar is None
            continue
        x = 100 * item["offset_ms"] / span_ms
        width = max(100 * item["duration_ms"] / span_ms, 0.25)
        assert float(bar["x"]) == pytest.approx(x, abs=0.001)
        assert float(bar["width"]) == pytest.approx(width, abs=0.001)


def test_logs_follow_the_logs_tab_filters(client, samples):
    ingest_paths([samples / "workflow"])
    run = Run.objects.filter(logs__duplicate=True).distinct().first()
    url = f"/api/runs/{run.pk}/logs"
    plain = get(client, url).json()
    assert {item["duplicate"] for item in plain["items"]} == {False}
    assert len(plain["items"]) == run.logs.filter(duplicate=False).count()
    with_dups = get(client, url, {"duplicates": "1"}).json()
    assert len(with_dups["items"]) == run.logs.count()
    info = get(client, url, {"level": "info"}).json()
    assert {item["level"] for item in info["items"]} == {"info"}
    assert "info" in info["levels"]
    entry = run.logs.exclude(step=None).select_related("step").first()
    by_step = get(client, url, {"step": entry.step.key}).json()
    assert {item["step_key"] for item in by_step["items"]} == {entry.step.key}
    page = client.get(reverse("traces:run-logs", args=[run.pk]), {"level": "info"})
    assert [e.pk for e in page.context["logs"]["page"].items] == [i["id"] for i in info["items"]]
    assert get(client, url, {"step": "no-such-step"}).status_code == 400
    assert get(client, url, {"level": "<b>"}).status_code == 400
    assert get(client, "/api/runs/424242/logs").status_code == 404


def test_log_items_carry_their_attributes(client, samples):
    ingest_paths([samples / "workflow"])
    run = Run.objects.get(actor="bob@acme.io")
    items = get(client, f"/api/runs/{run.pk}/logs").json()["items"]
    assert all("event_time" in item["attributes"] for item in items)
    recorded = [item for item in items if item["message"] == "step.output_recorded"]
    assert len(recorded) == 10
    save = next(item for item in recorded if item["step_name"] == "save-order")
    assert save["fields"] == {"step_name": "save-order"}
    # The value itself is the step's, once: the log row points there.
    assert save["attributes"]["event_data"]["output"] == "[the whole value is the step's output]"
    step = Step.objects.get(run=run, name="save-order")
    assert get(client, f"/api/steps/{step.pk}").json()["output"] == {
        "order_id": "ord_2034958",
        "payment_token": "[REDACTED]",
    }
    logs = get(client, f"/api/steps/{step.pk}").json()["logs"]
    assert any("event_data" in entry["attributes"] for entry in logs)


# --- steps across runs ------------------------------------------------------------------------


def test_failed_steps_match_the_steps_page(client, loaded):
    page = client.get(reverse("traces:step-list"), {"status": "failed"})
    body = get(client, "/api/steps", {"status": "failed"}).json()
    assert body["count"] == page.context["count"]
    assert [item["id"] for item in body["items"]] == [s.pk for s in page.context["page"].items]
    assert {item["status"] for item in body["items"]} == {"failed"}
    assert all(item["run"]["url"] == f"/runs/{item['run']['id']}/" for item in body["items"])


@pytest.mark.parametrize(
    "query", [{}, {"format": "runs"}, {"name": "fetch"}, {"error": "timeout"}, {"run_type": "http"}]
)
def test_step_filters_match_the_steps_page(client, loaded, query):
    page = client.get(reverse("traces:step-list"), query)
    body = get(client, "/api/steps", query).json()
    assert body["count"] == page.context["count"]
    assert [item["id"] for item in body["items"]] == [s.pk for s in page.context["page"].items]


def test_error_groups_are_the_pages_groups(client, loaded):
    page_groups = client.get(reverse("traces:step-list"), {"status": "failed"}).context["groups"]
    body = get(client, "/api/steps/errors").json()
    assert [(g["text"], g["count"]) for g in body["groups"]] == [
        (g.text, g.count) for g in page_groups.groups
    ]
    assert (
        sum(g["count"] for g in body["groups"])
        == Step.objects.filter(status="failed", synthetic=False).count()
    )
    group = body["groups"][0]
    steps = get(client, group["steps"]).json()
    assert steps["count"] == group["count"]
    page = client.get(reverse("traces:step-list"), {"error_group": group["text"]})
    assert [item["id"] for item in steps["items"]] == [s.pk for s in page.context["page"].items]


@pytest.mark.parametrize("query", [{}, {"error": "vol-"}])  # the read model, the steps
def test_error_groups_are_exact_beyond_a_thousand_distinct_messages(client, query):
    run = make_runs(1, status="failed")[0]
    causes = ["disk full on volume", "lock wait timeout", "no route to host"]
    make_steps(run, 1500, status="failed", error=lambda n: f"{causes[n % 3]} vol-{n}")
    body = get(client, "/api/steps/errors", query).json()
    assert body["from_read_model"] is not query
    assert [(g["text"], g["count"]) for g in body["groups"]] == [
        (f"{cause} <id>", 500) for cause in causes
    ]
    assert body["steps_read"] == 1500
    assert body["groups"][0]["example"] == "disk full on volume vol-1497"
    steps = get(client, body["groups"][2]["steps"]).json()
    assert steps["count"] == 500
    assert {item["error"] for item in steps["items"]} <= {
        f"no route to host vol-{n}" for n in range(2, 1500, 3)
    }


def test_error_groups_after_deleting_a_run(client):
    runs = make_runs(2, status="failed")
    make_steps(runs[0], 30, status="failed", error=lambda n: f"lock wait timeout vol-{n}")
    make_steps(runs[1], 20, status="failed", error="lock wait timeout vol-7")
    store.delete_runs([runs[0].pk])
    for query in ({}, {"error": "vol"}):
        body = get(client, "/api/steps/errors", query).json()
        assert [(g["text"], g["count"]) for g in body["groups"]] == [("lock wait timeout <id>", 20)]


def test_step_detail_has_calls_links_and_logs(client, loaded):
    step = Step.objects.filter(call_count__gt=0, link_count__gt=0).first()
    body = get(client, f"/api/steps/{step.pk}").json()
    assert body["key"] == step.key and body["run"]["id"] == step.run_id
    assert len(body["calls"]) == step.call_count and body["calls_more"] == 0
    assert {(link["entity_type"], link["entity_id"]) for link in body["links"]} == set(
        step.links.values_list("entity_type", "entity_id")
    )
    assert body["url"] == reverse("traces:step-detail", args=[step.run_id, step.key])
    logged = LogEntry.objects.filter(duplicate=False).exclude(step=None).first().step
    logs = get(client, f"/api/steps/{logged.pk}").json()["logs"]
    assert [entry["id"] for entry in logs] == list(
        logged.logs.filter(duplicate=False).order_by("seq").values_list("pk", flat=True)
    )
    assert get(client, "/api/steps/424242").status_code == 404


def test_workflow_step_detail_has_the_whole_io_events_db_kept(client, tmp_path):
    value = {"note": "€" * 4000, "tail": "the last words"}
    output = {"api_key": "k-123", "rows": ["x" * 10_300]}
    write_pair(tmp_path, [{"name": "load", "input": value, "output": output}])
    assert ingest_paths([tmp_path]).failed == []
    step = Step.objects.get(run__external_id=PAIR_ID, name="load")
    body = get(client, f"/api/steps/{step.pk}").json()
    assert body["input"] == value and body["truncated"] is False
    assert body["output"] == {"api_key": "[REDACTED]", "rows": ["x" * 10_300]}
    assert body["attributes"]["io_from_events"] == ["input", "output"]


def test_workflow_step_detail_without_captured_io_is_null_and_flagged(client, samples):
    ingest_paths([samples / "workflow"])
    step = Step.objects.get(run__name="orders-queries:{id}", name="parse-request")
    body = get(client, f"/api/steps/{step.pk}").json()
    assert (body["input"], body["output"]) == (None, None)
    assert body["attributes"]["io_captured"] is False


def test_step_detail_names_its_ancestors(client):
    run = make_runs(1)[0]
    root = make_steps(run, 1)[0]
    child = make_steps(run, 1, parent=root, start=5)[0]
    body = get(client, f"/api/steps/{child.pk}").json()
    assert body["parent_key"] == root.key
    assert [a["key"] for a in body["ancestors"]] == [root.key]


# --- entities and files ------------------------------------------------------------------------


def test_entities_match_the_entities_page(client, loaded):
    for query in ({}, {"type": "stripe_page"}, {"q": "page_"}):
        page = client.get(reverse("traces:entity-list"), query)
        body = get(client, "/api/entities", query).json()
        assert [(e["entity_type"], e["entity_id"]) for e in body["items"]] == [
            (row.entity_type, row.entity_id) for row in page.context["page"].items
        ]
    types = {entry["type"]: entry["total"] for entry in body["types"]}
    assert types == {entry["type"]: entry["total"] for entry in page.context["types"]}


def test_entity_steps_accept_ids_with_slashes(client):
    run = make_runs(1)[0]
    step = make_steps(run, 1)[0]
    EntityLink.objects.create(
        step=step, run=run, link_type="output", entity_type="file", entity_id="s3://b/k/x.csv"
    )
    Step.objects.filter(pk=step.pk).update(entity_type="file", entity_id="s3://b/k/x.csv")
    count_entities()
    listed = get(client, "/api/entities").json()["items"][0]
    assert listed["steps"] == "/api/entities/file/s3://b/k/x.csv/steps"
    body = get(client, listed["steps"]).json()
    assert body["entity"]["written"] == 1 and body["entity"]["subjects"] == 1
    assert [link["step"]["id"] for link in body["links"]["items"]] == [step.pk]
    assert body["links"]["items"][0]["verb"] == "written"
    assert [item["id"] for item in body["subjects"]["items"]] == [step.pk]
    assert get(client, "/api/entities/file/nothing/steps").status_code == 404
    assert get(client, "/api/entities/file/a%00b/steps").status_code == 400


def test_files_list_with_status_filter(client, samples):
    ingest_paths([samples / "greentic"])
    TraceFile.objects.create(path="/x/broken.json", display_name="broken.json", status="error",
                             error="line 3: not JSON")  # fmt: skip
    body = get(client, "/api/files", {"status": "error"}).json()
    assert [(f["display_name"], f["error"]) for f in body["items"]] == [
        ("broken.json", "line 3: not JSON")
    ]
    assert body["counts"] == queries.files.file_status_counts() == {"ok": 4, "error": 1}
    page = client.get(reverse("traces:file-list"))
    assert [f["id"] for f in get(client, "/api/files").json()["items"]] == [
        f.pk for f in page.context["page"].items
    ]
    assert get(client, "/api/files", {"status": "meh"}).status_code == 400


# --- one shape per object ---------------------------------------------------------------------


def shared(small: dict, big: dict, *, but: tuple = ()) -> bool:
    """Every field of `small` (but those named) is in `big`, with the same value."""
    return all(big[name] == value for name, value in small.items() if name not in but)


def test_a_step_has_one_shape_in_every_list_and_its_detail_adds_to_it(client):
    run = make_runs(1)[0]
    root = make_steps(run, 1)[0]
    step = make_steps(run, 1, parent=root, start=5, status="failed")[0]
    error = "boom " * 1000
    Step.objects.filter(pk=step.pk).update(error=error, entity_type="order", entity_id="o-1")
    count_entities()
    window = get(client, f"/api/runs/{run.pk}/steps").json()["items"][1]
    level = get(client, f"/api/runs/{run.pk}/steps", {"parent": root.key}).json()["items"][0]
    across = get(client, "/api/steps", {"status": "failed"}).json()["items"][0]
    subject = get(client, "/api/entities/order/o-1/steps").json()["subjects"]["items"][0]
    detail = get(client, f"/api/steps/{step.pk}").json()
    for item in (level, across, subject):
        assert item.keys() == window.keys()
        assert shared(item, window, but=("error",))
    assert detail.keys() > window.keys()
    assert shared(window, detail, but=("error", "error_truncated"))
    assert window["parent_key"] == root.key and window["run"]["id"] == run.pk
    # The error's head in lists (200 characters in a run, 2,000 across runs), all of it alone.
    assert (window["error"], across["error"], detail["error"]) == (error[:200], error[:2000], error)
    assert window["error_truncated"] and across["error_truncated"]
    assert not detail["error_truncated"]


def test_a_link_has_one_shape_on_its_step_and_on_its_entity(client, loaded):
    items = get(client, "/api/entities").json()["items"]
    entity = next(item for item in items if item["steps"] and item["links"])
    on_entity = get(client, entity["steps"]).json()["links"]["items"][0]
    on_step = get(client, f"/api/steps/{on_entity['step']['id']}").json()["links"]
    assert on_entity in on_step
    assert (on_entity["entity_type"], on_entity["entity_id"]) == (
        entity["entity_type"],
        entity["entity_id"],
    )


def test_a_log_row_has_one_shape_in_its_runs_log_and_on_its_step(client, samples):
    ingest_paths([samples / "workflow"])
    entry = LogEntry.objects.filter(duplicate=False).exclude(step=None).first()
    on_step = get(client, f"/api/steps/{entry.step_id}").json()["logs"]
    in_run = [
        item for page in walk(client, f"/api/runs/{entry.run_id}/logs") for item in page["items"]
    ]
    row = next(item for item in in_run if item["id"] == entry.pk)
    assert row in on_step


def test_a_run_has_one_shape_named_listed_and_alone(client, loaded):
    step = Step.objects.exclude(run__source_file=None).select_related("run").first()
    run = step.run
    named = get(client, f"/api/steps/{step.pk}").json()["run"]
    listed = next(
        item for page in walk(client, "/api/runs") for item in page["items"] if item["id"] == run.pk
    )
    alone = get(client, f"/api/runs/{run.pk}").json()
    assert named.keys() < listed.keys() < alone.keys()
    assert shared(named, listed) and shared(listed, alone)
    files = [item for page in walk(client, "/api/files") for item in page["items"]]
    assert alone["source_file"] == next(f for f in files if f["id"] == run.source_file_id)


def test_an_entity_has_one_shape_listed_and_alone(client):
    run = make_runs(1)[0]
    steps = make_steps(run, 2)
    for step, link_type in zip(steps, ("input", "output"), strict=True):
        EntityLink.objects.create(step=step, run=run, link_type=link_type, entity_type="order",
                                  entity_id="o-1", external_id=f"ext-{step.pk}")  # fmt: skip
    count_entities()
    listed = get(client, "/api/entities").json()["items"][0]
    alone = get(client, listed["steps"]).json()["entity"]
    assert alone.keys() == listed.keys() | {"external_ids"}
    assert shared(listed, alone)
    assert alone["external_ids"] == [f"ext-{steps[0].pk}", f"ext-{steps[1].pk}"]
    assert alone["last_seen"] == listed["last_seen"] is not None


def test_step_and_entity_answers_do_not_grow_with_what_hangs_off_a_step(
    client, django_assert_max_num_queries
):
    run = make_runs(1)[0]
    step = make_steps(run, 1)[0]

    def hang(n):
        EntityLink.objects.bulk_create(
            EntityLink(step=step, run=run, link_type="input", entity_type="order", entity_id="o-1")
            for _ in range(n)
        )
        LogEntry.objects.bulk_create(LogEntry(run=run, step=step, seq=i) for i in range(n))
        Step.objects.filter(pk=step.pk).update(link_count=EntityLink.objects.count())
        count_entities()

    urls = (f"/api/steps/{step.pk}", "/api/entities/order/o-1/steps", f"/api/runs/{run.pk}/logs")
    hang(1)
    counts = {}
    for url in urls:
        with django_assert_max_num_queries(10) as few:
            assert get(client, url).status_code == 200
        counts[url] = len(few.captured_queries)
    hang(40)
    for url in urls:
        with django_assert_max_num_queries(counts[url]):
            assert get(client, url).status_code == 200


# --- access -----------------------------------------------------------------------------------


READS = ["/api/runs", "/api/steps", "/api/steps/errors", "/api/entities", "/api/files",
         "/api/sources"]  # fmt: skip


@pytest.mark.parametrize("url", READS)
def test_reads_are_open_when_the_site_is(client, url):
    assert get(client, url).status_code == 200


@pytest.mark.parametrize("url", READS)
def test_reads_need_a_token_or_a_session_when_login_is_required(
    client, settings, django_user_model, url
):
    settings.TRACER_LOGIN_REQUIRED = True
    response = get(client, url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["detail"]
    user = user_with(django_user_model)
    assert get(client, url, headers=bearer(user)).status_code == 200
    client.force_login(user)
    assert get(client, url).status_code == 200


def test_a_wrong_token_is_refused_even_when_reads_are_open(client):
    response = get(client, "/api/runs", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json() == {"detail": "This API token is not valid (or was revoked)."}
    basic = get(client, "/api/runs", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401 and "Bearer" in basic.json()["detail"]


def test_a_token_of_an_inactive_user_is_refused(client, django_user_model):
    user = user_with(django_user_model, "add_tracefile")
    headers = bearer(user)
    user.is_active = False
    user.save()
    assert get(client, "/api/runs", headers=headers).status_code == 401


def test_tokens_are_stored_hashed_and_record_their_last_use(client, django_user_model):
    user = user_with(django_user_model)
    row, token = ApiToken.issue(user, name="ci")
    assert token not in row.token_hash and len(row.token_hash) == 64
    assert row.last_used is None
    get(client, "/api/runs", headers={"Authorization": f"Bearer {token}"})
    row.refresh_from_db()
    assert row.last_used is not None


def greentic_upload(samples, index=0):
    path = sorted((samples / "greentic").glob("*/trace.json"))[index]
    return SimpleUploadedFile(path.name, path.read_bytes())


def test_writes_without_credentials_are_401(client, samples):
    response = client.post("/api/uploads", {"files": [greentic_upload(samples)]})
    assert response.status_code == 401
    assert "API token" in response.json()["detail"]
    assert client.post("/api/sources", {}, content_type="application/json").status_code == 401
    assert not TraceFile.objects.exists()


def test_writes_with_a_token_but_no_permission_are_403(client, samples, django_user_model):
    headers = bearer(user_with(django_user_model))
    response = client.post("/api/uploads", {"files": [greentic_upload(samples)]}, headers=headers)
    assert response.status_code == 403
    assert "traces.add_tracefile" in response.json()["detail"]
    source = {"path": str(samples / "greentic")}
    response = client.post("/api/sources", source, content_type="application/json", headers=headers)
    assert response.status_code == 403
    assert not TraceFile.objects.exists() and not TraceSource.objects.exists()


def test_a_session_write_needs_the_csrf_token(samples, django_user_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with(django_user_model, "add_tracefile"))
    response = client.post("/api/uploads", {"files": [greentic_upload(samples)]})
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    client.get("/api/docs")  # any page of the site sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/api/uploads", {"files": [greentic_upload(samples)]}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200
    assert Run.objects.count() == 1


def test_a_superuser_token_may_do_everything(client, samples, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    response = client.post(
        "/api/uploads", {"files": [greentic_upload(samples)]}, headers=bearer(admin)
    )
    assert response.status_code == 200


# --- uploads ----------------------------------------------------------------------------------


@pytest.fixture
def uploader(django_user_model):
    return bearer(user_with(django_user_model, "add_tracefile"))


def test_uploading_sample_files_answers_like_ingest_json(client, samples, uploader):
    files = [greentic_upload(samples, i) for i in range(4)]
    response = client.post("/api/uploads", {"files": files}, headers=uploader)
    assert response.status_code == 200
    body = response.json()
    assert body["files"] == {"ingested": 4, "unchanged": 0, "failed": 0, "skipped": 0}
    assert body["runs"] == Run.objects.count() == 4
    assert body["steps"] == sum(Run.objects.values_list("step_count", flat=True))
    assert [result["outcome"] for result in body["results"]] == ["ingested"] * 4
    first = body["results"][0]
    assert first["path"] == "trace.json" and first["format"] == "greentic"
    assert first["file_url"] == reverse("traces:file-detail", args=[first["file_id"]])
    assert set(first["runs_added"]) <= set(Run.objects.values_list("pk", flat=True))
    again = client.post("/api/uploads", {"files": [greentic_upload(samples)]}, headers=uploader)
    assert again.status_code == 200 and again.json()["results"][0]["outcome"] == "unchanged"


def test_uploading_a_zip_of_a_trace_directory(client, samples, uploader):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted((samples / "traceos").glob("replay-*.json")):
            archive.write(path, f"trace-dir/{path.name}")
    upload = SimpleUploadedFile("traces.zip", buffer.getvalue())
    response = client.post("/api/uploads", {"files": [upload]}, headers=uploader)
    assert response.status_code == 200
    body = response.json()
    assert body["files"]["ingested"] == 3
    assert all(result["path"].startswith("traces.zip") for result in body["results"])
    assert body["runs"] == Run.objects.filter(format="traceos").count() > 0


def test_a_file_that_is_not_a_trace_is_422_with_the_reason(client, uploader):
    bad = SimpleUploadedFile("notes.txt", b"just some words, not a trace\n")
    response = client.post("/api/uploads", {"files": [bad]}, headers=uploader)
    assert response.status_code == 422
    body = response.json()
    result = body["results"][0]
    assert result["outcome"] == "failed" and result["error"]
    assert result["error"] in body["detail"] and body["detail"].count("notes.txt") == 1
    assert body["errors"] == [{"path": "notes.txt", "error": result["error"]}]
    assert TraceFile.objects.get().status == "error"


def test_a_bad_file_beside_a_good_one_is_200_with_both_results(client, samples, uploader):
    bad = SimpleUploadedFile("broken.json", b'{"trace_id": "x", "steps": [')
    files = [greentic_upload(samples), bad]
    response = client.post("/api/uploads", {"files": files}, headers=uploader)
    assert response.status_code == 200
    outcomes = {r["path"]: r["outcome"] for r in response.json()["results"]}
    assert outcomes == {"trace.json": "ingested", "broken.json": "failed"}


def test_an_upload_without_files_is_422(client, uploader):
    response = client.post("/api/uploads", {"other": "x"}, headers=uploader)
    assert response.status_code == 422
    assert "files" in response.json()["errors"]


def test_an_upload_over_the_limit_is_413_before_anything_is_read(client, settings, samples):
    settings.TRACER_MAX_UPLOAD_BYTES = 100
    response = client.post("/api/uploads", {"files": [greentic_upload(samples)]})
    # No credentials either: the size is judged from Content-Length before anything else.
    assert response.status_code == 413
    assert "the limit is 100 bytes" in response.json()["detail"]
    assert not TraceFile.objects.exists()


def test_files_going_over_the_limit_while_saved_are_413(client, samples, uploader, monkeypatch):
    # Content-Length counts the multipart envelope, so save_uploads checks the bytes
    # themselves too (a body without a length): that refusal is a 413 as well.
    from traces.api import sources as endpoints
    from traces.uploads import UploadTooLarge

    def too_large(files):
        raise UploadTooLarge(10)

    monkeypatch.setattr(endpoints, "save_uploads", too_large)
    response = client.post("/api/uploads", {"files": [greentic_upload(samples)]}, headers=uploader)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


# --- sources ----------------------------------------------------------------------------------


def test_sources_add_scan_and_rescan(client, samples, django_user_model):
    headers = bearer(user_with(django_user_model, "add_tracesource", "change_tracesource"))
    body = {"path": str(samples / "greentic"), "label": "greentic", "every": 30}
    response = client.post("/api/sources", body, content_type="application/json", headers=headers)
    assert response.status_code == 201
    created = response.json()
    assert created["source"]["rescan_every_minutes"] == 30
    assert created["source"]["mirror_deletions"] is False
    assert created["scan"]["files"]["ingested"] == 4
    assert Run.objects.filter(format="greentic").count() == 4
    listed = get(client, "/api/sources").json()
    assert [item["id"] for item in listed["items"]] == [created["source"]["id"]]
    assert str(samples) in listed["roots"]
    url = f"/api/sources/{created['source']['id']}/rescan"
    rescanned = client.post(url, headers=headers)
    assert rescanned.status_code == 200
    assert rescanned.json()["scan"]["files"]["unchanged"] == 4
    assert client.post("/api/sources/424242/rescan", headers=headers).status_code == 404


def test_a_source_can_be_added_mirroring_deletions(client, samples, django_user_model):
    headers = bearer(user_with(django_user_model, "add_tracesource"))
    body = {"path": str(samples / "greentic"), "mirror_deletions": True, "scan_now": False}
    response = client.post("/api/sources", body, content_type="application/json", headers=headers)
    assert response.status_code == 201 and response.json()["source"]["mirror_deletions"] is True
    assert TraceSource.objects.get().mirror_deletions
    listed = get(client, "/api/sources").json()["items"]
    assert [item["mirror_deletions"] for item in listed] == [True]
    body = {"path": str(samples / "runs"), "mirror_deletions": [1]}
    refused = client.post("/api/sources", body, content_type="application/json", headers=headers)
    assert refused.status_code == 422 and TraceSource.objects.count() == 1


def test_a_source_outside_the_roots_is_422(client, django_user_model):
    headers = bearer(user_with(django_user_model, "add_tracesource"))
    response = client.post(
        "/api/sources", {"path": "/etc"}, content_type="application/json", headers=headers
    )
    assert response.status_code == 422
    assert "outside the allowed roots" in response.json()["errors"]["path"][0]
    bad_body = client.post(
        "/api/sources", {"label": 3}, content_type="application/json", headers=headers
    )
    assert bad_body.status_code == 422 and "path" in bad_body.json()["errors"]
    assert not TraceSource.objects.exists()


def test_a_source_without_scanning(client, samples, django_user_model):
    headers = bearer(user_with(django_user_model, "add_tracesource"))
    body = {"path": str(samples / "greentic"), "scan_now": False}
    response = client.post("/api/sources", body, content_type="application/json", headers=headers)
    assert response.status_code == 201 and response.json()["scan"] is None
    assert not Run.objects.exists()


def test_rescanning_needs_the_change_permission_and_a_quiet_source(
    client, samples, django_user_model
):
    source = TraceSource.objects.create(path=str(samples / "greentic"))
    url = f"/api/sources/{source.pk}/rescan"
    adder = bearer(user_with(django_user_model, "add_tracesource", name="adder"))
    assert client.post(url, headers=adder).status_code == 403
    changer = bearer(user_with(django_user_model, "change_tracesource", name="changer"))
    TraceSource.objects.filter(pk=source.pk).update(last_scan_started_at=timezone.now())
    busy = client.post(url, headers=changer)
    assert busy.status_code == 409 and "already running" in busy.json()["detail"]


# --- errors are JSON --------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False])
def test_an_unexpected_exception_is_a_json_500(client, settings, monkeypatch, debug):
    settings.DEBUG = debug

    def explode(filters):
        raise RuntimeError("boom")

    monkeypatch.setattr(queries.runs, "filter_runs", explode)
    response = client.get("/api/runs")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal error: it has been logged."}
    assert "boom" not in response.content.decode()


def test_unknown_endpoints_and_methods_are_json(client):
    missing = get(client, "/api/nothing/here")
    assert missing.status_code == 404 and "/api/docs" in missing.json()["detail"]
    wrong = client.delete("/api/runs")
    assert wrong.status_code == 405
    assert wrong["Content-Type"].startswith("application/json")
    assert wrong["Allow"] == "GET" and "DELETE" in wrong.json()["detail"]


def test_hostile_content_comes_back_as_data(client):
    make_runs(1, name="<script>alert(1)</script>")
    Run.objects.update(error="javascript:alert(1)")
    response = get(client, "/api/runs")
    assert response.json()["items"][0]["name"] == "<script>alert(1)</script>"
    assert response.json()["items"][0]["error"] == "javascript:alert(1)"
    assert response["X-Content-Type-Options"] == "nosniff"


# --- query counts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "rows"),
    [("/api/runs", "runs"), ("/api/steps", "steps"), ("/api/steps?status=failed", "steps")],
)
def test_query_counts_do_not_grow_with_rows(client, django_assert_max_num_queries, url, rows):
    def fill(n):
        run = make_runs(1)[0]
        make_runs(n) if rows == "runs" else make_steps(run, n, status="failed")

    fill(3)
    with django_assert_max_num_queries(10) as few:
        get(client, url)
    fill(80)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert get(client, url).status_code == 200


def test_one_runs_queries_do_not_grow_with_steps(client, django_assert_max_num_queries):
    run = make_runs(1)[0]
    roots = make_steps(run, 5)
    make_steps(run, 5, parent=roots[0], start=10)
    for url in (f"/api/runs/{run.pk}/steps", f"/api/runs/{run.pk}/timeline"):
        with django_assert_max_num_queries(4):
            assert get(client, url).status_code == 200
    make_steps(run, 200, parent=roots[1], start=100)
    for url in (f"/api/runs/{run.pk}/steps", f"/api/runs/{run.pk}/timeline"):
        with django_assert_max_num_queries(4):
            assert get(client, url).status_code == 200


# --- docs, tokens -----------------------------------------------------------------------------


def test_openapi_document_lists_every_operation(client):
    schema = get(client, "/api/openapi.json").json()
    operations = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert operations == {
        ("GET", "/api/runs"), ("GET", "/api/runs/{run_id}"), ("GET", "/api/runs/{run_id}/steps"),
        ("GET", "/api/runs/compare"),
        ("GET", "/api/runs/{run_id}/logs"), ("GET", "/api/runs/{run_id}/timeline"),
        ("GET", "/api/runs/{run_id}/export"),
        ("GET", "/api/runs/{run_id}/critical-path"),
        ("GET", "/api/search"),
        ("GET", "/api/logs"),
        ("GET", "/api/steps"), ("GET", "/api/steps/{step_id}"), ("GET", "/api/steps/errors"),
        ("GET", "/api/entities"), ("GET", "/api/entities/{entity_type}/{entity_id}/steps"),
        ("GET", "/api/files"), ("POST", "/api/uploads"), ("GET", "/api/sources"),
        ("POST", "/api/sources"), ("POST", "/api/sources/{source_id}/rescan"),
        ("GET", "/api/types"), ("GET", "/api/types/{run_type}/trends"),
    }  # fmt: skip
    runs = schema["paths"]["/api/runs"]["get"]
    params = {p["name"]: p["schema"] for p in runs["parameters"]}
    assert "stale" in params["status"]["enum"] and "-duration" in params["sort"]["enum"]
    # Operation ids name the view, whichever module of traces/api/ holds it.
    assert runs["operationId"] == "traces_api_list_runs"
    assert schema["paths"]["/api/uploads"]["post"]["operationId"] == "traces_api_upload"
    assert {"BearerToken", "SessionCookie"} <= set(schema["components"]["securitySchemes"])
    # Open reads are documented as needing no credentials; writes always need them.
    assert {} in runs["security"]
    assert {} not in schema["paths"]["/api/uploads"]["post"]["security"]


def test_openapi_document_says_reads_need_credentials_when_login_is_required(client, settings):
    settings.TRACER_LOGIN_REQUIRED = True
    schema = get(client, "/api/openapi.json").json()
    assert {} not in schema["paths"]["/api/runs"]["get"]["security"]


def test_docs_page_works_offline_without_inline_script(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn" not in html.lower() and "http://" not in html and "https://" not in html
    assert 'type="application/json"' in html
    for tag in html.split("<script")[1:]:
        assert tag.lstrip().startswith(("src=", 'type="application/json" id="swagger-settings"'))
    # ninja's own page, with the files ninja ships, served as the site's static files.
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-init.js"):
        assert f'"{static(f"ninja/{asset}")}"' in html
        assert finders.find(f"ninja/{asset}")
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_create_api_token_prints_a_token_once(django_user_model, capsys):
    user = django_user_model.objects.create_user("ci")
    call_command("create_api_token", "ci", "--name", "nightly")
    token = capsys.readouterr().out.strip()
    row = ApiToken.objects.get()
    assert (row.user, row.name) == (user, "nightly")
    assert row.token_hash == ApiToken.hash(token) and token.startswith("trc_")
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("create_api_token", "ghost")


def test_the_admin_shows_a_new_token_once(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:traces_apitoken_add"), {"user": admin_user.pk, "name": "ci"}, follow=True
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    token = next(word for m in messages for word in m.split() if word.startswith("trc_"))
    row = ApiToken.objects.get()
    assert row.token_hash == ApiToken.hash(token)
    assert token not in json.dumps(list(ApiToken.objects.values()), default=str)
    client = Client()
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
