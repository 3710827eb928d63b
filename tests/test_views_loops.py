"""Repeated steps on the run page: a loop's or a container's row summarises its
iterations and repeated children (from the StepGroup read model), a repeated step
shows what tells it apart, "show the next steps" says how many remain, and the
numbers the page shows say what they count. On the samples and on generated runs;
the queries stay flat in the run's size."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils.html import escape

from tests.factories import BASE_TIME
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import LogRecord, RunRecord, StepRecord
from traces.models import Run, Step, StepGroup

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def row_of(html: str, step: Step) -> str:
    """The step's own row (its summary element), without its children."""
    start = html.index(f'id="node-{step.pk}"')
    end = html.find('<div class="tree-children"', start)
    return html[start : end if end != -1 else None]


def loop_run(iterations: int, *, roots: int = 1, fail_every: int = 0) -> Run:
    """A loop of `iterations` iterations (a fetch and a save each, the save taking
    i ms in iteration i), after `roots - 1` root steps named "ping"."""
    steps = [StepRecord(key=f"p{i}", name="ping", input={"n": i}) for i in range(roots - 1)]
    steps.append(StepRecord(key="loop", name="each order", type="loop"))
    for i in range(iterations):
        start = BASE_TIME + timedelta(seconds=i)
        for j, name in enumerate(("fetch", "save")):
            failed = fail_every and j == 1 and i % fail_every == 0
            steps.append(
                StepRecord(
                    key=f"{i}.{j}", parent_key="loop", name=name, loop_index=i,
                    started_at=start, finished_at=start + timedelta(milliseconds=i * j),
                    duration_ms=float(i * j), status="failed" if failed else "succeeded",
                    items_failed=2 if failed else None,
                )
            )  # fmt: skip
    record = RunRecord(
        format="otlp", external_id=f"loop-{iterations}-{roots}", name="orders",
        status="succeeded", started_at=BASE_TIME, steps=steps,
    )  # fmt: skip
    outcome = store.write_run(record, source_file=None, origin="")
    return Run.objects.get(pk=outcome.run_id)


def run_url(run: Run, name: str = "traces:run-detail") -> str:
    return reverse(name, args=[run.pk])


def test_a_loop_row_shows_iterations_percentiles_failures_and_the_slowest(client):
    run = loop_run(100, fail_every=10)
    loop = Step.objects.get(run=run, key="loop")
    html = client.get(run_url(run)).content.decode()
    row = row_of(html, loop)
    text = text_of(row)
    # Iteration i spans i ms (its save): p50 of 0..99 is 49 ms, p95 94 ms, max 99 ms.
    assert "↻ 100 iterations" in text and "p50 49ms · p95 94ms · max 99ms" in text
    assert "✗ 10 failed" in text and "✗ 20 items" in text
    assert "200 × fetch" not in text  # noqa: RUF001 (100 of each: the loop first, then names)
    assert "100 × fetch" in text or "100 × save" in text  # noqa: RUF001
    slowest = Step.objects.get(run=run, key="99.0")
    assert f'href="{slowest.get_absolute_url()}"' in row and "slowest: iteration 99" in text
    first_failed = Step.objects.get(run=run, key="0.1")
    assert f'href="{first_failed.get_absolute_url()}"' in row
    assert row.count("<rect ") >= 2  # the histogram
    # The loop stays closed: none of its 200 steps is a row yet.
    assert 'id="node-' + str(slowest.pk) not in html


def test_the_samples_loops_and_batches(client, samples):
    ingest_paths([samples / "duckflux", samples / "runs"])
    for group in StepGroup.objects.filter(kind="loop", run__format="duckflux"):
        html = client.get(run_url(Run.objects.get(pk=group.run_id))).content.decode()
        if f'id="node-{group.parent_id}"' not in html:
            continue  # a loop inside another step: shown when that one opens
        text = text_of(row_of(html, group.parent))
        assert f"↻ {group.count} iterations" in text
        assert f"slowest: iteration {group.slowest_index}" in text
    batches = StepGroup.objects.filter(name="upsert_batch").first()
    parent = batches.parent
    url = reverse("traces:step-children", args=[parent.run_id, parent.key])
    rows = client.get(url, headers=HX).content.decode()
    offsets = re.findall(r'class="differs mono"[^>]*>offset=(\d+)<', rows)
    assert offsets == [str(50 * i) for i in range(batches.count)]
    run_html = client.get(run_url(parent.run)).content.decode()
    assert f"{batches.count} × upsert_batch" in text_of(row_of(run_html, parent))  # noqa: RUF001


