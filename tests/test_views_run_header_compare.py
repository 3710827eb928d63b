"""The run header's comparisons: "compare with previous" only when a previous run
of its type exists (the first run of a type has none: the link led to a 404), in
one indexed lookup on the run page and none on the lists; a running run's duration
so far against its type's p50 / p95, labelled so (or said plainly why none). And
the header of runs that failed or stopped without a failed step: a run failed by
its source alone, a workflow run stopped by a cancelled context."""

from __future__ import annotations

import re
import shutil
import sqlite3
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import BASE_TIME
from traces.ingest import store
from traces.ingest.loader import ingest_paths
from traces.ingest.records import RunRecord, StepRecord
from traces.models import Run

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
COMPARE_PREVIOUS = "data-compare-previous"


def write(external_id, *, run_type="nightly", name="", status="succeeded", started=BASE_TIME,
          duration=1000.0, **fields) -> Run:  # fmt: skip
    record = RunRecord(
        format="otlp", external_id=external_id, type=run_type, name=name, status=status,
        started_at=started, duration_ms=None if status == "running" else duration,
        steps=[StepRecord(key="a", name="a", duration_ms=1.0)], **fields,
    )  # fmt: skip
    return Run.objects.get(pk=store.write_run(record, source_file=None, origin="").run_id)


def header(client, run: Run) -> str:
    html = client.get(run.get_absolute_url()).content.decode()
    return html[html.index('id="run-header"') : html.index("</section>")]


# --- compare with previous ----------------------------------------------------------------


def test_the_first_run_of_its_type_offers_no_compare_with_previous(client):
    first = write("first", started=BASE_TIME)
    assert COMPARE_PREVIOUS not in header(client, first)
    second = write("second", started=BASE_TIME + timedelta(hours=1))
    html = header(client, second)
    assert COMPARE_PREVIOUS in html
    # The link it shows leads to the comparison, not to a 404.
    url = reverse("traces:compare") + f"?b={second.pk}&with=previous"
    assert f'href="{url.replace("&", "&amp;")}"' in html
    assert client.get(url).status_code == 200
    # The earlier run still has none: "previous" is the run before it.
    assert COMPARE_PREVIOUS not in header(client, first)


def test_a_run_without_a_type_is_compared_with_the_previous_of_its_name(client):
    alone = write("alone", run_type="", name="")
    assert COMPARE_PREVIOUS not in header(client, alone)
    write("n1", run_type="", name="backup", started=BASE_TIME)
    later = write("n2", run_type="", name="backup", started=BASE_TIME + timedelta(minutes=5))
    assert COMPARE_PREVIOUS in header(client, later)
    # Another format's run of the same type is not its previous run.
    other = write("other-format-first", run_type="nightly", started=BASE_TIME - timedelta(days=1))
    Run.objects.filter(pk=other.pk).update(format="runs")
    assert COMPARE_PREVIOUS not in header(client, write("nightly-first"))


def test_the_lookup_is_one_query_on_the_page_and_none_on_tab_swaps_and_lists(
    client, django_assert_num_queries
):
    for index in range(30):
        write(f"r{index}", started=BASE_TIME + timedelta(minutes=index))
    run = Run.objects.get(external_id="r29")
    with CaptureQueriesContext(connection) as captured:
        client.get(run.get_absolute_url())
    previous = [q["sql"] for q in captured if "started_at" in q["sql"] and "LIMIT 1" in q["sql"]]
    assert len(previous) == 1
    with django_assert_num_queries(3):  # the run, one window of roots, their groups
        client.get(run.get_absolute_url(), {"tab": "tree"}, headers=HX)
    # The runs list has no such link: its query count is the runs list's own.
    with django_assert_num_queries(6):
        html = client.get(reverse("traces:run-list")).content.decode()
    assert COMPARE_PREVIOUS not in html


# --- a running run's duration so far -----------------------------------------------------------


def history(count: int = 20) -> None:
    """Succeeded nightly runs of 1..count s, three days ago."""
    start = timezone.now() - timedelta(days=3)
    for index in range(count):
        write(f"h{index}", started=start - timedelta(minutes=index), duration=1000.0 * (index + 1))


def compare_fragment(client, run: Run) -> str:
    return client.get(reverse("traces:run-type-compare", args=[run.pk])).content.decode()


def duration_as_shown(client, run: Run) -> str:
    """The header's duration cell as the browser shows it: the comparison fragment swapped
    in for its placeholder (outerHTML), the tags dropped, the spaces collapsed."""
    html = header(client, run)
    cell = html[html.index("<span>Duration</span>") : html.index("</div>", html.index("Duration"))]
    placeholder = re.search(r'<span hx-get="[^"]*" hx-trigger="load"></span>', cell)
    if placeholder:
        cell = cell.replace(placeholder.group(0), compare_fragment(client, run))
    return " ".join(re.sub(r"<[^>]+>", "", cell).split()).removeprefix("Duration")


