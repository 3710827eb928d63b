"""Find in run shows repeated siblings as the whole tree does: what tells them apart
(their loop's iteration, their offset or first differing input field), their failed
items, and a container's summary of its repeated children; in the same few queries
however many levels the matches sit in."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.test_views_loops import loop_run, text_of
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.models import Run, Step, StepGroup

pytestmark = pytest.mark.django_db


def row_of(html: str, step: Step) -> str:
    """The step's own row, without its children or the rows after it."""
    start = html.index(f'id="node-{step.pk}"')
    ends = [html.find(mark, start) for mark in ('<div class="tree-children"', "</li>")]
    return html[start : min(end for end in ends if end != -1)]


def find(client, run: Run, text: str, **params) -> str:
    response = client.get(reverse("traces:run-detail", args=[run.pk]), {"find": text, **params})
    assert response.status_code == 200
    return response.content.decode()


def test_found_batches_keep_their_offsets_as_in_the_tree(client, samples):
    ingest_paths([samples / "duckflux", samples / "runs"])
    batches = StepGroup.objects.filter(name="upsert_batch").first()
    run = Run.objects.get(pk=batches.run_id)
    html = find(client, run, "upsert_batch")
    offsets = re.findall(r'class="differs mono"[^>]*>offset=(\d+)<', html)
    assert offsets == [str(50 * i) for i in range(batches.count)]
    # Their container's row sums them up, as in the whole tree.
    assert f"{batches.count} × upsert_batch" in text_of(row_of(html, batches.parent))  # noqa: RUF001


def test_found_iterations_are_headed_and_show_their_failed_items(client):
    run = loop_run(30, fail_every=10)
    html = find(client, run, "save")
    # Each found save under its iteration's heading, as the tree shows them.
    heading = r"<li class=\"tree-group\" id=\"iter-\d+\"><span>iteration (\d+)</span>"
    headings = re.findall(heading, html)
    assert headings == [str(i) for i in range(30)]
    for failed in Step.objects.filter(run=run, name="save", status="failed"):
        assert "✗ 2 items" in text_of(row_of(html, failed))
    loop = Step.objects.get(run=run, key="loop")
    summary = text_of(row_of(html, loop))
    assert "↻ 30 iterations" in summary and "✗ 3 failed" in summary and "✗ 6 items" in summary


def repeated_run(levels: int, per_level: int = 4) -> Run:
    """`levels` containers, each with `per_level` steps named "charge" told apart
    by their input's "customer", one of them with failed items."""
    steps = []
    for level in range(levels):
        steps.append(StepRecord(key=f"c{level}", name=f"container {level}"))
        for i in range(per_level):
            steps.append(
                StepRecord(
                    key=f"c{level}.{i}", parent_key=f"c{level}", name="charge",
                    input={"amount": 5, "customer": f"cus_{level}_{i}"},
                    items_total=10, items_processed=10, items_failed=3 if i == 1 else 0,
                    items_succeeded=7 if i == 1 else 10,
                )
            )  # fmt: skip
    record = RunRecord(
        format="otlp", external_id=f"charges-{levels}", name="charges", status="succeeded",
        steps=steps,
    )  # fmt: skip
    return Run.objects.get(pk=store.write_run(record, source_file=None, origin="").run_id)


def test_found_siblings_show_their_first_differing_field_and_failed_items(client):
    run = repeated_run(2)
    html = find(client, run, "charge")
    for step in Step.objects.filter(run=run, name="charge"):
        row = text_of(row_of(html, step))
        assert f"customer={step.input['customer']}" in row
        assert ("✗ 3 items" in row) == (step.items_failed == 3)
    for level in range(2):
        container = Step.objects.get(run=run, key=f"c{level}")
        assert "4 × charge" in text_of(row_of(html, container))  # noqa: RUF001


def test_the_queries_do_not_grow_with_the_levels_found(client, django_assert_max_num_queries):
    counts = []
    for levels in (2, 40):
        run = repeated_run(levels)
        with django_assert_max_num_queries(14) as captured:
            html = find(client, run, "charge")
        counts.append(len(captured))
        assert html.count("customer=cus_") == min(levels * 4, 50)
    assert counts[0] == counts[1]