def test_the_roots_repeated_names_are_summed_up_above_the_tree_and_the_rest_counted(client):
    run = loop_run(3, roots=450)
    html = client.get(run_url(run)).content.decode()
    above = html[html.index('class="level-groups"') : html.index('<ul class="tree')]
    assert "449 × ping" in text_of(above)  # noqa: RUF001
    # 450 roots, a window of 200: 250 more.
    assert "show the next steps ›" in html and "(250 more steps)" in html  # noqa: RUF001
    more = re.search(r'class="tree-more"><a href="([^"]+)"', html).group(1).replace("&amp;", "&")
    rows = client.get(more, headers=HX).content.decode()
    assert "(50 more steps)" in rows
    # Failed only: a count of the rest would be a count of failed subtrees; none is given.
    failed = client.get(run_url(run), {"failed": "1"}).content.decode()
    assert "more steps)" not in failed


def test_a_big_loops_children_window_says_how_many_remain(client):
    run = loop_run(300)
    loop = Step.objects.get(run=run, key="loop")
    url = reverse("traces:step-children", args=[run.pk, loop.key])
    html = client.get(url, headers=HX).content.decode()
    assert html.count('class="tree-item') == 200 and "(400 more steps)" in html


def test_query_counts_do_not_depend_on_the_loops_size(client, django_assert_num_queries):
    small, big = loop_run(5, roots=5), loop_run(2000, roots=600)
    for run in (small, big):
        loop = Step.objects.get(run=run, key="loop")
        # The run, the roots, their groups, one input field, whether it has a previous run.
        with django_assert_num_queries(5):
            client.get(run_url(run))
        with django_assert_num_queries(3):  # the parent, its children, their groups
            client.get(reverse("traces:step-children", args=[run.pk, loop.key]), headers=HX)


def test_hostile_names_and_fields_are_escaped(client):
    name, field = "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'
    steps = [
        StepRecord(key=str(i), name=name, input={field: i, "b": f"<b>{i}</b>"}, duration_ms=1.0)
        for i in range(4)
    ]
    record = RunRecord(format="otlp", external_id="h", status="succeeded", steps=steps)
    run = Run.objects.get(pk=store.write_run(record, source_file=None, origin="").run_id)
    html = client.get(run_url(run)).content.decode()
    assert name not in html and "<img src=x" not in html and "<b>0</b>" not in html
    assert f"4 × <bdi>{escape(name)}</bdi>" in html  # noqa: RUF001
    # A field no JSON path reads alike everywhere is passed over for the next.
    assert StepGroup.objects.get().differs_by == "b" and escape("b=<b>0</b>") in html


# --- numbers that say what they count ----------------------------------------------------------


def test_the_logs_tab_says_its_number_counts_repeated_lines(client):
    logs = [
        LogRecord(seq=i, message="same" if i % 2 else f"line {i}", duplicate=i % 2 and i > 1)
        for i in range(6)
    ]
    record = RunRecord(format="otlp", external_id="l", status="succeeded", logs=logs)
    run = Run.objects.get(pk=store.write_run(record, source_file=None, origin="").run_id)
    page = text_of(client.get(run_url(run), {"tab": "logs"}).content.decode())
    assert f"Logs ({run.log_count})" in page
    assert f"{run.log_count} lines in this run: 4 listed here and 2 repeating" in page
    assert page.count("same") == 1  # 6 lines, 4 listed: the 2 repeated ones are hidden


def test_the_header_says_the_progress_counts_items(client, samples):
    ingest_paths([samples / "runs"])
    run = Run.objects.exclude(items_total=None).first()
    page = text_of(client.get(run_url(run)).content.decode())
    assert f"of {run.items_total:,} items processed" in page


def test_a_type_with_one_run_says_run_not_runs(client):
    record = RunRecord(
        format="otlp", external_id="t", type="once", status="succeeded",
        started_at=BASE_TIME, duration_ms=5.0,
    )  # fmt: skip
    store.write_run(record, source_file=None, origin="")
    page = text_of(client.get(reverse("traces:type-detail", args=["once"])).content.decode())
    assert "1 run in 30 days" in page and "1 runs" not in page
