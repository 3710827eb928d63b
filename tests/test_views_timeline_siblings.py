"""The timeline's rows of repeated siblings (20 `upsert_batch` steps under one parent)
say what tells them apart, as the tree's rows do and from the same source
(tree_groups.label_rows over queries.groups): the loop index, the input field that
differs between them, the items that failed in each. In the whole run's window, in a
zoomed one holding a single one of them, and in a timeline without times; the
queries stay flat in the run's size."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from tests.factories import BASE_TIME
from tests.test_views_loops import loop_run
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.models import Run, Step, StepGroup
from traces.queries.timeline import time_axis

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def timeline(client, run: Run, **query) -> str:
    response = client.get(reverse("traces:run-timeline", args=[run.pk]), query, headers=HX)
    assert response.status_code == 200
    return response.content.decode()


def timeline_row(html: str, step: Step) -> str:
    match = re.search(rf'<li class="timeline-row[^"]*"[^>]*data-key="{re.escape(step.key)}"', html)
    assert match, f"no row of {step.key}"
    return html[match.start() : html.index("</li>", match.start())]


def tree_children(client, parent: Step) -> str:
    url = reverse("traces:step-children", args=[parent.run_id, parent.key])
    return client.get(url, headers=HX).content.decode()


def batch_run(batches: int = 20, *, timed: bool = True) -> Run:
    """A sync whose `write` step upserts `batches` batches of 50 rows by offset, the
    fourth losing 3 items."""
    steps = [StepRecord(key="write", name="write", started_at=BASE_TIME if timed else None)]
    for i in range(batches):
        start = BASE_TIME + timedelta(seconds=i) if timed else None
        end = start + timedelta(milliseconds=800) if timed else None
        steps.append(
            StepRecord(
                key=f"b{i}", parent_key="write", name="upsert_batch",
                input={"table": "orders", "offset": 50 * i, "limit": 50},
                started_at=start, finished_at=end,
                duration_ms=800.0, items_total=50, items_succeeded=47 if i == 3 else 50,
                items_failed=3 if i == 3 else 0,
            )
        )  # fmt: skip
    record = RunRecord(
        format="otlp", external_id=f"sync-{batches}-{timed}", name="sync",
        status="succeeded", started_at=BASE_TIME if timed else None, steps=steps,
    )  # fmt: skip
    outcome = store.write_run(record, source_file=None, origin="")
    return Run.objects.get(pk=outcome.run_id)


def test_repeated_batches_show_their_offsets_and_failed_items_as_in_the_tree(client):
    run = batch_run()
    html = timeline(client, run)
    batches = list(Step.objects.filter(run=run, name="upsert_batch").order_by("seq"))
    labels = [timeline_row(html, step) for step in batches]
    offsets = [re.search(r'class="differs mono"[^>]*>offset=(\d+)<', row) for row in labels]
    assert [int(found.group(1)) for found in offsets] == [50 * i for i in range(20)]
    # The tree's rows say the same, from the same read.
    tree = tree_children(client, Step.objects.get(run=run, key="write"))
    assert re.findall(r">offset=(\d+)<", tree) == [str(50 * i) for i in range(20)]
    # The failed items of the fourth, in its row, its label's title and its bar's tip.
    fourth = labels[3]
    assert (
        '<span class="c-fail" title="items failed in this step, though its own status is' in fourth
    )
    assert "✗ 3 items" in fourth
    assert 'title="upsert_batch · offset=150 · ✗ 3 items"' in fourth
    assert "· offset=150 · ✗ 3 items" in re.search(r'data-tip="([^"]*)"', fourth).group(1)
    # A step that repeats no sibling's name has no label.
    assert "t-sib" not in timeline_row(html, Step.objects.get(run=run, key="write"))


def test_a_zoomed_window_of_one_batch_still_tells_it_apart(client):
    run = batch_run()
    start, _end = time_axis(run)
    tenth = Step.objects.get(run=run, key="b10")
    from_ms = (tenth.started_at - start).total_seconds() * 1000 + 100
    html = timeline(client, run, from_ms=str(from_ms), to_ms=str(from_ms + 500))
    rows = re.findall(r'data-key="(b\d+)"', html)
    assert rows == ["b10"]
    assert ">offset=500<" in timeline_row(html, tenth)


def test_loop_iterations_show_their_index(client):
    run = loop_run(12, fail_every=5)
    html = timeline(client, run)
    save = Step.objects.get(run=run, key="7.1")
    row = timeline_row(html, save)
    assert '<span title="loop iteration">↻ 7</span>' in row
    failed = timeline_row(html, Step.objects.get(run=run, key="5.1"))
    assert "↻ 5" in failed and "✗ 2 items" in failed


def test_a_timeline_without_times_labels_its_rows_too(client):
    run = batch_run(8, timed=False)
    html = timeline(client, run)
    assert "in run order" in html
    assert re.findall(r">offset=(\d+)<", html) == [str(50 * i) for i in range(8)]


def test_the_samples_batches_are_told_apart_on_the_timeline(client, samples):
    ingest_paths([samples / "runs"])
    group = StepGroup.objects.filter(name="upsert_batch").order_by("-count").first()
    run = Run.objects.get(pk=group.run_id)
    html = timeline(client, run)
    batches = Step.objects.filter(run=run, parent_id=group.parent_id, name="upsert_batch")
    offsets = [
        re.search(r">offset=(\d+)<", timeline_row(html, step)).group(1)
        for step in batches.order_by("seq")
    ]
    assert offsets == [str(50 * i) for i in range(group.count)]


def test_hostile_fields_are_escaped(client):
    steps = [StepRecord(key="p", name="p", started_at=BASE_TIME)]
    for i in range(3):
        steps.append(
            StepRecord(
                key=f"c{i}", parent_key="p", name="<b>x</b>", started_at=BASE_TIME,
                input={"a": 1, "b": f'<img src=x onerror="{i}">'},
            )
        )  # fmt: skip
    record = RunRecord(
        format="otlp", external_id="hostile", name="h", status="succeeded",
        started_at=BASE_TIME, steps=steps,
    )  # fmt: skip
    run = Run.objects.get(pk=store.write_run(record, source_file=None, origin="").run_id)
    html = timeline(client, run)
    assert "<img src=x" not in html and "<b>x" not in html
    assert escape('b=<img src=x onerror="0">') in html


def test_the_queries_stay_flat_in_the_runs_size(client):
    small, big = batch_run(5), batch_run(600)
    counts = []
    for run in (small, big):
        with CaptureQueriesContext(connection) as captured:
            timeline(client, run)
        counts.append(len(captured))
    assert counts[0] == counts[1]
    # The window's repeated names and one query for their differing field.
    groups = [sql for sql in (q["sql"] for q in captured.captured_queries) if "stepgroup" in sql]
    assert len(groups) == 1