def test_a_running_run_compares_its_duration_so_far(client):
    history()
    running = write("live", status="running", started=timezone.now() - timedelta(seconds=30))
    Run.objects.filter(pk=running.pk).update(source_updated_at=timezone.now())
    html = header(client, running)
    assert f'hx-get="{reverse("traces:run-type-compare", args=[running.pk])}"' in html
    fragment = compare_fragment(client, running)
    # 30 s so far against a p50 of 10 s and a p95 of 19 s (within the bins' error).
    shown = duration_as_shown(client, running)
    assert re.match(r"30\.\ds so far · 3\.\d× the p50 of nightly ", shown)  # noqa: RUF001
    assert "already above its p95" in fragment and "above-p95" in fragment
    # A young run is below both.
    young = write("young", status="running", started=timezone.now() - timedelta(seconds=2))
    Run.objects.filter(pk=young.pk).update(source_updated_at=timezone.now())
    fragment = compare_fragment(client, young)
    assert "s so far · 0.2× the p50" in duration_as_shown(client, young)  # noqa: RUF001
    assert "above its p95" not in fragment


def test_a_stale_runs_duration_stops_at_its_last_write(client):
    history()
    stale = write("stale", status="running", started=timezone.now() - timedelta(days=2))
    Run.objects.filter(pk=stale.pk).update(
        source_updated_at=stale.started_at + timedelta(seconds=5)
    )
    # Said once: the header labels the duration, the comparison follows it (it said
    # "5.0s until its last write until its last write: 0.5x the p50").
    shown = duration_as_shown(client, stale)
    assert shown.startswith("5.0s until its last write · 0.5× the p50 of ")  # noqa: RUF001
    assert shown.count("until its last write") == 1 and "so far" not in shown


def test_a_finished_run_is_compared_without_so_far(client):
    history()
    done = write("done", started=timezone.now() - timedelta(minutes=5), duration=10_000.0)
    fragment = compare_fragment(client, done)
    assert "1.0× the p50" in fragment and "so-far" not in fragment  # noqa: RUF001


def test_a_running_run_says_why_it_has_no_comparison(client):
    running = write("no-history", run_type="brand-new", status="running",
                    started=timezone.now() - timedelta(seconds=3))  # fmt: skip
    Run.objects.filter(pk=running.pk).update(source_updated_at=timezone.now())
    assert "no succeeded run of" in compare_fragment(client, running)
    unstarted = write("no-start", status="running", started=None)
    html = " ".join(header(client, unstarted).split())
    assert "no duration so far to compare with its type's: no start time recorded" in html


# --- failed by the source alone, stopped by a cancel ---------------------------------------


def test_a_run_failed_by_its_source_alone_says_so_with_the_sources_status(client):
    run = write("quiet-failure", status="failed", raw_status="ERROR")
    text = " ".join(header(client, run).split())
    assert (
        "The source marked this run failed (its own status: <code><bdi>ERROR</bdi></code>); "
        "no step failed or recorded an error." in text
    )
    assert '<span class="badge failed">' in text and "(ERROR)" in text


def ingest_a_cancelled_workflow_run(samples, tmp_path) -> Run:
    """The workflow sample with its "invalid credentials" execution stopped by a
    cancelled context instead, ingested; that run."""
    for name in ("workflow.db", "events.db"):
        shutil.copyfile(samples / "workflow" / name, tmp_path / name)
    conn = sqlite3.connect(tmp_path / "workflow.db")
    conn.execute(
        'UPDATE workflow_executions SET error_message = \'step "charge" failed: call '
        "cancelled: context canceled' WHERE status = 'failed' AND error_message LIKE "
        "'%invalid credentials%'"
    )
    conn.commit()
    conn.close()
    ingest_paths([tmp_path])
    return Run.objects.get(format="workflow", status="cancelled")


def test_a_workflow_run_stopped_by_a_cancelled_context_is_shown_cancelled(
    client, samples, tmp_path
):
    run = ingest_a_cancelled_workflow_run(samples, tmp_path)
    assert run.raw_status == "failed"
    html = header(client, run)
    assert '<span class="badge cancelled">' in html
    assert 'title="the source\'s own word">(failed)</span>' in html.replace("&#x27;", "'")
    assert "context canceled" in html
    # The runs list files it under cancelled, not failed.
    listed = client.get(reverse("traces:run-list"), {"status": "cancelled", "format": "workflow"})
    assert [r.pk for r in listed.context["page"].items] == [run.pk]
    failed = client.get(reverse("traces:run-list"), {"status": "failed", "format": "workflow"})
    assert run.pk not in [r.pk for r in failed.context["page"].items]
