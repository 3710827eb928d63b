"""Runs whose times are estimated (greentic: the file's modified time) in the failing-now
strip on `/`: counted apart from the timed runs ("+2 ≈", with a title and a note saying
why), so that a folder of old files copied an hour ago does not read as a burst of
failures in the last hour; each number links to a runs list (`times=recorded` or
`times=estimated`) that lists what it counts."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_runs, make_steps
from tests.test_query_plans import SORTS, assert_walks_an_index, plans_of
from traces import queries
from traces.forms import RunFilterForm
from traces.ingest.loader import ingest_paths
from traces.models import Run, Step
from traces.queries import failing
from traces.queries.failing import failing_now

pytestmark = pytest.mark.django_db

URL = reverse("traces:run-list")


@pytest.fixture
def greentic_now(samples, tmp_path):
    """The greentic samples, their files written ten minutes ago: two failed runs (of
    two flows) whose estimated times are in the strip's last hour."""
    folder = tmp_path / "greentic"
    shutil.copytree(samples / "greentic", folder)
    written = time.time() - 600
    for path in folder.rglob("*.json"):
        os.utime(path, (written, written))
    ingest_paths([folder])
    failed = Run.objects.filter(format="greentic", status="failed")
    assert failed.count() == 2 and all(run.times_estimated for run in failed)
    return list(failed.order_by("type"))


def timed_failures(run_type: str, minutes_ago: list[int]) -> list[Run]:
    runs = make_runs(len(minutes_ago), status="failed", type=run_type)
    for run, minutes in zip(runs, minutes_ago, strict=True):
        Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=minutes))
    return runs


def listed(client, href: str) -> list[int]:
    response = client.get(href.replace("&amp;", "&"))
    assert response.status_code == 200
    return [run.pk for run in response.context["page"].items]


def test_estimated_failures_are_counted_apart_and_each_link_lists_its_number(client, greentic_now):
    flow_type = greentic_now[0].type
    # Timed failures of the same type: one in the hour, one earlier today.
    timed = timed_failures(flow_type, [20, 300])
    failing = client.get(URL).context["failing"]
    (row,) = [row for row in failing.types if row.run_type == flow_type]
    assert (row.last_hour, row.last_day) == (1, 2)
    assert (row.estimated.last_hour, row.estimated.last_day) == (1, 1)
    assert failing.has_estimated and failing.runs_last_day == 4
    html = " ".join(client.get(URL).content.decode().split())
    recorded = f"{URL}?type={flow_type}&amp;status=failed&amp;since=1h&amp;times=recorded"
    estimated = f"{URL}?type={flow_type}&amp;status=failed&amp;since=1h&amp;times=estimated"
    assert f'href="{recorded}">✗ 1</a>' in html
    assert f'<a class="estimated-count" href="{estimated}" title="1 more failed run with' in html
    assert '+1 <span class="estimated">≈</span></a>' in html
    assert "estimated from the file&#x27;s modified time" in html
    assert "counted apart from the timed ones" in html
    # Each link lists exactly what its number counts.
    assert listed(client, recorded) == [timed[0].pk]
    assert listed(client, estimated) == [greentic_now[0].pk]
    day = recorded.replace("since=1h", "since=24h")
    assert sorted(listed(client, day)) == sorted(run.pk for run in timed)
    # The runs list says which times it shows.
    page = client.get(estimated.replace("&amp;", "&")).content.decode()
    assert '<option value="estimated" selected>' in page


def test_a_type_whose_failures_are_all_estimated_shows_no_timed_failure(client, greentic_now):
    failing = client.get(URL).context["failing"]
    assert [(t.run_type, t.last_hour, t.estimated.last_hour) for t in failing.types] == [
        (run.type, 0, 1) for run in greentic_now
    ]
    html = " ".join(client.get(URL).content.decode().split())
    # The timed count is a muted 0, the estimated ones beside it.
    assert '<td class="num"><span class="muted">0</span> <a class="estimated-count"' in html
    assert html.count('<td class="num"><span class="muted">0</span> <a') == 4
    assert "c-fail" not in html.split("Failing now")[1].split("</table>")[0]


def test_without_estimated_runs_the_links_and_the_strip_are_as_before(client):
    timed_failures("nightly", [10])
    html = " ".join(client.get(URL).content.decode().split())
    assert f'href="{URL}?type=nightly&amp;status=failed&amp;since=1h">✗ 1</a>' in html
    assert "estimated-count" not in html and "counted apart" not in html


def test_estimated_runs_with_failed_items_are_counted_apart_too(client, runs_db):
    ingest_paths([runs_db])
    now = timezone.now()
    with_items = Run.objects.filter(steps_items_failed__gt=0)
    Run.objects.update(started_at=now - timedelta(days=3))
    (estimated, *timed) = with_items.order_by("pk")
    Run.objects.filter(pk=estimated.pk).update(
        started_at=now - timedelta(minutes=5), times_estimated=True
    )
    Run.objects.filter(pk__in=[run.pk for run in timed]).update(
        started_at=now - timedelta(minutes=5)
    )
    failing = failing_now(now)
    assert failing.has_items and failing.has_estimated
    assert failing.estimated_items_hour == estimated.steps_items_failed
    assert failing.items_last_hour == sum(run.steps_items_failed for run in timed)
    html = " ".join(client.get(URL).content.decode().split())
    recorded = f"{URL}?status=items&amp;since=1h&amp;times=recorded"
    others = f"{URL}?status=items&amp;since=1h&amp;times=estimated"
    assert f'href="{recorded}">{failing.items_last_hour} in the last hour</a>' in html
    assert f'href="{others}"' in html
    assert sorted(listed(client, recorded)) == sorted(run.pk for run in timed)
    assert listed(client, others) == [estimated.pk]


# --- their failed steps -------------------------------------------------------------------

STEPS_URL = reverse("traces:step-list")


def timed_failed_steps(minutes_ago: list[int]) -> list[Step]:
    """Failed steps of a run whose times are recorded, failed that long ago."""
    (run,) = make_runs(1, status="failed", type="nightly")
    steps = make_steps(run, len(minutes_ago), status="failed", error="timed boom")
    now = timezone.now()
    for step, minutes in zip(steps, minutes_ago, strict=True):
        at = now - timedelta(minutes=minutes)
        Step.objects.filter(pk=step.pk).update(started_at=at, failed_at=at)
    return steps


def listed_steps(client, href: str) -> tuple[list[int], int, int]:
    """The failed-steps list a strip link opens: its rows, its count, and what its
    causes box counted."""
    response = client.get(href.replace("&amp;", "&"))
    assert response.status_code == 200
    context = response.context
    return (
        [step.pk for step in context["page"].items],
        context["count"],
        context["groups"].steps_read,
    )


def test_failed_steps_of_estimated_runs_are_counted_apart_and_each_link_lists_its_number(
    client, greentic_now
):
    """A greentic step has no start: its failure is dated by its run's time, the
    file's, so a copied folder of old failures would read as failed steps of the last
    hour. They are counted apart ("+n ≈"), each number a link to the failed-steps list
    of its times, which lists exactly what it counts, and its causes box counts them."""
    timed = timed_failed_steps([20, 300])
    estimated = list(Step.objects.filter(run__in=greentic_now, status="failed", synthetic=False))
    assert estimated and all(step.started_at is None for step in estimated)
    failing = client.get(URL).context["failing"]
    assert (failing.steps_last_hour, failing.steps_last_day) == (1, 2)
    n = len(estimated)
    assert (failing.estimated_steps_hour, failing.estimated_steps_day) == (n, n)
    html = " ".join(client.get(URL).content.decode().split())
    recorded = f"{STEPS_URL}?status=failed&amp;since=1h&amp;times=recorded"
    others = f"{STEPS_URL}?status=failed&amp;since=1h&amp;times=estimated"
    assert f'<a class="c-fail" href="{recorded}">1 in the last hour</a>' in html
    assert (
        f'<a class="estimated-count" href="{others}" title="{n} more failed steps of runs' in html
    )
    assert f'+{n} <span class="estimated">≈</span></a>' in html
    assert "and their failed steps, counted apart from the timed ones" in html
    # Each link lists exactly what its number counts, and the causes box counts it too.
    assert listed_steps(client, recorded) == ([timed[0].pk], 1, 1)
    rows, count, grouped = listed_steps(client, others)
    assert sorted(rows) == sorted(step.pk for step in estimated) and count == grouped == n
    day = recorded.replace("since=1h", "since=24h")
    assert listed_steps(client, day) == ([step.pk for step in timed], 2, 2)
    # The list says which times it shows.
    page = client.get(others.replace("&amp;", "&")).content.decode()
    assert '<option value="estimated" selected>' in page


def test_only_estimated_failed_steps_show_a_muted_timed_zero(client, greentic_now):
    failing = client.get(URL).context["failing"]
    assert (failing.steps_last_hour, failing.steps_last_day) == (0, 0)
    assert failing.estimated_steps_day > 0 and not failing.quiet
    html = " ".join(client.get(URL).content.decode().split())
    strip = html.split('class="failing-steps"')[1].split("</p>")[0]
    assert '<span class="muted">0 in the last hour</span> <a class="estimated-count"' in strip
    assert '<span class="muted">0 in the last 24 h</span> <a class="estimated-count"' in strip
    assert "c-fail" not in strip


def test_without_estimated_steps_the_step_links_are_as_before(client):
    timed_failed_steps([10])
    html = " ".join(client.get(URL).content.decode().split())
    assert f'href="{STEPS_URL}?status=failed&amp;since=1h">1 in the last hour</a>' in html
    assert "times=" not in html.split('class="failing-steps"')[1].split("</p>")[0]


def test_the_step_windows_start_where_the_failed_steps_list_starts_them(client, monkeypatch):
    """`since=1h` on the failed-steps list starts at its first 10-minute slot (its
    causes box reads the read model by slot): the strip counts from there too, so a
    failure 64 minutes before 12:07 is in both, one 70 minutes before in neither."""
    now = datetime(2026, 1, 5, 12, 7, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: now)
    inside, outside = timed_failed_steps([0, 0])
    Step.objects.filter(pk=inside.pk).update(failed_at=now - timedelta(minutes=64))
    Step.objects.filter(pk=outside.pk).update(failed_at=now - timedelta(minutes=70))
    failing = client.get(URL).context["failing"]
    assert (failing.steps_last_hour, failing.steps_last_day) == (1, 2)
    rows, count, _ = listed_steps(client, f"{STEPS_URL}?status=failed&since=1h")
    assert rows == [inside.pk] and count == 1


def test_the_api_lists_and_groups_failed_steps_by_their_runs_times(client, greentic_now):
    timed = timed_failed_steps([20])
    estimated = Step.objects.filter(run__in=greentic_now, status="failed", synthetic=False)
    for times, expected in (
        ("recorded", {timed[0].pk}),
        ("estimated", set(estimated.values_list("pk", flat=True))),
    ):
        body = client.get("/api/steps", {"status": "failed", "since": "1h", "times": times}).json()
        assert {item["id"] for item in body["items"]} == expected and body["count"] == len(expected)
        groups = client.get("/api/steps/errors", {"since": "1h", "times": times}).json()
        assert groups["steps_read"] == len(expected)
        assert all("times=" + times in group["steps"] for group in groups["groups"])
    assert client.get("/api/steps", {"times": "guessed"}).status_code == 400
    assert client.get(STEPS_URL, {"times": "guessed"}).status_code == 400


def test_past_the_cap_the_newest_failures_are_counted_and_marked_more(
    client, greentic_now, monkeypatch
):
    """A storm of failures: the strip reads the newest up to its cap, each count a
    lower bound marked "+", the two summing to the cap."""
    monkeypatch.setattr(failing, "STEP_COUNT_CAP", 3)
    timed_failed_steps([1, 2, 3, 4])  # newer than the greentic files
    now = failing_now(timezone.now())
    assert (now.steps_last_hour, now.estimated_steps_hour) == (3, 0)
    assert (now.steps_last_day, now.estimated_steps_day) == (3, 0)
    assert now.steps_capped and now.steps_hour_capped
    html = " ".join(client.get(URL).content.decode().split())
    assert ">3+ in the last hour</a>" in html and ">3+ in the last 24 h</a>" in html
    # Both kinds in the newest: each at most what there is, summing to the cap.
    monkeypatch.setattr(failing, "STEP_COUNT_CAP", 5)
    now = failing_now(timezone.now())
    assert now.steps_capped and now.steps_last_day + now.estimated_steps_day == 5
    assert now.steps_last_day <= 4 and 0 < now.estimated_steps_day <= 2
    html = " ".join(client.get(URL).content.decode().split())
    estimated = f"+{now.estimated_steps_day}+ <span"  # a lower bound too
    assert f">{now.steps_last_day}+ in the last 24 h</a> <a" in html and estimated in html


def test_the_strip_query_count_stays_flat(client, greentic_now, django_assert_num_queries):
    timed_failures("nightly", [10, 20])
    with django_assert_num_queries(6):
        client.get(URL)


def times_list(times: str):
    make_runs(40, status="failed")
    Run.objects.filter(pk__in=Run.objects.values("pk")[:10]).update(times_estimated=True)
    form = RunFilterForm({"status": "failed", "times": times, "since": "2000-01-01T00:00:00Z"})
    assert form.is_valid(), form.errors
    runs = queries.runs.filter_runs(form.cleaned_data)
    assert runs.count() == (30 if times == "recorded" else 10)
    return lambda: queries.runs.runs_page(runs, form.cleaned_data, form.sort_key())


def test_the_recorded_times_of_a_window_walk_an_index_in_order():
    """The strip's links: the window bounds the walk of (status, listed_at), no sort
    (a `since` of any times filters started_at, then sorts the window's runs)."""
    assert_walks_an_index(times_list("recorded"))


def test_the_estimated_times_of_a_window_read_an_index_range():
    for sql, plan in plans_of(times_list("estimated"), dear=(*SORTS, "seqscan")):
        text = " ".join(plan)
        assert "USING INDEX" in text or "Index Scan" in text, f"{sql}\n  plan: {plan}"
        assert "SCAN traces_run " not in f"{text} " and "Seq Scan" not in text, plan


def test_an_unknown_times_value_is_a_400(client):
    assert client.get(URL, {"times": "guessed"}).status_code == 400


def test_recorded_and_estimated_failed_steps_are_told_apart_by_one_test_of_the_flag():
    """`times=` on failed steps: a step whose flag is missing (written before 0033) is
    of recorded times. (Written as one test of the index's column, COALESCE(e, false):
    `exclude()` wrote `NOT (e AND e IS NOT NULL)`, which PostgreSQL read as two bitmap
    scans through the table at 10 M steps, RESULTS §17a; a table this small, in a
    transaction that no VACUUM has seen, shows no index-only plan to test.)"""
    run = make_runs(1, status="failed")[0]
    steps = make_steps(run, 60, status="failed", error=lambda i: f"cause {i % 3}")
    for flag, chosen in ((True, steps[:10]), (None, steps[10:15]), (False, steps[15:])):
        Step.objects.filter(pk__in=[step.pk for step in chosen]).update(failed_at_estimated=flag)

    def chosen(times: str) -> set[int]:
        filters = {"status": "failed", "times": times, "since": datetime(2000, 1, 1, tzinfo=UTC)}
        return set(queries.steps.filter_steps(filters).values_list("pk", flat=True))

    assert chosen("recorded") == {step.pk for step in steps[10:]}
    assert chosen("estimated") == {step.pk for step in steps[:10]}
